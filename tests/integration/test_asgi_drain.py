"""The asgi worker's drain, through the real binary over raw sockets: an
app answers without reading its request's body (a 401 in front of an
upload) while the client is still sending it.  The protocol drops the
rest as it comes (PS_DRAIN, src/asgi_http.c), never buffering it, then
the connection goes on as after any kept response — idle keep-alive, or
the request pipelined right after the body's last byte.  A rest that does
not come within the body's deadline is closed, and the descriptor goes
with it; a declared rest over 1 MiB is answered with Connection: close."""

import os
import socket
import threading
import time

import pytest

from conftest import wait_for
from httpraw import (CHUNKED_DRAIN_CLOSES, Connection, check_chunked_drain,
                     check_term_while_draining, get)
from test_gthread_behind import nfds, worker_pid

APP = "tests.integration.apps.asgi_apps"
TOTAL = 200000      # declared: within the 1 MiB the protocol drains
FIRST = 50000       # sent with the head
DRAIN_MAX = 1 << 20


def asgi(make_server, app, *extra, **kw):
    return make_server("-k", "asgi", "-w", "1", *extra, "%s:%s" % (APP, app), **kw)


def post_head(path, n=TOTAL):
    return b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (path.encode(), n)


@pytest.mark.parametrize("loop", ["auto", "asyncio"])
def test_a_body_still_arriving_is_dropped_and_the_connection_kept(make_server, tmp_path, loop):
    """The app answers without reading; the rest of the body comes in
    pieces 300 ms apart, then the next request on the same socket: it is
    answered there (keep-alive kept), and meanwhile another client is
    answered at once after each piece.  The app's receive() after its
    response says http.disconnect, as before."""
    marker = str(tmp_path / "got")
    s = asgi(make_server, "unread", "--asgi-loop", loop, env={"ASGI_MARKER": marker})
    with Connection(s.port, timeout=10) as c:
        c.send(post_head("/a") + b"y" * FIRST)
        status, h, body = c.response()
        assert (status, body, h["connection"]) == (401, b"no /a", "keep-alive")
        wait_for(lambda: os.path.exists(marker), 5, what="the app's receive() after its response")
        with open(marker) as f:
            assert f.read() == "http.disconnect"
        rest = b"y" * (TOTAL - FIRST)
        step = len(rest) // 5
        for i in range(5):
            c.sock.sendall(rest[i * step:(i + 1) * step])
            t0 = time.monotonic()
            with Connection(s.port, timeout=5) as other:
                other.send(get("/other%d" % i))
                assert other.response()[2] == b"no /other%d" % i
            assert time.monotonic() - t0 < 2
            time.sleep(0.3)
        c.send(get("/b"))
        status, h, body = c.response()
        assert (status, body, h["connection"]) == (401, b"no /b", "keep-alive")
        assert not c.closed(0.3)
        c.send(get("/c"))
        assert c.response()[2] == b"no /c"


def test_a_request_glued_to_the_last_byte_of_the_body_is_answered(make_server):
    """The body's last bytes and two pipelined requests in one write: the
    protocol drops exactly the body, the requests behind it are answered
    in order."""
    s = asgi(make_server, "unread")
    with Connection(s.port, timeout=10) as c:
        c.send(post_head("/a") + b"y" * FIRST)
        assert c.response()[2] == b"no /a"
        time.sleep(0.2)
        c.send(b"y" * 100000)
        time.sleep(0.2)
        c.send(b"y" * (TOTAL - FIRST - 100000) + get("/b") + get("/c"))
        assert c.response()[2] == b"no /b"
        assert c.response()[2] == b"no /c"
        c.send(get("/d"))
        assert c.response()[2] == b"no /d"


def test_a_rest_that_never_comes_is_closed_at_the_body_deadline(make_server):
    """--timeout 2: the body's deadline starts at 1 s (the head's) and
    grows at 64 KiB/s for the bytes left (150,000: about 3.3 s).  The
    connection is kept meanwhile, closed by the deadline, and the
    worker's descriptor count comes back to where it was."""
    s = asgi(make_server, "unread", "--timeout", "2", "--log-level", "debug")
    pid = worker_pid(s)
    with Connection(s.port) as warm:
        warm.send(get("/warm"))
        assert warm.response()[0] == 401
    time.sleep(0.3)
    base = nfds(pid)
    c = Connection(s.port, timeout=10)
    try:
        c.send(post_head("/a") + b"y" * FIRST)
        status, h, body = c.response()
        assert (body, h["connection"]) == (b"no /a", "keep-alive")
        t0 = time.monotonic()
        assert nfds(pid) == base + 1
        assert not c.closed(1.5)        # waiting for the rest
        assert c.closed(6)
        assert 2.5 < time.monotonic() - t0 < 6
    finally:
        c.close()
    wait_for(lambda: nfds(pid) == base, 5, what="the descriptor count back to its base")
    s.wait_log("150000 bytes of a request body not sent in time")
    assert "WORKER TIMEOUT" not in s.log()


