"""mllib.figure_text: one dictionary of figure labels, applied at draw time, never drawn as boxes."""
from __future__ import annotations

import io

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from mllib import figure_text  # noqa: E402
from mllib.figure_text import LABELS, install, missing_glyphs, translate, translate_figure  # noqa: E402


def test_missing_glyphs_names_what_a_latin_font_cannot_draw():
    assert missing_glyphs("query accuracy (%)", "DejaVu Sans") == ""
    assert missing_glyphs("元学习 meta", "DejaVu Sans") == "元学习"      # boxes, if drawn with this font


def test_translate_exact_and_patterns_and_unknown_text():
    assert translate("meta-step", "zh") == "元步"
    assert translate("meta-training (moving average of 20)", "zh") == "元训练（20步滑动平均）"
    assert translate("something new", "zh") == "something new"
    assert all(v for v in LABELS["zh"].values()) and all(k.count("{}") == v.count("{}") for k, v in LABELS["zh"].items())


def test_translate_figure_changes_titles_labels_and_legends():
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1], label="validation")
    ax.set_xlabel("meta-step")
    ax.set_ylabel("an unknown label")
    ax.legend()
    assert translate_figure(fig, "zh") == 2
    assert ax.get_xlabel() == "元步" and ax.get_ylabel() == "an unknown label"
    assert ax.get_legend().get_texts()[0].get_text() == "验证"
    plt.close(fig)


def test_install_without_a_chinese_font_leaves_english(monkeypatch, capsys):
    monkeypatch.setattr(figure_text, "cjk_font", lambda sample="": None)
    assert install("zh") is False
    assert "figures stay in English" in capsys.readouterr().out
    with pytest.raises(ValueError, match="no figure labels"):
        install("xx")


def test_install_translates_each_figure_when_it_is_rendered(monkeypatch):
    monkeypatch.setattr(figure_text, "cjk_font", lambda sample="": "DejaVu Sans")   # pretend it has the glyphs
    saved = (matplotlib.backend_bases.FigureCanvasBase.print_figure, dict(figure_text._installed),
             list(matplotlib.rcParams["font.sans-serif"]))
    try:
        assert install("zh") is True
        fig, ax = plt.subplots()
        ax.set_xlabel("meta-step")
        fig.savefig(io.BytesIO(), format="png")
        assert ax.get_xlabel() == "元步"
        plt.close(fig)
    finally:
        matplotlib.backend_bases.FigureCanvasBase.print_figure = saved[0]
        figure_text._installed.clear()
        figure_text._installed.update(saved[1])
        matplotlib.rcParams["font.sans-serif"] = saved[2]


def test_a_placeholder_font_is_not_a_chinese_font():
    """matplotlib ships Last Resort, whose glyph for every character is a box: it must not count."""
    figure_text.cjk_font.cache_clear()
    found = figure_text.cjk_font()
    assert found is None or not found.startswith(figure_text.PLACEHOLDER_FONTS)
    assert found is None or missing_glyphs("元学习", found) == ""


def test_a_simplified_chinese_sans_font_is_chosen_before_serif_and_other_variants(monkeypatch):
    """Noto's collections list JP, KR, SC, TC and serif faces of the same glyphs; the figures want SC sans."""
    from types import SimpleNamespace

    names = ["Noto Serif CJK JP", "Noto Sans CJK JP", "Some Serif CJK", "Noto Sans CJK SC", "DejaVu Sans"]
    entries = [SimpleNamespace(name=n, fname=n) for n in names]
    monkeypatch.setattr(figure_text.font_manager.fontManager, "ttflist", entries)
    monkeypatch.setattr(figure_text, "_missing", lambda text, path: "" if "CJK" in path else text)
    figure_text.cjk_font.cache_clear()
    try:
        assert figure_text.cjk_font() == "Noto Sans CJK SC"
        entries.pop(names.index("Noto Sans CJK SC"))
        figure_text.cjk_font.cache_clear()
        assert figure_text.cjk_font() == "Noto Sans CJK JP"   # sans before serif
    finally:
        figure_text.cjk_font.cache_clear()


def test_the_font_command_says_which_font_or_what_to_install(monkeypatch, capsys):
    monkeypatch.setattr(figure_text, "cjk_font", lambda sample="": None)
    assert figure_text.main([]) == 1
    assert "fonts-noto-cjk" in capsys.readouterr().out
    monkeypatch.setattr(figure_text, "cjk_font", lambda sample="": "Noto Sans CJK SC")
    assert figure_text.main([]) == 0
    assert "Noto Sans CJK SC" in capsys.readouterr().out


def test_word_tick_labels_are_translated_where_the_axis_redraws_them():
    """``set_xticks(ticks, labels)`` keeps the words in the axis's formatter, and every draw writes them
    back into the tick labels: translating the drawn Text alone would be undone at render time."""
    fig, ax = plt.subplots()
    ax.bar([0, 1], [1, 2])
    ax.set_xticks([0, 1], ["before adaptation", "an unknown word"])
    translate_figure(fig, "zh")
    fig.canvas.draw()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["适应之前", "an unknown word"]
    ax.yaxis.set_major_locator(matplotlib.ticker.FixedLocator([0, 1]))
    ax.yaxis.set_major_formatter(matplotlib.ticker.FixedFormatter(["validation", "x"]))   # the older form
    assert translate_figure(fig, "zh") == 1
    fig.canvas.draw()
    assert [t.get_text() for t in ax.get_yticklabels()] == ["验证", "x"]
    plt.close(fig)


def test_the_parts_a_pattern_carries_over_are_translated_too():
    assert translate("Cost of the outer loop on cpu (1 thread): 5-way 1-shot, 32 filters", "zh") \
        == "外循环在CPU（1个线程）上的开销：5类1样本，32个滤波器"
    assert translate("Cost of the outer loop on cuda (NVIDIA H100): 5-way 1-shot, 32 filters", "zh") \
        == "外循环在cuda (NVIDIA H100)上的开销：5类1样本，32个滤波器"


def test_a_device_is_described_in_good_english():
    import torch

    from mllib.device import describe_device

    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert describe_device(torch.device("cpu")) == "cpu (1 thread)"
        torch.set_num_threads(2)
        assert describe_device(torch.device("cpu")) == "cpu (2 threads)"
    finally:
        torch.set_num_threads(saved)
