"""gunicorn's own dirty-arbiter examples, in their shapes, on the real
binary (build/gunicorn): the dirty_example (sync worker, query-string
endpoints, stash sessions, every dirty hook), the embedding_service
(FastAPI on the asgi worker calling the *sync* client from an async
endpoint), the streaming_chat (FastAPI, stream_async() relayed as
server-sent events) and the celery_alternative (gthread, keyword-only
calls, progress streams, `workers = N` class attributes, settings read from
the environment).  Our own apps, written for these tests, use the same
imports, calls, argument forms, DirtyApp attributes, config settings and
hook attribute reads as those examples (tests/integration/apps/gexamples/).

Each test asserts what the endpoints compute, not only their status.
"""
import hashlib
import json
import os
import re
import signal

from conftest import COMPAT_BINARY, ROOT, http_get, wait_for
from dirty_raw import arbiter_pid, dirty_workers

APPS = os.path.join(ROOT, "tests", "integration", "apps")
GX = os.path.join(APPS, "gexamples")


def start(make_server, conf, app, env=None):
    return make_server("-c", os.path.join(GX, conf), "--chdir", APPS, app,
                       binary=COMPAT_BINARY, env=env or {})


def get(s, path, timeout=20):
    status, headers, body = http_get(s.port, path, timeout=timeout)
    return status, headers, body


def getj(s, path):
    status, _, body = get(s, path)
    assert status == 200, body
    return json.loads(body)


def post(s, path, obj, timeout=20):
    status, headers, body = http_get(s.port, path, method="POST",
                                     body=json.dumps(obj).encode(),
                                     headers={"Content-Type": "application/json"},
                                     timeout=timeout)
    return status, headers, body


def postj(s, path, obj):
    status, _, body = post(s, path, obj)
    assert status == 200, body
    return json.loads(body)


def sse(body):
    """The JSON (or raw) payloads of `data: ...` events."""
    out = []
    for line in body.decode().split("\n"):
        if line.startswith("data: "):
            d = line[6:]
            out.append(d if d == "[DONE]" else json.loads(d))
    return out


def ready(s, path, ok, timeout=20):
    def probe():
        try:
            status, _, body = get(s, path, timeout=5)
        except OSError:
            return None
        return body if status == 200 and ok(body) else None
    return wait_for(probe, timeout, interval=0.1, what="%s to answer" % path)


# ---- examples/dirty_example ---------------------------------------------

def test_dirty_example_shape(make_server):
    s = start(make_server, "gunicorn_conf.py", "gexamples.wsgi_app:app")
    ready(s, "/models", lambda b: b'"default"' in b)

    root = getj(s, "/")
    assert root["dirty_enabled"] is True
    # state kept in a dirty worker between calls, positional arguments
    models = getj(s, "/models")
    assert models["models"] == ["default"] and models["total_loads"] >= 1
    loaded = getj(s, "/load?name=m2")
    assert loaded["status"] in ("loaded", "already_loaded") and loaded["model"]["name"] == "m2"
    inf = getj(s, "/inference?model=default&data=hello")
    assert inf["model"] == "default" and inf["confidence"] == 0.95
    assert inf["input_hash"] == "5d41402a"          # md5("hello")[:8]
    assert getj(s, "/fibonacci?n=30")["result"] == 832040
    assert getj(s, "/prime?n=97")["is_prime"] is True
    assert getj(s, "/prime?n=91")["is_prime"] is False
    stats = getj(s, "/stats")
    assert stats["compute_app"]["total_computations"] >= 1
    assert stats["http_worker_pid"] != stats["ml_app"]["pid"]

    # an action raising: DirtyAppError, its message first, caught by the app
    status, _, body = get(s, "/inference?model=nope")
    assert status == 500
    err = json.loads(body)
    assert err["type"] == "DirtyAppError"
    assert err["error"].startswith("Model not loaded: nope")

    # sessions in the stash (keyword arguments, dict values), seen by both
    # dirty workers: the calls alternate between them
    assert getj(s, "/session/login?user_id=7&name=Ann") == {"status": "ok", "user_id": "7"}
    assert getj(s, "/session/login?user_id=8&name=Bob")["status"] == "ok"
    pids = set()
    for _ in range(4):
        sess = getj(s, "/session/get?user_id=7")
        assert sess["data"] == {"name": "Ann"}
        pids.add(sess["by"])
    lst = getj(s, "/session/list")
    assert lst == {"keys": ["user:7", "user:8"], "names": ["Ann", "Bob"], "count": 2}
    st = getj(s, "/session/stats")
    assert st["sessions"] == 2 and st["requests"] >= 6
    assert {"sessions", "counters"} <= set(st["tables"])    # `stashes = [...]`
    assert getj(s, "/session/logout?user_id=7") == {"deleted": True}
    assert getj(s, "/session/logout?user_id=7") == {"deleted": False}
    assert getj(s, "/session/clear") == {"cleared": True, "left": 0}
    assert get(s, "/nowhere")[0] == 404

    workers = dirty_workers(s)
    assert len(workers) == 2
    s.stop(signal.SIGTERM)
    out = s.out()
    # the hooks, with what gunicorn's objects carry
    assert "=== starting ===" in out
    assert "=== ready http=2 dirty=2 apps=3 ===" in out
    assert ("=== dirty arbiter starting apps=['gexamples.dirty_app:MLApp', "
            "'gexamples.dirty_app:ComputeApp', 'gexamples.dirty_app:SessionApp'] ===") in out
    for pid in workers:
        assert "=== dirty worker %d forked ===" % pid in out
        assert ("=== dirty worker %d initialized ['gexamples.dirty_app:ComputeApp', "
                "'gexamples.dirty_app:MLApp', 'gexamples.dirty_app:SessionApp'] ===" % pid) in out
        assert "=== dirty worker %d exiting ===" % pid in out


