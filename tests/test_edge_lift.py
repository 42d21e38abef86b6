"""Edge lift: per-side heat of the 10% border band over its area share (object pixels excluded), its max,
the device scorer's parity, and the sentence that names the edge."""

from __future__ import annotations

import math

import numpy as np
import pytest

from validator.metrics import score_maps
from validator.metrics.registry import EDGES
from validator.policy.evaluate import edge_sentence

BOX = [np.array([[20, 20, 40, 40]], float)]


def test_uniform_map_lifts_every_edge_to_one():
    out = score_maps(np.ones((1, 64, 64)), BOX)
    for e in (*EDGES, "max"):
        assert out[f"edge_lift_{e}"][0] == pytest.approx(1.0)


def test_all_heat_in_the_top_band_lifts_the_top_edge_to_ten():
    # 10 x 10 map, band 1 row/column: all heat spread over the top row (10 of 100 pixels), no box.
    heat = np.zeros((1, 10, 10))
    heat[0, 0, :] = 1.0
    out = score_maps(heat, [np.zeros((0, 4))])
    assert out["edge_lift_top"][0] == pytest.approx(1.0 / (10 / 100))  # heat share 1 / area share 0.1
    assert out["edge_lift_max"][0] == out["edge_lift_top"][0]
    # the corner squares belong to both their sides: left and right hold 1 of the 10 hot pixels each
    assert out["edge_lift_left"][0] == pytest.approx(0.1 / 0.1)
    assert out["edge_lift_right"][0] == pytest.approx(1.0)
    assert out["edge_lift_bottom"][0] == 0.0


def test_object_pixels_are_excluded_from_heat_and_area():
    # 20 x 20, band 2 rows; the object covers half the top band's width; heat everywhere outside it.
    heat = np.ones((1, 20, 20))
    box = [np.array([[0, 0, 10, 5]], float)]
    heat[0, :5, :10] = 100.0  # hot object: must not count for the top edge
    out = score_maps(heat, box)
    free_top = 2 * 10  # rows 0-1, columns 10-19
    free_total = 400 - 50
    share = free_top / 400
    assert out["edge_lift_top"][0] == pytest.approx((free_top / (free_total + 50 * 100)) / share)


def test_an_edge_the_object_fills_is_skipped():
    out = score_maps(np.ones((1, 64, 64)), [np.array([[0, 0, 64, 10]], float)])
    assert math.isnan(out["edge_lift_top"][0])
    assert out["edge_lift_max"][0] == pytest.approx(1.0)


def test_border_band_dilutes_a_top_strip_that_the_edge_lift_names():
    # The issue-21 case: a strip along the top holds 0.42 of the heat, the rest spread evenly.
    heat = np.full((1, 100, 100), 0.58 / (100 * 90))
    heat[0, :10, :] = 0.42 / 1000
    out = score_maps(heat, [np.zeros((0, 4))])
    assert out["border_heat"][0] == pytest.approx(0.42 + 0.58 * 26 / 90)  # 36% of the frame: diluted
    assert out["edge_lift_top"][0] == pytest.approx(4.2)
    assert out["edge_lift_max"][0] == pytest.approx(4.2)


def test_device_scorer_has_the_edge_columns_with_parity():
    from validator.metrics.device import DeviceScorer

    rng = np.random.default_rng(3)
    maps = rng.random((12, 32, 32)).astype(np.float32)
    maps[:4, :3, :] *= 40.0  # hot top strips
    boxes = [np.array([[rng.integers(0, 20), rng.integers(0, 20), 28, 30]], float) for _ in range(12)]
    boxes[5] = np.array([[0, 0, 32, 4.0]])  # fills the top band: NaN on both
    ref = score_maps(maps, boxes)
    out = DeviceScorer(32, 32).score_numpy(maps, boxes)
    for name in [f"edge_lift_{e}" for e in EDGES] + ["edge_lift_max"]:
        np.testing.assert_allclose(out[name], ref[name], rtol=1e-11, equal_nan=True)
    assert math.isnan(ref["edge_lift_top"][5])


def test_edge_sentence_names_one_edge_or_all_of_them():
    n = 40
    rows = np.ones(n, bool)
    table = {f"edge_lift_{e}": np.full(n, 0.8) for e in EDGES}
    table["edge_lift_top"] = np.full(n, 4.0)
    assert edge_sentence(table, rows).startswith("the evidence sits along the top edge (hottest edge per image: top 100%")
    hot = np.random.default_rng(0).integers(0, 4, n)
    spread = {f"edge_lift_{e}": np.where(hot == i, 4.0, 0.8) for i, e in enumerate(EDGES)}
    assert edge_sentence(spread, rows).startswith("the evidence sits along the edges, no single one")
