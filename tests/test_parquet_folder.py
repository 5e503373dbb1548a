"""--data DIR (or a glob) of Parquet shards: the same table as one file, every shard's columns
checked against the first's before anything is read, one line naming the shard that is wrong."""

from __future__ import annotations

import subprocess
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import train_cmd
from in_process import run_train
from threat_ensemble.data.tables import load_labelled_table, read_raw_table
from threat_ensemble.errors import InputError


def _shards(folder: Path, frame: pd.DataFrame, n: int = 3) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, part in enumerate(np.array_split(np.arange(len(frame)), n)):
        path = folder / f"part-{i:03d}.parquet"
        frame.iloc[part].to_parquet(path, index=False)
        paths.append(path)
    return paths


@pytest.fixture()
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {"bytes": rng.integers(0, 1000, 300), "proto": rng.choice(["tcp", "udp"], 300), "label": [0, 1, 0] * 100}
    )


def test_a_folder_and_a_glob_read_as_the_whole_table(tmp_path: Path, frame: pd.DataFrame) -> None:
    _shards(tmp_path / "flows" / "day=1", frame.iloc[:150], 2)  # partition subfolders are read too
    _shards(tmp_path / "flows" / "day=2", frame.iloc[150:], 2)
    (tmp_path / "flows" / "_SUCCESS").write_text("")  # markers that writers leave are not data
    whole = read_raw_table(tmp_path / "flows")
    pd.testing.assert_frame_equal(whole, frame.reset_index(drop=True), check_dtype=False)
    globbed = read_raw_table(str(tmp_path / "flows" / "day=2" / "*.parquet"))
    assert len(globbed) == 150
    table = load_labelled_table(tmp_path / "flows")
    assert table.n_attack == 100 and list(table.features.columns) == ["bytes", "proto"]


def test_a_shard_that_differs_is_named_before_anything_is_read(tmp_path: Path, frame: pd.DataFrame) -> None:
    cases = {
        "no label": (lambda f: f.drop(columns="label"), "missing ['label']"),
        "extra column": (lambda f: f.assign(note="x"), "extra ['note']"),
        "text where numbers were": (lambda f: f.assign(bytes=f["bytes"].astype(str)), "column 'bytes' is"),
    }
    for name, (change, expected) in cases.items():
        folder = tmp_path / name.replace(" ", "-")
        paths = _shards(folder, frame)
        change(frame.iloc[:10]).to_parquet(paths[1], index=False)
        with pytest.raises(InputError) as info:
            read_raw_table(folder)
        assert str(info.value).startswith(str(paths[1])) and expected in str(info.value), name


def test_empty_folders_damaged_shards_and_unmatched_globs(tmp_path: Path, frame: pd.DataFrame) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="a folder with no Parquet files"):
        read_raw_table(tmp_path / "empty")
    with pytest.raises(InputError, match="no Parquet file matches this pattern"):
        read_raw_table(str(tmp_path / "nowhere" / "*.parquet"))
    paths = _shards(tmp_path / "damaged", frame)
    paths[2].write_bytes(paths[2].read_bytes()[:40])  # a truncated shard in the middle
    with pytest.raises(InputError) as info:
        read_raw_table(tmp_path / "damaged")
    assert str(info.value).startswith(str(paths[2])) and "not a readable Parquet file" in str(info.value)


@pytest.mark.parametrize("name", ["d[1].parquet", "d*.parquet", "d?.parquet"])
def test_a_parquet_file_whose_name_holds_glob_characters_is_that_file(
    tmp_path: Path, frame: pd.DataFrame, name: str
) -> None:
    """--stream's datasets: a file that exists is read as itself, never as a pattern (which would
    read d1.parquet instead)."""
    from threat_ensemble.data.stream import ParquetStream
    from threat_ensemble.data.tables import parquet_files

    frame.iloc[:30].to_parquet(tmp_path / name, index=False)
    frame.to_parquet(tmp_path / "d1.parquet", index=False)  # what the pattern would match
    assert parquet_files(str(tmp_path / name)) == [tmp_path / name]
    assert ParquetStream(str(tmp_path / name)).n_rows == 30


@pytest.mark.slow
def test_train_on_a_folder_of_shards_matches_the_single_file(tmp_path: Path) -> None:
    from threat_ensemble.data.default_data import default_frame

    table = default_frame().sample(3000, random_state=2).reset_index(drop=True)
    table.to_parquet(tmp_path / "one.parquet", index=False)
    _shards(tmp_path / "shards", table, 4)
    gates = {}
    for name, data in (("one", "one.parquet"), ("shards", "shards")):
        proc = run_train(tmp_path, "--data", data, "--max-epochs", "2", "--quiet", "--tracking-uri",
                         f"sqlite:///{tmp_path / 'mlflow.db'}", "--output-dir", f"b-{name}", "--checkpoint-dir",
                         f"c-{name}")  # fmt: skip
        assert proc.returncode in (0, 3), proc.stderr[-3000:]
        gates[name] = pd.read_json(tmp_path / f"b-{name}" / "gate.json", typ="series")
    assert gates["one"]["metrics"] == gates["shards"]["metrics"]  # the same rows in the same order
    bad = subprocess.run(
        train_cmd("--data", "shards", "--test-data", str(tmp_path / "nothing-*.parquet"), "--quiet"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "no Parquet file matches this pattern" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_one_file_is_read_once_whatever_links_and_loops_lead_to_it(tmp_path: Path, frame: pd.DataFrame) -> None:
    """Issue 34: a quoted ** glob followed a symlink loop and a link out of the folder, and read one
    file 41 times (copies in both training and test rows). One file, one read; links out not followed."""
    from threat_ensemble.data.tables import parquet_files

    flows = tmp_path / "flows"
    _shards(flows, frame, 3)
    (flows / "loop").symlink_to(flows, target_is_directory=True)  # flows/loop/loop/... is flows again
    outside = tmp_path / "elsewhere"
    _shards(outside, frame.iloc[:30], 1)
    (flows / "out").symlink_to(outside, target_is_directory=True)  # a link out of the folder
    (flows / "again.parquet").symlink_to(flows / "part-000.parquet")  # a second name for a shard
    pattern = str(flows / "**" / "*.parquet")
    with pytest.warns(UserWarning, match=r"1 Parquet file reached through a link out of .*flows not read"):
        files = parquet_files(pattern)
    assert sorted(f.resolve().name for f in files) == ["part-000.parquet", "part-001.parquet", "part-002.parquet"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert len(read_raw_table(pattern)) == len(frame)  # every row once
        # the folder form: subfolder links are not walked, a second name for a shard is read once
        folder = parquet_files(str(flows))
        assert sorted(f.resolve().name for f in folder) == ["part-000.parquet", "part-001.parquet", "part-002.parquet"]
        assert len(read_raw_table(flows)) == len(frame)
