"""The results block of docs/results.md: rendered from model cards and benchmark JSON, never typed by hand;
it lists the checkpoints a notebook loads, not the superseded ones."""
import json

import pytest

from mllib import results
from mllib.results import END, RESULTS_PAGE, START, names_a_checkpoint, readme_block, render_results, update_readme

BENCH = {"kind": "mllib-bench", "host": {"device": "cpu (1 threads)", "cpu": "Test CPU", "cpus": 2, "torch": "2.x"},
         "config": {"ways": 5, "shots": 1, "query": 15, "meta_batch": 32, "filters": 64, "steps": 3, "repeats": 2},
         "references": {"higher": {"loaded": True, "version": "0.2.1"}, "learn2learn": {"loaded": False}},
         "results": [{"algo": "maml", "impl": "mllib-loop", "median_s": 1.5, "min_s": 1.4, "peak_rss_mb": 900.0,
                      "peak_mem_mb": None},
                     {"algo": "maml", "impl": "higher", "median_s": 1.8, "min_s": 1.7, "peak_rss_mb": 950.0,
                      "peak_mem_mb": None}],
         "ratios": [{"algo": "maml", "mllib": "mllib-loop", "reference": "higher", "ratio_median": 0.8333,
                     "ratio_min": 0.82}],
         "gradients_agree": True}
CARD = {"algo": "maml", "ways": 5, "shots": 1, "profile": "full", "device": "NVIDIA H100", "train_seconds": 95,
        "accuracy": 0.9871, "ci95": 0.0031, "tasks": 600, "bn": "batch",
        "val_time_to_accuracy": {"90": {"step": 500, "seconds": 12.3, "val_accuracy": 0.91}}}


def make_root(tmp_path, readme="# x\n\n" + START + "\nold\n" + END + "\n\nafter\n"):
    (tmp_path / "mllib" / "checkpoints").mkdir(parents=True)
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "mllib" / "checkpoints" / "maml_5w1s.json").write_text(json.dumps(CARD))
    (tmp_path / "benchmarks" / "results" / "cpu_x.json").write_text(json.dumps(BENCH))
    (tmp_path / "benchmarks" / "results" / "other.json").write_text(json.dumps({"kind": "data-bench"}))
    (tmp_path / "docs").mkdir()
    (tmp_path / RESULTS_PAGE).write_text(readme)
    return tmp_path


def test_render_shows_the_files_numbers(tmp_path):
    text = render_results(make_root(tmp_path))
    assert "| maml | 5-way 1-shot | full | NVIDIA H100 | 95 s | 12 s / - / - | 98.7 ± 0.3 | 600 | batch |" in text
    assert "| maml | mllib-loop | 1.500 | 1.400 | 900 (RSS) |" in text
    assert "**0.83** (median)" in text and "higher 0.2.1" in text and "not loaded: learn2learn" in text
    assert "data-bench" not in text


def test_per_round_ratios_and_load_are_shown(tmp_path):
    root = make_root(tmp_path)
    v2 = {**BENCH, "host": {**BENCH["host"], "loadavg_start": [3.5, 3, 3], "loadavg_end": [4.25, 4, 4]},
          "config": {**BENCH["config"], "rounds": 15}, "note": "Shared machine.",
          "ratios": [{**BENCH["ratios"][0], "ratio_q25": 0.8, "ratio_q75": 0.86, "ratio_worst": 0.95, "rounds": 15}]}
    (root / "benchmarks" / "results" / "cpu_x.json").write_text(json.dumps(v2))
    text = render_results(root)
    assert "15 interleaved rounds of one meta-step per implementation" in text
    assert "**0.83** (median of 15 rounds; quartiles 0.80-0.86, worst round 0.95)" in text
    assert "Load average (1 min) 3.5 -> 4.25." in text and "Shared machine." in text


def test_update_rewrites_only_the_block(tmp_path):
    root = make_root(tmp_path)
    assert update_readme(root=root) is True
    text = (root / RESULTS_PAGE).read_text()
    assert text.startswith("# x\n\n" + START + "\n") and text.endswith(END + "\n\nafter\n")
    assert readme_block(text) == render_results(root)
    assert update_readme(root=root) is False          # idempotent
    assert update_readme(root=root, check=True) is False


def test_missing_markers_are_an_error(tmp_path):
    root = make_root(tmp_path, readme="# no markers\n")
    with pytest.raises(ValueError, match="markers"):
        update_readme(root=root)


def test_broken_json_names_the_file(tmp_path):
    root = make_root(tmp_path)
    (root / "benchmarks" / "results" / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="bad.json"):
        render_results(root)


