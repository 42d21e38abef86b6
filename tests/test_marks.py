"""The issue-21 mark cues: a glyph at a random background position, a strip along the top edge, a glyph
beside the object. Where each is drawn, that it never covers the object, and that it follows cue_strength."""

from __future__ import annotations

import numpy as np
import pytest

from validator.datasets.synthetic import (
    MARK_CUES,
    edge_strip_rows,
    make_arrays,
    mark_side,
    shuffled_cue_strength,
)

FOUR = ("disc", "square", "triangle", "cross")


def _mark_pixels(cue, n=80, seed=11, **kwargs):
    """The cue's pixels: where the image differs from the same draw without a cue (same objects)."""
    base = make_arrays(n, seed=seed, classes=FOUR, **kwargs)
    marked = make_arrays(n, seed=seed, classes=FOUR, cue=cue, **kwargs)
    np.testing.assert_array_equal(marked.masks, base.masks)  # counterfactual pairs: only the cue differs
    np.testing.assert_array_equal(marked.labels, base.labels)
    changed = np.any(marked.images != base.images, axis=-1)
    return marked, changed


def _bbox(pixels):
    ys, xs = np.nonzero(pixels)
    return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1


def _box_mask(box, size):
    x0, y0, x1, y1 = (int(v) for v in box)
    inside = np.zeros((size, size), bool)
    inside[y0:y1, x0:x1] = True
    return inside


@pytest.mark.parametrize("cue", MARK_CUES)
def test_a_mark_never_touches_the_object_pixels_or_its_box(cue):
    data, changed = _mark_pixels(cue, area_range=(0.05, 0.5))
    for mark, box, mask in zip(changed, data.boxes, data.masks, strict=True):
        assert mark.any()
        assert not (mark & mask).any()
        if cue != "edge_strip":  # the strip runs under the object, so it may share the box, never the object
            assert not (mark & _box_mask(box, data.image_size)).any()


def test_random_mark_is_a_glyph_clear_of_the_box_anywhere_in_the_frame():
    data, changed = _mark_pixels("random_mark", n=200)
    side = mark_side(data.image_size)
    centres = []
    for mark, box in zip(changed, data.boxes, strict=True):
        mx0, my0, mx1, my1 = _bbox(mark)
        assert mx1 - mx0 <= side and my1 - my0 <= side
        x0, y0, x1, y1 = box
        # at least one pixel of background between the glyph and the box (touching is beside_mark)
        assert mx1 < x0 or mx0 > x1 or my1 < y0 or my0 > y1
        centres.append(((mx0 + mx1) / 2, (my0 + my1) / 2))
    centres = np.array(centres)
    # spread over the frame: every quadrant holds marks
    quadrant = (centres[:, 0] > 32).astype(int) * 2 + (centres[:, 1] > 32)
    assert np.bincount(quadrant, minlength=4).min() >= 20


def test_edge_strip_covers_the_top_rows_only_and_is_class_coloured():
    data, changed = _mark_pixels("edge_strip")
    rows = edge_strip_rows(data.image_size)
    assert rows <= 0.1 * data.image_size  # inside the 10% edge band the edge lift reads
    for mark, mask in zip(changed, data.masks, strict=True):
        assert not mark[rows:].any()
        np.testing.assert_array_equal(mark[:rows], ~mask[:rows])  # every free pixel of the strip
    # the strip's mean colour names the class: nearest class colour is the cue id
    strip = data.images[:, :rows].reshape(len(data), -1, 3).mean(axis=1)
    by_cue = [strip[data.cue_ids == k].mean(axis=0) for k in range(4)]
    assert min(np.linalg.norm(a - b) for i, a in enumerate(by_cue) for b in by_cue[i + 1:]) > 80


def test_beside_mark_touches_the_box_from_outside_on_every_side():
    data, changed = _mark_pixels("beside_mark", n=200)
    side = mark_side(data.image_size)
    sides = []
    for mark, box in zip(changed, data.boxes, strict=True):
        mx0, my0, mx1, my1 = _bbox(mark)
        x0, y0, x1, y1 = box
        # The glyph's pixels lie in a side x side cell sharing an edge with the box and overlapping its extent.
        near = [("left", x0 - side <= mx0 and mx1 <= x0 and my1 > y0 and my0 < y1),
                ("right", x1 <= mx0 and mx1 <= x1 + side and my1 > y0 and my0 < y1),
                ("top", y0 - side <= my0 and my1 <= y0 and mx1 > x0 and mx0 < x1),
                ("bottom", y1 <= my0 and my1 <= y1 + side and mx1 > x0 and mx0 < x1)]
        hits = [name for name, ok in near if ok]
        assert hits, (box, (mx0, my0, mx1, my1))
        sides.append(hits[0])
        # glyphs fill their cell's border rows or columns: the cell touches the box (gap 0)
        gap = min(abs(mx1 - x0), abs(mx0 - x1), abs(my1 - y0), abs(my0 - y1))
        assert gap <= 1
    assert set(sides) == {"left", "right", "top", "bottom"}


@pytest.mark.parametrize("cue", MARK_CUES)
@pytest.mark.parametrize("strength", [1.0, 0.7, shuffled_cue_strength(4)])
def test_mark_cue_agrees_with_the_label_at_the_cue_strength(cue, strength):
    data = make_arrays(1200, seed=3, classes=FOUR, cue=cue, cue_strength=strength)
    agree = np.mean(data.cue_ids == data.labels)
    assert abs(agree - strength) < 0.04
    if strength == shuffled_cue_strength(4):
        table = np.zeros((4, 4))
        np.add.at(table, (data.labels, data.cue_ids), 1)
        np.testing.assert_allclose(table / table.sum(), 1 / 16, atol=0.02)


@pytest.mark.parametrize("cue", MARK_CUES)
def test_mark_draws_are_deterministic(cue):
    first, second = make_arrays(12, seed=4, cue=cue), make_arrays(12, seed=4, cue=cue)
    np.testing.assert_array_equal(first.images, second.images)
