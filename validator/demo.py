"""`camgate demo`: the three shortcut stories end to end on synthetic data, in a couple of minutes on a CPU.

Trains (once; cached under the work dir) a clean model and three shortcut models — weather (the tank
detector), watermark (the copyright tag), background (husky vs wolf) — audits each with the default policy,
logs the runs to a local SQLite MLflow store and prints one line per model.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import click

STORIES = (
    ("clean", None, "honest model: learned the shapes"),
    ("weather", "weather", "tank detector: learned sunny vs cloudy"),
    ("watermark", "watermark", "copyright tag in a corner"),
    ("background", "background", "husky vs wolf: learned the snow"),
)
HELDOUT_SEED = 7  # held-out sets: a seed of their own (controls train on far-away seeds)


def run_demo(workdir: Path, tracking_uri: str | None = "sqlite:///mlflow.db", fast: bool = False) -> int:
    from validator.datasets.controls import train_control
    from validator.datasets.synthetic import write_dataset
    from validator.gate import audit

    workdir.mkdir(parents=True, exist_ok=True)
    n_heldout = 120 if fast else 200
    cache_dir = os.environ.get("CAMGATE_CACHE") or workdir / "models"
    rows = []
    started = time.perf_counter()
    for kind, cue, story in STORIES:
        click.echo(f"[{time.perf_counter() - started:5.0f}s] {kind:10} training (cached after the first run) ...", err=True)
        control = train_control(kind, seed=0, cache_dir=cache_dir)
        data_dir = workdir / "data" / (cue or "clean")
        coco = data_dir / "annotations.json"
        if not coco.exists():
            write_dataset(data_dir, n_heldout, seed=HELDOUT_SEED, cue=cue)
        tracking = None
        if tracking_uri:
            from validator.tracking import TrackingOptions

            tracking = TrackingOptions(uri=tracking_uri, experiment="camgate-demo", run_name=f"demo-{kind}")
        click.echo(f"[{time.perf_counter() - started:5.0f}s] {kind:10} auditing ...", err=True)
        verdict = audit(str(control.path), str(coco), out=workdir / "reports" / kind, tracking=tracking)
        rows.append((kind, story, control, verdict))

    click.echo("")
    click.echo(f"{'model':11} {'story':40} {'test acc':>8}  {'verdict':7} {'lift (95% CI)':22} {'corner':>6}  failing checks")
    for kind, story, control, verdict in rows:
        overall = verdict.summary.get("overall", {})
        lift = overall.get("lift", {}).get("mean", {})
        corner = overall.get("corner_heat_max", {}).get("mean", {}).get("value")
        lift_text = _interval(lift)
        failing = ", ".join(sorted({c["check_id"] for c in verdict.failed_checks})) or (verdict.error or "-")
        click.echo(
            f"{kind:11} {story:40} {control.accuracy:8.2f}  {verdict.status:7} {lift_text:22} "
            f"{_num(corner):>6}  {failing}"
        )
    click.echo("")
    click.echo(f"Reports: {workdir / 'reports'}/<model>/report.html")
    if tracking_uri:
        mlflow_bin = Path(sys.executable).with_name("mlflow")
        command = str(mlflow_bin) if mlflow_bin.exists() else "mlflow"
        click.echo(f"Review in MLflow: {command} ui --backend-store-uri {tracking_uri}  (then open http://127.0.0.1:5000)")
    expected = all((v.status in ("PASS", "WARN")) == (kind == "clean") for kind, _, _, v in rows)
    errored = [kind for kind, _, _, v in rows if v.status == "ERROR"]
    if errored:
        click.echo(f"demo: ERROR in {', '.join(errored)}", err=True)
        return 3
    if not expected:
        click.echo("demo: the gate did not separate the clean model from the shortcut models", err=True)
        return 1
    click.echo("demo: the clean model passed and every shortcut model failed, as expected.")
    return 0


def _num(value) -> str:
    return "–" if value is None else f"{value:.3f}"


def _interval(est: dict) -> str:
    if not est or est.get("value") is None:
        return "–"
    return f"{est['value']:.2f} [{_num(est.get('lo'))}, {_num(est.get('hi'))}]"
