"""The gate against a real `mlflow server` on 127.0.0.1 (HTTP, proxied artifacts), then with it stopped."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from cli_helpers import run_cli

pytestmark = pytest.mark.server

POLICY = """name: server-pass
version: 1
sample: {max_samples: 30, seed: 0, min_samples: 10, min_per_class: 5}
checks:
  - {id: dead-maps, metric: dead, aggregate: rate, bound: point, max: 1.0, severity: fail}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MlflowServer:
    """`mlflow server` in its own process group (it starts a uvicorn child), stopped by that group's id."""

    def __init__(self, root: Path, backend_uri: str | None = None, command: str = "server"):
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = root / f"mlflow-{command}.log"
        exe = Path(sys.executable).with_name("mlflow")
        args = [str(exe) if exe.exists() else "mlflow", command, "--host", "127.0.0.1", "--port", str(self.port),
                "--backend-store-uri", backend_uri or f"sqlite:///{root / 'server.db'}"]
        if command == "server":
            args += ["--artifacts-destination", str(root / "artifacts"), "--workers", "1"]
        env = {**os.environ, "MLFLOW_CONFIGURE_LOGGING": "false"}
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=root, env=env,
                                            start_new_session=True)

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def wait(self, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"mlflow server exited ({self.process.returncode}):\n{self.tail()}")
            if self.healthy():
                return
            time.sleep(0.3)
        pytest.fail(f"mlflow server not healthy after {timeout}s:\n{self.tail()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=3)
            except subprocess.TimeoutExpired:  # its graceful shutdown takes >10 s; a test server need not wait
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # the uvicorn child, if the parent went first
        deadline = time.monotonic() + 10
        while self.healthy() and time.monotonic() < deadline:
            time.sleep(0.2)

    def tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    handle = MlflowServer(tmp_path_factory.mktemp("mlflow_server"))  # boots while the inputs are built
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    from validator._tf import keras
    from validator.datasets.controls import build_small_cnn
    from validator.datasets.synthetic import write_dataset

    root = tmp_path_factory.mktemp("server_inputs")
    data = write_dataset(root / "data", 30, seed=2)
    keras.utils.set_random_seed(1)
    model = root / "served.keras"
    build_small_cnn(64, 2).save(model)
    policy = root / "policy.yaml"
    policy.write_text(POLICY)
    return {"root": root, "data": data.coco_path, "model": model, "policy": policy}


def test_audit_over_http_then_exit_3_when_the_server_is_gone(server, inputs, capsys, monkeypatch):
    import mlflow

    out = inputs["root"] / "report-http"
    # The record retries while the server is still booting (connection refused is transient).
    monkeypatch.setenv("CAMGATE_MLFLOW_RETRY_SECONDS", "240")
    result = run_cli(capsys, "audit", inputs["model"], "--data", inputs["data"], "--policy", inputs["policy"],
                     "--tracking-uri", server.url, "--experiment", "http-gate", "--out", out, "-q")
    assert result.exit_code == 0, result.err + server.tail()
    verdict = json.loads((out / "verdict.json").read_text())
    run_id = verdict["tracking"]["run_id"]
    assert f"MLflow run {run_id}" in result.out
    assert verdict["tracking"]["uri"] == server.url
    assert verdict["tracking"]["url"].startswith(f"{server.url}/#/experiments/")

    client = mlflow.MlflowClient(tracking_uri=server.url)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["camgate.status"] == "PASS"
    assert run.data.params["camgate.policy_name"] == "server-pass"
    assert "lift_mean/overall" in run.data.metrics
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")  # uploaded through the server
    overlays = [f.path for f in client.list_artifacts(run_id, "camgate/report/overlays")]
    assert any(p.endswith("atlas_overall.png") for p in overlays)
    mlflow.set_tracking_uri(server.url)  # MlflowClient.load_table searches runs through the global URI
    try:
        table = client.load_table(run.info.experiment_id, "camgate/samples.json", run_ids=[run_id])
    finally:
        mlflow.set_tracking_uri(None)
    assert len(table) == verdict["sample"]["n_explained"]
    local = Path(client.download_artifacts(run_id, overlays[0], str(inputs["root"] / "dl")))
    assert local.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    server.stop()
    assert not server.healthy()
    out_down = inputs["root"] / "report-down"
    monkeypatch.setenv("CAMGATE_MLFLOW_RETRY_SECONDS", "2")
    started = time.monotonic()
    result = run_cli(capsys, "audit", inputs["model"], "--data", inputs["data"], "--policy", inputs["policy"],
                     "--tracking-uri", server.url, "--out", out_down)
    assert time.monotonic() - started < 60
    assert result.exit_code == 3, result.out + result.err
    assert server.url in result.err  # the message names the URI
    down = json.loads((out_down / "verdict.json").read_text())
    assert down["status"] == "ERROR" and down["exit_code"] == 3
    assert server.url in down["error"] and "unreachable" in down["error"]
    assert (out_down / "NOT_BLESSED").read_text().strip() == "ERROR"
    assert not (out_down / "BLESSED").exists()
    assert (out_down / "report.html").exists() and (out_down / "samples.csv").exists()
