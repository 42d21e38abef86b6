"""TensorFlow scorer (validator.metrics.device): known answers, cv2's components, parity with score_maps."""

from __future__ import annotations

import functools

import cv2
import numpy as np
import pytest

from validator._tf import tf
from validator.errors import DataError, UsageError
from validator.metrics import largest_component_box, score_maps
from validator.metrics.device import DeviceScorer, label_components, pad_for_device

# Columns whose values come from comparisons and integer counts: equal to score_maps bit for bit.
EXACT = ["dead", "area", "pointing_hit", "center_hit", "rank_accuracy", "cam_box_iou", "cam_box_hit"]


@functools.cache
def scorer(height, width, dtype="float64", kernels="cpu", **kw):
    kw = {k: dict(v) if k == "regions" else v for k, v in kw.items()}
    return DeviceScorer(height, width, dtype=dtype, kernels=kernels, **kw)


def both(maps, boxes, dtype="float64", kernels="cpu", **kw):
    """(score_maps, DeviceScorer) columns for maps [N, H, W] and per-sample boxes."""
    maps = np.asarray(maps, dtype=np.float32)
    boxes = [np.asarray(b, dtype=np.float64).reshape(-1, 4) for b in boxes]
    ref = score_maps(maps, boxes, **kw)
    key = {k: tuple(v.items()) if k == "regions" else v for k, v in kw.items()}
    out = scorer(maps.shape[1], maps.shape[2], dtype, kernels, **key).score_numpy(maps, boxes)
    return ref, out


def assert_parity(ref, out, rtol=1e-12, atol=1e-14):
    assert list(out) == list(ref)
    for name, expected in ref.items():
        got = out[name]
        assert got.dtype == np.float64 and got.shape == expected.shape, name
        np.testing.assert_array_equal(np.isnan(got), np.isnan(expected), err_msg=f"NaN pattern of {name}")
        if name in EXACT:
            np.testing.assert_array_equal(got, expected, err_msg=name)
        else:
            np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol, err_msg=name)


def one(map_2d, boxes, **kw):
    """Device columns of one map, scored eagerly (checked against score_maps on the way)."""
    maps = np.asarray(map_2d, dtype=np.float32)[None]
    boxes = [np.asarray(boxes, dtype=np.float64).reshape(-1, 4)]
    padded, counts = pad_for_device(boxes)
    out = DeviceScorer(maps.shape[1], maps.shape[2], **kw).score(maps, padded, counts)
    out = {k: v.numpy() for k, v in out.items()}
    assert_parity(score_maps(maps, boxes, **kw), out)
    return {k: float(v[0]) for k, v in out.items()}


BOX = [[2, 2, 6, 6]]  # 16 pixels of a 10 x 10 image: A = 0.16


# ---------------------------------------------------------------- known answers


def test_all_heat_inside_box():
    h = np.zeros((10, 10))
    h[2:6, 2:6] = np.arange(1, 17).reshape(4, 4)
    r = one(h, BOX)
    assert r["area"] == pytest.approx(0.16)
    assert r["energy"] == 1.0 and r["chance_corrected"] == pytest.approx(1.0)
    assert r["rank_accuracy"] == 1.0 and r["pointing_hit"] == 1.0 and r["dead"] == 0.0
    assert r["cam_box_iou"] == 1.0  # heat >= 0.2 * 16: the block minus its three coolest pixels, same box
    assert r["border_heat"] == 0.0 and r["corner_heat_max"] == 0.0


def test_no_heat_and_half_heat_inside_box():
    h = np.ones((10, 10))
    h[2:6, 2:6] = 0.0
    r = one(h, BOX)
    assert r["energy"] == 0.0 and r["lift"] == 0.0 and r["rank_accuracy"] == 0.0
    assert r["relative_lift"] == -1.0
    h = np.zeros((10, 10))
    h[3, 3] = h[9, 9] = 1.0  # two tied maxima, one of them off the object
    r = one(h, BOX)
    assert r["energy"] == 0.5
    assert r["pointing_hit"] == 0.0
    # K = 16: two hot pixels (1 inside), then 14 of the 98 zero-valued pixels (15 of them inside)
    assert r["rank_accuracy"] == pytest.approx((1 + 14 * 15 / 98) / 16)


