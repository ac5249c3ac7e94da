"""Dirty apps and a WSGI front for test_dirty_api.py (the Python API as
apps use it: `from gunicorn.dirty import ...`).

  dirtyapi_apps:Basic     examples/app.py's TestDirtyApp (ping counts
                          calls, echo) plus failing, streaming, async and
                          slow actions
  dirtyapi_apps:Custom    overrides __call__ (no DirtyApp dispatch)
  dirtyapi_apps:Broken    init() raises: the worker must stay up
  dirtyapi_apps:Limited   class attribute workers = 1
  dirtyapi_apps:Stashy    stashes = ["apitbl"]; uses the stash itself
  application             WSGI: POST /call {"app", "action", "args",
                          "kwargs", "timeout"} (JSON body) runs
                          get_dirty_client().execute and answers JSON
                          {"ok": result} or {"error": {...}}; /stream does
                          the same with client.stream; /socket gives
                          $GUNICORN_DIRTY_SOCKET.

Side files: $DIRTYAPI_SIDE (a path) gets one line per close(), and one
when a sleep call starts and ends ("sleep start|end PID TIME").
"""
import asyncio
import json
import os
import time
from urllib.parse import parse_qs

from gunicorn.dirty import DirtyApp, get_dirty_client
from gunicorn.dirty.errors import DirtyError

from examples.app import TestDirtyApp   # PYTHONPATH has the repository root (conftest)


def _side(line):
    path = os.environ.get("DIRTYAPI_SIDE")
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


class Basic(TestDirtyApp):
    """The bundled example's app (init, ping, echo) and more actions."""

    def kw(self, a, b=2, *, c=3):
        return [a, b, c]

    def fail(self, text):
        raise ValueError("boom: %s" % text)

    def _private(self):
        return "must not be reachable"

    not_callable = 42

    def bad_result(self):
        return {1: object()}

    def count(self, n):
        for i in range(n):
            yield {"i": i}

    def count_then_fail(self, n):
        for i in range(n):
            yield i
        raise RuntimeError("stream broke after %d" % n)

    async def coro(self, x):
        await asyncio.sleep(0.01)
        return x * 2

    async def acount(self, n):
        for i in range(n):
            await asyncio.sleep(0)
            yield "a%d" % i

    def spawn_sleeper(self):
        import subprocess
        self.child = subprocess.Popen(["sleep", "30"])
        return self.child.pid

    def reap(self):
        return self.child.wait(5)

    def sleep(self, seconds):
        # side lines: a test sees the call inside the app, and when
        _side("sleep start %d %.6f" % (os.getpid(), time.time()))
        time.sleep(seconds)
        _side("sleep end %d %.6f" % (os.getpid(), time.time()))
        return os.getpid()

    def close(self):
        _side("close Basic %d calls=%d" % (os.getpid(), self.calls))


class Custom(DirtyApp):
    def __call__(self, action, *args, **kwargs):
        return {"action": action, "args": list(args), "kwargs": kwargs}


class Limited(DirtyApp):
    """Class attribute: loaded by one worker only."""
    workers = 1

    def pid(self):
        return os.getpid()


class Stashy(DirtyApp):
    """Declares a stash table and uses the stash from inside a worker."""
    stashes = ["apitbl"]

    def put(self, key, value):
        from gunicorn.dirty import stash
        stash.put("apitbl", key, value)
        return stash.get("apitbl", key)

    def tables(self):
        from gunicorn.dirty import stash
        return stash.tables()


class Broken(DirtyApp):
    def init(self):
        raise RuntimeError("cannot load the model")

    def ping(self):
        return "unreachable"


def _error_dict(e):
    return {"class": type(e).__name__, "message": e.message,
            "traceback": getattr(e, "traceback", None),
            "app_path": getattr(e, "app_path", None),
            "action": getattr(e, "action", None),
            "details": e.details, "is_dirty_error": isinstance(e, DirtyError)}


def application(environ, start_response):
    q = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if length:
        q.update(json.loads(environ["wsgi.input"].read(length)))
    path = environ.get("PATH_INFO", "/")
    client = get_dirty_client(timeout=float(q.get("timeout", 30)))
    args = q.get("args", [])
    kwargs = q.get("kwargs", {})
    try:
        if path == "/call":
            out = {"ok": client.execute(q["app"], q["action"], *args, **kwargs)}
        elif path == "/stream":
            got = []
            try:
                for chunk in client.stream(q["app"], q["action"], *args, **kwargs):
                    got.append(chunk)
                out = {"ok": got}
            except DirtyError as e:
                out = {"chunks": got, "error": _error_dict(e)}
        elif path == "/socket":
            out = {"ok": os.environ.get("GUNICORN_DIRTY_SOCKET")}
        else:
            out = {"ok": "OK"}
    except DirtyError as e:
        out = {"error": _error_dict(e)}
    data = json.dumps(out).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(data)))])
    return [data]
