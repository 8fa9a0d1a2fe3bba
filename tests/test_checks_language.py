"""The checks in the learner's language (issue 26): ``MLLIB_LANG=zh`` or ``checks.set_language("zh")``.

One catalogue (``mllib/checks/i18n/zh.json``) translates the English texts of the checks' own modules:
every exercise's hint tiers and known mistakes, every fixed message and template; each entry names the
fingerprint of the English it translates, so an English text changed without its translation is listed
here (and the learner reads the current English, never an outdated translation). English stays the
default, unchanged (the other check tests compare it word for word).
"""
from __future__ import annotations

import copy
import json
import math
import warnings
from pathlib import Path

import pytest
import torch

from mllib import checks
from mllib.checks import assignments, i18n
from mllib.checks.exercise import SPECS, visible_check
from mllib.course.check_values import load_mistakes
from mllib.course.translation import fingerprint

ROOT = Path(__file__).resolve().parents[1]
CATALOGUE = ROOT / "mllib" / "checks" / "i18n" / "zh.json"

pytestmark = pytest.mark.usefixtures("lenient_checks")


@pytest.fixture(autouse=True)
def _language(monkeypatch):
    """Each test starts from the default (no MLLIB_LANG, no set_language) and leaves it so."""
    monkeypatch.delenv(i18n.LANG_ENV, raising=False)
    monkeypatch.delenv("MLLIB_PLAIN_MARKS", raising=False)
    checks.set_language(None)
    yield
    checks.set_language(None)


def ci_right(values):
    return values.mean().item(), 1.96 * values.std().item() / math.sqrt(len(values))


def ci_population_sd():
    return load_mistakes(ROOT)["confidence_interval"]["population_sd"]


def _chinese(text: str) -> bool:
    """Chinese words, or at least Chinese punctuation (a frame such as ``✅ {exercise}：{text}``)."""
    return any("\u4e00" <= ch <= "\u9fff" or "\u3000" <= ch <= "\u303f" or "\uff00" <= ch <= "\uffef"
               for ch in text)


def test_every_english_text_of_the_checks_has_a_current_chinese_entry():
    problems = i18n.stale_entries("zh")
    assert not problems, ("the Chinese catalogue mllib/checks/i18n/zh.json is not fresh (translate the English "
                          "shown, then write its fingerprint as \"en\"):\n" + "\n".join(problems))
    texts = i18n.english_texts()
    assert set(texts["exercises"]) == set(SPECS) | set(assignments.ASSIGNMENTS)   # notebooks' and assignments'
    for name in SPECS:
        fields = texts["exercises"][name]
        assert {"concept", "reasoning"} <= set(fields)
        assert {f"mistakes.{mid}" for mid in SPECS[name].mistakes} <= set(fields)


def test_the_freshness_command_says_fresh_or_lists_the_problems(capsys):
    from mllib.checks.i18n.__main__ import main
    assert main(["zh"]) == 0 and capsys.readouterr().out == "mllib/checks/i18n/zh.json: fresh\n"


def test_the_catalogue_keeps_the_course_s_fingerprint_rule_and_translates_into_chinese():
    assert i18n.fingerprint("内循环 inner loop") == fingerprint("内循环 inner loop")
    stored = json.loads(CATALOGUE.read_text(encoding="utf-8"))
    entries = list(stored["messages"].values()) + [e for ex in stored["exercises"].values() for e in ex.values()]
    assert entries and all(_chinese(e["text"]) for e in entries)


def test_a_planted_stale_entry_fails_the_freshness_check_and_is_not_shown(monkeypatch, capsys):
    stored = copy.deepcopy(i18n.catalogue("zh"))
    stored["exercises"]["confidence_interval"]["mistakes.population_sd"]["en"] = "000000000000"
    stored["messages"]["core.passed"]["text"] = "✅ {exercise}：通过{total}个用例"      # a field lost
    stored["exercises"]["confidence_interval"]["mistakes.gone"] = {"en": "123456789abc", "text": "旧的"}
    del stored["exercises"]["sgd_step"]["concept"]
    problems = "\n".join(i18n.stale_entries("zh", stored))
    assert "exercises confidence_interval.mistakes.population_sd: stale" in problems
    assert "messages core.passed: fields" in problems
    assert "exercises confidence_interval.mistakes.gone: translates a text that no longer exists" in problems
    assert "exercises sgd_step.concept: no translation" in problems
    monkeypatch.setattr(i18n, "catalogue", lambda lang: stored)
    checks.set_language("zh")
    visible_check(SPECS["confidence_interval"], ci_population_sd())
    out = capsys.readouterr().out
    assert SPECS["confidence_interval"].mistakes["population_sd"] in out    # the current English, not the stale text
    assert "提示：" in out


