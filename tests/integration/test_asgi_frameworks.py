"""Starlette and FastAPI apps (Debian's packages) on the ASGI worker, and
the async dirty client on its event loop: lifespan state, path and query
params, JSON, form, file upload, streaming, background tasks,
execute_async, stream_async as server-sent events, an abandoned stream
stopping the dirty worker's generator."""

import json
import os
import re
import socket
import time

import httpx

from conftest import wait_for
from httpraw import Connection, get
from streamkit import APPS, arbiter_pid, dirty_workers, socket_path, unique_name, use_stash


def start(make_server, app, *extra, dirty=False, **kw):
    args = ["-k", "asgi", "--chdir", APPS, "-n", unique_name("asgi")]
    if dirty:
        args += ["--dirty-workers", "1", "--dirty-app", "stream_apps:Streamer"]
    s = make_server(*(args + list(extra) + ["asgi_frameworks:" + app]), **kw)
    if dirty:
        wait_for(lambda: arbiter_pid(s), 10, what="a dirty arbiter")
        s.sock = socket_path(s)
        wait_for(lambda: len(dirty_workers(s)) == 1, 15, what="the dirty worker")
    return s


def url(s, path):
    return "http://127.0.0.1:%d%s" % (s.port, path)


def test_starlette_lifespan_state_params_streaming(make_server, tmp_path):
    marker = str(tmp_path / "shutdown")
    s = start(make_server, "starlette_app", env={"ASGI_MARKER": marker})
    with httpx.Client() as c:
        r = c.get(url(s, "/state"))
        assert r.status_code == 200
        worker_pid = r.json()["pid"]
        assert r.json()["has_started"] is True
        assert c.get(url(s, "/user/ada")).text == "user ada"
        r = c.get(url(s, "/stream"))
        assert r.text == "part 0\npart 1\npart 2\npart 3\n"
        assert r.headers["transfer-encoding"] == "chunked"
        assert c.get(url(s, "/nope")).status_code == 404
    assert worker_pid in [int(p) for p in re.findall(r"Booting worker with pid: (\d+)", s.log())]
    assert s.stop() == 0
    with open(marker) as f:
        assert f.read() == "shutdown"


def test_fastapi_routes(make_server):
    s = start(make_server, "fastapi_app")
    with httpx.Client() as c:
        assert c.get(url(s, "/hello")).json() == {"hello": "world"}
        assert c.get(url(s, "/items/42?q=find%20me")).json() == {"item_id": 42, "q": "find me"}
        assert c.get(url(s, "/items/notanint")).status_code == 422
        r = c.post(url(s, "/items"), json={"name": "pen", "price": 1.5, "tags": ["a"]})
        assert r.json() == {"name": "pen", "total": 3.0, "tags": ["a"]}
        r = c.post(url(s, "/form"), data={"user": "bob", "age": "7"})
        assert r.json() == {"user": "bob", "age": 7}
        payload = b"HELLO" + os.urandom(200000)
        r = c.post(url(s, "/upload"), files={"file": ("blob.bin", payload)},
                   data={"note": "n1"})
        assert r.json() == {"filename": "blob.bin", "size": len(payload), "note": "n1",
                            "head": "HELLO"}
        r = c.get(url(s, "/stream?n=6"))
        assert r.text == "tok0 tok1 tok2 tok3 tok4 tok5 "


def test_fastapi_background_task_runs_after_the_response(make_server, tmp_path):
    s = start(make_server, "fastapi_app")
    marker = str(tmp_path / "bg")
    with httpx.Client() as c:
        r = c.get(url(s, "/background"), params={"path": marker})
        assert r.json() == {"queued": True}
    wait_for(lambda: os.path.exists(marker), 10, what="the background task")
    with Connection(s.port) as c:      # and the connection was kept
        c.send(get("/hello"))
        assert c.response()[0] == 200


def test_async_dirty_client_execute_and_errors(make_server):
    s = start(make_server, "fastapi_app", dirty=True)
    with httpx.Client(timeout=30) as c:
        pid = c.get(url(s, "/dirty/pid")).json()["pid"]
        assert pid == dirty_workers(s)[0]
        for _ in range(20):
            assert c.get(url(s, "/dirty/pid")).json()["pid"] == pid
        assert c.get(url(s, "/dirty/error")).json()["error"] == "DirtyAppError"


def test_stream_async_feeds_sse_chunk_by_chunk(make_server):
    s = start(make_server, "fastapi_app", dirty=True)
    n, delay = 5, 0.3
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=30)
    t0 = time.monotonic()
    sock.sendall(get("/dirty/sse?n=%d&delay=%s" % (n, delay)))
    buf, times = b"", []
    while b"event: end" not in buf:
        d = sock.recv(65536)
        assert d, buf
        buf += d
        times.extend([time.monotonic() - t0] * (d.count(b"data: {\"i\"")))
    sock.close()
    head, _, body = buf.partition(b"\r\n\r\n")
    assert b"text/event-stream" in head and b"chunked" in head.lower()
    events = re.findall(rb"data: (\{\"i\".*?\})\n\n", body)
    assert [json.loads(e)["i"] for e in events] == list(range(n))
    # chunk by chunk, not collected: they arrive spread over the
    # generator's own delays (collected, they would arrive together)
    assert len(times) == n and times[-1] - times[0] >= (n - 1) * delay * 0.8, times


def test_abandoned_sse_stream_stops_the_dirty_generator(make_server):
    s = start(make_server, "fastapi_app", dirty=True)
    tag = unique_name("endless")
    c = Connection(s.port, timeout=30)
    c.send(get("/dirty/endless?tag=" + tag))
    st = use_stash(s)
    wait_for(lambda: (st.get("stream_progress", tag) or 0) >= 3, 10,
             what="the stream to run")
    c.close()
    wait_for(lambda: st.get("stream_progress", tag + ":closed") is not None, 10,
             what="the abandoned generator to be closed")
    with httpx.Client(timeout=30) as h:
        assert h.get(url(s, "/dirty/pid")).status_code == 200
