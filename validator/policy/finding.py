"""The verdict's first sentence: where the evidence sits (a corner, an edge, beside the object, spread out).

A reviewer acts on "the model reads the bottom-right corner" sooner than on a list of failed checks. The
sentence comes from the checks that failed (else warned) on the overall slice, the most specific first: a
corner, then an edge (the corner and edge lifts name theirs), then the place of the hot spots whose filling
removed the class (``hotspot_place``), then ring heat on one side of the object (beside it), then heat off
the object with no place of its own (spread over the background, as a brightness or texture cue puts it),
then the background probes alone. When only the probes fail (a partial shortcut: the object carries most of the
heat, so no map check fails), the sentence still names the place the maps point to: the region check (corner,
edge, beside) whose compared value comes nearest its maximum, with the numbers, so a reviewer knows where to look.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from validator.metrics.registry import HEATMAP, MetricInfo
from validator.policy.result import FAIL, WARN, CheckResult

CORNER_PREFIXES = ("corner_lift_", "corner_heat_")
EDGE_PREFIXES = ("edge_lift_",)
ONE_PLACE_SHARE = 0.6  # as the corner and edge sentences: one place when it holds this share of the images
BESIDE = "the evidence sits beside the object: the heat just outside it gathers on one side"
SPREAD = "the heat lies off the object, spread over the background rather than on one mark"
PROBES_ONLY = "the background decides the class (the probes say so), with no one region of the maps holding it"
# The region checks a probes-only sentence may point to, and the words for their place.
PLACE_METRICS = {"corner_lift_max": "the corners", "edge_lift_max": "the edges", "ring_one_sided": "beside the object"}


def finding(results: Sequence[CheckResult], table: Mapping[str, np.ndarray],
            infos: Mapping[str, MetricInfo]) -> str | None:
    """The sentence for the overall checks that failed (else warned); None when none did."""
    from validator.policy.evaluate import corner_sentence, edge_sentence

    for outcome in (FAIL, WARN):
        broken = [r for r in results if r.outcome == outcome and r.slice == "overall"
                  and not r.check_id.startswith("data.") and r.metric in infos]
        if broken:
            break
    else:
        return None
    metrics = {r.metric for r in broken}
    rows = np.not_equal(np.asarray(table["class_name"], dtype=object), None).astype(bool)
    if any(m.startswith(CORNER_PREFIXES) for m in metrics):
        return corner_sentence(table, rows)
    if any(m.startswith(EDGE_PREFIXES) for m in metrics):
        return edge_sentence(table, rows)
    hotspot = [r for r in broken if r.metric == "hotspot_drop"]
    if hotspot and "hotspot_place" in table:
        return place_sentence(table, rows, hotspot[0].max if hotspot[0].max is not None else 0.0)
    if metrics & {"ring_one_sided", "ring_side_lift"}:
        return BESIDE
    if any(infos[m].source == HEATMAP and infos[m].needs_box for m in metrics):
        return SPREAD
    return nearest_place_sentence(results) or PROBES_ONLY


def nearest_place_sentence(results: Sequence[CheckResult]) -> str | None:
    """"The background decides the class ...; the maps point nearest to <place>" from the overall region check
    whose compared value is the largest share of its maximum; None when no region check was judged."""
    best = None
    for r in results:
        if (r.slice != "overall" or r.metric not in PLACE_METRICS or r.max is None or not r.max > 0
                or not np.isfinite(r.compared)):
            continue
        if best is None or r.compared / r.max > best.compared / best.max:
            best = r
    if best is None:
        return None
    return (f"the background decides the class (the probes say so); no region of the maps fails its check, and they point "
            f"nearest to {PLACE_METRICS[best.metric]} ({best.check_id} {best.compared:.3g}, {best.compared / best.max:.0%} "
            f"of its maximum {best.max:g})")


def place_sentence(table: Mapping[str, np.ndarray], rows: np.ndarray, cut: float) -> str:
    """Where the hot spots sit whose filling cost the class more than ``cut`` (the check's limit)."""
    from validator.probes.hotspot import PLACES

    drop = np.asarray(table["hotspot_drop"], dtype=float)[rows]
    places = np.asarray(table["hotspot_place"], dtype=float)[rows]
    with np.errstate(invalid="ignore"):
        decisive = np.isfinite(drop) & np.isfinite(places) & (drop > cut)
    if not decisive.any():
        return "the evidence sits in a mark off the object that the map points at"
    shares = np.bincount(places[decisive].astype(int), minlength=len(PLACES)) / decisive.sum()
    detail = ", ".join(f"{PLACES[i]} {shares[i]:.0%}" for i in np.argsort(-shares, kind="stable") if shares[i] > 0)
    top = int(np.argmax(shares))
    where = f"the evidence sits {PLACES[top]}" if shares[top] >= ONE_PLACE_SHARE else \
        "the evidence sits in marks off the object, in several places"
    return f"{where} (hot spots whose filling removed the class: {detail})"