def test_with_mllib_lang_zh_a_known_mistake_prints_chinese_hints_and_a_pass_prints_chinese(monkeypatch, capsys):
    monkeypatch.setenv(i18n.LANG_ENV, "zh_CN.UTF-8")
    assert checks.language() == "zh"
    result = visible_check(SPECS["confidence_interval"], ci_population_sd())
    out = capsys.readouterr().out
    zh = i18n.catalogue("zh")["exercises"]["confidence_interval"]
    assert not result and out == result.message + "\n"
    assert out.startswith("❌ confidence_interval：第")
    assert f"   提示：{zh['mistakes.population_sd']['text']}\n" in out
    assert out.endswith("   更多帮助：checks.hint('confidence_interval')\n")
    assert "Hint" not in out and "More help" not in out
    assert checks.check_confidence_interval(ci_right)
    assert capsys.readouterr().out == "✅ confidence_interval：通过4/4个用例\n"
    hidden = checks.hidden_tests("confidence_interval", ci_right, ci_right)
    assert capsys.readouterr().out == "✅ confidence_interval（隐藏测试）：通过5/5个用例\n"
    assert hidden.exercise == "confidence_interval (hidden tests)"     # what the grader records stays English
    checks.hints._ASKED.pop("confidence_interval", None)
    text = checks.hint("confidence_interval")
    assert f"提示1（核心概念）：{zh['concept']['text']}" in text and f"提示2（推理思路）：{zh['reasoning']['text']}" in text
    assert "请根据这两条提示再试一次" in checks.hint("confidence_interval")
    monkeypatch.delenv(checks.SOLUTIONS_ENV, raising=False)
    checks.show_solution("confidence_interval")
    assert capsys.readouterr().out.splitlines()[-1].startswith("🔒 confidence_interval：这份课程副本没有开放参考解答")


def test_english_is_the_default_and_unchanged(capsys):
    assert checks.language() == "en"
    visible_check(SPECS["confidence_interval"], ci_population_sd())
    out = capsys.readouterr().out
    assert out.startswith("❌ confidence_interval: result[1] is ")
    assert out.endswith(f"   Hint: {SPECS['confidence_interval'].mistakes['population_sd']}\n"
                        f"   More help: checks.hint('confidence_interval')\n")
    assert checks.check_confidence_interval(ci_right)
    assert capsys.readouterr().out == "✅ confidence_interval: passed 4/4 cases\n"


def test_templates_fill_values_unchanged_and_plain_marks_still_apply(monkeypatch, capsys):
    checks.set_language("zh")
    monkeypatch.setenv("MLLIB_PLAIN_MARKS", "1")
    checks.check_confidence_interval(lambda values: [1.0])
    out = capsys.readouterr().out
    assert out.startswith("[FAIL] confidence_interval：第1个用例（共4个；输入：tensor[2] float64）：result有1项，应为2项\n"
                          "   提示：返回一个二元组(mean, half_width)\n")
    checks.check_confidence_interval(lambda values: torch.tensor(values.tolist()))
    assert "：result应是含2项的tuple，得到的是Tensor\n" in capsys.readouterr().out


def test_set_language_wins_over_the_environment_and_unknown_languages_say_so(monkeypatch, capsys):
    monkeypatch.setenv(i18n.LANG_ENV, "zh")
    assert checks.set_language("en") == "en"
    checks.check_confidence_interval(ci_right)
    assert capsys.readouterr().out == "✅ confidence_interval: passed 4/4 cases\n"
    assert checks.set_language(None) == "zh"
    with pytest.raises(ValueError, match=r"^set_language='fr' is not a language of the checks; choose one of en, zh"):
        checks.set_language("fr")
    checks.set_language(None)
    monkeypatch.setenv(i18n.LANG_ENV, "klingon")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert checks.language() == "en"
    assert [str(w.message) for w in caught] == [
        "MLLIB_LANG='klingon' is not a language of the checks; choose one of en, zh (en: English, zh: Chinese); "
        "the checks print English"]


def test_the_catalogue_ships_in_the_wheel():
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert '"checks/i18n/*.json"' in pyproject
    assert "mllib/checks/i18n/zh.json" in (ROOT / "scripts" / "check_wheel.sh").read_text(encoding="utf-8")


def test_the_assignments_verdicts_speak_chinese_too(capsys):
    checks.set_language("zh")
    assignments.check_accuracy_band("A2", torch.full((100,), 0.7), 0.5)
    assert capsys.readouterr().out == "✅ A2：70.0% ± 0.0（100个测试任务），在区间[50%, 100%]之内\n"
    assignments.check_rescored_runs({}, None)
    assert capsys.readouterr().out == "❌ ablation_run（隐藏测试）：没有可以重新打分的结果\n"
    checks.set_language("en")
    assignments.check_accuracy_band("A2", torch.full((100,), 0.7), 0.5)
    assert capsys.readouterr().out == "✅ A2: 70.0% ± 0.0 on 100 test tasks, inside the band [50%, 100%]\n"
