"""The gthread worker's drain, through the real binary over raw sockets:
an app answers without reading its request's body while the client is
still sending it.  The pool thread does not wait for the rest; the
worker's loop reads and drops it as it comes (src/gthread_drain.c), then
the connection goes on as after any kept response — idle keep-alive, or
the request pipelined right after the body's last byte — including after
a response written behind.  A rest that does not come within the body's
deadline is closed, and the descriptor goes with it."""

import threading
import time

import pytest

from conftest import wait_for
from httpraw import (CHUNKED_DRAIN_CLOSES, Connection, check_chunked_drain,
                     check_term_while_draining, get)
from test_gthread_behind import SIZE, nfds, pattern, worker_pid

APP = "tests.integration.apps.gthread_apps"
BEHIND_APP = "tests.integration.apps.behind_apps:app"
TOTAL = 200000      # declared: within the 1 MiB the loop drains
FIRST = 50000       # sent with the head


def post_head(path, n=TOTAL):
    return b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (path.encode(), n)


def gthread(make_server, app, *extra, threads=1):
    return make_server("-k", "gthread", "--threads", str(threads), "-w", "1", *extra,
                       "%s:%s" % (APP, app))


def test_a_body_still_arriving_is_dropped_by_the_loop_and_the_connection_kept(make_server):
    """One thread.  The app answers without reading; the rest of the
    body comes in pieces 300 ms apart, then the next request on the same
    socket: it is answered there (keep-alive kept), and meanwhile another
    client is answered at once after each piece (the thread is not held)."""
    s = gthread(make_server, "hello")
    with Connection(s.port, timeout=10) as c:
        c.send(post_head("/a") + b"y" * FIRST)
        status, h, body = c.response()
        assert (status, body, h["connection"]) == (200, b"hello /a", "keep-alive")
        rest = b"y" * (TOTAL - FIRST)
        step = len(rest) // 5
        for i in range(5):
            c.sock.sendall(rest[i * step:(i + 1) * step])
            t0 = time.monotonic()
            with Connection(s.port, timeout=5) as other:
                other.send(get("/other%d" % i))
                assert other.response()[2] == b"hello /other%d" % i
            assert time.monotonic() - t0 < 2
            time.sleep(0.3)
        c.send(get("/b"))
        status, h, body = c.response()
        assert (status, body, h["connection"]) == (200, b"hello /b", "keep-alive")
        assert not c.closed(0.3)
        c.send(get("/c"))
        assert c.response()[2] == b"hello /c"
    assert "WORKER TIMEOUT" not in s.log()


def test_a_request_glued_to_the_last_byte_of_the_body_is_answered(make_server):
    """The body's last bytes and two pipelined requests in one write: the
    loop drops exactly the body, the requests behind it are answered in
    order."""
    s = gthread(make_server, "hello")
    with Connection(s.port, timeout=10) as c:
        c.send(post_head("/a") + b"y" * FIRST)
        assert c.response()[2] == b"hello /a"
        time.sleep(0.2)
        c.send(b"y" * 100000)
        time.sleep(0.2)
        c.send(b"y" * (TOTAL - FIRST - 100000) + get("/b") + get("/c"))
        assert c.response()[2] == b"hello /b"
        assert c.response()[2] == b"hello /c"
        c.send(get("/d"))
        assert c.response()[2] == b"hello /d"


def test_a_rest_that_never_comes_is_closed_at_the_body_deadline(make_server):
    """--timeout 2: the body's deadline starts at 1 s (the head's) and
    grows at 64 KiB/s for the bytes left (150,000: about 3.3 s).  The
    connection is kept past the linger, closed by the deadline, and the
    worker's descriptor count comes back to where it was."""
    s = gthread(make_server, "hello", "--timeout", "2", "--log-level", "debug")
    pid = worker_pid(s)
    with Connection(s.port) as warm:
        warm.send(get("/warm"))
        assert warm.response()[0] == 200
    time.sleep(0.3)
    base = nfds(pid)
    c = Connection(s.port, timeout=10)
    try:
        c.send(post_head("/a") + b"y" * FIRST)
        assert c.response()[2] == b"hello /a"
        t0 = time.monotonic()
        assert nfds(pid) == base + 1
        assert not c.closed(1.5)        # not a linger: a drain, waiting
        assert c.closed(6)
        assert 2.5 < time.monotonic() - t0 < 6
    finally:
        c.close()
    wait_for(lambda: nfds(pid) == base, 5, what="the descriptor count back to its base")
    assert "bytes of a request body not sent in time" in s.log()
    assert "WORKER TIMEOUT" not in s.log()


@pytest.mark.parametrize("how", ["none", "whole", "split", "later"])
def test_term_while_draining(make_server, how):
    """TERM arrives while the loop drains: the connection is not dropped;
    the client finishes its body, its next request is answered with
    Connection: close, and the worker exits (no connection left); the
    asgi worker does the same (test_asgi_drain.py)."""
    s = gthread(make_server, "hello", "--graceful-timeout", "20")
    check_term_while_draining(s, post_head("/a") + b"y" * FIRST, b"y" * (TOTAL - FIRST),
                              hello, how)


def test_a_drain_after_a_write_behind(make_server):
    """The response to a POST whose body the app left unread is written
    behind (6 MiB the client does not read yet); the client sends the
    rest of its body meanwhile.  The thread is free; the client gets the
    whole response, then the loop drops the body's rest and the
    connection serves the next request.  Keep-alive 10 s: the idle timer
    starts once the response's last byte is in the kernel, and the
    sockets hold megabytes of it; a client on a loaded machine took 1.7 s
    to read them, past the default 2 s after the server went idle."""
    s = make_server("-k", "gthread", "--threads", "1", "-w", "1", "--keep-alive", "10",
                    BEHIND_APP)
    with Connection(s.port, timeout=30) as c:
        c.send(b"POST /list/%d HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
               % (SIZE, TOTAL) + b"b" * FIRST)
        time.sleep(1.0)
        with Connection(s.port, timeout=5) as fast:    # the thread is free
            fast.send(get("/fast"))
            assert fast.response()[2] == b"hello"
        sender = threading.Thread(target=c.sock.sendall, args=(b"b" * (TOTAL - FIRST),))
        sender.start()
        try:
            status, headers, body = c.response()
        finally:
            sender.join(10)
        assert status == 200 and headers.get("connection") == "keep-alive"
        assert body == pattern(SIZE)
        c.send(get("/again"))
        assert c.response()[2] == b"hello"
        assert not c.closed(0.3)
    assert "WORKER TIMEOUT" not in s.log()


def hello(path):
    return b"hello " + path.encode()


def test_an_unread_chunked_body_is_decoded_and_dropped_by_the_loop(make_server):
    """One thread: the loop decodes the chunked rest as it comes (the
    thread is free: another client is answered after each piece), then
    answers the request pipelined behind it on the same connection."""
    s = gthread(make_server, "hello")
    check_chunked_drain(s.port, hello)
    assert "WORKER TIMEOUT" not in s.log()


@pytest.mark.parametrize("check, line", CHUNKED_DRAIN_CLOSES)
def test_a_chunked_drain_given_up_closes(make_server, check, line):
    """Malformed chunk framing, or more than 1 MiB of chunk data, after
    the response: the connection closes, the worker serves others."""
    s = gthread(make_server, "hello", "--log-level", "debug")
    check(s.port, hello)
    s.wait_log(line)
