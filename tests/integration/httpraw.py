"""Raw HTTP/1.x over one socket, for keep-alive and pipelining tests.

Connection(port) keeps one TCP connection; send() writes raw bytes;
response() reads exactly one response (Content-Length, chunked, or up to
EOF when neither) and returns (status, headers dict lower-cased, body).
closed() tells whether the server closed the connection (EOF, not reset).
keepalive_clients(), seconds_to_idle_close(), check_expect_100_continue(),
assert_worker_connections_backlog() and assert_term_finishes_inflight()
are checks the keep-alive worker types (gthread, asgi) share.
"""

import json
import os
import signal
import socket
import time

import pytest

from conftest import wait_for


class Connection:
    def __init__(self, port, timeout=10.0, host="127.0.0.1"):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        d = self.sock.recv(65536)
        if not d:
            raise EOFError("connection closed by the server")
        self.buf += d

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _take(self, n):
        if len(self.buf) < n:
            # pieces joined once: appending each read to the buffer
            # copies it every time (minutes for tens of MiB)
            parts, have = [self.buf], len(self.buf)
            while have < n:
                d = self.sock.recv(min(max(n - have, 65536), 1 << 20))
                if not d:
                    raise EOFError("connection closed by the server")
                parts.append(d)
                have += len(d)
            self.buf = b"".join(parts)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def response(self, head_only=False):
        status_line = self._line()
        parts = status_line.split(b" ", 2)
        status = int(parts[1])
        headers, raw = {}, []
        while True:
            line = self._line()
            if not line:
                break
            k, v = line.split(b":", 1)
            raw.append((k.decode("latin-1"), v.strip().decode("latin-1")))
            headers.setdefault(k.strip().lower().decode("latin-1"), v.strip().decode("latin-1"))
        self.raw_headers = raw
        self.version = parts[0].decode()
        if head_only or status in (204, 304) or 100 <= status < 200:
            return status, headers, b""
        if "content-length" in headers:
            return status, headers, self._take(int(headers["content-length"]))
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int(self._line().split(b";")[0], 16)
                if size == 0:
                    while self._line():
                        pass
                    return status, headers, body
                body += self._take(size)
                self._take(2)
        body = self.buf
        self.buf = b""
        while True:
            try:
                d = self.sock.recv(65536)
            except ConnectionResetError:
                break
            if not d:
                break
            body += d
        return status, headers, body

    def closed(self, timeout=5.0):
        """True when the server closed its side (EOF) within timeout, with
        no bytes left unread; False if the connection stays open."""
        if self.buf:
            return False
        self.sock.settimeout(timeout)
        try:
            d = self.sock.recv(1)
        except socket.timeout:
            return False
        return d == b""


def assert_worker_connections_backlog(port):
    """A server on `port` with --worker-connections 2 (one worker) and the
    app answering "hello <path>": two kept-alive connections fill it, a
    third waits in the listen backlog, unanswered, until one of the two
    closes; then it is served."""
    a, b = Connection(port), Connection(port)
    for c in (a, b):
        c.send(get("/held"))
        assert c.response()[0] == 200
    third = Connection(port, timeout=0.7)
    third.send(get("/third"))
    with pytest.raises(socket.timeout):
        third.response()                   # waits in the backlog
    a.close()                              # a slot frees: it is accepted
    third.sock.settimeout(10)
    assert third.response()[2] == b"hello /third"
    b.close()
    third.close()


def assert_term_finishes_inflight(s, idle_request, busy_request, marker, body=None):
    """TERM to the server `s` (a conftest.Server) while one connection is
    idle, kept alive after idle_request, and another has busy_request
    inside the app (which creates the file `marker` there): the idle one
    is closed (an EOF between requests, no reset), the busy one gets its
    whole response (`body`, if given) with Connection: close and then EOF,
    and the master exits 0."""
    from conftest import wait_for
    idle = Connection(s.port)
    idle.send(idle_request)
    idle.response()
    busy = Connection(s.port)
    busy.send(busy_request)
    wait_for(lambda: os.path.exists(marker), 10, what="the request inside the app")
    s.send(signal.SIGTERM)
    assert idle.closed(5.0)
    status, h, got = busy.response()
    assert status == 200 and h["connection"] == "close"
    if body is not None:
        assert got == body
    assert busy.closed(5.0)
    assert s.wait(10) == 0


