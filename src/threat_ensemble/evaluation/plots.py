"""Diagnostic plots of a trained ensemble, written as PNG files: curves are easier to judge than
tables of numbers (where a model's precision collapses, how far attacks sit above the threshold).

matplotlib loads only inside :func:`write_plots`, and through ``matplotlib.figure.Figure`` rather
than pyplot, so importing this module is cheap and no global figure state or GUI backend is
involved (safe in a Lightning callback, a headless server or a thread)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from threat_ensemble.models.fusion import CUTOFF

PR_FILE = "pr_curves.png"
ROC_FILE = "roc_curves.png"
AE_HIST_FILE = "ae_error_hist.png"
CONFUSION_FILE = "confusion_matrix.png"
LOSS_FILE = "loss_curves.png"
PLOT_FILES = (PR_FILE, ROC_FILE, AE_HIST_FILE, CONFUSION_FILE, LOSS_FILE)

CURVES = (("ae", "autoencoder"), ("rf", "random forest"), ("if", "isolation forest"), ("ensemble", "ensemble"))
COLORS = {"ae": "tab:blue", "rf": "tab:green", "if": "tab:orange", "ensemble": "black"}
DPI = 100


def write_plots(
    folder: Path,
    y_true: np.ndarray,
    scores: dict[str, np.ndarray],
    ae_errors: np.ndarray,
    ae_threshold: float,
    history: dict[str, list[float]] | None,
) -> list[Path]:
    """Write the diagnostic PNGs into ``folder`` and return their paths, in :data:`PLOT_FILES` order.

    ``scores`` is :meth:`Ensemble.score`'s output on the test rows (``ae``, ``rf``, ``if``,
    ``ensemble`` and ``verdict``; ``verdict`` falls back to ``ensemble >= 0.5``). PR and ROC curves
    are skipped when ``y_true`` holds one class only (they are undefined), the loss plot when
    ``history`` has neither ``train_loss`` nor ``val_loss``."""
    from matplotlib.figure import Figure

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    y = np.asarray(y_true).astype(np.int64).ravel()
    written: list[Path] = []

    def save(fig: Any, name: str, left: float = 0.11, right: float = 0.97) -> None:
        # fixed margins, sized for these labels: tight_layout measures every tick label first and
        # cost more than drawing (about 0.15 s a figure)
        fig.subplots_adjust(left=left, right=right, bottom=0.11, top=0.92)
        path = folder / name
        fig.savefig(path, dpi=DPI, format="png")
        written.append(path)

    both_classes = 0 < int(y.sum()) < len(y)
    if both_classes:
        save(_pr_figure(Figure(figsize=(7, 5.5)), y, scores), PR_FILE)
        save(_roc_figure(Figure(figsize=(7, 5.5)), y, scores), ROC_FILE)
    save(
        _error_histogram(Figure(figsize=(8, 5)), y, np.asarray(ae_errors, np.float64), float(ae_threshold)),
        AE_HIST_FILE,
    )
    verdict = scores.get("verdict")
    if verdict is None:
        verdict = np.asarray(scores["ensemble"], np.float64) >= CUTOFF
    confusion = _confusion_figure(Figure(figsize=(5.5, 5)), y, np.asarray(verdict).astype(np.int64))
    save(confusion, CONFUSION_FILE, left=0.17, right=0.86)  # room for row labels and the colour bar
    curves = {k: [float(v) for v in (history or {}).get(k) or []] for k in ("train_loss", "val_loss")}
    if any(curves.values()):
        save(_loss_figure(Figure(figsize=(7, 4.5)), curves), LOSS_FILE)
    return written


def write_plots_or_warn(
    folder: Path,
    y_true: np.ndarray,
    scores: dict[str, np.ndarray],
    ae_errors: np.ndarray,
    ae_threshold: float,
    history: dict[str, list[float]] | None,
    warn: Callable[[str], None] = print,
) -> list[Path]:
    """:func:`write_plots` for use while a bundle is written: a plotting failure must not cost a
    trained model, so it warns, removes any plot it had written (a file the manifest does not list
    would fail the bundle's verification) and returns []."""
    try:
        return write_plots(folder, y_true, scores, ae_errors, ae_threshold, history)
    except Exception as exc:
        for name in PLOT_FILES:
            (Path(folder) / name).unlink(missing_ok=True)
        warn(f"warning: plots not written ({type(exc).__name__}: {exc})")
        return []


def _operating_point(y: np.ndarray, score: np.ndarray) -> tuple[float, float, float]:
    """(precision, recall, fpr) at the cutoff the verdicts use, to mark on the curves."""
    flagged = score >= CUTOFF
    tp = int((flagged & (y == 1)).sum())
    fp = int((flagged & (y == 0)).sum())
    precision = tp / (tp + fp) if tp + fp else 1.0
    return precision, tp / max(int(y.sum()), 1), fp / max(int((y == 0).sum()), 1)


def _line_style(key: str) -> dict[str, Any]:
    """The ensemble dashed and on top, the members solid beneath it: where the ensemble follows a
    member (often the forest), both stay visible."""
    if key == "ensemble":
        return {"color": COLORS[key], "lw": 2.0, "ls": "--", "zorder": 3}
    return {"color": COLORS[key], "lw": 1.6, "zorder": 2}


def _pr_figure(fig: Any, y: np.ndarray, scores: dict[str, np.ndarray]) -> Any:
    from sklearn.metrics import average_precision_score, precision_recall_curve

    ax = fig.add_subplot()
    for key, label in CURVES:
        score = np.asarray(scores[key], np.float64)
        precision, recall, _ = precision_recall_curve(y, score, drop_intermediate=True)
        ap = average_precision_score(y, score)
        ax.step(recall, precision, where="post", label=f"{label} (AP {ap:.3f})", **_line_style(key))
        p, r, _ = _operating_point(y, score)
        ax.plot([r], [p], "o", color=COLORS[key], ms=7, mec="black", mew=0.8)
    prevalence = float(y.mean())
    ax.axhline(prevalence, color="grey", ls=":", lw=1, label=f"chance (attack share {prevalence:.2f})")
    ax.plot([], [], "o", color="grey", label="operating point (score >= 0.5)")
    ax.set(xlim=(0, 1.01), ylim=(0, 1.02), xlabel="recall (share of attacks flagged)", ylabel="precision")
    ax.set_title(f"Precision-recall on {len(y)} test rows ({int(y.sum())} attacks)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=9)
    return fig


def _roc_figure(fig: Any, y: np.ndarray, scores: dict[str, np.ndarray]) -> Any:
    from sklearn.metrics import roc_auc_score, roc_curve

    ax = fig.add_subplot()
    floor = 0.5 / max(int((y == 0).sum()), 1)  # half the smallest non-zero FPR: where FPR 0 is drawn
    for key, label in CURVES:
        score = np.asarray(scores[key], np.float64)
        fpr, tpr, _ = roc_curve(y, score)
        auc = roc_auc_score(y, score)
        ax.plot(np.maximum(fpr, floor), tpr, label=f"{label} (AUC {auc:.3f})", **_line_style(key))
        _, r, f = _operating_point(y, score)
        ax.plot([max(f, floor)], [r], "o", color=COLORS[key], ms=7, mec="black", mew=0.8)
    chance = np.geomspace(floor, 1, 50)
    ax.plot(chance, chance, color="grey", ls=":", lw=1, label="chance")
    ax.plot([], [], "o", color="grey", label="operating point (score >= 0.5)")
    # a log FPR axis: detectors differ at FPRs of 0.1% to 5%, which a linear axis squeezes into its edge
    ax.set_xscale("log")
    ax.set(xlim=(floor, 1), ylim=(0, 1.02), xlabel="false-positive rate (log scale; 0 drawn at the left edge)")
    ax.set_ylabel("true-positive rate (recall)")
    ax.set_title(f"ROC on {len(y)} test rows ({int(y.sum())} attacks)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=9)
    return fig


def _error_histogram(fig: Any, y: np.ndarray, errors: np.ndarray, threshold: float) -> Any:
    ax = fig.add_subplot()
    positive = errors[np.isfinite(errors) & (errors > 0)]
    if positive.size:
        floor = float(positive.min())
        low = min(floor, threshold) if threshold > 0 else floor
        high = max(float(positive.max()), threshold, low * 10)
        bins = np.logspace(np.log10(low) - 0.05, np.log10(high) + 0.05, 60)
        clipped = np.clip(np.nan_to_num(errors, nan=floor, posinf=high), floor, None)
        for cls, label, color in ((0, "normal", "tab:blue"), (1, "attack", "tab:red")):
            values = clipped[y == cls]
            if values.size:
                ax.hist(values, bins=bins, color=color, alpha=0.5, label=f"{label} ({values.size} rows)")
                ax.hist(values, bins=bins, color=color, histtype="step", lw=1.2)
        ax.set_xscale("log")
    if threshold > 0:
        above = [(errors[y == c] >= threshold).mean() if (y == c).any() else float("nan") for c in (0, 1)]
        ax.axvline(
            threshold,
            color="black",
            ls="--",
            lw=1.5,
            label=f"threshold {threshold:.3g} (flags {above[0]:.1%} normal, {above[1]:.1%} attack)",
        )
    ax.set(xlabel="reconstruction error (each feature in units of its usual error, log scale)", ylabel="test rows")
    ax.set_title("Autoencoder reconstruction error: normal vs attack test rows")
    ax.grid(alpha=0.3, which="major")
    ax.legend(loc="best", fontsize=9, framealpha=0.9)
    return fig


def _confusion_figure(fig: Any, y: np.ndarray, verdict: np.ndarray) -> Any:
    matrix = np.zeros((2, 2), dtype=np.int64)
    np.add.at(matrix, (np.clip(y, 0, 1), np.clip(verdict, 0, 1)), 1)
    row_share = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    ax = fig.add_subplot()
    image = ax.imshow(row_share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    for i in range(2):
        for j in range(2):
            color = "white" if row_share[i, j] > 0.5 else "black"
            ax.text(
                j, i, f"{matrix[i, j]}\n({row_share[i, j]:.1%})", ha="center", va="center", color=color, fontsize=13
            )
    names = ["normal", "attack"]
    ax.set_xticks([0, 1], labels=names)
    ax.set_yticks([0, 1], labels=names)
    ax.set(xlabel="ensemble verdict", ylabel="true label")
    ax.set_title(f"Ensemble confusion matrix ({len(y)} test rows)")
    return fig


def _loss_figure(fig: Any, curves: dict[str, list[float]]) -> Any:
    ax = fig.add_subplot()
    styles = {"train_loss": ("train", "tab:blue", "o-"), "val_loss": ("validation", "tab:orange", "s-")}
    finite: list[float] = []
    for key, values in curves.items():
        if not values:
            continue
        label, color, style = styles[key]
        epochs = np.arange(1, len(values) + 1)
        ax.plot(epochs, values, style, color=color, ms=4, lw=1.5, label=label)
        finite.extend(v for v in values if np.isfinite(v))
    positive = [v for v in finite if v > 0]
    if positive and len(positive) == len(finite) and max(positive) / min(positive) > 20:
        ax.set_yscale("log")
    n_epochs = max(len(v) for v in curves.values())
    if n_epochs <= 20:
        ax.set_xticks(np.arange(1, n_epochs + 1))
    ax.set(xlabel="epoch", ylabel="reconstruction loss (MSE)")
    ax.set_title("Autoencoder loss per epoch")
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def loss_history(client: Any, run_id: str) -> dict[str, list[float]]:
    """``train_loss`` and ``val_loss`` per epoch from an MLflow run (``client`` is an
    ``MlflowClient``), so the loss plot also covers the epochs of a run that was resumed.
    Values are ordered by step; a step logged twice (an epoch replayed after a crash) keeps its
    last value."""
    history: dict[str, list[float]] = {}
    for key in ("train_loss", "val_loss"):
        by_step: dict[int, tuple[int, float]] = {}
        for m in client.get_metric_history(run_id, key):
            if m.step not in by_step or m.timestamp >= by_step[m.step][0]:
                by_step[m.step] = (m.timestamp, float(m.value))
        history[key] = [by_step[s][1] for s in sorted(by_step)]
    return history
