"""WSGI app and dirty app for cunicorn's lifecycle tests (containers and the
PID-namespace sandbox run these same files).

Routes:  /            -> "OK"
         /dirty/ping  -> one dirty call TestDirtyApp.ping, JSON result
         /dirty/echo?m=TEXT -> one dirty call TestDirtyApp.echo(TEXT)
         /dirty/pid   -> the pid of the dirty worker that answered
         /dirty/sleep?s=N[&mark=PATH] -> a dirty call that takes N seconds
                          (creating PATH first: a test sees it is running)
A failed dirty call answers 502 with the error's class name and message.
asgi_application serves the same routes as an ASGI app (-k asgi), with
the async dirty client.
"""

import json
import os
import time
from urllib.parse import parse_qs

from gunicorn.dirty import DirtyApp, get_dirty_client

APP = "app:TestDirtyApp"


def _dirty(action, *args):
    return get_dirty_client(timeout=10).execute(APP, action, *args)


def application(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    try:
        if path == "/dirty/ping":
            body = json.dumps(_dirty("ping"))
        elif path == "/dirty/echo":
            q = parse_qs(environ.get("QUERY_STRING", ""))
            body = json.dumps(_dirty("echo", q.get("m", [""])[0]))
        elif path == "/dirty/pid":
            body = json.dumps(_dirty("pid"))
        elif path == "/dirty/sleep":
            q = parse_qs(environ.get("QUERY_STRING", ""))
            body = json.dumps(_dirty("sleep", float(q.get("s", ["1"])[0]),
                                     q.get("mark", [None])[0]))
        else:
            body = "OK"
        status = "200 OK"
    except Exception as e:  # report, don't hide: the tests read this
        body = "%s: %s" % (type(e).__name__, e)
        status = "502 Bad Gateway"
    data = body.encode()
    start_response(status, [("Content-Type", "text/plain"),
                            ("Content-Length", str(len(data)))])
    return [data]


async def asgi_application(scope, receive, send):
    """The same routes for -k asgi (lifecycle backend "<backend>-asgi")."""
    if scope["type"] != "http":
        return
    from gunicorn.dirty import get_dirty_client_async
    path = scope["path"]
    q = parse_qs(scope["query_string"].decode("latin-1"))
    try:
        client = await get_dirty_client_async(timeout=10)
        if path == "/dirty/ping":
            body = json.dumps(await client.execute_async(APP, "ping"))
        elif path == "/dirty/echo":
            body = json.dumps(await client.execute_async(APP, "echo", q.get("m", [""])[0]))
        elif path == "/dirty/pid":
            body = json.dumps(await client.execute_async(APP, "pid"))
        elif path == "/dirty/sleep":
            body = json.dumps(await client.execute_async(
                APP, "sleep", float(q.get("s", ["1"])[0]), q.get("mark", [None])[0]))
        else:
            body = "OK"
        status = 200
    except Exception as e:  # report, don't hide: the tests read this
        body = "%s: %s" % (type(e).__name__, e)
        status = 502
    data = body.encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain"),
                            (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


class TestDirtyApp(DirtyApp):
    """Minimal dirty app: counts pings, echoes, tells its pid."""

    def init(self):
        self.call_count = 0

    def ping(self):
        self.call_count += 1
        return {"pong": True, "calls": self.call_count}

    def echo(self, message):
        return {"message": message}

    def pid(self):
        return {"pid": os.getpid()}

    def sleep(self, seconds, mark=None):
        if mark:
            open(mark, "w").close()
        time.sleep(seconds)
        return {"slept": seconds}
