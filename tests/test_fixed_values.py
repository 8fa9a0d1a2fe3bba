"""The visible checks' fixed values are package data: JSON that ``render`` writes and ``json`` reads back."""
from __future__ import annotations

import json
import tomllib
from pathlib import Path

from mllib.checks.exercise import VALUES_PATH, all_stored_values
from mllib.course.check_values import render

ROOT = Path(__file__).resolve().parents[1]


def test_render_reads_back_as_the_same_values_with_commas_inside_strings():
    values = {"ex": {"expected": [{"list": [1.5, 2]}], "mistakes": {"a, b": ["x,y" * 40, None, True]}}}
    assert json.loads(render(values, width=20)) == values


def test_render_rounds_floats_to_ten_significant_digits_and_wraps_lines():
    text = render({"x": [1 / 3] * 30}, width=40)
    assert json.loads(text) == {"x": [0.3333333333] * 30}
    assert all(len(line) <= 40 for line in text.splitlines())


def test_the_stored_values_are_json_shipped_as_package_data():
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["mllib"]
    assert any(VALUES_PATH.match(glob) for glob in globs)
    assert all_stored_values() == json.loads(VALUES_PATH.read_text())
    assert not VALUES_PATH.with_suffix(".py").exists()
