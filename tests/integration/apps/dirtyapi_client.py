"""A plain-python3 client of a running cunicorn, for test_dirty_api.py:
    PYTHONPATH=python:build/python GUNICORN_DIRTY_SOCKET=... \
        /usr/bin/python3 dirtyapi_client.py SCENARIO [ARGS...]
prints one JSON object on stdout.  Uses only the public API.
"""
import asyncio
import json
import os
import sys
import threading
import time

from gunicorn.dirty import (DirtyAppError, DirtyAppNotFoundError, DirtyError,
                            get_dirty_client, get_dirty_client_async)

APP = "dirtyapi_apps:Basic"


def err(e):
    return {"class": type(e).__name__, "message": e.message,
            "traceback": getattr(e, "traceback", None)}


def sockets():
    """The sockets this process holds (their inodes)."""
    out = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink("/proc/self/fd/" + fd)
        except OSError:
            continue
        if link.startswith("socket:"):
            out.add(link)
    return out


async def scenario_async():
    client = await get_dirty_client_async()
    same = client is await get_dirty_client_async()
    # many calls in flight on one connection, matched by id
    values = await asyncio.gather(*(client.execute_async(APP, "echo", i) for i in range(50)))
    coro = await client.execute_async(APP, "coro", 21)
    chunks = [c async for c in client.stream_async(APP, "count", 5)]
    achunks = [c async for c in client.stream_async(APP, "acount", 3)]
    partial, stream_error = [], None
    try:
        async for c in client.stream_async(APP, "count_then_fail", 3):
            partial.append(c)
    except DirtyAppError as e:
        stream_error = err(e)
    try:
        await client.execute_async(APP, "fail", "async")
        app_error = None
    except DirtyAppError as e:
        app_error = err(e)
    try:
        await client.execute_async("nosuch:App", "x")
        notfound = None
    except DirtyAppNotFoundError as e:
        notfound = err(e)
    # frames larger than a socket read, both ways, several in flight: the
    # request waits for the socket to drain, each reply is cut out of many
    # reads (and the 64-byte echoes between them out of the same reads)
    big = [bytes([65 + i]) * (3 << 20) for i in range(3)]
    bigs = await asyncio.gather(*(client.execute_async(APP, "echo", b) for b in big),
                                *(client.execute_async(APP, "echo", "s" * 64) for _ in range(3)))
    big_ok = [r == b for r, b in zip(bigs, big)] + [r == "s" * 64 for r in bigs[3:]]
    # the first call fills the socket; the two behind it wait for it to
    # drain before writing; one of them cancelled fails alone: the calls
    # waiting beside it go through
    calls = [asyncio.ensure_future(client.execute_async(APP, "echo", b)) for b in big]
    await asyncio.sleep(0)
    calls[1].cancel()
    done = await asyncio.gather(*calls, return_exceptions=True)
    big_ok += [isinstance(done[1], asyncio.CancelledError),
               done[0] == big[0], done[2] == big[2]]
    # concurrent slow calls + a stream interleaved
    t0 = time.monotonic()
    slow = await asyncio.gather(client.execute_async(APP, "sleep", 0.3),
                                client.execute_async(APP, "echo", "fast"))
    # a stream that ran to its end leaves its connection for the next one;
    # an abandoned stream's connection is closed, never reused
    await asyncio.sleep(0.05)
    s0 = sockets()
    again = [c async for c in client.stream_async(APP, "count", 2)]
    s1 = sockets()
    it = client.stream_async(APP, "count", 100)
    await it.__anext__()
    await it.aclose()
    await asyncio.sleep(0.05)
    s2 = sockets()
    reuse = {"again": again, "reused": s1 == s0,
             "abandoned_closed": len(s0 - s2) == 1 and not (s2 - s0)}
    return {"same": same, "values": values, "coro": coro, "chunks": chunks, "reuse": reuse,
            "achunks": achunks, "partial": partial, "stream_error": stream_error,
            "app_error": app_error, "notfound": notfound, "big_ok": big_ok,
            "slow": [isinstance(slow[0], int), slow[1]],
            "slow_elapsed": time.monotonic() - t0}


