"""Score a run saved by train_recipe.py (runs/recipes/<name>.pt) on the test protocol at other inner-step counts.

    OMP_NUM_THREADS=1 python benchmarks/recipes/eval_saved.py zero_head_cos --steps 1 2 3
adds ``test["last@<k>"]`` entries to ``results/train_<name>.json``.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch  # noqa: E402

from common import RESULTS, Recipe, env_setup, test_accuracy  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("name")
ap.add_argument("--steps", type=int, nargs="+", required=True)
ap.add_argument("--runs", default="runs/recipes")
args = ap.parse_args()
env_setup(1)
from mllib.data import load_omniglot  # noqa: E402
data = load_omniglot(progress=False)
saved = torch.load(os.path.join(args.runs, f"{args.name}.pt"))
r = Recipe(**saved["recipe"])
path = os.path.join(RESULTS, f"train_{args.name}.json")
result = json.load(open(path))
for k in args.steps:
    res = test_accuracy(saved["meta_params"], r, data, k)
    result["test"][f"last@{k}"] = res
    print(f"{args.name} last, {k} test steps: {100 * res['accuracy']:.2f}% +- {100 * res['ci95']:.2f}%", flush=True)
json.dump(result, open(path, "w"), indent=1)
