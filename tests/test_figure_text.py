"""mllib.figure_text: one dictionary of figure labels, applied at draw time, never drawn as boxes."""
from __future__ import annotations

import io

import matplotlib

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
