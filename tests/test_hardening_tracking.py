"""Hardening of the MLflow record: retries that cannot duplicate, errors classified by type, a scoped
``quiet_mlflow``, option typos refused up front, and the split of ``validator.tracking``.

No mocks of MLflow: a real ``mlflow server`` on 127.0.0.1 behind a real tiny HTTP proxy that injects faults
on chosen requests (the request reaches the server and the answer is lost, or the connection is dropped),
and real exception objects from ``requests`` and ``mlflow``.
"""

from __future__ import annotations

import ast
import http.client
import json
import logging
import math
import os
import re
import threading
import warnings
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from validator.errors import UsageError
from validator.tracking import TrackingOptions, is_transient, quiet_mlflow

ATTEMPT_TAG = "camgate.attempt_id"
METRIC_BATCH = r'"metrics":\s*\[\s*\{'  # a log-batch request body with metric points (not params or tags)
REPO = Path(__file__).resolve().parents[1]

POLICY = """name: faults-pass
version: 1
sample: {max_samples: 24, seed: 0, min_samples: 10, min_per_class: 5}
checks:
  - {id: dead-maps, metric: dead, aggregate: rate, bound: point, max: 1.0, severity: fail}
"""


# ------------------------------------------------------------------------------ a faulty network path

_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}


@dataclass
class Fault:
    """Inject ``mode`` on the first ``times`` requests matching method, path and body (regular expressions).

    ``lost``: forwarded (the server acts on it), then the client gets a 503: the answer was lost on the way
    back. ``drop``: forwarded, then the connection is closed without an answer.
    """

    method: str
    path: str
    mode: str = "lost"
    body: str | None = None
    times: int = 1
    injected: int = 0


class FaultProxy:
    """A real HTTP proxy (``http.server`` + ``http.client``) in front of a real MLflow server."""

    def __init__(self, upstream: str):
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname, parts.port)
        self.faults: list[Fault] = []
        self.log: list[tuple[str, str, str, str]] = []  # (method, path, mode, start of the body)
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _read_body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while (size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)) > 0:
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    self.rfile.readline()
                    return b"".join(chunks)
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _handle(self):
                body = self._read_body()
                path = unquote(self.path)
                fault = proxy._match(self.command, path, body)
                mode = fault.mode if fault else "pass"
                with proxy.lock:
                    proxy.log.append((self.command, path, mode, body[:4000].decode("utf-8", "replace")))
                status, headers, payload = proxy._forward(self.command, self.path, self.headers, body)
                if mode == "drop":
                    self.close_connection = True
                    self.connection.close()
                    return
                if mode == "lost":
                    status, headers, payload = 503, [("Content-Type", "text/plain")], b"injected: answer lost"
                self.send_response(status)
                for key, value in headers:
                    if key.lower() not in _HOP and key.lower() != "content-length":
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def fail(self, method: str, path: str, mode: str = "lost", body: str | None = None) -> Fault:
        fault = Fault(method.upper(), path, mode, body)
        with self.lock:
            self.faults.append(fault)
        return fault

    def count(self, method: str, path: str, body: str | None = None) -> int:
        """Requests that reached the proxy (whatever happened to them) with this method, path and body."""
        with self.lock:
            return sum(1 for m, p, _, text in self.log if m == method and re.search(path, p)
                       and (body is None or re.search(body, text)))

    def _match(self, method: str, path: str, body: bytes) -> Fault | None:
        text = body.decode("utf-8", "replace")
        with self.lock:
            for fault in self.faults:
                if (fault.method == method and re.search(fault.path, path) and fault.injected < fault.times
                        and (fault.body is None or re.search(fault.body, text))):
                    fault.injected += 1
                    return fault
        return None

    def _forward(self, method: str, path: str, headers, body: bytes):
        conn = http.client.HTTPConnection(*self.upstream, timeout=120)
        try:
            out = {k: v for k, v in headers.items() if k.lower() not in _HOP and k.lower() != "host"}
            out["Host"], out["Content-Length"] = f"{self.upstream[0]}:{self.upstream[1]}", str(len(body))
            conn.request(method, path, body=body, headers=out)
            response = conn.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            conn.close()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def faulty(tmp_path_factory):
    """One audit recorded through the proxy while it loses the answer to (or drops) the requests that
    create the experiment, the run and the audited file's logged model, log the first metric batch, link the
    model to the run, upload an overlay and the tables."""
    from test_mlflow_server import MlflowServer

    from validator._tf import keras
    from validator.datasets.controls import build_small_cnn
    from validator.datasets.synthetic import write_dataset
    from validator.gate import audit

    root = tmp_path_factory.mktemp("faults")
    server = MlflowServer(root)  # boots while the inputs are built
    data = write_dataset(root / "data", 24, seed=3)
    keras.utils.set_random_seed(2)
    model = root / "faulty.keras"
    build_small_cnn(64, 2).save(model)
    (root / "policy.yaml").write_text(POLICY)
    server.wait()
    proxy = FaultProxy(server.url)
    faults = {
        "experiment": proxy.fail("POST", r"/experiments/create$", "lost"),
        "run": proxy.fail("POST", r"/runs/create$", "lost"),
        "metrics": proxy.fail("POST", r"/runs/log-batch$", "lost", body=METRIC_BATCH),
        "model": proxy.fail("POST", r"/logged-models$", "lost"),
        "link": proxy.fail("POST", r"/runs/log-inputs$", "lost", body=r'"models"'),
        "overlay": proxy.fail("PUT", r"/artifacts/camgate/report/overlays/worst_disc_0_[^/]*\.png$", "drop"),
        "samples": proxy.fail("PUT", r"/artifacts/camgate/samples\.json$", "lost"),
        "overlays": proxy.fail("PUT", r"/artifacts/camgate/overlays\.json$", "drop"),
    }
    try:
        verdict = audit(model, data.coco_path, policy=root / "policy.yaml", out=root / "report",
                        tracking=TrackingOptions(uri=proxy.url, experiment="faults", retry_seconds=60))
        import mlflow

        yield {"verdict": verdict, "proxy": proxy, "faults": faults, "root": root, "server": server,
               "client": mlflow.MlflowClient(tracking_uri=server.url)}  # read back around the proxy
    finally:
        proxy.close()
        server.stop()


