"""Fixed character splits of Omniglot, shipped as sorted JSON manifests in ``mllib/splits/``.

Every manifest lists character names (``"alphabet/characterNN"``) per part, each list sorted.
They were generated once from the real data by ``benchmarks/make_splits.py`` with the rules
below (``make_manifests``); a test regenerates them and compares, so they cannot drift.

The *canonical order* of the 1,623 characters is Lake's ``background`` set, then the
``evaluation`` set, each sorted by name (the order of ``OmniglotData.characters``).

* ``lake`` (Lake et al. 2015): ``train`` = the 964 characters of ``images_background``
  (30 alphabets), ``test`` = the 659 of ``images_evaluation`` (20 alphabets).
* ``vinyals`` (Vinyals et al. 2016, as released with Snell et al.'s prototypical networks):
  ``test`` = the last 423 characters in canonical order (``Gurmukhi/character42`` to the end of
  ``ULOG``); ``val`` = the 172 characters of the alphabets Armenian, Bengali, Early_Aramaic,
  Hebrew and Mkhedruli_(Georgian); ``train`` = the other 1,028.
* ``maml`` (Finn et al. 2017; the reference code shuffles characters at random, 1,200 for
  meta-training of which 100 validate, 423 test): characters ranked by the SHA-256 hex digest
  of ``"mllib-maml-split:" + name``; the first 1,100 are ``train``, the next 100 ``val``, the
  last 423 ``test``. A seeded shuffle that does not depend on any RNG implementation or on
  the file system.

``split_characters(split, part)`` maps a part to indices into ``OmniglotData.images``;
``split_parts(split, characters)`` says which characters train and validate a run (``lake``:
five background alphabets validate, :data:`LAKE_VAL_ALPHABETS`).

A copy of Omniglot with characters missing (a partial download or extraction) would change a
part silently, and with it the protocol. ``check_split_complete(characters, split, parts)``
refuses such data (``OmniglotDataError`` naming the missing alphabets); with ``allow=True`` or
``MLLIB_ALLOW_PARTIAL_DATA=1`` (:data:`PARTIAL_ENV`; the unit tests set it for their synthetic
Omniglot) it warns and returns a note that training and evaluation record as "non-standard".
"""
from __future__ import annotations

import hashlib
import json
import warnings
from functools import lru_cache
from importlib import resources

from mllib.arguments import check_choice, env_flag

from .locate import OmniglotDataError

PARTIAL_ENV = "MLLIB_ALLOW_PARTIAL_DATA"

PARTS = ("train", "val", "test")  # every part name a split may have
SPLITS = {"lake": ("train", "test"), "maml": ("train", "val", "test"), "vinyals": ("train", "val", "test")}
SIZES = {
    "lake": {"train": 964, "test": 659},
    "maml": {"train": 1100, "val": 100, "test": 423},
    "vinyals": {"train": 1028, "val": 172, "test": 423},
}
SPLIT_CHOICES = ("maml", "vinyals", "lake")  # the splits a run can train on, the course's default first
VINYALS_VAL_ALPHABETS = ("Armenian", "Bengali", "Early_Aramaic", "Hebrew", "Mkhedruli_(Georgian)")
# The lake split (background / evaluation alphabets) has no validation part: its runs validate on
# these five background alphabets (the vinyals split's validation alphabets) and train on the
# other 25, so training, validation and test alphabets are pairwise disjoint (``split_parts``).
LAKE_VAL_ALPHABETS = VINYALS_VAL_ALPHABETS
MAML_SALT = "mllib-maml-split:"
RULES = {
    "lake": "train = images_background characters, test = images_evaluation characters",
    "vinyals": "test = last 423 in canonical order (background then evaluation, each sorted); "
    "val = alphabets " + ", ".join(VINYALS_VAL_ALPHABETS) + "; train = the rest",
    "maml": f"rank by sha256('{MAML_SALT}' + name); first 1100 train, next 100 val, last 423 test",
}


def _check_split_part(split: str, part: str | None = None) -> None:
    check_choice("split", split, tuple(SPLITS))
    if part is not None:
        check_choice(f"part of the {split} split", part, SPLITS[split])


@lru_cache(maxsize=None)
def _manifest(split: str) -> dict:
    text = resources.files("mllib").joinpath("splits", f"{split}.json").read_text(encoding="utf-8")
    return json.loads(text)


def split_names(split: str, part: str) -> list[str]:
    """Sorted character names of ``part`` of ``split``."""
    _check_split_part(split, part)
    return list(_manifest(split)["parts"][part])


def canonical_characters() -> list[str]:
    """All 1,623 character names in canonical order (background then evaluation, each sorted)."""
    return split_names("lake", "train") + split_names("lake", "test")


