"""The command-line programs: train, score, featurize (thin: options, exit codes, output)."""

from __future__ import annotations

import argparse

from threat_ensemble.limits import DEFAULT_MAX_DECOMPRESSED_MB


def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1."""
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text[:40]!r}")
    return int(text)


def add_decompression_limit(parser: argparse.ArgumentParser) -> None:
    """``--max-decompressed-mb``, the same on score.py and featurize.py as on train.py."""
    parser.add_argument(
        "--max-decompressed-mb",
        type=positive_int,
        default=DEFAULT_MAX_DECOMPRESSED_MB,
        metavar="MB",
        help=f"refuse an input that would take more than this many MB (default {DEFAULT_MAX_DECOMPRESSED_MB})",
    )


def add_bundle_options(parser: argparse.ArgumentParser) -> None:
    """``--bundle`` and ``--expect-digest``, the same on score.py and export.py."""
    parser.add_argument("--bundle", required=True, metavar="DIR", help="bundle folder written by train.py")
    parser.add_argument(
        "--expect-digest",
        metavar="SHA256",
        help="refuse the bundle unless its manifest's sha256 is this (train.py prints it as 'bundle digest'; "
        "MLflow has it as the run's and the model version's bundle_digest tag)",
    )
