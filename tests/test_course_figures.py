"""The figure check: each rule fails on a figure built to break it, passes on its fixed version; and it
fails a notebook cell under nbval (one real kernel)."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from nbformat.v4 import new_code_cell, new_notebook  # noqa: E402

from mllib.course import figures  # noqa: E402
from mllib.course.nbio import write_notebook  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CURVES = [[3.2, 1.8, 1.4, 1.2], [3.2, 0.6, 8.0, 90.0], [3.1, 2.5, 1.9, 1.5]]


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def joined(fig) -> str:
    return "\n".join(figures.figure_problems(fig))


def adaptation_figure(limit_first: bool):
    """Notebook 06's adaptation-curve figure, with the limit set before (broken) or after the log scale."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for i, curve in enumerate(CURVES):
        ax.plot(range(4), curve, "o-", label=f"algo {i}")
    if limit_first:
        ax.set_ylim(top=1e2)
        ax.set_yscale("log")
    else:
        ax.set_yscale("log")
        ax.set_ylim(0.3, 1e2)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_xlabel("inner steps")
    ax.set_ylabel("query MSE")
    return fig


def labelled(ax, x="x", y="y"):
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    return ax


def test_a_limit_set_before_the_log_scale_is_caught_and_the_fixed_figure_passes():
    broken = adaptation_figure(limit_first=True)
    assert min(broken.axes[0].get_ylim()) <= 0          # what matplotlib keeps: a non-positive limit
    assert "log y axis with a non-positive limit" in joined(broken)
    assert figures.figure_problems(adaptation_figure(limit_first=False)) == []


def test_data_outside_the_view_limits_is_caught():
    fig, ax = plt.subplots(figsize=(4, 3))
    labelled(ax).plot(range(10), range(10), label="rising")
    ax.set_ylim(20, 30)
    assert "only 0 of 10 finite points lie inside the view limits" in joined(fig)
    ax.set_ylim(-1, 10)
    assert figures.figure_problems(fig) == []


def test_an_empty_axes_is_caught():
    fig, axes = plt.subplots(1, 2, figsize=(6, 3))
    axes[0].plot([0, 1], [0, 1])
    assert "the axes is empty" in joined(fig)


def test_a_figure_too_wide_for_the_notebook_shrinks_its_fonts_below_8_pt():
    fig, axes = plt.subplots(1, 6, figsize=(18, 2.8))           # notebook 06's six histograms
    for ax in axes:
        labelled(ax, "rate", "weights").hist([0.0, 0.1, 0.1, 0.2], bins=3)
        ax.set_title("body.0.weight", fontsize=9)
    problems = joined(fig)
    assert "text smaller than 8 pt as displayed" in problems and "shown at" in problems
    narrow, axes = plt.subplots(2, 3, figsize=(9, 4.5), layout="constrained")
    for ax in axes.flat:
        labelled(ax, "rate", "weights").hist([0.0, 0.1, 0.1, 0.2], bins=3)
        ax.set_title("body.0.weight", fontsize=9)
    assert figures.figure_problems(narrow) == []


def test_a_small_font_in_a_narrow_figure_is_caught():
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1], [0, 1], label="curve")
    ax.legend(fontsize=7, loc="lower right")
    assert "legend 'curve' 7.0 pt" in joined(fig)


def test_a_legend_over_the_data_is_caught():
    fig, ax = plt.subplots(figsize=(5, 3))
    labelled(ax, "accuracy (%)", "method").barh(range(3), [95, 80, 60], xerr=[2, 3, 3], capsize=3)
    ax.axvline(20, ls=":", label="chance")
    ax.set_xlim(0, 100)
    ax.legend(loc="lower right")                                    # notebook 05: over the last bar's error bar
    assert "the legend covers data" in joined(fig)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))          # outside the axes
    assert figures.figure_problems(fig) == []


def test_overlapping_titles_are_caught():
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot([0, 1], [0, 1])
    ax.set_title("the axes title")
    fig.suptitle("a suptitle placed on top of it", y=0.92)
    assert "overlaps" in joined(fig)


