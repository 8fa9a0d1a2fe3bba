"""Pre-train the course's conv learner on all Omniglot training classes until validation is flat.

The "when not to meta-learn" baseline of notebook 09, section 4 (Chen et al. 2019; Tian et al.
2020): the same network as the quick meta-learners (``ConvLearner``, 4 blocks, 32 filters), trained
as one ordinary classifier over every class of the ``maml`` split's ``train`` part (1,100
characters x 4 rotations by 0/90/180/270 degrees = 4,400 classes, every class's 20 drawings, held
in memory as one ``uint8 [4400, 20, 28, 28]`` tensor: minibatches of uniform classes and drawers),
Adam, cross-entropy, batch norm with each minibatch's statistics.

Stopping rule (validation, never the test classes): every ``--val-every`` steps the frozen features
are scored on ``--val-tasks`` fixed 5-way 1-shot tasks of the ``val`` part (characters as drawn,
5 queries per class, ``bn="batch"``) with the cosine nearest-centroid classifier
(:mod:`mllib.feature_baselines`). When the best validation accuracy has not risen by more than
``--min-delta`` for ``--patience`` evaluations, the learning rate is divided by 10; at the second
such plateau (or at ``--max-seconds``) training stops. The parameters with the best validation
accuracy are kept. The card records the whole validation curve and the spread of its last
``--patience`` points: convergence is that spread, shown, not assumed.

    MLLIB_DATA=... MLLIB_CACHE=... nice -n 10 python benchmarks/make_pretrained_omniglot.py

writes ``mllib/checkpoints/pretrained_omniglot_5w1s.pt`` (``{"format", "config", "state_dict"}``:
float32 tensors, loads with ``torch.load(..., weights_only=True)``) and its card as JSON text in
``pretrained_omniglot_5w1s.train.log`` (not ``.json``: in ``mllib/checkpoints`` that suffix means a
meta-learner's model card of ``python -m mllib publish``).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from mllib.algorithms import MetaConfig, loss_and_metric
from mllib.checkpoint import atomic_save
from mllib.data import load_omniglot, split_characters
from mllib.evaluate import TEST_SEED, EvalProtocol, mean_ci95, test_tasks
from mllib.feature_baselines import feature_accuracies
from mllib.models import ConvLearner, params_of
from mllib.provenance import git_commit

from mllib.feature_baselines import PRETRAINED_FORMAT as FORMAT  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("mllib/checkpoints/pretrained_omniglot_5w1s.pt"))
    ap.add_argument("--filters", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--val-every", type=int, default=250)
    ap.add_argument("--val-tasks", type=int, default=300)
    ap.add_argument("--patience", type=int, default=3)
    ap.add_argument("--min-delta", type=float, default=0.003)
    ap.add_argument("--max-seconds", type=float, default=840.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    data = load_omniglot(progress=False)
    chars = split_characters("maml", "train", data.characters)
    images = data.images[chars]                                                   # [1100, 20, 28, 28]
    images = torch.stack([torch.rot90(images, k, dims=(2, 3)) for k in range(4)], 1).flatten(0, 1)
    num_classes, drawers = images.shape[0], images.shape[1]                      # 4400, 20
    g = torch.Generator().manual_seed(args.seed)

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(num_classes, (n,), generator=g)
        d = torch.randint(drawers, (n,), generator=g)
        return images[y, d][:, None].float().div_(255), y
    protocol = EvalProtocol(MetaConfig(algo="protonet", bn="batch", form="loop"), ways=5, shots=1, query=5,
                            inner_steps=0, split="maml")
    val = test_tasks(data, protocol, args.val_tasks, part="val", seed=TEST_SEED)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)
        model = ConvLearner(num_classes, filters=args.filters, depth=4)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)

    curve, best, best_params, since_best, plateaus = [], -1.0, None, 0, 0
    losses, accs, step, start = [], [], 0, time.perf_counter()
    stop = "max_seconds"
    while time.perf_counter() - start < args.max_seconds:
        x, y = sample(args.batch_size)
        opt.zero_grad(set_to_none=True)
        loss, acc = loss_and_metric(model(x), y)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach())), accs.append(float(acc))
        step += 1
        if step % args.val_every:
            continue
        frozen = {k: v.detach() for k, v in params_of(model).items()}
        val_acc = float(feature_accuracies(model, frozen, val, classifier="centroid").mean())
        point = {"step": step, "seconds": round(time.perf_counter() - start, 1),
                 "lr": opt.param_groups[0]["lr"], "train_loss": round(sum(losses) / len(losses), 4),
                 "train_accuracy": round(sum(accs) / len(accs), 4), "val_accuracy": round(val_acc, 4)}
        curve.append(point)
        losses, accs = [], []
        print(json.dumps(point), flush=True)
        if val_acc > best + args.min_delta:
            since_best = 0
        else:
            since_best += 1
        if val_acc > best:
            best, best_params, best_step = val_acc, {k: v.clone() for k, v in frozen.items()}, step
        if since_best >= args.patience:
            plateaus += 1
            since_best = 0
            if plateaus == 2:
                stop = "validation flat twice (after one learning-rate drop)"
                break
            for group in opt.param_groups:
                group["lr"] /= 10
    seconds = time.perf_counter() - start
    tail = [p["val_accuracy"] for p in curve[-args.patience:]]
    final = feature_accuracies(model, best_params, val, classifier="centroid")
    mean, ci = mean_ci95(final)
    config = {"filters": args.filters, "depth": 4, "num_classes": num_classes, "in_channels": 1,
              "image_size": 28, "split": "maml", "part": "train", "rotations": True}
    state = {k: v.float().contiguous() for k, v in best_params.items()}
    atomic_save({"format": FORMAT, "config": config, "state_dict": state}, args.out)
    card = {
        "checkpoint": args.out.name, "what": "supervised pre-training, 4,400-way classifier (maml split train "
        "characters x 4 rotations); notebook 09 section 4 uses its features, not its head",
        "command": "python " + " ".join(sys.argv), "seed": args.seed, "batch_size": args.batch_size,
        "lr": args.lr, "optimizer": "adam", "bn": "minibatch statistics", **config,
        "steps": step, "train_seconds": round(seconds, 1), "stop": stop, "best_step": best_step,
        "val_protocol": f"{args.val_tasks} fixed 5-way 1-shot tasks of the maml split's val part (characters "
        "as drawn, 5 queries per class, seed 600), cosine nearest centroid, bn=batch",
        "best_val_accuracy": round(mean, 4), "best_val_ci95": round(ci, 4),
        "val_last_points": tail, "val_last_spread": round(max(tail) - min(tail), 4) if tail else None,
        "val_curve": curve, "card": f"{platform.processor() or platform.machine()}, {args.threads} torch threads, "
        "a 2-core CPU shared with other jobs (times are not idle-machine times)",
        "torch": torch.__version__, "git_commit": git_commit(),
    }
    args.out.with_suffix(".train.log").write_text(json.dumps(card, indent=1) + "\n")
    print(json.dumps({k: v for k, v in card.items() if k != "val_curve"}), flush=True)


if __name__ == "__main__":
    main()
