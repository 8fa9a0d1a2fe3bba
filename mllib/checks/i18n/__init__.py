"""What the checks print, in the learner's language: English by default, Chinese with ``MLLIB_LANG=zh``.

One catalogue per language, ``mllib/checks/i18n/<lang>.json`` (package data), holds the translations;
the English stays where it is written (the checks' modules), so there is no second copy of the checks::

    {"language": "zh",
     "messages":  {"core.passed": {"en": "3f2a9c01d4e7", "text": "✅ {exercise}：通过{passed}/{total}个用例"}},
     "exercises": {"sgd_step": {"concept": {"en": "...", "text": "..."},
                                "mistakes.step_up": {"en": "...", "text": "..."}}}}

* ``messages``: the fixed texts and templates of the framework (verdict lines, comparisons, properties,
  hints, solutions), each a :class:`Message` with a stable key, declared next to the code that uses it.
  Dynamic parts (numbers, shapes, names, code) are ``{fields}`` filled into the translated template
  unchanged.
* ``exercises``: per exercise, its two hint tiers (``concept``, ``reasoning``) and its known mistakes'
  messages (``mistakes.<id>``).

Each entry carries the **fingerprint** of the English text it translates
(:func:`mllib.course.translation.fingerprint`, the same rule as the notebooks' translations). A stale
entry (the English changed since) is not used: the learner reads the current English instead, and
:func:`stale_entries` (``tests/test_checks_language.py``, ``python -m mllib.checks.i18n``) lists it, with
every missing and orphaned entry.

The language: :func:`set_language` (``mllib.checks.set_language("zh")``), else the environment variable
``MLLIB_LANG`` (``zh``, ``zh_CN.UTF-8`` ... select Chinese), else English.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import string
import warnings
from pathlib import Path

LANG_ENV = "MLLIB_LANG"
ENGLISH = "en"
LANGUAGES = (ENGLISH, "zh")
FOLDER = Path(__file__).resolve().parent
_CHOSEN: list[str] = []           # set_language's choice (empty: the environment decides)
_MESSAGES: dict[str, "Message"] = {}
_EXERCISES: dict[str, dict[str, str]] = {}   # {exercise: {field: English}}, filled as the checks register
_WARNED: set[str] = set()
# the fields of a template that hold English prose (translated in turn); every other field (names, numbers,
# shapes, code, a learner's own error message) is filled in unchanged
PROSE = frozenset({"exercise", "problem", "hint", "where", "more", "concept", "text", "line", "detail", "input"})


def fingerprint(text: str) -> str:
    """The first 12 hex digits of the SHA-256 of ``text``: the rule of ``mllib.course.translation.fingerprint``
    (repeated here so the installed checks need not import the course tooling; a test keeps them equal)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


# ----------------------------------------------------------------------------- the language
def _normalise(value: str) -> str:
    """``zh_CN.UTF-8`` -> ``zh``; ``EN`` -> ``en``."""
    return re.split(r"[-_.@]", value.strip().lower(), maxsplit=1)[0]


def _unknown(value: str, where: str) -> str:
    return (f"{where}={value!r} is not a language of the checks; choose one of {', '.join(LANGUAGES)} "
            f"(en: English, zh: Chinese)")


def set_language(lang: str | None) -> str:
    """Print the checks' verdicts and hints in ``lang`` (``"en"`` or ``"zh"``) from now on; ``None``: back to
    ``MLLIB_LANG`` (or English). Returns the language now in use; an unknown one raises ValueError."""
    _CHOSEN.clear()
    if lang is not None:
        code = _normalise(str(lang))
        if code not in LANGUAGES:
            raise ValueError(_unknown(str(lang), "set_language"))
        _CHOSEN.append(code)
    return language()


