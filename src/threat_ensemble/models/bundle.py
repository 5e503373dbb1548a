"""The model bundle on disk: written whole or not at all; read back only after every byte is
verified. Each file is read once, hashed, and parsed from those same bytes, so what is checked is
what is loaded. A bundle holds no pickle (format 2): JSON, safetensors and skops files only."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import stat
import sys
import tempfile
import uuid
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from threat_ensemble.errors import InputError, first_line, listed, quote
from threat_ensemble.limits import MAX_JSON_BYTES, MAX_MANIFEST_BYTES

# Format 1 (before): autoencoder.pt and two joblib pickles. Format 2: no file can run code when read.
BUNDLE_FORMAT = 2
AE_FILE = "autoencoder.safetensors"
RF_FILE = "random_forest.skops"
IF_FILE = "isolation_forest.skops"
PREPROCESSING_FILE = "preprocessing.json"
THRESHOLD_FILE = "threshold.json"
GATE_FILE = "gate.json"
MANIFEST_FILE = "manifest.json"
ONNX_FILE = "ensemble.onnx"  # optional (train.py --export onnx): the ensemble as one ONNX graph
BUNDLE_FILES = (AE_FILE, RF_FILE, IF_FILE, PREPROCESSING_FILE, THRESHOLD_FILE, GATE_FILE)
VERSIONED_PACKAGES = (
    "threat-ensemble", "torch", "lightning", "scikit-learn", "numpy", "mlflow", "torchmetrics", "skops", "safetensors"
)
_SHA256 = re.compile(r"[0-9a-f]{64}")


class BundleError(InputError):
    """A bundle that is incomplete, altered or not a bundle at all."""


class BundleVersionWarning(UserWarning):
    """A bundle written by another version of threat-ensemble: one line naming both versions."""


PACKAGE = "threat-ensemble"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def json_bytes(data: Any) -> bytes:
    """The one JSON spelling of every bundle file (numpy numbers as plain ones, NaN as null)."""
    return (json.dumps(_jsonable(data), indent=2, sort_keys=False) + "\n").encode("utf-8")


def write_json(path: Path, data: Any) -> None:
    path.write_bytes(json_bytes(data))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    return value


def check_output_dir(output_dir: str | Path) -> Path:
    """Fail before training if the bundle could not be written, or would replace a folder that
    is not a bundle of ours."""
    dest = Path(output_dir).resolve()
    if dest.exists() and not dest.is_dir():
        raise InputError(f"--output-dir {dest}: exists and is not a folder")
    if dest.is_dir() and any(dest.iterdir()) and not (dest / MANIFEST_FILE).is_file():
        raise InputError(
            f"--output-dir {dest}: folder is not empty and holds no {MANIFEST_FILE}; "
            "refusing to replace files that are not a bundle"
        )
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=dest.parent, prefix=f".{dest.name}.probe-", delete=True)
        probe.close()
    except OSError as exc:
        raise InputError(f"--output-dir {dest}: cannot write there ({exc.strerror or exc})") from None
    return dest


def write_bundle(
    output_dir: str | Path,
    files: Mapping[str, bytes],
    *,
    manifest_extra: dict[str, Any],
    extra_files: Callable[[Path], list[Path]] | None = None,
) -> tuple[Path, str]:
    """Write ``files`` (name -> bytes; every one of BUNDLE_FILES) and the manifest into a temporary
    folder beside ``output_dir``, then swap it into place, so a crash leaves the previous bundle or
    none, never a partial one. The bundle owns its bytes (no links to checkpoint files). Returns the
    folder and the manifest's sha256 (the digest that pins this bundle from outside)."""
    missing = [name for name in BUNDLE_FILES if name not in files]
    if missing:
        raise ValueError(f"write_bundle: missing {missing}")
    _check_within_limits(files)
    dest = check_output_dir(output_dir)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.tmp-"))
    try:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        extra = [p.name for p in extra_files(tmp)] if extra_files is not None else []
        manifest = {
            "format": BUNDLE_FORMAT,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "files": {name: sha256_file(tmp / name) for name in (*files, *extra)},
            "versions": package_versions(),
            **manifest_extra,
        }
        _check_within_limits({MANIFEST_FILE: json_bytes(manifest)})
        write_json(tmp / MANIFEST_FILE, manifest)
        digest = sha256_file(tmp / MANIFEST_FILE)
        _fsync_dir(tmp)
        _swap_into_place(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest, digest


def _check_within_limits(files: Mapping[str, bytes]) -> None:
    """A run never ships a bundle its own loader refuses: each JSON file within the bytes
    :func:`read_bundle` and :func:`parse_json` accept (the manifest MAX_MANIFEST_BYTES, any other
    MAX_JSON_BYTES), checked before anything is written (the previous bundle stays)."""
    for name, data in files.items():
        limit = MAX_MANIFEST_BYTES if name == MANIFEST_FILE else MAX_JSON_BYTES if name.endswith(".json") else None
        if limit is not None and len(data) > limit:
            raise BundleError(
                f"bundle file {name}: {len(data):,} bytes, more than the {limit:,} its loader reads; "
                "the bundle is not written (a scorer could never load it)"
            )


def _fsync_dir(folder: Path) -> None:
    for path in folder.iterdir():
        with open(path, "rb") as fh:
            os.fsync(fh.fileno())


def recover_interrupted_swap(output_dir: str | Path) -> list[str]:
    """Undo what a run killed while writing ``output_dir`` left beside it (call with the folder's
    lock held): a bundle hidden as ``.<name>.old-*`` when ``output_dir`` itself is missing is put
    back; other such folders lose the files their manifest lists (anything else in them is kept,
    see :func:`_discard`); temporary ``.<name>.tmp-*`` folders and probe files are removed.
    Returns one line per action, for the run to print."""
    dest = Path(output_dir).resolve()
    notes: list[str] = []
    if not dest.parent.is_dir():
        return notes
    olds = [p for p in beside(dest, "old") if p.is_dir() and not p.is_symlink()]
    olds.sort(key=lambda p: p.stat().st_mtime)
    if olds and not dest.exists() and (olds[-1] / MANIFEST_FILE).is_file():
        restored = olds.pop()
        os.replace(restored, dest)
        notes.append(f"restored {dest} from {restored.name} (a run was stopped while replacing it)")
    for old in olds:  # a replaced bundle: its files go, anything a user had put there is kept
        kept = _discard(old, dest)
        notes.append(kept or f"removed {old.name}, left beside {dest.name} by a stopped run")
    leftovers = [*beside(dest, "tmp"), *beside(dest, "probe")]
    for path in leftovers:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        notes.append(f"removed {path.name}, left beside {dest.name} by a stopped run")
    return notes


_MADE_ID = re.compile(r"[A-Za-z0-9_]+")  # what follows the '-' in the names below: tempfile's and uuid's letters


def beside(dest: Path, kind: str) -> list[Path]:
    """The entries beside ``dest`` named ``.<dest's name>.<kind>-<id>`` (``kind``: ``tmp``, ``old``
    or ``probe``), in name order: what this module makes for ``dest`` and for no other folder.
    Names are compared as text, never as a pattern: a ``[``, ``*`` or ``?`` in a folder's name is
    that character (``p[k]``'s leftovers are not ``pk``'s), and another folder's own leftovers
    (``.<name>.tmp-<id>.tmp-<id>``) are not taken for this one's."""
    prefix = f".{dest.name}.{kind}-"
    try:
        names = os.listdir(dest.parent)
    except OSError:
        return []
    return [dest.parent / n for n in sorted(names) if n.startswith(prefix) and _MADE_ID.fullmatch(n[len(prefix) :])]


def _swap_into_place(tmp: Path, dest: Path) -> None:
    if not dest.exists():
        os.replace(tmp, dest)
        return
    old = dest.with_name(f".{dest.name}.old-{uuid.uuid4().hex[:8]}")
    os.replace(dest, old)
    os.replace(tmp, dest)
    note = _discard(old, dest)
    if note:
        print(f"warning: {note}", file=sys.stderr)


KEPT_INFIX = ".kept-"


def _discard(old: Path, dest: Path) -> str | None:
    """Remove a replaced bundle folder ``old`` (hidden beside ``dest``), but only the files the
    trainer wrote there: the ones its own manifest lists, and that manifest. Anything else (a user's
    notes, a folder, a link; everything when the manifest cannot be read) is kept: the folder is
    renamed ``<dest>.kept-<id>`` beside ``dest`` and the line returned says so."""
    written = _listed_files(old)
    for name in written:
        path = old / name
        try:
            if stat.S_ISREG(os.lstat(path).st_mode):
                path.unlink()
        except FileNotFoundError:
            pass
    try:
        old.rmdir()
        return None
    except FileNotFoundError:
        return None
    except OSError:  # not empty
        others = sorted(os.listdir(old))
    kept = dest.with_name(f"{dest.name}{KEPT_INFIX}{uuid.uuid4().hex[:8]}")
    os.replace(old, kept)
    return (
        f"{dest} held files this package did not write ({listed(others)}); they are kept in {kept} "
        "(a bundle folder holds only the bundle)"
    )


def _listed_files(folder: Path) -> list[str]:
    """The files a bundle folder's manifest says the trainer wrote, and the manifest itself; none
    when the manifest is not a readable JSON object listing plain file names."""
    try:
        manifest = json.loads(read_regular_file(folder / MANIFEST_FILE, MAX_MANIFEST_BYTES))
    except (BundleError, ValueError, UnicodeDecodeError, RecursionError):
        return []
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict):
        return []
    names = [n for n in files if isinstance(n, str) and n not in ("", ".", "..") and "/" not in n and "\\" not in n]
    return [*names, MANIFEST_FILE]


