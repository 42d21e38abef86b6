"""The `camgate` command line. Exit codes (validator.errors): 0 pass, 1 gate failed, 2 usage/policy/data error,
3 runtime error, 4 inconclusive.

Every option is checked before any work (click types and the callbacks below): a bad value is a usage error,
exit 2, naming the option and what it allows. Every line printed goes through
:func:`validator.report.escape.terminal`, so a class name or file name with a line break cannot start a line
of its own (a GitHub workflow command must start one) or move the cursor.
"""

from __future__ import annotations

import math
import os
import re
import shlex
import sys
import tempfile
import traceback
from pathlib import Path

import click

from validator import __version__
from validator.errors import EXIT_CODES, EXIT_ERROR, EXIT_USAGE, CamgateError
from validator.explain.names import METHOD_NAMES
from validator.interrupt import AuditInterrupted
from validator.report.escape import terminal

METHOD_CHOICES = METHOD_NAMES  # the one list (validator.explain.names)
PREPROCESS_NAMES = ("none", "unit", "symmetric", "caffe", "torch")  # validator.data.preprocess.PREPROCESSORS
PREPROCESS_HELP = ("none (0..255, default: the model embeds its Rescaling) | unit | symmetric | caffe | torch | "
                   "module:function")
SEED_MAX = 2**32 - 1
DEFAULT_TRACKING = "sqlite:///mlflow.db"

# Help sections, in the order `camgate audit --help` shows them; every option names one (``section=``).
INPUTS, EXPLAINER, SAMPLING, OUTPUTS, MLFLOW, SCALE_OUT, HELP = (
    "Inputs", "Explainer", "Sampling", "Outputs", "MLflow", "Scale-out", "Help")
SECTION_NOTES = {
    MLFLOW: "By default every run is logged to MLflow at $MLFLOW_TRACKING_URI, else to ./mlflow.db (SQLite, "
            "created in the current folder); --no-mlflow: local reports only.",
}


# ------------------------------------------------------------------------------------------------ output


def _say(message: str, err: bool = False) -> None:
    """One printed line: user text in it (class names, paths, messages quoting them) cannot break it."""
    click.echo(terminal(message), err=err)


def _echo_err(message: str) -> None:
    _say(message, err=True)


def _say_block(text: str, err: bool = True) -> None:
    """A multi-line text (a traceback): every line indented behind ``|``, so none starts a command line."""
    for line in str(text).rstrip("\n").splitlines():
        _say(f"  | {line}", err=err)


