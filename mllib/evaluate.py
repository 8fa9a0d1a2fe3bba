"""Evaluation (评估): mean accuracy with a 95% confidence interval over fixed, seeded test tasks.

Taught in notebook 05, section 3. Scored as in the MAML paper: adapt to each of (at least)
600 unseen test tasks from its support set, score the query set, report the mean and
``1.96 * sd / sqrt(n)``. Three steps, one function each::

    run = load_run("runs/demo/best.pt")                # model, meta-parameters, protocol
    tasks = test_tasks(data, run.protocol, 600)        # the same 600 tasks for every model
    accuracies = task_accuracies(run.model, run.params, run.protocol, tasks)     # [600]
    mean, ci95 = mean_ci95(accuracies)

``evaluate(source)`` does all of it and returns the number with its protocol: split, ways,
shots, query, inner steps and learning rate at test, batch-norm mode, transductive or not, and
the test classes. By default a test class is a character as drawn (this course's protocol);
``test_rotations=True`` (``python -m mllib eval --test-rotations``) tests as the MAML and
Prototypical Networks papers did, each test character rotated by 0, 90, 180 and 270 degrees
giving four classes. Compare with the papers' numbers only under theirs.
The test tasks are drawn from a generator seeded with ``seed`` (default :data:`TEST_SEED`), in
fixed chunks of :data:`SAMPLE_CHUNK` tasks, so every model is scored on exactly the same tasks;
``evaluate`` scores each chunk before it draws the next (600 20-way tasks with 15 queries would
hold about 600 MB of images at once).

Checked before scoring: the checkpoint's parameters match the model (names and shapes) and are
finite, and the data holds every character of the split's part (else refused, or with
``allow_partial_data`` run and marked ``standard_protocol: false`` with a ``protocol_note``).
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, replace
from typing import Any, Iterator, Mapping, Sequence

import torch
from torch import Tensor, nn

from mllib.algorithms import INCONTEXT, MetaConfig, evaluate_tasks, init_meta_params, resolve_form
from mllib.arguments import check_choice, check_int
from mllib.checkpoint import check_finite_params, check_params_match, find_checkpoint, load_checkpoint
from mllib.data import OmniglotData, load_omniglot
from mllib.data.splits import PARTS, check_split_complete
from mllib.device import resolve_device
from mllib.learners import build_learner
from mllib.models import build_conv_learner  # noqa: F401  (the docstring examples use it)
from mllib.progress import progress_bar
from mllib.tasks import OmniglotTasks, TaskBatch

TEST_SEED = 600  # the seed of the test tasks: the same tasks for every model
SAMPLE_CHUNK = 100  # test tasks are sampled this many at a time (part of the protocol)


def mean_ci95(values: Sequence[float] | Tensor) -> tuple[float, float]:
    """``(mean, 1.96 * sd / sqrt(n))`` with the sample standard deviation (``n - 1`` denominator).

    ``values``: per-task accuracies (or any scores), at least two of them. Notebook 05, section 3
    (exercise ``confidence_interval``).

        >>> mean_ci95([1.0, 0.0, 1.0, 1.0])          # sd = 0.5, n = 4: 1.96 * 0.5 / 2
        (0.75, 0.49)
    """
    x = torch.as_tensor(values, dtype=torch.float64).flatten()
    if x.numel() < 2:
        raise ValueError(f"values must hold at least 2 numbers for a confidence interval, got {x.numel()}")
    if not torch.isfinite(x).all():
        raise ValueError("values must all be finite")
    return float(x.mean()), float(1.96 * x.std(unbiased=True) / math.sqrt(x.numel()))


@dataclass(frozen=True)
class EvalProtocol:
    """How a meta-learner is tested: which tasks, and how it adapts to each (notebook 05, section 3).

    * ``meta_config``: the algorithm, inner learning rate, batch-norm mode, form and head start
      (``head_init``: a zero-head learner adapts from a zero head at test time too);
    * ``ways``, ``shots``, ``query``: the task shape (``query`` images per class);
    * ``inner_steps``: adaptation steps at test time;
    * ``split``: the character split manifest (``"maml"``, ``"vinyals"``; ``None``: all characters);
    * ``test_rotations``: the classes of the tested part. ``False`` (this course's default): each
      character as drawn is one class. ``True``: the test protocol of the MAML and Prototypical
      Networks papers: each character rotated by 0, 90, 180 and 270 degrees gives four distinct
      classes (423 x 4 = 1,692 test classes on the ``maml`` split), and tasks draw ``ways`` of
      them, so a task may hold two rotations of one character under different labels. Training
      tasks (``part="train"``) are rotated either way.

        >>> protocol = EvalProtocol(MetaConfig(algo="maml"), ways=5, shots=1, query=15, inner_steps=10)
        >>> protocol.with_changes(query=5, bn="support").query
        5
        >>> protocol.with_changes(test_rotations=True).test_rotations
        True
    """

    meta_config: MetaConfig
    ways: int
    shots: int
    query: int
    inner_steps: int
    split: str | None = "maml"
    test_rotations: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.test_rotations, bool):
            raise ValueError(f"test_rotations must be True (rotated test classes, the papers' protocol) or "
                             f"False (characters as drawn), got {self.test_rotations!r}")

    def with_changes(self, query: int | None = None, inner_steps: int | None = None, bn: str | None = None,
                     form: str | None = None, shots: int | None = None,
                     test_rotations: bool | None = None) -> "EvalProtocol":
        """This protocol with the given settings changed (``None``: unchanged)."""
        meta = replace(self.meta_config, bn=bn or self.meta_config.bn, form=form or self.meta_config.form)
        return replace(self, meta_config=meta, query=self.query if query is None else query,
                       inner_steps=self.inner_steps if inner_steps is None else inner_steps,
                       shots=self.shots if shots is None else shots,
                       test_rotations=self.test_rotations if test_rotations is None else test_rotations)


@dataclass
class LearnerToTest:
    """A meta-learner ready to test: its model, meta-parameters (on one device) and protocol.

    Made by :func:`load_run` (which has an example), or by hand from a model and its parameters."""

    model: nn.Module
    params: dict[str, Tensor]
    protocol: EvalProtocol
    step: int | None = None
    checkpoint: str | None = None
    protocol_note: str | None = None  # set when the run was trained on partial data


def load_run(source, device: str | torch.device | None = "auto", *, query: int | None = None,
             inner_steps: int | None = None, bn: str | None = None, form: str | None = None,
             shots: int | None = None, test_rotations: bool | None = None) -> LearnerToTest:
    """The meta-learner of ``source`` on ``device``, with the protocol it was trained for (notebook 05).

    ``source``: a checkpoint path, a loaded checkpoint dict, a ``mllib.train.TrainResult`` (its
    final meta-parameters) or a :class:`LearnerToTest`. The protocol's defaults come from the training
    config: query = ``test_query``, inner steps = ``inner_steps_test``, batch norm = the training
    mode, shots = the training shots; the keyword arguments change them (``None``: unchanged),
    e.g. ``shots=5`` tests a 1-shot learner on 5-shot tasks, ``test_rotations=True`` on the papers'
    rotated test classes (:class:`EvalProtocol`). A form of ``"auto"`` becomes
    the form for ``device`` (``mllib.algorithms.pick_form``). A checkpoint path may also name a
    shipped checkpoint (``"maml_omniglot_5w1s"``, ``mllib.checkpoint.find_checkpoint``).

    Raises ``mllib.checkpoint.CheckpointError`` (a ``ValueError``) when the parameters do not match
    the model (a name missing or extra, a shape different) or are not finite.

        >>> from mllib.models import params_of
        >>> model = build_conv_learner(ways=5, filters=4)
        >>> protocol = EvalProtocol(MetaConfig(), ways=5, shots=1, query=15, inner_steps=10)
        >>> run = load_run(LearnerToTest(model, params_of(model), protocol), "cpu", query=5, bn="support")
        >>> run.protocol.query, run.protocol.meta_config.bn, run.protocol.meta_config.form    # auto -> loop
        (5, 'support', 'loop')
    """
    dev = resolve_device(device)
    run = source if isinstance(source, LearnerToTest) else _run_from_checkpoint(source)
    where = run.checkpoint or "<in memory>"
    check_params_match(run.params, init_meta_params(run.model, run.protocol.meta_config), where)
    check_finite_params(run.params, where)
    protocol = run.protocol.with_changes(query, inner_steps, bn, form, shots, test_rotations)
    protocol = protocol.with_changes(form=resolve_form(protocol.meta_config.form, dev))
    params = {k: v.to(dev) for k, v in run.params.items()}  # detached once, in evaluate_tasks
    return LearnerToTest(run.model.to(dev), params, protocol, run.step, run.checkpoint, run.protocol_note)


def _run_from_checkpoint(source) -> LearnerToTest:
    checkpoint = None
    if isinstance(source, (str, os.PathLike)):
        path = find_checkpoint(source)
        checkpoint, source = str(path), load_checkpoint(path)
    elif hasattr(source, "meta_params") and hasattr(source, "config"):  # a TrainResult
        source = {"config": source.config, "meta_params": source.meta_params, "step": source.step}
    if not isinstance(source, Mapping) or "config" not in source:
        raise ValueError("source must be a checkpoint path, a checkpoint dict, a TrainResult or a "
                         f"LearnerToTest; got {type(source).__name__}")
    config, profile = source["config"], source["config"]["profile"]
    protocol = EvalProtocol(MetaConfig.from_profile(config["algo"], profile, bn=config["bn"]),
                            ways=config["ways"], shots=config["shots"], query=profile["test_query"],
                            inner_steps=profile["inner_steps_test"], split=config.get("split", "maml"))
    model = build_learner(config["algo"], config["ways"], profile["filters"], config.get("depth", 4))
    return LearnerToTest(model, dict(source["meta_params"]), protocol, source["step"], checkpoint,
                         config.get("protocol_note"))


def test_tasks(data: OmniglotData, protocol: EvalProtocol, count: int = 600, part: str = "test",
               seed: int = TEST_SEED) -> TaskBatch:
    """The ``count`` fixed tasks of ``protocol`` from ``part`` of its split: the same for every model.

    Drawn from ``OmniglotTasks(..., seed=seed)`` :data:`SAMPLE_CHUNK` tasks at a time (the
    chunks are part of the protocol). Notebook 05, section 1. Shapes: ``support_x [count, ways*shots, 1, 28, 28]``,
    ``query_x [count, ways*query, 1, 28, 28]``.

        >>> names = [f"alphabet/character{i:02d}" for i in range(12)]
        >>> data = OmniglotData(torch.zeros(12, 20, 28, 28, dtype=torch.uint8), names, ["background"] * 12)
        >>> protocol = EvalProtocol(MetaConfig(form="loop"), ways=5, shots=1, query=2, inner_steps=1, split=None)
        >>> tuple(test_tasks(data, protocol, count=4).query_x.shape)
        (4, 10, 1, 28, 28)
    """
    return TaskBatch.cat(list(test_task_chunks(data, protocol, count, part, seed)))


def test_task_chunks(data: OmniglotData, protocol: EvalProtocol, count: int = 600, part: str = "test",
                     seed: int = TEST_SEED) -> Iterator[TaskBatch]:
    """The tasks of :func:`test_tasks`, :data:`SAMPLE_CHUNK` at a time, each drawn when it is asked for."""
    check_int("count", count, 1)
    sampler = test_sampler(data, protocol, part, seed)
    for start in range(0, count, SAMPLE_CHUNK):
        yield sampler.sample(min(SAMPLE_CHUNK, count - start))


def test_sampler(data: OmniglotData, protocol: EvalProtocol, part: str = "test",
                 seed: int = TEST_SEED) -> OmniglotTasks:
    """The seeded task sampler behind :func:`test_tasks`: ``part`` of ``protocol.split``, its classes
    rotated when ``protocol.test_rotations`` (training tasks always are; see :class:`EvalProtocol`).

        >>> names = [f"alphabet/character{i:02d}" for i in range(12)]
        >>> data = OmniglotData(torch.zeros(12, 20, 28, 28, dtype=torch.uint8), names, ["background"] * 12)
        >>> protocol = EvalProtocol(MetaConfig(form="loop"), ways=5, shots=1, query=2, inner_steps=1, split=None)
        >>> rotated = protocol.with_changes(test_rotations=True)
        >>> test_sampler(data, protocol).num_classes, test_sampler(data, rotated).num_classes
        (12, 48)
    """
    check_choice("part", part, PARTS)
    check_int("seed", seed, 0)
    rotations = True if protocol.test_rotations else None  # None: the sampler's default (train only)
    return OmniglotTasks(data, split=protocol.split, part=part, ways=protocol.ways, shots=protocol.shots,
                         query=protocol.query, rotations=rotations, seed=seed)


# library functions named "test...": not pytest tests
test_tasks.__test__ = test_task_chunks.__test__ = test_sampler.__test__ = False


def task_accuracies(model: nn.Module, params: Mapping[str, Tensor], protocol: EvalProtocol, tasks: TaskBatch,
                    batch_size: int = 50, progress: bool = False) -> Tensor:
    """Per-task query accuracy ``[T]`` (CPU, float) of ``tasks`` after ``protocol.inner_steps`` of adaptation.

    The tasks go to the parameters' device ``batch_size`` at a time (the one chunking loop of
    evaluation) and are scored by ``mllib.algorithms.evaluate_tasks``. Notebook 05, section 3.

        >>> from mllib.models import params_of
        >>> names = [f"alphabet/character{i:02d}" for i in range(12)]
        >>> data = OmniglotData(torch.zeros(12, 20, 28, 28, dtype=torch.uint8), names, ["background"] * 12)
        >>> protocol = EvalProtocol(MetaConfig(form="loop"), ways=5, shots=1, query=2, inner_steps=1, split=None)
        >>> model = build_conv_learner(ways=5, filters=4)
        >>> task_accuracies(model, params_of(model), protocol, test_tasks(data, protocol, count=4)).shape
        torch.Size([4])
    """
    check_int("batch_size", batch_size, 1)
    device = next(iter(params.values())).device
    accuracies = []
    with progress_bar(total=len(tasks), desc="eval", enabled=progress) as bar:
        for start in range(0, len(tasks), batch_size):
            chunk = tasks[start:start + batch_size].to(device)
            scores = evaluate_tasks(model, params, chunk, protocol.meta_config, protocol.inner_steps)
            accuracies.append(scores.float().cpu())
            bar.update(len(chunk))
    return torch.cat(accuracies)


def _scores(run: LearnerToTest, data: OmniglotData, tasks: int, split: str, seed: int, batch_size: int,
            progress: bool) -> Tensor:
    """``[tasks]`` accuracies of ``run`` on the seeded test tasks, drawn one chunk at a time (one in memory)."""
    scores = []
    with progress_bar(total=tasks, desc="eval", enabled=progress) as bar:
        for chunk in test_task_chunks(data, run.protocol, tasks, split, seed):
            scores.append(task_accuracies(run.model, run.params, run.protocol, chunk, batch_size))
            bar.update(len(chunk))
    return torch.cat(scores)


def evaluate(source, *, data: OmniglotData | None = None, tasks: int = 600, split: str = "test",
             seed: int = TEST_SEED, device: str | torch.device | None = "auto", batch_size: int = 50,
             progress: bool = True, allow_partial_data: bool = False, **protocol_changes) -> dict:
    """Accuracy and 95% CI of a meta-learner on ``tasks`` fixed tasks of ``split`` (``"test"``, ``"val"``,
    ``"train"``: the part of the split manifest).

    ``source``: whatever :func:`load_run` takes; ``protocol_changes``: its ``query``,
    ``inner_steps``, ``bn``, ``form``, ``shots`` and ``test_rotations`` (``True``: the papers'
    rotated test classes, see :class:`EvalProtocol`). ``data`` defaults to ``mllib.data.load_omniglot()``;
    a copy that lacks characters of the split's part is refused unless ``allow_partial_data``
    (or ``$MLLIB_ALLOW_PARTIAL_DATA``). Tasks are drawn and scored :data:`SAMPLE_CHUNK` at a time.

    Returns ``{"accuracy", "ci95", "algo", "ways", "shots", "query", "tasks", "inner_steps",
    "inner_lr", "inner_lr_learned", "bn", "transductive", "split", "split_name", "seed", "seconds",
    "device", "form", "step", "checkpoint", "head_init", "test_rotations", "classes", "standard_protocol",
    "protocol_note"}`` (``classes``: how many classes the tasks were drawn from; ``inner_steps`` 0 and ``inner_lr``
    ``None`` for a learner with no inner loop, :func:`has_inner_loop`; accuracy and
    ci95 as fractions in 0..1; ``standard_protocol`` is false when the data, or the data the
    checkpoint was trained on, was incomplete, and ``protocol_note`` says how). Notebook 05, section 3.

        >>> from mllib.models import params_of
        >>> names = [f"alphabet/character{i:02d}" for i in range(12)]
        >>> data = OmniglotData(torch.zeros(12, 20, 28, 28, dtype=torch.uint8), names, ["background"] * 12)
        >>> model = build_conv_learner(ways=5, filters=4)
        >>> protocol = EvalProtocol(MetaConfig(), ways=5, shots=1, query=2, inner_steps=1, split=None)
        >>> learner = LearnerToTest(model, params_of(model), protocol)
        >>> result = evaluate(learner, data=data, tasks=4, device="cpu", progress=False)
        >>> result["tasks"], result["query"], result["transductive"], 0 <= result["accuracy"] <= 1
        (4, 2, True, True)
    """
    check_choice("split", split, PARTS)
    check_int("tasks", tasks, 2)
    check_int("seed", seed, 0)
    check_int("batch_size", batch_size, 1)
    dev = resolve_device(device)
    run = load_run(source, dev, **protocol_changes)
    data = data if data is not None else load_omniglot()
    data_note = check_split_complete(data.characters, run.protocol.split, (split,), allow_partial_data or None)
    notes = [note for note in (run.protocol_note and f"trained {run.protocol_note}",
                               data_note and f"evaluated {data_note}") if note]
    classes = test_sampler(data, run.protocol, split, seed).num_classes
    start = time.perf_counter()
    accuracy, ci95 = mean_ci95(_scores(run, data, tasks, split, seed, batch_size, progress))
    protocol, meta = run.protocol, run.protocol.meta_config
    inner = has_inner_loop(meta.algo)
    return {
        "accuracy": accuracy, "ci95": ci95, "algo": meta.algo, "ways": protocol.ways, "shots": protocol.shots,
        "query": protocol.query, "tasks": tasks, "inner_steps": protocol.inner_steps if inner else 0,
        "inner_lr": float(meta.inner_lr) if inner else None, "inner_lr_learned": meta.algo == "metasgd",
        "bn": meta.bn,
        "transductive": meta.bn == "batch", "split": split, "split_name": protocol.split, "seed": seed,
        "seconds": round(time.perf_counter() - start, 3), "device": str(dev),
        "form": meta.form, "step": run.step, "checkpoint": run.checkpoint, "head_init": meta.head_init,
        "test_rotations": protocol.test_rotations, "classes": classes,
        "standard_protocol": not notes, "protocol_note": "; ".join(notes) or None,
    }


def has_inner_loop(algo: str) -> bool:
    """Whether ``algo`` adapts by gradient steps at test time: not the prototypical network (class means
    of the support embeddings) nor the in-context learner (reads the support set), whatever steps the
    protocol names.

        >>> has_inner_loop("maml"), has_inner_loop("protonet"), has_inner_loop(INCONTEXT)
        (True, False, False)
    """
    return algo not in ("protonet", INCONTEXT)


def format_result(result: Mapping[str, Any]) -> str:
    """One line, e.g. ``maml 5-way 1-shot: 97.10% +- 0.52% (95% CI, 600 test tasks, ...)`` (notebook 05).

        >>> result = dict(algo="maml", ways=5, shots=1, accuracy=0.9259, ci95=0.0056, tasks=600, split="test",
        ...               query=5, inner_steps=3, inner_lr=0.4, bn="batch", transductive=True, device="cpu", seconds=9)
        >>> format_result(result)[:55]
        'maml 5-way 1-shot: 92.59% +- 0.56% (95% CI, 600 test ta'
        >>> format_result(dict(result, test_rotations=True, classes=1692)).split(") ")[-1]
        '[rotated test classes, 1692 of them, as in the MAML and ProtoNets papers]'
    """
    steps = result.get("inner_steps")
    inner = (f"{steps} inner step{'' if steps == 1 else 's'} at lr {result['inner_lr']:g}"
             f"{' (learned)' if result.get('inner_lr_learned') else ''}"
             if result.get("inner_lr") is not None and result.get("algo") != "protonet" else "no inner loop")
    return (
        f"{result['algo']} {result['ways']}-way {result['shots']}-shot: "
        f"{100 * result['accuracy']:.2f}% +- {100 * result['ci95']:.2f}% "
        f"(95% CI, {result['tasks']} {result['split']} tasks, {result['query']} queries per class, {inner}, "
        f"bn={result['bn']} ({'transductive' if result['transductive'] else 'not transductive'}), "
        f"{result['device']}, {result['seconds']:.0f} s)"
        + (f" [rotated test classes, {result['classes']} of them, as in the MAML and ProtoNets papers]"
           if result.get("test_rotations") else "")
        + (f" NON-STANDARD: {result['protocol_note']}" if result.get("standard_protocol") is False else "")
    )


def dumps(result: Mapping[str, Any]) -> str:
    """The result as indented JSON."""
    return json.dumps(dict(result), indent=2)
