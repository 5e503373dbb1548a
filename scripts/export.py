#!/usr/bin/env python
"""Export a trained bundle as one ONNX graph. See ``--help`` and README.md."""

import sys
from pathlib import Path

try:
    from threat_ensemble.cli.export import main
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from threat_ensemble.cli.export import main

if __name__ == "__main__":
    sys.exit(main())