@dataclass(frozen=True)
class VerifiedBundle:
    """A bundle's files as read and checked: ``files`` holds each file's bytes exactly as hashed."""

    folder: Path
    manifest: dict[str, Any]
    digest: str  # sha256 of manifest.json
    files: dict[str, bytes]

    def json(self, name: str) -> Any:
        return parse_json(self.files[name], self.folder / name)


def read_bundle(
    bundle_dir: str | Path, expect_digest: str | None = None, *, ignore_unlisted: bool = False
) -> VerifiedBundle:
    """Read a bundle whole and check it: the manifest (format, shape, its own digest against
    ``expect_digest``), every listed file present as a regular file with its sha256, no other entry
    (unless ``ignore_unlisted``: the trainer asking whether a folder holds a bundle, whatever else a
    user put there). Each file is read once; callers parse the bytes returned, never the path again."""
    folder = Path(bundle_dir)
    manifest_path = folder / MANIFEST_FILE
    if not folder.is_dir():
        hidden = beside(folder, "old") if not folder.exists() else []
        if hidden:
            raise BundleError(
                f"{folder}: missing; {hidden[-1]} holds the bundle a stopped run was replacing "
                "(the next train.py run on this folder restores it, or rename it back)"
            )
        raise BundleError(f"{folder}: not a bundle folder")
    if not manifest_path.exists():
        raise BundleError(f"{folder}: not a bundle (no {MANIFEST_FILE})")
    raw = read_regular_file(manifest_path, MAX_MANIFEST_BYTES)
    digest = hashlib.sha256(raw).hexdigest()
    if expect_digest is not None and digest != expect_digest.strip().lower():
        raise BundleError(
            f"{manifest_path}: sha256 {digest} is not the expected {expect_digest.strip()[:64]}; "
            "the bundle is not the one pinned"
        )
    manifest = parse_json(raw, manifest_path)
    files = _manifest_files(manifest, manifest_path)
    if not ignore_unlisted:
        _warn_other_version(manifest, manifest_path)
    present = {p.name for p in folder.iterdir() if p.name != MANIFEST_FILE}
    missing = sorted(set(files) - present)
    extra = sorted(present - set(files))
    if missing:
        raise BundleError(f"{folder}: files listed in the manifest are missing: {missing}")
    if extra and not ignore_unlisted:
        raise BundleError(f"{folder}: files not in the manifest: {listed(extra)}")
    contents = {}
    for name, expected in files.items():
        data = read_regular_file(folder / name)
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected:
            raise BundleError(
                f"{folder / name}: sha256 {actual[:12]}... differs from the manifest's {expected[:12]}..."
            )
        contents[name] = data
    return VerifiedBundle(folder, manifest, digest, contents)


