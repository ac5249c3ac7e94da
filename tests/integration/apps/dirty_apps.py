"""Dirty apps for the dirty arbiter's integration tests, plus a WSGI app
that calls them from HTTP workers.

  dirty_apps:Echo          every worker (unless limited on the command line)
  dirty_apps:Limited       configured as dirty_apps:Limited:2 in tests
  dirty_apps:ClassLimited  class attribute workers = 1
"""
import json
import os
import sys
import time
from urllib.parse import parse_qs

from gunicorn.dirty import DirtyApp, get_dirty_client


class Echo(DirtyApp):
    def init(self):
        self.calls = 0

    def pid(self):
        return os.getpid()

    def echo(self, value):
        self.calls += 1
        return value

    def length(self, value):
        return len(value)

    def tag(self, n):
        return {"n": n, "pid": os.getpid()}

    def sleep(self, seconds):
        time.sleep(seconds)
        return {"slept": seconds, "pid": os.getpid()}

    def fail(self, message):
        raise ValueError(message)

    def sabotage(self):
        """Write a malformed frame on this worker's channel to its arbiter
        (the only unnamed AF_UNIX stream socket the process holds)."""
        from arbiter_channel import arbiter_channel_fd
        fd = arbiter_channel_fd()
        if fd is not None:
            os.write(fd, b"XX\x01\x02" + bytes(12))
            return "sent"
        return "no channel found"

    def count(self, n):
        for i in range(n):
            yield i


class Stashing(DirtyApp):
    """Uses the stash from inside a dirty worker; declares a table."""
    stashes = ["declared"]

    def put(self, table, key, value):
        from gunicorn.dirty import stash
        stash.put(table, key, value)
        return os.getpid()

    def get(self, table, key):
        from gunicorn.dirty import stash
        return stash.get(table, key, default="<missing>")


class Limited(DirtyApp):
    def pid(self):
        return os.getpid()


class ClassLimited(DirtyApp):
    workers = 1

    def pid(self):
        return os.getpid()


def application(environ, start_response):
    """GET /call?app=dirty_apps:Echo&action=tag&arg=5 -> JSON result, or
    {"error": "<ExceptionClassName>", "message": ...}."""
    if environ.get("PATH_INFO") == "/modules":   # what this HTTP worker loaded
        data = json.dumps({"asyncio": "asyncio" in sys.modules,
                           "pid": os.getpid()}).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [data]
    q = parse_qs(environ.get("QUERY_STRING", ""))
    app = q.get("app", ["dirty_apps:Echo"])[0]
    action = q.get("action", ["pid"])[0]
    args = [json.loads(a) for a in q.get("arg", [])]
    try:
        out = {"result": get_dirty_client().execute(app, action, *args)}
    except Exception as e:  # the error class is what the tests check
        out = {"error": type(e).__name__, "message": str(e)}
    data = json.dumps(out).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(data)))])
    return [data]
