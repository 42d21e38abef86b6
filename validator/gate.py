"""The audit: data -> model -> explain -> metrics -> stats -> policy -> reports (-> tracking).

``audit()`` never exits the process and always writes the local verdict and reports, also on FAIL and ERROR.
"""

from __future__ import annotations

import contextlib
import difflib
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import date
from pathlib import Path

import numpy as np

from validator.errors import EXIT_FAIL, EXIT_PASS, CamgateError, UsageError
from validator.interrupt import AuditInterrupted, interruptible, received
from validator.report.files import refuse_foreign_outputs, refuse_inputs_in, start_outputs
from validator.report.gallery import render_overlays, safe_name
from validator.scoring import explain_set
from validator.verdict import ERROR, EXIT_INCONCLUSIVE, FAIL, INCONCLUSIVE, PARTIAL, PASS, WARN, Verdict

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
    score_on: str = "auto"  # "host" (NumPy) | "device" (TensorFlow, beside the maps) | "auto": device on a GPU
    shard: str | None = None  # "I/N": explain only that shard and write its shard.npz (validator.shard)
    backend: str = "local"  # "local" | "ray" (validator.ray_backend)
    workers: int | None = None  # Ray: actors (default: the cluster's CPUs, or its GPUs with gpus_per_worker)
    gpus_per_worker: float = 0.0
    ray_address: str | None = None  # Ray: an existing cluster (default: a local one on 127.0.0.1)
    #: "ignore": stored pixels, boxes in stored-pixel coordinates (COCO's convention); "apply": each image turned
    #: by its EXIF orientation, boxes and masks read in that displayed frame (validator.data.images)
    exif_orientation: str = "ignore"


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
    exit code the CLI would use). Errors are caught and reported as status ERROR, never raised. An ``out`` that
    is or holds an input (the model, the data file, the images folder) is ERROR (exit 2) with nothing written.
    """
    model_label = model if isinstance(model, str | Path) else getattr(model, "name", "model")
    out_dir = Path(out) if out is not None else Path("camgate-report") / safe_name(model_label)
    verdict = Verdict(out_dir=out_dir, model=str(model_label), data=str(data))
    inputs = [("the model", model), ("the --data annotations", data), ("the --images folder", options.get("images")),
              ("the --baseline model", options.get("baseline"))]
    if _refused_out(verdict, inputs):
        return verdict
    return _guarded(verdict, options, lambda opts, timer: _run(verdict, model, data, policy, opts, timer))


def merge(shards, out=None, **options) -> Verdict:
    """Combine the shard audits ``shards`` (their ``--out`` folders or ``shard.npz`` files) and judge once.

    The verdict is the one a single-process audit of the same samples gives (checks, intervals, tables, atlas
    and clusters; only timings differ). Options as :func:`audit`: ``fail_on``, ``tracking``, ``today``,
    ``trust_model`` (for the overlays, rendered when the model and data recorded in the shards are readable)."""
    shards = [shards] if isinstance(shards, str | Path) else list(shards)
    out_dir = Path(out) if out is not None else Path("camgate-report") / "merged"
    verdict = Verdict(out_dir=out_dir, model="<shards>", data="<shards>")
    if _refused_out(verdict, _merge_inputs(shards)):
        return verdict
    return _guarded(verdict, options, lambda opts, timer: _merge(verdict, shards, opts, timer))


def _refused_out(verdict: Verdict, inputs: list) -> bool:
    """An ``out`` that holds an input, or a file with a report's name the gate did not write (its manifest,
    report.files.MANIFEST), is refused (exit 2) before anything is cleared, and nothing is written."""
    try:
        refuse_inputs_in(verdict.out_dir, inputs)
        refuse_foreign_outputs(verdict.out_dir)
    except UsageError as exc:
        verdict.set_error(str(exc), exc.exit_code)
        return True
    return False


def _merge_inputs(shards: list) -> list:
    """The shard files, and the model and data each recorded (the merge reads them for its overlays)."""
    from validator.shard import SHARD_FILE, read_meta

    files = [Path(s) / SHARD_FILE if Path(s).is_dir() else Path(s) for s in shards]
    inputs = [("the shard file", path) for path in files]
    for path in files:
        try:
            source = read_meta(path)["context"]["source"]
        except Exception:  # an unreadable shard is the merge's error to report, with its reason
            continue
        inputs += [("the model the shards recorded", source.get("model")),
                   ("the data the shards recorded", source.get("data")),
                   ("the images folder the shards recorded", source.get("images"))]
    return inputs


def _guarded(verdict: Verdict, options: dict, body) -> Verdict:
    """Run ``body(opts, timer)``; any error becomes status ERROR; the reports are always written."""
    started = time.perf_counter()
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
                    body(opts, timer)
            except CamgateError as exc:
                verdict.set_error(str(exc), exc.exit_code)
            except MemoryError:
                verdict.set_error("out of memory: lower --batch-size or --max-samples", 3)
            except Exception as exc:  # the gate fails closed: an unexpected error is ERROR (exit 3), never a pass
                verdict.set_error(f"unexpected {type(exc).__name__}: {exc}", 3, traceback.format_exc())
    except AuditInterrupted as exc:
        interrupted = exc
    else:
        # a stop signal whose exception a library swallowed (see validator.interrupt): still a stop
        interrupted = AuditInterrupted(received()) if received() else None
    if interrupted is not None:
        verdict.set_error(f"interrupted by {interrupted.signal_name} during the audit: no verdict was reached", 3)
    verdict.wall_seconds = time.perf_counter() - started
    verdict.timings = timer.seconds
    _finish(verdict, opts, timer)
    if interrupted is not None:
        # the reports say ERROR; now the stop goes on to the caller (a script auditing models in a loop, a
        # training callback), who asked for it: swallowing it would leave the job running until SIGKILL
        interrupted.verdict = verdict
        raise interrupted
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
    from validator.report.files import publish_to_github, refresh_html

    since = time.perf_counter()
    _write_all(verdict)
    since = timer.add("reports", since)
    if opts.tracking is not None and opts.shard is None:  # a shard logs nothing: the merge does
        try:
            from validator.tracking import log_verdict

            log_verdict(verdict, opts.tracking)
            with contextlib.suppress(OSError):  # the local report links the run it was recorded in
                refresh_html(verdict)
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


@dataclass
class _Prepared:
    """What the explaining needs, and ``context``: what the judging needs, JSON-ready (a shard keeps it)."""

    policy: object
    loaded: object
    baseline: object  # the baseline LoadedModel or None
    dataset: object
    samples: list
    settings: dict
    seed: int
    context: dict


def _run(verdict: Verdict, model, data, policy, opts: AuditOptions, timer: _Timer) -> None:
    prep = _prepare(verdict, model, data, policy, opts, timer)
    regions = prep.policy.regions
    if opts.shard is not None:
        _run_shard(verdict, prep, opts, timer)
        return
    if opts.backend == "ray":
        from validator.ray_backend import run_on_ray
        from validator.shard import check_shards, merge_runs

        partials = check_shards(run_on_ray(prep, verdict, opts, timer))
        since = time.perf_counter()
        run = merge_runs(partials)
        baseline_run = merge_runs(partials, "baseline") if prep.baseline is not None else None
        timer.add("merge", since)
        verdict.shards = {**(verdict.shards or {}), "rows": [p.meta["runs"]["main"]["rows"] for p in partials]}
    elif opts.backend == "local":
        run = explain_set(prep.loaded, prep.samples, prep.dataset.class_names, prep.settings, regions=regions,
                          probes=prep.policy.probes, seed=prep.seed, timer=timer, progress=opts.progress)
        baseline_run = None
        if prep.baseline is not None:
            baseline_run = explain_set(prep.baseline, prep.samples, prep.dataset.class_names, prep.settings,
                                       regions=regions, probes=prep.policy.baseline_probes, seed=prep.seed,
                                       timer=timer)
    else:
        raise UsageError(f"--backend must be 'local' or 'ray', got {opts.backend!r}")
    _judge(verdict, prep.policy, prep.context, run, baseline_run, opts, timer)
    since = time.perf_counter()
    verdict.overlays = render_overlays(prep.loaded, prep.samples, run, prep.settings, verdict.out_dir)
    timer.add("overlays", since)


def _run_shard(verdict: Verdict, prep: _Prepared, opts: AuditOptions, timer: _Timer) -> None:
    """Explain this shard's chunks and write its shard.npz; the policy is judged by the merge, not here."""
    from validator.shard import ShardSpec, make_partial

    spec = ShardSpec.parse(opts.shard)
    runs = {"main": explain_set(prep.loaded, prep.samples, prep.dataset.class_names, prep.settings,
                                regions=prep.policy.regions, probes=prep.policy.probes, seed=prep.seed, timer=timer,
                                progress=opts.progress, shard=spec, partial=True)}
    if prep.baseline is not None:
        runs["baseline"] = explain_set(prep.baseline, prep.samples, prep.dataset.class_names, prep.settings,
                                       regions=prep.policy.regions, probes=prep.policy.baseline_probes,
                                       seed=prep.seed, timer=timer, shard=spec, partial=True)
    since = time.perf_counter()
    partial = make_partial(spec, prep.context, runs)
    partial.meta["timings"] = dict(timer.seconds)
    path = partial.write(verdict.out_dir)
    timer.add("shard", since)
    verdict.explainer = runs["main"].settings
    verdict.table = runs["main"].table or None
    verdict.data_issues = [i.to_dict() for i in runs["main"].issues]
    verdict.shards = {"index": spec.index + 1, "count": spec.count, "rows": runs["main"].n_rows, "file": str(path)}
    verdict.status, verdict.exit_code = PARTIAL, 0


