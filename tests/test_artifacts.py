from __future__ import annotations

import json
from pathlib import Path

import pytest
from sklearn.ensemble import IsolationForest

import threat_ensemble.artifacts as artifacts
from threat_ensemble.artifacts import BundleError, check_output_dir, verify_bundle, write_bundle
from threat_ensemble.errors import InputError


def _write(dest: Path, marker: str = "a") -> Path:
    return write_bundle(
        dest,
        autoencoder={"marker": marker},
        random_forest={"rf": marker},
        isolation_forest=IsolationForest(n_estimators=2),
        preprocessing={"feature_names": ["x"]},
        threshold={"threshold": 1.0},
        gate={"passed": True, "marker": marker},
        manifest_extra={"data_fingerprint": "abc", "mlflow_run_id": "r1"},
    )


def test_bundle_has_every_file_and_a_manifest(tmp_path: Path) -> None:
    bundle = _write(tmp_path / "out")
    manifest = verify_bundle(bundle)
    assert set(manifest["files"]) == set(artifacts.BUNDLE_FILES)
    assert manifest["data_fingerprint"] == "abc" and manifest["mlflow_run_id"] == "r1"
    assert "torch" in manifest["versions"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temp folders left


def test_a_crash_while_writing_keeps_the_previous_bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dest = _write(tmp_path / "out", "first")

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(artifacts, "write_json", boom)
    with pytest.raises(OSError, match="disk full"):
        _write(dest, "second")
    assert json.loads((dest / "gate.json").read_text())["marker"] == "first"
    verify_bundle(dest)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_new_bundle_replaces_the_old_one(tmp_path: Path) -> None:
    dest = _write(tmp_path / "out", "first")
    _write(dest, "second")
    assert json.loads((dest / "gate.json").read_text())["marker"] == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize("damage", ["tamper", "remove", "extra"])
def test_verification_refuses_a_changed_bundle(tmp_path: Path, damage: str) -> None:
    dest = _write(tmp_path / "out")
    if damage == "tamper":
        with open(dest / "random_forest.joblib", "ab") as fh:
            fh.write(b"\0")
        message = "random_forest.joblib: sha256 .* differs"
    elif damage == "remove":
        (dest / "threshold.json").unlink()
        message = r"missing: \['threshold.json'\]"
    else:
        (dest / "evil.joblib").write_bytes(b"x")
        message = r"not in the manifest: \['evil.joblib'\]"
    with pytest.raises(BundleError, match=message):
        verify_bundle(dest)


def test_output_dir_that_is_not_a_bundle_is_not_replaced(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="holds no manifest.json"):
        check_output_dir(folder)
    assert (folder / "notes.txt").read_text() == "keep me"


def test_unwritable_output_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(InputError, match="cannot write there|not a folder"):
        check_output_dir(blocker / "sub" / "out")


@pytest.mark.parametrize("links", [True, False])
def test_a_forest_already_on_disk_is_linked_or_copied_not_pickled_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, links: bool
) -> None:
    import joblib

    saved = tmp_path / "ckpt" / "random_forest.joblib"
    saved.parent.mkdir()
    joblib.dump({"rf": "fitted"}, saved)
    if not links:  # e.g. the checkpoint folder on another file system
        monkeypatch.setattr(artifacts.os, "link", lambda *a: (_ for _ in ()).throw(OSError(18, "cross-device")))
    monkeypatch.setattr(joblib, "dump", _refuse_rf_pickling(joblib.dump))
    bundle = write_bundle(
        tmp_path / "out",
        autoencoder={"marker": "a"},
        random_forest=saved,
        isolation_forest=IsolationForest(n_estimators=2),
        preprocessing={"feature_names": ["x"]},
        threshold={"threshold": 1.0},
        gate={"passed": True},
        manifest_extra={},
    )
    verify_bundle(bundle)
    copy = bundle / artifacts.RF_FILE
    assert copy.read_bytes() == saved.read_bytes()
    assert joblib.load(copy) == {"rf": "fitted"}
    assert (copy.stat().st_ino == saved.stat().st_ino) is links
    saved.unlink()  # a later run clearing its checkpoint folder leaves the bundle whole
    verify_bundle(bundle)


def _refuse_rf_pickling(dump):  # type: ignore[no-untyped-def]
    def guarded(value, filename, *args, **kwargs):  # type: ignore[no-untyped-def]
        assert not str(filename).endswith(artifacts.RF_FILE), "the forest was pickled again"
        return dump(value, filename, *args, **kwargs)

    return guarded