class _Progress:
    """A progress bar on stderr, shown only on a terminal."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and sys.stderr.isatty()
        self.bar = None

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            self.bar = click.progressbar(length=total, label="explaining", file=sys.stderr)
            self.bar.__enter__()
        self.bar.update(done - self.bar.pos)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


# ---------------------------------------------------------------------------------------- grouped help


class SectionOption(click.Option):
    """An option that names its help section."""

    def __init__(self, *args, section: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.section = section


class SectionCommand(click.Command):
    """Options listed under titled sections (each option's ``section``), then an example and the exit codes."""

    def __init__(self, *args, sections: tuple[str, ...] = (), example: tuple[str, ...] = (), **kwargs):
        super().__init__(*args, **kwargs)
        self.sections = tuple(sections) + ((HELP,) if HELP not in sections else ())
        self.example = tuple(example)

    def format_options(self, ctx, formatter) -> None:
        grouped: dict[str, list] = {name: [] for name in self.sections}
        for param in self.get_params(ctx):
            if isinstance(param, click.Argument):  # named in the usage line and the description
                continue
            record = param.get_help_record(ctx)
            if record is not None:
                grouped[getattr(param, "section", HELP)].append(record)
        # one column width for every section, so the help reads as one table
        width = min(max((len(term) for records in grouped.values() for term, _ in records), default=0), 30)
        for name, records in grouped.items():
            if not records:
                continue
            with formatter.section(name):
                if name in SECTION_NOTES:
                    formatter.write_text(SECTION_NOTES[name])
                formatter.write_dl([(term.ljust(width), text) for term, text in records])

    def format_epilog(self, ctx, formatter) -> None:
        if self.example:
            with formatter.section("Example"):
                for line in self.example:  # verbatim: a command a reader can paste
                    formatter.write(f"{'':>{formatter.current_indent}}{line}\n")
        _format_exit_codes(formatter)


class SectionGroup(click.Group):
    def format_epilog(self, ctx, formatter) -> None:
        _format_exit_codes(formatter)


def _format_exit_codes(formatter) -> None:
    with formatter.section("Exit codes"):
        formatter.write_dl([(str(code), meaning) for code, meaning in sorted(EXIT_CODES.items())])


def example_args(command: SectionCommand) -> list[str]:
    """The example of ``command``'s help as its arguments (what follows ``camgate <name>``)."""
    words = shlex.split(" ".join(line.rstrip("\\").strip() for line in command.example))
    assert words[:2] == ["camgate", command.name], words
    return words[2:]


# ------------------------------------------------------------------------------------------ option checks


class FiniteFloat(click.FloatRange):
    """A float in a range that is also finite (click's FloatRange lets NaN through every bound)."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


class ShardType(click.ParamType):
    name = "I/N"

    def convert(self, value, param, ctx):
        from validator.shard import ShardSpec

        try:
            ShardSpec.parse(value)
        except CamgateError:
            self.fail(f"expected I/N with 1 <= I <= N (e.g. 2/8: the second of eight shards), got {value!r}",
                      param, ctx)
        return value


def _non_empty(ctx, param, value):
    """Text options: given means non-empty (an empty name is never what the user meant)."""
    if value is not None and not str(value).strip():
        raise click.BadParameter("must not be empty", ctx=ctx, param=param)
    return value


def _preprocess(ctx, param, value):
    if value is None or value in PREPROCESS_NAMES or re.fullmatch(r"[\w.]+:\w+", value):
        return value
    raise click.BadParameter(f"{value!r} is not one of {', '.join(PREPROCESS_NAMES)} or module:function",
                             ctx=ctx, param=param)


def _method_options(ctx, param, pairs) -> dict:
    """``NAME=VALUE`` pairs as a dict, values read as YAML scalars (64 -> int, 0.1 -> float, blur -> str)."""
    import yaml

    options = {}
    for pair in pairs or ():
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"expected NAME=VALUE, got {pair!r}", ctx=ctx, param=param)
        try:
            options[name.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise click.BadParameter(f"{pair!r}: the value is not a YAML scalar ({exc})", ctx=ctx,
                                     param=param) from None
    return options


def _gpus(ctx, param, value):
    if value is not None and value > 1 and value != int(value):
        raise click.BadParameter(f"{value} GPUs: a share is at most 1 (e.g. 0.5), a larger count a whole "
                                 "number (Ray's rule)", ctx=ctx, param=param)
    return value


def _run_id(ctx, param, value):
    value = _non_empty(ctx, param, value)
    if value is not None and not re.fullmatch(r"[a-zA-Z0-9][\w\-]{0,255}", value):
        raise click.BadParameter(f"{value!r} is not an MLflow run id (letters, digits, '_' or '-', e.g. the 32 hex "
                                 "digits MLflow shows)", ctx=ctx, param=param)
    return value


def _alias(ctx, param, value):
    from validator.errors import UsageError
    from validator.tracking.options import TrackingOptions

    value = _non_empty(ctx, param, value)
    try:
        TrackingOptions(promote=value).check()
    except UsageError:
        raise click.BadParameter(f"{value!r}: an alias is letters, digits, '_' or '-' (at most 255), not 'latest' "
                                 "nor v<number>", ctx=ctx, param=param) from None
    if value is not None and len(value) > 255:
        raise click.BadParameter("an alias is at most 255 characters", ctx=ctx, param=param)
    return value


def _box(ctx, param, value):
    if value:
        x0, y0, x1, y1 = value
        if min(value) < 0 or not (x0 < x1 and y0 < y1):
            raise click.BadParameter(f"{' '.join(f'{v:g}' for v in value)}: expected x0 y0 x1 y1 in pixels with "
                                     "0 <= x0 < x1 and 0 <= y0 < y1", ctx=ctx, param=param)
    return value


def require_writable_folder(path, option: str, default_note: str = "") -> None:
    """Create the folder ``path`` if needed and write a probe file in it; else a usage error naming ``option``
    and the path. Run before any work, so a run never ends with reports it cannot write."""
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise click.BadParameter(f"{folder}{default_note} is not a writable folder: {reason}",
                                 param_hint=f"'{option}'") from None


def require_writable_file(path, option: str, default_note: str = "") -> None:
    """The folder of the file ``path`` must exist and take a new file; ``path`` must not be a folder."""
    target = Path(path)
    if target.is_dir():
        raise click.BadParameter(f"{target}{default_note} is a folder; give a file name (e.g. overlay.png)",
                                 param_hint=f"'{option}'")
    folder = target.parent
    if not folder.is_dir():
        raise click.BadParameter(f"the folder of {target}{default_note} does not exist", param_hint=f"'{option}'")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise click.BadParameter(f"{folder}{default_note} is not writable: {exc.strerror or exc}",
                                 param_hint=f"'{option}'") from None


def _opt(*decls, section: str, **kwargs):
    return click.option(*decls, cls=SectionOption, section=section, **kwargs)


# -------------------------------------------------------------------------------------------- commands


@click.group(cls=SectionGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="camgate")
def main() -> None:
    """camgate: refuse an image classifier that is right for the wrong reasons.

    `camgate COMMAND --help` shows a command's options by section, an example and the exit codes."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def tracking_options(f):
    options = [
        _opt("--tracking-uri", callback=_non_empty, section=MLFLOW,
             help=f"MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else {DEFAULT_TRACKING})."),
        _opt("--no-mlflow", is_flag=True, section=MLFLOW, help="Do not log to MLflow (local reports only)."),
        _opt("--experiment", default="camgate", show_default=True, callback=_non_empty, section=MLFLOW,
             help="MLflow experiment name."),
        _opt("--run-name", callback=_non_empty, section=MLFLOW,
             help="MLflow run name after the verdict, which always leads it (default: '<model> · <policy> v<N>')."),
        _opt("--parent-run-id", callback=_run_id, section=MLFLOW,
             help="Nest the gate run under this MLflow run (e.g. the training run)."),
        _opt("--promote", metavar="ALIAS", callback=_alias, section=MLFLOW,
             help="On PASS, move this registry alias to the audited model version (letters, digits, _ or -)."),
        _opt("--mlflow-detail", type=click.Choice(["summary", "full"]), default="summary", show_default=True,
             metavar="LEVEL", section=MLFLOW, expose_value=False,
             callback=lambda ctx, _p, value: ctx.meta.__setitem__("camgate.mlflow_detail", value),
             help="summary: per check its value, threshold and pass (at most ~50 metrics); full: also every "
             "aggregate of every slice."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def verbosity_options(f):
    f = _opt("-v", "--verbose", is_flag=True, section=OUTPUTS, help="Every check, and tracebacks on stderr.")(f)
    return _opt("-q", "--quiet", is_flag=True, section=OUTPUTS, help="Only the verdict line (it says why).")(f)


def fail_on_option(f):
    return _opt("--fail-on", type=click.Choice(["fail", "warn"]), default="fail", show_default=True,
                section=OUTPUTS, help="Exit 1 also on WARN with 'warn'.")(f)


@main.command(cls=SectionCommand, sections=(INPUTS, EXPLAINER, SAMPLING, OUTPUTS, MLFLOW, SCALE_OUT),
              example=("camgate audit model.keras --data heldout/annotations.json --out report \\",
                       "    --method gradcampp --max-samples 400 --seed 7 --no-mlflow"))
@click.argument("model", callback=_non_empty)
@_opt("--data", required=True, callback=_non_empty, section=INPUTS,
      help="Annotations: COCO .json, Pascal VOC folder, or CSV manifest.")
@_opt("--format", "data_format", type=click.Choice(["coco", "voc", "csv"]), section=INPUTS,
      help="Override format detection.")
@_opt("--images", type=click.Path(file_okay=False, exists=True), section=INPUTS,
      help="Folder of the images (overrides the annotation's paths).")
@_opt("--classes", type=click.Path(dir_okay=False, exists=True), section=INPUTS,
      help="Class names in model output order (one per line, JSON or YAML list).")
@_opt("--policy", type=click.Path(dir_okay=False, exists=True), section=INPUTS,
      help="Policy YAML (default: the shipped policies/default.yaml).")
@_opt("--baseline", callback=_non_empty, section=INPUTS,
      help="A second model (path or models:/name@alias) audited on the same samples for change checks.")
@_opt("--trust-model", is_flag=True, section=INPUTS,
      help="Allow models whose loading runs Python code (Lambda layers). Only for files you trust.")
@_opt("--exif-orientation", type=click.Choice(["ignore", "apply"]), default="ignore", show_default=True, metavar="MODE",
      section=INPUTS, help="ignore: boxes are in stored-pixel coordinates (COCO's convention); apply: each image "
      "is turned to its displayed orientation and its boxes and masks are read in that frame. Either way an "
      "orientation other than 1 is recorded per image.")
@_opt("--method", type=click.Choice(METHOD_CHOICES), metavar="NAME", section=EXPLAINER,
      help="Heatmap method (default: the policy's), one of: " + ", ".join(METHOD_CHOICES) + ".")
@_opt("--method-option", "method_option", multiple=True, metavar="NAME=VALUE", callback=_method_options,
      section=EXPLAINER, help="An option of the method, e.g. --method-option steps=64 (README: methods and their "
      "options).")
@_opt("--layer", callback=_non_empty, section=EXPLAINER,
      help="Target layer name (default: the policy's, else the last conv feature map).")
@_opt("--preprocess", default="none", show_default=True, callback=_preprocess, metavar="MODE", section=EXPLAINER,
      help=PREPROCESS_HELP)
@_opt("--batch-size", type=click.IntRange(min=1), section=EXPLAINER,
      help="Explainer batch size (default: the policy's).")
@_opt("--score-on", type=click.Choice(["auto", "host", "device"]), default="auto", show_default=True,
      section=EXPLAINER, help="Where the maps are scored: device = in TensorFlow beside the explainer (only scores "
      "come back); auto = device when a GPU is visible.")
@_opt("--max-samples", type=click.IntRange(min=1), section=SAMPLING,
      help="Stratified sample size (default: the policy's).")
@_opt("--seed", type=click.IntRange(0, SEED_MAX), section=SAMPLING,
      help="Sampling and bootstrap seed (default: the policy's).")
@_opt("--out", type=click.Path(file_okay=False), section=OUTPUTS,
      help="Report folder, created if needed (default: ./camgate-report/<model name>/).")
@fail_on_option
@verbosity_options
@tracking_options
@_opt("--shard", type=ShardType(), section=SCALE_OUT,
      help="Explain only shard I of N and write shard.npz into --out; `camgate merge` judges the shards (no "
      "MLflow run per shard).")
@_opt("--backend", type=click.Choice(["local", "ray"]), default="local", show_default=True, section=SCALE_OUT,
      help="ray: explain the shards on Ray actors (pip install 'camgate[ray]'), judge on this process.")
@_opt("--workers", type=click.IntRange(min=1), section=SCALE_OUT,
      help="Ray actors (default: one per CPU, or per GPU).")
@_opt("--gpus-per-worker", type=FiniteFloat(min=0), default=0.0, show_default=True, callback=_gpus,
      section=SCALE_OUT, help="Ray: GPUs each actor reserves (e.g. 1, or 0.5 to share one).")
@_opt("--ray-address", callback=_non_empty, section=SCALE_OUT,
      help="Ray: an existing cluster's address (default: start a local one on 127.0.0.1).")
def audit(model, data, data_format, images, policy, method, method_option, layer, preprocess, classes, max_samples, seed,
          batch_size, out, baseline, fail_on, trust_model, score_on, shard, backend, workers, gpus_per_worker, ray_address,
          exif_orientation, tracking_uri, no_mlflow, experiment, run_name, parent_run_id, promote, quiet, verbose):
    """Audit MODEL (.keras, .h5, a folder holding a .keras file, an MLflow model folder or URI) on an annotated
    held-out set. A TensorFlow SavedModel export is refused: it keeps no layer graph to explain."""
    _refuse_conflicts(no_mlflow=no_mlflow, tracking_uri=tracking_uri, promote=promote, quiet=quiet,
                      verbose=verbose)
    _refuse_shard_conflicts(shard=shard, backend=backend, tracking_uri=tracking_uri, promote=promote,
                            parent_run_id=parent_run_id, run_name=run_name)
    if backend != "ray" and (workers is not None or gpus_per_worker or ray_address):
        raise click.UsageError("--workers, --gpus-per-worker and --ray-address are for --backend ray")
    _require_out(out)
    from validator.gate import audit as run_audit

    progress = _Progress(enabled=not quiet)
    tracking = None
    if not no_mlflow and shard is None:
        tracking = _tracking(tracking_uri, experiment, run_name, parent_run_id, promote)
    try:
        verdict = run_audit(
            model, data, policy=policy, out=out, format=data_format, images=images, method=method,
            method_options=method_option, layer=layer,
            preprocess=preprocess, classes=classes, max_samples=max_samples, seed=seed, batch_size=batch_size,
            baseline=baseline, fail_on=fail_on, trust_model=trust_model, progress=progress, tracking=tracking,
            score_on=score_on, shard=shard, backend=backend, workers=workers, gpus_per_worker=gpus_per_worker, ray_address=ray_address,
            exif_orientation=exif_orientation,
        )
    finally:
        progress.close()
    _print_verdict(verdict, quiet=quiet, verbose=verbose)
    sys.exit(verdict.exit_code)


@main.command(cls=SectionCommand, sections=(INPUTS, OUTPUTS, MLFLOW),
              example=("camgate merge shards/1 shards/2 shards/3 shards/4 --out report \\",
                       "    --tracking-uri sqlite:///mlflow.db"))
@click.argument("shards", nargs=-1, required=True, type=click.Path(exists=True))
@_opt("--trust-model", is_flag=True, section=INPUTS,
      help="Allow the recorded model's Python code when re-rendering the overlays.")
@_opt("--out", type=click.Path(file_okay=False), section=OUTPUTS,
      help="Report folder, created if needed (default: ./camgate-report/merged/).")
@fail_on_option
@verbosity_options
@tracking_options
def merge(shards, out, fail_on, trust_model, tracking_uri, no_mlflow, experiment, run_name, parent_run_id, promote,
          quiet, verbose):
    """Combine the shard audits SHARDS (their --out folders or shard.npz files) and judge the policy once.

    The verdict equals the single-process audit's on the same samples (same seed, same bootstrap)."""
    _refuse_conflicts(no_mlflow=no_mlflow, tracking_uri=tracking_uri, promote=promote, quiet=quiet,
                      verbose=verbose)
    _require_out(out)
    from validator.gate import merge as run_merge

    tracking = None if no_mlflow else _tracking(tracking_uri, experiment, run_name, parent_run_id, promote)
    verdict = run_merge(list(shards), out=out, fail_on=fail_on, trust_model=trust_model, tracking=tracking)
    _print_verdict(verdict, quiet=quiet, verbose=verbose)
    sys.exit(verdict.exit_code)


def _require_out(out) -> None:
    if out is not None:
        require_writable_folder(out, "--out")
    else:  # the default report folder goes under ./camgate-report/
        require_writable_folder(Path.cwd(), "--out", " (the current folder, where the default "
                                "./camgate-report/ goes)")


def _tracking(tracking_uri, experiment, run_name, parent_run_id, promote):
    from validator.tracking import TrackingOptions

    return TrackingOptions(uri=tracking_uri, experiment=experiment, run_name=run_name, parent_run_id=parent_run_id,
                           promote=promote, detail=click.get_current_context().meta.get("camgate.mlflow_detail", "summary"))


def _refuse_shard_conflicts(shard, backend, **tracking) -> None:
    """A shard judges nothing and logs nothing: options that only a whole audit can honour are refused."""
    if shard is None:
        return
    if backend != "local":
        raise click.UsageError("--shard runs one shard here; --backend ray runs all of them: choose one")
    given = [f"--{name.replace('_', '-')}" for name, value in tracking.items() if value is not None]
    if given:
        raise click.UsageError(f"{', '.join(given)} cannot be used with --shard: a shard logs no MLflow run; "
                               "pass them to `camgate merge`")


def _refuse_conflicts(**given) -> None:
    """Options that contradict each other are a usage error (exit 2), never silently resolved."""
    ctx = click.get_current_context()
    explicit = {name for name in given
                if ctx.get_parameter_source(name) not in (None, click.core.ParameterSource.DEFAULT)}
    pairs = (("no_mlflow", "tracking_uri", "--no-mlflow turns MLflow off, so there is no tracking URI to use"),
             ("no_mlflow", "promote", "--no-mlflow records nothing, so no registry alias can move"),
             ("quiet", "verbose", "choose one"))
    for first, second, why in pairs:
        if first in explicit and second in explicit and given[first] and given[second] not in (None, False):
            raise click.UsageError(f"{_flag(first)} and {_flag(second)} cannot be used together: {why}.", ctx=ctx)


def _flag(name: str) -> str:
    return "-q/--quiet" if name == "quiet" else "-v/--verbose" if name == "verbose" else "--" + name.replace("_", "-")


# --------------------------------------------------------------------------------------------- verdict


def _print_verdict(verdict, quiet: bool, verbose: bool) -> None:
    # no outputs: refused before anything was written (an --out that holds an input)
    report = f"report: {verdict.outputs.get('html', verdict.out_dir)}" if verdict.outputs else "no report written"
    if verdict.error:
        _echo_err(f"camgate: ERROR: {verdict.error}")
        if verdict.traceback:
            _echo_err(f"camgate: {_traceback_note(verdict)}")
            if verbose:
                _say_block(verdict.traceback)
    if not quiet:
        order = {"FAIL": 0, "INCONCLUSIVE": 1, "WARN": 2}
        shown = verdict.checks if verbose else sorted(
            (c for c in verdict.checks if c.get("outcome") in order), key=lambda c: order[c["outcome"]])
        for c in shown:
            _say(f"  {c['outcome']:12} {c['check_id']} [{c['slice']}]: {c['message']}")
    if verdict.status == "PARTIAL" and verdict.shards:
        _say(f"camgate: shard {verdict.shards['index']}/{verdict.shards['count']}: {verdict.shards['rows']} "
             f"rows in {verdict.shards['file']} (judge with `camgate merge`)")
    run_id = verdict.tracking.get("run_id")
    tracked = f"; MLflow run {run_id} at {verdict.tracking.get('uri')}" if run_id else ""
    _say(f"camgate: {verdict.status} (exit {verdict.exit_code}) — {verdict_reason(verdict)}; {report}{tracked}")


def verdict_reason(verdict, limit: int = 3) -> str:
    """Why the gate said what it said, in one clause: the reason every verdict line carries (-q included)."""
    checks = verdict.checks or []

    def named(items) -> str:
        short = [c["slice"] if len(c["slice"]) <= 60 else c["slice"][:57] + "..." for c in items[:limit]]
        shown = ", ".join(f"{c['check_id']} [{name}]" for c, name in zip(items[:limit], short, strict=True))
        return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")

    def first_message(items) -> str:
        message = str(items[0].get("message") or "")
        return message if len(message) <= 300 else message[:297] + "..."

    by = {outcome: [c for c in checks if c.get("outcome") == outcome]
          for outcome in ("FAIL", "INCONCLUSIVE", "WARN", "PASS", "SKIPPED", "NOT_JUDGED")}
    where = f"{verdict.finding}; " if verdict.finding else ""
    if verdict.status == "ERROR":
        return verdict.error or "the audit did not finish"
    if verdict.status == "PARTIAL":
        return "a shard judges nothing: `camgate merge` judges the shards"
    if verdict.status == "FAIL":
        return f"{where}{len(by['FAIL'])} check(s) failed: {named(by['FAIL'])}"
    if verdict.status == "INCONCLUSIVE":
        if by["INCONCLUSIVE"]:
            return (f"{where}{len(by['INCONCLUSIVE'])} check(s) inconclusive: {named(by['INCONCLUSIVE'])}: "
                    f"{first_message(by['INCONCLUSIVE'])}")
        idle = by["SKIPPED"] + by["NOT_JUDGED"]
        reason = f": {first_message(idle)}" if idle else ""
        return f"no policy check compared anything ({len(idle)} skipped or not judged){reason}"
    if verdict.status == "WARN":
        return f"{where}{len(by['WARN'])} check(s) warned: {named(by['WARN'])}"
    idle = len(by["SKIPPED"]) + len(by["NOT_JUDGED"])
    return f"all {len(by['PASS'])} judged check(s) passed" + (f" ({idle} skipped or not judged)" if idle else "")


def _traceback_note(verdict) -> str:
    """Where the traceback is: error.log in --out, else a temporary file (an --out that cannot be written)."""
    log = (verdict.outputs or {}).get("log")
    if log and Path(log).is_file():
        return f"traceback written to {log}"
    saved = _save_traceback(verdict.traceback)
    if saved:
        return f"traceback written to {saved} (--out could not be written)"
    return "no traceback file: --out is not writable and neither is the temporary folder (-v prints it)"


def _save_traceback(text: str) -> str | None:
    try:
        handle, path = tempfile.mkstemp(prefix="camgate-error-", suffix=".log")
        with os.fdopen(handle, "w") as file:
            file.write(text)
        return path
    except OSError:
        return None


# ----------------------------------------------------------------------------------------- other commands


@main.command("check-policy", cls=SectionCommand, sections=(INPUTS,),
              example=("camgate check-policy policies/strict.yaml",))
@click.argument("policy_file", type=click.Path(dir_okay=False, exists=True))
def check_policy(policy_file):
    """Validate a policy file and list its checks."""
    from validator.policy import load_policy

    policy = load_policy(policy_file)
    _say(f"{policy_file}: OK — policy '{policy.name}' v{policy.version}, hash {policy.content_hash}")
    for check in policy.checks:
        _say(f"  {check.id}: {_describe_check(check)}")


def _describe_check(check) -> str:
    """Every field that decides a check's outcome, so the listing is the rule the gate applies."""
    rule = f"{check.aggregate} of {check.metric}"
    if check.threshold is not None:
        rule += f" >= {check.threshold}"  # a rate: the share of samples at or above the threshold
    parts = [rule, "point estimate" if check.bound == "point" else f"{check.bound} bound"]
    parts += [f"{name} {value}" for name, value in (("min", check.min), ("max", check.max)) if value is not None]
    if check.with_masks:
        parts += [f"{name} {value} where every object region is a mask" for name, value in check.with_masks.items()]
    if check.change:
        parts += [f"change {kind} {value} vs the baseline" for kind, value in check.change.items()]
    slices = check.slices if isinstance(check.slices, str) else "[" + ", ".join(check.slices) + "]"
    parts.append(f"slices {slices}")
    return ", ".join(parts) + f" [{check.severity}]"


@main.command(cls=SectionCommand, sections=(INPUTS, EXPLAINER, OUTPUTS),
              example=("camgate explain model.keras images/0001.png --box 10 12 40 44 \\",
                       "    --method gradcampp --out overlay.png"))
@click.argument("model", callback=_non_empty)
@click.argument("image", type=click.Path(dir_okay=False, exists=True))
@_opt("--class", "class_", callback=_non_empty, section=INPUTS,
      help="Class to explain (index or name from --classes); default: the prediction.")
@_opt("--classes", type=click.Path(dir_okay=False, exists=True), section=INPUTS,
      help="Class names in model output order.")
@_opt("--box", nargs=4, type=FiniteFloat(min=0), callback=_box, section=INPUTS,
      help="Object box x0 y0 x1 y1 in image pixels (0 <= x0 < x1, 0 <= y0 < y1), to score the map.")
@_opt("--trust-model", is_flag=True, section=INPUTS, help="Allow models whose loading runs Python code.")
@_opt("--method", type=click.Choice(METHOD_CHOICES), default="gradcam", show_default=True, metavar="NAME",
      section=EXPLAINER, help="Heatmap method, one of: " + ", ".join(METHOD_CHOICES) + ".")
@_opt("--layer", callback=_non_empty, section=EXPLAINER, help="Target layer name.")
@_opt("--preprocess", default="none", show_default=True, callback=_preprocess, metavar="MODE", section=EXPLAINER,
      help=PREPROCESS_HELP)
@_opt("--out", type=click.Path(dir_okay=False), section=OUTPUTS, help="Overlay PNG (default: <image>.camgate.png).")
def explain(model, image, class_, classes, box, method, layer, preprocess, out, trust_model):
    """Explain one IMAGE: write an overlay PNG and print the scores."""
    if out is not None:
        require_writable_file(out, "--out")
    else:
        require_writable_file(str(image) + ".camgate.png", "--out", " (the default, beside IMAGE)")
    from validator.explain_one import explain_image

    result = explain_image(model, image, class_=class_, classes=classes, box=box or None, method=method,
                           layer=layer, preprocess=preprocess, out=out, trust=trust_model)
    _say(f"class {result['class_name']} (predicted {result['predicted_name']}, p={result['confidence']:.3f})")
    if result["dead"]:
        _echo_err("  dead map: no gradient reached the layer for this class, so there is no explanation")
    for key, value in result["scores"].items():
        _say(f"  {key}: {value:.4g}")
    _say(f"overlay: {result['overlay']}")


@main.command(cls=SectionCommand, sections=(OUTPUTS, MLFLOW),
              example=("camgate demo --workdir .demo --fast \\", "    --tracking-uri sqlite:///demo.db"))
@_opt("--workdir", default=".demo", show_default=True, type=click.Path(file_okay=False), section=OUTPUTS,
      help="Data, models and reports (created if needed).")
@_opt("--fast", is_flag=True, section=OUTPUTS, help="120 held-out images per model instead of 200 (for tests).")
@_opt("--tracking-uri", default=DEFAULT_TRACKING, show_default=True, callback=_non_empty, section=MLFLOW,
      help="Where the demo logs its runs.")
@_opt("--no-mlflow", is_flag=True, section=MLFLOW, help="Reports only.")
def demo(workdir, tracking_uri, no_mlflow, fast):
    """Train a clean model and shortcut models on synthetic data, audit each, print the verdicts."""
    _refuse_conflicts(no_mlflow=no_mlflow, tracking_uri=tracking_uri)
    require_writable_folder(workdir, "--workdir")
    from validator.demo import run_demo

    code = run_demo(Path(workdir), tracking_uri=None if no_mlflow else tracking_uri, fast=fast)
    sys.exit(code)


# ------------------------------------------------------------------------------------------------- serve
# `camgate serve`: the gate that runs itself on MLflow registry webhooks (validator.serve; README "Gate every
# registered model").

SERVICE = "Service"


@main.command(cls=SectionCommand, sections=(INPUTS, SERVICE),
              example=("camgate serve --config camgate-serve.yaml --host 127.0.0.1 --port 8765",))
@_opt("--config", "config_file", required=True, type=click.Path(dir_okay=False, exists=True), section=INPUTS,
      help="Serve config YAML: watched registered models, their held-out sets, policies and aliases.")
@_opt("--check-config", is_flag=True, section=INPUTS,
      help="Validate the config (and the policies it names), print the watched models, and exit.")
@_opt("--host", default="127.0.0.1", show_default=True, callback=_non_empty, section=SERVICE,
      help="Address to listen on (MLflow's webhook deliveries must reach it).")
@_opt("--port", default=8765, show_default=True, type=click.IntRange(1, 65535), section=SERVICE,
      help="Port to listen on.")
def serve(config_file, check_config, host, port):
    """Audit every new version of the watched registered models when MLflow's webhook says it was created.

    Verifies each POST /webhook (HMAC signature, timestamp, delivery id), queues the version in a SQLite
    file, audits it, tags the version (camgate.status ...) and sets the config's alias on PASS only.
    Stops on SIGTERM after the running audit (or requeues it). GET /healthz, GET /status."""
    from validator.serve.config import load_config

    config = load_config(config_file)
    if check_config:
        _say(f"{config_file}: OK — {len(config.models)} watched model(s); secret from ${config.secret_env}; "
             f"queue {config.state}")
        for model in config.models.values():
            _say(f"  {model.name}: data {model.data}; policy {model.policy or 'default'}; baseline "
                 f"{'@' + model.baseline if model.baseline else 'none'}; alias on PASS "
                 f"{'@' + model.promote if model.promote else 'none'}")
        return
    from validator.serve.app import serve as run_service

    run_service(config, host=host, port=port)


def run() -> None:
    """Console entry: map errors to exit codes; an unexpected exception is exit 3 with a logged traceback."""
    try:
        main.main(prog_name="camgate", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.message = terminal(exc.message)
        exc.show()
        sys.exit(EXIT_USAGE)
    except click.exceptions.Abort:
        _echo_err("camgate: aborted")
        sys.exit(EXIT_ERROR)
    except CamgateError as exc:
        _echo_err(f"camgate: error: {exc}")
        sys.exit(exc.exit_code)
    except SystemExit:
        raise
    except AuditInterrupted as exc:  # the ERROR verdict and the reports are written
        where = f": ERROR verdict in {exc.verdict.out_dir}" if getattr(exc.verdict, "out_dir", None) else ""
        _echo_err(f"camgate: interrupted by {exc.signal_name}{terminal(where)}")
        sys.exit(EXIT_ERROR)
    except BaseException as exc:  # fail closed: never exit 0 on an unexpected error
        text = traceback.format_exc()
        where = None
        try:
            log = Path("camgate-error.log")
            log.write_text(text)
            where = str(log)
        except OSError:
            where = _save_traceback(text)
        note = f"traceback in {where}" if where else "no traceback file: neither ./ nor the temporary folder is writable"
        _echo_err(f"camgate: unexpected {type(exc).__name__}: {exc} ({note})")
        sys.exit(EXIT_ERROR)


if __name__ == "__main__":
    run()