def _recorded(faulty):
    verdict = faulty["verdict"]
    assert verdict.status == "PASS", verdict.error
    for name, fault in faulty["faults"].items():
        assert fault.injected == 1, f"the {name} fault was never injected: the test would prove nothing"
    return verdict


@pytest.mark.server
def test_lost_create_run_answer_still_makes_exactly_one_run(faulty):
    verdict, client, proxy = _recorded(faulty), faulty["client"], faulty["proxy"]
    experiment = client.get_experiment_by_name("faults")
    assert experiment is not None and verdict.tracking["experiment_id"] == experiment.experiment_id
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1, [r.info.run_id for r in runs]
    run = runs[0]
    assert run.info.run_id == verdict.tracking["run_id"] and run.info.status == "FINISHED"
    assert run.data.tags[ATTEMPT_TAG]  # found again by this client-generated tag, not created twice
    assert proxy.count("POST", r"/runs/create$") == 1  # the lost creation was looked up, not re-sent
    assert verdict.tracking["connect_retries"] >= 2


@pytest.mark.server
def test_lost_metric_batch_is_detected_not_resent_nor_duplicated(faulty):
    verdict, client, proxy = _recorded(faulty), faulty["client"], faulty["proxy"]
    run_id = verdict.tracking["run_id"]
    run = client.get_run(run_id)
    assert run.data.metrics["gate/ok"] == 1.0 and "lift_mean/overall" in run.data.metrics
    for key in sorted(run.data.metrics)[:: max(1, len(run.data.metrics) // 10)] + ["gate/ok"]:
        history = client.get_metric_history(run_id, key)
        assert len(history) == 1, (key, history)
        assert history[0].step == 0
    # Each batch (500 points at most) was sent once: the first one's answer was lost, reading the history
    # showed it had landed, so it was not sent again.
    assert proxy.count("POST", r"/runs/log-batch$", body=METRIC_BATCH) == math.ceil(len(run.data.metrics) / 500)
    assert proxy.count("GET", r"/metrics/get-history") >= 1


@pytest.mark.server
def test_retried_overlay_upload_stores_it_once(faulty):
    verdict, client = _recorded(faulty), faulty["client"]
    run_id = verdict.tracking["run_id"]
    stored = [f.path for f in client.list_artifacts(run_id, "camgate/report/overlays")]
    worst = [p for p in stored if Path(p).name.startswith("worst_disc_0_")]
    assert len(worst) == 1  # the dropped upload was retried to the same path
    assert len(stored) == len(set(stored)) == len(verdict.overlays) - len(verdict.tracking.get("overlay_artifacts", {}))
    assert not client.list_artifacts(run_id, "images")  # no keyed-image copy of a full record's overlays


@pytest.mark.server
def test_lost_logged_model_answers_make_one_model_linked_once(faulty):
    verdict, client, proxy = _recorded(faulty), faulty["client"], faulty["proxy"]
    run_id = verdict.tracking["run_id"]
    models = client.search_logged_models([verdict.tracking["experiment_id"]],
                                         filter_string=f"tags.`camgate.run_id` = '{run_id}'")
    assert [m.model_id for m in models] == [verdict.tracking["model_id"]]  # found again, not created twice
    assert proxy.count("POST", r"/logged-models$") == 1
    assert [m.model_id for m in client.get_run(run_id).inputs.model_inputs] == [verdict.tracking["model_id"]]
    assert proxy.count("POST", r"/runs/log-inputs$", body=r'"models"') == 1  # its lost answer was checked
    assert models[0].tags["camgate.status"] == "PASS" and models[0].source_run_id == run_id


@pytest.mark.server
def test_retried_table_upload_does_not_append_the_table_to_itself(faulty):
    verdict, client = _recorded(faulty), faulty["client"]
    run_id = verdict.tracking["run_id"]
    import mlflow

    mlflow.set_tracking_uri(faulty["server"].url)  # MlflowClient.load_table searches runs via the global URI
    try:
        experiment_id = verdict.tracking["experiment_id"]
        samples = client.load_table(experiment_id, "camgate/samples.json", run_ids=[run_id])
        overlays = client.load_table(experiment_id, "camgate/overlays.json", run_ids=[run_id])
    finally:
        mlflow.set_tracking_uri(None)
    assert len(samples) == verdict.sample["n_explained"]  # not appended to itself by the retry
    assert len(overlays) == len(verdict.overlays)
    listed = json.loads(client.get_run(run_id).data.tags["mlflow.loggedArtifacts"])
    assert {"path": "camgate/samples.json", "type": "table"} in listed
    assert listed.count({"path": "camgate/overlays.json", "type": "table"}) == 1
    assert not client.list_artifacts(run_id, "table_images")  # the image cells point at the overlay files
    assert all(cell["filepath"].startswith("camgate/report/overlays/") for cell in overlays["image"])


# ------------------------------------------------------------------------------ classification by type


def _raised_while_handling(cause: BaseException, outer: BaseException) -> BaseException:
    """``outer`` as Python leaves it when raised inside ``except`` (``__context__`` = ``cause``), the way
    MLflow's HTTP wrapper raises "API request to ... failed with exception ..."."""
    try:
        try:
            raise cause
        except BaseException:
            raise outer  # noqa: B904
    except BaseException as exc:
        return exc


def test_transient_network_errors_by_type():
    import requests
    import urllib3

    assert is_transient(requests.exceptions.ConnectionError("refused"))
    assert is_transient(requests.exceptions.ReadTimeout("slow"))
    assert is_transient(requests.exceptions.ChunkedEncodingError("cut"))
    # What MLflow's HTTP session raises for a 429/5xx answer when its own retries are off:
    retry = requests.exceptions.RetryError(urllib3.exceptions.MaxRetryError(
        None, "/api/2.0/mlflow/runs/create", urllib3.exceptions.ResponseError("too many 503 error responses")))
    assert is_transient(retry)
    assert is_transient(ConnectionResetError(104, "reset"))
    assert is_transient(TimeoutError("socket"))


def test_mlflow_errors_by_code_and_status_not_text():
    import requests
    from mlflow.exceptions import MlflowException, RestException
    from mlflow.protos.databricks_pb2 import (
        INVALID_PARAMETER_VALUE,
        RESOURCE_ALREADY_EXISTS,
        RESOURCE_EXHAUSTED,
        TEMPORARILY_UNAVAILABLE,
    )

    assert is_transient(MlflowException("busy", error_code=TEMPORARILY_UNAVAILABLE))
    assert is_transient(MlflowException("quota", error_code=RESOURCE_EXHAUSTED))
    # A server's own JSON error: INTERNAL_ERROR (HTTP 500) and 429 are worth a retry, 4xx codes are not.
    assert is_transient(RestException({"error_code": "INTERNAL_ERROR", "message": "db hiccup"}))
    assert is_transient(RestException({"error_code": "REQUEST_LIMIT_EXCEEDED", "message": "slow down"}))
    assert RestException({"error_code": "REQUEST_LIMIT_EXCEEDED"}).get_http_status_code() == 429
    assert not is_transient(RestException({"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no run"}))
    assert not is_transient(RestException({"error_code": "INVALID_PARAMETER_VALUE", "message": "bad"}))
    # Text is not evidence: MlflowException's default code (INTERNAL_ERROR) with a network-looking message.
    assert not is_transient(MlflowException("API request to http://x failed with exception timeout"))
    assert not is_transient(ValueError("database is locked; connection refused; timeout"))
    # ... its cause is: MLflow's wrapper raised while handling a refused connection.
    wrapped = _raised_while_handling(requests.exceptions.ConnectionError("refused"),
                                     MlflowException("API request to http://x failed with exception boom"))
    assert isinstance(wrapped, MlflowException) and is_transient(wrapped)
    # A definite answer is final even when it was raised while handling a network error.
    final = _raised_while_handling(requests.exceptions.ConnectionError("refused"),
                                   MlflowException("exists", error_code=RESOURCE_ALREADY_EXISTS))
    assert not is_transient(final)
    assert not is_transient(MlflowException("bad name", error_code=INVALID_PARAMETER_VALUE))


def test_locked_sqlite_store_is_transient_through_mlflows_own_wrapper(tmp_path):
    """A real locked SQLite file: MLflow's store raises TEMPORARILY_UNAVAILABLE, and that code decides."""
    import sqlite3

    import mlflow
    from mlflow.exceptions import MlflowException

    uri = f"sqlite:///{tmp_path / 'locked.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("locked")
    holder = sqlite3.connect(tmp_path / "locked.db", timeout=0, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another writer holds the file (SQLite gives up after its 5 s wait)
    try:
        with pytest.raises(MlflowException) as info:
            client.create_run(experiment)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert "locked" in str(info.value)  # the situation this test is about, not how it is classified
    assert info.value.error_code == "TEMPORARILY_UNAVAILABLE"
    assert is_transient(info.value)


# ---------------------------------------------------------------------------------------- quiet_mlflow

_LOGGERS = ("mlflow", "alembic", "urllib3", "sqlalchemy", "mlflow.store.db.utils")
_ENV = ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")


def _state():
    return (list(warnings.filters), {k: os.environ.get(k) for k in _ENV},
            {n: logging.getLogger(n).level for n in _LOGGERS})


@pytest.fixture
def clean_state(monkeypatch):
    for key in _ENV:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "77")
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.filterwarnings("error", message="camgate-test-marker")
        levels = {n: logging.getLogger(n).level for n in _LOGGERS}
        logging.getLogger("mlflow").setLevel(logging.INFO)
        yield
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


@pytest.mark.usefixtures("clean_state")
def test_quiet_mlflow_restores_filters_env_and_levels_also_when_the_body_raises():
    before = _state()
    with quiet_mlflow():
        assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "0"
        assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "77"  # a timeout set by the user is kept
        assert logging.getLogger("mlflow").level == logging.ERROR
        warnings.warn("silenced", UserWarning, stacklevel=1)
    assert _state() == before
    with pytest.raises(RuntimeError, match="body"), quiet_mlflow():
        raise RuntimeError("body")
    assert _state() == before
    with quiet_mlflow(), quiet_mlflow():  # nested
        pass
    assert _state() == before


@pytest.mark.usefixtures("clean_state")
def test_quiet_mlflow_overlapping_threads_leave_nothing_behind():
    """Thread A enters, then B; A leaves first, then B: B must not 'restore' A's settings for good."""
    before = _state()
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    errors = []

    def thread_a():
        try:
            with quiet_mlflow():
                a_in.set()
                b_in.wait(10)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            a_out.set()

    worker = threading.Thread(target=thread_a)
    worker.start()
    assert a_in.wait(10)
    with quiet_mlflow():
        b_in.set()
        assert a_out.wait(10)
        assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "0"  # B is still inside: still quiet
    worker.join(10)
    assert not errors
    assert _state() == before


@pytest.mark.usefixtures("clean_state")
def test_quiet_mlflow_keeps_what_the_body_itself_changed():
    """A library imported inside the block may register its own filters: leaving must not drop them."""
    before_filters = list(warnings.filters)
    with quiet_mlflow():
        warnings.filterwarnings("ignore", message="registered-inside-the-block")
        added = warnings.filters[0]
    assert added in warnings.filters
    assert [f for f in warnings.filters if f is not added] == before_filters


# --------------------------------------------------------------------------- option typos, up front


def test_callback_refuses_an_unknown_audit_option_before_training(tmp_path):
    import numpy as np

    from validator._tf import keras
    from validator.callback import CamGateCallback, UnknownOptionError
    from validator.datasets.controls import build_small_cnn

    keras.utils.set_random_seed(0)
    model = build_small_cnn(64, 2)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x, y = np.zeros((4, 64, 64, 3), "float32"), np.array([0, 1, 0, 1])
    epochs = []
    with pytest.raises(UnknownOptionError, match=r"'max_sample' \(did you mean 'max_samples'\?\)") as info:
        model.fit(x, y, epochs=1, verbose=0, callbacks=[
            keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: epochs.append(epoch)),
            CamGateCallback(data=tmp_path / "none.json", tracking=None, max_sample=10),
        ])
    assert epochs == []  # refused while building the callback list: no epoch ran
    assert isinstance(info.value, TypeError) and isinstance(info.value, UsageError)
    with pytest.raises(TypeError, match=r"'metod' \(did you mean 'method'\?\)"):
        CamGateCallback(data="d.json", metod="gradcam")
    gate = CamGateCallback(data="d.json", tracking=None, method="gradcam", max_samples=10, seed=1,
                           batch_size=4, fail_on="warn", preprocess="none", trust_model=False)
    assert gate.audit_options["max_samples"] == 10


def test_evaluator_refuses_an_unknown_config_key():
    from validator.evaluator import CamGateEvaluator

    with pytest.raises(UsageError, match=r"'polcy' \(did you mean 'policy'\?\)"):
        CamGateEvaluator().evaluate(model_type="classifier", dataset=None, run_id="r",
                                    evaluator_config={"polcy": "policy.yaml"})


# ------------------------------------------------------------------------------------- module layout


def _validator_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("validator"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names if node.module == "validator.tracking")
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("validator"))
    return found