def test_pointing_ties_at_the_maximum():
    h = np.zeros((20, 20))
    h[3, 3] = h[4, 4] = 2.0  # both maxima in the box
    h[15, 15] = 1.0  # a lower peak far away does not count
    assert one(h, [[0, 0, 8, 8]])["pointing_hit"] == 1.0
    h[15, 15] = 2.0  # a third, tied maximum off the object
    assert one(h, [[0, 0, 8, 8]])["pointing_hit"] == 0.0
    assert one(h, [[0, 0, 8, 8], [14, 14, 16, 16]])["pointing_hit"] == 1.0  # every tied maximum hits a box
    # tolerance edge, inclusive and Euclidean: (13.5, 13.5) is 3.5 * sqrt(2) from (10, 10); 4.5 px straight
    g = np.zeros((20, 20))
    g[13, 13] = 1.0
    assert one(g, [[0, 0, 10, 10]], pointing_tolerance=4.95)["pointing_hit"] == 1.0
    assert one(g, [[0, 0, 10, 10]], pointing_tolerance=4.9)["pointing_hit"] == 0.0
    assert one(g, [[0, 0, 9, 20]], pointing_tolerance=4.5)["pointing_hit"] == 1.0
    assert one(g, [[0, 0, 9, 20]], pointing_tolerance=4.49)["pointing_hit"] == 0.0
    assert one(np.full((20, 20), 3.0), [[0, 0, 8, 8]])["pointing_hit"] == 0.0  # a flat map points nowhere


def test_rank_accuracy_ties():
    assert one(np.full((10, 10), 3.0), BOX)["rank_accuracy"] == pytest.approx(0.16)  # flat map: chance
    h = np.zeros((10, 10))
    h[2, 2:6] = 1.0  # 4 hot pixels in the box, then 12 of the 96 zeros (12 of them inside) share the cut
    assert one(h, BOX)["rank_accuracy"] == pytest.approx((4 + 12 * 12 / 96) / 16)
    h = np.full((10, 10), 1.0)
    h[2:6, 2:6] = 2.0
    h[9, :] = 2.0  # 26 pixels tie at the top value, 16 needed, 16 of the tied inside
    assert one(h, BOX)["rank_accuracy"] == pytest.approx(16 * 16 / 26 / 16)


def test_dead_maps_and_samples_without_boxes():
    nan_map = np.ones((10, 10))
    nan_map[0, 0] = np.nan
    inf_map = np.ones((10, 10))
    inf_map[5, 5] = np.inf
    maps = np.stack([np.zeros((10, 10)), nan_map, inf_map, np.ones((10, 10)), np.ones((10, 10))])
    boxes = [BOX, BOX, BOX, BOX, np.zeros((0, 4))]
    ref, out = both(maps, boxes)
    assert_parity(ref, out)
    np.testing.assert_array_equal(out["dead"], [1, 1, 1, 0, 0])
    assert np.isnan(out["energy"][[0, 1, 2, 4]]).all() and out["energy"][3] == pytest.approx(0.16)
    assert np.isnan(out["corner_heat_tl"][:3]).all() and np.isfinite(out["corner_heat_tl"][3:]).all()
    np.testing.assert_array_equal(out["center_hit"], [1, 1, 1, 1, np.nan])
    # a sliver box covering no pixel centre is no box
    r = one(np.ones((10, 10)), [[2.6, 2, 3.4, 6]])
    assert np.isnan(r["area"]) and np.isnan(r["cam_box_iou"])


