"""Streaming results against the real binary (issue 5, "Streaming"):
chunks reach the caller while the generator still runs (sync and async
generators, sync and asyncio clients, and an HTTP response whose body is
client.stream(...), sent chunked); client-side total and idle timeouts; a
caller that goes away (closed iterator, aclose, timeout, HTTP client
disconnect) stops the dirty worker producing for it and disturbs nothing
else; heartbeats go on during a stream longer than dirty_timeout.

Apps: tests/integration/apps/stream_apps.py.  The worker's progress and
its generator's close are recorded in the stash table "stream_progress".
"""
import asyncio
import socket
import threading
import time

import pytest

from conftest import wait_for
from streamkit import (STREAMER, client, derrors, dirty_workers, start,
                       status, use_stash)


def read_progress(st, tag):
    return st.get("stream_progress", tag), st.get("stream_progress", tag + ":closed")


def assert_worker_stopped(s, tag):
    """The generator of stream `tag` was closed and produces no more."""
    st = use_stash(s)
    closed = wait_for(lambda: read_progress(st, tag)[1] is not None, 5,
                      what="the abandoned generator to be closed")
    p1 = st.get("stream_progress", tag)
    time.sleep(0.3)
    assert st.get("stream_progress", tag) == p1
    return closed


# ---- chunks as they are produced ----------------------------------------

def produced_no_earlier(times, delay):
    """Chunk k (the generator sleeps `delay` before each) cannot arrive
    before (k+1) * delay after the call was sent."""
    return all(t >= (k + 1) * delay - 0.005 for k, t in enumerate(times))


def test_first_chunk_before_the_generator_ends(make_server):
    s = start(make_server, "first")
    c = client(s)
    n, delay = 5, 0.3
    t0 = time.monotonic()
    times = []
    for chunk in c.stream(STREAMER, "slow", n, delay):
        times.append(time.monotonic() - t0)
    assert len(times) == n
    assert produced_no_earlier(times, delay), times
    # the first chunk arrives before the generator could have produced its
    # last one (n * delay after the call): streamed, not collected
    assert times[0] < n * delay, times


def test_async_generator_and_asyncio_client(make_server):
    s = start(make_server, "async")

    n, delay = 3, 0.5

    async def run():
        c = client(s)
        t0 = time.monotonic()
        got = []
        async for chunk in c.stream_async(STREAMER, "aslow", n, delay):
            got.append((chunk["i"], time.monotonic() - t0))
        # error mid-stream: chunks first, then the exception
        seen = []
        with pytest.raises(derrors.DirtyAppError) as ei:
            async for chunk in c.stream_async(STREAMER, "fail_after", 2):
                seen.append(chunk)
        await c.close_async()
        return got, seen, ei.value

    got, seen, err = asyncio.run(run())
    assert [i for i, _ in got] == [0, 1, 2]
    assert produced_no_earlier([t for _, t in got], delay), got
    assert got[0][1] < n * delay, got      # before the last chunk could exist
    assert seen == [0, 1]
    assert err.message == "broke after 2" and "RuntimeError" in err.traceback


def test_sync_client_error_mid_stream_then_connection_reused(make_server):
    s = start(make_server, "err")
    c = client(s)
    seen = []
    with pytest.raises(derrors.DirtyAppError) as ei:
        for chunk in c.stream(STREAMER, "fail_after", 3):
            seen.append(chunk)
    assert seen == [0, 1, 2] and ei.value.message == "broke after 3"
    assert list(c.stream(STREAMER, "fast", 5)) == [0, 1, 2, 3, 4]


# ---- HTTP: a WSGI body that is client.stream(...) -------------------------

