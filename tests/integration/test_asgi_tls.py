"""TLS (certfile/keyfile, ca_certs, cert_reqs, ssl_version) on the asgi
worker, through the real binary: the loop's SSL transports (asyncio's
and uvloop's) with the C protocol over them (python/cunicorn/_asgi.py,
src/asgi_file.c).

- the scope's scheme is https (wss for a websocket); a trusted
  X-Forwarded-Proto still sets it;
- keep-alive, pipelining, a 5 MiB request body read in pieces, a
  streamed (chunked) response;
- http.response.pathsend goes through the transport (never cleartext on
  the socket): a 10 MiB file byte-exact to a slow reader, without the
  worker holding the file in memory (VmRSS), and a client that takes
  nothing is closed after the I/O timeout;
- a websocket over TLS with Debian's websockets client;
- a plain-HTTP client, a client that refuses the certificate, one
  that closes mid-request and one silent past the handshake timeout
  leave no error or warning in the log, and the next TLS client is
  served; an idle keep-alive client does not hold a stopping worker;
- cert_reqs = 2: refused without a client certificate, served with one
  (1: both served);
  ssl_version TLSv1_2 pins TLS 1.2 (1.3 otherwise);
- a FastAPI app over TLS.

Certificates: tlscerts.py (the openssl CLI), made once per session.
"""

import asyncio
import hashlib
import json
import os
import socket
import ssl
import time

import httpx
import pytest
import websockets

from conftest import read_until_close, wait_for
from httpraw import Connection, get
from streamkit import APPS, unique_name
from tlscerts import client_context, make_certs

APP = "tests.integration.apps.asgi_tls_apps:app"
LOOPS = ["asyncio", "uvloop"]


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    return make_certs(str(tmp_path_factory.mktemp("tls")))


def tls_args(certs, *extra):
    return ("--certfile", certs["cert"], "--keyfile", certs["key"]) + extra


def start(make_server, certs, loop="asyncio", *extra, app=APP):
    return make_server("-k", "asgi", "-w", "1", "--asgi-loop", loop,
                       *tls_args(certs, *extra), app)


class TLSConnection(Connection):
    """httpraw's Connection over TLS (trusting the test CA)."""

    def __init__(self, port, certs, client_cert=False, timeout=10.0, rcvbuf=None):
        raw = socket.socket()
        if rcvbuf:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        raw.settimeout(timeout)
        raw.connect(("127.0.0.1", port))
        self.sock = client_context(certs, client_cert).wrap_socket(
            raw, server_hostname="localhost")
        self.buf = b""


def worker_pid(s):
    return wait_for(lambda: (lambda p: p[0] if len(p) == 1 else None)(s.pids_titled("worker")),
                    10, what="one worker")


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def assert_quiet(s):
    """Nothing above info in the log, no traceback, no TLS noise."""
    log = s.log()
    for bad in ("Traceback", "[ERROR]", "[WARNING]", "[CRITICAL]", "SSL", "eof_received"):
        assert bad not in log, log[-3000:]


@pytest.mark.parametrize("loop", LOOPS)
def test_scheme_https_and_keepalive(make_server, certs, loop):
    s = start(make_server, certs, loop)
    with TLSConnection(s.port, certs) as c:
        seen = set()
        for i in range(3):
            c.send(get("/scope%d" % i))
            status, headers, body = c.response()
            assert status == 200
            d = json.loads(body)
            assert d["scheme"] == "https" and d["path"] == "/scope%d" % i
            assert d["client"][0] == "127.0.0.1"
            seen.add(tuple(d["client"]))
        assert len(seen) == 1           # one connection, kept alive
        assert c.sock.version() == "TLSv1.3"
        # pipelined: three heads in one write, three answers in order
        c.send(b"".join(get("/p%d" % i) for i in range(3)))
        assert [json.loads(c.response()[2])["path"] for _ in range(3)] == ["/p0", "/p1", "/p2"]
        # a trusted proxy's header still says the scheme, as gunicorn
        c.send(get("/fwd", extra=b"X-Forwarded-Proto: http\r\n"))
        assert json.loads(c.response()[2])["scheme"] == "http"
    assert_quiet(s)


