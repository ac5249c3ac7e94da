"""The asyncio dirty client (execute_async, stream_async) against the real
binary, where its connection meets trouble:
  - the client's timeout bounds the whole call, the wait for a full socket
    included (an arbiter stopped with SIGSTOP does not read);
  - a call on an idle connection the arbiter closed while the loop was not
    looking (a killed arbiter: EPIPE on the write), or whose request the
    arbiter never read (killed while stopped: ECONNRESET), is sent again,
    once, on a new connection;
  - aclose() of a stream from another task wakes the task waiting for its
    next chunk (StopAsyncIteration).

The client runs in this process (streamkit: cunicorn.dirty from python/).
Apps: tests/integration/apps/stream_apps.py.
"""
import asyncio
import os
import signal
import time

import pytest

from conftest import wait_for
from streamkit import STREAMER, arbiter_pid, client, derrors, start

BIG = 8 << 20     # far past a Unix socket's buffer: the transport pauses


def run_on(loop_kind, coro):
    if loop_kind == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as r:
            return r.run(coro)
    return asyncio.run(coro)


async def outcome(aw):
    """(exception class name or "ok", seconds); "hung" past 10 s."""
    t0 = time.monotonic()
    try:
        await asyncio.wait_for(aw, 10)
        name = "ok"
    except asyncio.TimeoutError:
        name = "hung"
    except Exception as e:
        name = type(e).__name__
    return name, time.monotonic() - t0


def test_timeout_covers_the_wait_for_a_full_socket(make_server):
    s = start(make_server, "full")
    big = b"x" * BIG

    async def run():
        c = client(s, timeout=1.0)
        assert await c.execute_async(STREAMER, "pid") > 0      # connected
        os.kill(s.arbiter, signal.SIGSTOP)
        try:
            # the first call's 8 MiB fill the socket; the second waits for
            # it to drain; the stream's send fills its own connection
            first = asyncio.ensure_future(outcome(c.execute_async(STREAMER, "size", big)))
            await asyncio.sleep(0)
            second = asyncio.ensure_future(outcome(c.execute_async(STREAMER, "size", big)))
            it = c.stream_async(STREAMER, "size", big)
            third = asyncio.ensure_future(outcome(it.__anext__()))
            got = await asyncio.gather(first, second, third)
            pending = dict(c._achan.pending)
        finally:
            os.kill(s.arbiter, signal.SIGCONT)
        c.timeout = 30
        # the client goes on (the abandoned 8 MiB reach the arbiter, their
        # replies are dropped)
        after = [await c.execute_async(STREAMER, "size", b"abc"),
                 [x async for x in c.stream_async(STREAMER, "fast", 2)]]
        await c.close_async()
        return got, pending, after

    got, pending, after = asyncio.run(run())
    for name, took in got:
        assert name == "DirtyTimeoutError" and 0.9 <= took < 6, got
    assert pending == {}
    assert after == [3, [0, 1]]