def _prepare(verdict: Verdict, model, data, policy, opts: AuditOptions, timer: _Timer) -> _Prepared:
    from validator.data import check_num_classes, read_class_list
    from validator.policy import default_policy_path, load_policy

    since = time.perf_counter()
    policy_obj = load_policy(policy if policy is not None else default_policy_path())
    verdict.policy = {
        "name": policy_obj.name,
        "version": policy_obj.version,
        "hash": policy_obj.content_hash,
        "source": str(policy_obj.source or "<dict>"),
        "content": policy_obj.to_dict(),
    }
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
    seed = opts.seed if opts.seed is not None else policy_obj.sample.seed
    max_samples = opts.max_samples if opts.max_samples is not None else policy_obj.sample.max_samples
    dataset, samples = _sample(data, opts.format, opts.images, class_list, max_samples, seed,
                               policy_obj.sample.min_per_class, loaded.num_classes, opts.exif_orientation)
    baseline_loaded = _load_baseline(opts, verdict)
    if baseline_loaded is not None:
        verdict.audited_versions["baseline"] = baseline_loaded.registry_version
        check_num_classes(dataset, baseline_loaded.num_classes)
    since = timer.add("load", since)

    settings = _explainer_settings(policy_obj, opts)
    context = {
        "model": verdict.model, "model_name": loaded.name, "data": verdict.data, "policy": verdict.policy,
        "audited_versions": verdict.audited_versions, "seed": seed, "max_samples": max_samples,
        "n_samples": len(samples), "batch_size": settings["batch_size"], "explainer": settings,
        "probes_enabled": policy_obj.probes is not None, "baseline": verdict.baseline or (
            {"model": str(opts.baseline)} if baseline_loaded is not None else None),
        # to find the images again (the merge re-renders the overlays)
        "source": {"model": str(model) if isinstance(model, str | Path) else None, "data": str(data),
                   "format": opts.format, "images": opts.images, "classes": class_list,
                   "preprocess": opts.preprocess, "exif_orientation": opts.exif_orientation},
        "facts": _data_facts(dataset, samples, opts.exif_orientation),
    }
    return _Prepared(policy_obj, loaded, baseline_loaded, dataset, samples, settings, seed, context)