def test_install_records_every_displayed_or_saved_figure(tmp_path, monkeypatch):
    record = tmp_path / "figures.jsonl"
    monkeypatch.setenv(figures.RECORD_ENV, str(record))
    figures.install()
    figures.install()                                              # idempotent
    adaptation_figure(limit_first=False).savefig(io.BytesIO(), format="png")
    assert not record.exists()                                     # a good figure records nothing
    adaptation_figure(limit_first=True).savefig(io.BytesIO(), format="png")
    records, offset = figures.read_records(record)
    assert len(records) == 1 and "non-positive limit" in records[0]["problems"][0]
    assert figures.read_records(record, offset) == ([], offset)


def test_nbval_fails_the_cell_that_shows_a_bad_figure(tmp_path):
    good = ("import matplotlib.pyplot as plt\nfig, ax = plt.subplots(figsize=(4, 3))\nax.plot([1, 2], [1, 2])\n"
            "ax.set_xlabel('x')\nax.set_ylabel('y')\nplt.show()")
    bad = ("fig, ax = plt.subplots(figsize=(4, 3))\nax.plot([0, 1, 2], [3, 1, 90])\n"
           "ax.set_ylim(top=1e2)\nax.set_yscale('log')")          # shown at the end of the cell
    folder = tmp_path / "notebooks"
    write_notebook(new_notebook(cells=[new_code_cell(good), new_code_cell(bad)],
                                metadata={"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                                         "language": "python"}}), folder / "figs.ipynb")
    (folder / "conftest.py").write_text((ROOT / "notebooks" / "conftest.py").read_text())
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    env.pop(figures.RECORD_ENV, None)
    run = subprocess.run([sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env", "-p",
                          "no:cacheprovider", "-q", str(folder / "figs.ipynb")], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    out = run.stdout + run.stderr
    assert run.returncode == 1, out
    assert "1 failed, 1 passed" in out and "figs.ipynb::Cell 1" in out, out
    assert "log y axis with a non-positive limit" in out


def test_course_execute_stores_the_kernels_kernelspec_and_refuses_a_bad_figure(tmp_path, monkeypatch):
    from mllib.course.execute import execute_notebooks
    from mllib.course.lint import installed_kernel_display_name
    from mllib.course.nbio import read_notebook

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    stale = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    folder = tmp_path / "notebooks"
    good = ("import matplotlib.pyplot as plt\nfig, ax = plt.subplots(figsize=(4, 3))\nax.plot([0, 1, 2], [3, 1, 90])\n"
            "ax.set_xlabel('x')\nax.set_ylabel('y');")
    bad = good + "\nax.set_ylim(top=1e2)\nax.set_yscale('log')"
    write_notebook(new_notebook(cells=[new_code_cell(good)], metadata=stale), folder / "01_good.ipynb")
    write_notebook(new_notebook(cells=[new_code_cell(bad)], metadata=stale), folder / "02_bad.ipynb")
    before = (folder / "02_bad.ipynb").read_text()
    result = execute_notebooks(folder, report=tmp_path / "report.json", echo=lambda msg: None,
                               metadata={"mllib_render": {"lang": "zh"}})
    assert not result["ok"]
    good_run, bad_run = result["notebooks"]
    assert good_run["ok"] and good_run["figure_problems"] == []
    assert read_notebook(folder / "01_good.ipynb").metadata["mllib_render"] == {"lang": "zh"}   # with its outputs
    assert read_notebook(folder / "01_good.ipynb").metadata["kernelspec"] == {
        "display_name": installed_kernel_display_name("python3"), "language": "python", "name": "python3"}
    assert not bad_run["ok"] and "figure check failed in cell 0" in bad_run["error"]
    assert "non-positive limit" in bad_run["figure_problems"][0]["problems"][0]
    assert (folder / "02_bad.ipynb").read_text() == before          # a bad notebook is not written


def test_a_line_crossing_the_legend_between_its_vertices_is_caught():
    fig, ax = plt.subplots(figsize=(5, 3))
    labelled(ax).plot([0, 10], [0, 10], label="rising")
    ax.axhline(0.5, color="k", ls=":", label="chance")            # two vertices, both at the axes' edges
    ax.set_ylim(0, 10)
    ax.legend(loc="lower right")
    assert "the legend covers data: line 'chance'" in joined(fig)
    ax.legend(loc="upper left")
    assert figures.figure_problems(fig) == []


# ----------------------------------------------------------------------------- issue 22: labels, legends, exits

def test_an_axes_with_data_but_no_axis_labels_is_caught_and_image_grids_and_categories_are_exempt():
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1, 2], [1.0, 0.5, 0.2])                              # notebook 01's first figures
    problems = joined(fig)
    assert "the x axis has no label" in problems and "the y axis has no label" in problems
    labelled(ax, "inner steps", "query MSE")
    assert figures.figure_problems(fig) == []
    grid, axes = plt.subplots(2, 3, figsize=(6, 4))                   # an image grid, ticks off
    for a in axes.flat:
        a.imshow([[0.0, 1.0], [1.0, 0.0]], cmap="gray")
        a.set_xticks([])
        a.set_yticks([])
    assert figures.figure_problems(grid) == []
    off, a = plt.subplots(figsize=(3, 3))
    a.imshow([[0.0, 1.0], [1.0, 0.0]])
    a.axis("off")
    assert figures.figure_problems(off) == []
    bars, a = plt.subplots(figsize=(4, 3))
    a.bar(["scratch", "MAML"], [70.6, 98.9])                          # words on x name themselves
    assert joined(bars) == "figure 4, axes (row 0, column 0): the y axis has no label (set_ylabel: what is " \
                           "measured, and its unit)".replace("figure 4", f"figure {bars.number}")
    a.set_ylabel("accuracy (%)")
    a.set_title("bn=batch, rotated protocol, 1,000 training steps", fontsize=9)
    assert figures.figure_problems(bars) == []
    shared, axes = plt.subplots(1, 2, figsize=(6, 3), sharey=True)    # one supylabel serves both panels
    for a in axes:
        a.plot([0, 1], [0, 1])
        a.set_xlabel("step")
    assert "the y axis has no label" in joined(shared)
    shared.supylabel("error")
    assert figures.figure_problems(shared) == []


def test_several_distinct_series_without_a_legend_are_caught():
    fig, ax = plt.subplots(figsize=(4, 3))
    labelled(ax)
    ax.plot([0, 1, 2], [0, 1, 2], "C0-")
    ax.plot([0, 1, 2], [2, 1, 0], "C1--")
    assert "2 distinct series share the axes" in joined(fig) and "no legend" in joined(fig)
    ax.lines[0].set_label("MAML")
    ax.lines[1].set_label("pre-trained")
    ax.legend(loc="upper center")
    assert figures.figure_problems(fig) == []
    many, ax = plt.subplots(figsize=(4, 3))                           # fifty grey trajectories: one series
    labelled(ax)
    for i in range(50):
        ax.plot([0, 1], [0.01 * i, 0.02 * i], color="0.6")
    assert figures.figure_problems(many) == []
    direct, ax = plt.subplots(figsize=(4, 3))                         # labelled directly with text
    labelled(ax)
    ax.plot([0, 1], [0, 1], "C0")
    ax.plot([0, 1], [1, 0], "C1")
    ax.text(0.8, 0.75, "MAML", color="C0")
    assert figures.figure_problems(direct) == []


def test_bars_in_several_colours_without_a_legend_are_caught():
    fig, ax = plt.subplots(figsize=(5, 3))                            # notebook 05's bar colours
    ax.bar(["scratch", "fine-tune", "ProtoNet", "MAML"], [70, 73, 97, 93], color=["C7", "C7", "C0", "C1"])
    ax.set_ylabel("accuracy (%)")
    ax.set_title("bn=batch, rotated protocol, 1,000 training steps", fontsize=9)
    assert "3 distinct series share the axes" in joined(fig)
    from matplotlib.patches import Patch
    ax.legend(handles=[Patch(color=c, label=n) for c, n in (("C7", "baseline"), ("C0", "metric"),
                                                              ("C1", "optimisation"))], loc="upper left",
              bbox_to_anchor=(1.0, 1.0))
    assert figures.figure_problems(fig) == []


def test_a_figure_legend_must_show_every_style_of_each_panel():
    fig, axes = plt.subplots(1, 2, figsize=(7, 3))
    for a in axes:
        labelled(a)
        a.plot([0, 1], [0, 1], "C0", label="MAML")
        a.plot([0, 1], [1, 0], "C1", label="ProtoNet")
    axes[1].plot([0, 1], [0.5, 0.5], "k:", label="chance")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside upper center")
    assert "axes (row 0, column 1): 3 distinct series" in joined(fig)   # 'chance' is in no legend
    assert "column 0" not in joined(fig)


def test_a_figure_legend_covers_scatter_series_too():
    """Scatter points listed in a figure legend count as labelled (their style once differed in shape)."""
    fig, ax = plt.subplots(figsize=(5, 3), layout="constrained")
    labelled(ax)
    ax.plot([0, 1], [0, 1], "k", label="path")
    ax.scatter([0.2], [0.8], marker="x", color="C0", label="task 1")
    ax.scatter([0.8], [0.2], marker="x", color="C1", label="task 2")
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=3)
    assert "distinct series" not in joined(fig)
    ax.scatter([0.5], [0.5], color="C2")                           # a series the legend does not show
    assert "distinct series share the axes" in joined(fig)


def test_a_figure_legend_on_a_figure_label_or_title_is_caught():
    """A legend placed below the panels sits on fig.supxlabel; above them, on the suptitle."""
    fig, axes = plt.subplots(1, 2, figsize=(6, 3), layout="constrained")
    for a in axes:
        a.plot([0, 1], [0, 1], "C0", label="learned")
        a.set_ylabel("count")
    fig.supxlabel("learned rate of a weight")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center")
    assert "supxlabel overlaps figure legend 1" in joined(fig)
    fine, axes = plt.subplots(1, 2, figsize=(6, 3), layout="constrained")
    for a in axes:
        a.plot([0, 1], [0, 1], "C0", label="learned")
        a.set_ylabel("count")
    fine.supxlabel("learned rate of a weight")
    fine.legend(*axes[0].get_legend_handles_labels(), loc="outside right upper")
    assert "overlaps" not in joined(fine)


def test_a_curve_leaving_the_view_silently_is_caught_and_a_marked_one_passes():
    fig, ax = plt.subplots(figsize=(4, 3))
    labelled(ax, "step", "query MSE")
    ax.plot(range(6), [3.0, 2.0, 1.5, 4.0, 40.0, 400.0], label="Meta-SGD")
    ax.set_ylim(0, 5)
    assert "line 'Meta-SGD' leaves the view limits" in joined(fig)
    ax.annotate("diverges", xy=(3.1, 5.0), xytext=(1.0, 4.5), arrowprops={"arrowstyle": "->"})
    assert figures.figure_problems(fig) == []
    labelled_fig, ax = plt.subplots(figsize=(4, 3))                  # or the legend entry says so
    labelled(ax, "step", "query MSE")
    ax.plot(range(6), [3.0, 2.0, 1.5, 4.0, 40.0, 400.0], label="Meta-SGD (diverges past step 3)")
    ax.set_ylim(0, 5)
    assert figures.figure_problems(labelled_fig) == []


def test_a_curve_clipped_by_hand_along_the_top_edge_is_caught():
    import numpy as np

    fig, ax = plt.subplots(figsize=(4, 3))                            # notebook 07's beyond-the-horizon figure
    labelled(ax, "step", "query MSE")
    ax.plot(range(8), np.clip([3.0, 2.0, 1.5, 4.0, 40.0, 400.0, 1e4, 1e5], None, 5.0), label="Meta-SGD")
    ax.set_ylim(0, 5)
    assert "runs along the top edge" in joined(fig)
    ax.plot([4], [5.0], "rx", label="above 5: diverged")             # a marker where it reaches the edge,
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))            # explained by the legend
    assert figures.figure_problems(fig) == []


