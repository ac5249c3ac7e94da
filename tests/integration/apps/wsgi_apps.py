"""WSGI apps for tests/integration/test_wsgi.py and test_http_errors.py.

Each app is selected as wsgi_apps:<name>.  They report what the server
gave them (environ, body reads) as JSON so the tests can assert on it.
"""
import json
import os
import sys
import time
from urllib.parse import parse_qs


def _json(start_response, obj, status="200 OK"):
    body = json.dumps(obj).encode()
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(body)))])
    return [body]


def _qs(environ):
    return {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}


def environ(environ, start_response):
    out = {}
    for k, v in environ.items():
        if isinstance(v, (str, int, bool)) or v is None:
            out[k] = v
        elif isinstance(v, tuple):
            out[k] = list(v)
        else:
            out[k] = "<%s>" % type(v).__name__
    out["_errors_has_write"] = hasattr(environ["wsgi.errors"], "write")
    out["_input_has_read"] = hasattr(environ["wsgi.input"], "read")
    out["_pid"] = os.getpid()
    return _json(start_response, out)


def body(environ, start_response):
    """Read the body the way ?mode= says; report the pieces."""
    q = _qs(environ)
    mode = q.get("mode", "read")
    inp = environ["wsgi.input"]
    pieces = []
    if mode == "read":
        pieces.append(inp.read())
    elif mode == "readn":               # each read until the empty one
        n = int(q.get("n", "3"))
        pieces = list(iter(lambda: inp.read(n), b""))
    elif mode == "readline":
        pieces = list(iter(inp.readline, b""))
    elif mode == "readline_limit":
        n = int(q.get("n", "4"))
        pieces = list(iter(lambda: inp.readline(n), b""))
    elif mode == "readlines":
        pieces = inp.readlines()
    elif mode == "iter":
        pieces = [line for line in inp]
    elif mode == "none":
        pass
    extra = inp.read()  # never past the body: must be empty
    return _json(start_response, {
        "pieces": [p.decode("latin-1") for p in pieces],
        "total": sum(len(p) for p in pieces),
        "extra": extra.decode("latin-1"),
        "content_length": environ.get("CONTENT_LENGTH"),
    })


def sha(environ, start_response):
    """Big bodies: return length and sha256 of the whole body."""
    import hashlib
    data = environ["wsgi.input"].read()
    return _json(start_response, {"len": len(data), "sha256": hashlib.sha256(data).hexdigest()})


def writer(environ, start_response):
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"one,")
    write(b"two,")
    return [b"three"]


class _Closing:
    def __init__(self, path, chunks, fail_at=None):
        self.path = path
        self.chunks = chunks
        self.fail_at = fail_at

    def __iter__(self):
        for i, c in enumerate(self.chunks):
            if i == self.fail_at:
                raise RuntimeError("iteration failed on purpose")
            yield c

    def close(self):
        with open(self.path, "a") as f:
            f.write("closed\n")


def closing(environ, start_response):
    q = _qs(environ)
    start_response("200 OK", [("Content-Type", "text/plain")])
    fail_at = int(q["fail_at"]) if "fail_at" in q else None
    return _Closing(q["marker"], [b"a", b"b", b"c"], fail_at)


def closing_raise_before(environ, start_response):
    """Iterable whose first item raises before anything was sent."""
    q = _qs(environ)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return _Closing(q["marker"], [b"a"], fail_at=0)


def sendfile(environ, start_response):
    q = _qs(environ)
    f = open(q["path"], "rb")
    headers = [("Content-Type", "application/octet-stream")]
    if "cl" in q:
        headers.append(("Content-Length", q["cl"]))
    start_response("200 OK", headers)
    return environ["wsgi.file_wrapper"](f, 8192)


def filelike(environ, start_response):
    """file_wrapper around an object without fileno(): iterated."""
    import io
    start_response("200 OK", [("Content-Type", "text/plain")])
    return environ["wsgi.file_wrapper"](io.BytesIO(b"x" * 20000 + b"END"), 4096)


def chunks(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])

    def gen():
        yield b"alpha-"
        yield b""
        yield b"beta-"
        yield b"gamma"
    return gen()


def head(environ, start_response):
    body = b"the body that HEAD must not get"
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("X-Method", environ["REQUEST_METHOD"])])
    return [body]


