"""Figure text in the reader's language: one dictionary of labels, applied when a figure is drawn.

The notebooks draw their figures with English titles, axis labels, legends and annotations. A
translated edition does not get a second copy of that code: its setup cell calls
``install("zh")``, and from then on every figure, just before it is rendered (shown inline or
saved), has each text whose English string is in :data:`LABELS` replaced by its translation:
titles, suptitles, axis labels, tick labels, legend entries and free text. Strings the dictionary
does not know stay as they are.

Glyphs first: a Chinese label drawn with a font that has no Chinese glyphs renders as empty boxes.
:func:`missing_glyphs` names the characters a font lacks, and :func:`cjk_font` finds an installed font
that has them all. ``install`` translates only when such a font exists (and makes it the first
choice); otherwise it says so in one line and leaves the figures in English, never boxes.

    >>> missing_glyphs("meta-step", "DejaVu Sans")
    ''
    >>> missing_glyphs("元步", "DejaVu Sans")
    '元步'
"""
from __future__ import annotations

import functools
import re

import matplotlib
from matplotlib import font_manager
from matplotlib.backend_bases import FigureCanvasBase
from matplotlib.ft2font import FT2Font

#: English figure text -> translation, per language. Keys are exact strings; a key with ``{}`` is a
#: pattern whose ``{}`` parts (numbers, names) are carried over in order.
LABELS: dict[str, dict[str, str]] = {
    "zh": {
        "meta-step": "元步",
        "query loss (training tasks)": "查询损失（训练任务）",
        "query accuracy": "查询准确率",
        "training tasks (adapted)": "训练任务（适应后）",
        "validation": "验证",
        "chance": "随机猜测",
        "meta-training (moving average of {})": "元训练（{}步滑动平均）",
        "accuracy": "准确率",
        "loss": "损失",
        "inner steps": "内循环步数",
        "training seconds": "训练秒数",
        "validation accuracy": "验证准确率",
        "test accuracy": "测试准确率",
        "x": "x",
        "y": "y",
    },
}
PLACEHOLDER_FONTS = ("Last Resort",)   # fonts that draw a box (the code point's block) for every character
_installed: dict[str, str] = {}   # the language that figures are translated to, and the font used


def _missing(text: str, path: str) -> str:
    face = FT2Font(path)
    return "".join(dict.fromkeys(c for c in text if not c.isspace() and face.get_char_index(ord(c)) == 0))


def missing_glyphs(text: str, font: str | None = None) -> str:
    """The characters of ``text`` (spaces left out) that the font family ``font`` (default:
    matplotlib's first sans-serif choice) has no glyph for; empty when it can draw them all."""
    family = font or matplotlib.rcParams["font.sans-serif"][0]
    return _missing(text, font_manager.findfont(font_manager.FontProperties(family=[family]),
                                                fallback_to_default=True))


@functools.lru_cache(maxsize=None)
def cjk_font(sample: str = "元学习的内循环与外循环") -> str | None:
    """The family name of an installed font that has every glyph of ``sample``, or None. Fonts whose
    "glyphs" are placeholder boxes for every code point (Last Resort) do not count."""
    for entry in font_manager.fontManager.ttflist:
        if entry.name.startswith(PLACEHOLDER_FONTS):
            continue
        try:
            if not _missing(sample, entry.fname):
                return entry.name
        except (OSError, RuntimeError):
            continue
    return None


@functools.lru_cache(maxsize=None)
def _pattern(key: str) -> re.Pattern:
    return re.compile("^" + re.escape(key).replace(r"\{\}", "(.+?)") + "$")


def translate(text: str, lang: str) -> str:
    """``text`` in ``lang`` when :data:`LABELS` knows it (exactly, or as a ``{}`` pattern), else ``text``."""
    table = LABELS.get(lang, {})
    if text in table:
        return table[text]
    for key, value in table.items():
        if "{}" in key and (match := _pattern(key).match(text)):
            return value.format(*match.groups())
    return text


def translate_figure(fig, lang: str) -> int:
    """Replace every known English text of ``fig`` by its ``lang`` translation; returns how many changed."""
    changed = 0
    for artist in fig.findobj(matplotlib.text.Text):
        old = artist.get_text()
        new = translate(old, lang) if old else old
        if new != old:
            artist.set_text(new)
            changed += 1
    return changed


def install(lang: str) -> bool:
    """Translate every figure's text to ``lang`` from now on, if a font can draw it; True when installed.

    Without such a font it prints one line (what to install) and changes nothing."""
    if lang not in LABELS:
        raise ValueError(f"no figure labels for language {lang!r}; choose one of {', '.join(LABELS)}")
    font = cjk_font()
    if font is None:
        print(f"figures stay in English: no installed font has Chinese glyphs (install one, e.g. the Debian "
              f"package fonts-noto-cjk, then restart the kernel)")
        return False
    matplotlib.rcParams["font.sans-serif"] = [font, *matplotlib.rcParams["font.sans-serif"]]
    matplotlib.rcParams["axes.unicode_minus"] = False
    if not _installed:
        original = FigureCanvasBase.print_figure

        def print_figure(self, *args, **kwargs):
            translate_figure(self.figure, _installed["lang"])
            return original(self, *args, **kwargs)

        FigureCanvasBase.print_figure = print_figure
    _installed.update(lang=lang, font=font)
    return True


__all__ = ["LABELS", "missing_glyphs", "cjk_font", "translate", "translate_figure", "install"]
