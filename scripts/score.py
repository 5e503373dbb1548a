#!/usr/bin/env python
"""Score a feature table with a trained bundle. See ``--help`` and README.md."""

import sys
from pathlib import Path

try:
    from threat_ensemble.cli.score import main
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from threat_ensemble.cli.score import main

if __name__ == "__main__":
    sys.exit(main())
