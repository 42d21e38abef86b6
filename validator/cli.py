"""The `camgate` command line. Exit codes: 0 pass, 1 gate failed, 2 usage/policy/data error, 3 runtime error, 4 inconclusive."""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path

import click

from validator import __version__
from validator.errors import CamgateError
from validator.explain.names import METHOD_NAMES

METHOD_CHOICES = METHOD_NAMES  # the one list (validator.explain.names)
PREPROCESS_HELP = "none (0..255, default: the model embeds its Rescaling) | unit | symmetric | caffe | torch | module:function"


def _echo_err(message: str) -> None:
    click.echo(message, err=True)


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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="camgate")
def main() -> None:
    """camgate: refuse an image classifier that is right for the wrong reasons."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def tracking_options(f):
    options = [
        click.option("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)."),
        click.option("--no-mlflow", is_flag=True, help="Do not log to MLflow (local reports only)."),
        click.option("--experiment", default="camgate", show_default=True, help="MLflow experiment name."),
        click.option("--run-name", help="MLflow run name (default: camgate-<model>)."),
        click.option("--parent-run-id", help="Nest the gate run under this MLflow run (e.g. the training run)."),
        click.option("--promote", metavar="ALIAS", help="On PASS, move this registry alias to the audited model version."),
        click.option("--mlflow-detail", type=click.Choice(["summary", "full"]), default="summary", show_default=True,
                     expose_value=False, callback=lambda ctx, _p, value: ctx.meta.__setitem__("camgate.mlflow_detail", value),
                     help="summary: per check its value, threshold and pass (~50 metrics); full: also every aggregate of every slice."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


@main.command()
@click.argument("model")
@click.option("--data", required=True, help="Annotations: COCO .json, Pascal VOC folder, or CSV manifest.")
@click.option("--format", "data_format", type=click.Choice(["coco", "voc", "csv"]), help="Override format detection.")
@click.option("--images", type=click.Path(file_okay=False), help="Folder of the images (overrides the annotation's paths).")
@click.option("--policy", type=click.Path(dir_okay=False), help="Policy YAML (default: the shipped policies/default.yaml).")
@click.option("--method", type=click.Choice(METHOD_CHOICES), help="Heatmap method (default: the policy's).")
@click.option("--method-option", "method_option", multiple=True, metavar="NAME=VALUE",
              help="An option of the method, e.g. --method-option steps=64 (README: methods and their options).")
@click.option("--layer", help="Target layer name (default: the policy's, else the last conv feature map).")
@click.option("--preprocess", default="none", show_default=True, help=PREPROCESS_HELP)
@click.option("--classes", type=click.Path(dir_okay=False, exists=True), help="Class names in model output order (one per line, JSON or YAML list).")
@click.option("--max-samples", type=click.IntRange(min=1), help="Stratified sample size (default: the policy's).")
@click.option("--seed", type=int, help="Sampling and bootstrap seed (default: the policy's).")
@click.option("--batch-size", type=click.IntRange(min=1), help="Explainer batch size (default: the policy's).")
@click.option("--out", type=click.Path(file_okay=False), help="Report folder (default: ./camgate-report/<model name>/).")
@click.option("--baseline", help="A second model (path or models:/name@alias) audited on the same samples for change checks.")
@click.option("--fail-on", type=click.Choice(["fail", "warn"]), default="fail", show_default=True, help="Exit 1 also on WARN with 'warn'.")
@click.option("--trust-model", is_flag=True, help="Allow models whose loading runs Python code (Lambda layers). Only for files you trust.")
@click.option("--score-on", type=click.Choice(["auto", "host", "device"]), default="auto", show_default=True,
              help="Where the maps are scored: device = in TensorFlow beside the explainer (only scores come back); "
              "auto = device when a GPU is visible.")
@click.option("--shard", metavar="I/N", help="Explain only shard I of N and write shard.npz into --out; "
              "`camgate merge` judges the shards (no MLflow run per shard).")
@click.option("--backend", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="ray: explain the shards on Ray actors (pip install 'camgate[ray]'), judge on this process.")
@click.option("--workers", type=click.IntRange(min=1), help="Ray actors (default: one per CPU, or per GPU).")
@click.option("--gpus-per-worker", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Ray: GPUs each actor reserves (e.g. 1, or 0.5 to share one).")
@click.option("--ray-address", help="Ray: an existing cluster's address (default: start a local one on 127.0.0.1).")
@tracking_options
@click.option("-q", "--quiet", is_flag=True, help="Only the verdict line.")
@click.option("-v", "--verbose", is_flag=True, help="Every check, and tracebacks on stderr.")
def audit(model, data, data_format, images, policy, method, method_option, layer, preprocess, classes, max_samples, seed,
          batch_size, out, baseline, fail_on, trust_model, score_on, shard, backend, workers, gpus_per_worker, ray_address,
          tracking_uri, no_mlflow, experiment, run_name, parent_run_id, promote, quiet, verbose):
    """Audit MODEL (.keras, .h5, a folder holding a .keras file, an MLflow model folder or URI) on an annotated
    held-out set. A TensorFlow SavedModel export is refused: it keeps no layer graph to explain."""
    _refuse_conflicts(no_mlflow=no_mlflow, tracking_uri=tracking_uri, promote=promote, quiet=quiet,
                      verbose=verbose)
    _refuse_shard_conflicts(shard=shard, backend=backend, tracking_uri=tracking_uri, promote=promote,
                            parent_run_id=parent_run_id, run_name=run_name)
    if backend != "ray" and (workers is not None or gpus_per_worker or ray_address):
        raise click.UsageError("--workers, --gpus-per-worker and --ray-address are for --backend ray")
    from validator.gate import audit as run_audit

    progress = _Progress(enabled=not quiet)
    tracking = None
    if not no_mlflow and shard is None:
        tracking = _tracking(tracking_uri, experiment, run_name, parent_run_id, promote)
    try:
        verdict = run_audit(
            model, data, policy=policy, out=out, format=data_format, images=images, method=method,
            method_options=_method_options(method_option), layer=layer,
            preprocess=preprocess, classes=classes, max_samples=max_samples, seed=seed, batch_size=batch_size,
            baseline=baseline, fail_on=fail_on, trust_model=trust_model, progress=progress, tracking=tracking,
            score_on=score_on, shard=shard, backend=backend, workers=workers, gpus_per_worker=gpus_per_worker, ray_address=ray_address,
        )
    finally:
        progress.close()
    _print_verdict(verdict, quiet=quiet, verbose=verbose)
    sys.exit(verdict.exit_code)


@main.command()
@click.argument("shards", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--out", type=click.Path(file_okay=False), help="Report folder (default: ./camgate-report/merged/).")
@click.option("--fail-on", type=click.Choice(["fail", "warn"]), default="fail", show_default=True, help="Exit 1 also on WARN with 'warn'.")
@click.option("--trust-model", is_flag=True, help="Allow the recorded model's Python code when re-rendering the overlays.")
@tracking_options
@click.option("-q", "--quiet", is_flag=True, help="Only the verdict line.")
@click.option("-v", "--verbose", is_flag=True, help="Every check, and tracebacks on stderr.")
def merge(shards, out, fail_on, trust_model, tracking_uri, no_mlflow, experiment, run_name, parent_run_id, promote,
          quiet, verbose):
    """Combine the shard audits SHARDS (their --out folders or shard.npz files) and judge the policy once.

    The verdict equals the single-process audit's on the same samples (same seed, same bootstrap)."""
    _refuse_conflicts(no_mlflow=no_mlflow, tracking_uri=tracking_uri, promote=promote, quiet=quiet,
                      verbose=verbose)
    from validator.gate import merge as run_merge

    tracking = None if no_mlflow else _tracking(tracking_uri, experiment, run_name, parent_run_id, promote)
    verdict = run_merge(list(shards), out=out, fail_on=fail_on, trust_model=trust_model, tracking=tracking)
    _print_verdict(verdict, quiet=quiet, verbose=verbose)
    sys.exit(verdict.exit_code)


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


