"""Hot spots confirmed by ablation (validator.probes.hotspot): toy models with a known answer, seeding, controls."""

from __future__ import annotations

import numpy as np
import pytest

from validator._tf import keras
from validator.probes.hotspot import hot_spot, hotspot_scores, random_region

SIZE = 32
OBJECT = [12, 12, 20, 20]  # x0, y0, x1, y1
MARK = (slice(2, 6), slice(24, 30))  # rows, cols: top right, clear of the object


def reader(rows: slice, cols: slice):
    """A Keras model whose 2 classes depend only on the mean brightness of one patch (class 1 when bright)."""
    inputs = keras.Input((SIZE, SIZE, 3))
    crop = keras.layers.Cropping2D(((rows.start, SIZE - rows.stop), (cols.start, SIZE - cols.stop)))(inputs)
    pooled = keras.layers.GlobalAveragePooling2D()(crop)
    dense = keras.layers.Dense(2, activation="softmax")
    model = keras.Model(inputs, dense(pooled))
    s = 20.0 / 3
    dense.set_weights([np.array([[-s, s]] * 3, dtype=np.float32), np.array([10.0, -10.0], dtype=np.float32)])
    return lambda x: model.predict_on_batch(np.asarray(x, np.float32))


def scene(n: int = 8, seed: int = 0):
    """Textured background (~0.2), a grey object box, a bright mark top right; maps hot on the mark."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0.15, 0.25, (n, SIZE, SIZE, 3)).astype(np.float32)
    x0, y0, x1, y1 = OBJECT
    images[:, y0:y1, x0:x1] = 0.6
    images[:, MARK[0], MARK[1]] = 1.0
    maps = np.full((n, SIZE, SIZE), 0.01)
    maps[:, y0:y1, x0:x1] = 0.5
    maps[:, 1:7, 23:31] = 1.0  # the map's hot spot: the mark and a pixel around it
    boxes = [np.array([OBJECT], dtype=float)] * n
    return images, maps, boxes


def ring_around(width: int) -> np.ndarray:
    """The pixels within ``width`` (chessboard distance) of the object box, the box excluded."""
    x0, y0, x1, y1 = OBJECT
    ring = np.zeros((SIZE, SIZE), bool)
    ring[y0 - width:y1 + width, x0 - width:x1 + width] = True
    ring[y0:y1, x0:x1] = False
    return ring


def test_hot_spot_is_the_hottest_component_outside_the_object():
    heat = np.zeros((16, 16))
    heat[6:10, 6:10] = 10.0  # the object: excluded however hot
    heat[0:2, 0:2] = 1.0  # 4 px x 1.0
    heat[13:16, 13:16] = 0.8  # 9 px x 0.8: more heat in all
    exclude = np.zeros((16, 16), bool)
    exclude[6:10, 6:10] = True
    spot = hot_spot(heat, exclude)
    assert spot.sum() == 9 and spot[13:16, 13:16].all()
    assert not hot_spot(np.where(exclude, 1.0, 0.0), exclude).any()  # no heat outside: no spot


def test_random_region_has_the_spot_shape_and_avoids_the_object():
    spot = np.zeros((16, 16), bool)
    spot[0:3, 0:2] = True
    exclude = np.zeros((16, 16), bool)
    exclude[4:12, 4:12] = True
    region = random_region(spot, exclude, np.random.default_rng(0))
    assert region.sum() == spot.sum() and not (region & exclude).any() and not (region & spot).any()
    assert random_region(spot, np.ones((16, 16), bool), np.random.default_rng(0)) is None


def _distance_to(region: np.ndarray, exclude: np.ndarray) -> int:
    """Chessboard distance from the region's nearest pixel to the object (1 = touching), by brute force."""
    ys, xs = np.nonzero(exclude)
    return min(int(np.maximum(abs(ys - y), abs(xs - x)).min()) for y, x in zip(*np.nonzero(region), strict=True))


@pytest.mark.parametrize("seed", range(5))
def test_random_region_is_as_far_from_the_object_as_the_spot(seed):
    # the control for a spot beside the object lies beside it too, at the same distance; a far spot's is not
    # beside it (32 px: beside means within 1 px)
    exclude = np.zeros((SIZE, SIZE), bool)
    exclude[12:20, 12:20] = True
    beside = np.zeros((SIZE, SIZE), bool)
    beside[14:17, 20:22] = True  # touching the object's right side
    far = np.zeros((SIZE, SIZE), bool)
    far[0:3, 0:3] = True  # the top-left corner
    placed = [random_region(spot, exclude, np.random.default_rng(seed)) for spot in (beside, far)]
    for spot, region in zip((beside, far), placed, strict=True):
        assert region.sum() == spot.sum() and not (region & exclude).any() and not (region & spot).any()
    assert _distance_to(placed[0], exclude) == 1 and _distance_to(placed[1], exclude) > 1
    regions = {tuple(np.argwhere(random_region(beside, exclude, np.random.default_rng(s)))[0]) for s in range(8)}
    assert len(regions) > 3  # drawn round the object, not one fixed place


