"""Bounds on everything the project reads from a file or a user, in one place (no imports, so the
CLIs can show them in ``--help`` at once)."""

# A table may take at most this much once read (--max-decompressed-mb): a gzip input decompressed
# (5 MB of gzip can hold 1 GB), a CSV's fields, a Parquet's or .npz's declared cells, at 8 bytes a cell.
DEFAULT_MAX_DECOMPRESSED_MB = 1024
# --config files: size, YAML aliases (anchors are fine, an alias bomb is not), nesting depth.
MAX_CONFIG_BYTES = 1 << 20
MAX_YAML_ALIASES = 20
MAX_YAML_DEPTH = 20
# Bundle files: the manifest, and any JSON file (preprocessing.json grows with text columns' categories).
MAX_MANIFEST_BYTES = 1 << 20
MAX_JSON_BYTES = 64 << 20
# An error line quotes at most this many characters of an offending value, and lists at most
# MAX_LISTED names (then a count).
MAX_QUOTED_CHARS = 200
MAX_LISTED = 5

# --stream: the bounded samples and buffer (rows), whatever the data's size (docs/streaming.md)
DEFAULT_SAMPLE_ROWS = 200_000
MIN_SAMPLE_ROWS = 1_000  # fewer cannot hold both classes and the scaler's rows on real data
DEFAULT_SHUFFLE_ROWS = 131_072
