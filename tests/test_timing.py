"""mllib.timing is the one time budget of the trainers, and the library never imports the course's table."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

import mllib.incontext
from mllib.incontext import MLPEncoder, InContextLearner, train_incontext
from mllib.tasks import SinusoidTasks
from mllib.timing import use_clock

PACKAGE = Path(__file__).resolve().parents[1] / "mllib"
COURSE_DATA = "mllib.budget"
NOT_YET_MOVED: set[str] = set()   # every trainer takes its clock from mllib.timing


def imports_of(source: str) -> set[str]:
    """Every module named by an ``import`` or ``from ... import`` anywhere in ``source`` (absolute only)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def importers_of(module: str, package: Path = PACKAGE) -> set[str]:
    """The files of ``package`` (relative paths) that import ``module``, the module itself left out."""
    own = module.split(".", 1)[1].replace(".", "/") + ".py"
    return {str(p.relative_to(package)) for p in package.rglob("*.py")
            if str(p.relative_to(package)) != own and module in imports_of(p.read_text())}


def test_importers_of_finds_a_function_local_import(tmp_path):
    (tmp_path / "a.py").write_text("def f():\n    from mllib.budget import LIVE_TRAINING\n")
    (tmp_path / "b.py").write_text("import mllib.timing\n")
    (tmp_path / "c.py").write_text("from mllib import budget\n")
    assert importers_of(COURSE_DATA, tmp_path) == {"a.py", "c.py"}


def test_the_library_never_imports_the_course_table():
    assert importers_of(COURSE_DATA) <= NOT_YET_MOVED


class Ticking:
    """A fake clock that moves ``step_seconds`` each time the patched function runs (once a step)."""

    def __init__(self, step_seconds: float) -> None:
        self.t, self.step_seconds = 0.0, step_seconds

    def __call__(self) -> float:
        return self.t


@pytest.mark.parametrize("step_seconds, expected", [(1.0, 3), (0.01, 5)])
def test_incontext_trainer_reads_the_budget_clock(monkeypatch, step_seconds, expected):
    """It stops after the step that uses the budget up (as meta_train does), on the one clock."""
    clock, real = Ticking(step_seconds), mllib.incontext.batch_loss

    def timed(*args, **kwargs):
        clock.t += step_seconds
        return real(*args, **kwargs)

    monkeypatch.setattr(mllib.incontext, "batch_loss", timed)
    torch.manual_seed(0)
    model = InContextLearner(MLPEncoder(hidden=8), ways=None, dim=8, depth=1, heads=2)
    with use_clock(clock):
        history = train_incontext(model, SinusoidTasks(shots=3, query=3, seed=0), steps=5, meta_batch=2,
                                  progress=False, max_seconds=2.5)
    assert len(history["step"]) == expected
    assert history["seconds"] == pytest.approx(expected * step_seconds)


@pytest.mark.parametrize("bad", [0, float("inf"), float("nan"), True, "10"])
def test_incontext_trainer_refuses_a_bad_max_seconds_before_training(bad):
    model = InContextLearner(MLPEncoder(hidden=8), ways=None, dim=8, depth=1, heads=2)
    with pytest.raises(ValueError, match=r"max_seconds must be a number of seconds > 0 \(or None"):
        train_incontext(model, SinusoidTasks(seed=0), steps=1, progress=False, max_seconds=bad)