def exc_info_before(environ, start_response):
    """Error page chosen by the app: start_response twice, 2nd with exc_info."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    try:
        raise ValueError("boom")
    except ValueError:
        start_response("503 Service Unavailable", [("Content-Type", "text/plain")],
                       sys.exc_info())
    return [b"app error page"]


def exc_info_after(environ, start_response):
    """After headers went out, start_response(exc_info) must re-raise."""
    start_response("200 OK", [("Content-Type", "text/plain")])

    def gen():
        yield b"partial"
        try:
            raise KeyError("late failure")
        except KeyError:
            start_response("500 Oops", [("Content-Type", "text/plain")], sys.exc_info())
        yield b"never"
    return gen()


def twice(environ, start_response):
    start_response("200 OK", [])
    start_response("200 OK", [])
    return [b"never"]


def raises(environ, start_response):
    raise ValueError("secret-token-%s" % "xyzzy")


def bad_header(environ, start_response):
    start_response("200 OK", [("X-Bad", "a\r\nInjected: yes")])
    return [b"never"]


def hop_by_hop(environ, start_response):
    start_response("200 OK", [("Connection", "keep-alive"), ("Transfer-Encoding", "gzip"),
                              ("Keep-Alive", "timeout=5"), ("X-Kept", "yes")])
    return [b"ok"]


def too_long(environ, start_response):
    """Content-Length smaller than what the app yields: truncated."""
    start_response("200 OK", [("Content-Length", "5")])
    return [b"12345678", b"90"]


def logging_app(environ, start_response):
    environ["wsgi.errors"].write("from wsgi.errors\n")
    body = b"logged body"
    start_response("201 Created", [("Content-Type", "text/plain"), ("X-Resp", "resp-val"),
                                   ("Content-Length", str(len(body)))])
    return [body]


def slow(environ, start_response):
    q = _qs(environ)
    if q.get("mark"):       # created once inside the app: the test may signal
        open(q["mark"], "w").close()
    time.sleep(float(q.get("t", "2")))
    return _json(start_response, {"pid": os.getpid(), "slept": q.get("t", "2")})


def pid(environ, start_response):
    return _json(start_response, {"pid": os.getpid()})


def unread(environ, start_response):
    """Answers without reading the request body."""
    start_response("413 Content Too Large", [("Content-Type", "text/plain"),
                                             ("Content-Length", "8")])
    return [b"too big!"]


_ticks = 0
_tick_file = None


def _ticker():
    global _ticks
    while True:
        _ticks += 1
        if _tick_file and _ticks % 10 == 0:     # for a test to watch, without a request
            with open(_tick_file + ".tmp", "w") as f:
                f.write(str(_ticks))
            os.replace(_tick_file + ".tmp", _tick_file)
        time.sleep(0.01)


def ticks(environ, start_response):
    """A background thread of the app must run while the worker is idle.
    ?file=PATH: the thread also writes its count there every 10 ticks."""
    global _tick_file
    _tick_file = _qs(environ).get("file") or _tick_file
    if not getattr(ticks, "started", False):
        import threading
        threading.Thread(target=_ticker, daemon=True).start()
        ticks.started = True
    return _json(start_response, {"ticks": _ticks, "pid": os.getpid()})


def sendfile_after_read(environ, start_response):
    """The app reads a little through Python's buffer, then wraps the rest."""
    q = _qs(environ)
    f = open(q["path"], "rb")
    f.read(10)
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return environ["wsgi.file_wrapper"](f)


_kept = {}


def _attempt(fn, *args):
    """What calling fn did: its result (bytes as text) or the exception type."""
    try:
        r = fn(*args)
    except Exception as e:  # noqa: BLE001 - the test asserts on the type
        return type(e).__name__
    return r.decode("latin-1") if isinstance(r, bytes) else repr(r)


def kept(environ, start_response):
    """POST /?step=keep: keep this request's start_response, write,
    wsgi.input (its body left unread) and wsgi.early_hints.  POST
    /?step=use: call the kept ones, and this request's own from another
    thread, and report what each did; then read this request's body.  A
    kept object that still worked would steal this body or write into
    this response."""
    step = _qs(environ).get("step")
    inp, hints = environ["wsgi.input"], environ["wsgi.early_hints"]
    if step == "keep":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        _kept.update(sr=start_response, write=write, input=inp, hints=hints)
        return [b"kept"]
    out = {
        "kept_input_read": _attempt(_kept["input"].read),
        "kept_input_readline": _attempt(_kept["input"].readline),
        "kept_start_response": _attempt(_kept["sr"], "500 Stolen", []),
        "kept_write": _attempt(_kept["write"], b"stolen"),
        "kept_early_hints": _attempt(_kept["hints"], [("Link", "</x>")]),
    }

    def other_thread():
        out["thread_input_read"] = _attempt(inp.read, 3)
        out["thread_start_response"] = _attempt(start_response, "500 Other", [])
        out["thread_early_hints"] = _attempt(hints, [("Link", "</y>")])
    import threading
    t = threading.Thread(target=other_thread)
    t.start()
    t.join()
    out["own_body"] = inp.read().decode()
    return _json(start_response, out)
