#!/usr/bin/env python
"""Training speed and memory, ours next to the reference's way, on the same generated data.

    python benchmarks/bench_train.py                      # 10k, 100k, 1M rows (long)
    python benchmarks/bench_train.py --sizes 10000,100000 # skip 1M
    python benchmarks/bench_train.py --quick              # tiny sizes, a smoke test (~1 min)

Measures, in one run:
  1. autoencoder throughput at batch 256 (samples/s, median over epochs after one warm-up epoch):
     the reference's plain loop (DataLoader(TensorDataset), same model, AdamW) against our
     trainer's autoencoder stage (lightning.Trainer + AutoencoderModule + ThreatDataModule, no
     logger, no checkpoints, no progress bar). Their epochs are interleaved (plain, ours, plain,
     ours ...) so both see the same machine load; the ratio is the median of per-epoch pairs;
  2. time to quality: wall seconds until the validation loss is within 2% of the plain loop's best
     (plain loop at batch 256, lr 1e-3, early stopping 10) against ours at --ours-batch/--ours-lr
     (the trainer's defaults unless given),
     again interleaved, each on its own clock;
  3. end to end at each size: per-stage wall seconds, peak RSS, PR-AUC and F1 of our pipeline
     (threat_ensemble.pipeline.train_tables, MLflow to a temporary SQLite store, checkpoints on)
     and of the reference's way, each in its own subprocess, autoencoder for --epochs epochs;
  4. how the cost grows with rows.
Prints progress on stderr and one JSON summary on stdout (also written to --json-out).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
try:
    import threat_ensemble  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))  # synthetic.py: the tests' and benchmarks' generated flows

TARGETS = {
    "ae_throughput_ratio": 1.25,
    "time_to_quality_ratio": 2.0,
    "e2e_100k_speedup": 3.0,
    "peak_rss_1m_mb": 2048,
    "growth_1m_over_100k": 10.0,
    "help_seconds": 2.0,
}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM belongs to the address space created at exec, whereas
    ru_maxrss survives execve on Linux and would report the (larger) parent's RSS at spawn."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def current_rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return float("nan")


def machine() -> dict[str, Any]:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = (float("nan"),) * 3
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "load_avg_at_start": [round(x, 2) for x in load],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
    }


# ----------------------------------------------------------------------------- data
def make_frame(rows: int, seed: int) -> Any:
    from synthetic import make_default_dataset

    return make_default_dataset(rows, seed=seed)


def table_from_frame(frame: Any) -> Any:
    from threat_ensemble.data.tables import LabelledTable

    return LabelledTable(
        features=frame.drop(columns=["label", "family"]), y=frame["label"].to_numpy("int64"), source="bench data"
    )


# ----------------------------------------------------------------------------- autoencoder
def _interleaving_callback(plain: Any, on_epoch: Any = None) -> Any:
    """A callback that runs one plain-loop epoch before each of our epochs and keeps our own clock
    (our wall time minus the plain loop's), our train seconds per epoch and our val losses."""
    from lightning.pytorch.callbacks import Callback

    class Interleave(Callback):
        def __init__(self) -> None:
            self.fit_called = time.perf_counter()
            self.mark: float | None = None
            self.clock = 0.0
            self.train_seconds: list[float] = []
            self.samples: list[int] = []
            self.wall: list[float] = []
            self.val_loss: list[float] = []
            self.plain_train_seconds: list[float] = []

        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            now = time.perf_counter()
            self.clock += now - (self.fit_called if self.mark is None else self.mark)
            if not plain.done:
                plain.epoch()
                self.plain_train_seconds.append(plain.history.train_seconds[-1])
            self.mark = self.t_epoch = time.perf_counter()
            self.n = 0

        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            self.n += len(batch)

        def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
            if not trainer.sanity_checking:
                self.train_seconds.append(time.perf_counter() - self.t_epoch)
                self.samples.append(self.n)

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            now = time.perf_counter()
            self.clock += now - self.mark
            self.mark = now
            self.wall.append(self.clock)
            self.val_loss.append(float(trainer.callback_metrics.get("val_loss", float("nan"))))
            if on_epoch is not None:
                on_epoch(trainer, self)

    return Interleave()


def _ours_trainer(max_epochs: int, callbacks: list[Any]) -> Any:
    import lightning as L

    return L.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=max_epochs,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
    )


