#!/usr/bin/env bash
# The prepared GPU check for a CUDA machine with no network (about 6 minutes on an H100, estimated: never run on one yet):
#   0. the card and the software (nvidia-smi, torch, CUDA) -> env.json
#   1. the device toggle: MLLIB_DEVICE=cuda resolves, a tensor lands on the GPU, tests/test_config.py passes;
#   2. the meta-step benchmark: 5-way 1-shot (meta-batch 32; second and first order) and 20-way 1-shot
#      (meta-batch 16; second order), mllib loop and vmap against higher and learn2learn where importable,
#      float64 gradient agreement checked -> bench_5w1s.json, bench_20w1s.json;
#   3. time to accuracy: full-profile MAML 5-way 1-shot trained for TRAIN_SECONDS_5W seconds and 20-way
#      1-shot for TRAIN_SECONDS_20W seconds (mllib train --max-seconds), each published with a measured
#      model card (600 test tasks) -> checkpoints/*.{pt,json,train.log}, runs/*/metrics.jsonl;
#   4. summary.json: the ratios, the accuracies and the seconds, in one place.
# Everything lands in $RESULTS (default benchmarks/results/gpu_<date>). When $OUT is set (the device
# tool, which fetches at most 8 files), the whole folder is also packed into $OUT/gpu_check.tgz and
# summary.json copied beside it. To ship the checkpoints: copy checkpoints/*.{pt,json,train.log}
# into mllib/checkpoints (maml_omniglot_5w1s.* replaces the CPU-trained one that notebook 05 loads)
# and run `python -m mllib bench --readme`.
#
# Usage (repository root):   bash benchmarks/gpu_check.sh
# On the lent device machine: first `make gpu-bundle` here (Omniglot zips + reference packages into
# .gpu/, which git ignores), then run `bash benchmarks/gpu_check.sh` there with carry [".gpu"].
#
# Knobs (environment): PY (python), GPU_CHECK_DEVICE (cuda; `cpu` rehearses the whole script on a CPU
# with tiny sizes, as tests/test_gpu_check_script.py does), TRAIN_SECONDS_5W (60), TRAIN_SECONDS_20W
# (120; the 20-minute target does not fit a 15-minute device lease, so this reports accuracy at that
# time), BENCH_STEPS (8), BENCH_ARGS / TRAIN_ARGS (extra flags), SKIP_BENCH=1, SKIP_TRAIN=1,
# MLLIB_DATA (Omniglot zips; default .gpu/omniglot or the first folder below that holds them).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"     # mllib need not be installed
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
DEVICE=${GPU_CHECK_DEVICE:-cuda}
STAMP=$(date +%Y-%m-%d_%H%M%S)
RESULTS=${RESULTS:-benchmarks/results/gpu_$STAMP}
TRAIN_SECONDS_5W=${TRAIN_SECONDS_5W:-60}
TRAIN_SECONDS_20W=${TRAIN_SECONDS_20W:-120}
BENCH_STEPS=${BENCH_STEPS:-8}
BENCH_ARGS=${BENCH_ARGS:-}
TRAIN_ARGS=${TRAIN_ARGS:-}
mkdir -p "$RESULTS"
RESULTS=$(cd "$RESULTS" && pwd)
export CI=1                      # no progress bars in logs
T0=$(date +%s)
step() { echo; echo "=== [$(( $(date +%s) - T0 )) s] $*"; }

