"""Apps for test_wsgi_dropin.py: each reports what the server gave it."""
import json
import os
import socket
import time


def _json(start_response, obj, status="200 OK", extra=()):
    body = json.dumps(obj).encode()
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(body)))] + list(extra))
    return [body]


def environ(environ, start_response):
    """The environ's str values, and the type of the others."""
    out = {}
    for k, v in environ.items():
        out[k] = v if isinstance(v, str) else "<%s>" % type(v).__name__
    return _json(start_response, out)


def sock(environ, start_response):
    if environ["PATH_INFO"] == "/kept":
        return kept(environ, start_response)
    """gunicorn.socket: its peer must be the client; ?keep=1 keeps it."""
    s = environ["gunicorn.socket"]
    out = {"type": type(s).__name__, "isinstance": isinstance(s, socket.socket),
           "peer": list(s.getpeername()[:2]), "fd": s.fileno(), "pid": os.getpid()}
    if "keep=1" in environ.get("QUERY_STRING", ""):
        _kept.append(s)
    if "close=1" in environ.get("QUERY_STRING", ""):
        s.close()       # must not close the worker's connection
        out["closed_fd"] = s.fileno()
    return _json(start_response, out)


_kept = []


def kept(environ, start_response):
    """What became of the sockets an earlier request kept."""
    return _json(start_response, {"fds": [s.fileno() for s in _kept]})


def hints(environ, start_response):
    eh = environ["wsgi.early_hints"]
    eh([("Link", "</style.css>; rel=preload; as=style")])
    eh([("Link", "</app.js>; rel=preload; as=script"), ("X-Hint", "two")])
    return _json(start_response, {"ok": True})


def upgrade(environ, start_response):
    start_response("101 Switching Protocols",
                   [("Upgrade", "websocket"), ("Connection", "Upgrade")])
    return [b""]


def upgrade_200(environ, start_response):
    start_response("200 OK", [("Upgrade", "h2c"), ("Connection", "Upgrade"),
                              ("Content-Length", "2")])
    return [b"ok"]


def slow(environ, start_response):
    """Says it runs (?mark=PATH gets its pid), then sleeps: the test stops
    the worker meanwhile."""
    mark = environ["QUERY_STRING"].partition("mark=")[2]
    with open(mark + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.rename(mark + ".tmp", mark)
    time.sleep(30)
    return _json(start_response, {"slept": True})
