"""``python -m mllib eval``: accuracy with a 95% confidence interval over fixed test tasks.

Example::

    python -m mllib eval --checkpoint runs/demo/best.pt --tasks 600 --split test --json \\
        --plot runs/demo/learning_curve.png
    python -m mllib eval --checkpoint maml_omniglot_5w1s      # a checkpoint shipped with the package
    python -m mllib eval --checkpoint maml_omniglot_5w1s --shots 5 --test-rotations   # 5-shot, papers' protocol

Where the plot goes (and the metrics it is drawn from) is checked before the evaluation starts.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mllib.algorithms import BN_MODES, INCONTEXT
from mllib.arguments import check_seed
from mllib.checkpoint import METRICS_NAME, SHIPPED_CHECKPOINTS, find_checkpoint, load_checkpoint
from mllib.data.splits import PARTS
from mllib.evaluate import TEST_SEED, dumps, evaluate, format_result
from mllib.files import check_output_file
from mllib.plots import save_learning_curve


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "eval", help="evaluate a checkpoint on fixed, seeded test tasks",
        description="Adapt to each of --tasks fixed test tasks and report mean query accuracy with a "
                    "95%% confidence interval (1.96 sd / sqrt(n)).",
    )
    parser.add_argument("--checkpoint", required=True, help="a checkpoint written by `mllib train` (best.pt), "
                        "or the name of a shipped one (e.g. maml_omniglot_5w1s)")
    parser.add_argument("--tasks", type=int, default=600, help="number of test tasks (protocol: >= 600)")
    parser.add_argument("--split", choices=PARTS, default="test")
    parser.add_argument("--inner-steps", type=int, default=None, help="inner steps at test (default: the profile's)")
    parser.add_argument("--query", type=int, default=None, help="query images per class (default: the profile's)")
    parser.add_argument("--shots", type=int, default=None,
                        help="support images per class of the test tasks (default: the training shots; "
                             "e.g. 5 tests a 1-shot learner on 5-shot tasks)")
    parser.add_argument("--bn", choices=BN_MODES, default=None, help="default: the training mode")
    parser.add_argument("--test-rotations", action="store_true",
                        help="the MAML and ProtoNets papers' test protocol: each test character rotated by "
                             "0/90/180/270 degrees is four classes (default: characters as drawn)")
    parser.add_argument("--device", default=None, help="auto|cpu|cuda|mps (default: $MLLIB_DEVICE, else auto)")
    parser.add_argument("--seed", type=int, default=TEST_SEED, help="seed of the test tasks")
    parser.add_argument("--batch-size", type=int, default=50, help="tasks evaluated at once")
    parser.add_argument("--json", action="store_true", help="print the result as JSON (only JSON on stdout)")
    parser.add_argument("--plot", default=None, metavar="PATH",
                        help="also write the run's learning curve (from its metrics.jsonl) as a PNG")
    parser.add_argument("--allow-partial-data", action="store_true",
                        help="evaluate on a copy of Omniglot that lacks characters of the split (refused "
                             "otherwise): a warning, and the result is marked non-standard")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    if args.plot is not None:  # checked before minutes of evaluation
        check_output_file(args.plot, "--plot")
        metrics = find_checkpoint(args.checkpoint).parent / METRICS_NAME
        if not metrics.is_file():
            raise FileNotFoundError(f"--plot draws the run's {METRICS_NAME}, and there is none at {metrics}")
    check_seed("seed", args.seed)
    _refuse_model_bundle(args.checkpoint)
    if args.inner_steps is not None:
        _check_has_inner_loop(args.checkpoint)
    if args.tasks < 600:
        print(f"note: {args.tasks} tasks; the published protocol uses at least 600", file=sys.stderr)
    result = evaluate(args.checkpoint, tasks=args.tasks, split=args.split, inner_steps=args.inner_steps,
                      query=args.query, shots=args.shots, bn=args.bn, test_rotations=args.test_rotations,
                      device=args.device, seed=args.seed,
                      batch_size=args.batch_size, allow_partial_data=args.allow_partial_data)
    print(dumps(result) if args.json else format_result(result))
    if args.plot is not None:
        path = save_learning_curve(metrics, args.plot,
                                   title=f"{result['algo']} {result['ways']}-way {result['shots']}-shot")
        print(f"wrote learning curve to {path}", file=sys.stderr if args.json else sys.stdout)
    return 0


# shipped files that are not Omniglot checkpoints: name -> what they are
MODEL_BUNDLES = {
    "matching_omniglot_5w1s_quick": "notebook 07's matching network (scored by mllib.matching's attention read-out, "
                                    "not by an inner loop)",
    "nb07_sine_models": "notebook 07's bundle of five sinusoid-regression models (the notebook reads it)",
    "nb09_pfn": "notebook 09's prior-fitted network for Gaussian-process regression (the notebook reads it)",
    "rl2_navigation": "notebook 08's recurrent (RL^2) point-navigation policy (mllib.rl.rl2.load_rl2_policy reads it)",
    "pretrained_omniglot_5w1s": "notebook 09's pre-trained feature network (scored with a nearest centroid or a linear "
                                "probe by mllib.feature_baselines, not by an inner loop)",
}


def _refuse_model_bundle(checkpoint: str) -> None:
    """``ValueError`` when ``checkpoint`` names a model bundle of :data:`MODEL_BUNDLES`: an intact
    file that eval cannot score, which load_checkpoint would otherwise call "not an mllib checkpoint"."""
    what = MODEL_BUNDLES.get(find_checkpoint(checkpoint).stem)
    if what is not None:
        omniglot = sorted(p.stem for p in SHIPPED_CHECKPOINTS.glob("*.pt") if p.stem not in MODEL_BUNDLES)
        raise ValueError(f"{checkpoint} is {what}, not an Omniglot checkpoint; eval takes a checkpoint "
                         f"written by `python -m mllib train` (a run's best.pt) or a shipped one: "
                         f"{', '.join(omniglot)}")


NO_INNER_LOOP = ("protonet", INCONTEXT)   # algorithms whose learners adapt without inner steps


def _check_has_inner_loop(checkpoint: str) -> None:
    """``ValueError`` when ``--inner-steps`` is given for a checkpoint whose algorithm has no inner
    loop (``incontext``, ``protonet``): the option would be ignored without a word."""
    algo = load_checkpoint(find_checkpoint(checkpoint))["config"]["algo"]
    if algo in NO_INNER_LOOP:
        raise ValueError(f"--inner-steps does not apply to {checkpoint}: the {algo} learner has no inner loop "
                         f"(it adapts in its forward pass); leave the option out")