def test_a_curve_that_stops_on_nan_is_caught_and_a_marked_end_passes():
    fig, ax = plt.subplots(figsize=(4, 3))                            # notebook 03: diverging curves end
    labelled(ax, "step", "query MSE")
    ax.plot(range(6), [3.0, 2.0, 2.5, 4.0, float("nan"), float("nan")])
    assert "stops: its remaining values are nan or inf" in joined(fig)
    ax.annotate("diverged", xy=(3, 4.0), xytext=(0.5, 3.5))
    assert figures.figure_problems(fig) == []


def test_a_colorbar_without_a_label_is_caught():
    import numpy as np

    fig, ax = plt.subplots(figsize=(5, 3))                            # notebook 04's unlabelled contour levels
    grid = np.linspace(0, 1, 20)
    bar = fig.colorbar(labelled(ax, "amplitude", "phase").contourf(grid, grid, np.add.outer(grid, grid)), ax=ax)
    assert "colorbar: no label: what does the colour show?" in joined(fig)
    bar.set_label("query loss after one step")
    assert figures.figure_problems(fig) == []


def test_arrows_that_leave_the_axes_are_caught():
    fig, ax = plt.subplots(figsize=(4, 3))                            # notebook 04's landscape arrows
    labelled(ax, "amplitude", "phase").plot([0, 1], [0, 1])
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    arrow = ax.arrow(0.5, 0.5, 0.8, 0.0, width=0.01)
    assert "1 arrow(s) run past the edge of the axes" in joined(fig)
    arrow.remove()
    note = ax.annotate("step", xy=(1.5, 0.5), xytext=(0.5, 0.2), arrowprops={"arrowstyle": "->"})
    assert "the annotation 'step' points at (1.5, 0.5), outside the view limits" in joined(fig)
    note.xy = (0.8, 0.5)
    ax.arrow(0.5, 0.5, 0.3, 0.0, width=0.01)
    assert figures.figure_problems(fig) == []


