"""Ranges and choices are checked by ``mllib.arguments`` (one wording), and ``Params`` is defined once."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from mllib.algorithms import ALL_ALGORITHMS, MetaConfig, check_algorithm_settings, head_init_for
from mllib.budget import notebook_budget
from mllib.compare import Verdict
from mllib.data.splits import split_characters
from mllib.data.synthetic import write_synthetic_omniglot
from mllib.incontext import MLPEncoder, InContextLearner, batch_loss, train_incontext
from mllib.landscape import train_start
from mllib.learned_optimizer import LearnedOptimizer, meta_train_optimizer
from mllib.models import SineMLP
from mllib.learners import build_learner
from mllib.tasks import SinusoidTasks
from mllib.train import TrainConfig

PACKAGE = Path(__file__).resolve().parents[1] / "mllib"
# mllib.rl keeps its own aliases until its owner switches them to mllib.models.Params.
NOT_YET_MOVED = {"rl/maml.py", "rl/policy.py"}


def alias_definitions(name: str, package: Path = PACKAGE) -> set[str]:
    """The files of ``package`` that assign ``name`` at module level (``Params = ...``)."""
    found = set()
    for path in package.rglob("*.py"):
        for node in ast.parse(path.read_text()).body:
            targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                found.add(str(path.relative_to(package)))
    return found


def test_alias_definitions_finds_plain_and_annotated_ones(tmp_path):
    (tmp_path / "a.py").write_text("Params = dict\n")
    (tmp_path / "b.py").write_text("from typing import TypeAlias\nParams: TypeAlias = dict\n")
    (tmp_path / "c.py").write_text("from a import Params\ndef f():\n    Params = 1\n")
    assert alias_definitions("Params", tmp_path) == {"a.py", "b.py"}


def test_params_is_defined_once_beside_params_of():
    assert alias_definitions("Params") - NOT_YET_MOVED == {"models.py"}


@pytest.mark.parametrize("call, message", [
    (lambda: train_start("maml", inner_lr=True), "inner_lr must be a finite number > 0, got True"),
    (lambda: train_start("maml", lr=float("inf")), "lr must be a finite number > 0, got inf"),
    (lambda: train_start("maml", shots=2.0), "shots must be an integer >= 1, got 2.0"),
    (lambda: notebook_budget("09"), "notebook must be one of 01, 03, 04, 05, 06, 07, 08; got '09'"),
    (lambda: meta_train_optimizer(LearnedOptimizer(hidden=4), SineMLP(hidden=4), steps=1, meta_lr=0),
     "meta_lr must be a finite number > 0, got 0"),
    (lambda: write_synthetic_omniglot("never-written", layout="tar"), "layout must be one of zip, folder; got 'tar'"),
    (lambda: write_synthetic_omniglot("never-written", drawers=1), "drawers must be an integer >= 2, got 1"),
    (lambda: split_characters("lake", "val"), "part of the lake split must be one of train, test; got 'val'"),
    (lambda: Verdict("better"), "verdict must be one of higher, lower, tie; got 'better'"),
])
def test_bad_values_are_refused_in_the_one_wording(call, message):
    with pytest.raises(ValueError, match=f"^{message.replace('(', '[(]').replace(')', '[)]')}$"):
        call()


def test_the_incontext_trainer_refuses_an_infinite_rate_and_an_unknown_form():
    model = InContextLearner(MLPEncoder(hidden=8), ways=None, dim=8, depth=1, heads=2)
    with pytest.raises(ValueError, match=r"^lr must be a finite number > 0, got inf$"):
        train_incontext(model, SinusoidTasks(seed=0), steps=1, lr=float("inf"), progress=False)
    with pytest.raises(ValueError, match=r"^form must be one of batched, vmap, loop; got 'scan'$"):
        batch_loss(model, SinusoidTasks(seed=0).sample(2), form="scan")
    assert torch.isfinite(batch_loss(model, SinusoidTasks(seed=0).sample(2))[0])


@pytest.mark.parametrize("settings, message", [
    (dict(algo="mamll"), "algo must be one of maml, fomaml, reptile, metasgd, anil, protonet, incontext; got 'mamll'"),
    (dict(algo="maml", bn="running"), "bn must be one of batch, support; got 'running'"),
    (dict(algo="incontext", bn="batch"), "bn must be 'support' for algo='incontext'"),
    (dict(algo="maml", head_init="random"), "head_init must be one of learned, zero; got 'random'"),
    (dict(algo="reptile", head_init="zero"), "head_init='zero' needs an inner loop that adapts the head"),
])
def test_algo_bn_and_head_init_are_checked_by_one_function_in_its_words(settings, message):
    for check in (lambda: check_algorithm_settings(**settings), lambda: MetaConfig(**settings)):
        with pytest.raises(ValueError, match=f"^{message}"):
            check()
    if "head_init" in settings:   # a training run asks for its head through the profile
        run = TrainConfig(algo=settings["algo"], profile="quick", overrides={"head_init": settings["head_init"]})
        check = run.resolved_profile
    else:
        check = TrainConfig(**settings).validate
    with pytest.raises(ValueError, match=f"^{message}"):
        check()


def test_the_rules_of_algo_bn_and_head_init_are_written_once():
    sources = {str(p.relative_to(PACKAGE)): p.read_text() for p in PACKAGE.rglob("*.py")}
    for rule in ("ValueError(f\"head_init='zero' needs an inner loop", "ValueError(f\"bn must be 'support' for algo="):
        assert {name: text.count(rule) for name, text in sources.items() if rule in text} == {"algorithms.py": 1}
    assert check_algorithm_settings("anil", "support", "zero") == "anil"
    with pytest.raises(ValueError, match="^algo must be one of"):
        build_learner("mamll", ways=5, filters=4)


def test_a_profiles_zero_head_is_for_the_algorithms_that_adapt_the_head():
    assert [head_init_for(algo, "zero") for algo in ALL_ALGORITHMS] == [
        "zero", "zero", "learned", "zero", "zero", "learned", "learned"]
    assert head_init_for("maml", None) == head_init_for("maml", "learned") == "learned"
    assert MetaConfig.from_profile("protonet", {"inner_steps": 1, "inner_lr": 0.4, "head_init": "zero"}).head_init \
        == TrainConfig(algo="protonet", profile="quick").resolved_profile().head_init == "learned"
