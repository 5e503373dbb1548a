"""The trained ensemble as one ONNX graph: raw feature columns in; each member's score, the fused
score and the verdict out, computed as :meth:`ThreatEnsemble.score` computes them.

Built node by node with ``onnx.helper`` rather than converted with skl2onnx, because parity with
the Python scorer is the point and skl2onnx loses it here: its forest converters keep leaf values
as float32 (an isotonic calibration's steep segments turn that 1e-8 into visible differences,
sklearn-onnx #1151), its isolation forest has no double-precision path, and it has no converter for
a calibrated frozen forest. Here every tree threshold and leaf value is float64 and every step runs
in the precision the Python scorer uses (float32 where it uses float32: the autoencoder).

Inputs: one ``[N, 1]`` tensor per raw feature column, named like the column: float64 for numeric
columns (a missing, infinite or beyond-float32 cell is replaced by the training median, as
``--impute`` does), string for text columns (stripped of surrounding whitespace and one-hot encoded
against the training categories, anything else in ``__other__``; a missing cell is the string
``__missing__``), plus ``cut``: the verdict's threshold on the fused score (default 0.5, the
trained cut), which a caller may move without exporting again."""

from __future__ import annotations

import hashlib
import json
import sys
from typing import Any

import numpy as np

from threat_ensemble.data.categories import MISSING, OTHER
from threat_ensemble.models.fusion import CUTOFF, SCORE_COLUMNS, stack_inputs

OPSET = 20  # RegexFullMatch (text columns) is opset 20
ML_OPSET = 5  # TreeEnsemble: float64 thresholds and leaf values, float64 output
CUT_INPUT = "cut"
# What Python's str.strip() removes (str.isspace), as one RE2 character class.
_WHITESPACE = "".join(chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace())


def _re2_class(chars: str) -> str:
    return "[" + "".join(f"\\x{{{ord(c):x}}}" for c in chars) + "]"


def _re2_literal(text: str) -> str:
    return "".join(f"\\x{{{ord(c):x}}}" for c in text)


class _Graph:
    """Nodes, initializers and fresh names: just enough bookkeeping to write the graph readably."""

    def __init__(self) -> None:
        from onnx import helper

        self.helper = helper
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._count = 0

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, value: Any, hint: str = "c", dtype: Any = None) -> str:
        from onnx import numpy_helper

        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, kind: str, inputs: list[str], hint: str | None = None, domain: str = "", **attrs: Any) -> str:
        out = self.name(hint or kind.lower())
        self.nodes.append(self.helper.make_node(kind, inputs, [out], domain=domain, **attrs))
        return out


def _numeric_column(g: _Graph, name: str, median: float) -> str:
    """float64 [N, 1] -> float32 [N, 1], unusable cells replaced by the training median."""
    from onnx import TensorProto

    finite = g.op("Not", [g.op("Or", [g.op("IsNaN", [name]), g.op("IsInf", [name])])])
    in_range = g.op("LessOrEqual", [g.op("Abs", [name]), g.const(np.finfo(np.float32).max, dtype=np.float64)])
    usable = g.op("And", [finite, in_range])
    filled = g.op("Where", [usable, name, g.const(median, dtype=np.float64)])
    return g.op("Cast", [filled], to=TensorProto.FLOAT)


def _text_column(g: _Graph, name: str, categories: list[str]) -> str:
    """string [N, 1] -> float32 [N, K + 1] one-hot (the last column is ``__other__``).

    A value equal to a category is found by one lookup; only the rows that are not (unseen values,
    or a category with whitespace around it) go through a full match per category, which strips
    exactly what Python's ``str.strip`` strips."""
    from onnx import TensorProto

    k = len(categories)
    exact = g.op(
        "LabelEncoder",
        [name],
        domain="ai.onnx.ml",
        keys_strings=categories,
        values_int64s=list(range(k)),
        default_int64=-1,
    )
    flat_exact = g.op("Reshape", [exact, g.const([-1], dtype=np.int64)])
    flat_text = g.op("Reshape", [name, g.const([-1], dtype=np.int64)])
    unmatched = g.op("Less", [flat_exact, g.const(0, dtype=np.int64)])
    rows = g.op("NonZero", [unmatched])  # [1, M]
    row_ids = g.op("Reshape", [rows, g.const([-1, 1], dtype=np.int64)])  # [M, 1]
    rest = g.op("Compress", [flat_text, unmatched], axis=0)  # [M]
    space = _re2_class(_WHITESPACE)
    hits = []
    for category in categories:
        pattern = f"{space}*(?:{_re2_literal(category)}){space}*"
        hit = g.op("Cast", [g.op("RegexFullMatch", [rest], pattern=pattern)], to=TensorProto.FLOAT)
        hits.append(g.op("Unsqueeze", [hit, g.const([1], dtype=np.int64)]))
    none = g.op("Expand", [g.const([[0.5]], dtype=np.float32), g.op("Shape", [hits[0]])]) if hits else None
    code = flat_exact
    if hits:  # the first category that matches, or K (``__other__``) when none does
        slow = g.op("ArgMax", [g.op("Concat", [*hits, none], axis=1)], axis=1, keepdims=0)
        code = g.op("ScatterND", [flat_exact, row_ids, slow])
    code = g.op("Where", [g.op("Less", [code, g.const(0, dtype=np.int64)]), g.const(k, dtype=np.int64), code])
    column = g.op("Unsqueeze", [code, g.const([1], dtype=np.int64)])
    onehot = g.op("Equal", [column, g.const(np.arange(k + 1, dtype=np.int64)[None, :])])
    return g.op("Cast", [onehot], to=TensorProto.FLOAT)