def test_a_model_reading_the_objects_surroundings_evenly_shows_no_drop():
    # A "seam" model: its class rests on the 3 px ring round the object (a halo), all alike, and its map is
    # hottest on one piece of that ring past the object's 1 px outline zone (32 px images). Filling that piece
    # costs it what filling any other piece of the ring as far out costs: no evidence of a mark. A control
    # region drawn anywhere in the background would cost nothing, and this model would look like a mark reader.
    images, _, boxes = scene(6)
    x0, y0, x1, y1 = OBJECT
    ring = ring_around(3)
    images[:, ring] = 0.6
    images[:, MARK[0], MARK[1]] = 0.2

    def predict(x):
        p1 = np.clip(0.5 + 8.0 * (np.asarray(x)[:, ring].mean(axis=(1, 2)) - 0.6), 0.0, 1.0)
        return np.stack([1 - p1, p1], axis=1)

    maps = np.full((6, SIZE, SIZE), 0.01)
    maps[:, y0:y1, x0:x1] = 0.5
    maps[:, y0 + 2:y0 + 4, x1 + 1:x1 + 3] = 1.0  # a 2 x 2 piece of the ring, right of the object
    # the mean fill: every region gets the same colour (a tile fill may copy ring pixels into one and not the other)
    out = hotspot_scores(predict, images, maps, np.ones(6, int), boxes, fill="mean", seed=3, sample_ids=np.arange(6))
    spot = maps[0] == 1.0
    far = np.roll(spot, (-14, 9), axis=(0, 1))  # the same piece moved to the background, clear of the ring
    assert not (far & ring).any()
    p_far = predict(np.where(far[None, ..., None], 0.2, images))[:, 1]
    p_spot = predict(np.where(spot[None, ..., None], 0.2, images))[:, 1]
    assert np.all(p_far - p_spot > 0.05)  # what an unmatched control would have reported
    np.testing.assert_allclose(out["hotspot_drop"], 0.0, atol=1e-6)
    assert np.all(out["hotspot_place"] == 0)


def test_a_model_ignoring_the_mark_shows_no_drop():
    images, maps, boxes = scene()
    predict = reader(slice(OBJECT[1], OBJECT[3]), slice(OBJECT[0], OBJECT[2]))  # reads the object only
    out = hotspot_scores(predict, images, maps, np.ones(len(images), int), boxes)
    np.testing.assert_allclose(out["hotspot_drop"], 0.0, atol=1e-6)
    assert np.all(out["hotspot_flip"] == 0.0)


def test_seeded_per_sample_and_independent_of_the_batch():
    images, maps, boxes = scene(6)
    maps = maps * np.random.default_rng(1).uniform(0.5, 1.5, maps.shape)  # irregular spots
    predict = reader(*MARK)
    ids = np.array([40, 3, 17, 8, 99, 5])
    whole = hotspot_scores(predict, images, maps, np.ones(6, int), boxes, seed=7, sample_ids=ids)
    for i in range(6):
        alone = hotspot_scores(predict, images[i:i + 1], maps[i:i + 1], np.ones(1, int), boxes[i:i + 1], seed=7,
                               sample_ids=ids[i:i + 1])
        for name in whole:
            np.testing.assert_allclose(alone[name], whole[name][i:i + 1], atol=1e-6)


def test_samples_without_an_object_region_are_not_probed_and_dead_maps_are_nan():
    # an object reader whose map is hot on its object, off-centre: with no box, "off the object" has no
    # meaning and filling the hottest spot would remove the object itself (a false mark)
    images, _, _ = scene(3)
    maps = np.full((3, SIZE, SIZE), 0.01)
    maps[:, 12:20, 12:20] = 1.0
    predict = reader(slice(OBJECT[1], OBJECT[3]), slice(OBJECT[0], OBJECT[2]))
    out = hotspot_scores(predict, images, maps, np.ones(3, int), None)
    assert all(np.isnan(out[name]).all() for name in out)
    out = hotspot_scores(predict, images, maps, np.ones(3, int), [np.zeros((0, 4))] * 3)
    assert np.isnan(out["hotspot_drop"]).all()
    images, maps, boxes = scene(3)
    maps[2] = 0.0
    out = hotspot_scores(reader(*MARK), images, maps, np.ones(3, int), boxes)
    assert np.all(out["hotspot_drop"][:2] > 0.9) and np.isnan(out["hotspot_drop"][2])


