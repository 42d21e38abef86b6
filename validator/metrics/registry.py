"""Metric metadata (Quantus-style): what each per-sample column means and which direction is good.

The policy engine reads this to validate metric names and to know whether a metric is boolean.
``region_<name>`` columns are created per policy; ``metric_info`` answers for them too, so prefer
``metric_info(name)`` over ``name in METRICS`` when validating a name.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass

CONTINUOUS = "continuous"
BOOLEAN = "boolean"
# Where a metric's evidence comes from. Only HEATMAP metrics are put in doubt by a failed explainer sanity
# check: probes and predictions do not read the heatmap.
HEATMAP = "heatmap"
PROBE = "probe"  # forward passes on altered images (counterfactual, faithfulness)
PREDICTION = "prediction"
SANITY = "sanity"
REGION_PREFIX = "region_"
CORNERS = ("tl", "tr", "bl", "br")
EDGES = ("top", "bottom", "left", "right")


@dataclass(frozen=True)
class MetricInfo:
    """One per-sample metric: its range, its good direction (None = informational) and whether it needs a box."""

    name: str
    higher_is_better: bool | None
    lo: float
    hi: float
    kind: str
    needs_box: bool
    description: str
    source: str = HEATMAP  # HEATMAP | PROBE | PREDICTION | SANITY
    subset: bool = False  # computed on a sample of the audited rows only (NaN elsewhere)
    # (column, reason): the metric is NaN on a row where ``column`` is defined only for ``reason``, so a check
    # left with too few values can say why (validator.policy.missing)
    undefined: tuple[str, str] | None = None


def _info(name, higher, lo, hi, kind, needs_box, description, source=HEATMAP, subset=False,
          undefined=None) -> MetricInfo:
    return MetricInfo(name, higher, float(lo), float(hi), kind, needs_box, description, source, subset, undefined)


def region_info(name: str) -> MetricInfo:
    """Metadata of a policy-defined region column ``region_<name>``."""
    return _info(
        f"{REGION_PREFIX}{name}", False, 0, 1, CONTINUOUS, False,
        f"Share of total heat inside region '{name}' (fractions of width/height), excluding object pixels.",
    )


_ENTRIES = [
    _info("dead", False, 0, 1, BOOLEAN, False,
          "1 when the map sums to <= 0 or holds a non-finite value: no explanation (never counts as a pass)."),
    _info("area", None, 0, 1, CONTINUOUS, True,
          "A = |B| / |image|: share of the image covered by the union of the object boxes."),
    _info("object_area", None, 0, 1, CONTINUOUS, True,
          "|object| / |image|: the object region's share, the A of energy and lift (the mask's where the sample "
          "has one, else equal to area)."),
    _info("energy", True, 0, 1, CONTINUOUS, True,
          "E = sum(H * B) / sum(H): share of heat inside the boxes (energy pointing game, relevance mass)."),
    _info("lift", True, 0, math.inf, CONTINUOUS, True,
          "E / A: in-box heat relative to a uniform map (1 = no preference for the object)."),
    _info("excess", True, -1, 1, CONTINUOUS, True, "E - A: in-box heat above a uniform map."),
    _info("chance_corrected", True, -math.inf, 1, CONTINUOUS, True,
          "(E - A) / (1 - A): 0 = uniform map, 1 = all heat in the boxes; NaN when the box covers the image."),
    _info("relative_lift", True, -1, 1, CONTINUOUS, True,
          "log(lift) / log(1/A): lift as a fraction of its maximum 1/A on a log scale; 0 = uniform map, "
          "1 = all heat in the boxes, clipped to [-1, 1]; comparable across box sizes (NaN when A >= 0.99)."),
    _info("pointing_hit", True, 0, 1, BOOLEAN, True,
          "1 when every maximum of H lies within the tolerance of a box (pointing game, Zhang et al. 2016)."),
    _info("center_hit", None, 0, 1, BOOLEAN, True,
          "1 when the image centre lies within the tolerance of a box: the centre baseline of the pointing game."),
    _info("rank_accuracy", True, 0, 1, CONTINUOUS, True,
          "Share of the K = |B| hottest pixels that lie in the boxes (ties at the cut shared fractionally)."),
    _info("cam_box_iou", True, 0, 1, CONTINUOUS, True,
          "IoU of the bounding box of the largest component of H >= t * max(H) with the best-matching box."),
    _info("cam_box_hit", True, 0, 1, BOOLEAN, True, "1 when cam_box_iou >= the IoU threshold (0.5 by default)."),
    _info("ring_heat", False, 0, 1, CONTINUOUS, True,
          "Share of heat in the ring just outside the object boxes: each box grown by (w + h) / 4, at most 1/8 "
          "of the frame's shorter side, minus every object pixel (a mark beside the object)."),
    _info("ring_lift", False, 0, math.inf, CONTINUOUS, True,
          "ring_heat / the ring's share of the frame: 1 = a uniform map; a mark beside the object lifts it. "
          "NaN when the ring is empty (the objects fill the frame)."),
    _info("ring_side_lift", False, 1, 8, CONTINUOUS, True,
          "Which side of the object the heat just outside it sits on: the ring of pixels within 1/10 of the "
          "frame's shorter side of the object (its mask where it has one), cut into 8 octants about the object's "
          "centre; the hottest octant's heat density over the mean density of the octants with >= 4 ring pixels "
          "(1 = spread evenly around the object, 8 = all in one octant: a mark beside it). NaN when no octant "
          "counts or the ring holds no heat."),
    _info("ring_one_sided", False, 0, 1, BOOLEAN, True,
          "1 when ring_side_lift > 4: the ring's heat sits on one side of the object (a mark beside it; clean "
          "models' boundary heat spreads around)."),
    *[
        _info(f"corner_heat_{c}", False, 0, 1, CONTINUOUS, False,
              f"Share of heat in the {c} corner rectangle, excluding object pixels (watermark probe).")
        for c in CORNERS
    ],
    _info("corner_heat_max", False, 0, 1, CONTINUOUS, False, "Largest of the four corner heat shares."),
    *[
        _info(f"corner_lift_{c}", False, 0, math.inf, CONTINUOUS, False,
              f"Heat share of the {c} corner divided by its area share (object pixels excluded from both): "
              f"1 = a uniform map. NaN when objects cover over 75% of the corner.")
        for c in CORNERS
    ],
    _info("corner_lift_max", False, 0, math.inf, CONTINUOUS, False,
          "Largest corner lift of the image: finds a mark in whichever corner it sits (Decoy MNIST)."),
    _info("border_heat", False, 0, 1, CONTINUOUS, False,
          "Share of heat in a band along all four image edges, excluding object pixels."),
    *[
        _info(f"edge_lift_{e}", False, 0, math.inf, CONTINUOUS, False,
              f"Heat share of the {e} edge band (the border band's {e} side, full length, so the band's corner "
              f"squares count for two edges) divided by its area share, object pixels excluded from both: "
              f"1 = a uniform map. NaN when objects cover over 75% of the band.")
        for e in EDGES
    ],
    _info("edge_lift_max", False, 0, math.inf, CONTINUOUS, False,
          "Largest edge lift of the image: finds a strip or tag along whichever side it runs."),
    _info("centre_heat", None, 0, 1, CONTINUOUS, False,
          "Share of heat in the central 50% x 50% rectangle (a quarter of the image): with no boxes, where "
          "the evidence sits; 0.25 for a uniform map."),
    _info("correct", True, 0, 1, BOOLEAN, False,
          "1 when the model's prediction equals the label; for a multi-label head (K sigmoid units), when the "
          "label's probability is >= 0.5 (per-label detection).",
          PREDICTION),
    _info("confidence", None, 0, 1, CONTINUOUS, False,
          "Probability of the predicted class (the model's top output), which is the explained, labelled "
          "class only where the prediction is right.", PREDICTION),
    # counterfactual probes (validator.probes.counterfactual): forward passes on altered images
    _info("bg_only_correct", False, 0, 1, BOOLEAN, True,
          "1 when the model still predicts the class with the object boxes filled (background only).", PROBE),
    _info("bg_only_skill", False, -1, 1, CONTINUOUS, True,
          "(bg_only_correct - 1/C) / (1 - 1/C): its mean is background-only accuracy above chance "
          "(0 = chance, 1 = the background alone always gives the class).", PROBE),
    _info("bg_only_confidence", False, 0, 1, CONTINUOUS, True,
          "Probability of the true class on the background-only image.", PROBE),
    _info("object_only_correct", True, 0, 1, BOOLEAN, True,
          "1 when the model predicts the class with the object pasted on another class's background "
          "(Mixed-Rand).", PROBE),
    _info("bg_gap", False, -1, 1, CONTINUOUS, True,
          "correct - object_only_correct: its mean is the accuracy lost when the background is swapped for "
          "another class's, the paste's own cost included (bg_reliance takes it out).", PROBE),
    _info("mixed_same_correct", None, 0, 1, BOOLEAN, True,
          "1 when the model predicts the class with the object pasted, the same way, on the background of "
          "another image of its own class (Mixed-Same, the paste's control).", PROBE),
    _info("bg_reliance", False, -1, 1, CONTINUOUS, True,
          "mixed_same_correct - object_only_correct: its mean is the accuracy that follows the background's "
          "class with the paste's cost taken out (BG-gap, Xiao et al. 2020: Mixed-Same - Mixed-Rand); ~0 "
          "when the model ignores backgrounds, the cue's share of the accuracy for a shortcut.", PROBE),
    _info("confidence_drop", None, -1, 1, CONTINUOUS, True,
          "True-class probability on the image minus on the background-only image.", PROBE),
    # hot spots confirmed by ablation (validator.probes.hotspot): forward passes on altered images
    _info("hotspot_drop", False, -1, 1, CONTINUOUS, True,
          "Explained-class probability with an equal-area random background region filled minus with the "
          "hottest connected region outside the object filled: ~0 when the model ignores what the map's hot "
          "spot shows, large when it reads a mark there (needs the object's region: without it the hottest "
          "spot is most often the object itself).", PROBE),
    _info("hotspot_flip", False, -1, 1, CONTINUOUS, True,
          "1 when filling the hot spot turns a correct prediction wrong and filling the random region does "
          "not, -1 for the reverse, 0 otherwise: its mean is the accuracy the hot spot alone holds.", PROBE),
    # faithfulness (validator.probes.faithfulness): on a sample of the rows
    _info("deletion_auc", False, 0, 1, CONTINUOUS, False,
          "Area under the true-class probability as the hottest pixels are removed (Petsiuk et al. 2018): "
          "low = the map finds what the model uses.", PROBE, True),
    _info("insertion_auc", True, 0, 1, CONTINUOUS, False,
          "Area under the true-class probability as the hottest pixels are inserted into a blurred image.",
          PROBE, True),
    _info("faithfulness_gap", True, -1, 1, CONTINUOUS, False,
          "insertion_auc - deletion_auc of the map (its expected value for a map unrelated to the model "
          "depends on the image and the baseline: judge faithfulness_gain).", PROBE, True),
    _info("faithfulness_gain", True, -2, 2, CONTINUOUS, False,
          "faithfulness_gap minus the gap of a random order on the same image (the map shifted by a seeded "
          "random offset): > 0 = the map finds what the model uses better than chance, ~0 for a map unrelated "
          "to the image. NaN where the probe learnt nothing: the class probability moves by less than 0.05 "
          "along both orders' curves, the whole image deleted included.", PROBE, True,
          undefined=("faithfulness_gap", "the class probability moved by less than 0.05 along every curve, the "
                                         "whole image deleted included, for the map and the random order alike: "
                                         "the model does not react to the deletion baseline, so the probe learnt "
                                         "nothing")),
    # explainer sanity (validator.probes.sanity): on a sample of the rows
    _info("sanity_spearman", False, -1, 1, CONTINUOUS, False,
          "Spearman rank correlation of the map with the map of the same image after the model's weights "
          "are randomised (Adebayo et al. 2018): near 1 means the map does not depend on what the model "
          "learned.", SANITY, True),
]

METRICS: dict[str, MetricInfo] = {m.name: m for m in _ENTRIES}


def metric_info(name: str) -> MetricInfo:
    """Metadata for a metric name; ``region_<name>`` is accepted. Unknown names raise KeyError with a suggestion."""
    if name in METRICS:
        return METRICS[name]
    if name.startswith(REGION_PREFIX) and len(name) > len(REGION_PREFIX):
        return region_info(name[len(REGION_PREFIX):])
    close = difflib.get_close_matches(name, list(METRICS), n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    raise KeyError(f"unknown metric '{name}'{hint} Known: {', '.join(METRICS)}, region_<name>")