def _scaled(g: _Graph, encoded: str, scaler: Any) -> str:
    """The autoencoder's input, as ``RobustScaler.transform`` computes it (float64, then float32)."""
    from onnx import TensorProto

    x = g.op("Cast", [encoded], to=TensorProto.DOUBLE)
    if scaler.log_compress:
        log = g.op("Log", [g.op("Add", [g.op("Abs", [x]), g.const(1.0, dtype=np.float64)])])
        x = g.op("Mul", [g.op("Sign", [x]), log])
    centred = g.op("Sub", [x, g.const(np.asarray(scaler.center, dtype=np.float64)[None, :])])
    scaled = g.op("Div", [centred, g.const(np.asarray(scaler.scale, dtype=np.float64)[None, :])])
    if scaler.clip is not None:
        bound = float(scaler.clip)
        scaled = g.op("Clip", [scaled, g.const(np.float64(-bound)), g.const(np.float64(bound))])
    return g.op("Cast", [scaled], to=TensorProto.FLOAT)


def _autoencoder_error(g: _Graph, scaled: str, net: Any, error_scale: np.ndarray | None) -> str:
    """Per-row mean over features of the squared reconstruction error / its error scale ([N], float64)."""
    from onnx import TensorProto
    from torch import nn

    x = scaled
    for layer in net:
        if isinstance(layer, nn.Linear):
            w = layer.weight.detach().cpu().numpy().astype(np.float32)
            b = layer.bias.detach().cpu().numpy().astype(np.float32)
            x = g.op("Gemm", [x, g.const(w), g.const(b)], transB=1)
        elif isinstance(layer, nn.BatchNorm1d):
            params = [layer.weight, layer.bias, layer.running_mean, layer.running_var]
            arrays = [g.const(p.detach().cpu().numpy().astype(np.float32)) for p in params]
            x = g.op("BatchNormalization", [x, *arrays], epsilon=float(layer.eps))
        elif isinstance(layer, nn.LeakyReLU):
            x = g.op("LeakyRelu", [x], alpha=float(layer.negative_slope))
        elif not isinstance(layer, nn.Dropout):  # dropout does nothing when scoring
            raise ValueError(f"ONNX export: autoencoder layer {type(layer).__name__} is not supported")
    diff = g.op("Sub", [x, scaled])
    squared = g.op("Cast", [g.op("Mul", [diff, diff])], to=TensorProto.DOUBLE)
    if error_scale is not None:
        squared = g.op("Div", [squared, g.const(np.asarray(error_scale, dtype=np.float64)[None, :])])
    return g.op("ReduceMean", [squared, g.const([1], dtype=np.int64)], keepdims=0)


