"""Exact resumes: the run's own state beside Lightning's checkpoints, RNG state in every checkpoint,
and the fitted trees as hashed side files (never pickled into a checkpoint, so loading stays
``weights_only``)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from threat_ensemble.errors import InputError
from threat_ensemble.files import atomic_write

RUN_STATE_FILE = "run_state.json"
LAST_CHECKPOINT = "last.ckpt"
TREE_FILES = {"random_forest": "random_forest.skops", "isolation_forest": "isolation_forest.skops"}
# Side files an older version left (pickles): removed by a fresh run, never loaded.
LEGACY_TREE_FILES = ("random_forest.joblib", "isolation_forest.joblib")
# Options that change what a run computes: a resume with any of them changed is refused.
RESULT_OPTIONS = (
    "data",
    "test_data",
    "label_column",
    "normal_label",
    "no_header",
    "drop_columns",
    "id_columns",
    "impute",
    "default_rows",
    "split_key",  # a streamed run's split: the fingerprint hashes whole rows whatever the key
    "sample_rows",  # the streamed training sample the preprocessing and the forests are fitted on
    "shuffle_buffer_rows",  # the order of a streamed epoch's batches
    "max_epochs",
    "batch_size",
    "lr",
    "patience",
    "seed",
    "threshold_percentile",
    "fusion",
    "target_fpr",
    "weights",
    "min_pr_auc",
    "min_f1",
    "min_recall",
    "max_fpr",
)


@dataclass
class RunState:
    """What a resumed run needs besides Lightning's checkpoint: which data and options it was
    started with, its MLflow run, whether the autoencoder finished, and the tree side files."""

    data_fingerprint: str
    options: dict[str, Any]
    mlflow_run_id: str | None = None
    trees: dict[str, str] = field(default_factory=dict)  # name -> sha256 of the side file
    completed: bool = False
    bundle_dir: str | None = None  # where the finished run wrote its bundle, and the manifest's sha256
    bundle_digest: str | None = None

    @classmethod
    def load(cls, folder: str | Path) -> RunState | None:
        path = Path(folder) / RUN_STATE_FILE
        if not path.is_file():
            return None
        try:
            content = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(content, dict):
                raise ValueError(f"expected a JSON object, got {_kind(content)}")
            state = cls(**content)
            for name, kinds in RUN_STATE_TYPES.items():  # a hand-edited or foreign file: each field its type
                value = getattr(state, name)
                if not isinstance(value, kinds):
                    expected = " or ".join(_KIND_NAMES[k] for k in kinds)
                    raise ValueError(f"{name!r} is {_kind(value)}, expected {expected}")
            odd = [k for k, v in state.trees.items() if not isinstance(v, str)]
            if odd:
                raise ValueError(f"'trees' {odd[0]!r} is {_kind(state.trees[odd[0]])}, expected a string")
        except (ValueError, TypeError, UnicodeDecodeError) as exc:
            raise InputError(f"{path}: unreadable run state ({exc}); start afresh without --resume") from None
        return state

    def save(self, folder: str | Path) -> None:
        atomic_write_text(Path(folder) / RUN_STATE_FILE, json.dumps(asdict(self), indent=2) + "\n")


_KIND_NAMES = {
    dict: "an object", list: "a list", str: "a string", bool: "true or false", int: "a number", float: "a number",
    type(None): "null",
}  # fmt: skip
RUN_STATE_TYPES: dict[str, tuple[type, ...]] = {
    "data_fingerprint": (str,),
    "options": (dict,),
    "mlflow_run_id": (str, type(None)),
    "trees": (dict,),
    "completed": (bool,),
    "bundle_dir": (str, type(None)),
    "bundle_digest": (str, type(None)),
}


def _kind(value: object) -> str:
    return _KIND_NAMES.get(type(value), f"a {type(value).__name__}")


def check_checkpoint_names(checkpoint_dir: str | Path) -> None:
    """Each name a run writes or reads in the checkpoint folder (``last.ckpt``, the best epoch's,
    ``run_state.json``, the tree files) is a file or absent: a folder (or anything else) of that
    name is refused by name before a run clears, resumes or writes it."""
    folder = Path(checkpoint_dir)
    if not folder.is_dir():
        return
    ours = {RUN_STATE_FILE, LAST_CHECKPOINT, *TREE_FILES.values(), *LEGACY_TREE_FILES}
    for path in sorted(folder.iterdir()):
        if (path.name in ours or _is_epoch_checkpoint(path.name)) and not path.is_file():
            kind = "a folder" if path.is_dir() else "not a regular file"
            raise InputError(
                f"--checkpoint-dir {folder}: {path.name} is {kind}, where the run keeps a file of that name; "
                "move it away, or pass another --checkpoint-dir"
            )


def _is_epoch_checkpoint(name: str) -> bool:
    return name.startswith("autoencoder-") and name.endswith(".ckpt")


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """``data`` as ``path``, whole or not at all."""
    atomic_write(path, lambda fh: fh.write(data))


def result_options(config: dict[str, Any]) -> dict[str, Any]:
    return {k: config[k] for k in RESULT_OPTIONS}


def differences(saved: RunState, fingerprint: str, options: dict[str, Any]) -> list[str]:
    """Human-readable list of what differs between a saved run and the one being resumed."""
    diffs = []
    if saved.data_fingerprint != fingerprint:
        diffs.append("the training data differs (fingerprint mismatch)")
    for key in RESULT_OPTIONS:
        new = options.get(key)
        if key not in saved.options:  # a run state written before the option was guarded
            diffs.append(f"--{key.replace('_', '-')} was not recorded, now {new!r}")
        elif saved.options[key] != new:
            diffs.append(f"--{key.replace('_', '-')} was {saved.options[key]!r}, now {new!r}")
    return diffs


def resolve_resume(resume: str, checkpoint_dir: str | Path) -> tuple[Path | None, Path]:
    """The checkpoint to resume from (None when the run was stopped before its first epoch
    ended) and the folder holding the run state."""
    if resume == "last":
        folder = Path(checkpoint_dir)
        if not (folder / RUN_STATE_FILE).is_file():
            raise InputError(f"--resume: nothing to resume in {folder} (no {RUN_STATE_FILE}); run without --resume")
        last = folder / LAST_CHECKPOINT
        return (last if last.is_file() else None), folder
    path = Path(resume)
    if not path.is_file():
        raise InputError(f"--resume {path}: no such checkpoint file")
    if not (path.parent / RUN_STATE_FILE).is_file():
        raise InputError(f"--resume {path}: no {RUN_STATE_FILE} beside it; it is not a threat-ensemble checkpoint")
    return path, path.parent


def check_fresh_start(checkpoint_dir: str | Path, fingerprint: str, options: dict[str, Any]) -> None:
    """A fresh run (no ``--resume``) is about to clear the checkpoint folder's files of ours:
    refuse (exit 2) when they are an interrupted run's of other data or other options, which
    ``--resume`` could still continue and the fresh run would not rebuild. Cleared as before: a
    completed run's (its bundle is written), an interrupted run's of the same data and options
    (the fresh run computes exactly those again), and a run state that cannot be read (no
    ``--resume`` can use it)."""
    try:
        saved = RunState.load(checkpoint_dir)
    except InputError:
        return
    if saved is None or saved.completed:
        return
    diffs = differences(saved, fingerprint, options)
    if diffs:
        more = f" and {len(diffs) - 1} more" if len(diffs) > 1 else ""
        raise InputError(
            f"--checkpoint-dir {checkpoint_dir}: holds an interrupted run of other data or options "
            f"({diffs[0]}{more}) that a fresh run would delete; --resume continues it (with its data and "
            "options), or another --checkpoint-dir keeps both"
        )


def clear_previous_run(checkpoint_dir: str | Path) -> None:
    """A fresh run starts from an empty state: remove our own files from the checkpoint folder so
    Lightning does not version names (``last-v1.ckpt``) and no stale tree is reused."""
    folder = Path(checkpoint_dir)
    if not folder.is_dir():
        return
    ours = {RUN_STATE_FILE, LAST_CHECKPOINT, *TREE_FILES.values(), *LEGACY_TREE_FILES}
    for path in folder.iterdir():
        if path.name in ours or _is_epoch_checkpoint(path.name):
            path.unlink()
