"""For the analyst and the operator: explanations of flagged rows (score.py --explain, the Python
API) and the drift report against the training profile kept in the bundle (score.py
--drift-report, --fail-on-drift: exit 4)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, copy_bundle
from in_process import run_train

# ----------------------------------------------------------------------------- the profile (fast)


def _frame(n: int, seed: int, scale: float = 1.0, share_post: float = 0.2) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "bytes": rng.lognormal(6, 1, n) * scale,
            "port": rng.integers(1, 5, n),
            "method": np.where(rng.random(n) < share_post, "POST", "GET"),
        }
    )
    return frame, (rng.random(n) < 0.1).astype(int)


def _profile(frame: pd.DataFrame, y: np.ndarray):  # noqa: ANN202
    from threat_ensemble.data.preprocessing import FeatureEncoder
    from threat_ensemble.data.profile import FeatureProfile

    encoder = FeatureEncoder.fit(frame)
    return FeatureProfile.fit(frame, y, encoder.numeric_columns, encoder.categories)


def test_the_same_distribution_does_not_drift_and_a_shifted_one_does() -> None:
    frame, y = _frame(5000, 0)
    profile = _profile(frame, y)
    same = profile.drift(_frame(3000, 1)[0])
    assert same["drifted"] == [] and max(f["psi"] for f in same["features"].values()) < 0.05
    shifted = profile.drift(_frame(3000, 2, scale=8.0, share_post=0.7)[0])
    assert set(shifted["drifted"]) == {"bytes", "method"}
    assert shifted["features"]["bytes"]["psi"] > 1.0 and shifted["features"]["port"]["psi"] < 0.05
    assert shifted["features"]["method"]["kind"] == "text"
    assert profile.drift(_frame(3000, 2, scale=8.0)[0], threshold=1e9)["drifted"] == []


def _mixed(n: int, seed: int, log_share: float, scale: float = 1.0) -> pd.DataFrame:
    """Rows of two kinds of input, as the extractor writes them: a log row has no request body
    (``body`` -1), a raw dump no response (``status`` -1)."""
    frame, _ = _frame(n, seed, scale)
    is_log = np.random.default_rng(seed + 100).random(n) < log_share
    frame["body"] = np.where(is_log, -1, np.random.default_rng(seed).integers(0, 400, n))
    frame["status"] = np.where(is_log, np.random.default_rng(seed + 1).choice([200, 304, 404], n), -1)
    return frame


def test_drift_tells_features_absent_from_this_kind_of_input_from_shifted_ones() -> None:
    """Issue 35, 5: trained on raw dumps and logs, scored on a log: ``body`` is absent (only -1),
    ``status`` lost its -1 rows but its values did not move, ``bytes`` shifted: the one to look at,
    first in the line."""
    from threat_ensemble.data.profile import drift_line

    frame = _mixed(6000, 0, log_share=0.5)
    profile = _profile(frame, np.zeros(len(frame), int))
    assert profile.missing_share["body"] == pytest.approx(0.5, abs=0.03) and profile.missing_share["bytes"] == 0.0
    report = profile.drift(_mixed(3000, 1, log_share=1.0, scale=8.0))
    assert set(report["drifted"]) == {"bytes", "body", "status"}
    assert (report["shifted"], report["absent"], report["coverage"]) == (["bytes"], ["body"], ["status"])
    status = report["features"]["status"]
    assert status["missing_share"] == 0.0 and status["values_psi"] < 0.05 < 0.2 < status["psi"]
    assert report["features"]["port"]["status"] == "stable"
    line = drift_line(report)
    assert line.startswith("drift: 3 of 5 features have a PSI over 0.2: 1 shifted (bytes ")
    assert "; 1 absent from this kind of input (only -1 or empty here, values in training): body; " in line
    assert line.endswith("1 unshifted but missing (-1) on another share of rows (here vs training): status 0% vs 50%")
    unshifted = drift_line(profile.drift(_mixed(3000, 2, log_share=1.0)))
    assert unshifted.startswith("drift: 2 of 5 features have a PSI over 0.2: none shifted in value; ")
    old = json.loads(json.dumps(profile.to_dict()))
    del old["missing_share"]  # a bundle from before: absent still told, the rest shifted
    report = type(profile).from_dict(old).drift(_mixed(3000, 1, log_share=1.0, scale=8.0))
    assert (set(report["shifted"]), report["absent"], report["coverage"]) == ({"bytes", "status"}, ["body"], [])


def test_drift_of_a_plain_access_log_against_the_default_data() -> None:
    """The default data mixes raw dumps and access logs; a plain combined log of the same traffic
    has no request bodies or header counts (absent) and every response and client-window feature
    (-1 in the raw dumps) on all its rows: nothing shifted in value."""
    from default_traffic import generate_traffic_text

    from threat_ensemble.data.default_data import default_frame
    from threat_ensemble.data.profile import drift_line
    from threat_ensemble.http.features import featurize_text

    frame = default_frame()
    profile = _profile(frame.drop(columns=["label"]), frame["label"].to_numpy())
    text = str(generate_traffic_text(4000, seed=7, raw_share=0.0)["log"])
    log = featurize_text(text, "combined", source="access.log")
    report = profile.drift(log)
    assert report["shifted"] == [] and len(report["drifted"]) > 20
    assert {"body_length", "body_entropy", "header_count"} <= set(report["absent"])
    assert {"status_code", "response_size", "hour"} <= set(report["coverage"])
    assert all(c.startswith(("body_", "header_count")) for c in report["absent"])
    assert drift_line(report).startswith(f"drift: {len(report['drifted'])} of 47 features have a PSI over 0.2: none "
                                         "shifted in value; ")  # fmt: skip


def test_normal_range_is_taken_from_normal_rows_and_survives_json() -> None:
    frame, y = _frame(4000, 3)
    frame.loc[y == 1, "bytes"] = 1e9  # attacks far out: they must not widen the normal range
    profile = _profile(frame, y)
    low, high = profile.normal_range["bytes"]
    normal = frame.loc[y == 0, "bytes"]
    assert low == pytest.approx(np.percentile(normal, 1)) and high == pytest.approx(np.percentile(normal, 99))
    assert high < 1e6
    frame["empty"] = np.nan  # a column with no usable value: its range is NaN, written as null
    again = _roundtrip(frame, y)  # through the bundle's JSON spelling (NaN as null)
    assert np.isnan(again.normal_range["empty"]).all()
    assert again.edges["bytes"] == profile.edges["bytes"]


def _roundtrip(frame: pd.DataFrame, y: np.ndarray):  # noqa: ANN202
    from threat_ensemble.data.profile import FeatureProfile
    from threat_ensemble.models.bundle import json_bytes

    return FeatureProfile.from_dict(json.loads(json_bytes(_profile(frame, y).to_dict())))


class _FloorEnsemble:
    """Just what explanation_columns uses of a ThreatEnsemble, with an "autoencoder" that rebuilds
    every feature at its normal value except the share ``follow`` of each feature's deviation, and
    each feature's typical error taken on the normal rows and floored at 1e-6, as the real one is."""

    def __init__(self, frame: pd.DataFrame, y: np.ndarray, follow: dict[str, float]) -> None:
        from threat_ensemble.data.preprocessing import FeatureEncoder, Preprocessing, RobustScaler

        encoder = FeatureEncoder.fit(frame)
        x = encoder.transform(frame)[0]
        self.preprocessing = Preprocessing(encoder, RobustScaler.fit(x[y == 0]), _profile(frame, y))
        self.kept = np.array([1.0 - follow.get(name, 0.0) for name in encoder.encoded_names])
        self.error_scale = np.maximum(self._errors(x[y == 0]).mean(axis=0), 1e-6)

    def _errors(self, x: np.ndarray) -> np.ndarray:
        return (self.preprocessing.scaler.transform(x).astype(np.float64) * self.kept) ** 2

    def feature_errors(self, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        ratio = self._errors(x) / self.error_scale
        top = np.argsort(-ratio, axis=1, kind="stable")[:, :k]
        return top, np.take_along_axis(ratio, top, axis=1)


def test_features_that_never_vary_on_normal_rows_are_worded_and_ranked_by_their_deviation() -> None:
    """Issue 35, 3: a flag and an unseen category both jump 0 -> 1 where normal rows never vary, so
    both weigh 0.48 / 1e-6 = 480453 and tie; they come first, in words, and a count 0 -> 40 comes
    before them, by its deviation, even where the autoencoder half follows it (a smaller weight)."""
    from threat_ensemble.evaluation.explain import explanation_columns

    rng = np.random.default_rng(0)
    n = 400
    frame = pd.DataFrame({
        "flag": np.zeros(n, int), "count": np.zeros(n, int), "size": rng.lognormal(6, 1, n).round(),
        "ext": rng.choice(["html", "css"], n),
    })  # fmt: skip
    y = np.zeros(n, int)
    y[-40:] = 1
    frame.loc[y == 1, ["flag", "count", "ext"]] = [1, 3, "php"]
    ensemble = _FloorEnsemble(frame, y, follow={"count": 0.85})
    rows = frame.iloc[:2].copy()
    rows["flag"] = 1
    rows["ext"] = ["png", "css"]
    rows["count"] = [0, 40]
    x = ensemble.preprocessing.encode(rows)
    scores = {m: np.ones(2) for m in ("ae", "rf", "if", "ensemble")} | {"verdict": np.ones(2, int)}
    out = explanation_columns(ensemble, rows, x, scores, k=3, every_row=True)
    first = out.iloc[0]
    assert [first[f"explain_{i}_feature"] for i in (1, 2)] == ["flag", "ext=__other__"]
    assert first["explain_1_error"] == pytest.approx(np.log(2) ** 2 / 1e-6) == first["explain_2_error"]  # the tie
    assert first["explain_1_reason"] == "1 where normal rows are always 0"
    assert first["explain_2_reason"] == "'png' where normal rows are always one of the training's categories"
    assert first["explain_3_reason"] == "'png', not 'css'"  # a category that varies on normal rows
    second = out.iloc[1]
    assert [second[f"explain_{i}_feature"] for i in (1, 2)] == ["count", "flag"]
    assert second["explain_1_error"] < second["explain_2_error"]  # by deviation, not by weight
    assert second["explain_1_reason"] == "40 where normal rows are always 0"
    assert second["explain_3_feature"] == "size" and ", within the normal " in second["explain_3_reason"]


# ----------------------------------------------------------------------------- end to end (slow)


def _score(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """score.py run in this process (its exit status, stdout and stderr), in ``cwd``; the drift
    test runs the script itself, as a scheduled job would."""
    from in_process import run_main
    from threat_ensemble.cli.score import main

    return run_main(main, cwd, *args)


def _score_script(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "scripts" / "score.py"), *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def bundle(default_bundle: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the session's default bundle in this module's own folder (tests write beside it)."""
    copied = copy_bundle(default_bundle, tmp_path_factory.mktemp("operating"))
    assert "profile" in json.loads((copied / "preprocessing.json").read_text())
    return copied


def _normal_rows(n: int, seed: int, bundle: Path) -> pd.DataFrame:
    """Ordinary normal rows of the default data: each numeric feature inside the bundle's normal
    range (its 1st to 99th percentile on normal training rows) and a method and file extension
    that each hold at least 5% of the normal rows. A rarer row (a `map` file, a percent-encoded
    path where the small session bundle's normal rows had none) has a feature that never varies on
    its normal rows, which explanations rightly name first."""
    from threat_ensemble.data.default_data import default_frame

    frame = default_frame()
    normal = frame[frame["label"] == 0]
    ranges = json.loads((bundle / "preprocessing.json").read_text())["profile"]["normal_range"]
    ordinary = np.ones(len(normal), dtype=bool)
    for column, (low, high) in ranges.items():
        if low is not None and high is not None:
            ordinary &= normal[column].between(low, high).to_numpy()
    for column in ("method", "file_extension"):
        ordinary &= normal[column].map(normal[column].value_counts(normalize=True)).to_numpy() >= 0.05
    return normal[ordinary].sample(n, random_state=seed).reset_index(drop=True)


@pytest.mark.slow
@pytest.mark.parametrize("feature", ["path_length", "ua_length", "query_length"])
def test_a_feature_pushed_out_of_its_normal_range_is_named_first(bundle: Path, feature: str) -> None:
    rows = _normal_rows(40, seed=5, bundle=bundle)
    profile = json.loads((bundle / "preprocessing.json").read_text())["profile"]
    high = profile["normal_range"][feature][1]
    rows[feature] = (high + 1) * 10_000  # far above the 99th percentile of normal rows
    work = bundle.parent
    rows.to_csv(work / f"pushed-{feature}.csv", index=False)
    out = work / f"explained-{feature}.csv"
    proc = _score(work, "--bundle", "bundle", "--data", f"pushed-{feature}.csv", "--output", str(out),
                  "--explain", "3", "--explain-all")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    scores = pd.read_csv(out)
    assert (scores["explain_1_feature"] == feature).all(), scores["explain_1_feature"].value_counts()
    assert (scores["explain_1_value"] == (high + 1) * 10_000).all()
    assert np.allclose(scores["explain_1_normal_high"], high)
    assert (scores["explain_1_error"] > scores["explain_2_error"]).all()
    assert (scores["explain_2_error"] >= scores["explain_3_error"]).all()
    assert scores["explain_1_reason"].str.contains(", above the normal ").all()


@pytest.mark.slow
def test_explain_covers_only_flagged_rows_unless_all(bundle: Path) -> None:
    from threat_ensemble.data.default_data import default_frame

    work = bundle.parent
    default_frame().sample(600, random_state=3).to_csv(work / "mixed.csv", index=False)
    proc = _score(work, "--bundle", "bundle", "--data", "mixed.csv", "--output", "mixed-out.csv", "--explain", "2")
    assert proc.returncode == 0, proc.stderr
    out = pd.read_csv(work / "mixed-out.csv")
    flagged = out["verdict"] == 1
    assert 0 < flagged.sum() < len(out)
    assert out.loc[flagged, "explain_1_feature"].notna().all()
    assert out.loc[~flagged, "explain_1_feature"].isna().all()
    assert "explain_3_feature" not in out.columns
    members = out[["ae", "rf", "if"]].to_numpy() >= 0.5
    for j, member in enumerate(("ae", "rf", "if")):
        assert (out["fired"].fillna("").str.split(",").apply(lambda names, m=member: m in names) == members[:, j]).all()
    bad = _score(work, "--bundle", "bundle", "--data", "mixed.csv", "--output", "x.csv", "--explain-all")
    assert bad.returncode == 2 and "--explain-all needs --explain" in bad.stderr


@pytest.mark.slow
def test_drift_report_on_a_shifted_copy_of_the_default_data(bundle: Path) -> None:
    from threat_ensemble.data.default_data import default_frame

    work = bundle.parent
    same = default_frame().sample(3000, random_state=8).reset_index(drop=True)
    same.to_csv(work / "same.csv", index=False)
    shifted = same.copy()
    shifted["response_size"] = shifted["response_size"] * 20 + 5000
    shifted["method"] = np.where(np.arange(len(shifted)) % 2 == 0, "PUT", shifted["method"])
    shifted.to_csv(work / "shifted.csv", index=False)

    ok = _score(work, "--bundle", "bundle", "--data", "same.csv", "--output", "s1.csv",
                "--drift-report", "same.json", "--fail-on-drift")  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert "drift: none of 47 features" in ok.stdout
    drifted = _score_script(work, "--bundle", "bundle", "--data", "shifted.csv", "--output", "s2.csv",
                     "--drift-report", "shifted.json", "--fail-on-drift")  # fmt: skip
    assert drifted.returncode == 4, drifted.stderr
    assert "Traceback" not in drifted.stderr
    report = json.loads((work / "shifted.json").read_text())
    assert set(report["drifted"]) == {"response_size", "method"}
    assert report["features"]["response_size"]["psi"] > report["threshold"] == 0.2
    assert "response_size" in drifted.stdout and "method" in drifted.stdout
    assert len(pd.read_csv(work / "s2.csv")) == 3000  # the scores are written all the same
    quiet = _score(work, "--bundle", "bundle", "--data", "shifted.csv", "--output", "s3.csv",
                   "--drift-report", "shifted2.json")  # fmt: skip
    assert quiet.returncode == 0 and "2 of 47 features" in quiet.stdout
    assert (set(report["shifted"]), report["absent"]) == ({"response_size", "method"}, [])
    assert ": 2 shifted (" in quiet.stdout


@pytest.mark.slow
def test_drift_line_of_score_py_on_a_plain_access_log(bundle: Path) -> None:
    """The shifted features first, then those an access log cannot have, told apart (issue 35, 5)."""
    from default_traffic import generate_traffic_text

    from threat_ensemble.http.features import featurize_text

    work = bundle.parent
    text = str(generate_traffic_text(2000, seed=3, raw_share=0.0)["log"])
    featurize_text(text, "combined", source="access.log").to_csv(work / "access.csv", index=False)
    proc = _score(work, "--bundle", "bundle", "--data", "access.csv", "--output", "a.csv", "--drift-report", "a.json")
    assert proc.returncode == 0, proc.stderr
    line = next(text for text in proc.stdout.splitlines() if text.startswith("drift: "))
    report = json.loads((work / "a.json").read_text())
    assert "header_count" in report["absent"] and "hour" in report["coverage"]
    assert len(report["shifted"]) <= 3 and not {"header_count", "hour"} & set(report["shifted"])
    shifted = f"{len(report['shifted'])} shifted (" if report["shifted"] else "none shifted in value"
    assert line.index(shifted) < line.index(" absent from this kind of input (") < line.index(" unshifted but missing")
    assert line.endswith(" (report: a.json)")


@pytest.mark.slow
def test_a_bundle_without_a_profile_is_refused_for_drift_in_one_line(bundle: Path) -> None:
    work = bundle.parent
    old = work / "old-bundle"
    shutil.copytree(bundle, old)
    data = json.loads((old / "preprocessing.json").read_text())
    del data["profile"]  # as a bundle written before the profile existed
    (old / "preprocessing.json").write_text(json.dumps(data))
    manifest = json.loads((old / "manifest.json").read_text())
    manifest["files"]["preprocessing.json"] = hashlib.sha256((old / "preprocessing.json").read_bytes()).hexdigest()
    (old / "manifest.json").write_text(json.dumps(manifest))
    _normal_rows(30, seed=1, bundle=bundle).to_csv(work / "few.csv", index=False)
    proc = _score(work, "--bundle", str(old), "--data", "few.csv", "--output", "o.csv", "--drift-report", "d.json")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "holds no profile" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (work / "o.csv").exists() and not (work / "d.json").exists()
    scored = _score(work, "--bundle", str(old), "--data", "few.csv", "--output", "o.csv", "--explain", "2",
                    "--explain-all")  # fmt: skip
    assert scored.returncode == 0, scored.stderr  # explained, without normal ranges
    out = pd.read_csv(work / "o.csv")
    assert out["explain_1_feature"].notna().all() and out["explain_1_normal_low"].isna().all()


@pytest.mark.slow
def test_id_columns_are_never_features_and_pass_through_score_py(tmp_path: Path) -> None:
    from threat_ensemble.data.default_data import default_frame

    frame = default_frame().sample(3000, random_state=4).reset_index(drop=True)
    frame.insert(0, "record", np.arange(1, len(frame) + 1))
    frame.insert(1, "request", "GET /item/" + frame["record"].astype(str))
    frame.to_csv(tmp_path / "with-ids.csv", index=False)
    proc = run_train(tmp_path, "--data", "with-ids.csv", "--id-columns", "record,request", "--max-epochs", "2",
                     "--quiet", "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--output-dir", "bundle",
                     "--checkpoint-dir", "ckpt")  # fmt: skip
    assert proc.returncode in (0, 3), proc.stderr[-3000:]
    features = json.loads((tmp_path / "bundle" / "preprocessing.json").read_text())["feature_names"]
    assert "record" not in features and "request" not in features and len(features) == 47
    new = frame.sample(200, random_state=1).reset_index(drop=True)
    new.to_csv(tmp_path / "new.csv", index=False)
    scored = _score(tmp_path, "--bundle", "bundle", "--data", "new.csv", "--output", "out.csv", "--explain", "1")
    assert scored.returncode == 0, scored.stderr
    assert "ignoring" not in scored.stderr  # the ids are known to the bundle, not stray columns
    out = pd.read_csv(tmp_path / "out.csv")
    assert list(out.columns[:3]) == ["label", "record", "request"]
    assert out["record"].tolist() == new["record"].tolist() and out["request"].tolist() == new["request"].tolist()
    missing = _score(tmp_path, "--bundle", "bundle", "--data", "new.csv", "--output", "o2.csv", "--id-columns", "line")
    assert missing.returncode == 2 and "--id-columns names ['line']" in missing.stderr


@pytest.mark.slow
def test_explanations_are_the_same_with_the_onnx_engine_and_report_paths_are_checked(bundle: Path) -> None:
    work = bundle.parent
    _normal_rows(200, seed=9, bundle=bundle).to_csv(work / "rows.csv", index=False)
    out = {}
    for engine in ("python", "onnx"):
        proc = _score(work, "--bundle", "bundle", "--data", "rows.csv", "--output", f"e-{engine}.csv",
                      "--engine", engine, "--explain", "2", "--explain-all")  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        out[engine] = pd.read_csv(work / f"e-{engine}.csv")
    for column in ("fired", "explain_1_feature", "explain_2_feature"):
        assert out["onnx"][column].fillna("").tolist() == out["python"][column].fillna("").tolist(), column
    np.testing.assert_allclose(out["onnx"]["explain_1_error"], out["python"]["explain_1_error"], rtol=1e-9)
    for report, expected in (("drift.txt", "expected a .json file name"), ("bundle/d.json", "inside bundle"),
                             ("rows.csv", "expected a .json"), ("nowhere/d.json", "does not exist")):  # fmt: skip
        proc = _score(work, "--bundle", "bundle", "--data", "rows.csv", "--output", "x.csv", "--drift-report", report)
        assert proc.returncode == 2 and expected in proc.stderr, (report, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1 and not (work / "x.csv").exists()