def get(path="/", host="x", extra=b""):
    return b"GET " + path.encode() + b" HTTP/1.1\r\nHost: " + host.encode() + b"\r\n" + extra + b"\r\n"


def seconds_to_idle_close(port, timeout):
    """One request on a new connection, then how long the server took to
    close it, idle (asserted to happen within `timeout` seconds)."""
    with Connection(port) as c:
        c.send(get("/"))
        c.response()
        t0 = time.monotonic()
        assert c.closed(timeout)
        return time.monotonic() - t0


def check_expect_100_continue(c, data):
    """On Connection c, to an app answering JSON with the body it read as
    "body": a POST of `data` with Expect: 100-continue gets the interim 100
    before the body is sent, then the answer."""
    c.send(b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
           b"Expect: 100-continue\r\n\r\n" % len(data))
    assert c.response()[0] == 100
    c.send(data)
    assert json.loads(c.response()[2])["body"] == data.decode()


def keepalive_clients(port, clients=4, rounds=15, per_conn=3):
    """`clients` threads, each opening `rounds` connections and sending up
    to `per_conn` requests on each (a new connection after a "Connection:
    close"); returns the failures (exceptions, non-200) as strings."""
    import threading
    failures = []

    def client(k):
        for i in range(rounds):
            try:
                with Connection(port) as c:
                    for j in range(per_conn):
                        c.send(get("/%d-%d-%d" % (k, i, j)))
                        status, h, body = c.response()
                        if status != 200:
                            failures.append("status %d" % status)
                        if h.get("connection") == "close":
                            break
            except Exception as e:   # noqa: BLE001 - reported
                failures.append(repr(e))

    ts = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    return failures


def leave_mid_stream(s, marker, what):
    """GET / on s, hang up after the streamed body's first chunk, wait for
    the app to write its marker file (what: what the wait is for); the
    marker's text."""
    c = Connection(s.port)
    c.send(get("/"))
    wait_for(lambda: b"first" in (c.sock.recv(4096) or b"first"), 10, what="first chunk")
    c.close()
    wait_for(lambda: os.path.exists(marker), 10, what="%s; log:\n%s" % (what, s.log()))
    with open(marker) as f:
        return f.read()


# ---- a chunked request body the app left unread (both keep-alive workers
# drop it after the response: src/http_drain.c) ----

