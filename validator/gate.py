"""The audit: data -> model -> explain -> metrics -> stats -> policy -> reports (-> tracking).

``audit()`` never exits the process and always writes the local verdict and reports, also on FAIL and ERROR.
"""

from __future__ import annotations

import contextlib
import difflib
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import date
from pathlib import Path

import numpy as np

from validator.errors import CamgateError, UsageError
from validator.interrupt import AuditInterrupted, interruptible
from validator.report.files import start_outputs
from validator.report.gallery import render_overlays, safe_name
from validator.scoring import explain_set
from validator.verdict import ERROR, EXIT_INCONCLUSIVE, FAIL, INCONCLUSIVE, PASS, WARN, Verdict

# Box area bins as fractions of the image, for the summary (small objects are where shortcuts hide).
# COCO's 32^2 / 96^2 px at 640x480 are 0.33% / 3% of the frame: nearly every object a gate audits would
# be "large" there, so the bins are set on the 2%-50% range gate samples span instead.
AREA_BINS = {"small": (0.0, 0.05), "medium": (0.05, 0.20), "large": (0.20, 1.0)}


@dataclass
class AuditOptions:
    """Everything that can be set on the command line; None means "take it from the policy"."""

    format: str | None = None
    images: str | None = None
    method: str | None = None
    method_options: dict | None = None  # the method's options (validator.explain.names.METHOD_OPTIONS)
    layer: str | None = None
    preprocess: str = "none"
    classes: str | list | None = None
    max_samples: int | None = None
    seed: int | None = None
    batch_size: int | None = None
    baseline: str | None = None
    fail_on: str = "fail"
    trust_model: bool = False
    today: date | None = None
    progress: Callable[[int, int], None] | None = None
    tracking: object | None = None  # validator.tracking.TrackingOptions; None = no MLflow
    extra_tags: dict = field(default_factory=dict)


class _Timer:
    def __init__(self):
        self.seconds: dict[str, float] = {}

    def add(self, stage: str, since: float) -> float:
        now = time.perf_counter()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + now - since
        return now


def audit(model, data, policy=None, out=None, **options) -> Verdict:
    """Audit ``model`` on the annotated set ``data`` under ``policy``; write every report into ``out``.

    Returns the :class:`~validator.verdict.Verdict` (status PASS/WARN/FAIL/ERROR, checks, output paths and the
    exit code the CLI would use). Errors are caught and reported as status ERROR, never raised.
    """
    started = time.perf_counter()
    model_label = model if isinstance(model, str | Path) else getattr(model, "name", "model")
    out_dir = Path(out) if out is not None else Path("camgate-report") / safe_name(model_label)
    verdict = Verdict(out_dir=out_dir, model=str(model_label), data=str(data))
    timer = _Timer()
    opts = AuditOptions()
    try:
        with interruptible():
            try:
                # Before anything can fail: no file of an earlier run may survive beside this run's verdict,
                # and until the final verdict replaces it, verdict.json says the audit did not finish.
                start_outputs(verdict)
                opts = _options(options)
                from validator.mlflow_models import (
                    registry_context,  # models:/ URIs resolve against --tracking-uri
                )

                with registry_context(opts.tracking):
                    _run(verdict, model, data, policy, opts, timer)
            except CamgateError as exc:
                verdict.set_error(str(exc), exc.exit_code)
            except MemoryError:
                verdict.set_error("out of memory: lower --batch-size or --max-samples", 3)
            except Exception as exc:  # the gate fails closed: an unexpected error is ERROR (exit 3), never a pass
                verdict.set_error(f"unexpected {type(exc).__name__}: {exc}", 3, traceback.format_exc())
    except AuditInterrupted as exc:
        verdict.set_error(f"interrupted by {exc.signal_name} during the audit: no verdict was reached", 3)
    verdict.wall_seconds = time.perf_counter() - started
    verdict.timings = timer.seconds
    _finish(verdict, opts, timer)
    return verdict


