"""Train the RL^2 policy notebook 08 reads, and compare it with notebook 08's MAML and pre-trained policies.

Training (``mllib.rl.rl2.train_rl2``): a GRU policy on ``PointNavigation(horizon=20)``, each iteration
``--meta-batch`` new goals with ``--trials`` trials of ``--episodes`` episodes per goal; one torch
thread. Writes ``--out`` (``{"state_dict", "config", "card"}``) and its card as text beside it
(``.train.log``: the command, iterations, seconds on a shared machine, the training curve every
``--log-every`` iterations, git commit).

Evaluation (``--results``): the notebook's own protocol, rebuilt with the notebook's code and seeds
(quick profile, seed 0): 100 test goals (``sample_goals(100, seed 1000)``); MAML (first order, 100
iterations) and joint pre-training (100 iterations), each fine-tuned with 0..3 policy-gradient steps
on 20 fresh episodes per step, step size tuned per start and per number of steps on 50 validation
goals. That is 80 episodes on each goal; RL^2 gets the same 80 episodes as one trial (hidden state
kept across them), and the JSON holds its return per episode, its means over the four blocks of 20
episodes (paired with MAML's and pre-training's four stages on the same goals), and whether the
pre-training baseline has converged (a 500-iteration run, the full profile's, scored the same way).

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/make_rl2_navigation.py
    python benchmarks/make_rl2_navigation.py --skip-train      # re-score the shipped policy only
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from mllib.checkpoint import atomic_save
from mllib.compare import paired_verdict
from mllib.evaluate import mean_ci95
from mllib.provenance import git_commit
from mllib.rl import PointNavigation, meta_train, pretrain_joint, seeded_policy, tuned_adaptation_returns
from mllib.rl.rl2 import load_rl2_policy, rl2_returns, seeded_rl2_policy, train_rl2

SEED, HORIZON, META_BATCH, EPISODES, INNER_LR, META_LR, STEPS = 0, 20, 20, 20, 0.002, 3e-3, 3
VALIDATION_SEED = 777


def train(args: argparse.Namespace) -> None:
    env = PointNavigation(horizon=HORIZON)
    policy = seeded_rl2_policy(args.seed, hidden=args.hidden, mean_bound=args.mean_bound)
    # validation goals, apart from the test goals (seed 1000) and the training goals (--seed's generator)
    validation_goals = env.sample_goals(50, torch.Generator().manual_seed(VALIDATION_SEED))
    best = {"return": -float("inf"), "step": 0, "state": None}
    validations = []

    def validate(step: int) -> None:
        if step % args.validate_every:
            return
        score = float(rl2_returns(policy, env, validation_goals, args.validate_episodes,
                                  torch.Generator().manual_seed(VALIDATION_SEED + 1)).mean())
        validations.append({"iteration": step, "mean_return": round(score, 3)})
        if score > best["return"]:
            best.update({"return": score, "step": step,
                         "state": {k: v.detach().clone() for k, v in policy.state_dict().items()}})

    t0 = time.perf_counter()
    history = train_rl2(policy, env, args.iterations, args.meta_batch, args.trials, args.episodes, args.lr,
                        args.clip, args.discount, args.seed, progress=not args.quiet, max_seconds=args.max_seconds,
                        callback=validate)
    seconds = time.perf_counter() - t0
    if best["state"] is not None:   # the weights that did best on the validation goals
        policy.load_state_dict(best["state"])
    steps = history["step"]
    curve = [{"iteration": steps[i], "return_first": round(sum(history["return_first"][i:i + args.log_every]) /
                                                           len(history["return_first"][i:i + args.log_every]), 3),
              "return_last": round(sum(history["return_last"][i:i + args.log_every]) /
                                   len(history["return_last"][i:i + args.log_every]), 3)}
             for i in range(0, len(steps), args.log_every)]
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
              if k not in ("skip_train", "quiet")}
    card = {"what": "RL^2 policy of notebook 08 (see benchmarks/make_rl2_navigation.py)",
            "command": "python " + " ".join(sys.argv), "env": repr(env), "config": config,
            "iterations_done": len(steps), "stopped_by_time_budget": history["stopped"],
            "interrupted": history["interrupted"], "seconds": round(seconds, 1),
            "machine": f"{platform.machine()} CPU, 1 thread, shared with other jobs (not an idle timing)",
            "torch": str(torch.__version__), "git_commit": git_commit(),
            "kept": f"the weights of iteration {best['step']}, best mean return over {args.validate_episodes} "
                    f"episodes on 50 validation goals (seed {VALIDATION_SEED}), checked every "
                    f"{args.validate_every} iterations",
            "kept_iteration": best["step"], "validation": validations,
            "curve (mean over each block of iterations)": curve}
    atomic_save({"state_dict": policy.state_dict(), "config": config, "card": card}, args.out)
    args.out.with_suffix(".train.log").write_text(json.dumps(card, indent=1) + "\n")
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KB) after {len(steps)} iterations, {seconds:.0f} s")


def notebook_baselines(env: PointNavigation, test_goals: torch.Tensor, pretrain_iterations: tuple) -> dict:
    """Notebook 08's starts, trained and tuned exactly as its quick profile does: ``{name: returns [goals, 4]}``."""
    policy = seeded_policy(SEED)
    runs = {"MAML": meta_train(policy, env, 100, META_BATCH, EPISODES, INNER_LR, META_LR, estimator="first_order",
                               seed=SEED, progress=False)}
    for n in pretrain_iterations:
        runs[f"pre-trained ({n} iterations)"] = pretrain_joint(policy, env, n, META_BATCH, 2 * EPISODES, META_LR,
                                                               seed=SEED, progress=False)
    validation_goals = env.sample_goals(50, torch.Generator().manual_seed(SEED + 500))
    candidates = [INNER_LR / 10, INNER_LR / 3, INNER_LR, 3 * INNER_LR]
    out = {}
    for name, run in runs.items():
        returns, chosen = tuned_adaptation_returns(policy, run.params, env, validation_goals, test_goals, candidates,
                                                   EPISODES, STEPS, seed=SEED + 501)
        out[name] = (returns, chosen[1:])
    return out