# ---- examples/embedding_service -------------------------------------------

def test_embedding_service_shape(make_server):
    s = start(make_server, "embed_conf.py", "gexamples.embed_main:app")
    ready(s, "/health", lambda b: json.loads(b) == {"status": "ok"})
    r = postj(s, "/embed", {"texts": ["hello", "world", "hello"]})
    emb = r["embeddings"]
    assert len(emb) == 3 and all(len(v) == 4 for v in emb)
    assert all(isinstance(x, float) and 0.0 <= x <= 1.0 for v in emb for x in v)
    assert emb[0] == emb[2] and emb[0] != emb[1]
    want = [round(b / 255.0, 4) for b in hashlib.sha256(b"hello").digest()[:4]]
    assert emb[0] == want                   # the dirty app's fake encoder ran
    assert postj(s, "/embed", {"texts": []}) == {"embeddings": []}
    # pydantic still validates before any dirty call
    status, _, body = post(s, "/embed", {"texts": "not a list"})
    assert status == 422 and b"texts" in body


# ---- examples/streaming_chat ---------------------------------------------

HELLO = "Hello! I am a pretend assistant living in a dirty worker."


def test_streaming_chat_shape(make_server):
    s = start(make_server, "chat_conf.py", "gexamples.chat_main:app")
    ready(s, "/health", lambda b: json.loads(b) == {"status": "ok"})
    status, headers, body = post(s, "/chat", {"prompt": "hello there"})
    assert status == 200
    assert headers["content-type"].startswith("text/event-stream")
    assert headers["cache-control"] == "no-cache" and headers["x-accel-buffering"] == "no"
    events = sse(body)
    assert events[-1] == "[DONE]"
    tokens = [e["token"] for e in events[:-1]]
    assert len(tokens) == len(HELLO.split())        # one event per word
    assert "".join(tokens) == HELLO
    # `yield from` inside the dirty generator; the stream collected whole
    r = postj(s, "/chat/sync", {"prompt": "please EXPLAIN", "thinking": True})
    assert r["response"] == ("[thinking...]\n\n"
                             "Dirty workers keep slow state loaded across requests.")
    events = sse(post(s, "/chat", {"prompt": "x", "thinking": True})[2])
    assert [e["token"] for e in events[:5]] == ["[thinking", ".", ".", ".", "]\n\n"]
    status, headers, body = get(s, "/")
    assert status == 200 and headers["content-type"].startswith("text/html")


# ---- examples/celery_alternative -----------------------------------------

CELERY_ENV = {"GUNICORN_WORKERS": "2", "GUNICORN_THREADS": "4", "DIRTY_WORKERS": "4"}