def _quiet_lightning() -> None:
    import logging
    import warnings

    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")


def bench_throughput(frame: Any, epochs: int, rounds: int, seed: int) -> dict[str, Any]:
    """Our AE stage vs the plain loop, both at batch 256, epochs interleaved."""
    import lightning as L
    from reference_way import PlainLoop

    from threat_ensemble.data.datamodule import ThreatDataModule
    from threat_ensemble.models.autoencoder import AutoencoderModule

    dm = ThreatDataModule(table_from_frame(frame), batch_size=256, seed=seed)
    dm.setup("fit")
    plain_sps, ours_sps, pair_ratios = [], [], []
    for r in range(rounds):
        plain = PlainLoop(dm.ae_train, dm.ae_val, epochs=epochs, batch_size=256, patience=epochs + 1, seed=seed + r)
        cb = _interleaving_callback(plain)
        L.seed_everything(seed + r, verbose=False)
        _ours_trainer(epochs, [cb]).fit(AutoencoderModule(dm.n_features), datamodule=dm)
        p = [plain.history.samples_per_epoch / t for t in plain.history.train_seconds[1:]]
        o = [n / t for n, t in zip(cb.samples[1:], cb.train_seconds[1:], strict=False)]
        plain_sps += p
        ours_sps += o
        pair_ratios += [b / a for a, b in zip(p, o, strict=False)]
        log(f"throughput round {r + 1}: plain {statistics.median(p):,.0f}/s, ours {statistics.median(o):,.0f}/s")
    return {
        "n_ae_train_rows": len(dm.ae_train),
        "n_features": dm.n_features,
        "batch_size": 256,
        "epochs_per_round": epochs,
        "rounds": rounds,
        "plain_samples_per_s": round(statistics.median(plain_sps)),
        "ours_samples_per_s": round(statistics.median(ours_sps)),
        "ratio_of_medians": round(statistics.median(ours_sps) / statistics.median(plain_sps), 3),
        "ratio": round(statistics.median(pair_ratios), 3),
        "ratio_per_epoch_pair": [round(x, 2) for x in pair_ratios],
    }


def bench_time_to_quality(
    frame: Any, batch_size: int, lr: float, max_epochs: int, seed: int, tolerance: float = 0.02
) -> dict[str, Any]:
    """Wall time until the val loss is within ``tolerance`` of the plain loop's best: the plain
    loop at its settings (batch 256, lr 1e-3, patience 10, at most 100 epochs) vs ours."""
    import lightning as L
    from reference_way import PlainLoop

    from threat_ensemble.data.datamodule import ThreatDataModule
    from threat_ensemble.models.autoencoder import AutoencoderModule

    dm = ThreatDataModule(table_from_frame(frame), batch_size=batch_size, seed=seed)
    dm.setup("fit")
    plain = PlainLoop(dm.ae_train, dm.ae_val, epochs=100, batch_size=256, lr=1e-3, patience=10, seed=seed)

    def stop_when_known(trainer: Any, cb: Any) -> None:
        # once the plain loop has finished, its best is the target: stop as soon as we reach it
        if plain.done and min(cb.val_loss) <= plain.best * (1 + tolerance):
            trainer.should_stop = True

    cb = _interleaving_callback(plain, stop_when_known)
    L.seed_everything(seed, verbose=False)
    model = AutoencoderModule(dm.n_features, lr=lr)
    _ours_trainer(max_epochs, [cb]).fit(model, datamodule=dm)
    plain.finish()  # if ours stopped first, the plain loop runs on alone to its early stop
    target = plain.best * (1 + tolerance)
    h = plain.history
    plain_epoch = next(i for i, v in enumerate(h.val_loss) if v <= target)
    ours_epoch = next((i for i, v in enumerate(cb.val_loss) if v <= target), None)
    out = {
        "target_val_loss": round(target, 6),
        "plain": {
            "batch_size": 256,
            "lr": 1e-3,
            "best_val_loss": round(plain.best, 6),
            "epochs_run": len(h.val_loss),
            "epochs_to_target": plain_epoch + 1,
            "seconds_to_target": round(h.wall[plain_epoch], 2),
            "seconds_total": round(h.wall[-1], 2),
        },
        "ours": {
            "batch_size": batch_size,
            "lr": lr,
            "best_val_loss": round(min(cb.val_loss), 6),
            "epochs_run": len(cb.val_loss),
            "epochs_to_target": None if ours_epoch is None else ours_epoch + 1,
            "seconds_to_target": None if ours_epoch is None else round(cb.wall[ours_epoch], 2),
            "seconds_total": round(cb.wall[-1], 2) if cb.wall else None,
        },
    }
    out["ratio"] = (
        round(h.wall[plain_epoch] / cb.wall[ours_epoch], 3) if ours_epoch is not None and cb.wall[ours_epoch] else None
    )
    return out


