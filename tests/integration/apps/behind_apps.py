"""Apps for the write-behind tests (tests/integration/test_gthread_behind.py):
big bodies as a list of bytes, a generator (chunked), a file_wrapper
(sendfile) and write() calls, each a byte pattern whose every 8 bytes
say their own offset, so that a lost, doubled or misplaced piece shows."""
import os
import tempfile

_bodies = {}
_files = {}


def pattern(n):
    """n bytes: b"%08x" of each 8-byte word's index, cut to n."""
    b = _bodies.get(n)
    if b is None:
        words = (n + 7) // 8
        b = _bodies[n] = b"".join(b"%08x" % i for i in range(words))[:n]
    return b


def _file(n):
    """A path to n pattern bytes: an unlinked temporary file (nothing is
    left behind when the worker goes, however it goes), opened again by
    each request through /proc, with an offset of its own."""
    f = _files.get(n)
    if f is None:
        f = _files[n] = tempfile.TemporaryFile(prefix="cunicorn-behind-")
        f.write(pattern(n))
        f.flush()
    return "/proc/self/fd/%d" % f.fileno()


def app(environ, start_response):
    """/<kind>/<bytes>: kind is list, gen, file or write; anything else
    is a short hello."""
    parts = environ["PATH_INFO"].strip("/").split("/")
    if len(parts) != 2:
        start_response("200 OK", [("Content-Length", "5")])
        return [b"hello"]
    kind, n = parts[0], int(parts[1])
    body = pattern(n)
    if kind == "list":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        step = (n + 6) // 7 or 1
        return [body[i:i + step] for i in range(0, n, step)]
    if kind == "gen":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])

        def gen():
            for i in range(0, n, 65536):
                yield body[i:i + 65536]
        return gen()
    if kind == "file":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](open(_file(n), "rb"))
    if kind == "write":
        write = start_response("200 OK", [("Content-Length", str(n))])
        for i in range(0, n, 1 << 20):
            write(body[i:i + (1 << 20)])
        return []
    start_response("404 Not Found", [("Content-Length", "0")])
    return []
