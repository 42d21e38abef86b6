"""Validate a policy document (YAML file or dict) into a ``Policy``; every refusal is a PolicyError."""

from __future__ import annotations

import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

from validator.errors import PolicyError
from validator.explain.names import (
    FRACTION_OPTIONS,
    METHOD_OPTIONS,
    NULLABLE_OPTIONS,
    OPTION_CHOICES,
    OPTION_MINIMUM,
    POSITIVE_OPTIONS,
)
from validator.metrics import METRICS, MetricInfo, region_info
from validator.policy.fields import Fields, check_number
from validator.policy.model import (
    AGGREGATES,
    BASELINES,
    BOUNDS,
    BUILTIN_CHECK_IDS,
    FILLS,
    METHODS,
    MISSING_BASELINE,
    MULTIPLE_COMPARISONS,
    ON_MISSING,
    SEVERITIES,
    SLICE_MODES,
    SMALL_SLICE,
    Check,
    Explainer,
    Policy,
    Probes,
    SampleSpec,
    Waiver,
)
from validator.policy.source import Source, read_policy_file, suggest

BUILTIN_POLICIES = ("default", "strict", "example")
_CHECK_ID = re.compile(r"^[a-z0-9_.-]+$")
_REGION_NAME = re.compile(r"^[a-z0-9_]+$")
_TOP_KEYS = ("name", "version", "classes", "explainer", "sample", "probes", "regions", "on_missing_baseline",
             "multiple_comparisons", "checks", "waivers")
_CHECK_KEYS = ("id", "description", "metric", "aggregate", "threshold", "bound", "min", "max", "change",
               "severity", "slices", "min_samples", "on_missing", "with_masks")


def builtin_policy_path(name: str) -> Path:
    """Path of a policy shipped inside the package: 'default', 'strict' or 'example'."""
    if name not in BUILTIN_POLICIES:
        raise PolicyError(f"no built-in policy {name!r}" + suggest(name, BUILTIN_POLICIES))
    return Path(str(resources.files("validator") / "policies" / f"{name}.yaml"))


def default_policy_path() -> Path:
    """Path of the shipped default policy (validator/policies/default.yaml)."""
    return builtin_policy_path("default")


def load_policy(path_or_dict: str | Path | Mapping) -> Policy:
    """Read and validate a policy from a YAML file path or an already-parsed mapping."""
    if isinstance(path_or_dict, Mapping):
        data, source = path_or_dict, Source("<dict>")
    else:
        data, source = read_policy_file(path_or_dict)
    if not isinstance(data, Mapping):
        raise source.error("", f"the top level must be a mapping of keys (name, version, checks, ...), "
                               f"got {type(data).__name__}")
    policy = _policy(data, source)
    return policy


def metric_infos(policy_regions: Mapping[str, object]) -> dict[str, MetricInfo]:
    """Every metric a check may name: the built-in ones plus one ``region_<name>`` per declared region."""
    infos = dict(METRICS)
    infos.update({f"region_{r}": region_info(r) for r in policy_regions})
    return infos


def _policy(data: Mapping, source: Source) -> Policy:
    top = Fields(data, "", source, _TOP_KEYS, "the policy")
    version = top.raw_value("version", None)
    if version is None:
        raise top.error("version", "required key 'version' is missing")
    if isinstance(version, bool) or not isinstance(version, int | str):
        raise top.error("version", f"must be an integer or a string, got {version!r}")
    classes = _classes(top.raw_value("classes"), source)
    sample = _sample(top.raw_value("sample"), source)
    regions = _regions(top.raw_value("regions"), source)
    infos = metric_infos(regions)
    checks = _checks(top.raw_value("checks", []), source, classes, sample, infos)
    known_ids = [c.id for c in checks] + list(BUILTIN_CHECK_IDS)
    return Policy(
        name=top.string("name"),
        version=version,
        checks=checks,
        classes=classes,
        explainer=_explainer(top.raw_value("explainer"), source),
        sample=sample,
        probes=_probes(top.raw_value("probes"), source),
        regions=regions,
        on_missing_baseline=top.choice("on_missing_baseline", MISSING_BASELINE, "skip"),
        multiple_comparisons=top.choice("multiple_comparisons", MULTIPLE_COMPARISONS, "bonferroni"),
        waivers=_waivers(top.raw_value("waivers", []), source, known_ids, classes),
        source=source.name,
    )


