"""`camgate serve` for real: a `mlflow server` (SQLite) on 127.0.0.1 sends its registry webhooks, created with
``MlflowClient().create_webhook``, to a `camgate serve` subprocess on 127.0.0.1. The clean control passes and
takes the alias; the watermark control fails and does not. Then a burst of 50 deliveries, a SIGKILL mid-audit,
and the tracking server stopped while an audit finishes. Timings go to ``$CAMGATE_SERVE_NOTES`` if set."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from serve_helpers import (
    FAST_POLICY,
    created_event,
    free_port,
    get_json,
    post,
    signed,
    start_mlflow,
    start_serve,
    wait_for,
)

pytestmark = [pytest.mark.server, pytest.mark.timeout(900)]

MODEL = "shapes-gate"
SECRET = "e2e-webhook-secret"
FINAL = ("PASS", "WARN", "FAIL", "ERROR", "INCONCLUSIVE")
NOTES: dict = {}


@pytest.fixture(scope="module")
def stack(tmp_path_factory, heldout_coco):
    from cryptography.fernet import Fernet
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("serve_e2e")
    mlflow_port, serve_port = free_port(), free_port()
    uri = f"http://127.0.0.1:{mlflow_port}"
    data = heldout_coco("watermark", n=60, seed=1)  # deploy-like data: the corner mark is on every image
    (root / "fast.yaml").write_text(FAST_POLICY)
    config = root / "serve.yaml"
    config.write_text(f"""tracking_uri: {uri}
secret_env: CAMGATE_WEBHOOK_SECRET
state: queue.db
reports: reports
experiment: camgate-serve
retry_seconds: 40
max_attempts: 4
shutdown_grace_s: 60
models:
  {MODEL}:
    data: {data.coco_path}
    policy: fast.yaml
    baseline: champion
    promote: champion
""")
    fernet = Fernet.generate_key().decode()
    state = {"root": root, "uri": uri, "config": config, "serve_port": serve_port, "mlflow_port": mlflow_port,
             "fernet": fernet, "url": f"http://127.0.0.1:{serve_port}"}
    state["mlflow"] = start_mlflow(root, mlflow_port, fernet)
    state["serve"] = start_serve(root, config, serve_port, SECRET, uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    state["client"] = client
    client.create_webhook(name="camgate", url=f"{state['url']}/webhook", secret=SECRET,
                          events=["model_version.created", "model_version_tag.set"])
    try:
        yield state
    finally:
        state["serve"].kill(signal.SIGTERM, wait=90)
        state["mlflow"].kill(signal.SIGTERM, wait=5)
        if os.environ.get("CAMGATE_SERVE_NOTES"):
            with open(os.environ["CAMGATE_SERVE_NOTES"], "w") as handle:
                json.dump(NOTES, handle, indent=1)


def register(stack, control) -> str:
    """Log the control with MLflow's keras flavour and register it: MLflow fires model_version.created."""
    import mlflow
    import mlflow.keras

    from validator._tf import keras

    model = keras.models.load_model(control.path)
    mlflow.set_tracking_uri(stack["uri"])
    try:
        info = mlflow.keras.log_model(model, name="model", registered_model_name=MODEL, pip_requirements=["keras"])
    finally:
        mlflow.set_tracking_uri(None)
    return str(info.registered_model_version)


def tags(stack, version: str) -> dict:
    try:
        return dict(stack["client"].get_model_version(MODEL, version).tags)
    except Exception:
        return {}


def judged(stack, version: str, timeout: float = 300) -> dict:
    return wait_for(lambda: (t := tags(stack, version)).get("camgate.status") in FINAL and
                    _job_state(stack, version) == "DONE" and t,
                    timeout, f"a verdict on {MODEL}/{version}", tail=stack["serve"].tail)


def _job_state(stack, version: str) -> str | None:
    try:
        _, status = get_json(stack["url"] + "/status")
    except OSError:
        return None
    return next((j["state"] for j in status["jobs"] if j["model"] == MODEL and j["version"] == version), None)


def gate_runs(stack, version: str) -> list:
    client = stack["client"]
    experiment = client.get_experiment_by_name("camgate-serve")
    return client.search_runs([experiment.experiment_id],
                              filter_string=f"tags.`camgate.serve_job` = '{MODEL}/{version}'")


