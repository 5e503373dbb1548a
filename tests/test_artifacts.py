from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

import threat_ensemble.models.bundle as artifacts
from threat_ensemble.errors import InputError
from threat_ensemble.models.bundle import BundleError, check_output_dir, verify_bundle, write_bundle


def _write(dest: Path, marker: str = "a") -> Path:
    files = {name: f"{name} {marker}".encode() for name in artifacts.BUNDLE_FILES}
    files[artifacts.GATE_FILE] = json.dumps({"passed": True, "marker": marker}).encode()
    folder, _digest = write_bundle(dest, files, manifest_extra={"data_fingerprint": "abc", "mlflow_run_id": "r1"})
    return folder


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

    monkeypatch.setattr(artifacts, "write_json", boom)  # the manifest, written last
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
        with open(dest / "random_forest.skops", "ab") as fh:
            fh.write(b"\0")
        message = "random_forest.skops: sha256 .* differs"
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


def test_the_digest_returned_is_the_manifests_and_pins_the_bundle(tmp_path: Path) -> None:
    folder, digest = write_bundle(
        tmp_path / "out", {n: n.encode() for n in artifacts.BUNDLE_FILES}, manifest_extra={}
    )
    assert digest == hashlib.sha256((folder / artifacts.MANIFEST_FILE).read_bytes()).hexdigest()
    assert artifacts.read_bundle(folder, expect_digest=digest.upper()).digest == digest
    with pytest.raises(BundleError, match="is not the expected"):
        artifacts.read_bundle(folder, expect_digest="0" * 64)


def test_a_swap_stopped_between_its_renames_is_recovered_by_the_next_run(tmp_path: Path) -> None:
    dest = _write(tmp_path / "out", "good")
    hidden = tmp_path / ".out.old-1234abcd"
    os.replace(dest, hidden)  # killed after hiding the old bundle, before moving the new one in
    (tmp_path / ".out.tmp-99").mkdir()
    (tmp_path / ".out.probe-x").write_text("")
    with pytest.raises(BundleError, match=r"out: missing; .*\.out\.old-1234abcd holds the bundle a stopped run"):
        verify_bundle(dest)  # score.py says where the bundle is, and changes nothing
    notes = artifacts.recover_interrupted_swap(dest)
    assert notes[0] == f"restored {dest.resolve()} from .out.old-1234abcd (a run was stopped while replacing it)"
    assert sorted(n.split(",")[0] for n in notes[1:]) == ["removed .out.probe-x", "removed .out.tmp-99"]
    assert json.loads((dest / "gate.json").read_text())["marker"] == "good"
    verify_bundle(dest)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert artifacts.recover_interrupted_swap(dest) == []  # nothing left to do


def test_a_failed_gate_keeps_a_passing_bundle_whatever_else_its_folder_holds(tmp_path: Path) -> None:
    dest = _write(tmp_path / "out")
    (dest / "notes.txt").write_text("mine")
    assert artifacts.bundle_destination(dest, passed=False) == tmp_path / "out.rejected"
    assert artifacts.bundle_destination(dest, passed=True) == dest
    (dest / "threshold.json").write_text("{}")  # a listed file altered: no passing model left to keep
    assert artifacts.bundle_destination(dest, passed=False) == dest


def test_replacing_a_bundle_never_deletes_a_file_the_trainer_did_not_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = _write(tmp_path / "out", "first")
    (dest / "notes.txt").write_text("mine")
    (dest / "plots").mkdir()
    (dest / "plots" / "mine.png").write_bytes(b"png")
    _write(dest, "second")
    assert json.loads((dest / "gate.json").read_text())["marker"] == "second"
    verify_bundle(dest)  # the new bundle holds only itself
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("out.kept-")]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out", *(p.name for p in kept)]) and len(kept) == 1
    assert sorted(os.listdir(kept[0])) == ["notes.txt", "plots"]  # the old bundle's own files are gone
    assert (kept[0] / "notes.txt").read_text() == "mine" and (kept[0] / "plots" / "mine.png").read_bytes() == b"png"
    err = capsys.readouterr().err
    held = f"warning: {dest} held files this package did not write (['notes.txt', 'plots'])"
    assert f"{held}; they are kept in {kept[0]}" in err


def test_a_stopped_runs_replaced_bundle_loses_only_its_own_files(tmp_path: Path) -> None:
    dest = _write(tmp_path / "out", "new")
    hidden = tmp_path / ".out.old-1234abcd"
    os.replace(_write(tmp_path / "previous", "old"), hidden)  # killed after the swap, before the clean-up
    (hidden / "notes.txt").write_text("mine")
    notes = artifacts.recover_interrupted_swap(dest)
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("out.kept-")]
    assert len(kept) == 1 and os.listdir(kept[0]) == ["notes.txt"] and (kept[0] / "notes.txt").read_text() == "mine"
    assert notes == [f"{dest} held files this package did not write (['notes.txt']); they are kept in {kept[0]} "
                     "(a bundle folder holds only the bundle)"]  # fmt: skip
    assert json.loads((dest / "gate.json").read_text())["marker"] == "new"


@pytest.mark.parametrize(("name", "other"), [("p[k]", "pk"), ("p*", "pk"), ("p?", "pk"), ("[pk]", "p")])
def test_leftovers_are_found_by_the_folders_name_never_by_a_pattern(tmp_path: Path, name: str, other: str) -> None:
    """--output-dir 'p[k]' beside another run's folder 'pk', which is mid-swap (its bundle hidden,
    its new one in a temporary folder): nothing of 'pk' is moved, overwritten or removed."""
    hidden = tmp_path / f".{other}.old-1234abcd"
    os.replace(_write(tmp_path / "elsewhere", "theirs"), hidden)
    in_progress = tmp_path / f".{other}.tmp-abcd1234"
    in_progress.mkdir()
    (in_progress / "gate.json").write_text("being written")
    probe = tmp_path / f".{other}.probe-abcd1234"
    probe.write_text("")
    theirs = sorted(p.name for p in tmp_path.iterdir())
    dest = tmp_path / name
    with pytest.raises(BundleError, match=r"not a bundle folder$"):  # no pointer to the other run's bundle
        verify_bundle(dest)
    assert artifacts.recover_interrupted_swap(dest) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == theirs and not dest.exists()
    assert json.loads((hidden / "gate.json").read_text())["marker"] == "theirs"
    assert (in_progress / "gate.json").read_text() == "being written"
    _write(dest, "mine")  # and writing this run's bundle leaves theirs alone too
    (tmp_path / f".{name}.tmp-abcd1234").mkdir()  # this folder's own leftovers are still cleared
    removed = f"removed .{name}.tmp-abcd1234, left beside {name} by a stopped run"
    assert artifacts.recover_interrupted_swap(dest) == [removed]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*theirs, name])
    assert json.loads((hidden / "gate.json").read_text())["marker"] == "theirs"


def test_another_folders_own_leftovers_are_not_taken_for_this_ones(tmp_path: Path) -> None:
    """'a' and 'a.tmp-x' side by side: the second's temporary folder starts with '.a.tmp-' too."""
    dest = _write(tmp_path / "a", "mine")
    theirs = tmp_path / ".a.tmp-x.tmp-abcd1234"
    theirs.mkdir()
    assert artifacts.recover_interrupted_swap(dest) == [] and theirs.is_dir()
