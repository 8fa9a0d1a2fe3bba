"""The static notebook checks (maths, images, cross-references, code width, outputs, kernelspec), the
claim-backed-by-assert check and the run-time writer: each fails on a notebook built to break it, and the
real notebooks pass them all."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from mllib.__main__ import main
from mllib.course import claims, lint, times
from mllib.course.nbio import list_notebooks, read_notebook, write_notebook

ROOT = Path(__file__).resolve().parents[1]
SPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


def notebook(*cells, spec=SPEC):
    made = [new_markdown_cell(c) if isinstance(c, str) else c for c in cells]
    return new_notebook(cells=made, metadata={"kernelspec": dict(spec)} if spec else {})


def test_doubled_backslashes_in_maths_are_caught_and_single_ones_pass(tmp_path):
    broken = notebook(r"prototype $\\;\\mathbf{c}_c = \\frac{1}{|S_c|}\\sum_{i} f(x_i)$ and `a \\b` in code")
    (problem,) = lint.markdown_problems(broken, "nb.ipynb", tmp_path)
    assert r"doubled backslash before \;, \mathbf, \frac, \sum" in problem
    fine = notebook(r"$\;\mathbf{c}_c = \frac{1}{|S_c|}\sum_i f(x_i)$, $$a \\ b$$ (a line break) and 5 \$ prices")
    assert lint.markdown_problems(fine, "nb.ipynb", tmp_path) == []


def test_images_and_cross_references_must_exist(tmp_path):
    (tmp_path / "fig.png").write_bytes(b"\x89PNG")
    write_notebook(notebook("# 02 Other\n## 3. Splits\ntext"), tmp_path / "02_other.ipynb")
    good = notebook("# 01 This\n## 1. Start\n![a figure](fig.png) see [splits](02_other.ipynb#3.-Splits), "
                    "[start](#1.-Start), notebook 02, section 1, section 3 of notebook 02, the paper's section 5.1")
    write_notebook(good, tmp_path / "01_this.ipynb")
    assert lint.markdown_problems(good, "01_this.ipynb", tmp_path) == []
    bad = notebook("# 01 This\n![missing](nope.png) <img src='gone.svg'> [x](03_none.ipynb) "
                   "[y](02_other.ipynb#no-such-heading) notebook 09, section 4, section 2 of notebook 02")
    problems = "\n".join(lint.markdown_problems(bad, "01_this.ipynb", tmp_path))
    for expected in ("image 'nope.png' does not exist", "image 'gone.svg' does not exist",
                     "names a notebook that does not exist", "no heading with the anchor 'no-such-heading'",
                     "'notebook 09' is mentioned", "'section 4' is mentioned, but this notebook",
                     "'section 2' is mentioned, but notebook 02"):
        assert expected in problems, expected


def test_long_code_lines_repr_outputs_and_a_stale_kernelspec_are_caught():
    long_line = new_code_cell("x = 1  # " + "a" * 100)
    generated = new_code_cell("# " + "b" * 120, metadata={"tags": ["colab-setup"]})
    bare = new_code_cell("model.to(device)", outputs=[new_output(
        "execute_result", data={"text/plain": "SineMLP(\n  (body): Sequential(\n  )\n)"}, execution_count=1)])
    one_line = new_code_cell("3 + 4", outputs=[new_output("execute_result", data={"text/plain": "7"},
                                                          execution_count=2)])
    nb = notebook(long_line, generated, bare, one_line, spec={**SPEC, "display_name": "Python 3"})
    (code,) = lint.code_problems(nb, "nb")
    assert "cell 0 line 1: 109 characters (at most 100" in code
    (output,) = lint.output_problems(nb, "nb")
    assert "cell 2: ends with a bare expression" in output and "SineMLP(" in output
    (spec,) = lint.kernelspec_problems(nb, "nb", expected="Python 3 (ipykernel)")
    assert "'Python 3' differs from the installed kernel's 'Python 3 (ipykernel)'" in spec
    assert lint.kernelspec_problems(notebook(spec=SPEC), "nb", expected="Python 3 (ipykernel)") == []
    assert lint.kernelspec_problems(notebook(spec=None), "nb", expected="Python 3 (ipykernel)") == []


def test_claims_need_an_assert_nearby_or_a_listed_reason(tmp_path):
    claim = "After one step the learned start reaches 0.87, better than the random start."
    far = [new_code_cell(f"x{i} = {i}") for i in range(3)]
    nb = notebook(claim, *far, new_code_cell("assert x0 < 1"))
    (problem,) = claims.claim_problems(nb, "01_a.ipynb")
    assert "cell 0: 1 quantitative claim(s) with no assert" in problem
    near = notebook(claim, far[0], new_code_cell("assert 0.87 < 3.55, 'better than random'"))
    assert claims.claim_problems(near, "01_a.ipynb") == []
    docs = tmp_path / "instructors.md"
    docs.write_text('<!-- unasserted-claims:start -->\n| notebook | claim | why |\n| --- | --- | --- |\n'
                    '| 01_a | "reaches 0.87, better" | a test |\n| 01_a | "a phrase that is gone" | stale |\n'
                    '<!-- unasserted-claims:end -->\n')
    exempt = claims.exemptions(docs)
    assert [row[1] for row in exempt] == ["reaches 0.87, better", "a phrase that is gone"]
    assert claims.claim_problems(nb, "01_a.ipynb", exempt) == []
    (stale,) = claims.stale_exemptions({"01_a.ipynb": nb}, exempt)
    assert "'a phrase that is gone' no longer occurs in 01_a" in stale


@pytest.mark.parametrize("text, is_claim", [
    ("MAML reaches 97% on 600 tasks.", True),
    ("The interval is about 1.7 times wider.", True),
    ("Prototypical networks train faster.", True),
    ("The mean is close to -1.62 cos x.", True),
    ("Why does it overshoot?", False),
    ("## 3. Evaluation with 95% intervals", False),
    ("A learner is a bias plus an algorithm.", False),
    ("See `lr=0.01` in the code.", False),
])
def test_what_counts_as_a_quantitative_claim(text, is_claim):
    assert bool(claims.claims_in(text)) is is_claim


def test_times_rewrite_headers_readme_and_instructors(tmp_path):
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "docs").mkdir()
    header = "**What you will learn**\n\n- things\n\n**Run time**: about 40 s (a guess).\n**Exercises**: one."
    write_notebook(notebook("# 01 A", header), tmp_path / "notebooks" / "01_a.ipynb")
    (tmp_path / "README.md").write_text(
        "| notebook | what it teaches | quick (2-core CPU) | full (GPU) |\n| --- | --- | --- | --- |\n"
        "| [01 A](notebooks/01_a.ipynb) | a | 40 s | not measured |\n| [02 B](notebooks/02_b.ipynb) | b | 9 s | x |\n")
    (tmp_path / "docs" / "instructors.md").write_text("x\n<!-- runtimes:start -->\nold\n<!-- runtimes:end -->\ny\n")
    report = {"created": "2026-12-01T10:00:00", "env": {"MLLIB_PROFILE": "quick"},
              "notebooks": [{"path": "notebooks/01_a.ipynb", "ok": True, "wall_s": 11.4, "peak_rss_mb": 767.0}]}
    (tmp_path / "report.json").write_text(json.dumps(report))
    assert main(["course", "times", "--report", str(tmp_path / "report.json"), "--root", str(tmp_path)]) == 0
    text = read_notebook(tmp_path / "notebooks" / "01_a.ipynb").cells[1].source
    assert "**Run time**: 11 s in the quick profile on an idle 2-core CPU (measured)" in text
    assert text.endswith("**Exercises**: one.") and "about 40 s" not in text
    readme = (tmp_path / "README.md").read_text()
    assert "| a | 11 s | not measured |" in readme and "| b | 9 s | x |" in readme
    docs = (tmp_path / "docs" / "instructors.md").read_text()
    assert "| 01_a | 11 | 767 | an idle 2-core CPU, quick profile |" in docs and "old" not in docs
    assert times.apply_times(tmp_path / "report.json", tmp_path) == []            # idempotent
    report["notebooks"][0]["ok"] = False
    (tmp_path / "report.json").write_text(json.dumps(report))
    with pytest.raises(ValueError, match="did not run cleanly"):
        times.apply_times(tmp_path / "report.json", tmp_path)
    assert times.format_seconds(138.2) == "2.3 min" and times.format_seconds(59.6) == "60 s"


def test_the_real_notebooks_pass_every_content_check(capsys):
    if not list_notebooks(ROOT / "notebooks"):
        pytest.skip("no notebooks yet")
    code = main(["course", "lint", "--root", str(ROOT)])
    out = capsys.readouterr().out
    assert code == 0, out


# ----------------------------------------------------------------------------- issue 22: comparisons

ABOVE = "The laptop checkpoint's 98.9% ± 0.2 is above the MAML paper's 98.7% ± 0.4."
MATCHES = "Fine-tuning the pre-trained network matches training from scratch (73.4% ± 3.4 against 70.6% ± 3.4)."
HELPS = "Even a rough bias helps: 73.4% against 70.6%."
LONGEST = "In that run Reptile's inner steps took the longest at 3 and 5 steps."
TREND = "The more of the learning algorithm is learned, the better the result on the training family."
LEADS = "MAML's start ends ahead of tuned pre-training after one step (+0.08 ± 0.26 per goal)."
BACKING = {ABOVE: 'assert_claim("above", verdict(0.989, 0.002, 0.987, 0.004))',
           MATCHES: "assert_claim('matches', verdict(*fine_tune, *scratch))",
           HELPS: "compare.assert_claim('helps', verdict(*fine_tune, *scratch))",
           LONGEST: "assert_claim('the longest', verdict_against_all('Reptile', seconds), higher_is_better=False)",
           TREND: "assert_claim('better', paired_verdict(learned, designed))",
           LEADS: "assert_claim('ahead', paired_verdict(maml, pretrained))"}


@pytest.mark.parametrize("sentence, expected", [
    (ABOVE, "compares ('above') with no assert_claim('above', ...) nearby"),
    (MATCHES, "states a tie ('matches') without saying \"tie\""),
    (MATCHES, "compares ('matches') with no assert_claim('matches', ...)"),
    (HELPS, "compares ('helps')"),
    (LONGEST, "compares ('the longest')"),
    (TREND, "compares ('better')"),
    (LEADS, "compares ('ahead')"),
])
def test_each_kind_of_comparative_sentence_needs_a_computed_comparison(sentence, expected):
    plain_assert = new_code_cell("assert 0.989 > 0.987 and 0.734 > 0.706")    # a number exists: not enough
    (problem, *_) = [p for p in claims.comparison_problems(notebook(sentence, plain_assert), "05_m.ipynb")
                     if expected in p]
    assert "05_m.ipynb cell 0:" in problem and sentence[:40] in problem
    backed = notebook(sentence, plain_assert, new_code_cell(BACKING[sentence]))
    remaining = claims.comparison_problems(backed, "05_m.ipynb")
    assert all("no assert_claim" not in p for p in remaining), remaining


def test_a_tie_must_say_tie_and_then_passes_with_its_assert():
    fixed = "Fine-tuning and training from scratch tie: 73.4% ± 3.4 against 70.6% ± 3.4 (the intervals overlap)."
    assert claims.comparison_problems(notebook(fixed, new_code_cell("x = 1")), "05_m.ipynb") != []
    nb = notebook(fixed, new_code_cell("assert_claim('tie', verdict(0.734, 0.034, 0.706, 0.034))"))
    assert claims.comparison_problems(nb, "05_m.ipynb") == []
    assert "states a tie" in claims.comparison_problems(
        notebook("The two splits score about as well as each other (92.9% and 92.7%).",
                 new_code_cell("assert_claim('tie', v)")), "05_m.ipynb")[0]


def test_the_assert_must_be_within_the_window_and_name_the_same_word():
    far = [new_code_cell(f"x{i} = {i}") for i in range(3)]
    nb = notebook(ABOVE, *far, new_code_cell(BACKING[ABOVE]))
    assert claims.comparison_problems(nb, "05_m.ipynb") != []                  # three code cells away
    other_word = notebook(ABOVE, new_code_cell("assert_claim('higher', verdict(0.989, 0.002, 0.987, 0.004))"))
    assert "no assert_claim('above'" in claims.comparison_problems(other_word, "05_m.ipynb")[0]


@pytest.mark.parametrize("sentence", [
    "The networks above have 1,761 parameters.",                                # a place on the page
    "Every number below is reproducible with seed 0 on 600 tasks.",
    "The correlation is above 0.95 (asserted).",                                # a threshold: a plain assert
    "Is MAML better than ProtoNets at 5 shots?",                                # a question
    "A better start is the point of meta-learning.",                            # no measurement
    "Each time is the best of 3 runs.",
    "Meta-learning is not tied to images, and 40 episodes per goal suffice.",
])
def test_what_is_not_a_comparison_of_measurements(sentence):
    assert claims.comparison_problems(notebook(sentence, new_code_cell("x = 1")), "01_a.ipynb") == []


def test_only_literature_exemptions_excuse_a_comparison(tmp_path):
    text = "MAML reports 98.7%, above the 98.1% of matching networks. In that run Reptile took the longest (12 s)."
    docs = tmp_path / "instructors.md"
    docs.write_text('<!-- unasserted-claims:start -->\n| notebook | claim | why |\n| --- | --- | --- |\n'
                    '| 05 | "above the 98.1% of matching networks" | published numbers (Finn et al. 2017) |\n'
                    '| 05 | "Reptile took the longest" | a timing: depends on the machine |\n'
                    '<!-- unasserted-claims:end -->\n')
    (problem,) = claims.comparison_problems(notebook(text, new_code_cell("x = 1")), "05_m.ipynb",
                                            claims.exemptions(docs))
    assert "'the longest'" in problem and "matching networks" not in problem


# ----------------------------------------------------------------------------- issue 22: outputs and tables

def stream(text):
    return new_output("stream", name="stdout", text=text)


def test_outputs_with_absolute_paths_or_notes_on_how_the_course_was_made_are_caught():
    nb = notebook(new_code_cell("train()", outputs=[stream("wrote /tmp/mllib_nb05_c9qx4452/maml/best.pt\n")]),
                  new_code_cell("card()", outputs=[stream("SHARED with other engineers' tests (load 2-4)\n")]),
                  new_code_cell("x", outputs=[new_output("execute_result", execution_count=1,
                                                         data={"text/plain": "'/home/ana/runs' TODO"})]),
                  new_code_cell("y", outputs=[stream("wrote runs/quick/best.pt; see notebooks/05 and /8 of it\n")]))
    problems = lint.output_content_problems(nb, "05_m.ipynb")
    assert len(problems) == 4, problems
    assert "cell 0 output 0: shows an absolute path ('/tmp/mllib_nb05_c9qx4452/maml/best.pt')" in problems[0]
    assert "cell 1 output 0: shows text about how the course was made ('other engineers')" in problems[1]
    assert "'/home/ana/runs'" in problems[2] and "('TODO')" in problems[3]
    for text in ("written in this session", "ask the maintainer", "C:\\Users\\ana\\runs"):
        assert lint.output_content_problems(notebook(new_code_cell("z", outputs=[stream(text)])), "nb"), text


PRINTED_TABLE = ("method                          bn       tasks   accuracy (95% CI)\n"
                 "train from scratch              batch       50    70.6% +- 3.4\n"
                 "MAML, quick checkpoint          batch      200    92.9% +- 1.0\n")


def test_a_printed_table_of_accuracies_must_state_mode_protocol_and_budget():
    nb = notebook(new_code_cell("table()", outputs=[stream(PRINTED_TABLE)]))
    (problem,) = lint.table_problems(nb, "05_m.ipynb")
    assert "cell 0 output 0: a table comparing accuracies (2 rows" in problem
    assert "the test protocol, the training budget of its entries" in problem and "batch-norm" not in problem
    fixed = PRINTED_TABLE.replace("MAML, quick checkpoint  ", "MAML (1,000 meta-steps)") + \
        "protocol: 5-way 1-shot, unrotated test characters; training budget: scratch 20 Adam steps per task\n"
    assert lint.table_problems(notebook(new_code_cell("t()", outputs=[stream(fixed)])), "05_m.ipynb") == []
    seeds = "training seed 0: 92.9% ± 1.0 (200 tasks)\ntraining seed 1: 93.4% ± 0.9 (200 tasks)\n"
    assert lint.table_problems(notebook(new_code_cell("s()", outputs=[stream(seeds)])), "05_m.ipynb") == []


def test_a_markdown_table_of_accuracies_must_state_mode_protocol_and_budget():
    table = ("| method | 5-way 1-shot |\n| --- | --- |\n| in-context learner | 94.3% ± 0.9% |\n"
             "| MAML (shipped checkpoint) | 99.1% ± 0.3% |\n")
    (problem,) = lint.table_problems(notebook("Omniglot:\n\n" + table), "07_u.ipynb")
    assert "cell 0: a table comparing accuracies (2 rows" in problem
    assert "batch-norm mode, the test protocol, the training budget" in problem
    caption = ("Both with transductive batch norm, on the unrotated protocol (200 test tasks); the in-context "
               "learner trained 7 min, MAML 10,000 meta-steps.\n\n")
    assert lint.table_problems(notebook(caption + table), "07_u.ipynb") == []
    columns = ("| method | bn | protocol | budget | accuracy |\n| --- | --- | --- | --- | --- |\n"
               "| in-context | batch | unrotated | 7 min | 94.3% ± 0.9% |\n| MAML | batch | unrotated | "
               "10,000 steps | 99.1% ± 0.3% |\n")
    assert lint.table_problems(notebook(columns), "07_u.ipynb") == []


def test_course_lint_and_measurement_problems_run_the_comparison_checks(tmp_path, capsys):
    folder = tmp_path / "notebooks"
    bad = notebook(ABOVE, new_code_cell("assert 0.989 > 0.987",
                                        outputs=[stream("saved to /tmp/run_x/best.pt\n")]))
    write_notebook(bad, folder / "05_m.ipynb")
    problems = claims.measurement_problems(tmp_path)
    assert len(problems) == 2 and "compares ('above')" in problems[0] and "absolute path" in problems[1]
    assert main(["course", "lint", str(folder / "05_m.ipynb"), "--root", str(tmp_path)]) == 1
    assert "05_m.ipynb cell 0: compares ('above')" in capsys.readouterr().out
    assert claims.measurement_problems(tmp_path / "nowhere") == []


@pytest.mark.parametrize("sentence", [
    "The pre-trained network learns $-1.62\\cos x$, a compromise between all tasks that matches none of them.",
    "So the model used is a run at a lower meta-learning rate (0.001), stopped before 500 steps.",
])
def test_negated_matches_and_attributive_comparatives_are_not_comparisons(sentence):
    assert claims.comparison_problems(notebook(sentence, new_code_cell("x = 1")), "01_a.ipynb") == []