def alias(stack) -> str | None:
    try:
        return str(stack["client"].get_model_version_by_alias(MODEL, "champion").version)
    except Exception:
        return None


def assert_one_verdict(stack, version: str, status: str) -> dict:
    t = tags(stack, version)
    assert t.get("camgate.status") == status, t
    finished = [r for r in gate_runs(stack, version) if r.info.status == "FINISHED"]
    assert len(finished) == 1, [(r.info.run_id, r.info.status) for r in gate_runs(stack, version)]
    assert t["camgate.run_id"] == finished[0].info.run_id
    assert t["camgate.run_url"].endswith(f"/runs/{finished[0].info.run_id}")
    assert finished[0].data.tags["camgate.status"] == status
    return t


def test_clean_passes_and_takes_the_alias_watermark_fails(stack, clean_model, watermark_model):
    clean = register(stack, clean_model)
    registered = stack["client"].get_model_version(MODEL, clean).creation_timestamp / 1000
    shortcut = register(stack, watermark_model)
    t_clean = judged(stack, clean)
    NOTES["registration_to_tag_s"] = round(time.time() - registered, 1)  # an upper bound: polled every 0.5 s
    t_short = judged(stack, shortcut)
    assert_one_verdict(stack, clean, "PASS")
    assert "camgate.failed_checks" not in t_clean
    assert t_clean["camgate.policy"] == "serve-fast v1"
    assert_one_verdict(stack, shortcut, "FAIL")
    assert "corner-heat" in t_short["camgate.failed_checks"].split(", ")
    assert alias(stack) == clean  # only the clean version took it
    _, status = get_json(stack["url"] + "/status")
    assert {(d["version"], d["status"]) for d in status["last"]} >= {(clean, "PASS"), (shortcut, "FAIL")}
    stack["versions"] = {clean: "PASS", shortcut: "FAIL"}
    log = stack["serve"].tail(200000)
    assert '"event": "webhook_ignored"' in log and "model_version_tag.set" in log  # its own tags come back


def test_a_burst_of_50_deliveries_gives_one_audit_per_version(stack, clean_model):
    known = sorted(stack["versions"])
    new = register(stack, clean_model)  # MLflow delivers once; 50 more by hand, in parallel, 20 duplicate ids
    ids = [f"burst-{i}" for i in range(30)] + [f"burst-{i}" for i in range(20)]
    versions = [new if i % 2 else known[i % len(known)] for i in range(50)]

    def send(i):
        body, headers = signed(SECRET, created_event(MODEL, versions[i]), delivery_id=ids[i])
        return post(stack["url"] + "/webhook", body, headers)

    started = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(send, range(50)))
    elapsed = time.monotonic() - started
    judged(stack, new)
    assert codes.count(409) == 20  # the replayed ids
    assert codes.count(202) <= 1 and codes.count(200) + codes.count(202) == 30, codes
    for version, status in {**stack["versions"], new: "PASS"}.items():
        assert_one_verdict(stack, version, status)
    assert alias(stack) == new
    stack["versions"][new] = "PASS"
    NOTES["burst"] = {"deliveries": 50, "seconds": round(elapsed, 2), "codes": {str(c): codes.count(c)
                      for c in sorted(set(codes))}, "gate_runs_for_new_version": len(gate_runs(stack, new))}


def test_sigkill_mid_audit_then_restart_finishes_every_version_once(stack, clean_model, watermark_model):
    from serve_helpers import start_serve

    shortcut = register(stack, watermark_model)
    wait_for(lambda: _job_state(stack, shortcut) == "RUNNING", 120, "the audit to start", tail=stack["serve"].tail)
    time.sleep(2)
    assert stack["serve"].kill(signal.SIGKILL) == -signal.SIGKILL
    clean = register(stack, clean_model)  # while the service is down: MLflow's delivery fails, the scan finds it
    assert tags(stack, shortcut).get("camgate.status") == "RUNNING"
    started = time.monotonic()
    stack["serve"] = start_serve(stack["root"], stack["config"], stack["serve_port"], SECRET, stack["uri"])
    judged(stack, shortcut)
    judged(stack, clean)
    for version, status in {**stack["versions"], shortcut: "FAIL", clean: "PASS"}.items():
        assert_one_verdict(stack, version, status)
    assert alias(stack) == clean
    stack["versions"].update({shortcut: "FAIL", clean: "PASS"})
    NOTES["crash"] = {"killed_during": shortcut, "registered_while_down": clean,
                      "restart_to_both_judged_s": round(time.monotonic() - started, 1),
                      "gate_runs": {v: len(gate_runs(stack, v)) for v in (shortcut, clean)}}


