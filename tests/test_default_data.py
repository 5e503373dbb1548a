"""The shipped default data set is what datasets/default_traffic.py generates, and --default-rows
takes a seeded sample of it."""

from __future__ import annotations

import subprocess

import numpy as np
import pandas as pd
import pytest

from conftest import train_cmd
from threat_ensemble.data.default_data import DEFAULT_ROWS, default_frame, default_table
from threat_ensemble.errors import InputError


def test_the_shipped_file_is_what_the_generator_makes_now() -> None:
    """Regenerate with ``python datasets/default_traffic.py --write-default`` after changing the
    generator or the featurizer."""
    from default_traffic import generate_default_traffic

    pd.testing.assert_frame_equal(default_frame(), generate_default_traffic(DEFAULT_ROWS, seed=42))


def test_default_rows_is_a_seeded_sample_of_the_data_set() -> None:
    whole = default_table()
    assert len(whole.y) == DEFAULT_ROWS and set(np.unique(whole.y)) == {0, 1}
    part, again, other = default_table(3000, 42), default_table(3000, 42), default_table(3000, 7)
    assert len(part.y) == 3000 and 0 < part.y.mean() < 1
    pd.testing.assert_frame_equal(part.features, again.features)
    assert not part.features.equals(other.features)
    assert list(part.features.columns) == list(whole.features.columns)


def test_more_rows_than_the_data_set_has_is_refused_by_name() -> None:
    expected = rf"--default-rows {DEFAULT_ROWS + 1}: the built-in data set has {DEFAULT_ROWS} rows"
    with pytest.raises(InputError, match=expected):
        default_table(DEFAULT_ROWS + 1)
    done = subprocess.run(train_cmd("--default-rows", str(DEFAULT_ROWS + 1)), capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [f"error: {expected}; give --data for more"]
