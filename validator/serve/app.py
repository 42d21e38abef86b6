"""The HTTP side of `camgate serve`: a Starlette app (the ASGI stack MLflow ships) run by uvicorn.

``POST /webhook`` answers from the SQLite queue alone (no registry call, no audit: well under a second):

- body over ``max_body_bytes``: 413; signature header missing or wrong: 401 (``hmac.compare_digest``);
- delivery id or timestamp missing or malformed, timestamp outside ``timestamp_tolerance_s``, body not JSON
  or not an MLflow event: 400; a delivery id seen before (a replay): 409;
- an event other than ``model_version.created``, or a model not in the config: 200, ignored and logged;
- a watched version: 202 queued, or 200 when that version is already queued or judged (redelivery).

Nothing is queued for any refused request. ``GET /healthz``, ``GET /status`` (queue counts, jobs, the last
verdicts).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from validator.serve import signature
from validator.serve.config import EVENTS, ServeConfig
from validator.serve.log import event
from validator.serve.queue import JobStore


class _TooLarge(Exception):
    pass


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise _TooLarge
    return bytes(body)


def create_app(config: ServeConfig, store: JobStore, workers=None, secret: str | None = None) -> Starlette:
    """The app; ``workers`` (a :class:`~validator.serve.worker.Workers`) is started and stopped with it, or
    None to queue only (tests of the HTTP side)."""
    secret = secret if secret is not None else config.secret()
    started = time.time()

    def refuse(status: int, reason: str, **fields) -> JSONResponse:
        event("webhook_refused", level=30, status=status, reason=reason, **fields)
        return JSONResponse({"error": reason}, status_code=status)

    async def webhook(request: Request) -> JSONResponse:
        try:
            body = await _read_body(request, config.max_body_bytes)
        except _TooLarge:
            return refuse(413, f"body over {config.max_body_bytes} bytes")
        headers = request.headers
        delivery_id = headers.get(signature.DELIVERY_ID_HEADER, "")
        stamp = headers.get(signature.TIMESTAMP_HEADER, "")
        sig = headers.get(signature.SIGNATURE_HEADER)
        if not sig:
            return refuse(401, f"missing {signature.SIGNATURE_HEADER}")
        if not delivery_id or len(delivery_id) > 200 or not stamp.isdigit() or len(stamp) > 12:
            return refuse(400, f"missing or malformed {signature.DELIVERY_ID_HEADER} / {signature.TIMESTAMP_HEADER}")
        if not signature.verify(secret, delivery_id, stamp, body, sig):
            return refuse(401, "bad signature", delivery_id=delivery_id)
        skew = abs(time.time() - int(stamp))
        if skew > config.timestamp_tolerance_s:
            return refuse(400, f"stale timestamp ({skew:.0f} s off, tolerance {config.timestamp_tolerance_s:g} s)",
                          delivery_id=delivery_id)
        try:
            payload = json.loads(body)
            name_of_event = f"{payload['entity']}.{payload['action']}"
            data = payload["data"]
            if not isinstance(data, dict):
                raise TypeError("data is not an object")
        except (ValueError, KeyError, TypeError) as exc:
            return refuse(400, f"not an MLflow webhook event: {type(exc).__name__}", delivery_id=delivery_id)
        model, version = str(data.get("name") or ""), str(data.get("version") or "")
        if name_of_event not in EVENTS or model not in config.models:
            outcome = "ignored"
        elif not version.isdigit():
            return refuse(400, "model_version.created without a numeric version", delivery_id=delivery_id)
        else:
            outcome = "queue"
        if not store.record_delivery(delivery_id, name_of_event, outcome):
            return refuse(409, "delivery id already received (replay)", delivery_id=delivery_id)
        if outcome == "ignored":
            why = "event not gated" if name_of_event not in EVENTS else "model not watched"
            event("webhook_ignored", delivery_id=delivery_id, webhook_event=name_of_event, model=model, reason=why)
            return JSONResponse({"ignored": why, "event": name_of_event}, status_code=200)
        queued = store.enqueue(model, version, delivery_id)
        event("queued" if queued else "duplicate", delivery_id=delivery_id, model=model, version=version)
        if workers is not None and queued:
            workers.mark_pending(model, version)
            workers.notify()
        return JSONResponse({"queued": queued, "model": model, "version": version},
                            status_code=202 if queued else 200)

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True, "uptime_s": round(time.time() - started, 1)})

    async def status(request: Request) -> JSONResponse:
        jobs = [{"model": j.name, "version": j.version, "state": j.state, "phase": j.phase, "attempts": j.attempts,
                 "verdict": j.verdict, "error": j.error} for j in store.jobs()[-100:]]
        snapshot = workers.snapshot() if workers is not None else {"running": {}, "last": []}
        return JSONResponse({"queue": store.counts(), "jobs": jobs, **snapshot,
                             "watched": sorted(config.models)})

    @contextlib.asynccontextmanager
    async def lifespan(app):
        recovered = store.recover()
        store.forget_deliveries_before(time.time() - 2 * config.timestamp_tolerance_s)
        event("service_started", recovered_running=recovered, queue=store.counts(), models=sorted(config.models))
        if workers is not None:
            workers.start()
        try:
            yield
        finally:
            event("service_stopping")
            if workers is not None:
                await asyncio.get_running_loop().run_in_executor(None, workers.stop)
            event("service_stopped", queue=store.counts())

    return Starlette(routes=[Route("/webhook", webhook, methods=["POST"]), Route("/healthz", healthz),
                             Route("/status", status)], lifespan=lifespan)


def serve(config: ServeConfig, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Run the service until SIGTERM / SIGINT (uvicorn's handlers; the lifespan waits for a running audit)."""
    import uvicorn

    from validator.serve.log import setup
    from validator.serve.worker import Workers

    setup()
    secret = config.secret()
    store = JobStore(config.state)
    workers = Workers(config, store, config.resolved_tracking_uri())
    app = create_app(config, store, workers, secret=secret)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False,
                timeout_graceful_shutdown=5)
    store.close()