def _method_options(pairs) -> dict:
    """``NAME=VALUE`` pairs as a dict, values read as YAML scalars (64 -> int, 0.1 -> float, blur -> str)."""
    import yaml

    options = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"expected NAME=VALUE, got {pair!r}", param_hint="--method-option")
        options[name.strip()] = yaml.safe_load(value)
    return options


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


def _print_verdict(verdict, quiet: bool, verbose: bool) -> None:
    # no outputs: refused before anything was written (an --out that holds an input)
    report = f"report: {verdict.outputs.get('html', verdict.out_dir)}" if verdict.outputs else "no report written"
    if verdict.error:
        _echo_err(f"camgate: ERROR: {verdict.error}")
        if verdict.traceback:
            _echo_err(f"camgate: traceback written to {verdict.outputs.get('log')}")
            if verbose:
                _echo_err(verdict.traceback)
    if not quiet:
        shown = verdict.checks if verbose else verdict.failed_checks + verdict.warned_checks
        for c in shown:
            click.echo(f"  {c['outcome']:7} {c['check_id']} [{c['slice']}]: {c['message']}")
    if verdict.status == "PARTIAL" and verdict.shards:
        click.echo(f"camgate: shard {verdict.shards['index']}/{verdict.shards['count']}: {verdict.shards['rows']} "
                   f"rows in {verdict.shards['file']} (judge with `camgate merge`)")
    tracked = f"; MLflow run {verdict.tracking['run_id']}" if verdict.tracking.get("run_id") else ""
    where = f"{verdict.finding}; " if verdict.finding else ""
    click.echo(f"camgate: {verdict.status} (exit {verdict.exit_code}) — {where}{report}{tracked}")


