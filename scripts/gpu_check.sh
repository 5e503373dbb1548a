#!/usr/bin/env bash
# GPU check (about 5 minutes on one H100): the trainer on the default data with --gpus 1, with
# --strategy ddp (SyncBatchNorm), with bf16 and fp16 mixed precision, at batch 1024, and a SIGKILL
# mid-training followed by --resume compared with an uninterrupted run; with two GPUs also --gpus 2.
# Prints exit status, seconds, samples/s, the forests' lines (fitted on spare cores beside GPU
# training: how long, how much after it), threshold and gate for each; GPU_CHECK_ONLY='bf16|fp16'
# runs only the runs so named. Run from the repository root where CUDA torch and the package's
# dependencies are installed (pip install torch -e . , not the CPU wheel).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
$PY -c "import torch, lightning, mlflow, sklearn; print('torch', torch.__version__, 'lightning', lightning.__version__, 'mlflow', mlflow.__version__, 'sklearn', sklearn.__version__)" || exit 1
n_gpus=$($PY -c "import torch; print(torch.cuda.device_count())")
echo "GPUs visible: $n_gpus ($($PY -c "import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none')"))"
if [ "$n_gpus" -lt 1 ]; then echo "no GPU: nothing to check"; exit 0; fi
work=${GPU_CHECK_DIR:-$(mktemp -d)}
mkdir -p "$work"
summary() {  # bundle -> one line of threshold and gate
  $PY - "$1" <<'PYEOF'
import json, sys
from pathlib import Path
b = Path(sys.argv[1])
if (b / "gate.json").exists():
    t = json.loads((b / "threshold.json").read_text())
    g = json.loads((b / "gate.json").read_text())
    print(f"   threshold {t['threshold']:.9g}  gate {'PASSED' if g['passed'] else 'FAILED'}  "
          f"f1 {g['metrics']['f1']:.4f}  pr_auc {g['metrics']['pr_auc']:.4f}  rf_f1 {g['per_model']['rf']['f1']:.4f}")
else:
    print("   no gate.json")
PYEOF
}
train() {  # name, then train.py options
  local name=$1; shift
  if [ -n "${GPU_CHECK_ONLY:-}" ] && ! [[ "$name" =~ ^(${GPU_CHECK_ONLY})$ ]]; then return 0; fi
  local out="$work/${RUN_DIR:-$name}"  # RUN_DIR: reuse another run's folders (resume)
  mkdir -p "$out"
  local start=$(date +%s)
  timeout 240 $PY scripts/train.py --output-dir "$out/bundle" --checkpoint-dir "$out/ckpt" \
    --tracking-uri "sqlite:///$out/mlflow.db" "$@" > "$out/$name.log" 2>&1
  local rc=$?
  echo "== $name ($*): exit $rc in $(( $(date +%s) - start ))s"
  grep -E "samples/s|distributed:|spare core|beside the autoencoder|Traceback|Error" "$out/$name.log" | tail -6
  [ "$rc" -ne 137 ] && summary "$out/bundle"
  return 0
}
train gpus1 --gpus 1 --max-epochs 20
train ddp1 --gpus 1 --strategy ddp --max-epochs 3
train bf16 --gpus 1 --precision bf16-mixed --max-epochs 3
train fp16 --gpus 1 --precision 16-mixed --max-epochs 3
train batch1024 --gpus 1 --batch-size 1024 --lr 3e-3 --max-epochs 5
train straight --gpus 1 --max-epochs 5
THREAT_ENSEMBLE_CRASH_AT=train_epoch2 train killed --gpus 1 --max-epochs 5
RUN_DIR=killed train resumed --gpus 1 --max-epochs 5 --resume
[ -f "$work/killed/bundle/threshold.json" ] && $PY - "$work/straight/bundle" "$work/killed/bundle" <<'PYEOF'
import json, sys
from pathlib import Path
a, b = (json.loads((Path(p) / "threshold.json").read_text())["threshold"] for p in sys.argv[1:])
print(f"resume vs uninterrupted: threshold {a:.9g} vs {b:.9g} (relative difference {abs(a - b) / abs(a):.2e})")
PYEOF
if [ "$n_gpus" -ge 2 ]; then train gpus2 --gpus 2 --max-epochs 20; fi
