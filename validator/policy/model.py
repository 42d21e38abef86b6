"""The validated policy as frozen dataclasses. Build them with ``load_policy``, not by hand."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import date

from validator.explain.names import METHOD_NAMES as METHODS  # noqa: F401  (one list, shared with the CLI)
from validator.stats import AGGREGATES  # noqa: F401  (the aggregates stats implements)

BOUNDS = ("point", "lower", "upper")
# "inconclusive": a violated check does not fail the gate but says the heatmap checks cannot be trusted
# (the explainer sanity check): their PASS and WARN become INCONCLUSIVE.
SEVERITIES = ("fail", "warn", "inconclusive")
SLICE_MODES = ("overall", "per_class")
MISSING_BASELINE = ("skip", "fail")
# What a slice with fewer samples than it needs becomes: its own outcome (default for classes) or a severity.
SMALL_SLICE = ("not_judged", "warn", "fail")
ON_MISSING = (*SMALL_SLICE, "inconclusive")
FILLS = ("tile", "mean", "blur", "inpaint")  # how the counterfactual probe fills the object boxes
BASELINES = ("blur", "zero", "mean")  # what deletion / insertion replace pixels with
# Family-wise error control over the per-class slices of one check.
MULTIPLE_COMPARISONS = ("bonferroni", "none")
# Ids of the data checks evaluate() always runs; waivers may name them, checks may not reuse them.
BUILTIN_CHECK_IDS = ("data.min_samples", "data.min_per_class", "data.skipped")


@dataclass(frozen=True)
class Explainer:
    method: str = "gradcam"
    layer: str | None = None
    batch_size: int = 32
    options: tuple = ()  # (name, value) pairs of the method's options (validator.explain.names.METHOD_OPTIONS)


@dataclass(frozen=True)
class SampleSpec:
    max_samples: int | None = 200  # None: explain every record
    seed: int = 0
    min_samples: int = 100
    min_per_class: int = 30
    max_box_area: float = 0.5
    max_skipped_fraction: float = 0.05
    on_small_class: str = "not_judged"  # a class below min_per_class: not_judged | warn | fail


@dataclass(frozen=True)
class Probes:
    """Checks that do not read the heatmap alone (DESIGN.md section 5). ``*_samples`` 0 switches one off."""

    counterfactual: bool = True  # background-only and Mixed-Rand forward passes on every audited image
    fill: str = "tile"
    # deletion / insertion against a random order: 4 * steps - 3 forward passes per image (5 at 2 steps)
    hotspot_samples: int = 200  # hot spot vs random region filled: 2 forward passes per image, on this many
    faithfulness_samples: int = 32
    faithfulness_steps: int = 2  # >= 2: with one step the map and the random order share every point
    faithfulness_baseline: str = "blur"
    sanity_samples: int = 32  # cascading weight randomisation: one explain pass per stage
    sanity_stages: int = 2  # the check reads the last stage (every layer); the stages nest, so it is the same
    discovery_grid: int = 16  # heat atlas and SpRAy clusters on grid x grid downsampled maps
    max_clusters: int = 8

    def to_dict(self) -> dict:
        return {
            "counterfactual": {"enabled": self.counterfactual, "fill": self.fill},
            "hotspot": {"samples": self.hotspot_samples},
            "faithfulness": {"samples": self.faithfulness_samples, "steps": self.faithfulness_steps,
                             "baseline": self.faithfulness_baseline},
            "sanity": {"samples": self.sanity_samples, "stages": self.sanity_stages},
            "discovery": {"grid": self.discovery_grid, "max_clusters": self.max_clusters},
        }


@dataclass(frozen=True)
class Check:
    id: str
    metric: str
    aggregate: str = "mean"
    bound: str = "point"
    min: float | None = None
    max: float | None = None
    threshold: float | None = None
    change: dict | None = None  # {"absolute": x} or {"relative": x}
    severity: str = "fail"
    slices: str | tuple[str, ...] = "overall"  # "overall", "per_class" or class names
    min_samples: int = 30
    on_missing: str = "fail"  # not_judged | warn | fail
    description: str | None = None
    # {"min": x} and/or {"max": y}: the limits that replace min/max where every object region is a mask
    # (a mask is tighter than its box, so heat and paste scores shift; calibrated separately)
    with_masks: dict | None = None

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "description": self.description,
            "metric": self.metric,
            "aggregate": self.aggregate,
            "threshold": self.threshold,
            "bound": self.bound,
            "min": self.min,
            "max": self.max,
            "change": dict(self.change) if self.change else None,
            "severity": self.severity,
            "slices": self.slices if isinstance(self.slices, str) else list(self.slices),
            "min_samples": self.min_samples,
            "on_missing": self.on_missing,
            # only when set: a policy that does not use it keeps its hash
            **({"with_masks": dict(self.with_masks)} if self.with_masks else {}),
        }


@dataclass(frozen=True)
class Waiver:
    check: str
    reason: str
    expires: date
    slice: str | None = None  # None: every slice of the check

    def is_active(self, today: date) -> bool:
        """Active through its expiry day."""
        return self.expires >= today

    def to_dict(self) -> dict:
        return {"check": self.check, "slice": self.slice, "reason": self.reason,
                "expires": self.expires.isoformat()}


@dataclass(frozen=True)
class Policy:
    name: str
    version: int | str
    checks: tuple[Check, ...] = ()
    classes: tuple[str, ...] | None = None
    explainer: Explainer = field(default_factory=Explainer)
    sample: SampleSpec = field(default_factory=SampleSpec)
    probes: Probes = field(default_factory=Probes)
    regions: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)
    on_missing_baseline: str = "skip"
    multiple_comparisons: str = "bonferroni"
    waivers: tuple[Waiver, ...] = ()
    source: str | None = field(default=None, compare=False)  # file it was read from; not hashed

    def to_dict(self) -> dict:
        """Plain JSON-able dict of the validated policy, defaults filled in."""
        return {
            "name": self.name,
            "version": self.version,
            "classes": list(self.classes) if self.classes is not None else None,
            "explainer": {"method": self.explainer.method, "layer": self.explainer.layer,
                          "batch_size": self.explainer.batch_size, "options": dict(self.explainer.options)},
            "sample": {
                "max_samples": self.sample.max_samples,
                "seed": self.sample.seed,
                "min_samples": self.sample.min_samples,
                "min_per_class": self.sample.min_per_class,
                "max_box_area": self.sample.max_box_area,
                "max_skipped_fraction": self.sample.max_skipped_fraction,
                "on_small_class": self.sample.on_small_class,
            },
            "probes": self.probes.to_dict(),
            "regions": {k: list(v) for k, v in self.regions.items()},
            "on_missing_baseline": self.on_missing_baseline,
            "multiple_comparisons": self.multiple_comparisons,
            "checks": [c.to_dict() for c in self.checks],
            "waivers": [w.to_dict() for w in self.waivers],
        }

    @property
    def content_hash(self) -> str:
        """First 12 hex chars of sha256 over the canonical JSON: same rules, same hash, whatever the layout."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]

    @property
    def baseline_probes(self) -> Probes | None:
        """The probes a baseline run needs: the policy's, when a change check reads a column only the probes
        write (a probe, sanity or faithfulness metric); else None, and the baseline costs one explain pass."""
        from validator.metrics.registry import HEATMAP, PREDICTION
        from validator.policy.schema import metric_infos

        infos = metric_infos(self.regions)
        probed = [c for c in self.checks
                  if c.change and c.metric in infos and infos[c.metric].source not in (HEATMAP, PREDICTION)]
        return self.probes if probed else None

    def check(self, check_id: str) -> Check:
        """The check with this id (KeyError if none)."""
        for c in self.checks:
            if c.id == check_id:
                return c
        raise KeyError(check_id)
