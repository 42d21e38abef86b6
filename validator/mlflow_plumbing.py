"""MLflow plumbing shared by the gate's record and the model loader: which store, quietly, with what retries.

A leaf: it imports nothing from ``validator`` but :mod:`validator.errors` (MLflow, requests and urllib3 are
imported lazily, inside the functions that need them).

- :func:`resolve_tracking_uri`: the tracking URI (explicit, ``$MLFLOW_TRACKING_URI``, ``mlflow.set_tracking_uri``,
  else ``sqlite:///mlflow.db``; a relative SQLite path made absolute);
- :func:`quiet_mlflow`: MLflow without its own multi-minute HTTP retries and without its INFO/warning noise,
  scoped: what it changed is put back on exit, even when the body raises or when threads overlap;
- :func:`is_transient`: is an error worth retrying, decided by the exception's **type** (and MLflow error code /
  HTTP status), never by its message;
- :class:`Retrier`: a small exponential-backoff loop within one total budget per record. ``retry(what, fn)``
  is for idempotent calls only; ``retry.once(what, fn, landed=...)`` is for calls that must not happen twice
  (create a run, append metric points): after a failure it first reads whether the effect landed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
import warnings
from collections.abc import Callable

from validator.errors import TrackingError

DEFAULT_URI = "sqlite:///mlflow.db"
#: Seconds of backoff (in total, per record) spent on transient errors; the environment overrides the default.
RETRY_ENV = "CAMGATE_MLFLOW_RETRY_SECONDS"
DEFAULT_RETRY_SECONDS = 15.0
REQUEST_TIMEOUT_SECONDS = 10
QUIET_LOGGERS = ("mlflow", "alembic", "urllib3", "sqlalchemy", "mlflow.store.db.utils")

#: MLflow error codes that say "try again later" whoever raised them (a server's JSON error or a local store:
#: MLflow's SQL store raises TEMPORARILY_UNAVAILABLE for SQLAlchemy OperationalError, e.g. a locked SQLite file).
TRANSIENT_ERROR_CODES = frozenset({"TEMPORARILY_UNAVAILABLE", "RESOURCE_EXHAUSTED", "REQUEST_LIMIT_EXCEEDED",
                                   "DEADLINE_EXCEEDED"})
#: HTTP statuses worth retrying when a server answered with one.
TRANSIENT_HTTP_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_INTERNAL = "INTERNAL_ERROR"


# ------------------------------------------------------------------------------------------ the store


def resolve_tracking_uri(uri: str | None = None) -> str:
    """``uri``, else ``$MLFLOW_TRACKING_URI`` / ``mlflow.set_tracking_uri``, else ``sqlite:///mlflow.db``.

    MLflow's own fallback (``./mlruns`` when such a folder exists) is deliberately not used: the file store
    is deprecated and refused by recent MLflow. A relative SQLite path is made absolute (the working folder).
    """
    if not uri:
        uri = os.environ.get("MLFLOW_TRACKING_URI") or None
    if not uri:
        import mlflow
        from mlflow.tracking._tracking_service.utils import is_tracking_uri_set

        uri = mlflow.get_tracking_uri() if is_tracking_uri_set() else DEFAULT_URI
    return absolute_sqlite(str(uri))


def absolute_sqlite(uri: str) -> str:
    """``sqlite:///rel.db`` -> ``sqlite:////abs/rel.db``; any other URI unchanged."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/") and ":memory:" not in uri:
        return prefix + os.path.abspath(uri[len(prefix):])
    return uri


def sqlite_artifact_location(uri: str, experiment: str) -> str | None:
    """Artifacts of an experiment camgate creates in a SQLite store live next to the database file
    (``<db folder>/mlruns/<experiment>``), not in whatever folder the first run happened to start in."""
    from pathlib import Path

    prefix = "sqlite:///"
    if not uri.startswith(prefix) or ":memory:" in uri:
        return None
    folder = Path(uri[len(prefix):].split("?")[0]).parent
    return (folder / "mlruns" / re.sub(r"[^\w.\- ]", "_", experiment)).resolve().as_uri()


def retry_budget(explicit: float | None = None) -> float:
    """Total backoff seconds: ``explicit``, else ``$CAMGATE_MLFLOW_RETRY_SECONDS``, else 15."""
    if explicit is not None:
        return float(explicit)
    try:
        return float(os.environ.get(RETRY_ENV, DEFAULT_RETRY_SECONDS))
    except ValueError:
        return DEFAULT_RETRY_SECONDS


# ---------------------------------------------------------------------------------------------- quiet

_quiet_lock = threading.RLock()
_quiet_depth = 0
_quiet_undo: list[Callable[[], None]] = []