def test_tracking_is_split_with_one_way_imports():
    package = REPO / "validator" / "tracking"
    assert package.is_dir() and not (REPO / "validator" / "tracking.py").exists()
    plumbing = _validator_imports(REPO / "validator" / "mlflow_plumbing.py")
    assert plumbing <= {"validator.errors"}, plumbing  # a leaf
    rank = ["names", "options", "uploads", "registry", "tables", "content", "record"]  # each imports only earlier ones
    for i, name in enumerate(rank):
        imports = _validator_imports(package / f"{name}.py")
        inside = {m.removeprefix("validator.tracking.") for m in imports if m.startswith("validator.tracking.")}
        assert inside <= set(rank[:i]), (name, inside)
        assert "validator.tracking" not in imports or name in ("content", "record"), (name, imports)
        assert not any(m.startswith(("validator.gate", "validator.callback", "validator.cli")) for m in imports)
    for path in package.glob("*.py"):
        assert len(path.read_text().splitlines()) < 400, path


def test_public_names_still_import_from_validator_tracking():
    import validator.tracking as tracking
    from validator import mlflow_plumbing

    for name in ("TrackingOptions", "log_verdict", "resolve_tracking_uri", "summary_metrics", "metric_name",
                 "slice_token", "image_key", "DEFAULT_URI", "quiet_mlflow", "is_transient"):
        assert hasattr(tracking, name), name
    assert tracking.quiet_mlflow is mlflow_plumbing.quiet_mlflow
    assert tracking.is_transient is mlflow_plumbing.is_transient
    assert tracking.resolve_tracking_uri is mlflow_plumbing.resolve_tracking_uri