def _options(options: dict) -> AuditOptions:
    try:
        return AuditOptions(**options)
    except TypeError as exc:
        names = [f.name for f in fields(AuditOptions)]
        unknown = [k for k in options if k not in names]
        hint = ""
        if unknown:
            close = difflib.get_close_matches(unknown[0], names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UsageError(f"unknown audit option(s) {', '.join(map(repr, unknown)) or exc}{hint} "
                         f"Known: {', '.join(names)}") from exc


def _finish(verdict: Verdict, opts: AuditOptions, timer: _Timer) -> None:
    from validator.report.files import publish_to_github

    since = time.perf_counter()
    _write_all(verdict)
    since = timer.add("reports", since)
    if opts.tracking is not None:
        try:
            from validator.tracking import log_verdict

            log_verdict(verdict, opts.tracking)
        except CamgateError as exc:
            verdict.set_error(str(exc), exc.exit_code)
            _write_all(verdict)  # the local record must say why the gate errored
        except Exception as exc:  # never raised: an unexpected tracking failure is an ERROR like any other
            verdict.set_error(f"unexpected {type(exc).__name__} while logging to MLflow: {exc}", 3,
                              traceback.format_exc())
            _write_all(verdict)
        timer.add("mlflow", since)
        verdict.timings = timer.seconds
    # the job summary is a copy; the local reports and the exit code already say everything
    with contextlib.suppress(OSError):
        publish_to_github(verdict)


def _write_all(verdict: Verdict) -> None:
    from validator.report.files import write_minimal, write_reports

    try:
        write_reports(verdict)
    except Exception as exc:  # a report that cannot be written is an error, but still try tracking
        verdict.set_error(f"could not write reports to {verdict.out_dir}: {exc}", 3, traceback.format_exc())
        write_minimal(verdict)


def _run(verdict: Verdict, model, data, policy, opts: AuditOptions, timer: _Timer) -> None:
    from validator.data import check_num_classes, load_dataset, read_class_list, select_samples
    from validator.policy import default_policy_path, evaluate, gate_status, load_policy, waiver_report

    since = time.perf_counter()
    policy_obj = load_policy(policy if policy is not None else default_policy_path())
    verdict.policy = {
        "name": policy_obj.name,
        "version": policy_obj.version,
        "hash": policy_obj.content_hash,
        "source": str(policy_obj.source or "<dict>"),
        "content": policy_obj.to_dict(),
    }
    today = opts.today or date.today()
    verdict.waivers = waiver_report(policy_obj, today)
    if opts.fail_on not in ("fail", "warn"):
        raise UsageError(f"--fail-on must be 'fail' or 'warn', got '{opts.fail_on}'")
    verdict.fail_on = opts.fail_on

    from validator.model import load_model

    loaded = load_model(model, trust=opts.trust_model)
    verdict.model_name = loaded.name
    # the registry version audited (an alias may move before the verdict is recorded)
    verdict.audited_versions["model"] = loaded.registry_version

    class_list = opts.classes
    if isinstance(class_list, str | Path):
        class_list = read_class_list(class_list)
    if class_list is None and policy_obj.classes is not None:
        class_list = list(policy_obj.classes)
    dataset = load_dataset(data, format=opts.format, images_dir=opts.images, classes=class_list)
    check_num_classes(dataset, loaded.num_classes)
    seed = opts.seed if opts.seed is not None else policy_obj.sample.seed
    max_samples = opts.max_samples if opts.max_samples is not None else policy_obj.sample.max_samples
    samples = select_samples(dataset.samples, max_samples, seed, policy_obj.sample.min_per_class)
    since = timer.add("load", since)

    explainer_settings = _explainer_settings(policy_obj, opts)
    run = explain_set(loaded, samples, dataset.class_names, explainer_settings, regions=policy_obj.regions,
                      probes=policy_obj.probes, seed=seed, timer=timer, progress=opts.progress)
    verdict.explainer = run.settings
    verdict.sample = {
        "format": dataset.format,
        "source": dataset.source,
        "class_names": dataset.class_names,
        "seed": seed,
        "max_samples": max_samples,
        "n_selected": len(samples),
        "n_explained": run.n_rows,
        "n_images": dataset.n_images,
        "n_no_box": dataset.n_no_box,
        "n_large_box": int(np.sum(run.table["area"] > policy_obj.sample.max_box_area)),
        "n_dead": int(np.nansum(run.table["dead"])),
        "issue_counts": _issue_counts(dataset.issues + run.issues),
        "per_class": _per_class_counts(dataset, samples, run.table, policy_obj.sample.min_per_class),
        "area_bins": {name: list(edges) for name, edges in AREA_BINS.items()},
    }
    verdict.sample["not_judged_classes"] = [
        name for name, c in verdict.sample["per_class"].items() if not c["judged"]]
    verdict.data_issues = [issue.to_dict() for issue in dataset.issues + run.issues]
    verdict.table = run.table
    verdict.atlas = run.atlas
    verdict.probes = run.probes or {}
    verdict.discovery = run.discovery or {}

    baseline_table = None
    baseline_loaded = _load_baseline(opts, verdict)
    if baseline_loaded is not None:
        verdict.audited_versions["baseline"] = baseline_loaded.registry_version
    if baseline_loaded is not None:
        check_num_classes(dataset, baseline_loaded.num_classes)
        baseline_run = explain_set(baseline_loaded, samples, dataset.class_names, explainer_settings,
                                   regions=policy_obj.regions, timer=timer)
        baseline_table = baseline_run.table
        verdict.baseline = {"model": str(opts.baseline), "n_explained": baseline_run.n_rows}

    since = time.perf_counter()
    data_summary = {
        "n_read": len(dataset.samples),
        "n_skipped_read": _skipped_before_selection(dataset),
        "n_selected": len(samples),
        "n_skipped_selected": len(samples) - run.n_rows,
        # no box anywhere in the audited rows: checks that need boxes are not judged, the box-free ones judge
        "n_with_box": int(np.sum(np.isfinite(run.table["area"]))),
        "available_per_class": {k: v["available"] for k, v in verdict.sample["per_class"].items()},
    }
    results = evaluate(
        policy_obj, run.table, data_summary=data_summary, baseline_table=baseline_table, today=today, seed=seed
    )
    verdict.checks = [r.to_dict() for r in results]
    verdict.summary = _summarize(run.table, dataset.class_names, policy_obj, seed)
    timer.add("stats", since)
    verdict.status = gate_status(results)
    verdict.exit_code = _exit_code(verdict.status, opts.fail_on)

    since = time.perf_counter()
    verdict.overlays = render_overlays(loaded, samples, run, explainer_settings, verdict.out_dir)
    timer.add("overlays", since)


def _exit_code(status: str, fail_on: str) -> int:
    if status == INCONCLUSIVE:
        return EXIT_INCONCLUSIVE
    return 1 if status == FAIL or (status == WARN and fail_on == "warn") else 0


def _load_baseline(opts: AuditOptions, verdict: Verdict):
    """The baseline model, or None. A registry alias that does not exist yet (the very first model: no
    champion) is a missing baseline, handled by the policy's on_missing_baseline, not an error."""
    if opts.baseline is None:
        return None
    from validator.model import load_model

    try:
        return load_model(opts.baseline, trust=opts.trust_model)
    except CamgateError as exc:
        if type(exc).__name__ != "RegistryNotFoundError":
            raise
        verdict.baseline = {"model": str(opts.baseline), "missing": True, "reason": str(exc)}
        return None


def _per_class_counts(dataset, samples, table, min_per_class: int) -> dict[str, dict]:
    """Per class: records available in the data, selected, explained, and whether it reaches min_per_class."""
    def count(names) -> dict[str, int]:
        counts: dict[str, int] = {}
        for name in names:
            if name is not None:
                counts[name] = counts.get(name, 0) + 1
        return counts

    available = count(s.class_name for s in dataset.samples)
    selected = count(s.class_name for s in samples)
    explained = count(table["class_name"])
    return {
        name: {"available": available.get(name, 0), "selected": selected.get(name, 0),
               "explained": explained.get(name, 0), "judged": explained.get(name, 0) >= min_per_class}
        for name in dataset.class_names if name in available
    }


def _skipped_before_selection(dataset) -> int:
    # Records dropped while reading annotations (all boxes invalid, image file missing) never became samples.
    return sum(1 for issue in dataset.issues if issue.action == "skipped_sample")


def _issue_counts(issues) -> dict[str, int]:
    counts: dict[str, int] = {}
    for issue in issues:
        counts[issue.action] = counts.get(issue.action, 0) + 1
    return counts


def _explainer_settings(policy_obj, opts: AuditOptions) -> dict:
    method = opts.method or policy_obj.explainer.method
    return {
        "method": method,
        "layer": opts.layer or policy_obj.explainer.layer,
        "batch_size": opts.batch_size or policy_obj.explainer.batch_size,
        "preprocess": opts.preprocess,
        # the policy's options are for the policy's method; a method chosen on the command line takes its own
        "options": (dict(policy_obj.explainer.options) if method == policy_obj.explainer.method else {})
        | dict(opts.method_options or {}),
    }


def _summarize(table, class_names, policy_obj, seed) -> dict:
    from validator.metrics import METRICS
    from validator.stats import resamples_for, summarize

    names = np.asarray(table["class_name"], dtype=object)
    labelled = np.not_equal(names, None).astype(bool)
    slices = {"overall": labelled}
    for name in class_names:
        mask = (names == name).astype(bool)
        if mask.any():
            slices[f"class={name}"] = mask
    box_ok = np.isfinite(table["area"]) & (table["area"] <= policy_obj.sample.max_box_area)
    with np.errstate(invalid="ignore"):
        for name, (lo, hi) in AREA_BINS.items():
            in_bin = labelled & box_ok & (table["area"] >= lo) & (table["area"] < hi)
            if in_bin.any():
                slices[f"area={name}"] = in_bin
    masked = {}
    for key, values in table.items():
        info = METRICS.get(key)
        if info is not None and info.needs_box:
            masked[key] = np.where(box_ok, values, np.nan)
        else:
            masked[key] = values
    metrics = [m for m in METRICS if m in table and m != "area"] + [k for k in table if k.startswith("region_")]
    # the same resamples and seed as the checks: an interval shown is the interval a check judged
    return summarize(masked, metrics=metrics, slices=slices, seed=seed, n_resamples=resamples_for(0.95))


__all__ = ["audit", "AuditOptions", "Verdict", "PASS", "WARN", "FAIL", "ERROR"]