def test_empty_batch():
    ref, out = both(np.zeros((0, 8, 8)), [])
    assert_parity(ref, out)


# ---------------------------------------------------------------- connected components


def cv2_order(mask):
    """Per-pixel cv2 label of each component (0 = background)."""
    return cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)[1]


def assert_labels_like_cv2(masks):
    labels, iterations = label_components(tf.constant(masks), kernels="cpu")
    gpu_layout, _ = label_components(tf.constant(masks), kernels="gpu")  # float64 labels: the same
    labels = labels.numpy()
    np.testing.assert_array_equal(gpu_layout.numpy(), labels)
    for mask, lab in zip(masks, labels, strict=True):
        expected = cv2_order(mask)
        np.testing.assert_array_equal(lab < 0, expected == 0)
        # same partition, and ranking the components by device label gives cv2's numbering
        keys = np.unique(lab[lab >= 0])
        rank = np.searchsorted(keys, lab) + 1
        np.testing.assert_array_equal(np.where(lab >= 0, rank, 0), expected)
    return int(iterations)


def spiral(size, gap=2):
    """A one-pixel-wide square spiral, clockwise from the outside in, its rings `gap` pixels apart."""
    m = np.zeros((size, size), dtype=bool)
    top, left, bottom, right, start = 0, 0, size - 1, size - 1, 0
    while top <= bottom and left <= right:
        m[top, start:right + 1] = True
        m[top:bottom + 1, right] = True
        m[bottom, left:right + 1] = True
        m[top + gap:bottom + 1, left] = True  # up the left side, into the next ring's top row
        start = left
        top, left, bottom, right = top + gap, left + gap, bottom - gap, right - gap
    return m


def test_components_follow_cv2_block_order():
    # equal areas; raster order would pick the component starting at (0, 5), cv2 labels (1, 0) first
    m = np.zeros((6, 10), dtype=bool)
    m[0:2, 5] = True
    m[1:3, 0] = True
    assert_labels_like_cv2(m[None])
    h = np.where(m, 1.0, 0.0)
    assert largest_component_box(h, 0.2).tolist() == [0, 1, 1, 3]
    assert one(h, [[0, 1, 1, 3]])["cam_box_iou"] == 1.0
    assert one(h, [[5, 0, 6, 2]])["cam_box_iou"] == 0.0
    # where raster and block order agree: the first of two equal blobs wins
    g = np.zeros((16, 16))
    g[1:4, 1:4] = 1.0
    g[9:12, 9:12] = 1.0
    assert one(g, [[1, 1, 4, 4]])["cam_box_iou"] == 1.0


def test_components_of_random_masks_match_cv2():
    rng = np.random.default_rng(7)
    for height, width in [(1, 1), (1, 9), (7, 1), (5, 6), (17, 23), (32, 32)]:
        for density in (0.2, 0.45, 0.6, 0.9):
            masks = rng.random((6, height, width)) < density
            assert_labels_like_cv2(masks)
    assert_labels_like_cv2(np.zeros((2, 5, 5), dtype=bool))
    assert_labels_like_cv2(np.ones((2, 5, 5), dtype=bool))


def test_spiral_and_snake_components_converge():
    s = spiral(63)
    assert cv2.connectedComponents(s.astype(np.uint8), connectivity=8)[0] == 2  # one component
    # a comb (snake) of 1-pixel columns joined alternately at the top and the bottom, and a staircase
    snake = np.zeros((40, 41), dtype=bool)
    snake[:, ::2] = True
    snake[0, 1::4] = True
    snake[-1, 3::4] = True
    stairs = np.zeros((41, 41), dtype=bool)
    stairs[np.arange(41), np.arange(41)] = True
    stairs[np.arange(40), np.arange(40)[::-1]] = True
    masks = np.zeros((3, 63, 63), dtype=bool)
    masks[0] = s
    masks[1, :40, :41] = snake
    masks[2, :41, :41] = stairs
    iterations = assert_labels_like_cv2(masks)
    assert iterations > 3  # propagation needed several rounds; the loop ran to convergence
    # the spiral (about 1000 px) beats a solid 20 x 20 block (400 px) beside it
    h = np.zeros((64, 96))
    h[:63, :63] = s
    h[30:50, 70:90] = 1.0
    ys, xs = np.nonzero(s)
    box = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    assert largest_component_box(h, 0.5).tolist() == box
    assert one(h, [box], cam_threshold=0.5)["cam_box_iou"] == 1.0
    assert one(h, [[70, 30, 90, 50]], cam_threshold=0.5)["cam_box_iou"] == 0.0


