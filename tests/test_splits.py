"""Split manifests: sizes, disjoint parts, the documented rules, name -> index mapping."""
from __future__ import annotations

import json
from importlib import resources

import pytest

from mllib.data import SPLITS, canonical_characters, split_characters, split_names
from mllib.data.splits import SIZES, VINYALS_VAL_ALPHABETS, make_manifests

EXPECTED = {
    "lake": {"train": 964, "test": 659},
    "maml": {"train": 1100, "val": 100, "test": 423},
    "vinyals": {"train": 1028, "val": 172, "test": 423},
}


@pytest.mark.parametrize("split", sorted(EXPECTED))
def test_sizes_disjoint_and_covering(split):
    parts = {part: split_names(split, part) for part in SPLITS[split]}
    assert {p: len(v) for p, v in parts.items()} == EXPECTED[split] == SIZES[split]
    everything = [name for names in parts.values() for name in names]
    assert len(set(everything)) == len(everything) == 1623  # no character in two parts
    assert set(everything) == set(canonical_characters())
    for part, names in parts.items():
        assert names == sorted(names)
        indices = split_characters(split, part)
        assert indices == sorted(indices) and sorted(canonical_characters()[i] for i in indices) == names


def test_lake_is_background_then_evaluation():
    assert {n.split("/")[0] for n in split_names("lake", "train")}.isdisjoint(
        {n.split("/")[0] for n in split_names("lake", "test")}
    )
    assert split_characters("lake", "train") == list(range(964))
    assert split_characters("lake", "test") == list(range(964, 1623))


def test_vinyals_rule():
    test = split_names("vinyals", "test")
    assert canonical_characters()[-423:] == sorted(test, key=canonical_characters().index)
    assert canonical_characters()[-423] == "Gurmukhi/character42"
    assert {n.split("/")[0] for n in split_names("vinyals", "val")} == set(VINYALS_VAL_ALPHABETS)


def test_manifests_match_their_documented_rules():
    canon = canonical_characters()
    sets = ["background"] * 964 + ["evaluation"] * 659
    regenerated = make_manifests(canon, sets)
    for split in SPLITS:
        shipped = json.loads(resources.files("mllib").joinpath("splits", f"{split}.json").read_text())
        assert shipped == regenerated[split]


def test_real_data_is_in_canonical_order(omniglot):
    if omniglot.complete:
        assert omniglot.characters == canonical_characters()
    else:
        assert set(omniglot.characters) < set(canonical_characters())


def test_indices_into_a_subset_keep_present_names_only(omniglot):
    subset = omniglot.characters
    for split, parts in SPLITS.items():
        seen = set()
        for part in parts:
            indices = split_characters(split, part, subset)
            assert indices and set(indices).isdisjoint(seen)
            seen |= set(indices)
            assert {subset[i] for i in indices} <= set(split_names(split, part))
        assert seen == set(range(len(subset)))


def test_unknown_split_is_a_value_error_naming_choices():
    with pytest.raises(ValueError, match="^split must be one of lake, maml, vinyals; got 'omniglot'$"):
        split_characters("omniglot", "train")


def test_unknown_part_is_a_value_error_naming_choices():
    with pytest.raises(ValueError, match="^part of the lake split must be one of train, test; got 'val'$"):
        split_characters("lake", "val")