# Reference packages carried as wheels or prepared source trees in .gpu/pkgs (make gpu-bundle).
if [ -d .gpu/pkgs ] && ls .gpu/pkgs/* >/dev/null 2>&1; then
    step "installing carried reference packages into /tmp/gpu-site"
    for pkg in .gpu/pkgs/*; do
        "$PY" -m pip install -q --no-index --no-deps --no-build-isolation --target /tmp/gpu-site "$pkg" \
            || echo "could not install $pkg (the benchmark will say it is missing)"
    done
    export PYTHONPATH="$PYTHONPATH:/tmp/gpu-site"
fi
# Omniglot: $MLLIB_DATA, else the first folder below that holds the zips.
if [ -z "${MLLIB_DATA:-}" ]; then
    for d in .gpu/omniglot /work/shared/data/omniglot shared/data/omniglot ../shared/data/omniglot data/omniglot data; do
        if [ -f "$d/images_background.zip" ]; then
            case $d in /*) export MLLIB_DATA=$d ;; *) export MLLIB_DATA=$ROOT/$d ;; esac
            break
        fi
    done
fi
export MLLIB_CACHE=${MLLIB_CACHE:-$ROOT/data/cache}

step "0. card and software ($DEVICE)"
if [ "$DEVICE" = cuda ]; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$RESULTS/nvidia-smi.csv"
fi
"$PY" - "$DEVICE" <<'EOF' | tee "$RESULTS/env.json"
import json, platform, sys, torch
from mllib.publish import describe_machine
device = sys.argv[1]
print(json.dumps({"torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
                  "device": device, "card": describe_machine(device)}))
EOF

if [ "$DEVICE" = cuda ]; then
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
else
    step "1. device toggle: skipped (rehearsal on $DEVICE)"
fi

if [ "${SKIP_BENCH:-0}" != 1 ]; then
    step "2a. benchmark 5-way 1-shot, meta-batch 32 (second and first order)"
    # shellcheck disable=SC2086
    "$PY" -m mllib bench --device "$DEVICE" --algos maml,fomaml --forms loop,vmap --ways 5 --shots 1 --query 15 \
        --meta-batch 32 --steps "$BENCH_STEPS" --warmup 3 --repeats 1 $BENCH_ARGS --out "$RESULTS/bench_5w1s.json"
    step "2b. benchmark 20-way 1-shot, meta-batch 16 (second order)"
    # shellcheck disable=SC2086
    "$PY" -m mllib bench --device "$DEVICE" --algos maml --forms loop,vmap --ways 20 --shots 1 --query 15 \
        --meta-batch 16 --steps "$BENCH_STEPS" --warmup 3 --repeats 1 $BENCH_ARGS --out "$RESULTS/bench_20w1s.json"
fi

train_and_publish() {  # ways seconds name
    local ways=$1 seconds=$2 name=$3 run="$RESULTS/runs/$3"
    step "3. full-profile MAML $ways-way 1-shot for $seconds s of training"
    # shellcheck disable=SC2086
    "$PY" -m mllib train --algo maml --ways "$ways" --shots 1 --profile full --device "$DEVICE" \
        --max-seconds "$seconds" --val-every 250 $TRAIN_ARGS --out "$run" 2>&1 | tail -n 12
    step "3. publish $name: 600 test tasks"
    "$PY" -m mllib publish "$run" --name "$name" --dest "$RESULTS/checkpoints" --device "$DEVICE" \
        --notes "full profile, trained for a $seconds s budget by benchmarks/gpu_check.sh" > /dev/null
    "$PY" - "$RESULTS/checkpoints/$name.json" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
print(f"{c['checkpoint']}: {100 * c['accuracy']:.2f} +- {100 * c['ci95']:.2f} % ({c['tasks']} test tasks) after "
      f"{c['meta_steps']} meta-steps, {c['train_seconds']} s (best at {c['seconds_to_best']} s); "
      f"validation reached {c['val_time_to_accuracy']}")
EOF
}

HAVE_DATA=0
if "$PY" -c "from mllib.data import load_omniglot; load_omniglot()" >/dev/null 2>&1; then HAVE_DATA=1; fi
if [ "$HAVE_DATA" != 1 ]; then
    step "3. SKIPPED: no Omniglot found (set MLLIB_DATA to the folder with images_background.zip)"
elif [ "${SKIP_TRAIN:-0}" != 1 ]; then
    mkdir -p "$RESULTS/checkpoints"
    train_and_publish 5 "$TRAIN_SECONDS_5W" maml_omniglot_5w1s
    train_and_publish 20 "$TRAIN_SECONDS_20W" maml_omniglot_20w1s
fi

step "4. summary"
"$PY" - "$RESULTS" <<'EOF' | tee "$RESULTS/summary.json"
import json, sys
from pathlib import Path
results = Path(sys.argv[1])
summary = {"env": json.loads((results / "env.json").read_text())}
for bench in sorted(results.glob("bench_*.json")):
    b = json.loads(bench.read_text())
    rows = {f"{r['algo']}/{r['impl']}": r["median_s"] for r in b["results"]}
    summary[bench.stem] = {"median_s": rows, "ratios": b["ratios"], "gradients_agree": b["gradients_agree"]}
    for algo in ("maml", "fomaml"):
        if f"{algo}/learn2learn" in rows and f"{algo}/mllib-vmap" in rows:
            summary[bench.stem][f"{algo}_speedup_vmap_over_learn2learn"] = round(
                rows[f"{algo}/learn2learn"] / rows[f"{algo}/mllib-vmap"], 2)
for card in sorted((results / "checkpoints").glob("*.json")):
    c = json.loads(card.read_text())
    summary[card.stem] = {k: c.get(k) for k in ("accuracy", "ci95", "tasks", "train_seconds", "seconds_to_best",
                                                "meta_steps", "val_time_to_accuracy", "card")}
print(json.dumps(summary, indent=1))
EOF
if [ -n "${OUT:-}" ] && [ -d "$OUT" ]; then
    tar czf "$OUT/gpu_check.tgz" --exclude='checkpoint.pt' -C "$RESULTS" .
    cp "$RESULTS/summary.json" "$OUT/summary.json"
fi
step "done in $(( $(date +%s) - T0 )) s; results in $RESULTS"
ls -lR "$RESULTS" | head -40