# ---------------------------------------------------------------- parity on random maps


def random_batch(rng, n, height, width):
    yy, xx = np.mgrid[0:height, 0:width]
    maps = np.zeros((n, height, width))
    for i in range(n):
        kind = rng.integers(0, 10)
        for _ in range(rng.integers(1, 4)):  # smooth blobs
            cy, cx = rng.uniform(-5, [height + 5, width + 5])
            s = rng.uniform(1, max(height, width) / 3)
            maps[i] += rng.uniform(0.2, 1) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
        maps[i] += rng.uniform(0, 0.3) * rng.random((height, width))
        if kind == 0:
            maps[i] = 0.0  # dead
        elif kind == 1:
            maps[i, rng.integers(height), rng.integers(width)] = np.nan
        elif kind == 2:
            maps[i] = np.floor(maps[i] * 4)  # plateaus: ties at the max, at the rank cut, several components
        elif kind == 3:
            maps[i] = np.where(rng.random((height, width)) < 0.3, maps[i], 0.0)  # speckle: many components
        elif kind == 4:
            maps[i] = np.full((height, width), 0.5)  # flat
        elif kind == 5:
            maps[i] = 0.0
            maps[i, rng.integers(height), rng.integers(width)] = 1.0  # a single hot pixel
    boxes = []
    for _ in range(n):
        k = rng.integers(0, 4)
        xy0 = rng.uniform(-3, [width, height], size=(k, 2))
        wh = rng.uniform(0.3, [width, height], size=(k, 2))
        b = np.concatenate([xy0, xy0 + wh], axis=1)
        style = rng.integers(0, 4)
        if style == 0:
            b = np.round(b)
        elif style == 1:
            b = np.round(b * 2) / 2  # half pixels: exact distances at the pointing tolerance
        elif style == 2 and k:
            b[0] = [0, 0, width, height] if rng.random() < 0.5 else [0, rng.uniform(0, height), width, height]
        boxes.append(b)
    return maps.astype(np.float32), boxes


@pytest.mark.parametrize("height,width", [(32, 32), (57, 64)])
@pytest.mark.parametrize("dtype,kernels", [("float64", "cpu"), ("float32", "cpu"), ("float64", "gpu")])
def test_parity_with_score_maps_on_random_maps(height, width, dtype, kernels):
    rng = np.random.default_rng(height * 1000 + width)
    settings = [
        {},
        {"regions": {"wm": (0.7, 0.0, 1.0, 0.3), "mid": (0.25, 0.25, 0.75, 0.75)}, "pointing_tolerance": 3.5,
         "cam_threshold": 0.5, "iou_hit": 0.3, "corner_fraction": 0.3, "border_fraction": 0.21},
        {"pointing_tolerance": 0.0, "cam_threshold": 1.0},
    ]
    for kw in settings:
        maps, boxes = random_batch(rng, 100, height, width)
        ref, out = both(maps, boxes, dtype=dtype, kernels=kernels, **kw)
        if dtype == "float64":
            assert_parity(ref, out, rtol=1e-11, atol=1e-13)
        else:  # heat sums accumulated in float32: a few float32 ulps, absolute where values cancel
            assert_parity(ref, out, rtol=1e-5, atol=1e-5)
        scored = np.isfinite(ref["energy"])
        assert scored.sum() > 30 and ref["dead"].sum() > 5  # the batch exercises both branches
        assert 0 < np.nansum(ref["pointing_hit"]) < scored.sum()
        assert 0 < np.nansum(ref["cam_box_hit"]) < scored.sum()


