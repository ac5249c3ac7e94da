"""The keep-alive threaded worker (-k gthread) and the HTTP connection
layer both worker types share, through the real binary over raw sockets:
persistent connections, pipelining, HTTP/1.0 and close semantics, idle and
slow-client deadlines, worker_connections, thread concurrency, and
stopping (TERM, max_requests) without dropping a request."""

import json
import os
import signal
import socket
import threading
import time

import pytest

from conftest import blocked_signals, http_get, wait_for
from httpraw import (Connection, assert_term_finishes_inflight,
                     assert_worker_connections_backlog, check_expect_100_continue, get,
                     keepalive_clients, seconds_to_idle_close)

APP = "tests.integration.apps.gthread_apps"


def gthread(make_server, app, *extra, threads=4):
    return make_server("-k", "gthread", "--threads", str(threads), *extra,
                       "%s:%s" % (APP, app))


def test_keepalive_serves_many_requests_on_one_connection(make_server):
    s = gthread(make_server, "hello")
    with Connection(s.port) as c:
        for i in range(20):
            c.send(get("/r%d" % i))
            status, h, body = c.response()
            assert status == 200
            assert body == b"hello /r%d" % i
            assert h["connection"] == "keep-alive"
        assert not c.closed(0.3)
    assert "Using worker: gthread" in s.log()


def test_threads_setting_alone_selects_gthread(make_server):
    s = make_server("--threads", "2", "%s:hello" % APP)
    with Connection(s.port) as c:
        c.send(get("/a"))
        assert c.response()[1]["connection"] == "keep-alive"
    assert "Using worker: gthread" in s.log()


def test_pipelined_requests_answered_in_order(make_server):
    s = gthread(make_server, "echo")
    body = b"x" * 5000
    chunked = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    burst = (get("/one")
             + b"POST /two HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body
             + get("/three")
             + b"PUT /four HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked
             + get("/five"))
    with Connection(s.port) as c:
        c.send(burst)
        got = []
        for _ in range(5):
            status, h, b = c.response()
            assert status == 200
            got.append(json.loads(b))
        assert [g["path"] for g in got] == ["/one", "/two", "/three", "/four", "/five"]
        assert got[1]["body"] == body.decode()
        assert got[3]["body"] == "hello world"
        assert got[0]["multithread"] is True
        assert not c.closed(0.3)


def test_pipelined_request_split_across_writes(make_server):
    s = gthread(make_server, "echo")
    with Connection(s.port) as c:
        c.send(get("/a") + b"GET /b HTTP/1.1\r\nHo")
        assert json.loads(c.response()[2])["path"] == "/a"
        time.sleep(0.1)
        c.send(b"st: x\r\n\r\n")
        assert json.loads(c.response()[2])["path"] == "/b"


def test_pipelined_burst_larger_than_the_first_buffer(make_server):
    """300 pipelined requests of 64 bytes in one write: the first read
    fills a connection's 16 kB buffer with exactly 256 whole requests; the
    bytes left in the socket (no new edge will come for them) are read
    once those are answered."""
    s = gthread(make_server, "echo")
    paths = ["/p%03d-%s" % (i, "x" * 32) for i in range(300)]
    assert {len(get(p)) for p in paths} == {64}
    with Connection(s.port) as c:
        c.send(b"".join(get(p) for p in paths))
        got = [json.loads(c.response()[2])["path"] for _ in paths]
        assert got == paths
        assert not c.closed(0.3)


