"""``format_result`` of a prototypical network names no inner loop (it has none; notebook 05, section 4)."""
from __future__ import annotations

from mllib.evaluate import format_result

RESULT = dict(algo="protonet", ways=5, shots=1, accuracy=0.9722, ci95=0.0058, tasks=200, split="test", query=5,
              inner_steps=3, inner_lr=0.4, bn="batch", transductive=True, device="cpu", seconds=1)


def test_protonet_result_says_no_inner_loop():
    line = format_result(RESULT)
    assert "no inner loop" in line and "inner steps" not in line and "lr 0.4" not in line


def test_maml_result_keeps_its_inner_steps():
    line = format_result(dict(RESULT, algo="maml"))
    assert "3 inner steps at lr 0.4" in line


def test_one_inner_step_is_singular():
    assert "1 inner step at lr 0.4" in format_result(dict(RESULT, algo="maml", inner_steps=1))