def _tree_sum(g: _Graph, x: str, trees: list[tuple[Any, np.ndarray, np.ndarray | None]]) -> str:
    """Sum over trees of each row's leaf value ([N], float64): one ``TreeEnsemble`` (ai.onnx.ml 5)
    with float64 thresholds and leaf values, compared with the float32 features cast to float64,
    as scikit-learn compares them. ``trees``: (sklearn Tree, value per node, feature index map or None)."""
    from onnx import TensorProto, numpy_helper

    keys = ("feature", "split", "true", "true_leaf", "false", "false_leaf")
    nodes: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    roots, leaf_values = [], []
    n_nodes = n_leaves = 0
    for tree, node_value, features in trees:
        leaf = tree.children_left == -1
        if leaf[0]:  # a tree that is one leaf: a split whose both sides lead to it
            roots.append(n_nodes)
            for key, value in zip(keys, (0, 0.0, n_leaves, 1, n_leaves, 1), strict=True):
                nodes[key].append(np.array([value]))
            leaf_values.append(np.asarray(node_value, dtype=np.float64)[:1])
            n_nodes, n_leaves = n_nodes + 1, n_leaves + 1
            continue
        inner, leaves = np.flatnonzero(~leaf), np.flatnonzero(leaf)
        position = np.zeros(len(leaf), dtype=np.int64)  # a node's index among the inner nodes or the leaves
        position[inner] = n_nodes + np.arange(len(inner))
        position[leaves] = n_leaves + np.arange(len(leaves))
        feature = tree.feature[inner].astype(np.int64)
        if features is not None:
            feature = np.asarray(features, dtype=np.int64)[feature]
        left, right = tree.children_left[inner], tree.children_right[inner]
        roots.append(n_nodes)
        for key, value in zip(
            keys,
            (feature, tree.threshold[inner], position[left], leaf[left], position[right], leaf[right]),
            strict=True,
        ):
            nodes[key].append(np.asarray(value))
        leaf_values.append(np.asarray(node_value, dtype=np.float64)[leaves])
        n_nodes, n_leaves = n_nodes + len(inner), n_leaves + len(leaves)
    cat = {k: np.concatenate(v) for k, v in nodes.items()}
    out = g.op(
        "TreeEnsemble",
        [g.op("Cast", [x], to=TensorProto.DOUBLE)],
        domain="ai.onnx.ml",
        aggregate_function=1,  # SUM
        n_targets=1,
        post_transform=0,
        tree_roots=roots,
        nodes_featureids=cat["feature"].astype(np.int64).tolist(),
        nodes_modes=numpy_helper.from_array(np.zeros(n_nodes, dtype=np.uint8)),  # BRANCH_LEQ: x <= split goes left
        nodes_splits=numpy_helper.from_array(cat["split"].astype(np.float64)),
        nodes_truenodeids=cat["true"].astype(np.int64).tolist(),
        nodes_trueleafs=cat["true_leaf"].astype(np.int64).tolist(),
        nodes_falsenodeids=cat["false"].astype(np.int64).tolist(),
        nodes_falseleafs=cat["false_leaf"].astype(np.int64).tolist(),
        leaf_targetids=[0] * n_leaves,
        leaf_weights=numpy_helper.from_array(np.concatenate(leaf_values)),
    )
    return g.op("Reshape", [out, g.const([-1], dtype=np.int64)])


def _random_forest(g: _Graph, x: str, model: Any) -> tuple[str, str]:
    """(calibrated attack probability, raw vote share), as ``models.forests.forest_scores``."""
    calibrated = getattr(model, "calibrated_classifiers_", None)
    forest = calibrated[0].estimator if calibrated else model
    forest = getattr(forest, "estimator", forest)  # a FrozenEstimator holds the fitted forest
    trees = []
    for estimator in forest.estimators_:
        tree = estimator.tree_
        value = tree.value[:, 0, : len(forest.classes_)]
        total = value.sum(axis=1)
        total = np.where(total == 0.0, 1.0, total)
        trees.append((tree, value[:, 1] / total, None))  # each tree's predict_proba, as scikit-learn divides it
    vote = g.op("Div", [_tree_sum(g, x, trees), g.const(float(len(trees)), dtype=np.float64)])
    if not calibrated:
        return vote, vote
    if len(calibrated) != 1 or len(calibrated[0].calibrators) != 1:
        raise ValueError("ONNX export: only a forest with one isotonic calibrator is supported")
    isotonic = calibrated[0].calibrators[0]
    return g.op(
        "Clip", [_isotonic(g, vote, isotonic), g.const(0.0, dtype=np.float64), g.const(1.0, dtype=np.float64)]
    ), vote