# ----------------------------------------------------------------------------- end to end (workers)
def worker_ours(data_path: Path, work: Path, epochs: int, batch_size: int, lr: float) -> dict[str, Any]:
    """Our pipeline (train_tables) with each stage's wall time recorded by wrapping its pieces."""
    import pandas as pd

    t_import = time.perf_counter()
    import lightning  # noqa: F401
    import mlflow
    import sklearn.ensemble  # noqa: F401
    import torch  # noqa: F401

    import threat_ensemble.callbacks.end_of_fit as cbm
    import threat_ensemble.data.datamodule as datam
    from threat_ensemble.config import TrainConfig
    from threat_ensemble.pipeline import train_tables

    import_s = time.perf_counter() - t_import
    # One-time setup a user pays once per store, not per run: create the SQLite tables now.
    t_store = time.perf_counter()
    tracking_uri = f"sqlite:///{work / 'mlflow.db'}"
    mlflow.MlflowClient(tracking_uri=tracking_uri).search_experiments()
    store_init_s = time.perf_counter() - t_store
    frame = pd.read_pickle(data_path)
    table = table_from_frame(frame)
    del frame
    rss_data = current_rss_mb()
    stages: dict[str, float] = {}
    marks: dict[str, float] = {}

    def timed(name: str, fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            marks.setdefault(f"{name}_start", t0)
            try:
                return fn(*args, **kwargs)
            finally:
                stages[name] = stages.get(name, 0.0) + time.perf_counter() - t0

        return wrapper

    datam.stratified_split = timed("split", datam.stratified_split)
    datam.ThreatDataModule.setup = timed("setup", datam.ThreatDataModule.setup)
    lightning.Trainer.fit = timed("fit", lightning.Trainer.fit)
    lightning.Trainer.test = timed("test", lightning.Trainer.test)  # the gate's test loop, bundle and tracking
    for name in ("fit_random_forest", "fit_isolation_forest"):
        if hasattr(cbm, name):
            setattr(cbm, name, timed(name, getattr(cbm, name)))
    if hasattr(cbm, "ForestCallback"):
        cbm.ForestCallback.fit_or_load = timed("forests", cbm.ForestCallback.fit_or_load)
    # the steps after the autoencoder, each timed as a whole: the fusion when the fit ends, the bundle
    # and tracking when the test loop (the gate) ends; older versions ran all of them in on_fit_end
    for cls_name, stage in (
        ("FusionCallback", "fusion"),
        ("EnsembleValidationCallback", "validate"),
        ("BundleCallback", "write_bundle"),
        ("TrackingCallback", "tracking_final"),
    ):
        if hasattr(cbm, cls_name):
            cls = getattr(cbm, cls_name)
            hook = "on_test_end" if "on_test_end" in vars(cls) else "on_fit_end"
            setattr(cls, hook, timed(stage, getattr(cls, hook)))

    cfg = TrainConfig(
        max_epochs=epochs,
        patience=epochs,  # a fixed number of epochs: early stopping never fires
        batch_size=batch_size,
        lr=lr,
        seed=42,
        output_dir=str(work / "bundle"),
        checkpoint_dir=str(work / "checkpoints"),
        tracking_uri=tracking_uri,
        quiet=True,
    )
    t0 = time.perf_counter()
    result = train_tables(cfg, table)
    total = time.perf_counter() - t0
    fit_start = marks.get("fit_start", t0)
    # the gate: its own step before, now Trainer.test less the bundle and tracking run in its on_test_end
    after_gate = stages.get("write_bundle", 0.0) + stages.get("tracking_final", 0.0)
    gate_s = stages.get("validate", stages.get("test", 0.0) - after_gate)
    forests_start = marks.get("forests_start", fit_start + stages.get("fit", 0.0))
    # The forests start beside the autoencoder when a core is spare (ForestCallback): their own
    # fit times overlap its training, so the stage is the wait for them after training ends.
    out_stages = {
        "split": stages.get("split", 0.0),
        "preprocessing": stages.get("setup", 0.0) - stages.get("split", 0.0),
        "autoencoder": forests_start - fit_start,
        "forests_after_autoencoder": stages.get("forests", 0.0),
        "validation": stages.get("fusion", 0.0) + gate_s,
        "bundle": stages.get("write_bundle", 0.0),
        "tracking_final": stages.get("tracking_final", 0.0),
    }
    out_stages["other"] = total - sum(out_stages.values())  # run state, fingerprint, MLflow setup
    forest_fit_s = {name: round(stages.get(f"fit_{name}", 0.0), 3) for name in ("random_forest", "isolation_forest")}
    m = result.metrics
    return {
        "total_s": round(total, 3),
        "stages_s": {k: round(v, 3) for k, v in out_stages.items()},
        "forest_fit_wall_s": forest_fit_s,  # each fit from start to end, partly beside the autoencoder
        "metrics": {k: round(float(m[k]), 4) for k in ("pr_auc", "f1", "precision", "recall", "roc_auc") if k in m},
        "gate_passed": bool(result.passed),
        "config": {"epochs": epochs, "batch_size": batch_size, "lr": lr},
        "import_s": round(import_s, 2),
        "tracking_store_init_s": round(store_init_s, 2),
        "rss_after_data_mb": round(rss_data, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def worker_reference(data_path: Path, work: Path, epochs: int) -> dict[str, Any]:
    import pandas as pd

    t_import = time.perf_counter()
    import sklearn.ensemble  # noqa: F401
    import torch
    from reference_way import run_reference

    import threat_ensemble.models.autoencoder  # noqa: F401  (build_autoencoder; imports lightning)

    torch.set_num_threads(1)  # spared the 2-thread collapse (PLATFORM-NOTES), to its advantage
    import_s = time.perf_counter() - t_import
    frame = pd.read_pickle(data_path)
    features, y = frame.drop(columns=["label", "family"]), frame["label"].to_numpy("int64")
    del frame
    rss_data = current_rss_mb()
    t0 = time.perf_counter()
    out = run_reference(features, y, work / "reference_bundle", epochs=epochs)
    total = time.perf_counter() - t0
    return {
        "total_s": round(total, 3),
        "stages_s": out["stages_s"],
        "metrics": {k: round(v, 4) for k, v in out["metrics"].items()},
        "gate_passed": bool(out["metrics"]["pr_auc"] >= 0.85 and out["metrics"]["f1"] >= 0.80),
        "config": {"epochs": epochs, "batch_size": 256, "lr": 1e-3},
        "import_s": round(import_s, 2),
        "rss_after_data_mb": round(rss_data, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def run_worker(kind: str, data_path: Path, args: argparse.Namespace, timeout: float) -> dict[str, Any]:
    """One pipeline in its own subprocess, so its peak RSS is its own."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{kind}-") as work:
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--worker",
            kind,
            "--data",
            str(data_path),
            "--work",
            work,
            "--epochs",
            str(args.epochs),
            "--ours-batch",
            str(args.ours_batch),
            "--ours-lr",
            str(args.ours_lr),
        ]
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout:.0f}s"}
        wall = time.perf_counter() - t0
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        if proc.returncode != 0 or not lines:
            return {"error": f"exit {proc.returncode}: {proc.stderr[-2000:]}"}
        out = json.loads(lines[-1])
        out["process_wall_s"] = round(wall, 2)
        return out


# ----------------------------------------------------------------------------- summary
def help_seconds() -> float:
    script = HERE.parent / "scripts" / "train.py"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, str(script), "--help"], capture_output=True, check=False, timeout=60)
    return round(time.perf_counter() - t0, 3)


def scaling_table(e2e: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    sizes = sorted(int(k) for k in e2e)
    base = {kind: e2e[str(sizes[0])].get(kind, {}).get("total_s") for kind in ("ours", "reference")}
    for n in sizes:
        entry = e2e[str(n)]
        row: dict[str, Any] = {"rows": n}
        for kind in ("ours", "reference"):
            r = entry.get(kind, {})
            row[f"{kind}_total_s"] = r.get("total_s")
            row[f"{kind}_peak_rss_mb"] = r.get("peak_rss_mb")
            row[f"{kind}_x_smallest"] = (
                round(r["total_s"] / base[kind], 2) if r.get("total_s") and base.get(kind) else None
            )
        row["speedup"] = entry.get("speedup")
        rows.append(row)
    return rows


def evaluate_targets(summary: dict[str, Any]) -> dict[str, Any]:
    t: dict[str, Any] = {}
    tp = summary.get("ae_throughput") or {}
    if tp:
        t["ae_throughput_ratio"] = {"value": tp["ratio"], "min": TARGETS["ae_throughput_ratio"]}
    ttq = summary.get("time_to_quality") or {}
    if ttq:
        t["time_to_quality_ratio"] = {"value": ttq.get("ratio"), "min": TARGETS["time_to_quality_ratio"]}
    e2e = summary.get("end_to_end", {})
    mid = e2e.get("100000")
    if mid and "speedup" in mid:
        ours, ref = mid["ours"]["metrics"], mid["reference"]["metrics"]
        t["e2e_100k_speedup"] = {"value": mid["speedup"], "min": TARGETS["e2e_100k_speedup"]}
        t["e2e_100k_quality_no_worse"] = {
            "value": {
                "ours": {k: ours.get(k) for k in ("pr_auc", "f1")},
                "reference": {k: ref.get(k) for k in ("pr_auc", "f1")},
            },
            "passed": ours.get("pr_auc", 0) >= ref.get("pr_auc", 1) and ours.get("f1", 0) >= ref.get("f1", 1),
        }
    big = e2e.get("1000000", {}).get("ours")
    if big and "peak_rss_mb" in big:
        t["peak_rss_1m_mb"] = {"value": big["peak_rss_mb"], "max": TARGETS["peak_rss_1m_mb"]}
        if mid and mid.get("ours", {}).get("total_s"):
            growth = round(big["total_s"] / mid["ours"]["total_s"], 2)
            t["growth_1m_over_100k"] = {"value": growth, "max": TARGETS["growth_1m_over_100k"]}
    t["help_seconds"] = {"value": summary.get("help_seconds"), "max": TARGETS["help_seconds"]}
    for v in t.values():
        if "passed" not in v:
            val = v["value"]
            v["passed"] = val is not None and (val >= v["min"] if "min" in v else val <= v["max"])
    return t


def main(argv: list[str] | None = None) -> int:
    from threat_ensemble.config import TrainConfig

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default=None, help="rows for the end-to-end runs (default 10000,100000,1000000)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few epochs: checks the benchmark runs")
    parser.add_argument("--epochs", type=int, default=10, help="autoencoder epochs in the end-to-end runs")
    parser.add_argument("--ae-rows", type=int, default=100_000, help="rows generated for the AE benchmarks")
    parser.add_argument("--ae-epochs", type=int, default=6, help="epochs per throughput round (first is warm-up)")
    parser.add_argument("--ae-rounds", type=int, default=2, help="throughput rounds")
    parser.add_argument("--ttq-max-epochs", type=int, default=100, help="epoch cap for ours in time-to-quality")
    parser.add_argument(
        "--ours-batch", type=int, default=TrainConfig.batch_size, help="our batch size (default: the trainer's)"
    )
    parser.add_argument(
        "--ours-lr", type=float, default=TrainConfig.lr, help="our learning rate (default: the trainer's)"
    )
    parser.add_argument("--reference-max-rows", type=int, default=1_000_000, help="skip the reference above this")
    parser.add_argument("--skip", default="", help="comma list of parts to skip: throughput,ttq,e2e")
    parser.add_argument("--worker-timeout", type=float, default=3600.0)
    parser.add_argument("--json-out", default=None, help="also write the summary here")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--worker", choices=["ours", "reference"], help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(1)  # PLATFORM-NOTES: one thread for the tiny model on CPU, both sides
    _quiet_lightning()
    if args.worker:
        if args.worker == "ours":
            out = worker_ours(Path(args.data), Path(args.work), args.epochs, args.ours_batch, args.ours_lr)
        else:
            out = worker_reference(Path(args.data), Path(args.work), args.epochs)
        print(json.dumps(out))
        return 0

    if args.quick:
        args.sizes = args.sizes or "2000"
        args.ae_rows, args.ae_epochs, args.ae_rounds = 2000, 3, 1
        args.ttq_max_epochs, args.epochs = 4, 2
    sizes = [int(s) for s in (args.sizes or "10000,100000,1000000").split(",") if s.strip()]
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    summary: dict[str, Any] = {
        "benchmark": "train",
        "machine": machine(),
        "note": "shared machine: timings are noisy; AE comparisons interleave epochs to share the noise",
        "settings": {
            "sizes": sizes,
            "e2e_autoencoder_epochs": args.epochs,
            "ours": {"batch_size": args.ours_batch, "lr": args.ours_lr},
            "reference": {"batch_size": 256, "lr": 1e-3},
            "ae_rows": args.ae_rows,
            "data": "threat_ensemble.synthetic.make_default_dataset (29 raw columns; ours one-hot -> 39, "
            "reference ordinal -> 29)",
        },
    }
    started = time.perf_counter()
    summary["help_seconds"] = help_seconds()

    if not {"throughput", "ttq"} <= skip:
        ae_frame = make_frame(args.ae_rows, args.seed)
        if "throughput" not in skip:
            log(f"AE throughput at batch 256 on {args.ae_rows} rows")
            summary["ae_throughput"] = bench_throughput(ae_frame, args.ae_epochs, args.ae_rounds, args.seed)
        if "ttq" not in skip:
            log(f"AE time to quality: plain 256/1e-3 vs ours {args.ours_batch}/{args.ours_lr}")
            summary["time_to_quality"] = bench_time_to_quality(
                ae_frame, args.ours_batch, args.ours_lr, args.ttq_max_epochs, args.seed
            )
            log(f"time to quality: {summary['time_to_quality']}")
        del ae_frame

    if "e2e" not in skip:
        e2e: dict[str, Any] = {}
        with tempfile.TemporaryDirectory(prefix="bench-data-") as tmp:
            for n in sizes:
                path = Path(tmp) / f"data-{n}.pkl"
                make_frame(n, args.seed).to_pickle(path)
                entry: dict[str, Any] = {}
                log(f"end to end, {n} rows: ours")
                entry["ours"] = run_worker("ours", path, args, args.worker_timeout)
                log(f"  ours: {entry['ours'].get('total_s')} s, {entry['ours'].get('peak_rss_mb')} MB")
                if n <= args.reference_max_rows:
                    log(f"end to end, {n} rows: reference way")
                    entry["reference"] = run_worker("reference", path, args, args.worker_timeout)
                    log(
                        f"  reference: {entry['reference'].get('total_s')} s, "
                        f"{entry['reference'].get('peak_rss_mb')} MB"
                    )
                else:
                    entry["reference"] = {"skipped": f"--reference-max-rows {args.reference_max_rows}"}
                if entry["ours"].get("total_s") and entry["reference"].get("total_s"):
                    entry["speedup"] = round(entry["reference"]["total_s"] / entry["ours"]["total_s"], 2)
                e2e[str(n)] = entry
                path.unlink()
        summary["end_to_end"] = e2e
        summary["scaling"] = scaling_table(e2e)
    summary["targets"] = evaluate_targets(summary)
    summary["bench_wall_s"] = round(time.perf_counter() - started, 1)
    text = json.dumps(summary, indent=2)
    if args.json_out:
        Path(args.json_out).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