def _classes(raw: object, source: Source) -> tuple[str, ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or not raw:
        raise source.error("classes", "must be a non-empty list of class names in model output order")
    for i, name in enumerate(raw):
        if not isinstance(name, str) or not name.strip():
            raise source.error(f"classes[{i}]", f"class names must be non-empty strings, got {name!r}")
        if name in raw[:i]:
            raise source.error(f"classes[{i}]", f"duplicate class name {name!r}")
    return tuple(raw)


def _explainer(raw: object, source: Source) -> Explainer:
    f = Fields(raw, "explainer", source, ("method", "layer", "batch_size", "options"), "explainer")
    method = f.choice("method", METHODS, "gradcam")
    known = METHOD_OPTIONS.get(method, {})
    opts = Fields(f.raw_value("options"), "explainer.options", source, tuple(known), f"options of method {method!r}")
    options = [(name, _explainer_option(opts, method, name, default)) for name, default in known.items()
               if name in opts.raw]
    return Explainer(method=method, layer=f.string("layer", None), batch_size=f.integer("batch_size", 32, lo=1),
                     options=tuple(options))


def _explainer_option(opts: Fields, method: str, name: str, default: object) -> object:
    """One ``explainer.options`` value, checked as the method itself will check it (type, choices, range)."""
    value = opts.raw[name]
    if value is None:
        nullable = NULLABLE_OPTIONS.get(method, {})
        if name in nullable:
            return None
        raise opts.error(name, f"must not be null (the default is {default!r})")
    if isinstance(default, str):
        choices = OPTION_CHOICES.get(method, {}).get(name)
        if choices is None:
            return opts.string(name)
        if not isinstance(value, str) or value not in choices:
            hint = suggest(value, choices, list_if_at_most=0) if isinstance(value, str) else ""  # the list is said
            raise opts.error(name, f"must be one of {', '.join(choices)}, got {value!r}{hint}")
        return value
    if isinstance(default, int) and not isinstance(default, bool):
        null = NULLABLE_OPTIONS.get(method, {}).get(name)
        lo = OPTION_MINIMUM.get(method, {}).get(name, 0)
        if null and (isinstance(value, bool) or not isinstance(value, int) or value < lo):
            raise opts.error(name, f"must be an integer >= {lo} or null ({null}), got {value!r}")
        return opts.integer(name, lo=lo)
    fraction = name in FRACTION_OPTIONS.get(method, ())
    number = opts.number(name, lo=0.0, hi=1.0 if fraction else 1e9,
                         what="a fraction of the image side" if fraction else "a non-negative number")
    if number == 0 and name in POSITIVE_OPTIONS.get(method, ()):
        raise opts.error(name, "must be > 0, got 0")
    return number


def _probes(raw: object, source: Source) -> Probes:
    top = Fields(raw, "probes", source, ("counterfactual", "hotspot", "faithfulness", "sanity", "discovery"),
                 "probes")
    raw_cf = top.raw_value("counterfactual")
    if isinstance(raw_cf, bool):  # `counterfactual: false` switches it off
        enabled, raw_cf = raw_cf, None
    else:
        enabled = True
    cf = Fields(raw_cf, "probes.counterfactual", source, ("enabled", "fill"), "probes.counterfactual")
    faith = Fields(top.raw_value("faithfulness"), "probes.faithfulness", source, ("samples", "steps", "baseline"),
                   "probes.faithfulness")
    hotspot = Fields(top.raw_value("hotspot"), "probes.hotspot", source, ("samples",), "probes.hotspot")
    sanity = Fields(top.raw_value("sanity"), "probes.sanity", source, ("samples", "stages"), "probes.sanity")
    disc = Fields(top.raw_value("discovery"), "probes.discovery", source, ("grid", "max_clusters"),
                  "probes.discovery")
    enabled_value = cf.raw_value("enabled", enabled)
    if not isinstance(enabled_value, bool):
        raise cf.error("enabled", f"must be true or false, got {enabled_value!r}")
    return Probes(
        counterfactual=enabled_value,
        fill=cf.choice("fill", FILLS, "tile"),
        hotspot_samples=hotspot.integer("samples", 200, lo=0),
        faithfulness_samples=faith.integer("samples", 32, lo=0),
        faithfulness_steps=faith.integer("steps", 2, lo=2),  # 1 step has no inner point: no gain to judge
        faithfulness_baseline=faith.choice("baseline", BASELINES, "blur"),
        sanity_samples=sanity.integer("samples", 32, lo=0),
        sanity_stages=sanity.integer("stages", 2, lo=1),
        discovery_grid=disc.integer("grid", 16, lo=2),
        max_clusters=disc.integer("max_clusters", 8, lo=1),
    )


def _sample(raw: object, source: Source) -> SampleSpec:
    keys = ("max_samples", "seed", "min_samples", "min_per_class", "max_box_area", "max_skipped_fraction",
            "on_small_class")
    f = Fields(raw, "sample", source, keys, "sample")
    return SampleSpec(
        # an explicit null means "explain every record"
        max_samples=None if "max_samples" in f.raw and f.raw["max_samples"] is None
        else f.integer("max_samples", 200, lo=1),
        seed=f.integer("seed", 0, lo=0),
        min_samples=f.integer("min_samples", 100, lo=1),
        min_per_class=f.integer("min_per_class", 30, lo=1),
        max_box_area=f.number("max_box_area", 0.5, lo=0.0, hi=1.0, what="the area fraction range"),
        max_skipped_fraction=f.number("max_skipped_fraction", 0.05, lo=0.0, hi=1.0,
                                      what="the fraction range"),
        on_small_class=f.choice("on_small_class", SMALL_SLICE, "not_judged"),
    )


def _regions(raw: object, source: Source) -> dict[str, tuple[float, float, float, float]]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise source.error("regions", "must be a mapping of name: [x0, y0, x1, y1] (fractions of the image)")
    regions = {}
    for name, box in raw.items():
        path = f"regions.{name}"
        if not isinstance(name, str) or not _REGION_NAME.fullmatch(name):
            raise source.error(path, f"region name {name!r} must match [a-z0-9_]+")
        if not isinstance(box, list) or len(box) != 4:
            raise source.error(path, f"must be [x0, y0, x1, y1] (four fractions of the image), got {box!r}")
        x0, y0, x1, y1 = (check_number(v, 0.0, 1.0, lambda m, p=path: source.error(p, m),
                                       "the image fraction range") for v in box)
        if not (x0 < x1 and y0 < y1):
            raise source.error(path, f"needs x0 < x1 and y0 < y1, got {box!r}")
        regions[name] = (x0, y0, x1, y1)
    return regions


def _checks(raw: object, source: Source, classes, sample: SampleSpec,
            infos: Mapping[str, MetricInfo]) -> tuple[Check, ...]:
    if not isinstance(raw, list):
        raise source.error("checks", "must be a list of checks")
    if not raw:
        raise source.error("checks", "the policy has no checks, so it would pass any model; add at least one "
                                     "(see policies/example.yaml)")
    checks: list[Check] = []
    for i, item in enumerate(raw):
        check = _check(item, f"checks[{i}]", source, classes, sample, infos)
        if any(c.id == check.id for c in checks):
            raise source.error(f"checks[{i}].id", f"duplicate check id {check.id!r}")
        checks.append(check)
    return tuple(checks)


def _check(raw: object, path: str, source: Source, classes, sample: SampleSpec,
           infos: Mapping[str, MetricInfo]) -> Check:
    f = Fields(raw, path, source, _CHECK_KEYS, "a check")
    check_id = f.string("id")
    if not _CHECK_ID.fullmatch(check_id):
        raise f.error("id", f"check id {check_id!r} must match [a-z0-9_.-]+")
    if check_id in BUILTIN_CHECK_IDS:
        raise f.error("id", f"{check_id!r} is the id of a built-in data check; choose another")
    metric = f.string("metric")
    if metric not in infos:
        hint = (f" (declare region {metric[7:]!r} under 'regions')" if metric.startswith("region_")
                else suggest(metric, infos))
        raise f.error("metric", f"unknown metric {metric!r}{hint}")
    info = infos[metric]
    aggregate = f.choice("aggregate", AGGREGATES, "mean")
    threshold = _threshold(f, metric, info, aggregate)
    # a rate is a share of samples: its bounds live in [0, 1] whatever the metric's own range
    lo, hi, what = ((0.0, 1.0, "the range of a rate") if aggregate == "rate"
                    else (info.lo, info.hi, f"the range of {metric}"))
    low = f.number("min", None, lo=lo, hi=hi, what=what)
    high = f.number("max", None, lo=lo, hi=hi, what=what)
    if low is not None and high is not None and low > high:
        raise f.error("min", f"min {low:g} is greater than max {high:g}")
    change = _change(f, metric, info)
    if low is None and high is None and change is None:
        raise f.error("min", "a check needs min, max or change")
    with_masks = _with_masks(f, low, high, lo, hi, what)
    severity = f.choice("severity", SEVERITIES, "fail")
    slices = _slices(f, classes)
    return Check(
        id=check_id, metric=metric, aggregate=aggregate, bound=f.choice("bound", BOUNDS, "point"),
        min=low, max=high, threshold=threshold, change=change, severity=severity,
        slices=slices, min_samples=f.integer("min_samples", sample.min_per_class, lo=1),
        # Too few samples: an overall slice is as serious as the check itself; a class slice follows
        # sample.on_small_class (default: not judged). Either can be set per check.
        on_missing=f.choice("on_missing", ON_MISSING,
                            severity if slices == "overall" else _small(sample.on_small_class, severity)),
        description=f.string("description", None),
        with_masks=with_masks,
    )


def _with_masks(f: Fields, low, high, lo: float, hi: float, what: str) -> dict | None:
    """``with_masks: {min: x, max: y}``: limits for data whose every object region is a mask. Each replaces a
    limit the check already has, so the direction of the check cannot change with the data."""
    raw = f.raw.get("with_masks")
    if raw is None:
        return None
    m = Fields(raw, f.key_path("with_masks"), f.source, ("min", "max"), "with_masks")
    limits = {key: m.number(key, None, lo=lo, hi=hi, what=what) for key in ("min", "max")}
    limits = {key: value for key, value in limits.items() if value is not None}
    if not limits:
        raise f.error("with_masks", "give min and/or max, e.g. {min: 0.1}")
    for key, own in (("min", low), ("max", high)):
        if key in limits and own is None:
            raise m.error(key, f"the check has no {key} for the mask limit to replace")
    new_low, new_high = limits.get("min", low), limits.get("max", high)
    if new_low is not None and new_high is not None and new_low > new_high:
        raise m.error("min", f"min {new_low:g} is greater than max {new_high:g}")
    return limits


_SMALL_RANK = {"not_judged": 0, "warn": 1, "inconclusive": 2, "fail": 3}


def _small(on_small_class: str, severity: str) -> str:
    """A class too small to judge: not judged, or at most as severe as the check. ``on_small_class: fail``
    asks for the check's own outcome (a warn check warns, an inconclusive one is inconclusive), never for
    more; ``warn`` caps it at WARN."""
    return min(on_small_class, severity, key=_SMALL_RANK.__getitem__)


def _threshold(f: Fields, metric: str, info: MetricInfo, aggregate: str) -> float | None:
    if f.raw.get("threshold") is None:
        if aggregate == "rate" and info.kind != "boolean":
            raise f.error("aggregate", f"aggregate 'rate' on continuous metric {metric!r} needs a threshold "
                                       f"(the share of samples with {metric} >= threshold)")
        return None
    if aggregate != "rate":
        raise f.error("threshold", f"threshold is only used with aggregate 'rate', not {aggregate!r}")
    if info.kind == "boolean":
        raise f.error("threshold", f"{metric!r} is boolean: its rate is the share of 1s; remove threshold")
    return f.number("threshold", None, lo=info.lo, hi=info.hi, what=f"the range of {metric}")


def _change(f: Fields, metric: str, info: MetricInfo) -> dict | None:
    raw = f.raw.get("change")
    if raw is None:
        return None
    c = Fields(raw, f.key_path("change"), f.source, ("absolute", "relative"), "change")
    if len(c.raw) != 1:
        raise f.error("change", "give exactly one of absolute or relative, e.g. {absolute: -0.05}")
    (kind,) = c.raw
    # relative -1 already allows a drop to zero; below that the tolerance means nothing
    value = c.number(kind, lo=-1.0 if kind == "relative" else -float("inf"), what="the allowed range")
    if info.higher_is_better is None:
        raise f.error("change", f"metric {metric!r} has no better direction, so a change tolerance is "
                                f"ambiguous; use min/max instead")
    return {kind: value}


def _slices(f: Fields, classes) -> str | tuple[str, ...]:
    raw = f.raw.get("slices")
    if raw is None:
        return "overall"
    if isinstance(raw, str):
        return f.choice("slices", SLICE_MODES)
    if not isinstance(raw, list) or not raw:
        raise f.error("slices", "must be 'overall', 'per_class' or a non-empty list of class names")
    for i, name in enumerate(raw):
        where = f"{f.key_path('slices')}[{i}]"
        if not isinstance(name, str) or not name:
            raise f.source.error(where, f"class names must be strings, got {name!r}")
        if classes is not None and name not in classes:
            raise f.source.error(where, f"class {name!r} is not in classes" + suggest(name, classes))
    return tuple(dict.fromkeys(raw))


def _waivers(raw: object, source: Source, known_ids: list[str], classes) -> tuple[Waiver, ...]:
    if not isinstance(raw, list):
        raise source.error("waivers", "must be a list of {check, slice, reason, expires}")
    waivers = []
    for i, item in enumerate(raw):
        f = Fields(item, f"waivers[{i}]", source, ("check", "slice", "reason", "expires"), "a waiver")
        check = f.string("check")
        if check not in known_ids:
            raise f.error("check", f"waiver names unknown check {check!r}" + suggest(check, known_ids))
        waivers.append(Waiver(check=check, slice=_waiver_slice(f, classes), reason=f.string("reason"),
                              expires=f.day("expires")))
    return tuple(waivers)


def _waiver_slice(f: Fields, classes) -> str | None:
    value = f.string("slice", None)
    if value is None or value == "overall":
        return value
    if not value.startswith("class=") or not value[6:]:
        raise f.error("slice", f"slice must be 'overall' or 'class=<name>', got {value!r}")
    if classes is not None and value[6:] not in classes:
        raise f.error("slice", f"class {value[6:]!r} is not in classes" + suggest(value[6:], classes))
    return value