@contextlib.contextmanager
def quiet_mlflow(request_timeout: int = REQUEST_TIMEOUT_SECONDS):
    """MLflow without its own long HTTP retries (we retry with a short budget) and without INFO/warning noise.

    Scoped, and exact about it: entering sets ``MLFLOW_HTTP_REQUEST_MAX_RETRIES=0`` (and a request timeout
    unless one is set), the MLflow/SQLAlchemy/alembic/urllib3 loggers to ERROR and one "ignore" warnings
    filter; leaving takes back exactly those changes, in ``finally`` (also when the body raises). What the
    body itself changed meanwhile stays (a filter or logger level a library sets when first imported inside
    the block is not thrown away, as ``warnings.catch_warnings`` would), and a setting the body changed again
    is not reverted. Overlapping uses (threads, nesting) share one set of changes, taken back when the last
    one leaves, so interleaved exits cannot leave ``MAX_RETRIES=0`` or the "ignore" filter behind.

    MLflow reads these environment variables at call time, so they are process-wide while a block is open.
    """
    _quiet_enter(int(request_timeout))
    try:
        yield
    finally:
        _quiet_exit()


def _quiet_enter(request_timeout: int) -> None:
    global _quiet_depth
    with _quiet_lock:
        _quiet_depth += 1
        if _quiet_depth > 1:
            return
        undo: list[Callable[[], None]] = []
        try:
            _set_env("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0", undo)
            if "MLFLOW_HTTP_REQUEST_TIMEOUT" not in os.environ:
                _set_env("MLFLOW_HTTP_REQUEST_TIMEOUT", str(request_timeout), undo)
            for name in QUIET_LOGGERS:
                _set_level(logging.getLogger(name), logging.ERROR, undo)
            _ignore_warnings(undo)
        except BaseException:
            _run_undo(undo)
            _quiet_depth -= 1
            raise
        _quiet_undo[:] = undo


def _quiet_exit() -> None:
    global _quiet_depth
    with _quiet_lock:
        _quiet_depth -= 1
        if _quiet_depth == 0:
            undo, _quiet_undo[:] = list(_quiet_undo), []
            _run_undo(undo)


def _run_undo(undo: list[Callable[[], None]]) -> None:
    for step in reversed(undo):
        with contextlib.suppress(Exception):
            step()


def _set_env(key: str, value: str, undo: list) -> None:
    before = os.environ.get(key)
    os.environ[key] = value

    def restore():
        if os.environ.get(key) != value:
            return  # changed again meanwhile: not ours any more
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before

    undo.append(restore)


def _set_level(logger: logging.Logger, level: int, undo: list) -> None:
    before = logger.level
    logger.setLevel(level)

    def restore():
        if logger.level == level:
            logger.setLevel(before)

    undo.append(restore)


def _ignore_warnings(undo: list) -> None:
    """One "ignore everything" filter in front; on exit that very entry is removed and nothing else."""
    before = list(warnings.filters)
    warnings.filterwarnings("ignore")  # public API: also invalidates the warning registries
    ours = warnings.filters[0]
    # filterwarnings drops an equal filter that was already there; remember it to put it back.
    dropped = [(i, f) for i, f in enumerate(before) if f == ours]

    def restore():
        for i, f in enumerate(warnings.filters):
            if f is ours:
                del warnings.filters[i]
                break
        for i, f in dropped:
            if not any(g is f for g in warnings.filters):
                warnings.filters.insert(min(i, len(warnings.filters)), f)
        mutated = getattr(warnings, "_filters_mutated", None) or getattr(warnings, "_filters_mutated_lock_held", None)
        if mutated is not None:
            with contextlib.suppress(Exception):
                mutated()  # the per-module "already warned" registries are stale now

    undo.append(restore)


# ------------------------------------------------------------------------------------- classification


