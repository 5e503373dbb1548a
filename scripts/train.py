#!/usr/bin/env python
"""Train the threat-detection ensemble. See ``--help`` and README.md."""

import sys
from pathlib import Path

try:
    from threat_ensemble.cli.train import main
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from threat_ensemble.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