def _isotonic(g: _Graph, x: str, isotonic: Any) -> str:
    """``IsotonicRegression.predict``: clip to the fitted range, then ``np.interp`` (its slope and
    offset written out the way numpy computes them)."""
    from onnx import TensorProto

    if getattr(isotonic, "out_of_bounds", "clip") != "clip":
        raise ValueError("ONNX export: only an isotonic calibrator that clips out-of-range votes is supported")
    xp = np.asarray(isotonic.X_thresholds_, dtype=np.float64)
    fp = np.asarray(isotonic.y_thresholds_, dtype=np.float64)
    low, high = g.const(float(isotonic.X_min_), dtype=np.float64), g.const(float(isotonic.X_max_), dtype=np.float64)
    clipped = g.op("Min", [g.op("Max", [x, low]), high])
    if len(xp) == 1:
        return g.op("Add", [g.op("Mul", [clipped, g.const(0.0, dtype=np.float64)]), g.const(fp[0], dtype=np.float64)])
    if not np.all(np.diff(xp) > 0):
        raise ValueError("ONNX export: the isotonic calibrator's thresholds are not strictly increasing")
    slope = (fp[1:] - fp[:-1]) / (xp[1:] - xp[:-1])
    column = g.op("Unsqueeze", [clipped, g.const([1], dtype=np.int64)])
    at_or_above = g.op("Cast", [g.op("LessOrEqual", [g.const(xp[None, :-1]), column])], to=TensorProto.INT64)
    j = g.op(
        "Sub", [g.op("ReduceSum", [at_or_above, g.const([1], dtype=np.int64)], keepdims=0), g.const(1, dtype=np.int64)]
    )
    j = g.op("Min", [g.op("Max", [j, g.const(0, dtype=np.int64)]), g.const(len(xp) - 2, dtype=np.int64)])
    y = g.op(
        "Add",
        [
            g.op(
                "Mul", [g.op("Gather", [g.const(slope), j]), g.op("Sub", [clipped, g.op("Gather", [g.const(xp), j])])]
            ),
            g.op("Gather", [g.const(fp), j]),
        ],
    )
    at_top = g.op("GreaterOrEqual", [clipped, g.const(xp[-1], dtype=np.float64)])
    return g.op("Where", [at_top, g.const(fp[-1], dtype=np.float64), y])


def _isolation_forest(g: _Graph, x: str, forest: Any) -> str:
    """``if_score(decision_function(x))``: each tree's path length to the row's leaf plus the
    expected length below it, summed, as scikit-learn's ``_compute_score_samples`` sums them."""
    from sklearn.ensemble._iforest import _average_path_length

    subsample = forest._max_features != forest.n_features_in_
    trees = []
    for t, (estimator, features) in enumerate(zip(forest.estimators_, forest.estimators_features_, strict=True)):
        depth = np.asarray(forest._decision_path_lengths[t], dtype=np.float64)
        below = np.asarray(forest._average_path_length_per_tree[t], dtype=np.float64)
        trees.append((estimator.tree_, depth + below - 1.0, features if subsample else None))
    depths = _tree_sum(g, x, trees)
    denominator = len(forest.estimators_) * float(_average_path_length([forest._max_samples])[0])
    if denominator == 0:
        raise ValueError("ONNX export: an isolation forest fitted on one row is not supported")
    ratio = g.op("Neg", [g.op("Div", [depths, g.const(denominator, dtype=np.float64)])])
    score = g.op("Neg", [g.op("Pow", [g.const(2.0, dtype=np.float64), ratio])])
    decision = g.op("Sub", [score, g.const(float(forest.offset_), dtype=np.float64)])
    half = g.op("Div", [g.op("Sub", [g.const(1.0, dtype=np.float64), decision]), g.const(2.0, dtype=np.float64)])
    return g.op("Clip", [half, g.const(0.0, dtype=np.float64), g.const(1.0, dtype=np.float64)])


def _fused(g: _Graph, fusion: dict[str, Any], members: dict[str, str], n_trees: int) -> str:
    """``ThreatEnsemble.fuse``: the fixed weighted mean, or the stacked logistic regression."""
    d = np.float64
    if fusion["kind"] == "fixed":
        keys = [k for k, w in fusion["weights"].items() if w > 0]
        w = np.array([fusion["weights"][k] for k in keys], dtype=d)
        columns = [g.op("Unsqueeze", [members[k], g.const([1], dtype=np.int64)]) for k in keys]
        return g.op("MatMul", [g.op("Concat", columns, axis=1), g.const(w / w.sum())])
    eps = 1.0 / (2.0 * n_trees)
    share = members["rf_vote"]
    vote = g.op("Clip", [share, g.const(eps, dtype=d), g.const(1.0 - eps, dtype=d)])
    inputs = {
        "rf": lambda: g.op("Log", [g.op("Div", [vote, g.op("Sub", [g.const(1.0, dtype=d), vote])])]),
        "rf_share": lambda: share,
        "ae": lambda: g.op("Log", [g.op("Max", [members["ae_error"], g.const(1e-12, dtype=d)])]),
        "if": lambda: members["if"],
    }
    names = stack_inputs(fusion)
    unknown = [n for n in names if n not in inputs]
    if unknown:
        raise ValueError(f"ONNX export: unknown stacked-fusion inputs {unknown}")
    columns = [g.op("Unsqueeze", [inputs[n](), g.const([1], dtype=np.int64)]) for n in names]
    stacked = g.op("Concat", columns, axis=1)
    z = g.op(
        "Div",
        [
            g.op("Sub", [stacked, g.const(np.asarray(fusion["mean"], d)[None, :])]),
            g.const(np.asarray(fusion["scale"], d)[None, :]),
        ],
    )
    logits = g.op(
        "Add",
        [g.op("MatMul", [z, g.const(np.asarray(fusion["coef"], d))]), g.const(float(fusion["intercept"]), dtype=d)],
    )
    logits = g.op("Clip", [logits, g.const(-500.0, dtype=d), g.const(500.0, dtype=d)])
    one = g.const(1.0, dtype=d)
    return g.op("Div", [one, g.op("Add", [one, g.op("Exp", [g.op("Neg", [logits])])])])