def scenario_parallel(n, seconds):
    n, seconds = int(n), float(seconds)
    pids, errors = [], []

    def one():
        try:
            pids.append(get_dirty_client().execute(APP, "sleep", seconds))
        except DirtyError as e:
            errors.append(repr(e))

    threads = [threading.Thread(target=one) for _ in range(n)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"elapsed": time.monotonic() - t0, "pids": pids, "errors": errors}


def scenario_sync():
    c = get_dirty_client()
    out = {"same": c is get_dirty_client(), "echo": c.execute(APP, "echo", {"k": [1, 2.5, None, True, b"\x00b"]})}
    out["echo"]["k"][4] = out["echo"]["k"][4].hex()
    # a call made while a stream is being iterated gets its own connection
    inner = []
    for chunk in c.stream(APP, "count", 3):
        inner.append([chunk, c.execute(APP, "echo", chunk["i"])])
    out["inner"] = inner
    it = c.stream(APP, "count", 100)
    out["abandoned_first"] = next(it)
    it.close()
    out["after_abandon"] = c.execute(APP, "echo", "still fine")
    return out


def scenario_reconnect():
    c = get_dirty_client()
    first = c.execute(APP, "ping")
    print(json.dumps({"first": first}), flush=True)
    sys.stdin.readline()  # the test restarts the dirty arbiter meanwhile
    try:
        second = c.execute(APP, "ping")
        return {"second": second}
    except DirtyError as e:
        return {"second_error": err(e)}


def scenario_status():
    import _cunicorn_dirty as w
    import os
    conn = w.Connection(os.environ["GUNICORN_DIRTY_SOCKET"], 10)
    kind, reply = conn.recv_reply(conn.send_raw(w.MSG_TYPE_STATUS, None))
    assert kind == w.MSG_TYPE_RESPONSE, (kind, reply)
    return reply["result"]


def scenario_stash():
    from gunicorn.dirty import stash
    out = {}
    stash.put("t1", "user:1", {"name": "Alice"})
    stash.put("t1", "user:2", [1, 2])
    stash.put("t1", "other", None)
    out["get"] = stash.get("t1", "user:1")
    out["missing"] = stash.get("t1", "nope", default="dflt")
    out["keys"] = sorted(stash.keys("t1"))
    out["pattern"] = sorted(stash.keys("t1", pattern="user:*"))
    out["exists_key"] = [stash.exists("t1", "user:2"), stash.exists("t1", "nope")]
    out["exists_table"] = [stash.exists("t1"), stash.exists("never")]
    t = stash.table("t1")
    t["k"] = "v"
    out["table"] = [t["k"], "k" in t, len(t)]
    del t["k"]
    try:
        t["k"]
        out["keyerror"] = False
    except KeyError:
        out["keyerror"] = True
    out["delete"] = [stash.delete("t1", "user:2"), stash.delete("t1", "user:2")]
    stash.ensure("t2")
    out["tables"] = sorted(stash.tables())
    stash.clear("t1")
    out["after_clear"] = stash.keys("t1")
    stash.delete_table("t2")
    out["after_delete_table"] = sorted(stash.tables())
    out["info"] = stash.info("t1")
    return out


async def scenario_reconnect_async():
    c = await get_dirty_client_async()
    first = await c.execute_async(APP, "ping")
    print(json.dumps({"first": first}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    try:
        return {"second": await c.execute_async(APP, "ping")}
    except DirtyError as e:
        # the connection broke under it: one error, then it reconnects
        return {"second_error": err(e), "third": await c.execute_async(APP, "ping")}


def main():
    name, args = sys.argv[1], sys.argv[2:]
    if name in ("async", "reconnect_async"):
        out = asyncio.run(globals()["scenario_" + name]())
    else:
        out = globals()["scenario_" + name](*args)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
