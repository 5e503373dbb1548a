"""One trained ensemble as one object: preprocessing, the three members, the fusion and the cut.

``ThreatEnsemble.score`` turns raw rows into member scores, the fused score and the verdict (checked
by ``models.rows.check_rows``, encoded by the ensemble's own preprocessing);
``save`` writes it as a bundle (no pickle: JSON, safetensors and skops files, hashed in a manifest)
and ``load`` reads a bundle back, verifying every byte before parsing it, optionally against a
manifest digest pinned from outside (``expect_digest``)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.ensemble import IsolationForest
from torch import nn

from threat_ensemble.data.preprocessing import Preprocessing, UnseenCategories, warn_unseen
from threat_ensemble.models.autoencoder import (
    autoencoder_from_bytes,
    autoencoder_to_bytes,
    feature_errors,
    reconstruction_error,
)
from threat_ensemble.models.bundle import (
    AE_FILE,
    GATE_FILE,
    IF_FILE,
    PREPROCESSING_FILE,
    RF_FILE,
    THRESHOLD_FILE,
    BundleError,
    VerifiedBundle,
    json_bytes,
    read_bundle,
    write_bundle,
)
from threat_ensemble.models.forests import N_TREES, forest_from_bytes, forest_scores, forest_to_bytes
from threat_ensemble.models.fusion import (
    CUTOFF,
    ae_score,
    apply_stacked_fusion,
    fit_stacked_fusion,
    fuse,
    if_score,
    stack_features,
    stack_inputs,
)
from threat_ensemble.models.rows import CheckedRows, check_rows


class NonFiniteScores(UserWarning):
    """Some rows scored NaN: they are flagged as attacks (fail closed)."""


@dataclass
class ThreatEnsemble:
    """Fitted members plus the preprocessing and the fusion that tie them together. ``fusion`` is
    ``{"kind": "fixed", "weights": {...}}`` (the reference's weighted mean) or a stacked fusion
    fitted on validation data (``scoring.fit_stacked_fusion``). ``digest`` is the sha256 of the
    manifest of the bundle it was loaded from or last saved to."""

    preprocessing: Preprocessing
    autoencoder: nn.Module
    threshold: float
    random_forest: Any
    isolation_forest: IsolationForest
    fusion: dict[str, Any]
    error_scale: np.ndarray | None = None  # per-feature error scale of the autoencoder score (None: plain MSE)
    digest: str | None = None

    def check(self, frame: pd.DataFrame, source: str = "rows", impute: bool = False, **options: bool) -> CheckedRows:
        """``frame`` checked against the ensemble's input contract (:func:`models.rows.check_rows`)."""
        return check_rows(self.preprocessing, frame, source, impute, **options)

    def encode(self, rows: pd.DataFrame | CheckedRows, unseen: UnseenCategories | None = None) -> np.ndarray:
        """The rows one-hot encoded as the members take them (before scaling), public for
        explanations. Text values never seen in training go to ``__other__``: counted into ``unseen``
        when given (the caller warns once for many chunks), else one warning."""
        checked = rows if isinstance(rows, CheckedRows) else self.check(rows, warn=False)
        x, found = self.preprocessing.encoder.transform(checked.frame, checked.source)
        if unseen is None:
            warn_unseen(found, checked.source)
        else:
            unseen += found
        return x

    def score(
        self, rows: pd.DataFrame | CheckedRows, source: str = "rows", *, unseen: UnseenCategories | None = None
    ) -> dict[str, np.ndarray]:
        """The one path from raw rows to a verdict: check (a raw frame; rows from :meth:`check` are
        taken as they are), encode, scale, each member's score, the fusion and the 0/1 verdict
        (:meth:`verdicts`). ``unseen``: as in :meth:`encode`."""
        checked = rows if isinstance(rows, CheckedRows) else self.check(rows, source, warn=False)
        return self.verdicts(self.member_scores(self.encode(checked, unseen)))

    def member_scores(self, x_encoded: np.ndarray) -> dict[str, np.ndarray]:
        """Each member's score in [0, 1] (higher = more anomalous) of encoded rows (:meth:`encode`),
        plus the raw outputs the stacked fusion uses (``ae_error``, ``rf_vote``)."""
        scaled = torch.from_numpy(self.preprocessing.scaler.transform(x_encoded))
        scale = None if self.error_scale is None else torch.as_tensor(self.error_scale, dtype=torch.float64)
        errors = reconstruction_error(self.autoencoder, scaled, scale=scale).numpy()  # float64
        rf_probability, rf_vote = forest_scores(self.random_forest, x_encoded)
        return {
            "ae": ae_score(errors, self.threshold),
            "rf": rf_probability,
            "if": if_score(self.isolation_forest.decision_function(x_encoded)),
            "ae_error": errors,
            "rf_vote": rf_vote,
        }

    def feature_errors(self, x_encoded: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """For each row, the ``k`` encoded features with the largest reconstruction error in units
        of their typical error on normal rows (largest first): (their indices, those ratios)."""
        scaled = torch.from_numpy(self.preprocessing.scaler.transform(x_encoded))
        ratio = feature_errors(self.autoencoder, scaled).numpy()
        if self.error_scale is not None:
            ratio = ratio / np.asarray(self.error_scale, dtype=np.float64)[None, :]
        k = max(1, min(int(k), ratio.shape[1]))
        top = np.argpartition(-ratio, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(ratio, top, axis=1), axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        return top, np.take_along_axis(ratio, top, axis=1)

    def fuse(self, scores: dict[str, np.ndarray]) -> np.ndarray:
        if self.fusion["kind"] == "fixed":
            return fuse(scores, self.fusion["weights"])
        return apply_stacked_fusion(self.fusion, stack_features(scores, N_TREES, stack_inputs(self.fusion)))

    def fit_fusion_on(self, scores: dict[str, np.ndarray], y_val: np.ndarray, target_fpr: float) -> dict[str, Any]:
        """Fit the stacked fusion on the validation rows' scores (:meth:`score`), never on test rows."""
        self.fusion = fit_stacked_fusion(stack_features(scores, N_TREES), y_val, target_fpr)
        return self.fusion

    def verdicts(self, scores: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``scores`` (from :meth:`member_scores`) with the fused score and the 0/1 verdict added
        (attack when fused >= 0.5). A row whose fused score is not a number is flagged as an attack,
        with a warning: a broken model must fail closed, never wave traffic through."""
        scores["ensemble"] = self.fuse(scores)
        broken = np.isnan(scores["ensemble"])
        scores["verdict"] = ((scores["ensemble"] >= CUTOFF) | broken).astype(np.int64)
        if broken.any():
            warnings.warn(
                f"{int(broken.sum())} of {len(broken)} rows scored NaN (the model or the row is broken); "
                "they are flagged as attacks",
                NonFiniteScores,
                stacklevel=2,
            )
        return scores

    def save(
        self,
        output_dir: str | Path,
        *,
        gate: dict[str, Any],
        threshold_info: dict[str, Any],
        manifest_extra: dict[str, Any],
        forest_bytes: dict[str, bytes] | None = None,
        extra_files: Callable[[Path], list[Path]] | None = None,
    ) -> Path:
        """Write the bundle (atomically; see ``artifacts.write_bundle``) and set ``digest``.
        ``forest_bytes``: the forests already serialised (the run's checkpoint copies), by
        ``random_forest``/``isolation_forest``, so they are not serialised twice."""
        ready = forest_bytes or {}
        scale = torch.ones(self.autoencoder[0].in_features, dtype=torch.float64)
        if self.error_scale is not None:
            scale = torch.as_tensor(self.error_scale, dtype=torch.float64)
        files = {
            AE_FILE: autoencoder_to_bytes(self.autoencoder, scale),
            RF_FILE: ready.get("random_forest") or forest_to_bytes(self.random_forest),
            IF_FILE: ready.get("isolation_forest") or forest_to_bytes(self.isolation_forest),
            PREPROCESSING_FILE: json_bytes(self.preprocessing.to_dict()),
            THRESHOLD_FILE: json_bytes({**threshold_info, "threshold": self.threshold, "fusion": self.fusion}),
            GATE_FILE: json_bytes(gate),
        }
        folder, self.digest = write_bundle(output_dir, files, manifest_extra=manifest_extra, extra_files=extra_files)
        return folder

    def export_onnx(
        self, path: str | Path, run_id: str | None = None, bundle_digest: str | None = None
    ) -> dict[str, str]:
        """Write the ensemble as one ONNX graph (``export.onnx_graph``) to ``path``, whole or not at
        all; returns the metadata stored in it (``version_id``: a sha256 prefix of the graph;
        ``bundle_digest``: the bundle it was exported from, when it came from one)."""
        from threat_ensemble import __version__
        from threat_ensemble.export.onnx_graph import build_onnx_model
        from threat_ensemble.files import atomic_write

        extra = {"package_version": __version__, "mlflow_run_id": run_id or "", "bundle_digest": bundle_digest or ""}
        model = build_onnx_model(self, extra)
        data = model.SerializeToString()
        atomic_write(Path(path), lambda fh: fh.write(data))
        return {p.key: p.value for p in model.metadata_props}

    @classmethod
    def load(cls, bundle_dir: str | Path, expect_digest: str | None = None) -> ThreatEnsemble:
        """The ensemble of a bundle. Every file is read once and checked against the manifest (and
        the manifest against ``expect_digest``) before it is parsed; nothing in a bundle can run
        code. Refuses, with one line naming the file, a bundle that is incomplete, altered, of an
        old format, or whose numbers are not finite."""
        return cls.from_verified(read_bundle(bundle_dir, expect_digest))

    @classmethod
    def from_verified(cls, bundle: VerifiedBundle, preprocessing: Preprocessing | None = None) -> ThreatEnsemble:
        """The ensemble from a bundle already read and checked (:func:`models.bundle.read_bundle`),
        parsed from the bytes that were hashed; nothing is read from disk again. ``preprocessing``:
        the bundle's own, when the caller parsed it already (score.py checks rows before loading
        the members), so it is parsed once per load."""
        folder = bundle.folder
        net, scale = autoencoder_from_bytes(bundle.files[AE_FILE], str(folder / AE_FILE))
        thresholds, gate = bundle.json(THRESHOLD_FILE), bundle.json(GATE_FILE)  # every JSON file parses
        if preprocessing is None:
            preprocessing = Preprocessing.from_dict(bundle.json(PREPROCESSING_FILE), folder / PREPROCESSING_FILE)
        if len(preprocessing.scaler.center) != scale.numel():
            raise BundleError(
                f"{folder / PREPROCESSING_FILE}: encodes {len(preprocessing.scaler.center)} columns, "
                f"but {AE_FILE} takes {scale.numel()}; the files are not of one bundle"
            )
        try:
            threshold = float(thresholds["threshold"])
            fusion = thresholds.get("fusion") or {"kind": "fixed", "weights": dict(gate["weights"])}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            problem = type(exc).__name__
            raise BundleError(f"{folder}: threshold, fusion or preprocessing unreadable ({problem})") from None
        _require_finite(folder, threshold, fusion, preprocessing)
        return cls(
            preprocessing=preprocessing,
            autoencoder=net,
            threshold=threshold,
            random_forest=forest_from_bytes(bundle.files[RF_FILE], str(folder / RF_FILE)),
            isolation_forest=forest_from_bytes(bundle.files[IF_FILE], str(folder / IF_FILE)),
            fusion=fusion,
            error_scale=scale.numpy(),
            digest=bundle.digest,
        )


FUSION_KINDS = ("fixed", "stack")  # the "kind" of threshold.json's fusion


def _require_finite(folder: Path, threshold: float, fusion: dict[str, Any], preprocessing: Preprocessing) -> None:
    """Refuse a bundle whose numbers would make every score NaN (fail closed at load), and a fusion
    of a kind this code does not know (named, not reported as a number)."""
    kind = fusion.get("kind")
    if kind not in FUSION_KINDS:
        known, name = ", ".join(FUSION_KINDS), str(kind)[:80]
        raise BundleError(f"{folder}: unknown fusion kind {name!r} in {THRESHOLD_FILE}; this code knows {known}")
    problems = []
    if not (math.isfinite(threshold) and threshold > 0):
        problems.append(f"threshold {threshold!r}")
    scaler = preprocessing.scaler
    if not (np.isfinite(scaler.center).all() and np.isfinite(scaler.scale).all() and (scaler.scale != 0).all()):
        problems.append("scaler centre or scale")
    if scaler.clip is not None and not (math.isfinite(scaler.clip) and scaler.clip > 0):
        problems.append(f"scaler clip {scaler.clip!r}")
    keys = ("weights",) if fusion.get("kind") == "fixed" else ("mean", "scale", "coef", "intercept")
    if not all(math.isfinite(v) for key in keys for v in _numbers(fusion.get(key))):
        problems.append("fusion parameters")
    if problems:
        raise BundleError(f"{folder}: not finite: {', '.join(problems)}; the bundle would score NaN")


def _numbers(value: Any) -> list[float]:
    """Every number in a JSON value; anything that is not a number counts as NaN."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [float(value)]
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in _numbers(v)]
    return [math.nan]


def load_ensemble(bundle_dir: str | Path, expect_digest: str | None = None) -> ThreatEnsemble:
    """``ThreatEnsemble.load``, as a function."""
    return ThreatEnsemble.load(bundle_dir, expect_digest)
