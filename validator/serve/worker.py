"""The audit workers: threads that claim jobs from the queue and run each audit in a child process.

Why a child process per audit and not a thread: an audit is TensorFlow work that cannot be cancelled from
another thread and holds memory until its process ends. In a child it can be waited for on SIGTERM, killed
when the grace period is over (the job goes back to PENDING, nothing was written), and a crash of the audit
(OOM, a native fault) is an ERROR of that job, not of the service. The child dies with its worker
(``PR_SET_PDEATHSIG`` on Linux): a service killed with SIGKILL leaves no orphan audit recording a run.

After the audit: the version's tags (``camgate.run_id``, ``camgate.run_url``, ``camgate.failed_checks`` ...,
``camgate.status`` last), then the alias on PASS only. Each write is retried (the record's Retrier); a
tracking server that stays down past ``retry_seconds`` sends the job to RETRY in its write phase: the
verdict is kept and never re-audited, and the alias is never set before the status tag is.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

from validator.serve.config import ServeConfig
from validator.serve.job import RESULT
from validator.serve.log import event
from validator.serve.queue import Job, JobStore

FINAL_VERDICTS = ("PASS", "WARN", "FAIL", "ERROR", "INCONCLUSIVE")
IN_PROGRESS = ("PENDING", "RUNNING")


_LIBC = None
if sys.platform.startswith("linux"):
    with contextlib.suppress(OSError):
        _LIBC = ctypes.CDLL(None, use_errno=True)  # loaded here: the child only calls it


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if _LIBC is not None:
        _LIBC.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: killed when the worker thread that forked it dies


class Workers:
    def __init__(self, config: ServeConfig, store: JobStore, uri: str):
        self.config, self.store, self.uri = config, store, uri
        self.stopping = threading.Event()
        self.wake = threading.Event()
        self.threads: list[threading.Thread] = []
        self.running: dict[str, float] = {}  # job key -> start time
        self.last: list[dict] = []  # the last verdicts, newest first
        self._lock = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}
        self._marks: queue.Queue = queue.Queue()

    def _key_lock(self, key: str) -> threading.Lock:
        with self._lock:
            return self._key_locks.setdefault(key, threading.Lock())

    # ---- camgate.status=PENDING on a queued version (best effort, off the request path)
    def mark_pending(self, name: str, version: str) -> None:
        self._marks.put((name, version))

    def _mark_loop(self) -> None:
        from validator.mlflow_plumbing import Retrier

        while not self.stopping.is_set():
            try:
                name, version = self._marks.get(timeout=1.0)
            except queue.Empty:
                continue
            # under the job's lock, and only while the queue still says PENDING: a worker that claimed the
            # job meanwhile writes RUNNING after this, never before
            with self._key_lock(f"{name}/{version}"):
                job = self.store.get(name, version)
                if job is None or job.state != "PENDING" or job.phase != "audit":
                    continue
                client, _ = self._client()
                try:
                    Retrier(self.uri, 5.0)("tag the version PENDING", client.set_model_version_tag, name, version,
                                           "camgate.status", "PENDING")
                except Exception as exc:
                    event("mark_pending_failed", level=30, job=f"{name}/{version}", error=str(exc)[:300])

    # ---- lifecycle
    def start(self) -> None:
        for i in range(self.config.concurrency):
            thread = threading.Thread(target=self._loop, name=f"camgate-audit-{i}", daemon=True)
            thread.start()
            self.threads.append(thread)
        threading.Thread(target=self._scan_until_done, name="camgate-scan", daemon=True).start()
        threading.Thread(target=self._mark_loop, name="camgate-mark", daemon=True).start()

    def stop(self, timeout: float | None = None) -> None:
        """Claim nothing more; a running audit has ``shutdown_grace_s`` to finish, then its child is killed
        and the job goes back to PENDING (nothing of it was written to the version)."""
        self.stopping.set()
        self.wake.set()
        deadline = time.monotonic() + (self.config.shutdown_grace_s + 30 if timeout is None else timeout)
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def notify(self) -> None:
        self.wake.set()

    # ---- the startup scan: versions of watched models that were never judged
    def _scan_until_done(self) -> None:
        delay = 1.0
        while not self.stopping.is_set():
            try:
                self.scan()
                return
            except Exception as exc:  # the tracking server may not be up yet: try again
                event("scan_failed", error=str(exc)[:300], retry_in_s=delay)
                self.stopping.wait(delay)
                delay = min(delay * 2, 60.0)

    def scan(self) -> int:
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        queued = 0
        for name in self.config.models:
            escaped = name.replace("'", "\\'")
            for version in client.search_model_versions(f"name = '{escaped}'"):
                status = (version.tags or {}).get("camgate.status")
                if (status is None or status in IN_PROGRESS) and self.store.enqueue(name, str(version.version),
                                                                                    "startup-scan"):
                    queued += 1
                    event("queued", model=name, version=str(version.version), delivery_id="startup-scan")
        event("scan_done", queued=queued)
        if queued:
            self.wake.set()
        return queued

    # ---- the loop
    def _loop(self) -> None:
        while not self.stopping.is_set():
            job = self.store.claim()
            if job is None:
                self.wake.wait(1.0)
                self.wake.clear()
                continue
            try:
                self._run(job)
            except Exception as exc:  # a bug must not kill the worker: the job is retried
                event("job_crashed", level=40, job=job.key, error=repr(exc)[:500])
                self._retry(job, f"unexpected {type(exc).__name__}: {exc}")

    def _client(self):
        from mlflow import MlflowClient

        from validator.mlflow_plumbing import Retrier

        return MlflowClient(tracking_uri=self.uri, registry_uri=self.uri), Retrier(self.uri,
                                                                                   self.config.retry_seconds)

    def _run(self, job: Job) -> None:
        from validator.errors import TrackingError

        event("claimed", job=job.key, phase=job.phase, attempt=job.attempts)
        client, retry = self._client()
        try:
            if job.phase == "audit":
                with self._key_lock(job.key):
                    retry("tag the version RUNNING", client.set_model_version_tag, job.name, job.version,
                          "camgate.status", "RUNNING")
                result = self._audit(job)
                if result is None:  # stopped before it finished: back to the queue, nothing written
                    self.store.release(job)
                    event("released", job=job.key)
                    return
                if result["status"] == "ERROR" and not result.get("run_id"):
                    # nothing recorded (tracking unreachable, model not downloadable): transient until proven
                    self._retry(job, result.get("error") or "the audit recorded no gate run")
                    return
                self.store.verdict_known(job, result["status"], result)
            self._write(job, client, retry)
        except TrackingError as exc:
            self._retry(job, str(exc))

    def _retry(self, job: Job, error: str) -> None:
        if job.attempts >= self.config.max_attempts and job.phase == "audit":
            self.store.give_up(job, error)
            event("gave_up", level=40, job=job.key, attempts=job.attempts, error=error[:500])
            return
        delay = min(60.0, 2.0 ** job.attempts)
        self.store.retry(job, error, delay)
        event("retry", level=30, job=job.key, phase=job.phase, attempt=job.attempts, retry_in_s=delay,
              error=error[:500])

    # ---- one audit in a child process
    def _audit(self, job: Job) -> dict | None:
        model = self.config.models[job.name]
        out = Path(self.config.reports) / _safe(job.name) / f"v{job.version}"
        out.mkdir(parents=True, exist_ok=True)
        run_name = f"camgate-serve-{job.name}-v{job.version}"
        landed = self._landed(out, run_name)
        if landed is not None:  # the audit finished before the service died: its verdict stands
            event("audit_found", job=job.key, run_id=landed.get("run_id"))
            return landed
        baseline = None
        if model.baseline:
            client, retry = self._client()
            from validator.tracking.registry import alias_version

            target = alias_version(client, retry, job.name, model.baseline)
            if target is not None and target != job.version:
                baseline = f"models:/{job.name}/{target}"  # pinned: the alias may move during the audit
        spec = {"model": f"models:/{job.name}/{job.version}", "data": model.data, "policy": model.policy,
                "out": str(out), "tracking_uri": self.uri, "experiment": self.config.experiment,
                "run_name": run_name, "job": job.key, "baseline": baseline, "options": model.options}
        (out / RESULT).unlink(missing_ok=True)  # no earlier attempt's result may pass for this one's
        spec_path = out.parent / f"v{job.version}.job.json"
        spec_path.write_text(json.dumps(spec))
        log_path = out.parent / f"v{job.version}.log"
        started = time.monotonic()
        with self._lock:
            self.running[job.key] = time.time()
        event("audit_started", job=job.key, baseline=baseline, attempt=job.attempts)
        try:
            with open(log_path, "ab") as log:
                child = subprocess.Popen([sys.executable, "-m", "validator.serve.job", str(spec_path)],
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                         preexec_fn=_die_with_parent)
                code = self._wait(child, job)
        finally:
            with self._lock:
                self.running.pop(job.key, None)
        if code is None:
            return None
        result = _read_verdict(out)
        if result is None:
            result = {"status": "ERROR", "error": f"the audit process ended with code {code} and no verdict "
                      f"(log: {log_path})"}
        result["seconds"] = round(time.monotonic() - started, 2)
        event("audit_finished", job=job.key, status=result["status"], run_id=result.get("run_id"),
              seconds=result["seconds"], exit_code=code)
        return result

    def _wait(self, child: subprocess.Popen, job: Job) -> int | None:
        """The child's exit code; None when the service stopped and the grace period ran out (child killed)."""
        deadline = time.monotonic() + self.config.audit_timeout_s
        grace_end = None
        while True:
            try:
                return child.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic()
            if self.stopping.is_set() and grace_end is None:
                grace_end = now + self.config.shutdown_grace_s
                event("waiting_for_audit", job=job.key, grace_s=self.config.shutdown_grace_s)
            if (grace_end is not None and now >= grace_end) or now >= deadline:
                _kill(child)
                if grace_end is not None and now >= grace_end:
                    return None
                return 124

    def _landed(self, out: Path, run_name: str) -> dict | None:
        """A verdict this job's earlier attempt recorded (its gate run FINISHED), or None."""
        result = _read_verdict(out)
        if result is None or not result.get("run_id"):
            return None
        client, retry = self._client()
        try:
            run = retry("read the earlier gate run", client.get_run, result["run_id"])
        except Exception:
            return None
        return result if run.info.status == "FINISHED" and run.info.run_name == run_name else None

    # ---- the verdict onto the version, then the alias
    def _write(self, job: Job, client, retry) -> None:
        from validator.tracking import registry

        result = job.result or {}
        model = self.config.models[job.name]
        version = SimpleNamespace(name=job.name, version=job.version)
        failed = [{"check_id": check_id} for check_id in result.get("failing") or []]
        verdict = SimpleNamespace(status=result["status"], policy=result.get("policy") or {}, tracking={},
                                  failed_checks=failed)  # what registry.gate_tags reads of a verdict
        extra = {"camgate.run_url": result.get("url") or "", "camgate.delivery_id": job.delivery_id or ""}
        registry.tag_model_version(client, retry, version, verdict, result.get("run_id") or "", extra)
        moved = None
        if model.promote:
            plan = registry.plan_promotion(client, retry, verdict, version, model.promote)
            if plan and plan.get("moved"):
                # the alias follows the status tag: read it back before moving anything
                tags = retry("read the version's tags", client.get_model_version, job.name, job.version).tags
                if tags.get("camgate.status") != "PASS" or tags.get("camgate.run_id") != result.get("run_id"):
                    raise RuntimeError(f"{job.key}: the PASS tag is not on the version; the alias stays")
                registry.promote(client, retry, plan)
            moved = plan["result"] if plan else None
        self.store.done(job)
        entry = {"model": job.name, "version": job.version, "status": result["status"],
                 "failing": result.get("failing") or [], "run_id": result.get("run_id"), "alias": moved,
                 "at": time.time()}
        with self._lock:
            self.last = [entry, *self.last][:20]
        event("verdict_written", job=job.key, status=result["status"], run_id=result.get("run_id"), alias=moved)

    def snapshot(self) -> dict:
        with self._lock:
            return {"running": dict(self.running), "last": list(self.last)}


def _read_verdict(out: Path) -> dict | None:
    try:
        data = json.loads((out / RESULT).read_text())
    except (OSError, ValueError):
        return None
    tracking = data.get("tracking") or {}
    status = data.get("status")
    if status not in FINAL_VERDICTS:
        return None
    failing = sorted({c.get("check_id") for c in data.get("checks") or [] if c.get("outcome") == "FAIL"})
    return {"status": status, "run_id": tracking.get("run_id"), "url": tracking.get("url"),
            "failing": failing, "error": data.get("error"),
            "policy": {k: (data.get("policy") or {}).get(k) for k in ("name", "version", "hash")}}


def _kill(child: subprocess.Popen) -> None:
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        child.kill()
    child.wait(timeout=30)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "model"


__all__ = ["Workers"]
