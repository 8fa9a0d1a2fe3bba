"""A second character set with nothing to download: glyphs of the fonts that ship with matplotlib.

Notebook 09, section 4 tests the same few-shot learners under a **domain shift**: on characters
they never saw and that come from another distribution (printed glyphs, not handwriting). Each
class is one glyph (a Greek, Cyrillic, Armenian or Georgian letter, an arrow or a mathematical
symbol, taken from the DejaVu fonts in ``matplotlib``'s data folder); each example is one rendering
of it with a random font (DejaVu Sans, Serif, Mono and their slanted faces), size, rotation, shear,
shift and stroke width. The images go through Omniglot's own preprocessing
(:mod:`mllib.data.build`): black on a white 105x105 canvas, grey, resized to 28x28 with LANCZOS,
inverted, so ``uint8`` with 0 = background and 255 = stroke, exactly what the course's models read.

* :func:`glyph_code_points`: the candidate characters (every DejaVu face has them; look-alikes
  such as Greek capital alpha and Cyrillic A, whose renderings are nearly the same, are kept once).
* :func:`render_glyph`: one rendering, ``uint8 [28, 28]``.
* :func:`glyph_data`: ``classes`` glyphs x ``drawers`` renderings as an
  :class:`~mllib.data.OmniglotData` (``split=None`` in :class:`~mllib.tasks.OmniglotTasks` and
  :func:`mllib.evaluate.test_tasks` then uses every class). Deterministic: the same ``seed`` gives
  the same images.
"""
from __future__ import annotations

import math
import random
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from mllib.arguments import check_int
from mllib.data.load import OmniglotData

CANVAS = 105       # Omniglot's original image side, before the 28x28 resize
IMAGE_SIZE = 28
FACES = ("DejaVuSans.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Italic.ttf",
         "DejaVuSansMono.ttf", "DejaVuSansMono-Oblique.ttf")
#: Unicode ranges the classes come from: (name, first, last), inclusive.
BLOCKS = (("greek", 0x0391, 0x03C9), ("cyrillic", 0x0410, 0x044F), ("armenian", 0x0531, 0x0556),
          ("georgian", 0x10D0, 0x10F0), ("arrows", 0x2190, 0x21FF), ("math", 0x2200, 0x22FF))
LOOKALIKE = 0.97   # two code points whose plain renderings correlate above this are one class


def font_folder() -> Path:
    """The folder of the TrueType fonts that ship with matplotlib."""
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


@lru_cache(maxsize=None)
def _font_path(face: str) -> str:
    path = font_folder() / face
    if not path.is_file():
        raise FileNotFoundError(f"font {face} not found in {font_folder()}; the glyph data needs matplotlib's "
                                "DejaVu fonts (pip install matplotlib)")
    return str(path)


@lru_cache(maxsize=None)
def _charmap(face: str) -> frozenset:
    from matplotlib.ft2font import FT2Font

    return frozenset(FT2Font(_font_path(face)).get_charmap())


@lru_cache(maxsize=None)
def _font(face: str, size: int):
    from PIL import ImageFont

    return ImageFont.truetype(_font_path(face), size)


def render_glyph(char: str, face: str = "DejaVuSans.ttf", height: float = 0.6, rotation: float = 0.0,
                 shear: float = 0.0, shift: tuple[float, float] = (0.0, 0.0), stroke: int = 0) -> np.ndarray:
    """One rendering of ``char``: ``uint8 [28, 28]``, 0 = background, 255 = stroke.

    Drawn black on a white ``105x105`` canvas with font ``face`` (a file of :func:`font_folder`),
    scaled so that the glyph's larger side is ``height`` of the canvas, centred, moved by ``shift``
    (fractions of the canvas), rotated by ``rotation`` degrees and sheared by ``shear`` (x += shear * y)
    about the centre, strokes thickened by ``stroke`` pixels; then Omniglot's preprocessing:
    LANCZOS to 28x28 and inverted.

        >>> img = render_glyph("Ж")
        >>> img.shape, img.dtype, int(img[0, 0]), int(img.max()) > 200    # dark corner, bright strokes
        ((28, 28), dtype('uint8'), 0, True)
    """
    from PIL import Image, ImageDraw

    if not (isinstance(char, str) and len(char) == 1):
        raise ValueError(f"char must be a single character, got {char!r}")
    if not 0.1 <= height <= 1.0:
        raise ValueError(f"height must be a fraction of the canvas in [0.1, 1], got {height!r}")
    big = 2 * CANVAS
    probe = _font(face, 100)
    x0, y0, x1, y1 = ImageDraw.Draw(Image.new("L", (big, big))).textbbox((0, 0), char, font=probe)
    side = max(x1 - x0, y1 - y0)
    if side <= 0:
        raise ValueError(f"{char!r} (U+{ord(char):04X}) renders as nothing in {face}")
    size = max(4, int(round(100 * height * CANVAS / side)))
    font = _font(face, size)
    canvas = Image.new("L", (big, big), 255)
    draw = ImageDraw.Draw(canvas)
    x0, y0, x1, y1 = draw.textbbox((0, 0), char, font=font, stroke_width=stroke)
    draw.text((big / 2 - (x0 + x1) / 2, big / 2 - (y0 + y1) / 2), char, font=font, fill=0,
              stroke_width=stroke, stroke_fill=0)
    if canvas.getextrema()[0] == 255:
        raise ValueError(f"{char!r} (U+{ord(char):04X}) renders as nothing in {face}")
    # inverse affine map (output -> input pixel) about the centre: rotation, shear, shift
    a = math.radians(rotation)
    cos, sin = math.cos(a), math.sin(a)
    m = np.array([[cos, -sin], [sin, cos]]) @ np.array([[1.0, shear], [0.0, 1.0]])
    inv = np.linalg.inv(m)
    cx = cy = big / 2
    tx, ty = shift[0] * CANVAS, shift[1] * CANVAS
    coeffs = (inv[0, 0], inv[0, 1], cx - inv[0, 0] * (cx + tx) - inv[0, 1] * (cy + ty),
              inv[1, 0], inv[1, 1], cy - inv[1, 0] * (cx + tx) - inv[1, 1] * (cy + ty))
    canvas = canvas.transform((big, big), Image.AFFINE, coeffs, resample=Image.BILINEAR, fillcolor=255)
    margin = (big - CANVAS) // 2
    canvas = canvas.crop((margin, margin, margin + CANVAS, margin + CANVAS))
    small = canvas.resize((IMAGE_SIZE, IMAGE_SIZE), Image.LANCZOS)
    return 255 - np.asarray(small, dtype=np.uint8)