def language() -> str:
    """The language the checks print in: :func:`set_language`'s, else ``MLLIB_LANG``'s, else English.
    An unknown ``MLLIB_LANG`` warns once (one sentence) and prints English."""
    if _CHOSEN:
        return _CHOSEN[0]
    value = os.environ.get(LANG_ENV, "").strip()
    if not value:
        return ENGLISH
    code = _normalise(value)
    if code in LANGUAGES:
        return code
    if value not in _WARNED:
        _WARNED.add(value)
        warnings.warn(_unknown(value, LANG_ENV) + "; the checks print English", stacklevel=2)
    return ENGLISH


@functools.lru_cache(maxsize=None)
def catalogue(lang: str) -> dict:
    """The catalogue of ``lang`` as stored (``{"messages": ..., "exercises": ...}``); empty for English."""
    path = FOLDER / f"{lang}.json"
    if lang == ENGLISH or not path.exists():
        return {"messages": {}, "exercises": {}}
    return json.loads(path.read_text(encoding="utf-8"))


def _entry(section: dict, key: str, english: str) -> str | None:
    entry = section.get(key)
    if entry and entry.get("en") == fingerprint(english) and entry.get("text"):
        return entry["text"]
    return None


# ----------------------------------------------------------------------------- messages
class Text(str):
    """An English text made from a :class:`Message`: a plain ``str`` (tests and code read the English)
    that remembers its template and fields, so :func:`translate` can fill the translated template."""

    key: str
    fields: dict


class Message:
    """A fixed English text or template of the checks, with a stable ``key`` in the catalogues.

    ``message(**fields)`` gives the English (a :class:`Text`); :func:`translate` gives it in the
    learner's language. Declared once, at import time, next to the code that prints it."""

    def __init__(self, key: str, english: str) -> None:
        if key in _MESSAGES and _MESSAGES[key].english != english:
            raise ValueError(f"message {key!r} is declared twice with different texts")
        self.key, self.english = key, english
        self.names = template_fields(english)
        self.plain = english.format() if not self.names else None   # the text of a message without fields
        _MESSAGES[key] = self

    def __call__(self, **fields) -> Text:
        text = Text(self.english.format(**fields))
        text.key, text.fields = self.key, fields
        return text

    def localized(self, lang: str | None = None, **fields) -> str:
        """This message in ``lang`` (default: the language in use), fields translated where they are texts."""
        lang = lang or language()
        template = _entry(catalogue(lang).get("messages", {}), self.key, self.english) if lang != ENGLISH else None
        if template is None:
            return self.english.format(**fields)
        return template.format(**{k: translate(v, lang=lang) if k in PROSE and isinstance(v, str) else v
                                  for k, v in fields.items()})


def message(key: str, english: str) -> Message:
    """Declare the English text ``key`` of the checks (see :class:`Message`)."""
    return _MESSAGES.get(key) if key in _MESSAGES and _MESSAGES[key].english == english else Message(key, english)


def messages() -> dict[str, Message]:
    return dict(_MESSAGES)


def template_fields(text: str) -> set[str]:
    """The ``{field}`` names of a template."""
    return {name for _lit, name, _spec, _conv in string.Formatter().parse(text) if name}


# ----------------------------------------------------------------------------- translating
def exercise_text(exercise: str, field: str, english: str, lang: str | None = None) -> str:
    """``english``, the text ``field`` (``concept``, ``reasoning``, ``mistakes.<id>``) of ``exercise``,
    in ``lang`` (default: the language in use); the English itself when no current translation exists."""
    lang = lang or language()
    if lang == ENGLISH:
        return english
    found = _entry(catalogue(lang).get("exercises", {}).get(exercise.split(" ")[0], {}), field, english)
    return english if found is None else found