def feature_inputs(encoder: Any) -> list[tuple[str, str]]:
    """(column, "double" | "string") for each graph input, in the table's column order."""
    numeric = set(encoder.numeric_columns)
    return [
        (c, "double" if c in numeric else "string")
        for c in encoder.feature_names
        if c in numeric or c in encoder.categories
    ]


def build_onnx_model(ensemble: Any, metadata: dict[str, str] | None = None) -> Any:
    """The ensemble as an ``onnx.ModelProto`` (see the module's docstring for its inputs and outputs)."""
    import onnx
    from onnx import TensorProto, helper

    from threat_ensemble.models.forests import N_TREES

    encoder = ensemble.preprocessing.encoder
    g = _Graph()
    inputs = []
    blocks = []
    for column in encoder.numeric_columns:
        inputs.append(helper.make_tensor_value_info(column, TensorProto.DOUBLE, ["N", 1]))
        blocks.append(_numeric_column(g, column, float(encoder.medians.get(column, 0.0))))
    for column, categories in encoder.categories.items():
        inputs.append(helper.make_tensor_value_info(column, TensorProto.STRING, ["N", 1]))
        blocks.append(_text_column(g, column, list(categories)))
    encoded = blocks[0] if len(blocks) == 1 else g.op("Concat", blocks, axis=1, hint="encoded")
    errors = _autoencoder_error(
        g, _scaled(g, encoded, ensemble.preprocessing.scaler), ensemble.autoencoder, ensemble.error_scale
    )
    d = np.float64
    members = {"ae_error": errors}
    members["ae"] = g.op(
        "Min", [g.op("Div", [errors, g.const(2.0 * float(ensemble.threshold), dtype=d)]), g.const(1.0, dtype=d)]
    )
    members["rf"], members["rf_vote"] = _random_forest(g, encoded, ensemble.random_forest)
    members["if"] = _isolation_forest(g, encoded, ensemble.isolation_forest)
    fused = g.op("Reshape", [_fused(g, ensemble.fusion, members, N_TREES), g.const([-1], dtype=np.int64)])
    g.initializers.append(onnx.numpy_helper.from_array(np.asarray(CUTOFF, dtype=d), CUT_INPUT))
    flagged = g.op("Or", [g.op("GreaterOrEqual", [fused, CUT_INPUT]), g.op("IsNaN", [fused])])
    members["ensemble"] = fused
    members["verdict"] = g.op("Cast", [flagged], to=TensorProto.INT64)
    outputs = []
    for key in SCORE_COLUMNS:
        g.nodes.append(helper.make_node("Identity", [members[key]], [key]))
        kind = TensorProto.INT64 if key == "verdict" else TensorProto.DOUBLE
        outputs.append(helper.make_tensor_value_info(key, kind, ["N"]))
    inputs.append(helper.make_tensor_value_info(CUT_INPUT, TensorProto.DOUBLE, []))
    graph = helper.make_graph(g.nodes, "threat_ensemble", inputs, outputs, initializer=g.initializers)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid("ai.onnx.ml", ML_OPSET)],
        producer_name="threat-ensemble",
        doc_string="Raw feature columns in; member scores, the fused score and the verdict out "
        f"(attack when ensemble >= cut, default {CUTOFF}).",
    )
    model.ir_version = 9  # what onnxruntime 1.17 and later read
    info = {
        "features": json.dumps(feature_inputs(encoder)),
        "threshold": repr(float(ensemble.threshold)),
        "cut": repr(CUTOFF),
        "fusion": str(ensemble.fusion["kind"]),
        "missing_text": MISSING,
        "other_bucket": OTHER,
        **(metadata or {}),
    }
    helper.set_model_props(model, info)
    onnx.checker.check_model(model)
    version = hashlib.sha256(model.SerializeToString()).hexdigest()[:12]
    helper.set_model_props(model, {**info, "version_id": version})
    return model
