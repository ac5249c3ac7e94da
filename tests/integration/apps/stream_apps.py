"""Dirty apps and a WSGI app for the streaming, stash and scaling tests
(test_streaming.py, test_stash.py, test_dirty_scaling.py).

  stream_apps:Streamer    generators (sync and async), slow and fast
  stream_apps:Stasher     writes to the stash from inside a dirty worker
  stream_apps:application WSGI: /stream returns client.stream(...) as its
                          body (never reading a request body; ?pad=N adds
                          an N-byte header, ?idle=S sets its idle timeout), /blocks
                          n chunks of size bytes, /stash/... uses the stash from
                          an HTTP worker
"""
import asyncio
import json
import os
import threading
import time
from urllib.parse import parse_qs

from gunicorn.dirty import DirtyApp, get_dirty_client, stash


class Streamer(DirtyApp):
    stashes = ["stream_progress"]

    def pid(self):
        return os.getpid()

    def slow(self, n, delay):
        """n chunks, each after `delay` seconds."""
        for i in range(n):
            time.sleep(delay)
            yield {"i": i, "t": time.time(), "pid": os.getpid()}

    async def aslow(self, n, delay):
        for i in range(n):
            await asyncio.sleep(delay)
            yield {"i": i, "t": time.time()}

    def lines(self, n, delay, first_delay=None):
        """bytes chunks for an HTTP body."""
        for i in range(n):
            time.sleep(first_delay if i == 0 and first_delay is not None else delay)
            yield b"line %d %.6f\n" % (i, time.time())

    def fast(self, n):
        for i in range(n):
            yield i

    def fail_after(self, n):
        for i in range(n):
            yield i
        raise RuntimeError("broke after %d" % n)

    def endless(self, tag, delay):
        """Produce until closed; record progress and the close in the
        stash, so a test can see the worker stop producing."""
        i = 0
        try:
            while True:
                stash.put("stream_progress", tag, i)
                yield i
                i += 1
                time.sleep(delay)
        finally:
            stash.put("stream_progress", tag + ":closed", i)

    def sleep(self, seconds):
        time.sleep(seconds)
        return os.getpid()

    def size(self, data):
        """len(data): a large request with a small reply."""
        return len(data)

    def endless_bytes(self, tag, delay):
        """endless() as bytes: an HTTP body the gthread worker relays."""
        i = 0
        try:
            while True:
                stash.put("stream_progress", tag, i)
                yield b"%d\n" % i
                i += 1
                time.sleep(delay)
        finally:
            stash.put("stream_progress", tag + ":closed", i)

    def fail_bytes(self, n):
        for i in range(n):
            yield b"%d\n" % i
        raise RuntimeError("broke after %d" % n)

    def not_bytes(self):
        yield b"fine\n"
        yield {"not": "bytes"}

    def blocks(self, n, size):
        """n chunks of `size` bytes at once: block(i, size) each."""
        for i in range(n):
            yield block(i, size)


def block(i, size):
    """Chunk i of a /blocks stream: its index in every 8 bytes, so a
    byte out of place or missing shows."""
    return (b"%07d|" % i * (size // 8 + 1))[:size]


class Stasher(DirtyApp):
    stashes = ["declared_a", "declared_b"]

    def fill(self, table, prefix, n):
        """Put n keys prefix0..prefix{n-1}; return the pid."""
        t = stash.table(table)
        for i in range(n):
            t["%s%d" % (prefix, i)] = {"i": i, "pid": os.getpid()}
        return os.getpid()

    def incr(self, table, key, n):
        for _ in range(n):
            stash.put(table, key, stash.get(table, key, 0) + 1)
        return os.getpid()

    def get(self, table, key):
        return stash.get(table, key, "<missing>")

    def pid(self):
        return os.getpid()


def application(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    q = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    client = get_dirty_client(timeout=float(q.get("timeout", 30)))
    # pad=N: a header of N bytes, a head bigger than a socket holds
    pad = [("X-Pad", "p" * int(q["pad"]))] if "pad" in q else []
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")] + pad)
        it = client.stream("stream_apps:Streamer", "lines", int(q.get("n", 3)),
                           float(q.get("delay", 0.1)))
        if "idle" in q:         # the wait allowed for each chunk
            it.idle_timeout = float(q["idle"])
        return it
    if path == "/endless":
        start_response("200 OK", [("Content-Type", "text/plain")])
        it = client.stream("stream_apps:Streamer", "endless", q["tag"],
                           float(q.get("delay", 0.02)))
        return (("%d\n" % i).encode() for i in it)
    if path == "/blocks":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return client.stream("stream_apps:Streamer", "blocks", int(q["n"]), int(q["size"]))
    if path in ("/endless_raw", "/fail_raw", "/not_bytes"):
        start_response("200 OK", [("Content-Type", "text/plain")] + pad)
        if path == "/endless_raw":
            return client.stream("stream_apps:Streamer", "endless_bytes", q["tag"],
                                 float(q.get("delay", 0.02)))
        if path == "/fail_raw":
            return client.stream("stream_apps:Streamer", "fail_bytes", int(q.get("n", 3)))
        return client.stream("stream_apps:Streamer", "not_bytes")
    if path == "/stash/put":
        stash.put(q["table"], q["key"], q["value"])
        body = {"ok": True, "pid": os.getpid()}
    elif path == "/stash/get":
        body = {"value": stash.get(q["table"], q["key"], None)}
    elif path == "/stash/table":
        t = stash.table(q["table"])
        body = {"len": len(t), "keys": sorted(t), "items": sorted(t.items())}
    elif path == "/call":
        body = {"pid": client.execute("stream_apps:Streamer", "sleep", float(q.get("s", 0)))}
    elif path == "/call_where":      # which thread ran it: the main one is the pid's
        client.execute("stream_apps:Streamer", "sleep", 0.0)
        body = {"main_thread": threading.get_native_id() == os.getpid()}
    else:
        body = {"ok": True}
    data = json.dumps(body).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(data)))])
    return [data]
