"""`POST /webhook` on a real uvicorn on 127.0.0.1 (queue only, no workers): every bad request is refused with its
status and queues nothing; a burst of 50 deliveries with duplicates queues one job per version."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from serve_helpers import created_event, free_port, get_json, post, signed

from validator.serve.signature import DELIVERY_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER

SECRET = "app-test-secret"


@pytest.fixture()
def service(tmp_path):
    import uvicorn

    from validator.serve.app import create_app
    from validator.serve.config import ServeConfig, WatchedModel
    from validator.serve.queue import JobStore

    config = ServeConfig(path="test", secret_env="X", state=str(tmp_path / "q.db"), max_body_bytes=4096,
                         models={"shapes": WatchedModel(name="shapes", data="d.json")})
    store = JobStore(config.state)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(config, store, None, secret=SECRET), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    try:
        yield f"http://127.0.0.1:{port}", store
    finally:
        server.should_exit = True
        thread.join(10)
        store.close()


def send(url, body, headers):
    return post(url + "/webhook", body, headers)


def test_bad_requests_are_refused_and_queue_nothing(service):
    url, store = service
    event = created_event("shapes", "1")
    body, headers = signed(SECRET, event)
    cases = {
        "no signature": (401, body, {k: v for k, v in headers.items() if k != SIGNATURE_HEADER}),
        "wrong secret": (401, *signed("not-the-secret", event)),
        "tampered body": (401, body.replace(b'"1"', b'"2"'), headers),
        "signature of another delivery": (401, body, {**headers, DELIVERY_ID_HEADER: "other"}),
        "stale timestamp": (400, *signed(SECRET, event, stamp=int(time.time()) - 3600)),
        "future timestamp": (400, *signed(SECRET, event, stamp=int(time.time()) + 3600)),
        "no timestamp": (400, body, {k: v for k, v in headers.items() if k != TIMESTAMP_HEADER}),
        "malformed JSON": (400, *signed(SECRET, b'{"entity": "model_version", ')),
        "not an event": (400, *signed(SECRET, {"hello": "world"})),
        "version not a number": (400, *signed(SECRET, created_event("shapes", "1; drop"))),
        "oversized body": (413, *signed(SECRET, {**event, "pad": "x" * 5000})),
    }
    got = {name: send(url, body, headers) for name, (_, body, headers) in cases.items()}
    assert got == {name: case[0] for name, case in cases.items()}
    assert store.jobs() == []
    # answered 200 and ignored: an event that is not gated, a model that is not watched
    tag_set = {"entity": "model_version_tag", "action": "set", "data": {"name": "shapes", "version": "1",
                                                                        "key": "camgate.status", "value": "PASS"}}
    assert send(url, *signed(SECRET, tag_set)) == 200
    assert send(url, *signed(SECRET, created_event("not-watched", "1"))) == 200
    assert store.jobs() == []
    # the good one, then its replay
    assert send(url, body, headers) == 202
    assert send(url, body, headers) == 409
    assert [(j.name, j.version, j.state) for j in store.jobs()] == [("shapes", "1", "PENDING")]
    code, status = get_json(url + "/status")
    assert code == 200 and status["queue"] == {"PENDING": 1}
    assert get_json(url + "/healthz")[0] == 200


def test_a_burst_of_50_with_duplicates_queues_one_job_per_version(service):
    url, store = service
    # 5 versions; 40 distinct delivery ids (MLflow redelivering one event gets a new id) and 10 replayed ids
    deliveries = [(f"d-{i}", str(1 + i % 5)) for i in range(40)] + [(f"d-{i}", str(1 + i % 5)) for i in range(10)]

    def one(item):
        delivery_id, version = item
        return send(url, *signed(SECRET, created_event("shapes", version), delivery_id=delivery_id))

    started = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(one, deliveries))
    elapsed = time.monotonic() - started
    assert codes.count(202) == 5 and codes.count(200) == 35 and codes.count(409) == 10, codes
    assert sorted(j.version for j in store.jobs()) == ["1", "2", "3", "4", "5"]
    assert elapsed < 10, elapsed
    print(json.dumps({"burst_seconds": round(elapsed, 3)}))