@lru_cache(maxsize=None)
def glyph_code_points() -> tuple[int, ...]:
    """The candidate classes: code points of :data:`BLOCKS` that every face of :data:`FACES` draws,
    look-alikes removed (a later code point whose plain rendering in DejaVu Sans correlates above
    :data:`LOOKALIKE` with a kept one is dropped), in ascending order."""
    common = frozenset.intersection(*(_charmap(face) for face in FACES))
    kept, renders = [], []
    for _, first, last in BLOCKS:
        for cp in range(first, last + 1):
            if cp not in common:
                continue
            try:
                img = render_glyph(chr(cp)).astype(np.float64).ravel()
            except ValueError:
                continue
            img = img - img.mean()
            norm = np.linalg.norm(img)
            if norm == 0:
                continue
            img /= norm
            if renders and float(np.max(np.stack(renders) @ img)) > LOOKALIKE:
                continue
            kept.append(cp)
            renders.append(img)
    return tuple(kept)


def glyph_data(classes: int = 300, drawers: int = 20, seed: int = 0) -> OmniglotData:
    """``classes`` glyphs x ``drawers`` random renderings as ``OmniglotData`` (``uint8 [classes, drawers, 28, 28]``).

    The classes are ``classes`` code points of :func:`glyph_code_points` chosen with ``seed``; every
    rendering draws a face of :data:`FACES`, a height in [0.45, 0.8] of the canvas, a rotation in
    [-15, 15] degrees, a shear in [-0.25, 0.25], a shift of up to 0.08 of the canvas each way and a
    stroke of 0-2 pixels (at 105x105), from ``random.Random(seed)``. Character names are
    ``"glyphs-<block>/U+XXXX"``; every class is in the ``"evaluation"`` set.

        >>> data = glyph_data(classes=6, drawers=2, seed=0)
        >>> tuple(data.images.shape), data.characters[0].startswith("glyphs-")
        ((6, 2, 28, 28), True)
    """
    check_int("drawers", drawers, 1)
    check_int("seed", seed, 0)
    pool = glyph_code_points()
    check_int("classes", classes, 2)
    if classes > len(pool):
        raise ValueError(f"classes must be at most {len(pool)} (the distinct glyphs available), got {classes}")
    rng = random.Random(seed)
    chosen = sorted(rng.sample(pool, classes))
    images = np.empty((classes, drawers, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    for i, cp in enumerate(chosen):
        for d in range(drawers):
            images[i, d] = render_glyph(
                chr(cp), face=rng.choice(FACES), height=rng.uniform(0.45, 0.8), rotation=rng.uniform(-15, 15),
                shear=rng.uniform(-0.25, 0.25), shift=(rng.uniform(-0.08, 0.08), rng.uniform(-0.08, 0.08)),
                stroke=rng.randint(0, 2))
    names = [f"glyphs-{_block(cp)}/U+{cp:04X}" for cp in chosen]
    return OmniglotData(torch.from_numpy(images), names, ["evaluation"] * classes, source="matplotlib DejaVu fonts")


def _block(cp: int) -> str:
    return next(name for name, first, last in BLOCKS if first <= cp <= last)


__all__ = ["CANVAS", "FACES", "BLOCKS", "LOOKALIKE", "font_folder", "render_glyph", "glyph_code_points",
           "glyph_data"]
