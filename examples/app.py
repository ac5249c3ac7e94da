"""The bundled example: a WSGI app answering OK, and a dirty app.

    GET /            -> "OK"
    GET /ping        -> calls TestDirtyApp.ping in a dirty worker (call count)
    GET /echo?msg=hi -> calls TestDirtyApp.echo("hi") in a dirty worker

Run it with:  build/cunicorn -c examples/gunicorn_conf.py app:application
(from the examples/ directory, or with --chdir examples).
"""
import json
import os
from urllib.parse import parse_qs

from gunicorn.dirty import DirtyApp, get_dirty_client


class TestDirtyApp(DirtyApp):
    """A stateful app living in a dirty worker."""

    def init(self):
        self.calls = 0

    def ping(self):
        self.calls += 1
        return {"pong": True, "calls": self.calls, "pid": os.getpid()}

    def echo(self, message):
        return message

    def close(self):
        pass


def application(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/ping":
        body = json.dumps(get_dirty_client().execute("app:TestDirtyApp", "ping"))
        ctype = "application/json"
    elif path == "/echo":
        msg = parse_qs(environ.get("QUERY_STRING", "")).get("msg", ["hello"])[0]
        body = get_dirty_client().execute("app:TestDirtyApp", "echo", msg)
        ctype = "text/plain"
    else:
        body, ctype = "OK", "text/plain"
    data = body.encode()
    start_response("200 OK", [("Content-Type", ctype), ("Content-Length", str(len(data)))])
    return [data]