def translate(text: str, exercise: str | None = None, lang: str | None = None) -> str:
    """``text`` (an English text of the checks) in ``lang`` (default: the language in use).

    A :class:`Text` is translated by its message (its prose fields in turn); another string only when it
    is one of the exercises' texts (hints, known mistakes; ``exercise``'s first) or a message without
    fields; any other text (a learner's own error message, a text built by an f-string) is returned
    unchanged, never half translated."""
    lang = lang or language()
    if lang == ENGLISH or not text:
        return text
    if isinstance(text, Text) and getattr(text, "key", None) in _MESSAGES:
        return _MESSAGES[text.key].localized(lang, **text.fields)
    names = [exercise.split(" ")[0]] if exercise else []
    for name in names + sorted(_all_exercises()):
        for field, english in _exercise_texts(name).items():
            if english == text:
                return exercise_text(name, field, english, lang)
    for msg in _MESSAGES.values():
        if msg.plain is not None and msg.plain == text:
            return msg.localized(lang)
    return text


def register_texts(exercise: str, texts: dict[str, str]) -> None:
    """Record ``{field: English}`` of ``exercise`` (its hint tiers, its known mistakes' messages): what a
    catalogue translates. ``mllib.checks.hints`` and ``mllib.checks.exercise`` call this as they register."""
    _EXERCISES.setdefault(exercise, {}).update(texts)


def _all_exercises() -> list[str]:
    return sorted(_EXERCISES)


def _exercise_texts(exercise: str) -> dict[str, str]:
    """``{field: English}`` of one exercise's hints and known mistakes (empty when it is unknown)."""
    return dict(_EXERCISES.get(exercise, {}))


# ----------------------------------------------------------------------------- freshness
def english_texts() -> dict[str, dict]:
    """Every English text a catalogue translates: ``{"messages": {key: English}, "exercises": {name:
    {field: English}}}``, of the checks' modules imported so far (``mllib.checks`` imports the notebooks'
    exercises; the assignments register theirs when ``mllib.checks.assignments`` is imported)."""
    return {"messages": {key: m.english for key, m in sorted(_MESSAGES.items())},
            "exercises": {name: _exercise_texts(name) for name in _all_exercises()}}


def stale_entries(lang: str = "zh", stored: dict | None = None) -> list[str]:
    """One line per problem of ``lang``'s catalogue (``stored``: one given instead of the file): an English
    text without a translation, a translation of an English text that changed (fingerprints differ), an
    entry whose text no longer exists, a template whose fields differ from the English's. Empty: fresh.
    Import ``mllib.checks.assignments`` first (``python -m mllib.checks.i18n`` does), or the assignments'
    entries count as texts that no longer exist."""
    stored = catalogue(lang) if stored is None else stored
    problems = []
    for section, key, english, entry in _pairs(english_texts(), stored):
        where = f"{section} {key}"
        if english is None:
            problems.append(f"{where}: translates a text that no longer exists (delete the entry)")
        elif entry is None or not entry.get("text"):
            problems.append(f"{where}: no translation of {english!r}")
        elif entry.get("en") != fingerprint(english):
            problems.append(f"{where}: stale (the English changed since; now {english!r}, fingerprint "
                            f"{fingerprint(english)})")
        elif template_fields(entry["text"]) != template_fields(english) and section == "messages":
            problems.append(f"{where}: fields {sorted(template_fields(entry['text']))}, the English has "
                            f"{sorted(template_fields(english))}")
    return problems


def _pairs(current: dict, stored: dict):
    """``(section, key, English or None, stored entry or None)`` over both sides."""
    messages_now, stored_messages = current["messages"], stored.get("messages", {})
    for key in sorted(set(messages_now) | set(stored_messages)):
        yield "messages", key, messages_now.get(key), stored_messages.get(key)
    exercises_now, stored_exercises = current["exercises"], stored.get("exercises", {})
    for name in sorted(set(exercises_now) | set(stored_exercises)):
        now, old = exercises_now.get(name, {}), stored_exercises.get(name, {})
        for field in sorted(set(now) | set(old)):
            yield "exercises", f"{name}.{field}", now.get(field), old.get(field)


__all__ = ["LANG_ENV", "LANGUAGES", "Message", "Text", "catalogue", "english_texts", "exercise_text",
           "fingerprint", "language", "message", "messages", "register_texts", "set_language", "stale_entries",
           "translate"]
