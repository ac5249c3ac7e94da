"""Apps for the keep-alive / gthread tests (tests/integration/test_gthread.py)."""
import json
import os
import threading
import time

_lock = threading.Lock()
_count = 0
_active = 0
_max_active = 0


def hello(environ, start_response):
    body = b"hello " + environ["PATH_INFO"].encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]


def echo(environ, start_response):
    """The request body back, with the method and path; CONTENT_LENGTH
    bodies and chunked ones alike."""
    data = environ["wsgi.input"].read()
    body = json.dumps({"method": environ["REQUEST_METHOD"], "path": environ["PATH_INFO"],
                       "body": data.decode("latin-1"),
                       "multithread": environ["wsgi.multithread"],
                       "thread": threading.get_ident(), "pid": os.getpid()}).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]


def unread(environ, start_response):
    """Answers without reading the request body."""
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]


def nolength(environ, start_response):
    """A body without Content-Length, as a generator: chunked on HTTP/1.1,
    delimited by the close on HTTP/1.0."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"one,"
    yield b"two"


def counter(environ, start_response):
    """Counts requests under a lock; reports how many ran at once."""
    global _count, _active, _max_active
    with _lock:
        _active += 1
        _max_active = max(_max_active, _active)
    delay = float(environ.get("QUERY_STRING") or 0)
    marker = environ.get("HTTP_X_MARKER")
    if marker:
        open(marker, "w").close()
    time.sleep(delay)
    with _lock:
        _count += 1
        _active -= 1
        body = json.dumps({"count": _count, "max_active": _max_active,
                           "pid": os.getpid()}).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]


def own_headers(environ, start_response):
    """An app that sets its own Server and Date headers."""
    start_response("200 OK", [("Server", "myapp/1.0"),
                              ("Date", "Thu, 01 Jan 2026 00:00:00 GMT"),
                              ("Content-Length", "2")])
    return [b"ok"]


def wants_close(environ, start_response):
    start_response("200 OK", [("Connection", "close"), ("Content-Length", "2")])
    return [b"ok"]


def reader(environ, start_response):
    """Reads the whole body; reports how much came."""
    marker = environ.get("HTTP_X_MARKER")
    if marker:
        open(marker, "w").close()
    try:
        data = environ["wsgi.input"].read()
        body = b"got %d" % len(data)
    except OSError as e:
        body = b"error %s" % str(e).encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


def spawner(environ, start_response):
    """Starts `sleep 30` from the app's thread; answers its pid."""
    import subprocess
    p = subprocess.Popen(["sleep", "30"])
    body = str(p.pid).encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]
