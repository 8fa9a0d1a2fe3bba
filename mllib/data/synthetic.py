"""A small synthetic Omniglot in the upstream layout, so tests run the real loader without the data.

``write_synthetic_omniglot(root)`` writes ``root/images_background.zip`` and
``root/images_evaluation.zip`` (or the extracted folders with ``layout="folder"``) holding
``images_<set>/<alphabet>/<characterNN>/<id>_<drawer>.png``: 105x105 1-bit PNGs, black strokes
on white, exactly like the real files.

The characters reuse *real* names: the first ``per_part`` names of every part of every split
manifest (about 8 x ``per_part`` characters), each in its real Lake set. So the split machinery
works unchanged on the synthetic data: ``split_characters(split, part, data.characters)`` finds
the names that are present, and every part has at least ``per_part`` characters.

Each character is a few random thick polylines (its "prototype"); each drawer shifts the whole
character and jitters its points a little, so that the classes are learnable but not identical.
"""
from __future__ import annotations

import io
import os
import random
import zipfile
from pathlib import Path

from mllib.arguments import check_choice, check_int

from .locate import SETS
from .splits import SPLITS, split_names

SIZE = 105


def synthetic_characters(per_part: int = 30) -> dict:
    """``{name: set_name}`` of the real names the synthetic data uses (the first ``per_part`` of each part)."""
    if per_part < 1:
        raise ValueError(f"per_part must be >= 1, got {per_part}")
    background = set(split_names("lake", "train"))
    chosen = {}
    for split, parts in SPLITS.items():
        for part in parts:
            for name in split_names(split, part)[:per_part]:
                chosen[name] = "background" if name in background else "evaluation"
    return dict(sorted(chosen.items()))


def _draw(prototype, rng: random.Random) -> bytes:
    from PIL import Image, ImageDraw

    img = Image.new("1", (SIZE, SIZE), 1)
    draw = ImageDraw.Draw(img)
    dx, dy = rng.randint(-5, 5), rng.randint(-5, 5)
    for line in prototype:
        points = [(x + dx + rng.randint(-3, 3), y + dy + rng.randint(-3, 3)) for x, y in line]
        draw.line(points, fill=0, width=6)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def write_synthetic_omniglot(
    root: str | os.PathLike,
    per_part: int = 30,
    drawers: int = 20,
    layout: str = "zip",
    seed: int = 0,
    shuffle_members: bool = False,
) -> Path:
    """Write a synthetic Omniglot into ``root`` (created if needed) and return ``root``.

    ``layout``: ``"zip"`` (the upstream zips) or ``"folder"`` (extracted folders).
    ``shuffle_members``: store the zip members in a shuffled order (to test order independence).
    """
    check_choice("layout", layout, ("zip", "folder"))
    check_int("drawers", drawers, 2)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    files = {s: [] for s in SETS}  # set -> [(member, png bytes)]
    for index, (name, set_name) in enumerate(synthetic_characters(per_part).items()):
        rng = random.Random(f"{seed}:{name}")
        prototype = [
            [(rng.randint(20, 85), rng.randint(20, 85)) for _ in range(rng.randint(2, 4))]
            for _ in range(rng.randint(2, 3))
        ]
        for drawer in range(1, drawers + 1):
            member = f"images_{set_name}/{name}/{1000 + index:04d}_{drawer:02d}.png"
            files[set_name].append((member, _draw(prototype, rng)))
    for set_name, members in files.items():
        if shuffle_members:
            random.Random(seed).shuffle(members)
        if layout == "zip":
            path = root / f"images_{set_name}.zip"
            tmp = path.with_suffix(".zip.tmp")
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
                for member, data in members:
                    zf.writestr(member, data)
            os.replace(tmp, path)
        else:
            for member, data in members:
                target = root / member
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
    return root
