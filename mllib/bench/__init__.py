"""The meta-step benchmark: seconds per meta-step and peak memory, mllib against higher and learn2learn.

What is timed is one meta-gradient: the inner loop on every task's support set and the backward
pass of the query losses to the meta-parameters (no optimiser step), on synthetic Omniglot-shaped
tasks (``[T, ways*shots, 1, 28, 28]`` binary images, query ``[T, ways*query, 1, 28, 28]``).

Implementations (``IMPLEMENTATIONS``):

* ``mllib-loop`` / ``mllib-vmap``: ``mllib.algorithms.meta_gradient`` with ``form="loop"`` / ``"vmap"``.
* ``higher``: the standard ``higher.innerloop_ctx`` loop over tasks, ``.backward()`` per task.
* ``learn2learn``: the standard ``l2l.algorithms.MAML(model, lr).clone().adapt(loss)`` loop.

The references are optional (never dependencies of mllib); ``reference_status()`` says which could
be imported. They run on ``RefConvNet``: the same conv4 learner written as a plain ``nn.Module``
with ``nn.BatchNorm2d(track_running_stats=False)`` (batch statistics, as mllib's ``bn="batch"``)
and the same parameter names, loaded with the same initial weights.

Honesty rules built in:

* every implementation runs in its own fresh subprocess (peak RSS of a process only grows); the
  implementations of one algorithm are set up side by side and stepped in rounds, one meta-step
  each per round with the first one rotated, so a load change on a busy shared CPU hurts all alike;
* the verdict is a ratio computed within each round (mllib over the fastest reference of that
  round), reported as median, quartiles and worst round, next to the load average at the start
  and the end (``suite.round_ratios``); times are also summarised by median and min;
* ``check_gradients`` computes the meta-gradient of every implementation on the same initial
  weights and the same tasks in float64 and reports the relative error against ``mllib-loop``:
  a fast wrong gradient counts for nothing.

Modules, one job each: ``spec`` (what to time: ``BenchSpec``, the synthetic tasks and one
meta-step per implementation), ``references`` (the higher and learn2learn loops on a plain
conv net), ``runner`` (stepping an implementation in this or a worker process, peak memory),
``gradients`` (the float64 agreement check) and ``suite`` (the interleaved benchmark and its table).
"""
from .gradients import GRAD_TOLERANCE, check_gradients, rel_error
from .references import (REFERENCES, RefBlock, RefConvNet, higher_step, learn2learn_step, reference_model,
                         reference_status)
from .runner import Runner, WorkerRunner, peak_rss_mb, time_config
from .spec import BENCH_KIND, IMPLEMENTATIONS, MLLIB_IMPLS, REFERENCE_ALGOS, BenchSpec, make_step, synthetic_batch
from .suite import format_table, host_info, load_average, quartiles, round_ratios, run_benchmark, summarise

__all__ = [
    "BENCH_KIND", "GRAD_TOLERANCE", "IMPLEMENTATIONS", "MLLIB_IMPLS", "REFERENCE_ALGOS", "REFERENCES", "BenchSpec",
    "RefBlock", "RefConvNet", "Runner", "WorkerRunner", "check_gradients", "format_table", "higher_step",
    "host_info", "learn2learn_step", "load_average", "make_step", "peak_rss_mb", "quartiles", "reference_model",
    "reference_status", "rel_error", "round_ratios", "run_benchmark", "summarise", "synthetic_batch",
    "time_config",
]