def verify_bundle(bundle_dir: str | Path, expect_digest: str | None = None) -> dict[str, Any]:
    """Check a bundle (:func:`read_bundle`) and return its manifest."""
    return read_bundle(bundle_dir, expect_digest).manifest


REJECTED_SUFFIX = ".rejected"


def bundle_destination(output_dir: str | Path, passed: bool) -> Path:
    """Where a run's bundle goes: ``output_dir``, unless its gate failed while ``output_dir`` holds
    an intact bundle whose gate passed. A failed model never replaces a passing one: it goes to
    ``<output_dir>.rejected`` beside it instead."""
    out = Path(output_dir)
    if passed or not (out / MANIFEST_FILE).exists():
        return out
    try:  # a passing bundle is one whatever else its folder holds (a user's notes beside it)
        previous = read_bundle(out, ignore_unlisted=True).json(GATE_FILE)
    except BundleError:  # damaged or of another format: no passing model to keep (its files are: see _discard)
        return out
    if isinstance(previous, dict) and previous.get("passed") is True:
        return out.with_name(out.name + REJECTED_SUFFIX)
    return out


def _manifest_files(manifest: Any, path: Path) -> dict[str, str]:
    """The manifest's ``files`` after checking its format and shape."""
    if not isinstance(manifest, dict):
        raise BundleError(f"{path}: not a valid manifest (expected a JSON object)")
    version = manifest.get("format")
    if version == 1:
        raise BundleError(
            f"{path}: bundle format 1 (pickled forests, written before threat-ensemble 0.2) is no longer "
            f"loaded, because a pickle can run code; retrain to write format {BUNDLE_FORMAT}"
        )
    if isinstance(version, int) and not isinstance(version, bool) and version > BUNDLE_FORMAT:
        raise BundleError(
            f"{path}: bundle format {version} (written by {PACKAGE} {_written_by(manifest)}) is newer than "
            f"{PACKAGE} {_own_version()} reads (format {BUNDLE_FORMAT}); upgrade {PACKAGE} to load it"
        )
    if version != BUNDLE_FORMAT:
        known = f"this version reads format {BUNDLE_FORMAT}"
        raise BundleError(f"{path}: unknown bundle format {quote(version, 80)}; {known}")
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise BundleError(f"{path}: not a valid manifest ('files' must list the bundle's files)")
    for name, expected in files.items():
        if name in ("", ".", "..", MANIFEST_FILE) or "/" in name or "\\" in name:
            raise BundleError(f"{path}: not a valid manifest (file name {quote(name, 80)})")
        if not isinstance(expected, str) or not _SHA256.fullmatch(expected):
            raise BundleError(f"{path}: not a valid manifest (the sha256 of {quote(name, 80)} is not 64 hex digits)")
    absent = [name for name in BUNDLE_FILES if name not in files]
    if absent:
        raise BundleError(f"{path}: the manifest does not list required files {absent}")
    return files


