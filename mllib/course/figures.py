"""Checks on every matplotlib figure a notebook shows: is what it draws visible and legible?

:func:`figure_problems` looks at one figure, drawn as Jupyter displays it (``bbox_inches="tight"``),
and returns one sentence per problem (an empty list when the figure is fine):

* **limits**: every axis limit is finite, and a log axis has two positive limits (matplotlib
  draws a log axis with a non-positive limit without complaint, and the result is nonsense);
* **data in view**: every plotted line, scatter and error-bar collection has at least half of
  its finite points inside the axes' view limits (data drawn off the axes is data not shown);
* **empty axes**: every visible axes draws something (a line, a collection, a patch, an image
  or a text);
* **legibility**: every visible text (titles, labels, tick labels, legends, annotations) is at
  least ``MIN_FONT_PT`` points *as displayed*: JupyterLab shrinks a figure wider than the
  output area to fit, so a figure whose tight width ``w`` exceeds ``DISPLAY_WIDTH_IN`` is
  shown at ``DISPLAY_WIDTH_IN / w`` of its size, and its fonts with it;
* **overlaps**: no two titles, axis labels or legends (of any axes, suptitle included) overlap;
* **legends**: no legend box covers data of its axes (a line, including between its vertices,
  a scatter point, an error bar's end, a bar).

The rules are heuristics with an honest scope: overlapping tick labels, or a legend over a filled
area (``axhspan``, ``fill_between``), are not seen.

Running the check while notebooks execute: :func:`install` (in the kernel) wraps
``FigureCanvasBase.print_figure``, through which every displayed or saved figure passes, and
appends one JSON line per figure with problems to the file named by ``$MLLIB_FIGURE_RECORD``.
:func:`ipython_dir` writes an IPython profile whose startup file calls :func:`install`; a
kernel started with ``IPYTHONDIR`` pointing there checks every figure. The nbval plugin
(``mllib.course.nbval_figures``, loaded by ``notebooks/conftest.py``) and
``python -m mllib course execute`` use it and fail the cell that showed a bad figure.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

RECORD_ENV = "MLLIB_FIGURE_RECORD"
DISPLAY_WIDTH_IN = 10.0   # JupyterLab's output width at matplotlib's 100 dpi (about 1,000 px)
MIN_FONT_PT = 8.0         # smallest text size a reader can comfortably read, as displayed
MIN_IN_VIEW = 0.5         # fraction of an artist's finite points that must lie inside the axes
_EDGE = 1e-6              # tolerance (axes coordinates) for points drawn on the edge of the axes


def figure_problems(fig, display_width_in: float = DISPLAY_WIDTH_IN, min_font_pt: float = MIN_FONT_PT) -> list[str]:
    """Every problem of ``fig`` (a ``matplotlib.figure.Figure``), one sentence each; [] when fine."""
    fig.canvas.draw()                      # ticks, legends and layout exist only after a draw
    renderer = fig.canvas.get_renderer()
    name = figure_name(fig)
    problems = []
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        where = f"{name}, {axes_name(ax)}"
        bad_limits = _limit_problems(ax)
        problems += [f"{where}: {p}" for p in bad_limits]
        if not bad_limits:
            problems += [f"{where}: {p}" for p in _view_problems(ax)]
            problems += [f"{where}: {p}" for p in _legend_cover_problems(ax, renderer)]
        if not _draws_something(ax):
            problems.append(f"{where}: the axes is empty (nothing is drawn in it; remove it or plot into it)")
    problems += [f"{name}: {p}" for p in _font_problems(fig, renderer, display_width_in, min_font_pt)]
    problems += [f"{name}: {p}" for p in _overlap_problems(fig, renderer)]
    return problems


def figure_name(fig) -> str:
    """A short label for messages: the suptitle, else the first axes title, else the figure number."""
    suptitle = getattr(fig, "_suptitle", None)
    if suptitle is not None and suptitle.get_text():
        return f"figure {suptitle.get_text()!r}"
    for ax in fig.axes:
        if ax.get_title():
            return f"figure {ax.get_title()!r}"
    return f"figure {getattr(fig, 'number', '?')}"


def axes_name(ax) -> str:
    position = ax.get_subplotspec()
    index = "" if position is None else f" (row {position.rowspan.start}, column {position.colspan.start})"
    title = ax.get_title()
    return f"axes {title!r}" if title else f"axes{index}"


# ----------------------------------------------------------------------------- limits and data

def _limit_problems(ax) -> list[str]:
    problems = []
    for letter, limits, scale in (("x", ax.get_xlim(), ax.get_xscale()), ("y", ax.get_ylim(), ax.get_yscale())):
        if not all(math.isfinite(v) for v in limits):
            problems.append(f"the {letter} limits {limits} are not finite")
        elif scale == "log" and min(limits) <= 0:
            problems.append(f"log {letter} axis with a non-positive limit {limits} (set the limits after "
                            f"set_{letter}scale('log'), and keep them > 0)")
        elif limits[0] == limits[1]:
            problems.append(f"the {letter} limits are equal ({limits[0]}): nothing can be seen")
    return problems


def _artist_points(ax):
    """``(label, points [n, 2] in axes coordinates)`` for every line, scatter and line collection."""
    import numpy as np
    from matplotlib.collections import LineCollection, PathCollection

    to_axes = ax.transAxes.inverted()
    for line in ax.get_lines():
        if not line.get_visible():
            continue
        xy = np.asarray(line.get_xydata(), dtype=float).reshape(-1, 2)
        yield f"line {line.get_label()!r}", to_axes.transform(line.get_transform().transform(xy)), xy
    for coll in ax.collections:
        if not coll.get_visible():
            continue
        if isinstance(coll, PathCollection):
            xy = np.asarray(coll.get_offsets(), dtype=float).reshape(-1, 2)
            yield "scatter", to_axes.transform(coll.get_offset_transform().transform(xy)), xy
        elif isinstance(coll, LineCollection):
            segments = coll.get_segments()
            if segments:
                xy = np.concatenate([np.asarray(s, dtype=float).reshape(-1, 2) for s in segments])
                yield "line collection (error bars?)", to_axes.transform(coll.get_transform().transform(xy)), xy


def _view_problems(ax) -> list[str]:
    import numpy as np

    problems = []
    for label, points, raw in _artist_points(ax):
        finite = np.isfinite(raw).all(axis=1) & np.isfinite(points).all(axis=1)
        if not finite.any():
            continue
        inside = ((points[finite] >= -_EDGE) & (points[finite] <= 1 + _EDGE)).all(axis=1)
        if inside.mean() < MIN_IN_VIEW:
            problems.append(f"{label}: only {int(inside.sum())} of {int(finite.sum())} finite points lie inside "
                            f"the view limits x={tuple(round(v, 4) for v in ax.get_xlim())}, "
                            f"y={tuple(round(v, 4) for v in ax.get_ylim())}")
    return problems


def _draws_something(ax) -> bool:
    return any(a.get_visible() for a in (*ax.lines, *ax.collections, *ax.patches, *ax.images, *ax.texts))


# ----------------------------------------------------------------------------- legends

def _densify(points, per_segment: int = 20):
    """A polyline's vertices plus ``per_segment`` points along each segment (axes coordinates), so that a
    line crossing a legend between two vertices (an ``axhline``, a sparse curve) is seen."""
    import numpy as np

    if len(points) < 2:
        return points
    steps = np.linspace(0, 1, per_segment, endpoint=False)[None, :, None]
    segments = points[:-1, None, :] + steps * (points[1:] - points[:-1])[:, None, :]
    return np.concatenate([segments.reshape(-1, 2), points[-1:]])


def _legend_cover_problems(ax, renderer) -> list[str]:
    import numpy as np

    legend = ax.get_legend()
    if legend is None or not legend.get_visible():
        return []
    box = legend.get_window_extent(renderer)
    to_display = ax.transAxes
    covered = []
    for label, points, raw in _artist_points(ax):
        points = _densify(points) if label.startswith("line ") else points
        finite = np.isfinite(points).all(axis=1)
        inside_axes = finite & ((points >= -_EDGE) & (points <= 1 + _EDGE)).all(axis=1)
        shown = to_display.transform(points[inside_axes]) if inside_axes.any() else np.zeros((0, 2))
        hits = ((shown[:, 0] > box.x0) & (shown[:, 0] < box.x1) & (shown[:, 1] > box.y0) & (shown[:, 1] < box.y1))
        if hits.any():
            covered.append(f"{label} ({int(hits.sum())} point(s))")
    for patch in ax.patches:
        if patch.get_visible() and _overlap_area(
                patch.get_window_extent(renderer), box) > 1.0:
            covered.append("a bar or patch")
            break
    if covered:
        return [f"the legend covers data: {', '.join(covered)} (move it, e.g. loc='best', outside the axes, "
                f"or widen the limits)"]
    return []


# ----------------------------------------------------------------------------- text

def _shown_texts(fig):
    """Every visible, non-empty text the figure draws, with a short description."""
    texts = [(t, "figure text") for t in fig.texts]
    suptitle = getattr(fig, "_suptitle", None)
    if suptitle is not None:
        texts.append((suptitle, "suptitle"))
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        for attr in ("title", "_left_title", "_right_title"):
            texts.append((getattr(ax, attr), "title"))
        for axis, letter in ((ax.xaxis, "x"), (ax.yaxis, "y")):
            if axis.get_visible():
                texts.append((axis.label, f"{letter} label"))
                texts += [(t, f"{letter} tick label") for t in _drawn_tick_labels(axis)]
                texts.append((axis.get_offset_text(), f"{letter} offset text"))
        texts += [(t, "text") for t in ax.texts]
        legend = ax.get_legend()
        if legend is not None and legend.get_visible():
            texts += [(t, "legend") for t in legend.get_texts()]
            texts.append((legend.get_title(), "legend title"))
    for legend in fig.legends:
        texts += [(t, "legend") for t in legend.get_texts()]
    return [(t, kind) for t, kind in texts if t.get_visible() and t.get_text().strip()]


def _drawn_tick_labels(axis):
    """The tick labels the axis draws (ticks inside the view interval), not every label it holds."""
    try:
        ticks = axis._update_ticks()          # what matplotlib's own draw uses
    except AttributeError:                    # pragma: no cover - older/newer matplotlib
        low, high = sorted(axis.get_view_interval())
        ticks = [t for t in axis.get_major_ticks() + axis.get_minor_ticks() if low <= t.get_loc() <= high]
    return [label for tick in ticks for label in (tick.label1, tick.label2)]


def displayed_scale(fig, renderer, display_width_in: float = DISPLAY_WIDTH_IN) -> float:
    """How much JupyterLab shrinks the figure: ``min(1, display width / tight width)``."""
    width = fig.get_tightbbox(renderer).width        # inches: what bbox_inches="tight" saves
    return min(1.0, display_width_in / width) if width > 0 else 1.0


def _font_problems(fig, renderer, display_width_in: float, min_font_pt: float) -> list[str]:
    scale = displayed_scale(fig, renderer, display_width_in)
    small: dict[str, tuple[float, str]] = {}
    for text, kind in _shown_texts(fig):
        shown = text.get_fontsize() * scale
        if shown < min_font_pt - 1e-9 and (kind not in small or shown < small[kind][0]):
            small[kind] = (shown, text.get_text())
    if not small:
        return []
    width = fig.get_tightbbox(renderer).width
    parts = [f"{kind} {text!r} {size:.1f} pt" for kind, (size, text) in sorted(small.items())]
    why = (f"the figure is {width:.1f} in wide and is shown at {scale:.0%} of its size; " if scale < 1 else "")
    return [f"text smaller than {min_font_pt:g} pt as displayed ({why}smallest: {'; '.join(parts)})"]


def _overlap_area(a, b) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w * h if w > 0 and h > 0 else 0.0


def _overlap_problems(fig, renderer) -> list[str]:
    boxes = []
    suptitle = getattr(fig, "_suptitle", None)
    if suptitle is not None and suptitle.get_visible() and suptitle.get_text():
        boxes.append(("suptitle", suptitle.get_window_extent(renderer)))
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        name = axes_name(ax)
        for attr in ("title", "_left_title", "_right_title"):
            t = getattr(ax, attr)
            if t.get_visible() and t.get_text():
                boxes.append((f"{name} title", t.get_window_extent(renderer)))
        for axis, letter in ((ax.xaxis, "x"), (ax.yaxis, "y")):
            if axis.get_visible() and axis.label.get_visible() and axis.label.get_text():
                boxes.append((f"{name} {letter} label {axis.label.get_text()!r}", axis.label.get_window_extent(renderer)))
        legend = ax.get_legend()
        if legend is not None and legend.get_visible():
            boxes.append((f"{name} legend", legend.get_window_extent(renderer)))
    problems = []
    for i, (a_name, a) in enumerate(boxes):
        for b_name, b in boxes[i + 1:]:
            if _overlap_area(a, b) > 4.0:        # square pixels: touching edges are fine
                problems.append(f"{a_name} overlaps {b_name}")
    return problems


# ----------------------------------------------------------------------------- in the kernel

_installed = {"done": False}


def check_and_record(fig) -> list[str]:
    """Check ``fig``; when ``$MLLIB_FIGURE_RECORD`` names a file, append its problems there (JSON line)."""
    try:
        problems = figure_problems(fig)
    except Exception as err:  # noqa: BLE001 - a check that crashes must say so, not pass silently
        problems = [f"{figure_name(fig)}: the figure check itself failed: {type(err).__name__}: {err}"]
    record = os.environ.get(RECORD_ENV)
    if problems and record:
        with open(record, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"figure": figure_name(fig), "problems": problems}, ensure_ascii=False) + "\n")
    return problems


def install() -> None:
    """Check every figure that is displayed or saved from now on (idempotent)."""
    if _installed["done"]:
        return
    from matplotlib.backend_bases import FigureCanvasBase

    original = FigureCanvasBase.print_figure

    def print_figure(self, *args, **kwargs):
        if not getattr(self.figure, "_mllib_checking", False):
            self.figure._mllib_checking = True
            try:
                check_and_record(self.figure)
            finally:
                self.figure._mllib_checking = False
        return original(self, *args, **kwargs)

    FigureCanvasBase.print_figure = print_figure
    _installed["done"] = True


STARTUP = '''# Written by mllib.course.figures.ipython_dir: check every figure this kernel shows.
try:
    from mllib.course.figures import install as _mllib_figure_check
    _mllib_figure_check()
    del _mllib_figure_check
except Exception as _err:  # report, but never stop the kernel
    import sys as _sys
    print(f"mllib figure check not installed: {_err}", file=_sys.stderr)
'''


def ipython_dir(folder: str | Path | None = None) -> Path:
    """An IPython directory whose default profile installs the figure check at kernel start.

    Point ``IPYTHONDIR`` at it (and ``MLLIB_FIGURE_RECORD`` at a file) in a kernel's environment.
    """
    folder = Path(folder) if folder is not None else Path(tempfile.mkdtemp(prefix="mllib-ipython-"))
    startup = folder / "profile_default" / "startup"
    startup.mkdir(parents=True, exist_ok=True)
    (startup / "00-mllib-figure-check.py").write_text(STARTUP, encoding="utf-8")
    return folder


def read_records(path: str | Path, offset: int = 0) -> tuple[list[dict], int]:
    """The records appended to ``path`` after byte ``offset``, and the new offset."""
    path = Path(path)
    if not path.is_file():
        return [], offset
    with open(path, encoding="utf-8") as fh:
        fh.seek(offset)
        text = fh.read()
        offset = fh.tell()
    return [json.loads(line) for line in text.splitlines() if line.strip()], offset
