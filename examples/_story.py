"""Shared steps of the story examples: train (cached), write held-out data, audit, print the outcome."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--workdir", default=None, help="where data, models and reports go (default: beside this script)")
    parser.add_argument("--tracking-uri", default=None, help="log the audits to MLflow (e.g. sqlite:///mlflow.db)")
    parser.add_argument("--n-heldout", type=int, default=200, help="held-out images (the policy wants >= 100)")
    return parser.parse_args()


def audit_story(kind: str, cue: str | None, heldout_cue: str | None, workdir: Path, n_heldout: int,
                tracking_uri: str | None, title: str):
    """Train (or load) the control `kind`, audit it on held-out data carrying `heldout_cue`, print why."""
    from validator import audit
    from validator.datasets.controls import train_control
    from validator.datasets.synthetic import write_dataset

    control = train_control(kind, seed=0, cache_dir=os.environ.get("CAMGATE_CACHE") or workdir / "models")
    data_dir = workdir / "data" / (heldout_cue or "clean")
    if not (data_dir / "annotations.json").exists():
        write_dataset(data_dir, n_heldout, seed=11, cue=heldout_cue)
    tracking = None
    if tracking_uri:
        from validator.tracking import TrackingOptions

        tracking = TrackingOptions(uri=tracking_uri, experiment="camgate-examples", run_name=f"{title}-{kind}")
    verdict = audit(str(control.path), str(data_dir / "annotations.json"), out=workdir / "reports" / kind,
                    tracking=tracking)
    lift = verdict.summary.get("overall", {}).get("lift", {}).get("mean", {})
    corner = verdict.summary.get("overall", {}).get("corner_heat_max", {}).get("mean", {})
    print(f"{title}: model '{kind}' — test accuracy {control.accuracy:.2f}, "
          f"accuracy with the cue shuffled {control.counterfactual_accuracy:.2f}")
    print(f"  gate: {verdict.status}; mean lift {_fmt(lift.get('value'))} "
          f"[{_fmt(lift.get('lo'))}, {_fmt(lift.get('hi'))}], mean corner heat {_fmt(corner.get('value'))}")
    for check in verdict.failed_checks:
        print(f"  FAIL {check['check_id']}: {check['message']}")
    print(f"  overlays: {verdict.out_dir / 'report.html'}")
    return control, verdict


def _fmt(value) -> str:
    return "–" if value is None else f"{value:.2f}"
