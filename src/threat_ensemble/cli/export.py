"""``scripts/export.py``: a verified bundle in, the ensemble as one ONNX graph out (written whole or
not at all). The graph's inputs, outputs and metadata are described in docs/onnx.md."""

from __future__ import annotations

import argparse
from pathlib import Path

from threat_ensemble.cli import add_bundle_options
from threat_ensemble.errors import InputError, OneLineParser, check_path, run_cli
from threat_ensemble.files import check_output_file


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="export.py",
        description="Export a trained bundle as one ONNX graph: the raw feature columns in; each model's score, "
        "the fused score and the verdict out, equal to score.py's (the verdict's cut is an input, default 0.5).",
        epilog="exit status: 0 written, 2 usage or input error (or a bundle that fails its manifest; nothing "
        "is written), 1 unexpected error",
    )
    add_bundle_options(parser)
    parser.add_argument("--output", required=True, metavar="FILE", help="the graph to write, a .onnx file")
    return parser


def check_output(output: str, bundle: str) -> Path:
    """A writable ``.onnx`` file name outside the bundle (a file added there would break it)."""
    if Path(output).suffix.lower() != ".onnx":
        raise InputError(f"--output {output}: expected a .onnx file name")
    advice = "; train with --export onnx to have the graph in the bundle"
    return check_output_file(output, "--output", example="ensemble.onnx", keep_out_of=(Path(bundle),), advice=advice)


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