# ---------------------------------------------------------------- graph use, validation


def test_traced_once_inside_tf_function():
    s = DeviceScorer(24, 20)
    rng = np.random.default_rng(3)
    for n, k in [(5, 1), (17, 3), (2, 2)]:
        maps, boxes = random_batch(rng, n, 24, 20)
        padded, counts = pad_for_device(boxes, max_boxes=k if all(len(b) <= k for b in boxes) else None)
        out = s.function(tf.constant(maps), tf.constant(padded), tf.constant(counts))
        assert_parity(score_maps(maps, boxes), {key: v.numpy() for key, v in out.items()})
    assert s.function.experimental_get_tracing_count() == 1

    # inside a caller's own tf.function (the explainer's): only per-sample columns come out
    @tf.function(input_signature=[tf.TensorSpec([None, 24, 20], tf.float32), tf.TensorSpec([None, None, 4], tf.float64),
                                  tf.TensorSpec([None], tf.int32)])
    def explain_and_score(maps, boxes, counts):
        return s.score(tf.nn.relu(maps - 0.1), boxes, counts)["energy"]

    maps, boxes = random_batch(rng, 6, 24, 20)
    padded, counts = pad_for_device(boxes)
    energy = explain_and_score(tf.constant(maps), tf.constant(padded), tf.constant(counts)).numpy()
    np.testing.assert_allclose(energy, score_maps(np.maximum(maps - 0.1, 0), boxes)["energy"], rtol=1e-6)


@pytest.mark.parametrize("kernels", ["cpu", "gpu"])
def test_eager_score_matches_with_float64_maps(kernels):
    maps, boxes = random_batch(np.random.default_rng(4), 12, 12, 14)
    maps = maps.astype(np.float64) * (1 + 1e-12 * np.random.default_rng(5).random(maps.shape))  # not float32
    padded, counts = pad_for_device(boxes)
    out = DeviceScorer(12, 14, kernels=kernels).score(maps, padded, counts)  # eager, float64 radix keys
    assert_parity(score_maps(maps, boxes), {k: v.numpy() for k, v in out.items()})


def test_radix_select_matches_sort():
    from validator.metrics.device import _LAYOUTS, _kth_largest, _order_keys

    rng = np.random.default_rng(6)
    values = np.round(rng.normal(size=(5, 300)) * 4) / 4  # ties, negatives (validate=False territory)
    values[0, :50] = -0.0
    values[1] = 0.0
    values[2, :10] = [np.inf, -np.inf, 1e-30, -1e-30, 3e38, 1e-300, 0, 2, 2, 2]  # no subnormals: flushed in graphs
    k = np.array([1, 300, 7, 150, 299])
    for dtype in (np.float32, np.float64):
        v = values.astype(dtype)
        expected = v == -np.sort(-v, axis=1)[np.arange(5), k - 1][:, None]
        for layout in _LAYOUTS.values():
            got = _kth_largest(*_order_keys(tf.constant(v), layout), tf.constant(k, tf.float64), layout)
            np.testing.assert_array_equal(got.numpy(), expected, err_msg=f"{dtype.__name__} {layout.name}")


