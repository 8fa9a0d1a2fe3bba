"""A zero-head run scored by the library itself: ``mllib.evaluate.evaluate`` on the saved meta-parameters.

At a zero head the body's inner gradients are exactly zero, so the library's all-parameter
``adapt`` gives the same adapted classifier as the recipe's head-only step: the accuracy must
equal ``eval_saved.py``'s (same 600 test tasks).

    OMP_NUM_THREADS=1 python benchmarks/recipes/check_library_eval.py zero_head_cos_2500
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import RESULTS, env_setup  # noqa: E402

env_setup(1)
import torch  # noqa: E402
from mllib.algorithms import MetaConfig  # noqa: E402
from mllib.evaluate import evaluate  # noqa: E402
from mllib.models import ConvLearner  # noqa: E402

name = sys.argv[1]
saved = torch.load(os.path.join("runs/recipes", f"{name}.pt"))
r = saved["recipe"]
model = ConvLearner(r["ways"], filters=r["filters"])
params = {k: v for k, v in saved["meta_params"].items() if not k.startswith("lslr.")}
res = evaluate((model, params), meta_config=MetaConfig(inner_steps=1, inner_lr=r["inner_lr"], bn="batch"),
               ways=r["ways"], shots=r["shots"], inner_steps=1, query=r["test_query"], tasks=600,
               device="cpu", progress=False)
path = os.path.join(RESULTS, f"train_{name}.json")
out = json.load(open(path))
out["library_evaluate@1"] = {k: res[k] for k in ("accuracy", "ci95", "tasks", "inner_steps", "query", "bn",
                                                 "transductive", "split", "split_name", "seed")}
json.dump(out, open(path, "w"), indent=1)
mine = out["test"].get("last@1", {}).get("accuracy")
print(f"{name}: library evaluate {100 * res['accuracy']:.2f}% +- {100 * res['ci95']:.2f}%; recipe script "
      f"{'-' if mine is None else f'{100 * mine:.2f}%'}")