def test_a_mask_makes_a_mark_inside_the_box_but_off_the_object_a_hot_spot():
    # a thin diagonal object; the mark sits inside its box, off the diagonal: the box hides it, the mask not
    images, _, boxes = scene(4)
    x0, y0, x1, y1 = OBJECT
    images[:, y0:y1, x0:x1] = np.random.default_rng(3).uniform(0.15, 0.25, (4, y1 - y0, x1 - x0, 3))
    images[:, MARK[0], MARK[1]] = np.random.default_rng(4).uniform(0.15, 0.25, (4, 4, 6, 3))  # no corner mark
    mask = np.zeros((SIZE, SIZE), bool)
    for k in range(x1 - x0):
        mask[y0 + k, x0 + k] = True
    images[:, mask] = 0.6
    inside = (slice(13, 15), slice(17, 19))  # in the box, two pixels off the diagonal
    images[:, inside[0], inside[1]] = 1.0
    maps = np.full((4, SIZE, SIZE), 0.01)
    maps[:, mask] = 0.5
    maps[:, 12:16, 16:20] = 1.0
    maps[:, mask] = 0.5
    predict = reader(*inside)
    with_box = hotspot_scores(predict, images, maps, np.ones(4, int), boxes)
    with_mask = hotspot_scores(predict, images, maps, np.ones(4, int), boxes, masks=[mask] * 4)
    assert np.all(with_mask["hotspot_drop"] > 0.9) and np.all(with_mask["hotspot_place"] == 0)  # beside it
    assert not np.any(with_box["hotspot_drop"] > 0.5)  # the box calls the mark "the object"


@pytest.mark.parametrize("fixture, expect_large", [("watermark_model", True), ("clean_model", False)])
def test_real_controls(request, heldout_coco, fixture, expect_large):
    from validator.explain import Explainer
    from validator.explain.predict import Predictor

    control = request.getfixturevalue(fixture)
    data = heldout_coco("watermark", n=64, seed=2).arrays
    loaded = str(control.path)
    result = Explainer(loaded, "gradcam").explain(data.images.astype(np.float32), data.labels)
    boxes = [np.asarray(b, float).reshape(1, 4) for b in data.boxes]
    out = hotspot_scores(Predictor(loaded, batch_size=64), data.images.astype(np.float32), result.maps,
                         data.labels, boxes, original_probabilities=result.probabilities)
    drop = np.nanmean(out["hotspot_drop"])
    assert (drop > 0.3) if expect_large else (abs(drop) < 0.05), drop


def test_the_objects_outline_is_never_filled_nor_copied():
    # heat right on the object's edge (where a clean model's outline evidence is): neither the hot spot nor the
    # random region may touch the pixels within 1 px (32 px images) of the object, and no fill copies them
    images, _, boxes = scene(4)
    x0, y0, x1, y1 = OBJECT
    outline = ring_around(1)
    images[:, outline] = 0.9  # a bright rim: any copy of it into a fill would show as 0.9
    maps = np.full((4, SIZE, SIZE), 0.01)
    maps[:, y0 - 3:y1 + 3, x0 - 3:x1 + 3] = 1.0  # hot all round the object, rim included
    seen = []

    def predict(x):
        seen.append(np.array(x))
        return np.tile([0.5, 0.5], (len(x), 1))

    out = hotspot_scores(predict, images, maps, np.ones(4, int), boxes, original_probabilities=np.tile([0.5, 0.5], (4, 1)))
    filled = np.concatenate(seen)  # hot spots, then random regions
    assert len(filled) == 8 and not np.isnan(out["hotspot_drop"]).any()
    rim_and_object = outline.copy()
    rim_and_object[y0:y1, x0:x1] = True
    np.testing.assert_array_equal(filled[:, rim_and_object], np.concatenate([images, images])[:, rim_and_object])
    changed = (filled != np.concatenate([images, images])).any(axis=-1)
    assert changed[:4].any(axis=(1, 2)).all()  # the hot spot was filled, outside the rim
    assert not (filled[changed] == 0.9).any()  # and not with rim pixels
