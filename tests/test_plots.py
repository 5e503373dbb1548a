"""The diagnostic plots: every PNG is written, opens, has a sensible size and is not blank."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from threat_ensemble.evaluation.plots import (
    AE_HIST_FILE,
    CONFUSION_FILE,
    LOSS_FILE,
    PLOT_FILES,
    PR_FILE,
    ROC_FILE,
    loss_history,
    write_plots,
    write_plots_or_warn,
)

HISTORY = {"train_loss": [1.2, 0.6, 0.41, 0.33, 0.3], "val_loss": [0.9, 0.5, 0.42, 0.37, 0.36]}


def synthetic(n: int = 2000, seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray, float]:
    """Labels, member and fused scores that separate the classes imperfectly, and heavy-tailed
    reconstruction errors (log-normal, attacks higher)."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.2).astype(np.int64)
    errors = np.exp(rng.normal(np.where(y == 1, 1.5, -0.5), 1.0))
    threshold = float(np.quantile(errors[y == 0], 0.99))
    scores = {
        "ae": np.minimum(errors / (2 * threshold), 1.0),
        "rf": np.clip(y * 0.7 + rng.normal(0.15, 0.15, n), 0, 1),
        "if": np.clip(0.45 + 0.1 * y + rng.normal(0, 0.05, n), 0, 1),
    }
    scores["ensemble"] = (scores["ae"] + scores["rf"] + scores["if"]) / 3
    scores["verdict"] = (scores["ensemble"] >= 0.5).astype(np.int64)
    return y, scores, errors, threshold


def read_png(path: Path) -> np.ndarray:
    from matplotlib.image import imread

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG"
    return imread(path)


def assert_non_trivial(path: Path) -> None:
    image = read_png(path)
    height, width = image.shape[:2]
    assert 300 <= height <= 1500 and 400 <= width <= 1500, f"{path.name}: odd size {width}x{height}"
    rgb = image[..., :3]
    assert rgb.std() > 0.05, f"{path.name}: looks blank (pixel std {rgb.std():.4f})"
    # Curves, bars and text: a real plot has many distinct colours, not a single flat fill.
    packed = (rgb * 255).astype(np.uint32) @ np.array([1 << 16, 1 << 8, 1], dtype=np.uint32)
    assert len(np.unique(packed)) > 50, f"{path.name}: too few colours"


@pytest.fixture(scope="module")
def full_set(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    y, scores, errors, threshold = synthetic()
    return write_plots(tmp_path_factory.mktemp("plots"), y, scores, errors, threshold, HISTORY)


def test_all_plots_written_and_non_trivial(full_set: list[Path]) -> None:
    paths = full_set
    assert [p.name for p in paths] == list(PLOT_FILES)
    for path in paths:
        assert path.is_file()
        assert_non_trivial(path)


def test_plots_differ_from_each_other(full_set: list[Path]) -> None:
    """Each file holds its own figure, not one figure saved five times."""
    assert len({p.read_bytes() for p in full_set}) == len(full_set)


def test_no_history_no_loss_plot(tmp_path: Path) -> None:
    y, scores, errors, threshold = synthetic(500)
    for history in (None, {"train_loss": [], "val_loss": []}):
        names = [p.name for p in write_plots(tmp_path / str(id(history)), y, scores, errors, threshold, history)]
        assert LOSS_FILE not in names and CONFUSION_FILE in names


def test_one_class_skips_curves_but_keeps_the_rest(tmp_path: Path) -> None:
    y, scores, errors, threshold = synthetic(500)
    y = np.zeros_like(y)
    names = [p.name for p in write_plots(tmp_path, y, scores, errors, threshold, {"val_loss": [0.5, 0.4]})]
    assert names == [AE_HIST_FILE, CONFUSION_FILE, LOSS_FILE]
    for name in names:
        assert_non_trivial(tmp_path / name)


def test_odd_errors_and_missing_verdict(tmp_path: Path) -> None:
    """Zero, NaN and infinite errors and a zero threshold do not break the histogram; without a
    ``verdict`` the confusion matrix uses ``ensemble >= 0.5``."""
    y, scores, errors, _ = synthetic(500)
    errors[:5] = [0.0, np.nan, np.inf, -1.0, 1e-30]
    del scores["verdict"]
    paths = write_plots(tmp_path, y, scores, errors, 0.0, None)
    assert [p.name for p in paths] == [PR_FILE, ROC_FILE, AE_HIST_FILE, CONFUSION_FILE]
    for path in paths:
        assert_non_trivial(path)


def test_loss_history_orders_by_step_and_keeps_replayed_epoch_last() -> None:
    def metric(step: int, value: float, ts: int) -> SimpleNamespace:
        return SimpleNamespace(step=step, value=value, timestamp=ts)

    logged = {
        "train_loss": [metric(20, 0.5, 2), metric(10, 0.9, 1), metric(20, 0.4, 3)],  # epoch 2 replayed
        "val_loss": [metric(10, 0.8, 1)],
    }
    client = SimpleNamespace(get_metric_history=lambda run_id, key: logged.get(key, []))
    assert loss_history(client, "run") == {"train_loss": [0.9, 0.4], "val_loss": [0.8]}


def test_import_is_cheap() -> None:
    """matplotlib loads only when plots are written."""
    import subprocess
    import sys

    code = "import sys, threat_ensemble.evaluation.plots; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_tiny_test_set(tmp_path: Path) -> None:
    y, scores, errors, threshold = synthetic(3, seed=3)
    y[:2] = [0, 1]
    paths = write_plots(tmp_path, y, scores, errors, threshold, HISTORY)
    assert len(paths) == len(PLOT_FILES)


def test_failure_warns_and_leaves_no_partial_plots(tmp_path: Path) -> None:
    """A broken input (here no ``rf`` scores) after some PNGs exist: no PNG is left behind."""
    y, scores, errors, threshold = synthetic(200)
    del scores["rf"]
    messages: list[str] = []
    (tmp_path / "gate.json").write_text("{}")
    assert write_plots_or_warn(tmp_path, y, scores, errors, threshold, None, warn=messages.append) == []
    assert [p.name for p in tmp_path.iterdir()] == ["gate.json"]
    assert len(messages) == 1 and "plots not written" in messages[0] and "rf" in messages[0]
