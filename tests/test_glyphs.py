"""mllib.data.glyphs: the printed-glyph character set of notebook 09, section 4 (no download)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mllib.data import glyphs as G
from mllib.evaluate import EvalProtocol, test_tasks
from mllib.algorithms import MetaConfig


def test_rendering_is_omniglots_format_bright_strokes_on_a_dark_background():
    img = G.render_glyph("Ж")
    assert img.shape == (28, 28) and img.dtype == np.uint8
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
    assert border.max() < 30                 # background 0 at the edges
    assert img.max() > 200                   # strokes near 255
    assert 0.03 < (img > 128).mean() < 0.4   # a character, not a blank or a filled square


def test_rendering_follows_its_arguments():
    plain = G.render_glyph("Γ").astype(float)
    assert not np.array_equal(G.render_glyph("Γ", rotation=90).astype(float), plain)
    thick = G.render_glyph("Γ", stroke=3).astype(float)
    assert thick.sum() > 1.2 * plain.sum()             # a thicker stroke has more ink
    small = G.render_glyph("Γ", height=0.3).astype(float)
    assert small.sum() < 0.6 * plain.sum()
    moved = G.render_glyph("Γ", shift=(0.2, 0.0)).astype(float)
    cols = np.arange(28)
    assert (moved.sum(0) @ cols) / moved.sum() > (plain.sum(0) @ cols) / plain.sum() + 3   # moved right
    # rotating by 90 degrees turns the image (up to resampling): compare with numpy's rotation
    turned = G.render_glyph("Γ", rotation=90).astype(float)
    best = max(np.corrcoef(turned.ravel(), np.rot90(plain, k).ravel())[0, 1] for k in (1, 3))
    assert best > 0.8


def test_code_points_are_distinct_drawable_and_lookalikes_dropped():
    cps = G.glyph_code_points()
    assert len(cps) >= 300 and len(set(cps)) == len(cps) and list(cps) == sorted(cps)
    assert 0x0391 in cps and 0x0410 not in cps   # Greek capital alpha kept, Cyrillic A (its look-alike) dropped
    blocks = {G._block(cp) for cp in cps}
    assert {"greek", "cyrillic", "armenian", "georgian", "arrows", "math"} <= blocks


def test_glyph_data_is_deterministic_and_each_class_is_one_glyph():
    a = G.glyph_data(classes=5, drawers=8, seed=3)
    b = G.glyph_data(classes=5, drawers=8, seed=3)
    c = G.glyph_data(classes=5, drawers=4, seed=4)
    assert a.images.shape == (5, 8, 28, 28) and a.images.dtype == torch.uint8
    assert torch.equal(a.images, b.images) and a.characters == b.characters
    assert not torch.equal(a.images, c.images)
    assert len(set(a.characters)) == 5 and all(n.startswith("glyphs-") for n in a.characters)
    # renderings of one glyph correlate more with each other than with other glyphs' renderings
    x = a.images.float().flatten(2)
    x = (x - x.mean(-1, keepdim=True)) / x.std(-1, keepdim=True)
    corr = torch.einsum("cdp,eqp->cdeq", x, x) / x.shape[-1]
    same = torch.stack([corr[i, :, i][~torch.eye(8, dtype=bool)].mean() for i in range(5)]).mean()
    other = torch.stack([corr[i, :, j].mean() for i in range(5) for j in range(5) if i != j]).mean()
    assert same > other + 0.05


def test_glyph_tasks_come_out_of_the_course_sampler():
    data = G.glyph_data(classes=8, drawers=6, seed=0)
    protocol = EvalProtocol(MetaConfig(form="loop"), ways=5, shots=1, query=5, inner_steps=1, split=None)
    batch = test_tasks(data, protocol, count=3)
    assert tuple(batch.support_x.shape) == (3, 5, 1, 28, 28) and tuple(batch.query_x.shape) == (3, 25, 1, 28, 28)
    assert 0.0 <= float(batch.support_x.min()) and float(batch.support_x.max()) <= 1.0


@pytest.mark.parametrize("call,message", [
    (lambda: G.glyph_data(classes=10_000), "at most"),
    (lambda: G.glyph_data(classes=1), "classes"),
    (lambda: G.render_glyph("ab"), "single character"),
    (lambda: G.render_glyph("a", height=2.0), "height"),
    (lambda: G.render_glyph(" "), "renders as nothing"),
])
def test_bad_input_says_what_is_wrong(call, message):
    with pytest.raises(ValueError, match=message):
        call()
