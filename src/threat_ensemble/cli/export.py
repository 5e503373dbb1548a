"""``scripts/export.py``: a verified bundle in, the ensemble as one ONNX graph out (written whole or
not at all). The graph's inputs, outputs and metadata are described in docs/onnx.md."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from threat_ensemble.errors import InputError, OneLineParser, check_path, run_cli


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="export.py",
        description="Export a trained bundle as one ONNX graph: the raw feature columns in; each model's score, "
        "the fused score and the verdict out, equal to score.py's (the verdict's cut is an input, default 0.5).",
        epilog="exit status: 0 written, 2 usage or input error (or a bundle that fails its manifest; nothing "
        "is written), 1 unexpected error",
    )
    parser.add_argument("--bundle", required=True, metavar="DIR", help="bundle folder written by train.py")
    parser.add_argument("--output", required=True, metavar="FILE", help="the graph to write, a .onnx file")
    parser.add_argument(
        "--expect-digest", metavar="SHA256", help="refuse the bundle unless its manifest's sha256 is this"
    )
    return parser


def check_output(output: str, bundle: str) -> Path:
    """A writable ``.onnx`` file name outside the bundle (a file added there would break it)."""
    out = Path(output)
    if out.suffix.lower() != ".onnx":
        raise InputError(f"--output {out}: expected a .onnx file name")
    if out.is_dir() or (out.exists() and not out.is_file()):
        raise InputError(f"--output {out}: not a regular file")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"--output {out}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"--output {out}: folder {parent} is not writable")
    if Path(bundle).resolve() in out.resolve().parents:
        raise InputError(
            f"--output {out}: inside the bundle {bundle}, whose manifest would no longer match; "
            "write it elsewhere, or train with --export onnx to have it in the bundle"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the export CLI; returns the exit status."""
    return run_cli(lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    for option, value in (("--bundle", args.bundle), ("--output", args.output)):
        check_path(option, value)
    out = check_output(args.output, args.bundle)
    from threat_ensemble.export.onnx_runtime import export_bundle

    info = export_bundle(args.bundle, out, args.expect_digest)
    size = out.stat().st_size / 1e6
    print(f"exported {args.bundle} -> {out} ({size:.1f} MB, version {info['version_id']}, fusion {info['fusion']})")
    return 0
