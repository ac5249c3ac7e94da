"""Write-behind in the gthread worker, through the real binary: a client
that does not read its response costs a descriptor and a bounded buffer,
never a pool thread.  The rest of a response the socket refuses is
copied to the connection's output buffer and the loop writes it as the
client reads (src/gthread_behind.c, src/conn_out.c); then the connection
goes on as after any response (keep-alive, pipelined requests), is closed
when its client takes nothing for the I/O timeout, and is waited for when
the worker stops."""

import os
import signal
import time

import pytest

from conftest import read_until_close, wait_for
from httpraw import Connection, get

APP = "tests.integration.apps.behind_apps:app"
# Bigger than what the kernel holds for a socket whose client reads
# nothing (~4 MiB here: tcp_wmem's maximum), smaller than that plus the
# 4 MiB a connection's output buffer may hold.
SIZE = 6 << 20


def pattern(n):
    """behind_apps.pattern: every 8 bytes say their word's index."""
    return b"".join(b"%08x" % i for i in range((n + 7) // 8))[:n]


def behind(make_server, *extra, threads=2):
    return make_server("-k", "gthread", "--threads", str(threads), "-w", "1",
                       *extra, APP)


def worker_pid(s):
    return wait_for(lambda: (lambda p: p[0] if len(p) == 1 else None)(s.pids_titled("worker")),
                    10, what="one worker")


def nfds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def test_slow_readers_cost_a_descriptor_not_a_thread(make_server):
    """Two threads, six clients that ask for 6 MiB (a list, a generator
    sent chunked, a file sent with sendfile, write() calls) and read
    nothing: a seventh client is answered at once meanwhile.  Then each
    slow client reads its whole body, byte-exact, and its connection
    serves the next request (a pipelined one for the first); the access
    log has one line for each, with the body's length."""
    s = behind(make_server, "--access-logfile", "-")
    want = pattern(SIZE)
    kinds = ["list", "gen", "file", "write", "list", "gen"]
    slow = []
    try:
        for i, k in enumerate(kinds):
            c = Connection(s.port, timeout=30)
            req = get("/%s/%d" % (k, SIZE))
            if i == 0:
                req += get("/pipelined")
            c.send(req)
            slow.append(c)
        time.sleep(1.0)     # every slow response has met its full socket
        t0 = time.monotonic()
        with Connection(s.port, timeout=5) as fast:
            fast.send(get("/fast"))
            assert fast.response()[2] == b"hello"
        assert time.monotonic() - t0 < 5
        for i, (k, c) in enumerate(zip(kinds, slow)):
            status, headers, body = c.response()
            assert status == 200, k
            assert len(body) == SIZE, k
            assert body == want, k
            assert headers.get("connection") == "keep-alive", k
            if k == "gen":
                assert headers.get("transfer-encoding") == "chunked"
            if i == 0:
                assert c.response()[2] == b"hello"
            c.send(get("/again"))
            assert c.response()[2] == b"hello", k
    finally:
        for c in slow:
            c.close()
    for k in set(kinds):
        lines = [ln for ln in s.out().splitlines() if '"GET /%s/%d ' % (k, SIZE) in ln]
        assert len(lines) == kinds.count(k), lines
        assert all(" 200 %d " % SIZE in ln for ln in lines), lines
    assert "WORKER TIMEOUT" not in s.log()


def test_connection_close_after_a_write_behind(make_server):
    """A response that says Connection: close, written behind: the
    client gets the whole body, then the end of the connection."""
    s = behind(make_server, threads=1)
    with Connection(s.port, timeout=30) as c:
        c.send(b"GET /gen/%d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % SIZE)
        time.sleep(1.0)
        with Connection(s.port, timeout=5) as fast:    # the thread is free
            fast.send(get("/fast"))
            assert fast.response()[2] == b"hello"
        status, headers, body = c.response()
        assert status == 200 and headers.get("connection") == "close"
        assert body == pattern(SIZE)
        assert c.closed(5)


def test_unread_request_body_then_a_write_behind_lingers(make_server):
    """A POST whose 3 MiB body the app never reads (too much to drain: the
    connection must close) answered with 6 MiB written behind: the thread
    is free meanwhile; the client, still sending its body, gets the whole
    response and then the end of the connection, never a reset (the loop
    shuts its side and lingers, reading what the client still sends,
    rather than closing on unread bytes)."""
    s = behind(make_server, threads=1)
    total = 3 << 20
    first = 64 << 10
    with Connection(s.port, timeout=30) as c:
        c.send(b"POST /list/%d HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
               % (SIZE, total) + b"b" * first)
        time.sleep(1.0)
        with Connection(s.port, timeout=5) as fast:    # the thread is free
            fast.send(get("/fast"))
            assert fast.response()[2] == b"hello"
        # more of the body arrives while the response is still behind:
        # unread bytes on the server's side of the socket
        c.sock.settimeout(10)
        c.sock.sendall(b"b" * (256 << 10))
        status, headers, body = c.response()
        assert status == 200 and headers.get("connection") == "close"
        assert body == pattern(SIZE)
        assert c.closed(5)
    assert "WORKER TIMEOUT" not in s.log()


def test_a_client_that_reads_nothing_is_closed_after_the_io_timeout(make_server):
    """--timeout 2: the I/O timeout is 1.5 s.  A client that reads none of
    its 6 MiB is closed once that long has passed without it taking a
    byte; its descriptor and buffer are gone and the worker goes on."""
    s = behind(make_server, "--timeout", "2")
    pid = worker_pid(s)
    with Connection(s.port) as warm:
        warm.send(get("/warm"))
        assert warm.response()[2] == b"hello"
    time.sleep(0.5)         # the server saw the EOF and closed its end
    base = nfds(pid)
    c = Connection(s.port, timeout=30)
    try:
        c.send(get("/list/%d" % SIZE))
        wait_for(lambda: nfds(pid) > base, 5, what="the connection accepted")
        t0 = time.monotonic()
        wait_for(lambda: nfds(pid) <= base, 20, what="the stalled connection closed")
        assert time.monotonic() - t0 > 1.0
        c.sock.settimeout(10)
        assert len(read_until_close(c.sock)) < SIZE   # cut: the buffered rest was dropped
    finally:
        c.close()
    assert worker_pid(s) == pid
    with Connection(s.port) as after:
        after.send(get("/after"))
        assert after.response()[2] == b"hello"
    time.sleep(0.3)
    assert nfds(pid) <= base + 1      # the kept-alive /after connection at most
    assert "WORKER TIMEOUT" not in s.log()


@pytest.mark.parametrize("how", ["term", "max_requests"])
def test_stopping_worker_finishes_a_write_behind(make_server, how):
    """The worker stops (TERM, or its max_requests reached) while a
    response is being written behind: the client that reads it within
    graceful_timeout gets it whole."""
    extra = ["--max-requests", "1"] if how == "max_requests" else []
    s = behind(make_server, "--graceful-timeout", "20", "--access-logfile", "-", *extra)
    c = Connection(s.port, timeout=30)
    try:
        c.send(get("/gen/%d" % SIZE))
        # the access log line is written when the app's thread is done
        wait_for(lambda: '"GET /gen/%d ' % SIZE in s.out(), 10, what="the request done")
        if how == "term":
            s.send(signal.SIGTERM)
        else:
            s.wait_log("Autorestarting worker after current request.")
        time.sleep(1.5)
        status, headers, body = c.response()
        assert status == 200
        assert body == pattern(SIZE)
    finally:
        c.close()
    if how == "term":
        assert s.wait(15) == 0
    else:
        with Connection(s.port) as after:
            after.send(get("/after"))
            assert after.response()[2] == b"hello"