def summary(values: torch.Tensor) -> dict:
    mean, ci = mean_ci95(values)
    return {"mean": round(mean, 3), "ci95": round(ci, 3)}


def evaluate(args: argparse.Namespace) -> dict:
    env = PointNavigation(horizon=HORIZON)
    test_goals = env.sample_goals(100, torch.Generator().manual_seed(SEED + 1000))
    policy, card = load_rl2_policy(args.out)
    episodes = (STEPS + 1) * EPISODES
    rl2 = rl2_returns(policy, env, test_goals, episodes, torch.Generator().manual_seed(SEED + 503))   # [100, 80]
    blocks = rl2.reshape(len(test_goals), STEPS + 1, EPISODES).mean(-1)                                 # [100, 4]
    baselines = notebook_baselines(env, test_goals, (100, 500))
    result = {
        "protocol": "notebook 08, quick profile, seed 0: 100 test goals (seed 1000); 80 episodes per goal. "
                    "MAML / pre-trained: 20 episodes, then a policy-gradient step, 4 times (stages k = 0..3), "
                    "step size tuned per start and k on 50 validation goals; RL^2: one trial of the 80 episodes, "
                    "hidden state kept, no gradients. Blocks of RL^2 = episodes 1-20, 21-40, 41-60, 61-80.",
        "rl2_training": {k: card[k] for k in ("config", "iterations_done", "seconds", "machine")},
        "rl2_per_episode": [summary(rl2[:, e]) for e in range(episodes)],
        "rl2_blocks": [summary(blocks[:, k]) for k in range(STEPS + 1)],
        "rl2_last_episode": summary(rl2[:, -1]),
        "baselines": {}, "paired_rl2_minus": {},
    }
    for name, (returns, chosen) in baselines.items():
        result["baselines"][name] = {"stages": [summary(returns[:, k]) for k in range(STEPS + 1)],
                                     "step_sizes": chosen}
        result["paired_rl2_minus"][name] = [
            dict(summary(blocks[:, k] - returns[:, k]), verdict=str(paired_verdict(blocks[:, k], returns[:, k])))
            for k in range(STEPS + 1)]
    short, long = (baselines[f"pre-trained ({n} iterations)"][0] for n in (100, 500))
    result["pretraining_converged"] = {
        "500 minus 100 iterations, per stage": [dict(summary(long[:, k] - short[:, k]),
                                                     verdict=str(paired_verdict(long[:, k], short[:, k])))
                                                for k in range(STEPS + 1)]}
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("mllib/checkpoints/rl2_navigation.pt"))
    ap.add_argument("--results", type=Path, default=Path("benchmarks/results/rl2_navigation.json"))
    ap.add_argument("--iterations", type=int, default=10000)
    ap.add_argument("--max-seconds", type=float, default=840.0, help="wall-clock budget of the training")
    ap.add_argument("--meta-batch", type=int, default=20)
    ap.add_argument("--trials", type=int, default=4, help="trials per goal (the baseline leaves one out)")
    ap.add_argument("--episodes", type=int, default=2, help="episodes per training trial")
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--mean-bound", type=float, default=0.1, help="the policy's mean is bounded by this (tanh)")
    ap.add_argument("--discount", type=float, default=0.9, help="gamma of the trial's reward-to-go")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--validate-every", type=int, default=400)
    ap.add_argument("--validate-episodes", type=int, default=80, help="episodes per validation trial")
    ap.add_argument("--skip-train", action="store_true", help="only evaluate the policy at --out")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if not args.skip_train:
        train(args)
    result = evaluate(args)
    args.results.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("rl2_blocks", "rl2_last_episode", "paired_rl2_minus")}, indent=1))


if __name__ == "__main__":
    main()
