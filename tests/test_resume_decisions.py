"""The engine's resume decisions on their own, without training: which checkpoint and folder
``--resume`` takes, what a fresh run clears, when a resume is refused, and which checkpoint a
damaged ``last.ckpt`` falls back to."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from threat_ensemble.checkpointing import (
    LAST_CHECKPOINT,
    LEGACY_TREE_FILES,
    RUN_STATE_FILE,
    TREE_FILES,
    RunState,
    clear_previous_run,
    differences,
    resolve_resume,
    result_options,
)
from threat_ensemble.config import TrainConfig
from threat_ensemble.errors import InputError
from threat_ensemble.limits import DEFAULT_SAMPLE_ROWS
from threat_ensemble.pipeline import _prepare_run_state, _readable_checkpoint


def _state(folder: Path, fingerprint: str = "f" * 64, **config: object) -> RunState:
    state = RunState(data_fingerprint=fingerprint, options=result_options(TrainConfig(**config).to_dict()))
    state.save(folder)
    return state


def _checkpoint(path: Path, age_s: float = 0.0) -> Path:
    torch.save({"state_dict": {"w": torch.ones(2)}}, path)
    stamp = path.stat().st_mtime - age_s
    os.utime(path, (stamp, stamp))
    return path


def test_resume_last_takes_last_ckpt_or_none_when_no_epoch_ended(tmp_path: Path) -> None:
    _state(tmp_path)
    assert resolve_resume("last", tmp_path) == (None, tmp_path)  # stopped before its first epoch ended
    last = _checkpoint(tmp_path / LAST_CHECKPOINT)
    assert resolve_resume("last", tmp_path) == (last, tmp_path)


def test_resume_from_a_named_checkpoint_uses_its_folder(tmp_path: Path) -> None:
    run = tmp_path / "elsewhere"
    run.mkdir()
    _state(run)
    best = _checkpoint(run / "autoencoder-epoch=002.ckpt")
    assert resolve_resume(str(best), tmp_path / "checkpoints") == (best, run)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("empty folder", f"nothing to resume in {{folder}} (no {RUN_STATE_FILE})"),
        ("missing file", "--resume {folder}/nope.ckpt: no such checkpoint file"),
        ("no run state beside it", f"no {RUN_STATE_FILE} beside it; it is not a threat-ensemble checkpoint"),
    ],
)
def test_resume_refusals_name_what_is_missing(tmp_path: Path, case: str, message: str) -> None:
    resume = {
        "empty folder": "last",
        "missing file": str(tmp_path / "nope.ckpt"),
        "no run state beside it": str(_checkpoint(tmp_path / "stray.ckpt")),
    }[case]
    with pytest.raises(InputError) as error:
        resolve_resume(resume, tmp_path)
    assert message.format(folder=tmp_path) in str(error.value)


def test_a_damaged_run_state_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / RUN_STATE_FILE).write_text('{"data_fingerprint": "x", "unknown": 1}')
    with pytest.raises(InputError, match="unreadable run state .*start afresh without --resume"):
        RunState.load(tmp_path)


def test_differences_name_the_data_and_every_changed_option(tmp_path: Path) -> None:
    saved = _state(tmp_path, lr=0.003, seed=42)
    now = result_options(TrainConfig(lr=0.01, seed=42).to_dict())
    assert differences(saved, saved.data_fingerprint, saved.options) == []
    assert differences(saved, "0" * 64, now) == [
        "the training data differs (fingerprint mismatch)",
        "--lr was 0.003, now 0.01",
    ]


def test_a_fresh_run_clears_only_our_files(tmp_path: Path) -> None:
    ours = [RUN_STATE_FILE, LAST_CHECKPOINT, "autoencoder-epoch=004.ckpt", *TREE_FILES.values(), *LEGACY_TREE_FILES]
    theirs = ["notes.txt", "other-model.ckpt", "autoencoder-notes.txt"]
    for name in ours + theirs:
        (tmp_path / name).write_text("x")
    clear_previous_run(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(theirs)
    clear_previous_run(tmp_path / "absent")  # nothing there: nothing to do


def test_prepare_refuses_a_changed_run_unless_told_and_then_warns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "ckpt"
    fresh = TrainConfig(checkpoint_dir=str(folder), lr=0.003)
    state, ckpt = _prepare_run_state(fresh, "a" * 64, rank_zero=True)
    assert ckpt is None and state.data_fingerprint == "a" * 64 and folder.is_dir()
    state.save(folder)
    last = _checkpoint(folder / LAST_CHECKPOINT)

    same = TrainConfig(checkpoint_dir=str(folder), lr=0.003, resume="last")
    assert _prepare_run_state(same, "a" * 64, rank_zero=True)[1] == last
    changed = TrainConfig(checkpoint_dir=str(folder), lr=0.01, resume="last")
    with pytest.raises(InputError, match=r"--resume refused: --lr was 0.003, now 0.01 \(pass --resume-anyway"):
        _prepare_run_state(changed, "a" * 64, rank_zero=True)
    anyway = TrainConfig(checkpoint_dir=str(folder), lr=0.01, resume="last", resume_anyway=True)
    state, ckpt = _prepare_run_state(anyway, "b" * 64, rank_zero=True)
    assert ckpt == last and state.options["lr"] == 0.01 and state.data_fingerprint == "b" * 64
    assert "warning: resuming anyway although the training data differs" in capsys.readouterr().err


def test_a_fresh_run_on_another_rank_deletes_nothing(tmp_path: Path) -> None:
    _state(tmp_path)
    _checkpoint(tmp_path / LAST_CHECKPOINT)
    _prepare_run_state(TrainConfig(checkpoint_dir=str(tmp_path)), "f" * 64, rank_zero=False)
    assert (tmp_path / LAST_CHECKPOINT).is_file() and (tmp_path / RUN_STATE_FILE).is_file()


@pytest.mark.parametrize("rank_zero", [True, False])
def test_a_fresh_run_refuses_to_delete_an_interrupted_run_of_other_data_or_options(
    tmp_path: Path, rank_zero: bool
) -> None:
    folder = tmp_path / "ckpt"
    folder.mkdir()
    _state(folder, lr=0.003)  # interrupted: never completed
    last = _checkpoint(folder / LAST_CHECKPOINT)
    best = _checkpoint(folder / "autoencoder-epoch=002.ckpt")
    for fingerprint, lr, differs in (("b" * 64, 0.003, "the training data differs"), ("f" * 64, 0.01, "--lr was")):
        with pytest.raises(InputError) as error:
            _prepare_run_state(TrainConfig(checkpoint_dir=str(folder), lr=lr), fingerprint, rank_zero=rank_zero)
        message = str(error.value)
        assert message.startswith(f"--checkpoint-dir {folder}: holds an interrupted run of other data or options (")
        assert differs in message and "--resume continues it" in message, message
        assert message.endswith("or another --checkpoint-dir keeps both") and "\n" not in message
        assert last.is_file() and best.is_file() and (folder / RUN_STATE_FILE).is_file()
    # the same data and options: the fresh run computes exactly these again, so it starts afresh
    _prepare_run_state(TrainConfig(checkpoint_dir=str(folder), lr=0.003), "f" * 64, rank_zero=rank_zero)
    assert last.exists() is not rank_zero


@pytest.mark.parametrize("earlier", ["completed", "unreadable run state"])
def test_a_fresh_run_replaces_a_completed_or_unresumable_runs_checkpoints(tmp_path: Path, earlier: str) -> None:
    state = _state(tmp_path, lr=0.003)
    if earlier == "completed":  # its bundle is written: its checkpoints are safe to replace
        state.completed = True
        state.save(tmp_path)
    else:  # no --resume can use it
        (tmp_path / RUN_STATE_FILE).write_text("{")
    last = _checkpoint(tmp_path / LAST_CHECKPOINT)
    _prepare_run_state(TrainConfig(checkpoint_dir=str(tmp_path), lr=0.01), "b" * 64, rank_zero=True)
    assert not last.exists() and not (tmp_path / RUN_STATE_FILE).exists()


def test_a_damaged_checkpoint_falls_back_to_the_newest_readable_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    oldest = _checkpoint(tmp_path / "autoencoder-epoch=001.ckpt", age_s=30)
    newer = _checkpoint(tmp_path / "autoencoder-epoch=003.ckpt", age_s=20)
    last = _checkpoint(tmp_path / LAST_CHECKPOINT)
    assert _readable_checkpoint(last) == last
    last.write_bytes(last.read_bytes()[:100])  # a truncated write
    assert _readable_checkpoint(last) == newer
    assert f"warning: {last}: unreadable (" in capsys.readouterr().err
    newer.write_bytes(b"")
    assert _readable_checkpoint(last) == oldest
    oldest.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="is unreadable .* and no other checkpoint in .* loads; start afresh"):
        _readable_checkpoint(last)


STREAMED = {"data": "traffic/", "stream": True}


@pytest.mark.parametrize(
    ("option", "before", "after", "said"),
    [
        ("split_key", None, "host", "--split-key was None, now 'host'"),
        ("split_key", "host", "session", "--split-key was 'host', now 'session'"),
        ("sample_rows", 100_000, 50_000, "--sample-rows was 100000, now 50000"),
        ("shuffle_buffer_rows", 65_536, 4_096, "--shuffle-buffer-rows was 65536, now 4096"),
    ],
)
def test_resume_refuses_a_changed_streaming_option(
    tmp_path: Path, option: str, before: object, after: object, said: str
) -> None:
    """The streamed fingerprint hashes whole rows whatever the split key, and the training sample
    and the batch order are options, not data: only the guarded options see these changes."""
    folder = tmp_path / "ckpt"
    folder.mkdir()
    _state(folder, **STREAMED, **{option: before})
    _checkpoint(folder / LAST_CHECKPOINT)
    changed = TrainConfig(checkpoint_dir=str(folder), resume="last", **STREAMED, **{option: after})
    with pytest.raises(InputError, match=rf"^--resume refused: {said} \(pass --resume-anyway"):
        _prepare_run_state(changed, "f" * 64, rank_zero=True)
    same = TrainConfig(checkpoint_dir=str(folder), resume="last", **STREAMED, **{option: before})
    assert _prepare_run_state(same, "f" * 64, rank_zero=True)[1] == folder / LAST_CHECKPOINT


def test_a_run_state_without_a_guarded_option_is_refused_saying_so(tmp_path: Path) -> None:
    saved = _state(tmp_path, **STREAMED)
    del saved.options["sample_rows"]  # written before --sample-rows was guarded
    now = result_options(TrainConfig(**STREAMED).to_dict())
    assert differences(saved, saved.data_fingerprint, now) == [
        f"--sample-rows was not recorded, now {DEFAULT_SAMPLE_ROWS}"
    ]


@pytest.mark.parametrize(
    ("content", "said"),
    [
        ({"options": [1, 2]}, "'options' is a list, expected an object"),
        ({"trees": {"random_forest": 3}}, "'trees' 'random_forest' is a number, expected a string"),
        ({"completed": "yes"}, "'completed' is a string, expected true or false"),
        ({"mlflow_run_id": 7}, "'mlflow_run_id' is a number, expected a string or null"),
        ([1, 2], "expected a JSON object, got a list"),
    ],
    ids=["options a list", "a tree digest a number", "completed a string", "run id a number", "a list"],
)
def test_a_run_state_of_the_wrong_types_is_one_clear_error_and_a_fresh_run_replaces_it(
    tmp_path: Path, content: object, said: str
) -> None:
    import json

    folder = tmp_path / "ckpt"
    folder.mkdir()
    written = {**_state_dict(), **content} if isinstance(content, dict) else content
    (folder / RUN_STATE_FILE).write_text(json.dumps(written))
    resume = TrainConfig(checkpoint_dir=str(folder), resume="last")
    with pytest.raises(InputError) as caught:
        _prepare_run_state(resume, "f" * 64, rank_zero=True)
    path = folder / RUN_STATE_FILE
    assert str(caught.value) == f"{path}: unreadable run state ({said}); start afresh without --resume"
    state, _ = _prepare_run_state(TrainConfig(checkpoint_dir=str(folder)), "f" * 64, rank_zero=True)  # fresh: cleared
    assert state.options["seed"] == 42 and not (folder / RUN_STATE_FILE).exists()


def _state_dict() -> dict:
    from dataclasses import asdict

    return asdict(RunState(data_fingerprint="f" * 64, options=result_options(TrainConfig().to_dict())))


@pytest.mark.parametrize(
    "name", [LAST_CHECKPOINT, RUN_STATE_FILE, "autoencoder-epoch=003.ckpt", TREE_FILES["random_forest"]]
)
@pytest.mark.parametrize("resume", [None, "last"])
def test_a_folder_named_as_a_file_of_the_run_is_refused_by_name_and_kept(
    tmp_path: Path, name: str, resume: str | None
) -> None:
    folder = tmp_path / "ckpt"
    folder.mkdir()
    if name != RUN_STATE_FILE:
        _state(folder)
    (folder / name).mkdir()
    (folder / name / "keep.txt").write_text("mine")
    with pytest.raises(InputError) as caught:
        _prepare_run_state(TrainConfig(checkpoint_dir=str(folder), resume=resume), "f" * 64, rank_zero=True)
    assert str(caught.value) == (
        f"--checkpoint-dir {folder}: {name} is a folder, where the run keeps a file of that name; move it away, "
        "or pass another --checkpoint-dir"
    )
    assert (folder / name / "keep.txt").read_text() == "mine"