def _sample(data, data_format, images, classes, max_samples, seed, min_per_class, num_classes,
            exif_orientation="ignore"):
    """(dataset, the seeded stratified sample): what an audit explains and a merge re-finds for its overlays."""
    from validator.data import check_num_classes, load_dataset, select_samples

    dataset = load_dataset(data, format=data_format, images_dir=images, classes=classes,
                           exif_orientation=exif_orientation)
    check_num_classes(dataset, num_classes)
    return dataset, select_samples(dataset.samples, max_samples, seed, min_per_class)


def _class_counts(names) -> dict[str, int]:
    return dict(Counter(name for name in names if name is not None))


def _data_facts(dataset, samples, exif_orientation="ignore") -> dict:
    """What the verdict says about the data, from the whole set (every shard computes the same)."""
    count = _class_counts
    return {"format": dataset.format, "source": dataset.source, "class_names": list(dataset.class_names),
            "exif_orientation": exif_orientation,
            "n_images": dataset.n_images, "n_no_box": dataset.n_no_box, "n_read": len(dataset.samples),
            "n_skipped_read": _skipped_before_selection(dataset), "n_out_of_scope": _out_of_scope(dataset),
            "issues": [i.to_dict() for i in dataset.issues],
            "available": count(s.class_name for s in dataset.samples), "selected": count(s.class_name for s in samples)}


