"""The built-in default data set: 20,000 generated HTTP requests to a made-up outdoor-gear shop (normal
browsing with its pages' static files of the common types, crawlers, monitors and API clients, and
its oddities; attacks: injections, scanners, credential stuffing, enumeration), featurized by
:mod:`threat_ensemble.http.features` and shipped as ``default_traffic.parquet`` beside this module.
The repository's ``datasets/default_traffic.py`` generates the requests and writes the file again
(``--write-default``); ``tests/test_default_data.py`` checks that the file is what it generates."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from threat_ensemble.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

    from threat_ensemble.data.tables import LabelledTable

DEFAULT_ROWS = 20000
DEFAULT_DATA_FILE = Path(__file__).with_name("default_traffic.parquet")
SOURCE = "default data (generated HTTP traffic)"


def default_frame() -> pd.DataFrame:
    """The whole data set: the feature columns and ``label`` (0 normal, 1 attack), in file order."""
    import pandas as pd

    return pd.read_parquet(DEFAULT_DATA_FILE)


def check_default_rows(n_rows: int) -> None:
    if n_rows > DEFAULT_ROWS:
        message = f"the built-in data set has {DEFAULT_ROWS} rows; give --data for more"
        raise InputError(f"--default-rows {n_rows}: {message}")


def default_table(n_rows: int = DEFAULT_ROWS, seed: int = 42) -> LabelledTable:
    """The trainer's default data: all rows, or a seeded sample of ``n_rows`` of them."""
    import numpy as np

    from threat_ensemble.data.tables import LabelledTable

    check_default_rows(n_rows)
    frame = default_frame()
    if n_rows < len(frame):
        frame = frame.sample(n=n_rows, random_state=seed).sort_index().reset_index(drop=True)
    return LabelledTable(features=frame.drop(columns=["label"]), y=frame["label"].to_numpy(np.int64), source=SOURCE)