def test_celery_alternative_shape(make_server):
    s = start(make_server, "celery_conf.py", "gexamples.celery_web:app", env=CELERY_ENV)
    ready(s, "/health", lambda b: json.loads(b)["status"] == "healthy")

    r = postj(s, "/api/email/send", {"to": "a@x", "subject": "s", "body": "b"})
    assert r["status"] == "sent" and r["to"] == "a@x" and r["html"] is False
    # progress streamed as server-sent events, keyword arguments only
    status, headers, body = post(s, "/api/email/send-bulk",
                                 {"recipients": ["a@x", "b@x", "c@x"], "subject": "s", "body": "b"})
    assert status == 200 and headers["content-type"] == "text/event-stream"
    ev = sse(body)
    assert [e["percent"] for e in ev[:-1]] == [33, 66, 100]
    assert ev[-1] == {"type": "complete", "total": 3, "sent": 3, "failed": 0}

    r = postj(s, "/api/image/resize", {"image_data": "abcdef", "width": 10, "height": 20})
    assert r == {"status": "resized", "original_size": 6, "target_dimensions": "10x20"}
    ev = sse(post(s, "/api/image/process-batch",
                  {"images": [{"id": "i1", "data": "xx"}, {"id": "i2"}],
                   "operation": "thumbnail", "size": 32})[2])
    assert [e.get("image_id") for e in ev] == ["i1", "i2", None]
    assert ev[1]["result"] == {"status": "resized", "original_size": 4,
                               "target_dimensions": "32x32"}     # bytes default b"fake"
    assert ev[-1]["type"] == "complete"

    r = postj(s, "/api/data/aggregate",
              {"data": [{"c": "A", "v": 1}, {"c": "B", "v": 2}, {"c": "A", "v": 3}],
               "group_by": "c", "agg_field": "v"})
    assert r["result"] == {"A": 4, "B": 2} and r["record_count"] == 3
    ev = sse(post(s, "/api/data/etl", {
        "source_data": [{"s": "active", "n": "x"}, {"s": "off", "n": "y"}],
        "transformations": [{"name": "f", "type": "filter", "field": "s", "value": "active"},
                            {"name": "m", "type": "map", "field": "n"}]})[2])
    assert [e.get("phase") for e in ev] == ["extract", "transform", "transform", "load", None]
    assert ev[-1]["output"] == [{"s": "active", "n": "X"}]

    # allocation by class attributes: DataWorker on all 4 dirty workers
    # (each its own cache), ScheduledWorker on exactly one
    seen = {}
    for _ in range(8):
        r = postj(s, "/api/data/query", {"query_key": "q1"})
        seen.setdefault(r["worker_pid"], []).append(r["status"])
    assert len(seen) == 4
    assert all(v == ["cache_miss", "cache_hit"] for v in seen.values()), seen
    r = postj(s, "/api/scheduled/sync", {"source": "crm"})
    assert r == {"status": "completed", "source": "crm", "records_synced": 30}
    assert postj(s, "/api/scheduled/cleanup", {})["max_age_days"] == 7
    sched = {getj(s, "/api/scheduled/stats")["worker_pid"] for _ in range(4)}
    assert len(sched) == 1
    st = getj(s, "/api/scheduled/stats")
    assert st["run_counts"]["sync_external_data"] == 1
    assert set(st["last_runs"]) >= {"sync_external_data", "cleanup_old_files", "stats"}
    emails = {getj(s, "/api/email/stats")["worker_pid"] for _ in range(6)}
    assert len(emails) == 2

    status, _, body = get(s, "/api/bogus")
    assert status == 500
    err = json.loads(body)
    assert err["type"] == "DirtyAppError" and err["error"].startswith("Unknown action: no_such_action")
    assert getj(s, "/health") == {"status": "healthy", "workers": "connected"}

    s.stop(signal.SIGTERM)
    out = s.out()
    assert ("[Dirty] Registered apps: ['gexamples.tasks:EmailWorker', 'gexamples.tasks:ImageWorker', "
            "'gexamples.tasks:DataWorker', 'gexamples.tasks:ScheduledWorker']") in out
    assert re.search(r"\[HTTP\] Worker \d+ exited", out)


def test_class_limits_retire_workers_cleanly(make_server):
    """Workers retired because of `workers = N` class attributes, and by
    SIGTTOU, are stopped with TERM and given their graceful time: their
    apps' close() and the dirty_worker_exit hook run (a retired worker was
    SIGKILLed an instant after its TERM whenever the arbiter's clock ticked
    over a millisecond between the two)."""
    env = dict(CELERY_ENV, GUNICORN_WORKERS="1", DIRTY_WORKERS="8")
    s = start(make_server, "celery_conf.py", "gexamples.celery_web:app", env=env)
    ready(s, "/health", lambda b: json.loads(b)["status"] == "healthy")
    arb = wait_for(lambda: arbiter_pid(s), 10, what="the dirty arbiter")

    def settled(n):
        # n workers, and every worker spawned so far has initialized
        spawned = s.log().count("Spawned dirty worker")
        return (len(dirty_workers(s)) == n and
                s.out().count("initialized apps") == spawned)
    wait_for(lambda: settled(8), 30, what="8 dirty workers settled")
    for n in range(7, 3, -1):       # down to 4: DataWorker needs 4
        os.kill(arb, signal.SIGTTOU)
        wait_for(lambda: settled(n), 20, what="%d dirty workers" % n)
    s.stop(signal.SIGTERM)
    out, log = s.out(), s.log()
    assert "killed by signal 9" not in log
    inited = set(re.findall(r"\[Dirty\] Worker (\d+) initialized", out))
    exited = set(re.findall(r"\[Dirty\] Worker (\d+) exiting", out))
    assert len(inited) >= 8 and inited <= exited, (inited - exited)