def is_transient(exc: BaseException) -> bool:
    """Is ``exc`` worth retrying? Decided by type, error code and HTTP status along the ``__cause__`` /
    ``__context__`` chain, never by message text:

    - ``requests`` ConnectionError (refused, reset, dropped), Timeout, ChunkedEncodingError, RetryError (a
      429/5xx answer that MLflow's HTTP session turned into one), and the built-in ConnectionError/TimeoutError;
    - an ``MlflowException`` whose error code is TEMPORARILY_UNAVAILABLE, RESOURCE_EXHAUSTED,
      REQUEST_LIMIT_EXCEEDED or DEADLINE_EXCEEDED;
    - a ``RestException`` (an MLflow server's own JSON error) with INTERNAL_ERROR or an HTTP status 408/429/5xx.

    A plain ``MlflowException`` carries INTERNAL_ERROR by default for anything, so that code alone proves
    nothing: its cause decides (MLflow wraps a refused connection as "API request ... failed" with the
    ``requests`` error as its context). Any other definite MLflow error code (not found, invalid parameter,
    already exists, ...) is final, even if it was raised while handling a network error.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        verdict = _classify(exc)
        if verdict is not None:
            return verdict
        exc = exc.__cause__ or exc.__context__
    return False


def _classify(exc: BaseException) -> bool | None:
    """True: transient; False: final; None: this link says nothing, look at its cause."""
    import requests

    transient_requests = (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                          requests.exceptions.ChunkedEncodingError, requests.exceptions.RetryError)
    if isinstance(exc, transient_requests):
        return True
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    try:
        from mlflow.exceptions import MlflowException, RestException
    except ImportError:  # pragma: no cover - mlflow is a dependency
        return None
    if not isinstance(exc, MlflowException):
        return None
    code = str(getattr(exc, "error_code", "") or "")
    if code in TRANSIENT_ERROR_CODES:
        return True
    if isinstance(exc, RestException):  # the server answered: its code (or status) is the fact
        return code == _INTERNAL or _http_status(exc) in TRANSIENT_HTTP_STATUS
    if code in ("", _INTERNAL):
        return None  # MlflowException's default code: let the cause decide
    return False


def _http_status(exc) -> int | None:
    getter = getattr(exc, "get_http_status_code", None)
    if getter is None:
        return None
    try:
        return int(getter())
    except Exception:
        return None


def short_error(exc: BaseException, limit: int = 300) -> str:
    """One line of at most ``limit`` characters (the type name when the message is empty)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------------------------------------- retry


class Retrier:
    """Retries with exponential backoff (0.25 s doubling to 4 s) on transient errors, within one total budget
    shared by every call of one record; a final error, or a transient one once the budget is spent, raises
    :class:`TrackingError` naming the tracking URI.

    - ``retry(what, fn, *args, **kwargs)`` retries ``fn`` as is: **idempotent calls only** (reads, set a tag
      or log a param to the same value, upload an artifact to a fixed path, set an alias, end a run).
    - ``retry.once(what, fn, *args, landed=check, **kwargs)`` is for a call whose repetition would duplicate
      something (create a run or experiment, append metric points). After any failure ``check()`` (an
      idempotent read, itself retried) says whether the effect is there anyway (the request reached the
      server but its answer was lost); a truthy result is returned instead of calling ``fn`` again. Only
      when nothing landed and the error is transient is ``fn`` attempted again.

    A small loop rather than a retry library: the one budget across many calls and the "did it land?" read
    between attempts are the whole policy, and both are a few lines here.
    """

    first_delay = 0.25
    max_delay = 4.0

    def __init__(self, uri: str, budget: float, sleep: Callable[[float], None] = time.sleep):
        self.uri = uri
        self.budget = max(0.0, float(budget))
        self.waited = 0.0
        self.attempts = 0
        self.failures = 0  # transient failures that were retried (or found to have landed)
        self._sleep = sleep

    def __call__(self, what: str, fn: Callable, *args, **kwargs):
        delay = self.first_delay
        while True:
            self.attempts += 1
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                if not is_transient(exc):
                    raise TrackingError(f"MLflow at {self.uri} could not {what}: {short_error(exc)}") from exc
                delay = self._backoff(what, exc, delay)

    def once(self, what: str, fn: Callable, *args, landed: Callable[[], object], **kwargs):
        delay = self.first_delay
        while True:
            self.attempts += 1
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                error = exc
            found = self(f"check whether the attempt to {what} landed", landed)
            if found:
                if is_transient(error):
                    self.failures += 1
                return found
            if not is_transient(error):
                raise TrackingError(f"MLflow at {self.uri} could not {what}: {short_error(error)}") from error
            delay = self._backoff(what, error, delay)

    def _backoff(self, what: str, exc: BaseException, delay: float) -> float:
        remaining = self.budget - self.waited
        if remaining <= 0:
            raise TrackingError(
                f"MLflow tracking at {self.uri} is unreachable (could not {what} after "
                f"{self.attempts} attempts, {self.waited:.1f}s of retries): {short_error(exc)}. "
                "The local reports were written; the gate is not passed without its record."
            ) from exc
        self.failures += 1
        pause = min(delay, remaining)
        self._sleep(pause)
        self.waited += pause
        return min(delay * 2, self.max_delay)


__all__ = ["DEFAULT_URI", "RETRY_ENV", "DEFAULT_RETRY_SECONDS", "REQUEST_TIMEOUT_SECONDS", "QUIET_LOGGERS",
           "TRANSIENT_ERROR_CODES", "TRANSIENT_HTTP_STATUS", "resolve_tracking_uri", "absolute_sqlite",
           "sqlite_artifact_location", "retry_budget", "quiet_mlflow", "is_transient", "short_error", "Retrier"]