def split_characters(split: str = "maml", part: str = "train", characters: list[str] | None = None) -> list[int]:
    """Indices (ascending) of the characters of ``part`` of ``split``.

    ``characters``: the names the indices refer to, e.g. ``data.characters``; default: the
    canonical 1,623 (the order of the full ``OmniglotData.images``). Names of the part that are
    absent from ``characters`` (a subset such as the synthetic test data) are left out.
    """
    _check_split_part(split, part)
    wanted = set(_manifest(split)["parts"][part])
    names = canonical_characters() if characters is None else characters
    return [i for i, name in enumerate(names) if name in wanted]


def split_parts(split: str, characters: list[str]) -> dict[str, dict]:
    """How training and validation tasks are drawn for ``split``: ``OmniglotTasks`` keyword
    arguments per part (``{"train": {...}, "val": {...}}``).

    ``maml`` and ``vinyals`` use their own ``train`` and ``val`` parts. ``lake`` has no ``val`` part:
    its ``train`` characters (the 30 background alphabets) are split by alphabet, the five
    ``LAKE_VAL_ALPHABETS`` validate and the other 25 train (its ``test`` part, the 20 evaluation
    alphabets, is untouched). ``characters``: the names of ``data.images``' rows.
    """
    check_choice("split", split, SPLIT_CHOICES)
    if split != "lake":
        return {"train": {"split": split}, "val": {"split": split}}
    background = split_characters("lake", "train", characters)
    held_out = [i for i in background if characters[i].split("/")[0] in LAKE_VAL_ALPHABETS]
    kept = [i for i in background if characters[i].split("/")[0] not in LAKE_VAL_ALPHABETS]
    return {"train": {"characters": kept, "rotations": True}, "val": {"characters": held_out}}


def check_split_complete(characters: list[str], split: str | None, parts: tuple[str, ...],
                         allow: bool | None = None) -> str | None:
    """``None`` when ``characters`` hold every character of ``parts`` of ``split`` (the standard protocol).

    Otherwise ``OmniglotDataError`` naming the missing alphabets, unless ``allow`` (``None``: read
    :data:`PARTIAL_ENV`): then a ``UserWarning`` and the returned note, e.g.
    ``"non-standard: 40 of 423 characters of maml test missing (alphabets Korean)"``.
    ``split=None`` (all characters, no manifest) has nothing to compare with and returns ``None``.
    """
    if split is None:
        return None
    present = set(characters)
    wanted = [name for part in parts for name in split_names(split, part)]
    missing = [name for name in wanted if name not in present]
    if not missing:
        return None
    alphabets = sorted({name.split("/")[0] for name in missing})
    shown = ", ".join(alphabets[:8]) + (f" and {len(alphabets) - 8} more" if len(alphabets) > 8 else "")
    what = (f"{len(missing)} of {len(wanted)} characters of the {split} split's {'+'.join(parts)} missing "
            f"(alphabets {shown})")
    if allow is None:
        allow = env_flag(PARTIAL_ENV)   # "off" is off; an unknown word is an error naming the variable
    if not allow:
        raise OmniglotDataError(
            f"this copy of Omniglot is incomplete: {what}, so the test protocol would change. Restore the "
            f"full data set (python -m mllib data --download), or run a non-standard protocol on purpose "
            f"with allow_partial_data=True (--allow-partial-data, or {PARTIAL_ENV}=1)"
        )
    note = f"non-standard: {what}"
    warnings.warn(f"Omniglot is incomplete; results are {note}", UserWarning, stacklevel=2)
    return note


def make_manifests(characters: list[str], sets: list[str]) -> dict:
    """The three manifests from the canonical list of names and their Lake set (see the module docstring)."""
    if len(characters) != 1623 or len(set(characters)) != 1623:
        raise ValueError(f"characters must be the 1,623 distinct Omniglot names, got {len(characters)}")
    lake = {
        "train": sorted(c for c, s in zip(characters, sets) if s == "background"),
        "test": sorted(c for c, s in zip(characters, sets) if s == "evaluation"),
    }
    test = characters[-423:]
    val = [c for c in characters[:-423] if c.split("/")[0] in VINYALS_VAL_ALPHABETS]
    train = [c for c in characters[:-423] if c.split("/")[0] not in VINYALS_VAL_ALPHABETS]
    vinyals = {"train": sorted(train), "val": sorted(val), "test": sorted(test)}
    ranked = sorted(characters, key=lambda c: hashlib.sha256((MAML_SALT + c).encode()).hexdigest())
    maml = {"train": sorted(ranked[:1100]), "val": sorted(ranked[1100:1200]), "test": sorted(ranked[1200:])}
    manifests = {"lake": lake, "maml": maml, "vinyals": vinyals}
    for split, parts in manifests.items():
        sizes = {p: len(v) for p, v in parts.items()}
        if sizes != SIZES[split]:
            raise ValueError(f"split {split!r} came out with sizes {sizes}, expected {SIZES[split]}")
    return {s: {"split": s, "rule": RULES[s], "parts": parts} for s, parts in manifests.items()}