@pytest.mark.parametrize("threads", [1, 4])
def test_next_request_sent_while_the_previous_one_runs(make_server, threads):
    """The next request arrives while its connection is busy in the app
    (an edge the loop cannot act on yet): it is answered after it."""
    s = gthread(make_server, "counter", threads=threads)
    with Connection(s.port) as c:
        c.send(b"GET /?0.3 HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.1)
        c.send(b"GET /?0 HTTP/1.1\r\nHost: x\r\n\r\n")
        first = json.loads(c.response()[2])
        second = json.loads(c.response()[2])
        assert second["count"] == first["count"] + 1
        c.send(get("/"))           # and the connection goes on
        assert c.response()[0] == 200


def test_unread_body_is_skipped_before_the_next_request(make_server):
    s = gthread(make_server, "unread")
    with Connection(s.port) as c:
        c.send(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"y" * 100000
               + get("/b"))
        assert c.response()[2] == b"ok"
        status, h, b = c.response()
        assert (status, b) == (200, b"ok")
        # the body's reads from the socket went into the connection's
        # buffer: nothing of it is taken for a request after /b
        c.send(get("/c"))
        assert c.response()[:3:2] == (200, b"ok")
        assert not c.closed(0.3)


def test_a_body_over_the_drain_bound_closes_up_front(make_server):
    """The app answers without reading a body of 2 MiB declared, more
    than a connection's rest is drained for (1 MiB): the response says
    Connection: close up front, and the connection ends after it.  (A
    smaller rest still coming is dropped by the loop and the connection
    kept: test_gthread_drain.py.)"""
    s = gthread(make_server, "unread", threads=1)
    with Connection(s.port, timeout=10) as c:
        c.send(b"POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 2097152\r\n\r\n"
               + b"y" * 65536)
        status, h, body = c.response()
        assert (status, body, h["connection"]) == (200, b"ok", "close")
        assert c.closed(5)
    assert "WORKER TIMEOUT" not in s.log()


def test_http10_closes_unless_keepalive_asked(make_server):
    s = gthread(make_server, "hello")
    with Connection(s.port) as c:
        c.send(b"GET /old HTTP/1.0\r\n\r\n")
        status, h, body = c.response()
        assert c.version == "HTTP/1.0"
        assert h["connection"] == "close"
        assert c.closed()
    with Connection(s.port) as c:
        for _ in range(3):
            c.send(b"GET /ka HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            status, h, body = c.response()
            assert (status, body, h["connection"]) == (200, b"hello /ka", "keep-alive")
        assert not c.closed(0.3)


def test_http10_body_without_length_ends_with_the_connection(make_server):
    s = gthread(make_server, "nolength")
    with Connection(s.port) as c:
        c.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        status, h, body = c.response()
        assert body == b"one,two"
        assert h["connection"] == "close"
    with Connection(s.port) as c:        # HTTP/1.1: chunked, stays open
        c.send(get("/"))
        status, h, body = c.response()
        assert (body, h["transfer-encoding"], h["connection"]) == (b"one,two", "chunked", "keep-alive")
        assert not c.closed(0.3)


def test_connection_close_from_client_and_from_app(make_server):
    s = gthread(make_server, "hello")
    with Connection(s.port) as c:
        c.send(get("/", extra=b"Connection: close\r\n"))
        assert c.response()[1]["connection"] == "close"
        assert c.closed()
    s2 = gthread(make_server, "wants_close")
    with Connection(s2.port) as c:
        c.send(get("/"))
        status, h, body = c.response()
        assert [v for k, v in c.raw_headers if k.lower() == "connection"] == ["close"]
        assert c.closed()


def test_idle_keepalive_connection_closed_after_keepalive_seconds(make_server):
    s = gthread(make_server, "hello", "--keep-alive", "1")
    assert 0.5 <= seconds_to_idle_close(s.port, 10.0) < 5.0


def test_expect_100_continue(make_server):
    s = gthread(make_server, "echo")
    with Connection(s.port) as c:
        check_expect_100_continue(c, b"data")
        c.send(get("/after"))
        assert json.loads(c.response()[2])["path"] == "/after"


def test_bad_request_on_a_kept_connection(make_server):
    s = gthread(make_server, "hello")
    with Connection(s.port) as c:
        c.send(get("/ok"))
        assert c.response()[0] == 200
        c.send(b"GET /x HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
        status, h, body = c.response()
        assert status == 400
        assert h["connection"] == "close"
        assert c.closed()
    assert http_get(s.port, "/still")[0] == 200


@pytest.mark.parametrize("worker", ["sync", "gthread"])
def test_app_server_and_date_headers_replace_ours(make_server, worker):
    s = make_server("-k", worker, "%s:own_headers" % APP)
    with Connection(s.port) as c:
        c.send(get("/"))
        c.response()
        names = [k.lower() for k, v in c.raw_headers]
        assert names.count("server") == 1 and names.count("date") == 1
        assert dict((k.lower(), v) for k, v in c.raw_headers)["server"] == "myapp/1.0"


def test_app_runs_in_several_threads_at_once(make_server, tmp_path):
    s = gthread(make_server, "counter", threads=4)
    results = []

    def one():
        results.append(json.loads(http_get(s.port, "/?0.5")[2]))

    ts = [threading.Thread(target=one) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    assert len(results) == 4
    assert max(r["count"] for r in results) == 4
    assert max(r["max_active"] for r in results) >= 2     # ran concurrently
    assert len({r["pid"] for r in results}) == 1


def test_counter_is_consistent_under_concurrent_clients(make_server):
    s = gthread(make_server, "counter", threads=8)
    n_clients, per_client = 8, 25
    errors = []

    def client():
        try:
            with Connection(s.port) as c:
                for _ in range(per_client):
                    c.send(get("/"))
                    assert c.response()[0] == 200
        except Exception as e:     # noqa: BLE001 - reported below
            errors.append(e)

    ts = [threading.Thread(target=client) for _ in range(n_clients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert errors == []
    last = json.loads(http_get(s.port, "/")[2])
    assert last["count"] == n_clients * per_client + 1


def test_slow_head_costs_a_connection_not_the_worker(make_server):
    """One worker, one thread: three clients trickle a head byte by byte;
    others are served meanwhile, and the tricklers are cut at the head
    deadline (timeout 4 -> 2 s) with no WORKER TIMEOUT."""
    s = gthread(make_server, "hello", "-w", "1", "-t", "4", threads=1)
    slow = [socket.create_connection(("127.0.0.1", s.port)) for _ in range(3)]
    stop = threading.Event()

    def trickle(sock):
        for ch in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:
            if stop.is_set():
                return
            try:
                sock.send(bytes([ch]))
            except OSError:
                return
            time.sleep(0.2)

    ts = [threading.Thread(target=trickle, args=(x,)) for x in slow]
    for t in ts:
        t.start()
    try:
        t0 = time.monotonic()
        for i in range(10):
            assert http_get(s.port, "/fast%d" % i, timeout=2)[0] == 200
        assert time.monotonic() - t0 < 2.0
        for x in slow:
            x.settimeout(10)
            assert x.recv(1) == b""            # closed at the head deadline
        assert time.monotonic() - t0 < 6.0
    finally:
        stop.set()
        for t in ts:
            t.join(10)
        for x in slow:
            x.close()
    assert "WORKER TIMEOUT" not in s.log()


def test_sync_worker_head_deadline_is_total(make_server):
    """The sync worker: a head trickled one byte every 0.3 s is cut at one
    total deadline (timeout 4 -> 2 s), not kept alive by each byte."""
    s = make_server("-w", "1", "-t", "4", "%s:hello" % APP)
    sock = socket.create_connection(("127.0.0.1", s.port))
    sock.settimeout(0.3)
    t0 = time.monotonic()
    closed = False
    try:
        for ch in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:
            try:
                sock.send(bytes([ch]))
                if sock.recv(1) == b"":
                    closed = True
                    break
            except socket.timeout:
                continue
            except OSError:
                closed = True
                break
    finally:
        sock.close()
    assert closed
    assert time.monotonic() - t0 < 5.0
    assert http_get(s.port, "/after")[0] == 200
    assert "WORKER TIMEOUT" not in s.log()


def test_worker_connections_leaves_the_rest_in_the_backlog(make_server):
    s = gthread(make_server, "hello", "-w", "1", "--worker-connections", "2",
                "--keep-alive", "30")
    assert_worker_connections_backlog(s.port)


def test_term_finishes_inflight_request_and_closes_idle_ones(make_server, tmp_path):
    s = gthread(make_server, "counter", "--graceful-timeout", "10")
    marker = str(tmp_path / "inside")
    busy = get("/?1.5", extra=b"X-Marker: " + marker.encode() + b"\r\n")
    assert_term_finishes_inflight(s, get("/"), busy, marker)


def test_max_requests_recycling_drops_nothing(make_server):
    s = gthread(make_server, "hello", "-w", "2", "--max-requests", "7")
    assert keepalive_clients(s.port) == []
    assert s.log().count("Autorestarting worker after current request.") >= 2


@pytest.mark.parametrize("worker", ["sync", "gthread"])
def test_body_trickle_is_cut_at_one_deadline(make_server, worker):
    """A body sent a byte every 0.3 s: each byte would restart a per-read
    timeout; the body's one deadline (timeout 4 -> 2 s, growing only with
    the bytes received) cuts it, and the worker serves the next client."""
    s = make_server("-k", worker, "-w", "1", "-t", "4", "%s:reader" % APP)
    sock = socket.create_connection(("127.0.0.1", s.port))
    sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
    sock.settimeout(0.3)
    t0 = time.monotonic()
    answer = None
    for _ in range(60):
        try:
            sock.send(b"a")
            answer = sock.recv(65536)
            break                       # the app's answer, or EOF
        except socket.timeout:
            continue
        except OSError:
            answer = b""
            break
    sock.close()
    assert answer is not None, "the trickle went on for 18 s"
    assert time.monotonic() - t0 < 8.0
    # the app's read() failed (it answers so), or the connection was cut
    assert answer == b"" or b"error" in answer, answer
    assert http_get(s.port, "/after")[0] == 200
    assert "WORKER TIMEOUT" not in s.log()


def vm_size_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1])


@pytest.mark.parametrize("worker", ["sync", "gthread"])
def test_huge_content_length_reserves_nothing_up_front(make_server, tmp_path, worker):
    s = make_server("-k", worker, "-w", "1", "%s:reader" % APP)
    worker_pid = wait_for(lambda: s.pids_titled("worker"), 10, what="the worker")[0]
    before = vm_size_kb(worker_pid)
    marker = str(tmp_path / "reading")
    sock = socket.create_connection(("127.0.0.1", s.port))
    sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nX-Marker: " + marker.encode()
                 + b"\r\nContent-Length: 8000000000\r\n\r\n" + b"x" * 100000)
    wait_for(lambda: os.path.exists(marker), 10, what="the app reading")
    time.sleep(0.3)            # read() is under way, waiting for more bytes
    grown = vm_size_kb(worker_pid) - before
    sock.close()
    assert grown < 512 * 1024, "read() reserved %d kB" % grown
    assert http_get(s.port, "/after")[0] == 200


def test_a_process_the_app_starts_has_no_signal_blocked(make_server):
    """The loop takes signals through handlers, not by blocking them: a
    child an app thread starts must not inherit TERM blocked (it would
    ignore a TERM)."""
    s = gthread(make_server, "spawner")
    pid = int(http_get(s.port, "/")[2])
    try:
        blocked = blocked_signals(pid)
        assert blocked == 0, "blocked signals: %x" % blocked
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not os.path.exists("/proc/%d" % pid) or
                 open("/proc/%d/stat" % pid).read().split()[2] == "Z", 5,
                 what="the child to obey TERM")
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def test_hups_drop_nothing(make_server):
    """Clients on keep-alive connections while the master gets HUPs: the
    old workers finish what they were told they could send, nothing is
    refused or reset."""
    s = gthread(make_server, "hello", "-w", "2")
    failures, done = [], threading.Event()
    counts = []

    def client(k):
        n = 0
        while not done.is_set():
            try:
                with Connection(s.port) as c:
                    for j in range(20):
                        c.send(get("/%d-%d" % (k, j)))
                        status, h, body = c.response()
                        assert status == 200
                        n += 1
                        if h["connection"] == "close":
                            break
            except Exception as e:   # noqa: BLE001 - counted
                failures.append(repr(e))
        counts.append(n)

    ts = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for t in ts:
        t.start()
    try:
        for _ in range(5):
            booted = s.log().count("Booting worker")
            s.send(signal.SIGHUP)
            wait_for(lambda: s.log().count("Booting worker") >= booted + 2, 15,
                     what="new workers after HUP")
    finally:
        done.set()
        for t in ts:
            t.join(60)
    assert failures == []
    assert len(counts) == 4 and min(counts) > 0


def test_a_head_that_fills_the_first_buffer_then_its_body(make_server):
    """A head ending exactly at the end of the connection's first buffer
    (16 KiB), its body sent later: the body has room (the buffer grew when
    the read filled it), not a read of 0 bytes taken for a close."""
    s = gthread(make_server, "echo", "-w", "1")
    start = b"POST /f HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
    pads = [b"X-Pad-%d: %s\r\n" % (i, b"p" * 5000) for i in range(3)]
    rest = 16384 - len(start) - sum(map(len, pads)) - len(b"X-Last: \r\n\r\n")
    head = start + b"".join(pads) + b"X-Last: " + b"q" * rest + b"\r\n\r\n"
    assert len(head) == 16384
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as c:
        c.sendall(head)
        time.sleep(0.5)         # the worker reads the head alone
        c.sendall(b"body")
        data = b""
        while b"}" not in data:
            d = c.recv(65536)
            assert d, data
            data += d
    assert data.startswith(b"HTTP/1.1 200 ") and b'"body": "body"' in data, data[:200]