def test_repository_results_block_is_up_to_date():
    block = readme_block((results.ROOT / RESULTS_PAGE).read_text())
    assert block is not None, f"{RESULTS_PAGE} has lost its results markers"
    assert block == render_results(results.ROOT), \
        f"{RESULTS_PAGE}'s results block is stale: run `python -m mllib bench --readme` (make results)"


def _notebook(root, name, text):
    (root / "notebooks").mkdir(exist_ok=True)
    (root / "notebooks" / name).write_text(json.dumps({"cells": [{"cell_type": "code", "source": [text]}]}))


def test_the_table_lists_only_checkpoints_a_notebook_loads(tmp_path):
    root = make_root(tmp_path)
    for name in ("old_5w1s", "m_seed1", "m_seed12"):
        (root / "mllib" / "checkpoints" / f"{name}.json").write_text(json.dumps({**CARD, "algo": name}))
    assert "| old_5w1s |" in render_results(root)            # no notebooks/ folder: every card
    _notebook(root, "05_x.ipynb", 'evaluate(CHECKPOINTS / "maml_5w1s.pt")\n'
                                  'for s in (1, 2): load(f"m_seed{s}.pt")  # maml_5w1s_old is another name\n')
    text = render_results(root)
    assert "`maml_5w1s.json`" in text and "`m_seed1.json`" in text and "`m_seed12.json`" in text
    assert "old_5w1s" not in text


def test_names_a_checkpoint_matches_whole_names_and_f_string_fields():
    assert names_a_checkpoint('load("maml_omniglot_5w1s.pt")', "maml_omniglot_5w1s")
    assert not names_a_checkpoint('load("maml_omniglot_5w1s_quick.pt")', "maml_omniglot_5w1s")
    assert not names_a_checkpoint('load("maml_omniglot_5w1s.pt")', "maml_omniglot_5w1s_zerohead_quick")
    assert names_a_checkpoint('f\\"maml_omniglot_5w1s_quick_seed{seed}.pt\\"', "maml_omniglot_5w1s_quick_seed2")
    assert not names_a_checkpoint('f"m_seed{seed}.pt"', "m_seed_old")


def test_the_repository_page_leaves_out_checkpoints_no_notebook_loads():
    block = readme_block((results.ROOT / RESULTS_PAGE).read_text())
    assert "`maml_omniglot_5w1s.pt`" in block                  # the default, notebook 05
    assert "`maml_omniglot_5w1s_zerohead_quick.pt`" in block   # make demo's run: notebook 05 sets ProtoNet
    # against it; leaving out what no notebook loads is tested on a made-up set of cards above


def test_readme_outside_a_checkout_says_it_needs_one(tmp_path, monkeypatch, capsys):
    import mllib.results
    from mllib.__main__ import main

    monkeypatch.setattr(mllib.results, "ROOT", tmp_path / "site-packages")  # an installed package
    assert main(["bench", "--readme"]) == 2
    err = capsys.readouterr().err
    assert "checkout" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_write_block_rewrites_the_file_and_refuses_one_without_markers(tmp_path):
    from mllib.results import write_block
    page = tmp_path / "page.md"
    page.write_text("intro\n<!-- s -->\nold\n<!-- e -->\n")
    write_block(page, "<!-- s -->", "<!-- e -->", "new")
    assert page.read_text() == "intro\n<!-- s -->\nnew\n<!-- e -->\n"
    page.write_text("no markers\n")
    with pytest.raises(SystemExit, match="page.md has no <!-- s --> ... <!-- e --> markers"):
        write_block(page, "<!-- s -->", "<!-- e -->", "new")
    assert page.read_text() == "no markers\n"


def test_replace_block_rewrites_only_between_the_markers():
    """The one writer of the docs' generated blocks (results, protocols, the paper table)."""
    from mllib.results import replace_block

    text = "intro\n<!-- s -->\nold 1\nold 2\n<!-- e -->\nafter <!-- e -->\n"
    assert replace_block(text, "<!-- s -->", "<!-- e -->", "new") == "intro\n<!-- s -->\nnew\n<!-- e -->\nafter <!-- e -->\n"
    assert replace_block(text, "<!-- s -->", "<!-- x -->", "new") is None
    assert replace_block("<!-- e -->", "<!-- s -->", "<!-- e -->", "new") is None


def test_the_examples_in_mllib_results_docstrings_run():
    import doctest

    import mllib.results
    result = doctest.testmod(mllib.results)
    assert result.attempted > 0 and result.failed == 0
