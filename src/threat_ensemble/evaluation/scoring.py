"""The one scoring function: labelled raw rows, a chunk at a time, through a trained ensemble's
``score``. The stacked fusion's fit (validation rows), the gate (test rows), the champion comparison
(--promote) and ``scripts/score.py`` all call :func:`score_rows`, so a member added to the ensemble
is scored everywhere by adding it in one place (``ThreatEnsemble.score``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd

from threat_ensemble.data.preprocessing import UnseenCategories, warn_unseen

Scores = dict[str, np.ndarray]
# one chunk of rows to score: the raw feature rows (a DataFrame, or rows already checked by the
# ensemble) and their 0/1 labels, or None for unlabelled rows
Chunk = tuple[Any, np.ndarray | None]


class Scorer(Protocol):
    """What :func:`score_rows` needs of a trained ensemble (``models.ensemble.ThreatEnsemble``)."""

    def check(self, frame: pd.DataFrame, source: str = ..., impute: bool = ..., **options: bool) -> Any: ...

    def score(self, rows: Any, source: str = ..., *, unseen: UnseenCategories | None = ...) -> Scores: ...


def score_rows(
    ensemble: Scorer,
    chunks: Iterable[Chunk],
    source: str,
    *,
    n_rows: int | None = None,
    impute: bool = False,
    unseen: UnseenCategories | None = None,
) -> tuple[Scores, np.ndarray | None]:
    """Every chunk's scores (each member's, the fused score, the verdict) and labels, in order, as
    one array per score. ``n_rows`` (the total, when known): the arrays are filled in place instead
    of concatenated (a streamed table's millions of rows need no second copy). A chunk's raw frame
    is checked by the ensemble (``impute``: non-finite numbers are filled with training medians
    instead of refused), without warnings: a table is checked, with warnings, where it is read. Text
    values never seen in training are counted over all chunks and warned about once; with
    ``unseen`` (a counter of the caller's: the test loop, scoring a table a chunk a step and warning
    once at its end; the fusion fit, which never warns about validation rows) they are counted into
    it and not warned about here. Labels: None when any chunk has none."""
    warn = unseen is None
    if unseen is None:
        unseen = UnseenCategories()
    parts: list[Scores] = []
    labels: list[np.ndarray] = []
    filled: Scores = {}
    y_filled = np.empty(n_rows or 0, np.int64)
    at, unlabelled = 0, False
    for rows, y in chunks:
        if isinstance(rows, pd.DataFrame):
            rows = ensemble.check(rows, source, impute, warn=False)
        scores = ensemble.score(rows, source, unseen=unseen)
        if y is None:
            unlabelled = True
        n = len(next(iter(scores.values())))
        if n_rows is None:
            parts.append(scores)
            labels.append(np.asarray(y if y is not None else np.zeros(n, np.int64)))
            continue
        if at + n > n_rows:
            raise ValueError(f"{source}: more rows than the {n_rows} announced")
        for key, values in scores.items():
            filled.setdefault(key, np.empty(n_rows, values.dtype))[at : at + n] = values
        if y is not None:
            y_filled[at : at + n] = y
        at += n
    if warn:
        warn_unseen(unseen, source)
    if n_rows is None:
        if not parts:
            return {}, None if unlabelled else np.empty(0, np.int64)
        out = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
        return out, None if unlabelled else np.concatenate(labels).astype(np.int64, copy=False)
    if at != n_rows:
        raise ValueError(f"{source}: {at} rows scored, {n_rows} announced")
    return filled, None if unlabelled else y_filled


@dataclass(frozen=True)
class LabelledRows:
    """Labelled raw rows that can be scored again and again: ``chunks()`` yields them anew on every
    call (a DataModule's ``val_chunks``/``test_chunks``, or one table in memory)."""

    chunks: Callable[[], Iterable[Chunk]]
    source: str
    n_rows: int | None = None
    impute: bool = False

    def score(self, ensemble: Scorer, unseen: UnseenCategories | None = None) -> tuple[Scores, np.ndarray | None]:
        """``ensemble``'s scores of these rows, and their labels (:func:`score_rows`; ``unseen`` as there)."""
        rows = self.chunks()
        return score_rows(ensemble, rows, self.source, n_rows=self.n_rows, impute=self.impute, unseen=unseen)