def restart_arbiter(s, sig=signal.SIGKILL):
    """Kill the dirty arbiter and wait (blocking: an event loop calling
    this does not run meanwhile) until its successor's workers answer."""
    old = s.arbiter
    os.kill(old, sig)
    s.arbiter = wait_for(lambda: (lambda p: p if p not in (None, old) else None)(arbiter_pid(s)),
                         15, what="a new dirty arbiter")
    sync = client(s, timeout=5)

    def answers():
        try:
            return sync.execute(STREAMER, "pid") > 0
        except derrors.DirtyError:
            return False
    try:
        wait_for(answers, 20, interval=0.1, what="the new arbiter's workers")
    finally:
        sync.close()


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_idle_connection_closed_by_the_arbiter_is_retried(make_server, loop_kind):
    """The arbiter dies while the client's connections are idle and its
    loop does not run: they still look healthy, the first write meets the
    closed end (EPIPE), nothing was sent: the call goes on a new one."""
    s = start(make_server, "idle")

    async def run():
        c = client(s, timeout=20)
        out = {}
        for first in ("execute", "stream"):
            # both kinds of connection idle on the current arbiter
            await c.execute_async(STREAMER, "pid")
            assert [x async for x in c.stream_async(STREAMER, "fast", 2)] == [0, 1]
            achan, kept = c._achan, list(c._astreams)
            assert len(kept) == 1
            restart_arbiter(s)
            try:
                if first == "execute":
                    r = await c.execute_async(STREAMER, "size", b"abcd")
                    out[first] = [r, c._achan is achan]
                else:
                    r = [x async for x in c.stream_async(STREAMER, "fast", 3)]
                    out[first] = [r, c._astreams == kept]   # the same channel
            except derrors.DirtyError as e:
                out[first] = repr(e)
        await c.close_async()
        return out

    out = run_on(loop_kind, run())
    assert out == {"execute": [4, True], "stream": [[0, 1, 2], True]}, out


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_request_the_arbiter_never_read_is_retried(make_server, loop_kind):
    """The arbiter is stopped, a call's request waits unread in its socket,
    then it is killed: the connection is reset (ECONNRESET, not a plain
    EOF): the request never reached it, the call goes on a new connection.
    The request of a call that had been read is not sent again: the next
    call on a killed arbiter that had read it fails."""
    s = start(make_server, "unread")

    async def run():
        c = client(s, timeout=20)
        await c.execute_async(STREAMER, "pid")
        os.kill(s.arbiter, signal.SIGSTOP)
        call = asyncio.ensure_future(c.execute_async(STREAMER, "size", b"abcde"))
        await asyncio.sleep(0.2)          # the request is written, unread
        restart_arbiter(s)                # (SIGKILL ends a stopped process too)
        out = {"call": (await outcome(call))[0]}
        if out["call"] == "ok":
            out["result"] = call.result()
        # a request the arbiter read (the sleep is running) is not re-sent
        slow = asyncio.ensure_future(c.execute_async(STREAMER, "sleep", 3))
        await asyncio.sleep(0.5)
        restart_arbiter(s)
        out["read"] = (await outcome(slow))[0]
        await c.close_async()
        return out

    out = run_on(loop_kind, run())
    assert out["call"] == "ok" and out["result"] == 5, out
    assert out["read"] == "DirtyConnectionError", out


def test_aclose_from_another_task_wakes_the_waiting_task(make_server):
    s = start(make_server, "aclose2", extra=("--dirty-threads", "2"))

    async def run():
        c = client(s)                       # idle timeout: 30 s
        out = {}
        # waiting for the second chunk (1.5 s apart)
        it = c.stream_async(STREAMER, "aslow", 3, 1.5)
        got = []

        async def consume():
            async for x in it:
                got.append(x["i"])
        a = asyncio.ensure_future(outcome(consume()))
        await asyncio.wait_for(_until(lambda: got), 10)
        await asyncio.sleep(0.2)
        t0 = time.monotonic()
        await it.aclose()
        name, _ = await a
        out["mid"] = [name, time.monotonic() - t0, list(got)]
        # still in the first wait (connecting, sending, waiting)
        it2 = c.stream_async(STREAMER, "aslow", 1, 1.5)
        a2 = asyncio.ensure_future(outcome(it2.__anext__()))
        await asyncio.sleep(0.2)
        t0 = time.monotonic()
        await it2.aclose()
        name, _ = await a2
        out["first"] = [name, time.monotonic() - t0]
        out["next"] = (await outcome(it2.__anext__()))[0]
        out["after"] = await c.execute_async(STREAMER, "size", b"ab")
        await c.close_async()
        return out

    out = asyncio.run(run())
    # the waiter's `async for` ends (StopAsyncIteration) at once
    assert out["mid"][0] == "ok" and out["mid"][1] < 1.0 and out["mid"][2] in ([0], [0, 1]), out
    assert out["first"][0] == "StopAsyncIteration" and out["first"][1] < 1.0, out
    assert out["next"] == "StopAsyncIteration" and out["after"] == 2, out


async def _until(pred):
    while not pred():
        await asyncio.sleep(0.02)
