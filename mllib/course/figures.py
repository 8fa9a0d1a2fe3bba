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
  a scatter point, an error bar's end, a bar);
* **axis labels**: every axes that draws data labels each axis that shows numeric tick labels
  (``set_xlabel``/``set_ylabel``, or the figure's ``supxlabel``/``supylabel``). Exempt, by design: an
  axes drawn with ``ax.axis("off")`` or with its ticks removed (an image grid of ``imshow`` panels:
  there is no scale to name), and an axis whose tick labels are words (categories name themselves);
* **legend needed**: when several *distinct* series share an axes (lines, scatters or bars that differ in
  colour, line style or marker; bars of one call in several colours), the axes has a legend, the
  figure has a legend that shows every one of those styles, or the series are labelled directly (at
  least one text annotation with words per series beyond the first). Series drawn in one identical
  style (fifty grey trajectories) are one series;
* **data that leaves the view silently**: a line that leaves the view through the top or bottom edge
  (values hidden; running past the left or right edge only narrows the x range), a scatter point
  outside the view limits, a curve
  drawn along the top or bottom edge (data clipped by hand to the limit), or a curve that stops
  because its values become ``nan``/``inf`` (a run that diverged) must be *marked*: a marker or a
  text/annotation (another artist) within ``MARK_RADIUS`` (axes fraction) of where it leaves, touches
  the edge or stops, or the series' own legend label saying so ("diverged", "clipped", "off scale");
  an arrow (``ax.arrow``, a ``FancyArrowPatch``) that runs past the axes, or an annotation whose arrow
  points outside the view, is reported too (``quiver`` arrows are not examined);
* **comparisons of accuracies**: an axes whose value axis is an accuracy (its label says "accuracy" or
  "%") and that compares at least two entries (word tick labels, or legend entries other than
  chance/train/validation/test) states in the figure's text the batch-norm mode, the test protocol and
  the training budget (``COMPARISON_NEEDS``, shared with the table check of ``mllib.course.lint``).

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
import re
import tempfile
from pathlib import Path

RECORD_ENV = "MLLIB_FIGURE_RECORD"
DISPLAY_WIDTH_IN = 10.0   # JupyterLab's output width at matplotlib's 100 dpi (about 1,000 px)
MIN_FONT_PT = 8.0         # smallest text size a reader can comfortably read, as displayed
MIN_IN_VIEW = 0.5         # fraction of an artist's finite points that must lie inside the axes
_EDGE = 1e-6              # tolerance (axes coordinates) for points drawn on the edge of the axes
MARK_RADIUS = 0.08        # how near (axes fraction) a marker or annotation must be to where a series leaves
# What a comparison of accuracies across methods states about each entry (issue 22); a table
# (mllib.course.lint) or a figure says it in a column, a caption, a title, a label or a legend.
COMPARISON_NEEDS = {
    "batch-norm mode": re.compile(r"\bbn\b|batch[- ]?norm|transductive|\b(?:batch|support) statistics|批归一化|直推",
                                  re.I),
    "test protocol": re.compile(r"protocol|rotat|\bsplit\b|协议|划分|旋转", re.I),
    # a training count (at least 100 steps: "3 steps" is an inner loop), a training time, or the word budget
    # (the Chinese edition's figures say the same in Chinese: mllib.figure_text)
    "training budget": re.compile(r"(?:\d{1,3},\d{3}|\d{3,})\s*(?:(?:meta-)?training\s+|meta-)?"
                                  r"(?:steps?|minibatch\w*|iterations?|episodes?)\b|\bepochs?\b|budget|"
                                  r"train\w*[^.;\n]{0,40}?\d[\d,.]*\s*(?:s|min|minutes?|h|hours?)\b|"
                                  r"\d[\d,.]*\s*(?:s|min|minutes?|h|hours?)\s+(?:of\s+)?(?:meta-)?train|"
                                  r"(?:\d{1,3},\d{3}|\d{3,})\s*[个次]?(?:元训练|训练)?(?:元步|步|次?迭代|个?回合|个?小批量)|"
                                  r"预算|训练[^。；\n]{0,40}?\d[\d,.]*\s*(?:秒|分钟|小时)", re.I),
}
_MARK_WORDS = ("diverg", "clipped", "clip", "off scale", "off-scale", "beyond", "blew up", "blows up", "nan", "inf")


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
            problems += [f"{where}: {p}" for p in _silent_exit_problems(ax)]
            problems += [f"{where}: {p}" for p in _arrow_problems(ax, renderer)]
        if not _draws_something(ax):
            problems.append(f"{where}: the axes is empty (nothing is drawn in it; remove it or plot into it)")
        else:
            problems += [f"{where}: {p}" for p in _axis_label_problems(ax, fig)]
            problems += [f"{where}: {p}" for p in _legend_needed_problems(ax, fig)]
            problems += [f"{where}: {p}" for p in _comparison_caption_problems(ax, fig)]
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
    if getattr(ax, "_colorbar", None) is not None:
        return "colorbar"
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
    return any(a.get_visible() for a in (*ax.lines, *ax.collections, *ax.patches, *ax.images, *ax.texts, *ax.tables))


# ----------------------------------------------------------------------------- axis labels

_NUMERIC_TICK = re.compile(r"^[-+−]?(?:\d[\d,]*\.?\d*|\.\d+)(?:[eE×x][-+−]?\d+)?\s*%?$")


def _is_numeric_tick(text: str) -> bool:
    """Whether a tick label is a number ("0.5", "−2", "10%", "$\\mathdefault{10^{-1}}$"), not a word."""
    plain = re.sub(r"\\mathdefault|\\times|[${}^\\ ]", "", text)
    return bool(_NUMERIC_TICK.match(plain))


def _draws_data(ax) -> bool:
    return any(a.get_visible() for a in (*ax.lines, *ax.collections, *ax.patches, *ax.images))


def _axis_label_problems(ax, fig) -> list[str]:
    """Axes drawing data whose x or y axis shows numeric tick labels but has no label."""
    if not ax.axison or not _draws_data(ax):
        return []
    problems = []
    for letter, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
        if not axis.get_visible() or axis.label.get_text().strip():
            continue
        sup = getattr(fig, f"_sup{letter}label", None)
        if sup is not None and sup.get_visible() and sup.get_text().strip():
            continue
        shown = [t.get_text() for t in _drawn_tick_labels(axis) if t.get_visible() and t.get_text().strip()]
        if shown and any(_is_numeric_tick(t) for t in shown):
            problems.append("no label: what does the colour show? (colorbar.set_label)"
                            if getattr(ax, "_colorbar", None) is not None else
                            f"the {letter} axis has no label (set_{letter}label: what is measured, and its unit)")
    return problems


# ----------------------------------------------------------------------------- legend needed

def _colour(value) -> tuple:
    from matplotlib.colors import to_rgba

    try:
        return tuple(round(c, 3) for c in to_rgba(value))
    except (ValueError, TypeError):
        return ("?",)


def _line_style(line) -> tuple:
    marker = line.get_marker()
    marker = None if marker in (None, "", " ", "None", "none") else str(marker)
    style = line.get_linestyle()
    style = None if style in ("None", "none", "", " ") else style
    return ("line", _colour(line.get_color()), style, marker)


def _series_styles(ax) -> list[tuple[str, tuple]]:
    """``(description, style)`` of every data series of the axes (error-bar caps and bands are not series)."""
    from matplotlib.collections import PathCollection
    from matplotlib.container import BarContainer, ErrorbarContainer

    caps = set()
    for container in ax.containers:
        if isinstance(container, ErrorbarContainer):
            caps.update(id(line) for line in container.lines[1])
    series = []
    for line in ax.get_lines():
        if line.get_visible() and id(line) not in caps and len(line.get_xydata()) \
                and line.get_label() != "_nolegend_":             # parts of a boxplot or a stem plot
            series.append((f"line {line.get_label()!r}", _line_style(line)))
    for coll in ax.collections:
        if coll.get_visible() and isinstance(coll, PathCollection) and len(coll.get_offsets()):
            faces = {_colour(c) for c in coll.get_facecolors()} if coll.get_array() is None else {("mapped",)}
            series.append(("scatter", ("scatter", sorted(faces)[0] if len(faces) == 1 else ("many",))))
    for container in ax.containers:
        if isinstance(container, BarContainer) and container.patches:
            faces = sorted({_colour(p.get_facecolor()) for p in container.patches})
            if len(faces) > 1:
                series += [(f"bars coloured {f}", ("patch", f)) for f in faces]
            else:
                series.append((f"bars {container.get_label()!r}", ("patch", faces[0])))
    return series


def _handle_style(handle) -> tuple | None:
    from matplotlib.collections import PathCollection
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    if isinstance(handle, Line2D):
        return _line_style(handle)
    if isinstance(handle, Patch):
        return ("patch", _colour(handle.get_facecolor()))
    if isinstance(handle, PathCollection) and len(handle.get_facecolors()):
        return ("scatter", _colour(handle.get_facecolors()[0]))
    return None


def _legend_styles(fig) -> set:
    styles = set()
    legends = list(fig.legends) + [a.get_legend() for a in fig.axes if a.get_legend() is not None]
    for legend in legends:
        handles = getattr(legend, "legend_handles", None) or getattr(legend, "legendHandles", [])
        styles.update(style for style in map(_handle_style, handles) if style is not None)
    return styles


def _legend_needed_problems(ax, fig) -> list[str]:
    """Several distinct series share the axes, and no legend (or direct label) tells them apart."""
    series = _series_styles(ax)
    distinct = {}
    for description, style in series:
        distinct.setdefault(style, description)
    if len(distinct) < 2:
        return []
    legend = ax.get_legend()
    if legend is not None and legend.get_visible():
        return []
    if set(distinct) <= _legend_styles(fig):
        return []
    worded = [t for t in ax.texts if t.get_visible() and re.search(r"[A-Za-z]{2}", t.get_text())]
    if len(worded) >= len(distinct) - 1:
        return []
    names = ", ".join(list(distinct.values())[:4]) + (", ..." if len(distinct) > 4 else "")
    return [f"{len(distinct)} distinct series share the axes ({names}) with no legend: add ax.legend() with "
            f"a label per series (or label each series with ax.text)"]


# ----------------------------------------------------------------------------- comparisons of accuracies

_ACCURACY_AXIS = re.compile(r"accura|%|准确率", re.I)
_NOT_A_METHOD = re.compile(r"^\s*(?:(?:chance|train(?:ing)?|val(?:idation)?|test)\b|随机猜测|训练|验证|测试)", re.I)


def _compared_entries(ax) -> list[str]:
    """The entries an accuracy axes compares: word tick labels of the other axis, else legend entries."""
    for value_axis, other in ((ax.yaxis, ax.xaxis), (ax.xaxis, ax.yaxis)):
        if not _ACCURACY_AXIS.search(value_axis.label.get_text()):
            continue
        words = [t.get_text() for t in _drawn_tick_labels(other) if t.get_visible() and t.get_text().strip()
                 and not _is_numeric_tick(t.get_text())]
        if len(set(words)) >= 2:
            return sorted(set(words))
        legend = ax.get_legend()
        entries = [t.get_text() for t in legend.get_texts()] if legend is not None else []
        entries = [e for e in entries if e.strip() and not _NOT_A_METHOD.match(e)]
        if len(set(entries)) >= 2:
            return sorted(set(entries))
    return []


def _comparison_caption_problems(ax, fig) -> list[str]:
    """An axes that compares the accuracies of several entries must state, somewhere in the figure's text
    (title, labels, tick labels, legend, annotations), the batch-norm mode, test protocol and training budget."""
    entries = _compared_entries(ax)
    if not entries:
        return []
    text = "\n".join(t.get_text() for t, _kind in _shown_texts(fig))
    missing = [need for need, pattern in COMPARISON_NEEDS.items() if not pattern.search(text)]
    if not missing:
        return []
    return [f"compares the accuracies of {len(entries)} entries ({', '.join(map(repr, entries[:3]))}"
            f"{', ...' if len(entries) > 3 else ''}) without stating the {', the '.join(missing)} (say it in the "
            f"title, the labels or the legend)"]


# ----------------------------------------------------------------------------- data that leaves the view

def _mark_points(ax, exclude=None):
    """Axes-coordinate points of everything that can mark a place: markers of short lines, scatter points,
    texts and annotation targets."""
    import numpy as np

    to_axes = ax.transAxes.inverted()
    points = []
    for line in ax.get_lines():
        if line is exclude or not line.get_visible():
            continue
        if _line_style(line)[3] is not None and len(line.get_xydata()) <= 5:
            points.append(to_axes.transform(line.get_transform().transform(np.asarray(line.get_xydata(), float))))
    from matplotlib.collections import PathCollection
    for coll in ax.collections:
        if coll.get_visible() and isinstance(coll, PathCollection) and len(coll.get_offsets()):
            xy = np.asarray(coll.get_offsets(), dtype=float).reshape(-1, 2)
            points.append(to_axes.transform(coll.get_offset_transform().transform(xy)))
    for text in ax.texts:
        if not text.get_visible():
            continue
        points.append(to_axes.transform(text.get_transform().transform([text.get_position()])))
        if hasattr(text, "xy") and hasattr(text, "_get_xy_transform"):
            try:
                target = text._get_xy_transform(None, text.xycoords).transform([text.xy])
                points.append(to_axes.transform(target))
            except Exception:  # noqa: BLE001 - an annotation in unusual coordinates: its text position counts
                pass
    return np.concatenate(points) if points else np.zeros((0, 2))


def _marked(at, marks) -> bool:
    import numpy as np

    if not len(marks):
        return False
    at = np.clip(np.asarray(at, dtype=float), 0.0, 1.0)
    finite = np.isfinite(marks).all(axis=1)
    return bool((np.abs(marks[finite] - at).max(axis=1) <= MARK_RADIUS).any())


def _crossing(inside, outside):
    """Where the segment from an inside point to an outside one crosses the edge of the axes (axes coordinates)."""
    import numpy as np

    step = outside - inside
    t = 1.0
    for k in range(2):
        if step[k] > 0 and outside[k] > 1:
            t = min(t, (1 - inside[k]) / step[k])
        elif step[k] < 0 and outside[k] < 0:
            t = min(t, -inside[k] / step[k])
    return np.asarray(inside + t * step)


def _exit_events(points, raw):
    """``(what, where)`` in axes coordinates for a polyline: where it leaves or re-enters the view through the
    top or bottom edge (a curve that runs past the left or right edge only shows a narrower x range), where
    it runs along the top or bottom edge, and where it stops because the rest of its values are not finite."""
    import numpy as np

    events = []
    finite = np.isfinite(raw).all(axis=1) & np.isfinite(points).all(axis=1)
    inside = finite & ((points >= -_EDGE) & (points <= 1 + _EDGE)).all(axis=1)
    outside = finite & ~inside
    if outside.any() and inside.any():
        for i in np.flatnonzero(outside & ((points[:, 1] < -_EDGE) | (points[:, 1] > 1 + _EDGE))):
            neighbours = [j for j in (i - 1, i + 1) if 0 <= j < len(points) and inside[j]]
            for j in neighbours:
                events.append(("leaves the view limits", _crossing(points[j], points[i])))

    for edge, name in ((1.0, "top"), (0.0, "bottom")):
        on_edge = finite & (np.abs(points[:, 1] - edge) <= _EDGE)
        runs = np.flatnonzero(on_edge[:-1] & on_edge[1:]) if len(points) > 1 else []
        if len(runs) and not (on_edge[finite].all()):
            events.append((f"runs along the {name} edge (clipped to the limit?)", points[runs[0]]))
    if finite.any() and not finite.all():
        last = np.flatnonzero(finite)[-1]
        if last < len(points) - 1 and not np.isfinite(raw[last + 1:, 1]).any():
            events.append(("stops: its remaining values are nan or inf (diverged?)", points[last]))
    return events


def _silent_exit_problems(ax) -> list[str]:
    """Lines and scatters that leave the view, hug the top or bottom edge, or stop on nan/inf, unmarked."""
    import numpy as np
    from matplotlib.collections import PathCollection

    to_axes = ax.transAxes.inverted()
    problems = []
    candidates = []
    for line in ax.get_lines():
        if line.get_visible() and len(line.get_xydata()):
            raw = np.asarray(line.get_xydata(), dtype=float).reshape(-1, 2)
            with np.errstate(invalid="ignore"):
                points = to_axes.transform(line.get_transform().transform(raw))
            candidates.append((line, f"line {line.get_label()!r}", points, raw))
    for coll in ax.collections:
        if coll.get_visible() and isinstance(coll, PathCollection) and len(coll.get_offsets()):
            raw = np.asarray(coll.get_offsets(), dtype=float).reshape(-1, 2)
            candidates.append((coll, "scatter", to_axes.transform(coll.get_offset_transform().transform(raw)), raw))
    for artist, name, points, raw in candidates:
        label = str(artist.get_label()).lower()
        if any(word in label for word in _MARK_WORDS) and not label.startswith("_"):
            continue
        events = _exit_events(points, raw) if name != "scatter" else [
            ("has points outside the view limits", p) for p in points[np.isfinite(points).all(axis=1)
                                                                        & ((points < -_EDGE) | (points > 1 + _EDGE)).any(axis=1)][:1]]
        marks = _mark_points(ax, artist)
        unmarked = [(what, at) for what, at in events if not _marked(at, marks)]
        seen = set()
        for what, at in unmarked:
            if what in seen:
                continue
            seen.add(what)
            problems.append(f"{name} {what} near axes position ({at[0]:.2f}, {at[1]:.2f}) with no marker: mark it "
                            f"(a marker or an annotation there, e.g. 'diverged'), or widen the limits")
    return problems


def _arrow_problems(ax, renderer) -> list[str]:
    """Arrows (``ax.arrow``, ``FancyArrowPatch``) that run past the axes, and annotations whose arrow points at
    data outside the view (matplotlib then does not draw the annotation at all)."""
    from matplotlib.patches import FancyArrow, FancyArrowPatch

    box = ax.get_window_extent(renderer)
    problems = []
    outside = 0
    for patch in ax.patches:
        if patch.get_visible() and isinstance(patch, (FancyArrow, FancyArrowPatch)):
            extent = patch.get_window_extent(renderer)
            if extent.x0 < box.x0 - 1 or extent.x1 > box.x1 + 1 or extent.y0 < box.y0 - 1 or extent.y1 > box.y1 + 1:
                outside += 1
    if outside:
        problems.append(f"{outside} arrow(s) run past the edge of the axes and are cut off: widen the limits or "
                        f"shorten the arrows (and say in the text that they are scaled)")
    (x0, x1), (y0, y1) = sorted(ax.get_xlim()), sorted(ax.get_ylim())
    for text in ax.texts:
        if getattr(text, "arrow_patch", None) is None or getattr(text, "xycoords", None) != "data":
            continue
        x, y = text.xy
        if not (x0 <= x <= x1 and y0 <= y <= y1):
            problems.append(f"the annotation {text.get_text()!r} points at ({x:.3g}, {y:.3g}), outside the view "
                            f"limits (matplotlib does not draw it, or draws its arrow past the axes)")
    return problems


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
    for attr, what in (("_suptitle", "suptitle"), ("_supxlabel", "supxlabel"), ("_supylabel", "supylabel")):
        text = getattr(fig, attr, None)
        if text is not None and text.get_visible() and text.get_text():
            boxes.append((what, text.get_window_extent(renderer)))
    for k, legend in enumerate(fig.legends, 1):   # fig.legend(...): it can land on a sup label or title
        if legend.get_visible():
            boxes.append((f"figure legend {k}", legend.get_window_extent(renderer)))
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