def http_stream(port, path, on_chunk=None, timeout=10):
    """GET path; returns (head bytes, [(chunk bytes, seconds since send)])."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    t0 = time.monotonic()       # before the send: nothing is produced before it
    sock.sendall(("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path).encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += sock.recv(65536)
    head, buf = buf.split(b"\r\n\r\n", 1)
    chunks = []
    while True:
        while b"\r\n" not in buf:
            buf += sock.recv(65536)
        size_line, buf = buf.split(b"\r\n", 1)
        size = int(size_line, 16)
        while len(buf) < size + 2:
            buf += sock.recv(65536)
        data, buf = buf[:size], buf[size + 2:]
        if size == 0:
            break
        chunks.append((data, time.monotonic() - t0))
        if on_chunk is not None and on_chunk(sock, len(chunks)):
            break
    sock.close()
    return head, chunks


def test_wsgi_body_is_sent_chunk_by_chunk(make_server):
    s = start(make_server, "http")
    n, delay = 5, 0.3
    head, chunks = http_stream(s.port, "/stream?n=%d&delay=%s" % (n, delay))
    assert b"Transfer-Encoding: chunked" in head, head
    assert [c.split()[0:2] for c, _ in chunks] == [[b"line", b"%d" % i] for i in range(n)]
    t = [at for _, at in chunks]
    assert produced_no_earlier(t, delay), t
    assert t[0] < n * delay, t            # before the generator could have finished


# ---- timeouts on the client side ----------------------------------------

def test_idle_timeout(make_server):
    s = start(make_server, "idle")
    c = client(s, timeout=10)
    it = c.stream(STREAMER, "slow", 3, 3.0)     # first chunk after 3 s
    it.idle_timeout = 0.4
    t0 = time.monotonic()
    with pytest.raises(derrors.DirtyTimeoutError) as ei:
        next(it)
    took = time.monotonic() - t0
    assert 0.35 <= took < 2.5, took
    assert "idle" in str(ei.value)
    assert ei.value.timeout == 0.4
    # nothing else is disturbed: the worker serves the next call once the
    # cancelled generator notices (at its next chunk)
    assert c.execute(STREAMER, "pid") in dirty_workers(s)


def test_total_timeout(make_server):
    s = start(make_server, "total")
    c = client(s, timeout=10)
    it = c.stream(STREAMER, "slow", 50, 0.2)    # 10 s in all
    it.total_timeout = 1.5
    got = []
    t0 = time.monotonic()
    with pytest.raises(derrors.DirtyTimeoutError) as ei:
        for chunk in it:
            got.append(chunk["i"])
    took = time.monotonic() - t0
    assert "total" in str(ei.value)
    assert 1.45 <= took < 5, took
    # chunks flowed until then (3 were out 0.9 s before the deadline), and
    # no more than the generator made by the time it was cut off
    assert got[:3] == [0, 1, 2] and len(got) <= took / 0.2, (got, took)
    # default: the total is the client's timeout, the idle min(30, timeout)
    it2 = client(s, timeout=3).stream(STREAMER, "fast", 1)
    assert (it2.total_timeout, it2.idle_timeout) == (3, 3)


def test_async_timeouts(make_server):
    # two calling threads: the stream cancelled by the idle timeout keeps
    # its thread until its generator's next yield; the second runs meanwhile
    s = start(make_server, "atime", extra=("--dirty-threads", "2"))

    async def run():
        c = client(s, timeout=10)
        it = c.stream_async(STREAMER, "aslow", 3, 3.0)      # first chunk after 3 s
        it.idle_timeout = 0.4
        t0 = time.monotonic()
        try:
            await it.__anext__()
        except derrors.DirtyTimeoutError as e:
            idle = (time.monotonic() - t0, str(e))
        it = c.stream_async(STREAMER, "aslow", 50, 0.2)
        it.total_timeout = 1.5
        got = []
        t0 = time.monotonic()
        try:
            async for ch in it:
                got.append(ch["i"])
        except derrors.DirtyTimeoutError as e:
            total = (time.monotonic() - t0, str(e))
        return idle, total, got

    idle, total, got = asyncio.run(run())
    assert 0.35 <= idle[0] < 2.5 and "idle" in idle[1], idle
    assert 1.45 <= total[0] < 5 and "total" in total[1], total
    assert got[:3] == [0, 1, 2] and len(got) <= total[0] / 0.2, (got, total)


# ---- a caller that goes away ---------------------------------------------

def test_closed_iterator_stops_the_worker_and_disturbs_nothing_else(make_server):
    s = start(make_server, "gone")
    c = client(s)
    # another stream runs alongside on its own connection, on the same worker
    other = []
    def run_other():
        other.extend(ch["i"] for ch in client(s).stream(STREAMER, "slow", 6, 0.1))
    # dirty_threads=1: the worker serves one call at a time, so the other
    # stream waits its turn; it must still complete in full
    it = c.stream(STREAMER, "endless", "gone1", 0.02)
    assert [next(it) for _ in range(3)] == [0, 1, 2]
    th = threading.Thread(target=run_other)
    th.start()
    it.close()
    assert_worker_stopped(s, "gone1")
    th.join(10)
    assert other == list(range(6))
    wait_for(lambda: status(s)["in_flight"] == 0, 5, what="no call in flight")


def test_dropped_iterator_and_timeout_stop_the_worker(make_server):
    s = start(make_server, "drop")
    c = client(s, timeout=10)
    it = c.stream(STREAMER, "endless", "drop1", 0.02)
    next(it)
    del it                                  # garbage: its connection closes
    assert_worker_stopped(s, "drop1")
    it = c.stream(STREAMER, "endless", "drop2", 0.02)
    it.total_timeout = 0.3
    with pytest.raises(derrors.DirtyTimeoutError):
        for _ in it:
            pass
    assert_worker_stopped(s, "drop2")


def test_async_aclose_and_cancel_stop_the_worker(make_server):
    s = start(make_server, "aclose")

    async def run():
        c = client(s)
        it = c.stream_async(STREAMER, "endless", "ac1", 0.02)
        assert await it.__anext__() == 0
        await it.aclose()

        started = asyncio.Event()

        async def consume():
            async for _ in c.stream_async(STREAMER, "endless", "ac2", 0.02):
                started.set()
        task = asyncio.ensure_future(consume())
        await asyncio.wait_for(started.wait(), 10)      # the stream is running
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # the shared execute channel is untouched
        return await c.execute_async(STREAMER, "pid")

    assert asyncio.run(run()) in dirty_workers(s)
    assert_worker_stopped(s, "ac1")
    assert_worker_stopped(s, "ac2")


def test_http_client_disconnect_stops_the_worker(make_server):
    s = start(make_server, "hgone")
    head, chunks = http_stream(s.port, "/endless?tag=h1&delay=0.02",
                               on_chunk=lambda sock, n: n >= 3)
    assert [c for c, _ in chunks] == [b"0\n", b"1\n", b"2\n"]
    assert_worker_stopped(s, "h1")
    # the HTTP worker and the dirty worker serve the next request
    head, chunks = http_stream(s.port, "/stream?n=2&delay=0.01")
    assert len(chunks) == 2


# ---- heartbeats during a long stream ------------------------------------

def test_stream_longer_than_dirty_timeout(make_server):
    s = start(make_server, "long", extra=("--dirty-timeout", "2"))
    (wpid,) = dirty_workers(s)
    c = client(s, timeout=20)
    beats = []
    got = []
    for ch in c.stream(STREAMER, "slow", 10, 0.4):      # 4 s > dirty_timeout
        got.append(ch["i"])
        w = [w for w in status(s)["workers"] if w["pid"] == wpid][0]
        beats.append(w["last_heartbeat_ms_ago"])
    assert got == list(range(10))
    # beating all along (every 250 ms): never as stale as dirty_timeout
    assert max(beats) < 2000, beats
    assert dirty_workers(s) == [wpid]
    assert "DIRTY WORKER TIMEOUT" not in s.log()


# ---- the bundled example: token-by-token server-sent events ---------------

def test_sse_example(make_server):
    import json
    import os
    from conftest import ROOT
    s = make_server("-c", os.path.join(ROOT, "examples", "gunicorn_conf.py"),
                    "--chdir", os.path.join(ROOT, "examples"),
                    "--dirty-app", "sse_app:TokenApp", "sse_app:application")
    wait_for(lambda: len(dirty_workers(s)) == 1, 10, what="the dirty worker")
    n, delay = 6, 0.3
    head, chunks = http_stream(s.port, "/generate?prompt=hi&n=%d&delay=%s" % (n, delay), timeout=30)
    assert b"Content-Type: text/event-stream" in head and b"chunked" in head, head
    events = [c for c, _ in chunks]
    assert len(events) == 7 and events[-1] == b"event: end\ndata: {}\n\n", events
    tokens = [json.loads(e[len(b"data: "):]) for e in events[:-1]]
    assert [t["i"] for t in tokens] == list(range(6))
    assert all(t["token"].strip() for t in tokens)
    t = [at for _, at in chunks[:-1]]
    # token by token: none before the model made it, the first before the
    # model could have made the last
    assert produced_no_earlier(t, delay), t
    assert t[0] < n * delay, t
