"""The ASGI worker's eager start (src/asgi_proto.c): the app's first step
runs inside data_received, as the current step of its Task.  What that
could break, through the real binary: contextvars isolation between
requests, the task's identity across a suspension (asyncio.timeout, anyio
cancel scopes), apps that wait before answering, exceptions before and
after the first await, cancellation, and a Starlette stream cancelled when
the client goes."""

import json

from conftest import wait_for
from httpraw import Connection, get, leave_mid_stream

APP = "tests.integration.apps.asgi_eager_apps"


def asgi(make_server, app, *extra, **kw):
    return make_server("-k", "asgi", *extra, "%s:%s" % (APP, app), **kw)


def answer(c, path):
    c.send(get(path))
    status, h, body = c.response()
    return status, h, body


def test_contextvars_are_isolated_between_requests(make_server):
    s = asgi(make_server, "ctxvars", "-w", "1")
    with Connection(s.port) as c:
        for i in range(20):
            path = "/r%d" % i
            q = "?wait" if i % 2 else ""
            status, _, body = answer(c, path + q)
            got = json.loads(body)
            assert status == 200
            assert got["before"] == "unset", got    # nothing leaked from r%d-1
            assert got["after"] == path, got        # kept across the wait
            assert got["task"] and got["same_task"], got
    # pipelined: the second request starts from the first one's send()
    with Connection(s.port) as c:
        c.send(get("/p1") + get("/p2?wait") + get("/p3"))
        for p in ("/p1", "/p2", "/p3"):
            got = json.loads(c.response()[2])
            assert got == {"before": "unset", "after": p, "task": True, "same_task": True}


def test_waiting_before_the_answer_and_task_identity(make_server):
    s = asgi(make_server, "steps", "-w", "1")
    with Connection(s.port) as c:
        for path, want in (("/sleep-then-answer", {"slept": True}),
                           ("/timeout-scope", {"timeout_scope": "ok"}),
                           ("/anyio-scope", {"anyio_scope": "ok"}),
                           ("/cancelled-wait", {"cancelled": True}),
                           ("/plain", {"path": "/plain"})):
            status, h, body = answer(c, path)
            assert status == 200, (path, body, s.log())
            assert json.loads(body) == want
            assert h["connection"] == "keep-alive"
    assert "different task" not in s.log()


def test_exceptions_before_and_after_the_first_await(make_server):
    s = asgi(make_server, "steps", "-w", "1")
    for path, text in (("/raise-now", "ValueError: eager-boom"),
                       ("/raise-after-await", "ValueError: late-boom")):
        with Connection(s.port) as c:
            status, h, _ = answer(c, path)
            assert status == 500 and h["connection"] == "close"
        s.wait_log(text)
        s.wait_log("Exception in ASGI application")
    with Connection(s.port) as c:                  # still serving
        assert answer(c, "/plain")[0] == 200
    assert "Task exception was never retrieved" not in s.log()


def test_starlette_stream_cancelled_when_the_client_goes(make_server, tmp_path):
    marker = str(tmp_path / "gone")
    s = asgi(make_server, "stream", "-w", "1", env={"ASGI_MARKER": marker})
    assert leave_mid_stream(s, marker, "the generator cancelled") == "cancelled"
    with Connection(s.port) as c2:
        c2.send(get("/"))
        assert c2._line().startswith(b"HTTP/1.1 200")
    assert "different task" not in s.log()


def test_channels_awaited_every_way(make_server):
    """receive()/send() give the same values however they are awaited
    (their awaitables end an `await` without raising StopIteration), and
    refuse wrong arguments as they always did.  The app records what it
    got after its response (a receive() then answers at once), so the
    response can come before the record: /report is asked again until
    it is there (the app empties it before answering, so an earlier
    request's record is never taken for this one's)."""
    s = asgi(make_server, "awaits", "-w", "1")
    with Connection(s.port) as c:
        def report():
            status, _, body = answer(c, "/report")
            assert status == 200, s.log()
            return json.loads(body) or None

        for _ in range(2):
            c.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
            status, _, body = c.response()
            assert (status, body) == (200, b"ok"), s.log()
            assert wait_for(report, 10, what="the app's record") == {
                "by_hand": ["http.request", "abc"],
                "send_none": "channel expected 1 argument, got 0",
                "send_two": "channel expected 1 argument, got 2",
                "receive_two": "channel expected at most 1 argument, got 2",
                "send_kw": "channel expected 1 argument, got 0",
                "sent": [None, None, None],
                "twice": ["http.disconnect", "http.disconnect"],
                "wait_for": "http.disconnect", "future": "http.disconnect"}
    assert "Exception in ASGI application" not in s.log()