def chunked_head(path):
    return (b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")


def chunk(data, ext=b""):
    return b"%x%s\r\n" % (len(data), ext) + data + b"\r\n"


def hung_up(c, timeout=5.0):
    """The server closed c (EOF, or a reset: it closed with bytes of ours
    unread) within timeout, without answering more."""
    c.sock.settimeout(timeout)
    try:
        d = c.buf or c.sock.recv(65536)
    except socket.timeout:
        return False
    except ConnectionResetError:
        return True
    return d == b""


def check_chunked_drain(port, answer):
    """An app (answering answer(path) without reading the body) has
    answered a chunked POST whose body keeps coming after the response,
    in pieces cut anywhere — inside a size line, an extension, the data,
    the trailers — then a request right behind its last byte: it is
    answered on the same connection, kept alive, and so is the next;
    meanwhile another client is answered at once."""
    with Connection(port, timeout=10) as c:
        c.send(chunked_head("/a") + chunk(b"x" * 1000))
        status, h, body = c.response()
        assert (body, h["connection"]) == (answer("/a"), "keep-alive")
        rest = (chunk(b"y" * 70000, b";name=value") + chunk(b"z" * 3, b';q="a;b"')
                + b"0\r\nX-Checksum: abc\r\nX-More: 1\r\n\r\n")
        cuts = [2, 9, 30, 40000, 70020, 70035, len(rest) - 12, len(rest) - 1]
        prev = 0
        for cut in cuts:
            c.send(rest[prev:cut])
            prev = cut
            time.sleep(0.1)
            with Connection(port, timeout=5) as other:
                other.send(get("/other"))
                assert other.response()[2] == answer("/other")
        c.send(rest[prev:] + get("/b"))
        status, h, body = c.response()
        assert (body, h["connection"]) == (answer("/b"), "keep-alive")
        c.send(get("/c"))
        assert c.response()[2] == answer("/c")
        assert not c.closed(0.3)


def check_chunked_drain_malformed(port, answer):
    """Malformed chunk framing after the response (a size that is not
    hex): the connection closes, the request behind is not answered, and
    the worker serves others."""
    with Connection(port, timeout=10) as c:
        c.send(chunked_head("/a") + chunk(b"x" * 100))
        status, h, body = c.response()
        assert (body, h["connection"]) == (answer("/a"), "keep-alive")
        time.sleep(0.2)
        c.send(chunk(b"y" * 10) + b"zz\r\n" + b"y" * 10 + b"\r\n0\r\n\r\n" + get("/b"))
        assert hung_up(c)
    with Connection(port, timeout=5) as other:
        other.send(get("/other"))
        assert other.response()[2] == answer("/other")


def check_chunked_drain_cap(port, answer, cap=1 << 20):
    """Exactly `cap` bytes of chunk data after the response are dropped
    and the connection kept; a byte more closes it."""
    piece = chunk(b"y" * 65536)
    with Connection(port, timeout=10) as c:
        c.send(chunked_head("/edge"))
        status, h, body = c.response()
        assert (body, h["connection"]) == (answer("/edge"), "keep-alive")
        c.send(piece * (cap // 65536) + b"0\r\n\r\n" + get("/after"))
        assert c.response()[2] == answer("/after")
    with Connection(port, timeout=10) as c:
        c.send(chunked_head("/big"))
        status, h, body = c.response()
        assert (body, h["connection"]) == (answer("/big"), "keep-alive")
        try:
            c.send(piece * (cap // 65536) + chunk(b"y") + b"0\r\n\r\n" + get("/after"))
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert hung_up(c)


# the drains given up, each with the debug line that says why
CHUNKED_DRAIN_CLOSES = [
    (check_chunked_drain_malformed, "invalid chunked body after the response: Invalid chunk size"),
    (check_chunked_drain_cap, "more than 1048576 bytes of an unread chunked body"),
]


def check_term_while_draining(s, post_head, rest, answer, how):
    """TERM to `s` while it drops the rest of a Content-Length body the
    app (answering answer(path)) left unread: the connection is not
    dropped.  The client then sends the rest, with a request right behind
    it (how: "whole", or "split": its head's end a moment later), or a
    request a moment after the body ("later": the connection was told
    keep-alive, so it waits idle for it, as any kept connection of a
    stopping worker does, gunicorn's #3038), or none ("none").  The
    request is answered with Connection: close; then (without one: at the
    latest at the keep-alive deadline) the connection closes and the
    worker exits."""
    with Connection(s.port, timeout=10) as c:
        c.send(post_head)
        assert c.response()[1]["connection"] == "keep-alive"
        s.send(signal.SIGTERM)
        assert not c.closed(0.5)
        nxt = get("/b") if how != "none" else b""
        cut = {"split": 10, "later": 0}.get(how, len(nxt))
        c.send(rest + nxt[:cut])
        if how in ("split", "later"):
            time.sleep(0.3)
            c.send(nxt[cut:])
        if nxt:
            status, h, body = c.response()
            assert (body, h["connection"]) == (answer("/b"), "close")
        assert c.closed(5)
    assert s.wait(15) == 0