def test_pad_for_device_and_validation():
    padded, counts = pad_for_device([np.zeros((0, 4)), [[1, 2, 3, 4]], [[0, 0, 1, 1], [2, 2, 3, 3]]])
    assert padded.shape == (3, 2, 4) and padded.dtype == np.float64
    np.testing.assert_array_equal(counts, [0, 1, 2])
    np.testing.assert_array_equal(padded[1], [[1, 2, 3, 4], [0, 0, 0, 0]])
    assert pad_for_device([], max_boxes=3)[0].shape == (0, 3, 4)
    assert pad_for_device([np.zeros((0, 4))])[0].shape == (1, 1, 4)
    with pytest.raises(ValueError, match="max_boxes"):
        pad_for_device([[[0, 0, 1, 1], [0, 0, 2, 2]]], max_boxes=1)
    with pytest.raises(DataError, match="x1 < x0"):
        pad_for_device([[[5, 0, 2, 2]]])
    with pytest.raises(UsageError):
        DeviceScorer(8, 8, cam_threshold=0.0)
    with pytest.raises(UsageError):
        DeviceScorer(8, 8, pointing_tolerance=-1)
    with pytest.raises(UsageError):
        DeviceScorer(8, 8, regions={"r": (0.5, 0, 0.2, 1)})
    s = DeviceScorer(8, 8)
    with pytest.raises(ValueError, match="shape"):
        s.score_numpy(np.ones((1, 8, 9)), [BOX])
    bad = -np.ones((1, 8, 8), dtype=np.float32)
    with pytest.raises(tf.errors.InvalidArgumentError, match=">= 0"):
        s.score_numpy(bad, [BOX])


def test_ring_parity_on_small_and_large_objects():
    rng = np.random.default_rng(3)
    maps = rng.random((6, 40, 48)) ** 4
    # 2% to 50% of the frame, one at the edge, two boxes, a fractional box, none
    boxes = [[[20, 15, 27, 20]], [[4, 4, 38, 32]], [[0, 0, 10, 9]], [[2, 2, 8, 8], [30, 20, 44, 36]],
             [[10.3, 7.7, 21.6, 19.2]], np.zeros((0, 4))]
    ref, out = both(maps, boxes)
    assert_parity(ref, out)
    np.testing.assert_array_equal(np.isnan(out["ring_lift"]), [False] * 5 + [True])


@pytest.mark.parametrize("kernels", ["cpu", "gpu"])
def test_ring_side_parity_with_boxes_at_the_frame_border(kernels):
    """ring_side_lift / ring_one_sided: the max-pool dilation, the octants and the count rule equal
    score_maps' (cv2.dilate) where boxes touch or cross the frame, and marks beside boxes are one-sided."""
    rng = np.random.default_rng(21)
    for height, width in [(32, 32), (45, 38), (9, 7)]:
        maps, boxes = random_batch(rng, 40, height, width)
        yy, xx = np.mgrid[0:height, 0:width]
        for i in range(0, 40, 2):  # every other sample: a box at the border and a mark just beside it
            w, h = rng.uniform(2, [width / 2, height / 2])
            x0 = [0.0, width - w, rng.uniform(-3, 0), rng.uniform(0, width - w)][i // 2 % 4]
            y0 = [rng.uniform(0, height - h), 0.0, rng.uniform(-3, 0), height - h][i // 2 % 4]
            boxes[i] = np.array([[x0, y0, x0 + w, y0 + h]])
            if i % 4 == 0:  # the mark: a blob beside the box's right or bottom edge, else in the frame
                cx, cy = (min(x0 + w + 1, width - 1), y0 + h / 2) if x0 + w < width - 1 else (x0 + w / 2, y0 + h + 1)
                maps[i] = 0.05 * maps[i] + np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 2.0)
        ref, out = both(maps, boxes, kernels=kernels)
        assert_parity(ref, out)
        np.testing.assert_array_equal(out["ring_one_sided"], ref["ring_one_sided"])
        np.testing.assert_allclose(out["ring_side_lift"], ref["ring_side_lift"], rtol=1e-9, atol=0)
        defined = np.isfinite(ref["ring_side_lift"])
        if height > 10:  # the big frames exercise both sides of the threshold
            assert defined.sum() > 15 and 0 < np.nansum(ref["ring_one_sided"]) < defined.sum()