@pytest.mark.parametrize("loop", LOOPS)
def test_request_body_and_streamed_response(make_server, certs, loop):
    s = start(make_server, certs, loop)
    body = os.urandom(5 << 20)
    with TLSConnection(s.port, certs) as c:
        c.send(b"POST /hash HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body))
        c.send(body)
        status, _, answer = c.response()
        d = json.loads(answer)
        assert status == 200
        assert d["sha256"] == hashlib.sha256(body).hexdigest() and d["len"] == len(body)
        assert d["messages"] > 1        # read in pieces (more_body)
        c.send(get("/stream?n=64"))
        status, headers, streamed = c.response()
        assert headers["transfer-encoding"] == "chunked"
        assert streamed == b"".join(bytes([i]) * 65536 for i in range(64))
    assert_quiet(s)


@pytest.fixture
def bigfile(tmp_path):
    p = tmp_path / "big.bin"
    data = os.urandom(10 << 20)
    p.write_bytes(data)
    return str(p), hashlib.sha256(data).hexdigest()


def slow_read(c, n, peak=None, pid=None):
    """Read n bytes in 16 KiB pieces with pauses (a slow client), noting
    the worker's highest VmRSS meanwhile in peak[0]."""
    h, got = hashlib.sha256(), 0
    if c.buf:
        h.update(c.buf)
        got, c.buf = len(c.buf), b""
    while got < n:
        d = c.sock.recv(min(16384, n - got))
        assert d, "closed after %d of %d bytes" % (got, n)
        h.update(d)
        got += len(d)
        if peak is not None and got % (256 << 10) < 16384:
            peak[0] = max(peak[0], rss_kib(pid))
            time.sleep(0.02)
    return h.hexdigest()


@pytest.mark.parametrize("loop", LOOPS)
def test_pathsend_over_tls_to_a_slow_reader(make_server, certs, loop, bigfile):
    path, digest = bigfile
    s = start(make_server, certs, loop)
    with TLSConnection(s.port, certs, rcvbuf=65536) as c:
        for _ in range(2):              # and the connection goes on after it
            c.send(get("/file?path=" + path))
            status, headers = c.response(head_only=True)[:2]
            assert status == 200 and int(headers["content-length"]) == 10 << 20
            assert slow_read(c, 10 << 20) == digest
        c.send(get("/after"))
        assert json.loads(c.response()[2])["path"] == "/after"
    assert_quiet(s)


@pytest.mark.nosan(reason="measures RSS; ASan's quarantine keeps freed pieces")
@pytest.mark.parametrize("loop", LOOPS)
def test_pathsend_over_tls_does_not_hold_the_file(make_server, certs, loop, bigfile):
    path, digest = bigfile
    s = start(make_server, certs, loop)
    pid = worker_pid(s)
    with TLSConnection(s.port, certs) as c:     # warm: the loop's own memory
        c.send(get("/warm"))
        c.response()
    before = rss_kib(pid)
    peak = [before]
    with TLSConnection(s.port, certs, rcvbuf=65536) as c:
        c.send(get("/file?path=" + path))
        c.response(head_only=True)
        assert slow_read(c, 10 << 20, peak, pid) == digest
    # a worker that read the file into memory grows by 10 MiB
    assert peak[0] - before < 4096, (before, peak[0])


def test_pathsend_over_tls_stalled_client_is_closed(make_server, certs, bigfile):
    path, _ = bigfile
    s = start(make_server, certs, "asyncio", "--timeout", "2", "--log-level", "debug")
    with TLSConnection(s.port, certs, rcvbuf=65536) as c:
        c.send(get("/file?path=" + path))
        c.response(head_only=True)
        t0 = time.monotonic()
        # take nothing: the I/O timeout (3/4 of 2 s) closes it; meanwhile
        # another client is served
        with TLSConnection(s.port, certs) as other:
            other.send(get("/other"))
            assert json.loads(other.response()[2])["path"] == "/other"
        s.wait_log("pathsend: the client took nothing of " + path)
        assert time.monotonic() - t0 < 9
        got = len(c.buf)
        try:
            while True:
                d = c.sock.recv(1 << 20)
                if not d:
                    break
                got += len(d)
        except (ssl.SSLError, ConnectionResetError):
            pass
        assert got < 10 << 20


def ws_exchange(port, ctx):
    async def run():
        async with websockets.connect("wss://127.0.0.1:%d/ws" % port, ssl=ctx,
                                      server_hostname="localhost") as w:
            first = await w.recv()
            await w.send("hello")
            text = await w.recv()
            blob = os.urandom(300000)
            await w.send(blob)
            back = await w.recv()
            return first, text, back == blob
    return asyncio.run(run())


@pytest.mark.parametrize("loop", LOOPS)
def test_websocket_over_tls(make_server, certs, loop):
    s = start(make_server, certs, loop)
    assert ws_exchange(s.port, client_context(certs)) == ("wss", "hello", True)
    assert_quiet(s)


@pytest.mark.parametrize("loop", LOOPS)
def test_plain_http_and_bad_handshakes_are_quiet(make_server, certs, loop, tmp_path):
    s = start(make_server, certs, loop)
    # plain HTTP to the TLS port: closed, nothing logged
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as raw:
        raw.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"HTTP/1.1 200" not in read_until_close(raw)
    # a client that does not trust the certificate
    with pytest.raises(ssl.SSLCertVerificationError):
        ssl.create_default_context().wrap_socket(
            socket.create_connection(("127.0.0.1", s.port), timeout=10),
            server_hostname="localhost")
    # garbage, then a connection closed before any byte
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as raw:
        raw.sendall(b"\x16\x03\x01\x00\x05hello")
        read_until_close(raw)
    socket.create_connection(("127.0.0.1", s.port), timeout=10).close()
    # a TLS client that leaves while its request's body is awaited (an
    # EOF: TLS has no half-close) and one that sends close_notify
    mark = str(tmp_path / "waiting")
    with TLSConnection(s.port, certs) as c:
        c.send(b"POST /wait?mark=%s HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc"
               % mark.encode())
        wait_for(lambda: os.path.exists(mark), 10, what="the request in the app")
        c.sock.shutdown(socket.SHUT_WR)     # the TCP stream's: raw bytes from here
        read_until_close(c.sock)            # closed (a timeout would raise)
    with TLSConnection(s.port, certs) as c:
        c.send(get("/x"))
        c.response()
        c.sock.unwrap().close()
    # and the next TLS client is served
    with TLSConnection(s.port, certs) as c:
        c.send(get("/after"))
        assert json.loads(c.response()[2])["scheme"] == "https"
    assert_quiet(s)
    assert s.pids_titled("worker")     # the same worker, still up


@pytest.mark.parametrize("loop", LOOPS)
def test_a_silent_client_is_closed_at_the_handshake_timeout(make_server, certs, loop):
    # the handshake has the head's deadline: half of timeout (1 s here)
    s = start(make_server, certs, loop, "--timeout", "2")
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as raw:
        t0 = time.monotonic()
        assert read_until_close(raw) == b""
        assert time.monotonic() - t0 < 5
    with TLSConnection(s.port, certs) as c:
        c.send(get("/after"))
        assert c.response()[0] == 200
    assert_quiet(s)


@pytest.mark.parametrize("loop", LOOPS)
def test_client_certificate_required(make_server, certs, loop):
    s = start(make_server, certs, loop, "--cert-reqs", "2", "--ca-certs", certs["ca"])
    # without one: refused during the handshake (TLS 1.3: the client
    # learns it at its first read)
    with pytest.raises((ssl.SSLError, ConnectionResetError, EOFError)):
        with TLSConnection(s.port, certs) as c:
            c.send(get("/nocert"))
            c.response()
    with TLSConnection(s.port, certs, client_cert=True) as c:
        c.send(get("/cert"))
        status, _, body = c.response()
        assert status == 200 and json.loads(body)["scheme"] == "https"
    assert_quiet(s)


def test_client_certificate_optional(make_server, certs):
    s = start(make_server, certs, "asyncio", "--cert-reqs", "1", "--ca-certs", certs["ca"])
    for with_cert in (False, True):
        with TLSConnection(s.port, certs, client_cert=with_cert) as c:
            c.send(get("/opt"))
            assert c.response()[0] == 200
    assert_quiet(s)


def test_ssl_version_tlsv1_2_pins_tls_1_2(make_server, certs):
    # uvicorn's worker class name runs the asgi worker, TLS included
    s = make_server("-k", "uvicorn.workers.UvicornWorker", "-w", "1",
                    *tls_args(certs, "--ssl-version", "TLSv1_2"), APP)
    with TLSConnection(s.port, certs) as c:
        c.send(get("/v"))
        assert c.response()[0] == 200
        assert c.sock.version() == "TLSv1.2"


def test_fastapi_over_tls(make_server, certs):
    s = make_server("-k", "asgi", "--chdir", APPS, "-n", unique_name("asgi"),
                    *tls_args(certs), "asgi_frameworks:fastapi_app")
    base = "https://localhost:%d" % s.port
    with httpx.Client(verify=client_context(certs)) as c:
        assert c.get(base + "/hello").json() == {"hello": "world"}
        r = c.post(base + "/items", json={"name": "pen", "price": 1.5, "tags": ["a"]})
        assert r.json() == {"name": "pen", "total": 3.0, "tags": ["a"]}
        assert c.get(base + "/stream?n=3").text == "tok0 tok1 tok2 "
    assert_quiet(s)


@pytest.mark.parametrize("loop", LOOPS)
def test_idle_keepalive_client_does_not_hold_a_stopping_worker(make_server, certs, loop):
    # the loop's TLS transports close once the client answers our
    # close_notify; an idle pooled client reads nothing, so without care
    # it held the stop for graceful_timeout
    s = start(make_server, certs, loop, "--graceful-timeout", "20", "--keep-alive", "1")
    with TLSConnection(s.port, certs) as c:
        c.send(get("/idle"))
        assert c.response()[0] == 200
        t0 = time.monotonic()
        assert s.stop(timeout=30) == 0
        assert time.monotonic() - t0 < 10
    assert_quiet(s)