def _judge(verdict: Verdict, policy_obj, context: dict, run, baseline_run, opts: AuditOptions, timer: _Timer) -> None:
    """Tables in, verdict out: the sample summary, the checks, the statistics and the status."""
    from validator.policy import evaluate, gate_status, waiver_report

    facts, seed = context["facts"], context["seed"]
    today = opts.today or date.today()
    verdict.waivers = waiver_report(policy_obj, today)
    verdict.explainer = run.settings
    per_class = _per_class_counts(facts, run.table, policy_obj.sample.min_per_class)
    issues = facts["issues"] + [issue.to_dict() for issue in run.issues]
    verdict.sample = {
        "format": facts["format"],
        "source": facts["source"],
        "class_names": facts["class_names"],
        "seed": seed,
        "max_samples": context["max_samples"],
        "n_selected": context["n_samples"],
        "n_explained": run.n_rows,
        "n_images": facts["n_images"],
        "n_no_box": facts["n_no_box"],
        # records of classes outside --classes: not audited and not skipped (shards of older versions lack it)
        "n_out_of_scope": facts.get("n_out_of_scope", 0),
        # how EXIF orientation was read (shards of older versions lack it: they ignored it)
        "exif_orientation": facts.get("exif_orientation", "ignore"),
        "n_large_box": int(np.sum(run.table["area"] > policy_obj.sample.max_box_area)),
        "n_dead": int(np.nansum(run.table["dead"])),
        "issue_counts": _issue_counts(issues),
        "per_class": per_class,
        "area_bins": {name: list(edges) for name, edges in AREA_BINS.items()},
    }
    verdict.sample["not_judged_classes"] = [name for name, c in per_class.items() if not c["judged"]]
    verdict.data_issues = issues
    verdict.table = run.table
    verdict.atlas = run.atlas
    verdict.probes = run.probes or {}
    verdict.discovery = run.discovery or {}
    baseline_table = None
    if baseline_run is not None:
        baseline_table = baseline_run.table
        verdict.baseline = {"model": str(opts.baseline or context["baseline"]["model"]),
                            "n_explained": baseline_run.n_rows}

    since = time.perf_counter()
    data_summary = {
        "n_read": facts["n_read"],
        "n_skipped_read": facts["n_skipped_read"],
        "n_selected": context["n_samples"],
        "n_skipped_selected": context["n_samples"] - run.n_rows,
        "n_out_of_scope": facts.get("n_out_of_scope", 0),
        # no box anywhere in the audited rows: checks that need boxes are not judged, the box-free ones judge
        "n_with_box": int(np.sum(np.isfinite(run.table["area"]))),
        "available_per_class": {k: v["available"] for k, v in per_class.items()},
    }
    results = evaluate(
        policy_obj, run.table, data_summary=data_summary, baseline_table=baseline_table, today=today, seed=seed
    )
    verdict.checks = [r.to_dict() for r in results]
    from validator.policy.finding import finding
    from validator.policy.schema import metric_infos

    verdict.finding = finding(results, run.table, metric_infos(policy_obj.regions))
    verdict.summary = _summarize(run.table, facts["class_names"], policy_obj, seed, facts["available"])
    _show_judged_intervals(verdict.summary, verdict.checks)
    timer.add("stats", since)
    verdict.status = gate_status(results)
    verdict.exit_code = _exit_code(verdict.status, opts.fail_on)


def _merge(verdict: Verdict, shard_paths: list, opts: AuditOptions, timer: _Timer) -> None:
    from validator.policy import load_policy
    from validator.shard import Partial, check_shards, merge_runs

    since = time.perf_counter()
    partials = check_shards([Partial.read(path) for path in shard_paths])
    context = partials[0].meta["context"]
    verdict.model, verdict.data, verdict.model_name = context["model"], context["data"], context["model_name"]
    verdict.policy = context["policy"]
    verdict.audited_versions = context["audited_versions"]
    verdict.baseline = context["baseline"]
    if opts.fail_on not in ("fail", "warn"):
        raise UsageError(f"--fail-on must be 'fail' or 'warn', got '{opts.fail_on}'")
    verdict.fail_on = opts.fail_on
    policy_obj = load_policy(context["policy"]["content"])
    timer.add("load", since)
    since = time.perf_counter()
    run = merge_runs(partials)
    baseline_run = merge_runs(partials, "baseline") if "baseline" in partials[0].meta["runs"] else None
    timer.add("merge", since)
    verdict.shards = {"backend": "files", "count": len(partials),
                      "rows": [p.meta["runs"]["main"]["rows"] for p in partials],
                      "files": [str(path) for path in shard_paths],
                      "timings": [p.meta.get("timings", {}) for p in partials]}
    _judge(verdict, policy_obj, context, run, baseline_run, opts, timer)
    since = time.perf_counter()
    verdict.overlays, verdict.shards["overlays"] = _merged_overlays(context, policy_obj, run, opts, verdict.out_dir)
    timer.add("overlays", since)


