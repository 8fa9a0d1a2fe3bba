#!/usr/bin/env bash
# One-shot GPU check for a CUDA machine with no network (< 8 minutes on an H100):
#   1. the device toggle: MLLIB_DEVICE=cuda resolves and a tensor lands on the GPU (+ tests/test_config.py);
#   2. the meta-step benchmark on cuda: 5-way 1-shot (meta-batch 32) and 20-way 1-shot (meta-batch 16),
#      second and first order, mllib loop/vmap vs higher/learn2learn where importable, gradients checked;
#   3. a full-profile MAML 5-way 1-shot training run with a time budget, then 600 test tasks.
# Every result is JSON under $RESULTS (default: $OUT if set, else benchmarks/results/gpu_<date>).
#
# Usage (from the repository root):   bash benchmarks/gpu_check.sh
# Knobs: PY (python), TRAIN_STEPS (default 1500; about 60-90 s of vmap training on an H100),
#        MLLIB_DATA (Omniglot zips), SKIP_TRAIN=1, BENCH_STEPS (default 10).
set -euo pipefail

cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
STAMP=$(date +%Y-%m-%d_%H%M%S)
RESULTS=${RESULTS:-${OUT:-benchmarks/results/gpu_$STAMP}}
TRAIN_STEPS=${TRAIN_STEPS:-1500}
BENCH_STEPS=${BENCH_STEPS:-10}
# Omniglot: $MLLIB_DATA, else the first folder below that holds the two zips (or a built cache in
# $MLLIB_CACHE); without data the training step is skipped and says so (the rest still runs).
if [ -z "${MLLIB_DATA:-}" ]; then
    for d in /work/shared/data/omniglot shared/data/omniglot ../shared/data/omniglot data/omniglot data; do
        if [ -f "$d/images_background.zip" ]; then export MLLIB_DATA=$d; break; fi
    done
fi
export MLLIB_CACHE=${MLLIB_CACHE:-data/cache}
export CI=1                      # no progress bars in logs
mkdir -p "$RESULTS"
T0=$(date +%s)
step() { echo; echo "=== [$(( $(date +%s) - T0 )) s] $*"; }

step "card"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$RESULTS/nvidia-smi.csv"
"$PY" - <<'EOF' | tee "$RESULTS/env.json"
import json, platform, torch
print(json.dumps({"torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
                  "card": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}))
EOF

step "1. device toggle"
MLLIB_DEVICE=cuda "$PY" - <<'EOF'
import torch
from mllib.device import resolve_device, describe_device
device = resolve_device()
assert device.type == "cuda", device
x = torch.ones(2, device=device)
assert x.is_cuda and float(x.sum()) == 2.0
print("MLLIB_DEVICE=cuda ->", describe_device(device), "; tensor on", x.device)
EOF
"$PY" -m pytest -q -p no:cacheprovider tests/test_config.py

step "2a. benchmark 5-way 1-shot, meta-batch 32 (second and first order)"
"$PY" -m mllib bench --device cuda --algos maml,fomaml --forms loop,vmap --ways 5 --shots 1 --query 15 \
    --meta-batch 32 --steps "$BENCH_STEPS" --warmup 3 --repeats 1 --out "$RESULTS/bench_5w1s.json"

step "2b. benchmark 20-way 1-shot, meta-batch 16 (second order)"
"$PY" -m mllib bench --device cuda --algos maml --forms loop,vmap --ways 20 --shots 1 --query 15 \
    --meta-batch 16 --steps "$BENCH_STEPS" --warmup 3 --repeats 1 --out "$RESULTS/bench_20w1s.json"

HAVE_DATA=0
if "$PY" -c "from mllib.data import load_omniglot; load_omniglot()" >/dev/null 2>&1; then HAVE_DATA=1; fi
if [ "$HAVE_DATA" != 1 ]; then
    step "3. SKIPPED: no Omniglot found (set MLLIB_DATA to the folder with images_background.zip)"
    echo '{"skipped": "no Omniglot data"}' > "$RESULTS/eval_maml_5w1s_full.json"
elif [ "${SKIP_TRAIN:-0}" != 1 ]; then
    step "3a. full-profile MAML 5-way 1-shot, $TRAIN_STEPS meta-steps"
    RUN="$RESULTS/maml_5w1s_full"
    START=$(date +%s)
    "$PY" -m mllib train --algo maml --ways 5 --shots 1 --profile full --device cuda \
        --steps "$TRAIN_STEPS" --out "$RUN" 2>&1 | tail -n 20
    TRAIN_S=$(( $(date +%s) - START ))
    step "3b. evaluate on 600 test tasks"
    "$PY" -m mllib eval --checkpoint "$RUN/best.pt" --tasks 600 --split test --device cuda --json \
        > "$RESULTS/eval_maml_5w1s_full.json"
    "$PY" - "$RESULTS/eval_maml_5w1s_full.json" "$TRAIN_S" "$TRAIN_STEPS" <<'EOF'
import json, sys
path, seconds, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
result = json.load(open(path))
result.update({"train_wall_seconds": seconds, "train_steps": steps})
json.dump(result, open(path, "w"), indent=1)
print(f"accuracy {100 * result['accuracy']:.2f} +- {100 * result['ci95']:.2f} % after {seconds} s ({steps} steps)")
EOF
fi

step "done in $(( $(date +%s) - T0 )) s; results in $RESULTS"
ls -l "$RESULTS"
