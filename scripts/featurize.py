#!/usr/bin/env python
"""Featurize raw HTTP traffic (request dumps, access logs) into a training table. See ``--help``."""

import sys
from pathlib import Path

try:
    from threat_ensemble.cli.featurize import main
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from threat_ensemble.cli.featurize import main

if __name__ == "__main__":
    sys.exit(main())