def _merged_overlays(context: dict, policy_obj, run, opts: AuditOptions, out_dir: Path) -> tuple[list, str]:
    """The overlays, re-rendered from the model and images the shards recorded when both can be read here."""
    from validator.model import load_model

    source = context["source"]
    if source["model"] is None:
        return [], "not rendered: the shards audited an in-memory model"
    try:
        loaded = load_model(source["model"], trust=opts.trust_model)
        _, samples = _sample(source["data"], source["format"], source["images"], source["classes"],
                             context["max_samples"], context["seed"], policy_obj.sample.min_per_class,
                             loaded.num_classes, source.get("exif_orientation", "ignore"))
    except CamgateError as exc:
        return [], f"not rendered: {exc}"
    settings = {**context["explainer"], "preprocess": source["preprocess"]}
    return render_overlays(loaded, samples, run, settings, out_dir), "rendered"


def _exit_code(status: str, fail_on: str) -> int:
    if status == INCONCLUSIVE:
        return EXIT_INCONCLUSIVE
    return EXIT_FAIL if status == FAIL or (status == WARN and fail_on == "warn") else EXIT_PASS


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


def _per_class_counts(facts: dict, table, min_per_class: int) -> dict[str, dict]:
    """Per class: records available in the data, selected, explained, and whether it reaches min_per_class."""
    explained = _class_counts(table["class_name"])
    available, selected = facts["available"], facts["selected"]
    return {
        name: {"available": available.get(name, 0), "selected": selected.get(name, 0),
               "explained": explained.get(name, 0), "judged": explained.get(name, 0) >= min_per_class}
        for name in facts["class_names"] if name in available
    }


def _skipped_before_selection(dataset) -> int:
    # Records dropped while reading annotations (all boxes invalid, image file missing) never became samples.
    return sum(1 for issue in dataset.issues if issue.action == "skipped_sample")


def _out_of_scope(dataset) -> int:
    # Records whose every class lies outside --classes: an audit of a subset, not unreadable data.
    from validator.data.records import OUT_OF_SCOPE

    return sum(1 for issue in dataset.issues if issue.action == OUT_OF_SCOPE)


def _issue_counts(issues: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for issue in issues:
        counts[issue["action"]] = counts.get(issue["action"], 0) + 1
    return counts


def _explainer_settings(policy_obj, opts: AuditOptions) -> dict:
    method = opts.method or policy_obj.explainer.method
    return {
        "method": method,
        "layer": opts.layer or policy_obj.explainer.layer,
        "batch_size": opts.batch_size or policy_obj.explainer.batch_size,
        "preprocess": opts.preprocess,
        "score_on": opts.score_on,
        # the policy's options are for the policy's method; a method chosen on the command line takes its own
        "options": (dict(policy_obj.explainer.options) if method == policy_obj.explainer.method else {})
        | dict(opts.method_options or {}),
    }


def _summarize(table, class_names, policy_obj, seed, available=None) -> dict:
    """Every metric's aggregates per slice. The slices that pool classes (overall, box area) are
    post-stratified to the data's class counts ``available``, as the checks' overall slice is."""
    from validator.metrics import METRICS
    from validator.stats import post_stratified_weights, resamples_for, summarize

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
    weights = post_stratified_weights(names, available)
    pooled = {} if weights is None else {k: weights for k in slices if not k.startswith("class=")}
    # the same resamples and seed as the checks: an interval shown is the interval a check judged
    return summarize(masked, metrics=metrics, slices=slices, seed=seed, n_resamples=resamples_for(0.95),
                     weights=pooled)


def _show_judged_intervals(summary: dict, checks: list[dict]) -> None:
    """Put the interval a class-slice check judged, with its level, in place of the summary's 95% one.

    Class slices are judged at a Bonferroni-adjusted level (validator.policy.evaluate.slice_confidence);
    showing the 95% interval beside them would show an interval nothing judged. Where checks judge the same
    class aggregate at different levels, the widest (highest level) is shown; each check's own interval is
    in its row of the checks table."""
    for c in checks:
        entry = (summary.get(c["slice"]) or {}).get(c["metric"], {}).get(c["aggregate"])
        if entry is None or not c["slice"].startswith("class=") or c["confidence"] <= entry.get("confidence", 0.95):
            continue
        entry.update(value=c["observed"], lo=c["lo"], hi=c["hi"], n=c["n"], confidence=c["confidence"])


__all__ = ["audit", "AuditOptions", "Verdict", "PASS", "WARN", "FAIL", "ERROR"]
