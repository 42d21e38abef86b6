"""ring_side_lift / ring_one_sided: which side of the object the ring heat sits on (a mark beside the object
puts it on one side; a clean model's boundary heat spreads around). Known answers, NaN cases, masks, a slow
independent oracle, and the device dilation's border rule against cv2."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from scipy.ndimage import distance_transform_cdt

from validator.metrics import score_maps
from validator.metrics.localisation import RING_ONE_SIDED, RING_SIDE_MIN_PX, ring_side_radius

# 40 x 40, r = round(0.1 * 40) = 4; box rows/cols 15..24 (10 x 10), centre (19.5, 19.5); the dilated square
# is rows/cols 11..28 (18 x 18 = 324 px), the ring 324 - 100 = 224 px.
SIZE = 40
BOX = [[15, 15, 25, 25]]


def one(heat, boxes, masks=None):
    heat = np.asarray(heat, dtype=np.float64)[None]
    out = score_maps(heat, [np.asarray(boxes, dtype=np.float64).reshape(-1, 4)],
                     masks=None if masks is None else [masks])
    return out["ring_side_lift"][0], out["ring_one_sided"][0]


def box_ring():
    """The ring of BOX by hand: rows/cols 11..28, minus rows/cols 15..24."""
    rows, cols = np.indices((SIZE, SIZE))
    near = (rows >= 11) & (rows <= 28) & (cols >= 11) & (cols <= 28)
    inside = (rows >= 15) & (rows <= 24) & (cols >= 15) & (cols <= 24)
    return rows, cols, near & ~inside


# ---------------------------------------------------------------- known answers


def test_radius():
    assert ring_side_radius(40, 40) == 4 and ring_side_radius(224, 224) == 22 and ring_side_radius(57, 64) == 6
    assert ring_side_radius(5, 5) == 1 and ring_side_radius(1, 3) == 1  # at least 1 pixel


def test_uniform_heat_is_exactly_even():
    lift, one_sided = one(np.ones((SIZE, SIZE)), BOX)
    assert lift == 1.0 and one_sided == 0.0


def test_all_ring_heat_in_one_octant_is_eight():
    rows, cols, ring = box_ring()
    # octant 0: dy >= 0, dx >= 0, |dy| <= |dx| -> rows >= 20, cols >= 20, row <= col: 45 - 15 = 30 ring px
    octant0 = ring & (rows >= 20) & (cols >= 20) & (rows <= cols)
    assert octant0.sum() == 30
    heat = np.where(octant0, 1.0, 0.0)
    heat[15:25, 15:25] = 3.0  # heat on the object does not enter the ring
    lift, one_sided = one(heat, BOX)
    assert lift == 8.0 and one_sided == 1.0


def test_two_octants_are_four_and_not_one_sided():
    rows, cols, ring = box_ring()
    quadrant = ring & (rows >= 20) & (cols >= 20)  # octants 0 and 1: the threshold is strict (> 4)
    lift, one_sided = one(np.where(quadrant, 2.0, 0.0), BOX)
    assert lift == 4.0 and one_sided == 0.0
    assert RING_ONE_SIDED == 4.0


def _chebyshev_to_box(rows, cols):
    dy = np.maximum(np.maximum(15 - rows, rows - 24), 0)
    dx = np.maximum(np.maximum(15 - cols, cols - 24), 0)
    return np.maximum(dy, dx)


def test_mark_beside_the_box_is_one_sided_and_a_halo_is_not():
    rows, cols = np.indices((SIZE, SIZE)).astype(np.float64)
    obj = np.zeros((SIZE, SIZE))
    obj[15:25, 15:25] = 1.0  # the object's own heat, the same in both maps
    mark = np.exp(-((rows - 23) ** 2 + (cols - 27) ** 2) / (2 * 1.5**2))  # a blob touching the right edge
    halo = np.exp(-_chebyshev_to_box(rows, cols) ** 2 / (2 * 2.0**2)) * (1 - obj)
    halo *= mark.sum() / halo.sum()  # the same total heat, spread around the box
    lift, one_sided = one(obj + mark, BOX)
    assert lift > 4 and one_sided == 1.0
    lift, one_sided = one(obj + halo, BOX)
    assert lift < 2 and one_sided == 0.0


# ---------------------------------------------------------------- undefined


def test_nan_where_not_scored_or_no_ring_heat():
    def undefined(heat, boxes):
        lift, one_sided = one(heat, boxes)
        return math.isnan(lift) and math.isnan(one_sided)

    assert undefined(np.zeros((SIZE, SIZE)), BOX)  # dead map
    assert undefined(np.ones((SIZE, SIZE)), np.zeros((0, 4)))  # no box
    inside = np.zeros((SIZE, SIZE))
    inside[15:25, 15:25] = 1.0
    assert undefined(inside, BOX)  # all heat on the object: the ring holds none
    far = np.zeros((SIZE, SIZE))
    far[0:3, 0:3] = 1.0  # heat beyond the ring only
    assert undefined(far, BOX)
    assert undefined(np.ones((SIZE, SIZE)), [[0, 0, SIZE, SIZE]])  # the object fills the frame: no ring
    # 6 x 6, r = 1, a one-pixel object: 8 ring pixels, at most 2 per octant, so none counts
    assert undefined(np.ones((6, 6)), [[2, 2, 3, 3]])
    assert RING_SIDE_MIN_PX == 4


# ---------------------------------------------------------------- masks


def test_the_ring_follows_the_mask_not_the_box():
    # a thin diagonal object: its box (rows/cols 5..34) is mostly background
    rows, cols = np.indices((SIZE, SIZE))
    box = [[5, 5, 35, 35]]
    mask = (np.abs(rows - cols) <= 1) & (rows >= 5) & (rows <= 34) & (cols >= 5) & (cols <= 34)
    heat = np.zeros((SIZE, SIZE))
    heat[8:11, 13:16] = 1.0  # in the box's empty upper-right part, 2..7 px off the diagonal
    assert not (heat > 0)[mask].any()
    # with the mask, that heat lies in the mask's ring, all of it in one octant (dy < 0, dx < 0, steep)
    lift, one_sided = one(heat, box, masks=mask)
    assert lift == pytest.approx(oracle(heat, mask), rel=1e-12)
    assert lift > RING_ONE_SIDED and one_sided == 1.0
    # with the box only, it is inside the object: the box's ring holds no heat
    lift, one_sided = one(heat, box)
    assert math.isnan(lift) and math.isnan(one_sided)


# ---------------------------------------------------------------- an independent oracle


def oracle(heat: np.ndarray, obj: np.ndarray) -> float:
    """ring_side_lift of one map, slowly: chessboard distances by scipy, octants pixel by pixel."""
    height, width = obj.shape
    if not obj.any() or not heat.sum() > 0:
        return math.nan
    r = max(1, round(0.1 * min(height, width)))
    dist = distance_transform_cdt(~obj, metric="chessboard")  # to the nearest object pixel, inside the frame
    ys, xs = np.nonzero(obj)
    cy, cx = ys.sum() / len(ys), xs.sum() / len(xs)
    sums, counts = [0.0] * 8, [0] * 8
    for y in range(height):
        for x in range(width):
            if obj[y, x] or dist[y, x] > r:
                continue
            dy, dx = y - cy, x - cx
            if dy >= 0 and dx >= 0:
                octant = 1 if dy > dx else 0
            elif dy >= 0:
                octant = 3 if dy > -dx else 2
            elif dx >= 0:
                octant = 5 if -dy > dx else 4
            else:
                octant = 7 if -dy > -dx else 6
            sums[octant] += heat[y, x]
            counts[octant] += 1
    density = [s / c for s, c in zip(sums, counts, strict=True) if c >= 4]
    if not density or np.mean(density) == 0:
        return math.nan
    return max(density) / float(np.mean(density))


def random_case(rng, height, width):
    rows, cols = np.indices((height, width))
    heat = rng.random((height, width)) ** 3 * rng.uniform(0, 0.3)
    for _ in range(rng.integers(1, 4)):
        cy, cx = rng.uniform(-2, [height + 2, width + 2])
        s = rng.uniform(1, max(height, width) / 5)
        heat += rng.uniform(0.2, 1) * np.exp(-((rows - cy) ** 2 + (cols - cx) ** 2) / (2 * s * s))
    k = rng.integers(1, 3)
    xy0 = rng.uniform(-2, [width - 2, height - 2], size=(k, 2))
    boxes = np.round(np.concatenate([xy0, xy0 + rng.uniform(1, [width / 2, height / 2], size=(k, 2))], axis=1))
    mask = None
    if rng.random() < 0.3:  # an irregular mask: a disc
        cy, cx, rad = rng.uniform(2, height - 2), rng.uniform(2, width - 2), rng.uniform(1.5, min(height, width) / 4)
        mask = (rows - cy) ** 2 + (cols - cx) ** 2 <= rad * rad
    return heat, boxes, mask


@pytest.mark.parametrize("height,width", [(24, 30), (17, 23), (40, 33)])
def test_matches_an_independent_oracle(height, width):
    rng = np.random.default_rng(height * 100 + width)
    lifts = []
    for _ in range(12):
        heat, boxes, mask = random_case(rng, height, width)
        out = score_maps(heat[None], [boxes], masks=[mask])
        obj = mask if mask is not None else np.zeros((height, width), bool)
        if mask is None:
            rows, cols = np.indices((height, width))
            for x0, y0, x1, y1 in boxes:  # pixel-centre rule
                obj |= (cols + 0.5 >= x0) & (cols + 0.5 < x1) & (rows + 0.5 >= y0) & (rows + 0.5 < y1)
        expected = oracle(heat, obj)
        got = out["ring_side_lift"][0]
        if math.isnan(expected):
            assert math.isnan(got) and math.isnan(out["ring_one_sided"][0])
        else:
            assert got == pytest.approx(expected, rel=1e-12, abs=0)
            assert out["ring_one_sided"][0] == float(expected > 4)
            lifts.append(got)
    assert len(lifts) >= 8 and max(lifts) > 1.5  # the cases exercise uneven rings


# ---------------------------------------------------------------- the device's dilation


@pytest.mark.parametrize("height,width", [(1, 1), (2, 3), (3, 4), (7, 5), (17, 23), (40, 48)])
def test_device_dilation_matches_cv2_at_the_frame_border(height, width):
    from validator.metrics.device import dilate_square

    rng = np.random.default_rng(height * 7 + width)
    masks = rng.random((6, height, width)) < 0.05
    masks[0] = False
    masks[1, 0, :] = True  # along the top edge
    masks[2, -1, -1] = True  # in the bottom-right corner
    masks[3, :, 0] = True  # along the left edge
    for radius in sorted({1, 2, ring_side_radius(height, width), max(height, width)}):  # wider than the frame too
        kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
        expected = np.stack([cv2.dilate(m.astype(np.uint8), kernel).astype(bool) for m in masks])
        got = dilate_square(masks, radius).numpy()
        np.testing.assert_array_equal(got, expected, err_msg=f"radius {radius}")