@main.command("check-policy")
@click.argument("policy_file", type=click.Path(dir_okay=False))
def check_policy(policy_file):
    """Validate a policy file and list its checks."""
    from validator.policy import load_policy

    policy = load_policy(policy_file)
    click.echo(f"{policy_file}: OK — policy '{policy.name}' v{policy.version}, hash {policy.content_hash}")
    for check in policy.checks:
        click.echo(f"  {check.id}: {_describe_check(check)}")


def _describe_check(check) -> str:
    """Every field that decides a check's outcome, so the listing is the rule the gate applies."""
    rule = f"{check.aggregate} of {check.metric}"
    if check.threshold is not None:
        rule += f" >= {check.threshold}"  # a rate: the share of samples at or above the threshold
    parts = [rule, "point estimate" if check.bound == "point" else f"{check.bound} bound"]
    parts += [f"{name} {value}" for name, value in (("min", check.min), ("max", check.max)) if value is not None]
    if check.change:
        parts += [f"change {kind} {value} vs the baseline" for kind, value in check.change.items()]
    slices = check.slices if isinstance(check.slices, str) else "[" + ", ".join(check.slices) + "]"
    parts.append(f"slices {slices}")
    return ", ".join(parts) + f" [{check.severity}]"


@main.command()
@click.argument("model")
@click.argument("image", type=click.Path(dir_okay=False))
@click.option("--class", "class_", help="Class to explain (index or name from --classes); default: the prediction.")
@click.option("--classes", type=click.Path(dir_okay=False, exists=True), help="Class names in model output order.")
@click.option("--box", nargs=4, type=float, help="Object box x0 y0 x1 y1 in image pixels, to score the map.")
@click.option("--method", type=click.Choice(METHOD_CHOICES), default="gradcam", show_default=True)
@click.option("--layer", help="Target layer name.")
@click.option("--preprocess", default="none", show_default=True, help=PREPROCESS_HELP)
@click.option("--out", type=click.Path(dir_okay=False), help="Overlay PNG (default: <image>.camgate.png).")
@click.option("--trust-model", is_flag=True, help="Allow models whose loading runs Python code.")
def explain(model, image, class_, classes, box, method, layer, preprocess, out, trust_model):
    """Explain one IMAGE: write an overlay PNG and print the scores."""
    from validator.explain_one import explain_image

    result = explain_image(model, image, class_=class_, classes=classes, box=box, method=method, layer=layer,
                           preprocess=preprocess, out=out, trust=trust_model)
    click.echo(f"class {result['class_name']} (predicted {result['predicted_name']}, p={result['confidence']:.3f})")
    if result["dead"]:
        click.echo("  dead map: no gradient reached the layer for this class, so there is no explanation", err=True)
    for key, value in result["scores"].items():
        click.echo(f"  {key}: {value:.4g}")
    click.echo(f"overlay: {result['overlay']}")


@main.command()
@click.option("--workdir", default=".demo", show_default=True, type=click.Path(file_okay=False), help="Data, models and reports.")
@click.option("--tracking-uri", default="sqlite:///mlflow.db", show_default=True, help="Where the demo logs its runs.")
@click.option("--no-mlflow", is_flag=True, help="Reports only.")
@click.option("--fast", is_flag=True, help="120 held-out images per model instead of 200 (for tests).")
def demo(workdir, tracking_uri, no_mlflow, fast):
    """Train a clean model and shortcut models on synthetic data, audit each, print the verdicts."""
    _refuse_conflicts(no_mlflow=no_mlflow, tracking_uri=tracking_uri)
    from validator.demo import run_demo

    code = run_demo(Path(workdir), tracking_uri=None if no_mlflow else tracking_uri, fast=fast)
    sys.exit(code)


def run() -> None:
    """Console entry: map errors to exit codes; an unexpected exception is exit 3 with a logged traceback."""
    try:
        main.main(standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2)
    except click.exceptions.Abort:
        _echo_err("camgate: aborted")
        sys.exit(3)
    except CamgateError as exc:
        _echo_err(f"camgate: error: {exc}")
        sys.exit(exc.exit_code)
    except SystemExit:
        raise
    except BaseException as exc:  # fail closed: never exit 0 on an unexpected error
        log = Path("camgate-error.log")
        log.write_text(traceback.format_exc())
        _echo_err(f"camgate: unexpected {type(exc).__name__}: {exc} (traceback in {log})")
        sys.exit(3)
