"""How a text column's cells are read, by the feature encoder, the feature profile and the exported
ONNX graph alike: as stripped strings, a missing cell as ``__missing__``; values outside the kept
training categories fall into one ``__other__`` bucket."""

from __future__ import annotations

import pandas as pd

OTHER = "__other__"
MISSING = "__missing__"


def category_text(series: pd.Series) -> pd.Series:
    """A text column as the encoder sees it: strings, stripped, a missing cell as ``__missing__``."""
    return series.astype("string").fillna(MISSING).str.strip()
