"""``python -m mllib train``: meta-train on Omniglot and write checkpoints and metrics to ``--out``.

Example::

    python -m mllib train --algo maml --ways 5 --shots 1 --profile quick --out runs/demo --resume
    python -m mllib train --profile laptop --out runs/laptop            # 54 min on an idle 2-core CPU
    python -m mllib train --profile quick --workers 2 --out runs/demo  # 2 single-thread processes
    python -m mllib train --profile full --head-init zero --meta-lr-schedule cosine --out runs/x
"""
from __future__ import annotations

import argparse
import sys

from mllib import distributed, local_workers
from mllib.signals import exit_code, signal_name
from mllib.algorithms import ALL_ALGORITHMS, BN_MODES, META_GRADIENT_FORMS
from mllib.config import HEAD_INITS, META_LR_SCHEDULES, PROFILE_CHOICES
from mllib.data.splits import SPLIT_CHOICES
from mllib.train import TrainConfig

# profile fields that can be overridden from the command line: flag -> Profile field
PROFILE_FLAGS = {
    "meta_lr": float, "meta_batch": int, "inner_lr": float, "inner_steps": int,
    "inner_steps_test": int, "filters": int, "val_every": int, "val_tasks": int,
    "test_query": int, "checkpoint_every": int,
}
# profile fields with a fixed set of values: flag -> (Profile field's choices, help)
PROFILE_CHOICE_FLAGS = {
    "head_init": (HEAD_INITS, "zero: the zeroing trick, the head starts every task at zero and is not "
                              "meta-learned (maml, fomaml, metasgd, anil); learned: the MAML paper's head"),
    "meta_lr_schedule": (META_LR_SCHEDULES, "cosine: anneal the meta learning rate to 0 over the run's "
                                            "meta-steps (resume with the same --steps)"),
}


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train", help="meta-train a learner on Omniglot",
        description="Meta-train on Omniglot. Writes checkpoint.pt, best.pt, metrics.jsonl and train.log "
                    "into --out (locked by run.lock while the run goes on). Ctrl-C or SIGTERM saves a "
                    "checkpoint (exit 130 / 143); --resume continues exactly where it stopped.",
    )
    parser.add_argument("--algo", choices=ALL_ALGORITHMS, default="maml",
                        help="incontext: the in-context learner of notebook 07 (no inner loop)")
    parser.add_argument("--ways", type=int, default=5)
    parser.add_argument("--shots", type=int, default=1)
    parser.add_argument("--query", type=int, default=None, help="query images per class in training tasks "
                        "(default: the profile's)")
    parser.add_argument("--profile", choices=PROFILE_CHOICES, default=None,
                        help="run profile (default: $MLLIB_PROFILE, else auto = gpu on a GPU, quick otherwise; full only by name)")
    parser.add_argument("--device", default=None, help="auto|cpu|cuda|mps (default: $MLLIB_DEVICE, else auto)")
    parser.add_argument("--out", default=None, help="output folder (default: runs/<algo>-<ways>w<shots>s)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from OUT/checkpoint.pt if it exists (start fresh otherwise)")
    parser.add_argument("--steps", type=int, default=None, help="number of meta-steps (overrides the profile)")
    parser.add_argument("--max-seconds", type=float, default=None, metavar="S",
                        help="training-time budget: stop after the meta-step that reaches S seconds "
                             "(validations included), validate and save there; for time-to-accuracy runs")
    parser.add_argument("--seed", type=int, default=0, help="seeds the initial weights and the training tasks")
    parser.add_argument("--bn", choices=BN_MODES, default=None,
                        help="batch norm statistics: batch (transductive, as in the MAML paper; the default) or "
                             "support (the default and only mode of incontext)")
    parser.add_argument("--form", choices=META_GRADIENT_FORMS, default="auto",
                        help="loop over tasks or vmap (default auto: loop on CPU, vmap on CUDA)")
    parser.add_argument("--split", choices=SPLIT_CHOICES, default="maml",
                        help="character split manifest; lake: train on 25 background alphabets, validate "
                             "on 5 others, test on the 20 evaluation alphabets (unseen alphabets)")
    parser.add_argument("--workers", default="1", metavar="W",
                        help="W single-thread processes on this machine's CPU cores, each adapting to 1/W of "
                             "every meta-batch (the same meta-gradient; mllib.local_workers); auto: one per "
                             "core that splits the meta-batch evenly, 1 on a GPU. Default 1: one process")
    parser.add_argument("--allow-partial-data", action="store_true",
                        help="train on a copy of Omniglot that lacks characters of the split (refused "
                             "otherwise): a warning, and the run is marked non-standard")
    group = parser.add_argument_group("profile overrides")
    for name, kind in PROFILE_FLAGS.items():
        group.add_argument("--" + name.replace("_", "-"), dest=name, type=kind, default=None)
    for name, (choices, text) in PROFILE_CHOICE_FLAGS.items():
        group.add_argument("--" + name.replace("_", "-"), dest=name, choices=choices, default=None,
                           help=text + " (default: the profile's)")
    parser.set_defaults(func=run)
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    overrides = {name: getattr(args, name) for name in (*PROFILE_FLAGS, *PROFILE_CHOICE_FLAGS)
                 if getattr(args, name) is not None}
    return TrainConfig(
        algo=args.algo, ways=args.ways, shots=args.shots, query=args.query, profile=args.profile,
        overrides=overrides, steps=args.steps, device=args.device, seed=args.seed,
        out=f"runs/{args.algo}-{args.ways}w{args.shots}s" if args.out is None else args.out, bn=args.bn,
        form=args.form, resume=args.resume, split=args.split, max_seconds=args.max_seconds,
        allow_partial_data=args.allow_partial_data,
    )


def worker_count(text: str, config: TrainConfig) -> int:
    """``--workers``: a whole number >= 1, or ``auto`` (:func:`mllib.local_workers.auto_workers`)."""
    under_torchrun = distributed.detect() is not None
    if text == "auto":
        return 1 if under_torchrun else local_workers.auto_workers(config)
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"--workers must be a whole number >= 1 (processes) or auto, got {text!r}")
    if int(text) > 1 and under_torchrun:
        raise ValueError("--workers starts its own processes: leave it out under torchrun")
    return int(text)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    workers = worker_count(args.workers, config)
    try:
        if workers > 1:   # errors (a meta-batch that does not split) end in one line (mllib.__main__)
            result = local_workers.train_on_cores(config, workers=workers)
        else:
            result = distributed.train(config)  # meta_train(config), on every rank when run by torchrun
    except KeyboardInterrupt as err:
        print(f"stopped by {signal_name(err)}: resume with the same command plus --resume (out: {config.out})",
              file=sys.stderr)
        return exit_code(err)
    if result is None:  # a rank other than 0 of a torchrun job: rank 0 reports
        return 0
    best = "-" if result.best_val_accuracy is None else f"{100 * result.best_val_accuracy:.2f}%"
    print(f"trained {result.step} steps in {result.seconds:.0f} s on {result.device} ({result.form}); "
          f"best validation accuracy {best} at step {result.best_step}")
    print(f"checkpoints: {result.best_path} (best), {result.checkpoint_path} (latest); "
          f"metrics: {result.metrics_path}")
    return 0
