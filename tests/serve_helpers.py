"""Processes for the `camgate serve` tests: a real `mlflow server` (SQLite, webhooks allowed to 127.0.0.1) and a
real `camgate serve`, each in its own process group, stopped by that group's id; every wait is bounded."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from validator.serve.signature import DELIVERY_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

REPO = Path(__file__).resolve().parents[1]
FAST_POLICY = """name: serve-fast
version: 1
sample: {max_samples: 60, seed: 0, min_samples: 40, min_per_class: 20}
probes:
  counterfactual: false
  hotspot: {samples: 0}
  faithfulness: {samples: 0}
  sanity: {samples: 0}
checks:
  - {id: object-heat, metric: relative_lift, aggregate: mean, bound: lower, min: 0.15, severity: fail}
  - {id: corner-heat, metric: corner_lift_max, aggregate: mean, bound: upper, max: 5.0, severity: fail}
  - {id: dead-maps, metric: dead, aggregate: rate, bound: upper, max: 0.1, severity: fail}
  - {id: accuracy, metric: correct, aggregate: rate, bound: lower, min: 0.6, severity: fail}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get_json(url: str, timeout: float = 5) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def post(url: str, body: bytes, headers: dict, timeout: float = 5) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def signed(secret: str, payload: dict | bytes, delivery_id: str | None = None, stamp: int | None = None):
    """(body, headers) as MLflow sends them."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    delivery_id = delivery_id or str(uuid.uuid4())
    stamp = str(int(time.time()) if stamp is None else stamp)
    return body, {"Content-Type": "application/json", DELIVERY_ID_HEADER: delivery_id, TIMESTAMP_HEADER: stamp,
                  SIGNATURE_HEADER: sign(secret, delivery_id, stamp, body)}


def created_event(name: str, version: str) -> dict:
    return {"entity": "model_version", "action": "created", "timestamp": "2026-01-01T00:00:00+00:00",
            "data": {"name": name, "version": version, "source": "models:/m-1", "run_id": None, "tags": {},
                     "description": None}}


class Proc:
    """A child in its own session; ``kill`` sends a signal to its whole group."""

    def __init__(self, args: list[str], log: Path, env: dict, cwd: Path):
        self.args, self.log, self.env, self.cwd = args, log, env, cwd
        self.process = None
        self.start()

    def start(self) -> None:
        with open(self.log, "a") as log:
            self.process = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT, cwd=self.cwd,
                                            env=self.env, start_new_session=True)

    def kill(self, sig=signal.SIGKILL, wait: float = 30) -> int | None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)
            try:
                self.process.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # children the parent left behind
        return self.process.returncode

    def tail(self, n: int = 6000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""


def wait_for(check, timeout: float, what: str, every: float = 0.5, tail=lambda: ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{tail()}")


def start_mlflow(root: Path, port: int, fernet_key: str) -> Proc:
    exe = Path(sys.executable).with_name("mlflow")
    env = {**os.environ, "MLFLOW_CONFIGURE_LOGGING": "false",
           # loopback delivery for the test (MLflow allows only https to public addresses by default)
           "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https", "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
           "MLFLOW_WEBHOOK_CACHE_TTL": "1", "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY": fernet_key}
    args = [str(exe) if exe.exists() else "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
            "--backend-store-uri", f"sqlite:///{root / 'server.db'}", "--artifacts-destination",
            str(root / "artifacts"), "--workers", "1"]
    proc = Proc(args, root / "mlflow.log", env, root)
    wait_for(lambda: _healthy(f"http://127.0.0.1:{port}/health"), 240, "mlflow server", tail=proc.tail)
    return proc


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def start_serve(root: Path, config: Path, port: int, secret: str, uri: str) -> Proc:
    env = {**os.environ, "PYTHONPATH": str(REPO), "CAMGATE_WEBHOOK_SECRET": secret, "MLFLOW_TRACKING_URI": uri,
           "TF_CPP_MIN_LOG_LEVEL": "2", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
           "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1", "CAMGATE_MLFLOW_RETRY_SECONDS": "40"}
    proc = Proc([sys.executable, "-m", "validator.cli", "serve", "--config", str(config), "--port", str(port)],
                root / "serve.log", env, root)
    wait_for(lambda: _healthy(f"http://127.0.0.1:{port}/healthz"), 60, "camgate serve", tail=proc.tail)
    return proc
