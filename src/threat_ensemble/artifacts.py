"""The model bundle on disk: written whole or not at all, and verified before anything is unpickled."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import tempfile
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from threat_ensemble.checkpointing import crash_point
from threat_ensemble.errors import InputError

AE_FILE = "autoencoder.pt"
RF_FILE = "random_forest.joblib"
IF_FILE = "isolation_forest.joblib"
PREPROCESSING_FILE = "preprocessing.json"
THRESHOLD_FILE = "threshold.json"
GATE_FILE = "gate.json"
MANIFEST_FILE = "manifest.json"
BUNDLE_FILES = (AE_FILE, RF_FILE, IF_FILE, PREPROCESSING_FILE, THRESHOLD_FILE, GATE_FILE)
VERSIONED_PACKAGES = ("threat-ensemble", "torch", "lightning", "scikit-learn", "numpy", "mlflow", "torchmetrics")


class BundleError(InputError):
    """A bundle that is incomplete, altered or not a bundle at all."""


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


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(_jsonable(data), indent=2, sort_keys=False) + "\n", encoding="utf-8")


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
    *,
    autoencoder: dict[str, Any],
    random_forest: Any | Path,
    isolation_forest: Any | Path,
    preprocessing: dict[str, Any],
    threshold: dict[str, Any],
    gate: dict[str, Any],
    manifest_extra: dict[str, Any],
    extra_files: Callable[[Path], list[Path]] | None = None,
) -> Path:
    """Write every file into a temporary folder beside ``output_dir``, then swap it into place, so
    a crash leaves the previous bundle or none, never a partial one. A forest given as a ``Path``
    is a joblib file already written (the run's checkpoint copy): it is linked or copied, not
    pickled a second time."""
    import torch

    dest = check_output_dir(output_dir)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.tmp-"))
    try:
        torch.save(autoencoder, tmp / AE_FILE)
        _write_joblib(random_forest, tmp / RF_FILE)
        _write_joblib(isolation_forest, tmp / IF_FILE)
        crash_point("bundle")
        write_json(tmp / PREPROCESSING_FILE, preprocessing)
        write_json(tmp / THRESHOLD_FILE, threshold)
        write_json(tmp / GATE_FILE, gate)
        extra = [p.name for p in extra_files(tmp)] if extra_files is not None else []
        manifest = {
            "format": 1,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "files": {name: sha256_file(tmp / name) for name in (*BUNDLE_FILES, *extra)},
            "versions": package_versions(),
            **manifest_extra,
        }
        write_json(tmp / MANIFEST_FILE, manifest)
        _fsync_dir(tmp)
        _swap_into_place(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def _write_joblib(model: Any | Path, path: Path) -> None:
    import joblib

    if not isinstance(model, Path):
        joblib.dump(model, path)
        return
    try:
        os.link(model, path)  # files are never rewritten in place, so sharing the inode is safe
    except OSError:  # another file system, or links not allowed
        shutil.copyfile(model, path)


def _fsync_dir(folder: Path) -> None:
    for path in folder.iterdir():
        with open(path, "rb") as fh:
            os.fsync(fh.fileno())


def _swap_into_place(tmp: Path, dest: Path) -> None:
    if not dest.exists():
        os.replace(tmp, dest)
        return
    old = dest.with_name(f".{dest.name}.old-{uuid.uuid4().hex[:8]}")
    os.replace(dest, old)
    os.replace(tmp, dest)
    shutil.rmtree(old, ignore_errors=True)


def verify_bundle(bundle_dir: str | Path) -> dict[str, Any]:
    """Check the manifest against the folder: every listed file present with its sha256, and no
    other file. Returns the manifest. Nothing is unpickled before this passes."""
    folder = Path(bundle_dir)
    manifest_path = folder / MANIFEST_FILE
    if not manifest_path.is_file():
        raise BundleError(f"{folder}: not a bundle (no {MANIFEST_FILE})")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        files = dict(manifest["files"])
    except (ValueError, KeyError, TypeError):
        raise BundleError(f"{manifest_path}: not a valid manifest") from None
    present = {p.name for p in folder.iterdir() if p.name != MANIFEST_FILE}
    missing = sorted(set(files) - present)
    extra = sorted(present - set(files))
    if missing:
        raise BundleError(f"{folder}: files listed in the manifest are missing: {missing}")
    if extra:
        raise BundleError(f"{folder}: files not in the manifest: {extra}")
    for name, expected in files.items():
        actual = sha256_file(folder / name)
        if actual != expected:
            raise BundleError(
                f"{folder / name}: sha256 {actual[:12]}... differs from the manifest's {expected[:12]}..."
            )
    return manifest


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))