def test_tracking_server_down_while_an_audit_finishes(stack, clean_model):
    from serve_helpers import start_mlflow

    before = alias(stack)
    new = register(stack, clean_model)
    wait_for(lambda: _job_state(stack, new) == "RUNNING", 120, "the audit to start", tail=stack["serve"].tail)
    time.sleep(4)  # the model is loaded; the audit is explaining
    stack["mlflow"].kill(signal.SIGTERM, wait=5)
    seen = []
    stop = threading.Event()

    def watch():  # the service's own view while the server is down: never DONE without the server
        while not stop.is_set():
            seen.append(_job_state(stack, new))
            time.sleep(0.5)

    watcher = threading.Thread(target=watch)
    watcher.start()
    time.sleep(12)
    stop.set()
    watcher.join()
    assert "DONE" not in seen, seen
    stack["mlflow"] = start_mlflow(stack["root"], stack["mlflow_port"], stack["fernet"])
    assert alias(stack) == before  # nothing moved while the verdict could not be written
    judged(stack, new)
    assert_one_verdict(stack, new, "PASS")
    assert alias(stack) == new
    _, status = get_json(stack["url"] + "/status")
    job = next(j for j in status["jobs"] if j["version"] == new)
    NOTES["tracking_down"] = {"attempts": job["attempts"], "states_seen_while_down": sorted(set(filter(None, seen)))}


def test_sigterm_finishes_the_running_audit_or_requeues_it_never_half_written(stack, clean_model):
    """SIGTERM with a grace period: the running audit finishes and its verdict is written whole before the
    service exits. With no grace: the audit is stopped, the job goes back to PENDING with no verdict tag, and
    the next start judges the version once."""
    from serve_helpers import start_serve

    verdict_tags = ("camgate.run_id", "camgate.policy_hash", "camgate.checked_at")
    finished = register(stack, clean_model)
    wait_for(lambda: _job_state(stack, finished) == "RUNNING", 120, "the audit to start", tail=stack["serve"].tail)
    started = time.monotonic()
    # uvicorn re-raises the signal once its graceful shutdown is done: the status says SIGTERM, not SIGKILL
    assert stack["serve"].kill(signal.SIGTERM, wait=120) == -signal.SIGTERM
    graceful_s = round(time.monotonic() - started, 1)
    after = tags(stack, finished)
    assert after.get("camgate.status") == "PASS" and all(after.get(t) for t in verdict_tags), after

    no_grace = stack["root"] / "serve-no-grace.yaml"
    no_grace.write_text(stack["config"].read_text().replace("shutdown_grace_s: 60", "shutdown_grace_s: 0"))
    stack["serve"] = start_serve(stack["root"], no_grace, stack["serve_port"], SECRET, stack["uri"])
    stopped = register(stack, clean_model)
    wait_for(lambda: _job_state(stack, stopped) == "RUNNING", 120, "the audit to start", tail=stack["serve"].tail)
    time.sleep(2)
    assert stack["serve"].kill(signal.SIGTERM, wait=60) == -signal.SIGTERM
    half = tags(stack, stopped)
    assert half.get("camgate.status") in (None, "PENDING", "RUNNING") and not any(half.get(t) for t in verdict_tags)
    stack["serve"] = start_serve(stack["root"], stack["config"], stack["serve_port"], SECRET, stack["uri"])
    judged(stack, stopped)
    assert_one_verdict(stack, finished, "PASS")
    assert_one_verdict(stack, stopped, "PASS")
    stack["versions"].update({finished: "PASS", stopped: "PASS"})
    NOTES["sigterm"] = {"graceful_exit_s": graceful_s, "requeued_then_judged": stopped}
