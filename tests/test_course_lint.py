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
