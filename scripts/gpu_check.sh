#!/usr/bin/env bash
# GPU check (under 5 minutes): train on the default data with --gpus 1 and, where there are two
# GPUs, --gpus 2; print samples/s, threshold and gate for each. Run from the repository root on a
# machine with CUDA torch installed (pip install torch -e . , not the CPU wheel).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
n_gpus=$($PY -c "import torch; print(torch.cuda.device_count())")
echo "GPUs visible: $n_gpus ($($PY -c "import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none')"))"
if [ "$n_gpus" -lt 1 ]; then echo "no GPU: nothing to check"; exit 0; fi
work=$(mktemp -d)
counts=1
[ "$n_gpus" -ge 2 ] && counts="1 2"
for n in $counts; do
  out="$work/gpus$n"
  start=$(date +%s)
  $PY scripts/train.py --gpus "$n" --max-epochs 20 --output-dir "$out/bundle" --checkpoint-dir "$out/ckpt" \
    --tracking-uri "sqlite:///$out/mlflow.db" --num-threads 4 > "$out/log" 2>&1
  rc=$?
  secs=$(( $(date +%s) - start ))
  echo "== --gpus $n: exit $rc in ${secs}s"
  grep -E "samples/s|distributed:" "$out/log" || tail -20 "$out/log"
  $PY - "$out/bundle" <<'PYEOF'
import json, sys
from pathlib import Path
b = Path(sys.argv[1])
if (b / "gate.json").exists():
    t = json.loads((b / "threshold.json").read_text())
    g = json.loads((b / "gate.json").read_text())
    print(f"threshold {t['threshold']:.6g}  gate {'PASSED' if g['passed'] else 'FAILED'}  "
          f"f1 {g['metrics']['f1']:.4f}  pr_auc {g['metrics']['pr_auc']:.4f}")
PYEOF
done
