"""The run's folders: checked before training, locked for the run, and a failed model never
replaces a passing one."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from conftest import train_cmd
from in_process import run_train
from threat_ensemble.errors import InputError
from threat_ensemble.run_folders import check_run_folders, lock_path, locked

SMALL = ["--default-rows", "3000", "--max-epochs", "3", "--quiet"]


def _train(work: Path, *args: str) -> subprocess.CompletedProcess:
    uri = f"sqlite:///{work / 'mlflow.db'}"
    return subprocess.run(
        train_cmd(*SMALL, "--tracking-uri", uri, *args), cwd=work, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize(
    ("output", "checkpoint", "message"),
    [
        ("same", "same", "--checkpoint-dir same: is also --output-dir"),
        ("out", "out/ckpt", "--checkpoint-dir out/ckpt: nested with --output-dir out"),
        ("out/inner", "out", "--checkpoint-dir out: nested with --output-dir out/inner"),
        ("new", "old-bundle", "--checkpoint-dir old-bundle: holds a model bundle (manifest.json)"),
    ],
)
def test_folders_that_would_damage_each_other_are_refused_up_front(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, output: str, checkpoint: str, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "old-bundle").mkdir()
    (tmp_path / "old-bundle" / "manifest.json").write_text("{}")
    with pytest.raises(InputError, match=re.escape(message)):
        check_run_folders(output, checkpoint)
    check_run_folders("out", "ckpt")  # separate folders are fine


def test_a_second_run_on_locked_folders_exits_2_naming_the_holder(tmp_path: Path) -> None:
    with locked(("--output-dir", tmp_path / "bundle")):
        proc = _train(tmp_path, "--output-dir", "bundle", "--checkpoint-dir", "ckpt")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip() == (
        f"error: --output-dir bundle: in use by another run (pid {os.getpid()}); wait for it or choose another folder"
    )
    assert not (tmp_path / "bundle").exists() and not (tmp_path / "ckpt" / "last.ckpt").exists()
    with locked(("--checkpoint-dir", tmp_path / "ckpt")):
        proc = _train(tmp_path, "--output-dir", "bundle", "--checkpoint-dir", "ckpt")
    assert proc.returncode == 2 and "--checkpoint-dir ckpt: in use by another run" in proc.stderr
    assert lock_path(tmp_path / "ckpt") == tmp_path / ".ckpt.lock"  # beside the folder, never in a bundle


def _train_here(work: Path, *args: str) -> subprocess.CompletedProcess:
    return run_train(work, *SMALL, "--tracking-uri", f"sqlite:///{work / 'mlflow.db'}", *args)


@pytest.mark.slow
def test_a_failed_gate_never_replaces_a_passing_bundle(tmp_path: Path) -> None:
    first = _train_here(tmp_path, "--output-dir", "bundle", "--checkpoint-dir", "ckpt", "--register-model", "shop")
    assert first.returncode == 0, first.stderr[-3000:]
    manifest = (tmp_path / "bundle" / "manifest.json").read_bytes()
    digest = hashlib.sha256(manifest).hexdigest()
    assert f"bundle digest: {digest}" in first.stdout

    second = _train_here(tmp_path, "--output-dir", "bundle", "--checkpoint-dir", "ckpt", "--min-f1", "0.9999")
    assert second.returncode == 3, second.stderr[-3000:]
    assert (tmp_path / "bundle" / "manifest.json").read_bytes() == manifest  # the passing bundle, untouched
    rejected = tmp_path / "bundle.rejected"
    assert f"gate failed: the passing bundle in bundle is kept; this run's bundle is in {rejected}" in second.stdout
    assert f"bundle: {rejected}" in second.stdout
    assert json.loads((rejected / "gate.json").read_text())["passed"] is False

    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run_id = json.loads((tmp_path / "bundle" / "gate.json").read_text())["mlflow_run_id"]
    assert client.get_run(run_id).data.tags["bundle_digest"] == digest
    names = [
        client.get_run(json.loads((d / "gate.json").read_text())["mlflow_run_id"]).info.run_name
        for d in (tmp_path / "bundle", rejected)
    ]
    assert all(re.fullmatch(r"default-3000-\d{8}-\d{6}", n) for n in names), names  # not one seeded random name
    version = client.get_model_version("shop", "1")
    assert version.tags["bundle_digest"] == digest and version.run_id == run_id


def test_an_output_folder_that_cannot_be_renamed_is_refused_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bundle's swap renames the folder there aside; a folder that cannot be (here: rename
    refused with EPERM, as for an immutable folder, a mount point or another user's folder in a
    sticky parent) is one line before training, and is left where and as it was."""
    import errno

    out = tmp_path / "bundle"
    out.mkdir()  # empty: a bundle may go there
    real_rename, real_replace = os.rename, os.replace

    def refusing(real: object) -> object:
        def rename(src: object, dst: object) -> None:
            if Path(str(src)) == out:
                raise PermissionError(errno.EPERM, "Operation not permitted", str(src))
            real(src, dst)  # type: ignore[operator]

        return rename

    monkeypatch.setattr(os, "rename", refusing(real_rename))
    monkeypatch.setattr(os, "replace", refusing(real_replace))  # the swap after training renames with it
    proc = run_train(tmp_path, *SMALL, "--output-dir", "bundle", "--checkpoint-dir", "ckpt")
    assert proc.returncode == 2 and proc.stderr.strip() == (
        f"error: --output-dir {out}: cannot be renamed (Operation not permitted), and a run replaces its bundle by "
        "renaming the folder there aside; make it renamable or choose another folder"
    )
    visible = sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith((".lock", ".pid")))
    assert visible == ["bundle"] and list(out.iterdir()) == []  # nothing trained, nothing moved
    monkeypatch.setattr(os, "rename", real_rename)
    monkeypatch.setattr(os, "replace", real_replace)
    from threat_ensemble.run_folders import check_replaceable

    (out / "manifest.json").write_text("{}")
    check_replaceable("--output-dir", out)  # renamable: moved aside and straight back
    visible = sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith((".lock", ".pid")))
    assert visible == ["bundle"] and (out / "manifest.json").read_text() == "{}"