def test_a_figure_comparing_accuracies_must_state_mode_protocol_and_budget():
    fig, ax = plt.subplots(figsize=(6, 3))                            # notebook 05's baseline bars
    ax.barh(["scratch", "fine-tune", "ProtoNet", "MAML"], [70.6, 73.4, 97.2, 92.9])
    ax.set_xlabel("5-way 1-shot test accuracy (%)")
    ax.set_ylabel("method")
    problem = joined(fig)
    assert "compares the accuracies of 4 entries" in problem
    assert "without stating the batch-norm mode, the test protocol, the training budget" in problem
    ax.set_title("bn=batch, unrotated test protocol; training budget: ProtoNet and MAML 1,000 steps", fontsize=9)
    assert figures.figure_problems(fig) == []
    curve, ax = plt.subplots(figsize=(4, 3))                          # a learning curve compares nothing
    labelled(ax, "meta-step", "accuracy").plot([0, 1], [0.2, 0.9], label="training")
    ax.plot([0, 1], [0.2, 0.8], label="validation")
    ax.legend(loc="lower right")
    assert figures.figure_problems(curve) == []


def test_composite_plots_and_a_narrower_x_range_are_not_flagged():
    import numpy as np

    fig, axes = plt.subplots(1, 3, figsize=(9, 3), layout="constrained")
    labelled(axes[0], "method", "accuracy").boxplot([[0.1, 0.2, 0.3, 0.25], [0.5, 0.6, 0.55, 0.7]])
    labelled(axes[1], "k", "value").stem([1, 2, 3], [1, 2, 3])
    x = np.linspace(-6, 6, 50)
    labelled(axes[2], "x", "y").plot(x, np.sin(x))
    axes[2].set_xlim(-5, 5)
    assert figures.figure_problems(fig) == []


def test_a_chinese_comparison_states_its_protocol_bn_mode_and_budget_in_chinese():
    """The Chinese edition draws its figures with translated text: the same three facts, said in Chinese."""
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.bar(["从零训练", "MAML"], [70.6, 98.9])
    ax.set_ylabel("准确率（%）")
    ax.set_title("学习率扫描", fontsize=9)
    problem = joined(fig)
    assert "without stating the batch-norm mode, the test protocol, the training budget" in problem
    ax.set_title("批归一化：batch；旋转测试协议；3步", fontsize=9)      # 3 steps is an inner loop, not a budget
    assert "without stating the training budget" in joined(fig)
    ax.set_title("批归一化：batch；旋转测试协议；训练1,000元步", fontsize=9)
    assert figures.figure_problems(fig) == []
    ax.set_title("无批归一化；maml划分；预算：空闲时229秒", fontsize=9)
    assert figures.figure_problems(fig) == []
    plt.close(fig)
