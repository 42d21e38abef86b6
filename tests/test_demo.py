"""`camgate demo`: the three stories end to end into a real SQLite MLflow store."""

from __future__ import annotations

import pytest
from cli_helpers import run_cli

pytestmark = pytest.mark.slow


def test_demo_fails_every_shortcut_passes_clean_and_logs_runs(tmp_path, capsys, monkeypatch, control_cache_dir,
                                                             clean_model, watermark_model, weather_model,
                                                             background_model):
    import mlflow

    monkeypatch.setenv("CAMGATE_CACHE", str(control_cache_dir))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_cli(capsys, "demo", "--workdir", tmp_path / "demo", "--tracking-uri", uri, "--fast")
    assert result.exit_code == 0, result.out + result.err
    lines = {line.split()[0]: line for line in result.out.splitlines() if line.split() and line.split()[0] in
             ("clean", "weather", "watermark", "background")}
    assert " PASS " in lines["clean"] or " WARN " in lines["clean"]
    for kind in ("weather", "watermark", "background"):
        assert " FAIL " in lines[kind], lines[kind]
    assert "corner-heat" in lines["watermark"]
    assert "mlflow ui --backend-store-uri" in result.out
    client = mlflow.tracking.MlflowClient(uri)
    experiment = client.get_experiment_by_name("camgate-demo")
    runs = client.search_runs([experiment.experiment_id])
    statuses = {r.data.tags["camgate.run_label"]: r.data.tags["camgate.status"] for r in runs}
    assert statuses["demo-weather"] == "FAIL" and statuses["demo-clean"] in ("PASS", "WARN")
    assert len(runs) == 4
    for r in runs:  # the verdict leads the run name; the record is bounded
        assert r.info.run_name == f"{r.data.tags['camgate.status']} · {r.data.tags['camgate.run_label']}"
        assert len(r.data.metrics) <= 53  # the default policy's bound (test_tracking)
