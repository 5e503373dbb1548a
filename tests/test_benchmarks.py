"""The training benchmark runs at tiny sizes and prints well-formed JSON (it times nothing here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # every test here trains end to end

ROOT = Path(__file__).resolve().parents[1]


def test_bench_train_quick_prints_a_json_summary(tmp_path: Path) -> None:
    out_file = tmp_path / "summary.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_train.py"),
            "--quick",
            "--sizes",
            "1500",
            "--json-out",
            str(out_file),
        ],
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)  # stdout is the JSON summary and nothing else
    assert json.loads(out_file.read_text()) == summary
    assert summary["machine"]["cpu_count"] >= 1
    assert summary["ae_throughput"]["plain_samples_per_s"] > 0
    assert summary["ae_throughput"]["ours_samples_per_s"] > 0
    assert summary["time_to_quality"]["plain"]["best_val_loss"] > 0
    entry = summary["end_to_end"]["1500"]
    for kind in ("ours", "reference"):
        result = entry[kind]
        assert "error" not in result, result
        assert result["total_s"] > 0 and result["peak_rss_mb"] > 0
        forest_stages = {"forests_after_autoencoder"} if kind == "ours" else {"random_forest", "isolation_forest"}
        stages = {"split", "preprocessing", "autoencoder", "validation", "bundle", *forest_stages}
        assert stages <= set(result["stages_s"])
        assert 0.0 <= result["metrics"]["pr_auc"] <= 1.0 and 0.0 <= result["metrics"]["f1"] <= 1.0
    assert entry["speedup"] > 0
    assert set(entry["ours"]["forest_fit_wall_s"]) == {"random_forest", "isolation_forest"}
    assert all(v > 0 for v in entry["ours"]["forest_fit_wall_s"].values())
    assert [row["rows"] for row in summary["scaling"]] == [1500]
    assert {"ae_throughput_ratio", "time_to_quality_ratio", "help_seconds"} <= set(summary["targets"])


def test_bench_score_quick_prints_a_json_summary(tmp_path: Path, default_bundle: dict) -> None:
    """On the session's default bundle (trained with --export onnx), not a bundle of its own."""
    out_file = tmp_path / "score.json"
    bundle = str(default_bundle["bundle"])
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_score.py"), "--quick", "--bundle", bundle, "--json-out",
         str(out_file)],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert json.loads(out_file.read_text()) == summary
    assert summary["rows"] == 2000 and summary["bundle"] == bundle and summary["train_rows"] is None
    assert summary["batch"]["python_rows_per_s"] > 0 and summary["batch"]["onnx_rows_per_s"] > 0
    for engine in ("python", "onnx", "onnx_graph_call"):
        timing = summary["single_row"][engine]
        assert timing["calls"] == 30 and 0 < timing["p50_ms"] <= timing["p99_ms"]
    assert summary["parity"]["verdicts_differ"] == 0
    assert max(summary["parity"][k] for k in ("ae", "rf", "if", "ensemble")) <= 1e-6
    assert set(summary["targets"]) == {"batch_speedup", "onnx_single_row_p99_ms", "explain_overhead"}
    assert summary["explain"]["plain_s"] > 0 and summary["explain"]["explain_3_s"] > 0
    assert 0 < summary["explain"]["rows_explained"] < 2000


def test_bench_distance_quick_measures_the_distance_beside_the_ensemble(tmp_path: Path, default_bundle: dict) -> None:
    """On the session's default bundle: every engine timed at every sample size, the float64 NumPy
    and ONNX distances equal to scikit-learn's, and the throughput left by each a share in (0, 1]."""
    out_file = tmp_path / "distance.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_distance.py"), "--quick", "--bundle",
         str(default_bundle["bundle"]), "--json-out", str(out_file)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert json.loads(out_file.read_text()) == summary
    assert summary["rows"] == 2000 and summary["encoded_columns"] > 0
    kinds = ("numpy32", "numpy64", "onnx32", "onnx64", "sklearn", "numpy64pc", "onnx64pc")  # pc: on 20 components
    engines = {"ensemble_python", "ensemble_onnx"} | {f"distance_{kind}_{n}" for kind in kinds for n in (100, 500)}
    assert set(summary["rows_per_s"]) == engines and all(v > 0 for v in summary["rows_per_s"].values())
    parity = summary["parity_vs_sklearn"]
    assert parity["numpy64_vs_sklearn_500"] <= 1e-5 and parity["onnx64_vs_numpy64_500"] <= 1e-5
    assert parity["onnx64pc_vs_numpy64pc_500"] <= 1e-5 and summary["components"] == 20
    assert set(summary["throughput_left"]) == {"100", "500"}
    assert all(0 < v <= 1 for left in summary["throughput_left"].values() for v in left.values())


def test_bench_novel_quick_measures_the_ensemble_baselines_and_candidates_on_one_split(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_novel.py"), "--quick", "--candidates", "--work",
         str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    (run,) = report["runs"]
    assert run["split"] in ("nsl-dos", "default-unseen") and run["n_test_attack"] > 0
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_novel import BASELINES, CANDIDATES

    assert set(run["baselines"]) == set(BASELINES) and set(run["candidates"]) == set(CANDIDATES)
    assert set(run["members"]) == {"ae", "rf", "if"}
    for figures in [run["ensemble"], *run["members"].values(), *run["baselines"].values(), *run["candidates"].values()]:
        assert 0.0 <= figures["f1"] <= 1.0 and 0.0 < figures["pr_auc"] <= 1.0 and 0.0 <= figures["fpr"] <= 1.0
    assert run["split"] in report["summary"] and "| model |" in proc.stderr  # the tables it would write
    assert (tmp_path / f"{run['split']}-{run['seed']}" / "bundle" / "gate.json").is_file()  # --work keeps the run