def test_a_client_that_hangs_up_while_draining_is_closed(make_server):
    s = asgi(make_server, "unread", "--log-level", "debug")
    pid = worker_pid(s)
    with Connection(s.port) as warm:
        warm.send(get("/warm"))
        assert warm.response()[0] == 401
    time.sleep(0.3)
    base = nfds(pid)
    with Connection(s.port, timeout=10) as c:
        c.send(post_head("/a") + b"y" * FIRST)
        assert c.response()[1]["connection"] == "keep-alive"
        c.send(b"y" * 1000)
        c.sock.shutdown(socket.SHUT_WR)
        assert c.closed(3)
    wait_for(lambda: nfds(pid) == base, 5, what="the descriptor count back to its base")
    s.wait_log("Ignored premature client disconnection: 149000 body bytes still to come")


def test_a_declared_rest_over_1_mib_closes_up_front(make_server):
    """Only heads sent: exactly 1 MiB still to come is drained and the
    connection kept; a byte more gets Connection: close at once."""
    s = asgi(make_server, "unread")
    with Connection(s.port, timeout=10) as c:
        c.send(post_head("/big", DRAIN_MAX + 1))
        status, h, body = c.response()
        assert (status, body, h["connection"]) == (401, b"no /big", "close")
        assert c.closed(5)
    with Connection(s.port, timeout=10) as c:
        c.send(post_head("/edge", DRAIN_MAX))
        status, h, body = c.response()
        assert (status, body, h["connection"]) == (401, b"no /edge", "keep-alive")
        c.send(b"y" * DRAIN_MAX + get("/after"))
        status, h, body = c.response()
        assert (body, h["connection"]) == (b"no /after", "keep-alive")


@pytest.mark.parametrize("loop", ["auto", "asyncio"])
def test_a_drain_after_reading_paused(make_server, loop):
    """The app takes 800 ms to answer: meanwhile the buffer fills up to
    its bound and reading pauses.  The buffered part is dropped at the
    response, reading resumes for the rest (not stalled at the pause),
    and a request sent right after the body is answered."""
    total = 1400000
    s = asgi(make_server, "unread", "--asgi-loop", loop)
    with Connection(s.port, timeout=15) as c:
        sender = threading.Thread(target=c.sock.sendall,
                                  args=(post_head("/a?ms=800", total) + b"y" * total
                                        + get("/b"),))
        sender.start()
        try:
            status, h, body = c.response()
            assert (body, h["connection"]) == (b"no /a", "keep-alive")
            status, h, body = c.response()
            assert (body, h["connection"]) == (b"no /b", "keep-alive")
        finally:
            sender.join(10)


@pytest.mark.parametrize("how", ["none", "whole", "split", "later"])
def test_term_while_draining(make_server, how):
    """As gthread (test_gthread_drain.py): TERM while the protocol drains;
    a request right behind the body, or sent a moment after it, is
    answered with Connection: close (both used to be closed unanswered);
    without one the connection closes at its keep-alive deadline."""
    s = asgi(make_server, "unread", "--graceful-timeout", "20")
    check_term_while_draining(s, post_head("/a") + b"y" * FIRST, b"y" * (TOTAL - FIRST),
                              no, how)


def no(path):
    return b"no " + path.encode()


@pytest.mark.parametrize("loop", ["auto", "asyncio"])
def test_an_unread_chunked_body_is_decoded_and_dropped(make_server, loop):
    """The protocol decodes the chunked rest as it comes, then answers
    the request pipelined behind it on the same connection."""
    s = asgi(make_server, "unread", "--asgi-loop", loop)
    check_chunked_drain(s.port, no)


@pytest.mark.parametrize("check, line", CHUNKED_DRAIN_CLOSES)
def test_a_chunked_drain_given_up_closes(make_server, check, line):
    """Malformed chunk framing, or more than 1 MiB of chunk data, after
    the response: the connection closes, the worker serves others."""
    s = asgi(make_server, "unread", "--log-level", "debug")
    check(s.port, no)
    s.wait_log(line)