def _own_version() -> str:
    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        from threat_ensemble import __version__

        return __version__


def _written_by(manifest: dict[str, Any]) -> str:
    """The package version a manifest records (``versions``), quoted when it is not plain text."""
    versions = manifest.get("versions")
    written = versions.get(PACKAGE) if isinstance(versions, dict) else None
    if not isinstance(written, str) or not written or len(written) > 64 or not written.isprintable():
        return "an unrecorded version" if written is None else quote(written, 64)
    return written


def _warn_other_version(manifest: dict[str, Any], path: Path) -> None:
    """One line when the bundle was written by another version of this package than the one loading it."""
    written, own = _written_by(manifest), _own_version()
    if written != own:
        warnings.warn(
            BundleVersionWarning(
                f"{path}: bundle written by {PACKAGE} {written}, loaded by {PACKAGE} {own}; "
                "its scores may differ from the trainer's (retrain with this version to be sure)"
            ),
            stacklevel=3,
        )


def read_regular_file(path: Path, max_bytes: int | None = None) -> bytes:
    """The bytes of ``path`` if it is a regular file (not a link, folder, FIFO or device: opening a
    FIFO would block), refusing more than ``max_bytes``."""
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode):
            raise BundleError(f"{path}: not a regular file ({_kind(st.st_mode)})")
        if max_bytes is not None and st.st_size > max_bytes:
            raise BundleError(f"{path}: {st.st_size} bytes, more than the {max_bytes} allowed")
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise BundleError(f"{path}: not a regular file")
            data = fh.read() if max_bytes is None else fh.read(max_bytes + 1)
    except OSError as exc:
        raise BundleError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if max_bytes is not None and len(data) > max_bytes:
        raise BundleError(f"{path}: more than the {max_bytes} bytes allowed")
    return data


def parse_json(data: bytes, source: str | Path) -> Any:
    """JSON from bytes, as one-line errors (deep nesting included) naming ``source``."""
    if len(data) > MAX_JSON_BYTES:
        raise BundleError(f"{source}: {len(data)} bytes of JSON, more than the {MAX_JSON_BYTES} allowed")
    try:
        return json.loads(data.decode("utf-8"))
    except RecursionError:
        raise BundleError(f"{source}: JSON nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BundleError(f"{source}: not valid JSON ({first_line(exc, limit=120)})") from None


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO")):
        if test(mode):
            return name
    return "a device or socket"
