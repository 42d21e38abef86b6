"""Every example runs (fast settings) so examples cannot rot; the Action's shell step runs as in GitHub."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def run(cmd, env_extra, cwd, timeout=600):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **{k: str(v) for k, v in env_extra.items()}}
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture()
def cached_controls(control_cache_dir, clean_model, watermark_model, weather_model):
    """The examples train the same controls as the fixtures: point them at the session's cache."""
    return {"CAMGATE_CACHE": control_cache_dir}


@pytest.mark.parametrize(
    ("script", "failing_check"),
    [("tanks_in_the_forest/run.py", "object-heat"), ("copyright_tag/run.py", "corner-heat")],
)
def test_story_examples_fail_the_shortcut_and_pass_the_fix(tmp_path, cached_controls, script, failing_check):
    result = run([sys.executable, ROOT / "examples" / script, "--workdir", tmp_path, "--n-heldout", 120],
                 cached_controls, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "story holds" in result.stdout
    assert f"FAIL {failing_check}" in result.stdout
    reports = sorted(p.parent.name for p in (tmp_path / "reports").glob("*/verdict.json"))
    assert reports == ["clean", "watermark" if "copyright" in script else "weather"]


def test_ci_example_and_action_step_gate_a_shortcut_model(tmp_path, cached_controls):
    build = tmp_path / "build"
    trained = run([sys.executable, ROOT / "examples/ci/train.py", "--out", build, "--kind", "watermark",
                   "--n-heldout", 120], cached_controls, tmp_path)
    assert trained.returncode == 0, trained.stderr
    summary, outputs = tmp_path / "step_summary.md", tmp_path / "github_output"
    camgate = Path(sys.executable).with_name("camgate")
    step = run(
        ["bash", ROOT / ".github/actions/camgate/run.sh"],
        {
            "CAMGATE_BIN": camgate, "CAMGATE_MODEL": build / "model.keras",
            "CAMGATE_DATA": build / "heldout/annotations.json", "CAMGATE_OUT": tmp_path / "report",
            "GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": summary, "GITHUB_OUTPUT": outputs,
        },
        tmp_path,
    )
    assert step.returncode == 1, step.stdout + step.stderr
    assert "status=FAIL" in outputs.read_text() and "exit-code=1" in outputs.read_text()
    assert "camgate: **FAIL**" in summary.read_text()
    annotations = [line for line in step.stdout.splitlines() if line.startswith("::error")]
    assert 1 <= len(annotations) <= 11 and any("corner-heat" in a for a in annotations)
    assert (tmp_path / "report" / "NOT_BLESSED").exists()

    clean_build = tmp_path / "clean"
    assert run([sys.executable, ROOT / "examples/ci/train.py", "--out", clean_build, "--n-heldout", 120],
               cached_controls, tmp_path).returncode == 0
    gate = run(["bash", ROOT / "examples/ci/gate.sh", clean_build],
               {**cached_controls, "PATH": f"{camgate.parent}:{os.environ['PATH']}"}, tmp_path)
    assert gate.returncode == 0, gate.stdout + gate.stderr
    assert json.loads((clean_build / "camgate-report/verdict.json").read_text())["status"] in ("PASS", "WARN")


def test_train_with_gate_logs_lift_over_epochs(tmp_path):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run([sys.executable, ROOT / "examples/train_with_gate.py", "--epochs", 2, "--n-train", 600,
                  "--n-heldout", 100, "--workdir", tmp_path / "work", "--tracking-uri", uri], {}, tmp_path)
    assert result.returncode in (0, 1), result.stdout + result.stderr  # the verdict decides; errors would be 3
    assert "final gate verdict" in result.stdout
    client = mlflow.tracking.MlflowClient(uri)
    experiment = client.get_experiment_by_name("camgate-train-with-gate")
    (training_run,) = client.search_runs([experiment.experiment_id])
    history = client.get_metric_history(training_run.info.run_id, "lift_mean/overall")
    assert sorted(m.step for m in history) == [0, 1]
    assert training_run.data.tags["camgate.status"] in ("PASS", "WARN", "FAIL")
