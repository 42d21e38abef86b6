"""The durable audit queue: one SQLite file (WAL), one row per (model, version), so redelivery is idempotent.

States: ``PENDING`` (queued) -> ``RUNNING`` (a worker holds it) -> ``DONE`` (verdict and alias written), or
``RETRY`` (a transient failure; due again at ``not_before``), or ``GAVE_UP`` (``max_attempts`` spent: no verdict,
no alias). A job has a phase: ``audit`` (no verdict yet) or ``write`` (the verdict is known, its tags and the
alias are not all written yet): a retried write never re-runs the audit. A row found ``RUNNING`` when the
service starts belonged to a process that died: it goes back to ``PENDING`` (:meth:`JobStore.recover`).
Delivery ids are kept too (``deliveries``): a replayed id is refused.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    name TEXT NOT NULL, version TEXT NOT NULL, state TEXT NOT NULL, phase TEXT NOT NULL DEFAULT 'audit',
    delivery_id TEXT, attempts INTEGER NOT NULL DEFAULT 0, queued_at REAL NOT NULL, updated_at REAL NOT NULL,
    not_before REAL NOT NULL DEFAULT 0, verdict TEXT, error TEXT, result TEXT,
    PRIMARY KEY (name, version));
CREATE TABLE IF NOT EXISTS deliveries (
    delivery_id TEXT PRIMARY KEY, received_at REAL NOT NULL, event TEXT, outcome TEXT);
"""
FINAL = ("DONE", "GAVE_UP")


@dataclass
class Job:
    name: str
    version: str
    state: str
    phase: str
    delivery_id: str | None
    attempts: int
    queued_at: float
    verdict: str | None = None
    result: dict | None = None
    error: str | None = None

    @property
    def key(self) -> str:
        return f"{self.name}/{self.version}"


class JobStore:
    def __init__(self, path: str):
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self):
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # ---- deliveries
    def record_delivery(self, delivery_id: str, event: str, outcome: str) -> bool:
        """False when ``delivery_id`` was seen before (a replay)."""
        with self._tx() as db:
            cur = db.execute("INSERT OR IGNORE INTO deliveries VALUES (?, ?, ?, ?)",
                             (delivery_id, time.time(), event, outcome))
            return cur.rowcount == 1

    def forget_deliveries_before(self, cutoff: float) -> None:
        """Ids older than the timestamp window can be dropped: their timestamps are refused as stale anyway."""
        with self._tx() as db:
            db.execute("DELETE FROM deliveries WHERE received_at < ?", (cutoff,))

    # ---- jobs
    def enqueue(self, name: str, version: str, delivery_id: str | None) -> bool:
        """Queue (name, version) once: False when it is already known (queued, running or judged)."""
        now = time.time()
        with self._tx() as db:
            cur = db.execute("INSERT OR IGNORE INTO jobs (name, version, state, delivery_id, queued_at, updated_at) "
                             "VALUES (?, ?, 'PENDING', ?, ?, ?)", (name, str(version), delivery_id, now, now))
            return cur.rowcount == 1

    def recover(self) -> int:
        """At start: a RUNNING job belonged to a process that died; queue it again (its attempt counts)."""
        with self._tx() as db:
            return db.execute("UPDATE jobs SET state='PENDING', updated_at=? WHERE state='RUNNING'",
                              (time.time(),)).rowcount

    def claim(self) -> Job | None:
        """The oldest due job, now RUNNING with one more attempt; None if none is due."""
        now = time.time()
        with self._tx() as db:
            row = db.execute("SELECT name, version FROM jobs WHERE state IN ('PENDING', 'RETRY') AND not_before <= ? "
                             "ORDER BY queued_at LIMIT 1", (now,)).fetchone()
            if row is None:
                return None
            db.execute("UPDATE jobs SET state='RUNNING', attempts=attempts+1, updated_at=? WHERE name=? AND "
                       "version=?", (now, *row))
        return self.get(*row)

    def release(self, job: Job) -> None:
        """Back to PENDING without counting the attempt (the service stopped before the audit finished)."""
        self._set(job, state="PENDING", attempts=max(0, job.attempts - 1))

    def retry(self, job: Job, error: str, delay: float) -> None:
        self._set(job, state="RETRY", error=error, not_before=time.time() + delay)

    def give_up(self, job: Job, error: str) -> None:
        self._set(job, state="GAVE_UP", error=error)

    def verdict_known(self, job: Job, verdict: str, result: dict) -> None:
        """The audit is over: from now on only its writes are retried."""
        self._set(job, phase="write", verdict=verdict, result=json.dumps(result), error=None)
        job.phase, job.verdict, job.result = "write", verdict, result

    def done(self, job: Job) -> None:
        self._set(job, state="DONE", error=None)

    def _set(self, job: Job, **values) -> None:
        values["updated_at"] = time.time()
        names = ", ".join(f"{k}=?" for k in values)
        with self._tx() as db:
            db.execute(f"UPDATE jobs SET {names} WHERE name=? AND version=?",
                       (*values.values(), job.name, job.version))

    def get(self, name: str, version: str) -> Job | None:
        with self._lock:
            row = self._db.execute("SELECT name, version, state, phase, delivery_id, attempts, queued_at, verdict, "
                                   "result, error FROM jobs WHERE name=? AND version=?",
                                   (name, str(version))).fetchone()
        if row is None:
            return None
        result = json.loads(row[8]) if row[8] else None
        return Job(*row[:7], verdict=row[7], result=result, error=row[9])

    def jobs(self) -> list[Job]:
        with self._lock:
            keys = self._db.execute("SELECT name, version FROM jobs ORDER BY queued_at").fetchall()
        return [job for job in (self.get(*k) for k in keys) if job is not None]

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()
        return dict(rows)


__all__ = ["JobStore", "Job", "FINAL"]
