"""Issue 21 item 6: the verdict's first sentence names where the evidence sits (a corner, an edge, beside the
object, or spread over the background), from the checks that failed; on real control models."""

from __future__ import annotations

import numpy as np
import pytest

from validator import audit
from validator.metrics import METRICS
from validator.policy.finding import BESIDE, PROBES_ONLY, SPREAD, finding
from validator.policy.result import CheckResult
from validator.probes.hotspot import PLACES, place

HELDOUT_SEED = 1


@pytest.mark.parametrize(("rect", "expected"), [
    ((20, 30, 26, 36), "beside the object"),  # 1 px right of the object's box (x 10..20)
    ((0, 0, 5, 5), "in a corner"),
    ((28, 0, 36, 4), "along an edge"),  # the middle of the top edge
    ((50, 44, 54, 48), "in the background"),  # away from the object, the corners and the edges
])
def test_a_hot_spot_is_placed_by_where_it_sits(rect, expected):
    obj = np.zeros((64, 64), bool)
    obj[30:40, 10:20] = True
    spot = np.zeros((64, 64), bool)
    x0, y0, x1, y1 = rect
    spot[y0:y1, x0:x1] = True
    assert PLACES[place(spot, spot.astype(float), obj)] == expected


def test_a_hot_spot_is_placed_by_its_hottest_pixel_not_by_what_it_touches():
    # one spot joins the heat spilling past the object to a mark in the top-left corner, hottest at the mark:
    # it touches the object, but the map points at the corner (a Decoy-MNIST partial's spots look like this)
    obj = np.zeros((64, 64), bool)
    obj[12:30, 12:30] = True
    spot = np.zeros((64, 64), bool)
    spot[0:12, 0:14] = True
    heat = np.where(spot, 0.3, 0.0)
    heat[0:5, 0:5] = 1.0
    assert PLACES[place(spot, heat, obj)] == "in a corner"
    heat = np.where(spot, 0.3, 0.0)
    heat[9:12, 10:14] = 1.0  # the same spot hottest right by the object
    assert PLACES[place(spot, heat, obj)] == "beside the object"


def _result(check_id, metric, outcome, slice_="overall", maximum=None, compared=float("nan")):
    nan = float("nan")
    return CheckResult(check_id=check_id, slice=slice_, metric=metric, aggregate="mean", bound="lower",
                       severity="fail", observed=nan, lo=nan, hi=nan, compared=compared, n=10, min=None,
                       max=maximum, baseline=None, change=None, outcome=outcome, message="")


def test_when_only_the_probes_fail_the_sentence_names_the_place_nearest_its_limit():
    probe = _result("background-swap", "bg_gap", "FAIL", maximum=0.5, compared=0.537)
    corner = _result("corner-heat", "corner_lift_max", "PASS", maximum=5.0, compared=4.736)  # 95% of its max
    edge = _result("edge-heat", "edge_lift_max", "PASS", maximum=3.0, compared=2.012)  # 67%
    beside = _result("beside-heat", "ring_one_sided", "PASS", maximum=0.25, compared=0.081)  # 32%
    per_class = _result("corner-heat", "corner_lift_max", "PASS", slice_="class=a", maximum=5.0, compared=4.99)
    said = finding([probe, edge, corner, beside, per_class], {"class_name": np.array(["a"], dtype=object)}, METRICS)
    assert said == ("the background decides the class (the probes say so); no region of the maps fails its check, "
                    "and they point nearest to the corners (corner-heat 4.74, 95% of its maximum 5)")
    # the nearest changes with the numbers, not the order of the checks
    edge_near = _result("edge-heat", "edge_lift_max", "PASS", maximum=3.0, compared=2.95)
    assert "nearest to the edges (edge-heat 2.95, 98% of its maximum 3)" in finding(
        [probe, corner, edge_near, beside], {"class_name": np.array(["a"], dtype=object)}, METRICS)
    # a region check that was not judged (NaN) names nothing
    unjudged = _result("corner-heat", "corner_lift_max", "NOT_JUDGED", maximum=5.0)
    assert finding([probe, unjudged], {"class_name": np.array(["a"], dtype=object)}, METRICS) == PROBES_ONLY


def test_the_most_specific_failing_region_is_named():
    n = 10
    table = {"class_name": np.array(["a"] * n, dtype=object),
             "hotspot_drop": np.array([0.9] * 8 + [0.0] * 2), "hotspot_place": np.array([0.0] * 8 + [1.0] * 2),
             **{f"corner_lift_{c}": np.array([9.0] * n if c == "br" else [1.0] * n) for c in ("tl", "tr", "bl", "br")}}
    hot = _result("hotspot", "hotspot_drop", "FAIL", maximum=0.2)
    beside = finding([hot, _result("background-only", "bg_only_skill", "FAIL")], table, METRICS)
    assert beside.startswith("the evidence sits beside the object (hot spots whose filling removed the class: "
                             "beside the object 100%")  # the two spots in a corner did not remove it
    corner = finding([hot, _result("corner-heat", "corner_lift_max", "FAIL")], table, METRICS)
    assert corner.startswith("the evidence sits in the bottom-right corner")
    assert finding([_result("object-heat", "relative_lift", "FAIL")], table, METRICS) == SPREAD
    # one-sided ring heat names the place beside the object, before the unplaced "spread" sentence
    assert finding([_result("beside-heat", "ring_one_sided", "FAIL"), _result("object-heat", "relative_lift", "FAIL")],
                   table, METRICS) == BESIDE
    assert finding([_result("background-only", "bg_only_skill", "FAIL")], table, METRICS) == PROBES_ONLY
    assert finding([_result("object-heat", "relative_lift", "PASS"),
                    _result("object-heat", "relative_lift", "FAIL", slice_="class=a")], table, METRICS) is None


@pytest.mark.parametrize(("model", "cue", "words"), [
    ("watermark_model", "watermark", "the evidence sits in the bottom-right corner"),
    ("edge_strip_model", "edge_strip", "the evidence sits along the top edge"),
    ("beside_mark_model", "beside_mark", "the evidence sits beside the object"),
    ("weather_model", "weather", SPREAD),
])
def test_the_verdict_names_where_each_shortcut_reads(model, cue, words, request, heldout_coco, tmp_path):
    control = request.getfixturevalue(model)
    data = heldout_coco(cue, n=200, seed=HELDOUT_SEED)
    verdict = audit(str(control.path), str(data.coco_path), out=tmp_path / "report")
    assert verdict.status == "FAIL"
    assert verdict.finding is not None and verdict.finding.startswith(words), verdict.finding
    summary = (tmp_path / "report" / "summary.md").read_text()
    assert f"**Where:** {words[0].upper()}{words[1:]}" in summary


def test_a_clean_model_has_no_finding(clean_model, heldout_coco, tmp_path):
    verdict = audit(str(clean_model.path), str(heldout_coco("watermark", n=200, seed=HELDOUT_SEED).coco_path),
                    out=tmp_path / "report")
    assert verdict.status in ("PASS", "WARN") and verdict.finding is None
