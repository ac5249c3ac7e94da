"""TLS (gunicorn's certfile / keyfile / ca_certs / cert_reqs / ciphers /
ssl_version) in the sync and gthread workers, through the real binary.

Certificates are made once per session by tlscerts.py (the openssl CLI) in
a temporary directory (a CA, two server certificates for 127.0.0.1 and
localhost with different serials, a client certificate, a key that matches
nothing) and removed after.  Clients: Python's ssl module over raw sockets, verifying
against the test CA, and curl when it is installed.

Covered: TLS 1.3 and TLS 1.2 (the client pinned); wsgi.url_scheme https;
keep-alive and pipelining (gthread); a 10 MiB upload read by the app and a
10 MiB download as a list body and as wsgi.file_wrapper (sendfile's
fallback); a slow reader (gthread write-behind); a dirty stream relayed by
the gthread loop; cert_reqs 2 with ca_certs; plain HTTP on the TLS port;
a client that never speaks (head deadline); bad files and ciphers refused
at start; certificate rotation on HUP and a broken one kept out; the
worker's descriptors back to their baseline; "Listening at: https://".
"""
import hashlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import textwrap
import time

import pytest

from conftest import start_to_exit, wait_for
from streamkit import start as start_streams
from tlscerts import make_certs

BIG = 10 * 1024 * 1024
WORKERS = {
    "sync": ("-k", "sync"),
    "gthread": ("-k", "gthread", "--threads", "2"),
}

APP = textwrap.dedent("""\
    import hashlib, os
    HERE = os.path.dirname(os.path.abspath(__file__))
    DATA = os.path.join(HERE, "big.bin")

    def app(environ, start_response):
        path = environ["PATH_INFO"]
        if path == "/upload":
            h, n, inp = hashlib.sha256(), 0, environ["wsgi.input"]
            while True:
                b = inp.read(65536)
                if not b:
                    break
                h.update(b)
                n += len(b)
            body = ("%d %s" % (n, h.hexdigest())).encode()
        elif path == "/pid":
            body = str(os.getpid()).encode()
        elif path == "/ragged":
            try:
                environ["wsgi.input"].read()
                body = b"read"
            except OSError as e:
                environ["wsgi.errors"].write("body read failed: %s\\n" % e)
                environ["wsgi.errors"].flush()
                body = b"failed"
        elif path == "/list":
            with open(DATA, "rb") as f:
                data = f.read()
            if environ["QUERY_STRING"].startswith("mib="):
                data = data[:int(environ["QUERY_STRING"][4:]) << 20]
            start_response("200 OK", [("Content-Length", str(len(data)))])
            return [data[i:i + 100000] for i in range(0, len(data), 100000)]
        elif path == "/file":
            f = open(DATA, "rb")
            start_response("200 OK", [("Content-Length", str(os.path.getsize(DATA)))])
            return environ["wsgi.file_wrapper"](f, 65536)
        else:
            body = ("%s %s" % (environ["wsgi.url_scheme"], path)).encode()
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return [body]
""")


@pytest.fixture(scope="session")
def certs():
    """Paths of the session's certificates and keys (tlscerts.py)."""
    d = tempfile.mkdtemp(prefix="cunicorn-tls-")
    try:
        yield make_certs(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def appdir(certs):
    d = tempfile.mkdtemp(prefix="cunicorn-tls-app-")
    try:
        with open(os.path.join(d, "tlsapp.py"), "w") as f:
            f.write(APP)
        with open(os.path.join(d, "big.bin"), "wb") as f:
            f.write(os.urandom(BIG))
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def big_bytes(appdir):
    with open(os.path.join(appdir, "big.bin"), "rb") as f:
        return f.read()


def tls_args(certs, key="server"):
    return ["--certfile", certs[key + ".pem"], "--keyfile", certs[key + ".key"]]


def serve(make_server, certs, appdir, worker, *extra):
    return make_server(*WORKERS[worker], *tls_args(certs), *extra,
                       "--chdir", appdir, "tlsapp:app", cwd=appdir)


def client_ctx(certs, version=None, cert=None):
    ctx = ssl.create_default_context(cafile=certs["ca.pem"])
    if version is not None:
        ctx.minimum_version = ctx.maximum_version = version
    if cert is not None:
        ctx.load_cert_chain(certs[cert + ".pem"], certs[cert + ".key"])
    return ctx


def connect(port, certs, version=None, cert=None, timeout=10.0):
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return client_ctx(certs, version, cert).wrap_socket(raw, server_hostname="127.0.0.1")


class Reader:
    """HTTP/1.1 responses (Content-Length bodies) off one socket."""

    def __init__(self, sock):
        self.sock, self.buf = sock, b""

    def _fill(self):
        d = self.sock.recv(1 << 16)
        if not d:
            raise EOFError("connection closed")
        self.buf += d

    def response(self):
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
        n = int(headers.get("content-length", "0"))
        while len(self.buf) < n:
            self._fill()
        body, self.buf = self.buf[:n], self.buf[n:]
        return status, headers, body


def get(port, certs, path="/", version=None, cert=None):
    with connect(port, certs, version, cert) as s:
        s.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path.encode())
        return Reader(s).response() + (s.version(),)


def worker_pid(s, count=1):
    return wait_for(lambda: len(s.pids_titled("worker")) == count and s.pids_titled("worker"),
                    15, what="%d worker(s)" % count)[0]


# ---- the basics --------------------------------------------------------------

@pytest.mark.parametrize("worker", sorted(WORKERS))
@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2],
                         ids=["tls1.3", "tls1.2"])
def test_request_over_tls(make_server, certs, appdir, worker, version):
    s = serve(make_server, certs, appdir, worker)
    status, _, body, got = get(s.port, certs, "/hello", version=version)
    assert (status, body) == (200, b"https /hello")
    assert got == {ssl.TLSVersion.TLSv1_3: "TLSv1.3", ssl.TLSVersion.TLSv1_2: "TLSv1.2"}[version]
    log = s.log()
    assert "Listening at: https://127.0.0.1:%d (" % s.port in log, log[-2000:]


@pytest.mark.parametrize("worker", sorted(WORKERS))
def test_curl(make_server, certs, appdir, worker):
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    s = serve(make_server, certs, appdir, worker)
    out = subprocess.run(["curl", "-sS", "--cacert", certs["ca.pem"],
                          "https://localhost:%d/c" % s.port, "https://127.0.0.1:%d/d" % s.port],
                         capture_output=True, timeout=20)
    assert out.returncode == 0, out.stderr
    assert out.stdout == b"https /chttps /d"


def test_ssl_version_tls12_pins_it(make_server, certs, appdir):
    s = serve(make_server, certs, appdir, "gthread", "--ssl-version", "TLSv1_2")
    assert get(s.port, certs)[3] == "TLSv1.2"
    with pytest.raises((ssl.SSLError, ConnectionError)):
        get(s.port, certs, version=ssl.TLSVersion.TLSv1_3)
    assert get(s.port, certs)[0] == 200      # the worker goes on


def test_key_in_certfile(make_server, certs, appdir):
    """certfile alone may hold the key (as Python's load_cert_chain)."""
    s = make_server("--certfile", certs["both.pem"], "--chdir", appdir, "tlsapp:app",
                    cwd=appdir)
    assert get(s.port, certs)[:3:2] == (200, b"https /")


def test_keepalive_and_pipelining(make_server, certs, appdir):
    s = serve(make_server, certs, appdir, "gthread")
    with connect(s.port, certs) as c:
        r = Reader(c)
        for i in range(3):
            c.sendall(b"GET /k%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
            status, headers, body = r.response()
            assert (status, body) == (200, b"https /k%d" % i)
            assert headers.get("connection", "").lower() != "close"
        # two requests in one write (one TLS record)
        c.sendall(b"GET /p1 HTTP/1.1\r\nHost: x\r\n\r\nGET /p2 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert r.response()[2] == b"https /p1"
        assert r.response()[2] == b"https /p2"


@pytest.mark.parametrize("size", [1000, 16000, 16384 - 60, 40000, 65543, 300001])
def test_pipelined_after_a_body(make_server, certs, appdir, size):
    """gthread: a request pipelined behind a body, all in one write: the
    body reader's last read may leave the next request's bytes decrypted
    inside OpenSSL, where no epoll edge will ever say so; they are served."""
    s = serve(make_server, certs, appdir, "gthread")
    data = os.urandom(size)
    with connect(s.port, certs, timeout=10) as c:
        c.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size
                  + data + b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n"
                  + b"GET /last HTTP/1.1\r\nHost: x\r\n\r\n")
        r = Reader(c)
        assert r.response()[2] == ("%d %s" % (size, hashlib.sha256(data).hexdigest())).encode()
        assert r.response()[2] == b"https /next"
        assert r.response()[2] == b"https /last"


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2],
                         ids=["tls1.3", "tls1.2"])
def test_sessions_resume_on_any_worker(make_server, certs, appdir, version):
    """Tickets only: their keys are the master's, so a session resumes
    whichever of the workers takes the next connection."""
    s = serve(make_server, certs, appdir, "sync", "-w", "3")
    ctx = client_ctx(certs, version)

    def request(session=None):
        raw = socket.create_connection(("127.0.0.1", s.port), timeout=10)
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1", session=session) as c:
            c.sendall(b"GET /pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            pid = int(Reader(c).response()[2])
            return c.session, c.session_reused, pid

    session, reused, _ = request()
    assert not reused
    wait_for(lambda: len(s.pids_titled("worker")) == 3, 15, what="3 workers")
    pids = set()
    for _ in range(30):
        _, reused, pid = request(session)
        assert reused, "a full handshake where a resumption was offered"
        pids.add(pid)
    assert len(pids) >= 2, pids     # more than one worker resumed it


# ---- big bodies --------------------------------------------------------------

@pytest.mark.parametrize("worker", sorted(WORKERS))
def test_upload_10mib(make_server, certs, appdir, worker):
    s = serve(make_server, certs, appdir, worker)
    data = os.urandom(BIG)
    with connect(s.port, certs, timeout=30) as c:
        c.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
                  b"Connection: close\r\n\r\n" % len(data))
        c.sendall(data)
        status, _, body = Reader(c).response()
    assert status == 200
    assert body == ("%d %s" % (len(data), hashlib.sha256(data).hexdigest())).encode()


@pytest.mark.parametrize("worker", sorted(WORKERS))
@pytest.mark.parametrize("path", ["/list", "/file"])
def test_download_10mib(make_server, certs, appdir, worker, path):
    s = serve(make_server, certs, appdir, worker)
    with connect(s.port, certs, timeout=30) as c:
        c.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path.encode())
        status, _, body = Reader(c).response()
    assert status == 200
    assert len(body) == BIG and body == big_bytes(appdir)


def test_slow_reader_write_behind(make_server, certs, appdir):
    """gthread: the app's thread hands the unsent rest (3 MiB: within a
    connection's write-behind cap) to the loop, which writes it as the
    client reads, late: every byte, in order, and the one thread answers
    another client meanwhile."""
    s = serve(make_server, certs, appdir, "gthread", "--threads", "1")
    with connect(s.port, certs, timeout=30) as c:
        c.sendall(b"GET /list?mib=3 HTTP/1.1\r\nHost: x\r\n\r\n")
        # the scenario, not a synchronisation: this client reads late
        time.sleep(0.5)
        assert get(s.port, certs, "/other")[2] == b"https /other"
        r = Reader(c)
        status, _, body = r.response()
        c.sendall(b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n")
        assert r.response()[2] == b"https /after"
    assert status == 200 and body == big_bytes(appdir)[:3 << 20]


def test_dirty_stream_relay(make_server, certs):
    """gthread: a dirty stream relayed by the loop, over TLS."""
    s = start_streams(make_server, "tls-relay",
                      extra=["-k", "gthread", "--threads", "1"] + tls_args(certs))
    n, size = 40, 10000
    with connect(s.port, certs, timeout=30) as c:
        c.sendall(b"GET /blocks?n=%d&size=%d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                  % (n, size))
        raw = b""
        while True:
            d = c.recv(1 << 16)
            if not d:
                break
            raw += d
    head, rest = raw.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200") and b"chunked" in head.lower()
    body = b""
    while True:
        line, rest = rest.split(b"\r\n", 1)
        k = int(line, 16)
        if k == 0:
            break
        body, rest = body + rest[:k], rest[k + 2:]
    want = b"".join((b"%07d|" % i * (size // 8 + 1))[:size] for i in range(n))
    assert body == want


# ---- client certificates and strangers ---------------------------------------

@pytest.mark.parametrize("worker", sorted(WORKERS))
def test_client_certificate_required(make_server, certs, appdir, worker):
    s = serve(make_server, certs, appdir, worker, "--cert-reqs", "2",
              "--ca-certs", certs["ca.pem"])
    # without one: the handshake fails (TLS 1.3 tells the client on its
    # first read, 1.2 during the handshake); no response either way
    for version in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
        with pytest.raises((ssl.SSLError, ConnectionError, EOFError)):
            get(s.port, certs, version=version)
    status, _, body, _ = get(s.port, certs, "/mtls", cert="client")
    assert (status, body) == (200, b"https /mtls")


@pytest.mark.parametrize("worker", sorted(WORKERS))
def test_plain_http_on_the_tls_port(make_server, certs, appdir, worker):
    s = serve(make_server, certs, appdir, worker)
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as c:
        c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            got = c.recv(4096)
        except ConnectionResetError:
            got = b""
    assert not got.startswith(b"HTTP/")     # closed (perhaps after an alert)
    assert get(s.port, certs)[:3:2] == (200, b"https /")
    assert "Traceback" not in s.log() and "[ERROR]" not in s.log()


@pytest.mark.parametrize("worker", sorted(WORKERS))
def test_bad_request_answered_over_tls(make_server, certs, appdir, worker):
    """A refused request gets gunicorn's error page through TLS, then the
    linger (close_notify first, raw bytes dropped after)."""
    s = serve(make_server, certs, appdir, worker)
    with connect(s.port, certs) as c:
        c.sendall(b"NOT A REQUEST\r\n\r\n")
        status, headers, body = Reader(c).response()
        assert status == 400 and headers["connection"] == "close"
        assert c.recv(100) == b""           # close_notify: a clean EOF
    assert get(s.port, certs)[0] == 200


@pytest.mark.parametrize("suppress", [True, False])
def test_ragged_eof_in_a_body(make_server, certs, appdir, tmp_path, suppress):
    """A client that closes mid-body without close_notify: with
    suppress_ragged_eofs (the default) an EOF, as a plain client's; with
    False, a read error."""
    conf = tmp_path / "conf.py"
    conf.write_text("suppress_ragged_eofs = %s\n" % suppress)
    s = serve(make_server, certs, appdir, "sync", "-c", str(conf))
    c = connect(s.port, certs)
    c.sendall(b"POST /ragged HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789")
    # a FIN without close_notify (SSLSocket.shutdown is TCP's alone; a
    # close() could be a reset: the session tickets are still unread)
    c.shutdown(socket.SHUT_WR)
    s.wait_log("body read failed: ")
    c.close()
    want = ("client closed the connection before the end of the body" if suppress
            else "cannot read the request body")
    assert "body read failed: " + want in s.log(), s.log()[-2000:]
    assert get(s.port, certs)[0] == 200


def test_silent_client_closed_by_the_head_deadline(make_server, certs, appdir):
    """A client that connects and never says a word is closed by the head
    deadline (timeout 2: 1 s), while another one is served."""
    s = serve(make_server, certs, appdir, "gthread", "--timeout", "2")
    silent = socket.create_connection(("127.0.0.1", s.port), timeout=10)
    t0 = time.monotonic()
    try:
        assert get(s.port, certs)[2] == b"https /"
        assert silent.recv(1) == b""            # closed by the server
        assert 0.5 < time.monotonic() - t0 < 8
    finally:
        silent.close()


# ---- refused at start ----------------------------------------------------------

@pytest.mark.parametrize("case", ["missing", "mismatch", "ciphers", "ca_certs", "not_pem",
                                  "keyfile_alone", "proxy_protocol"])
def test_refused_at_start(certs, appdir, case):
    args = {
        "missing": ["--certfile", "/nonexistent/cert.pem"],
        "mismatch": ["--certfile", certs["server.pem"], "--keyfile", certs["other.key"]],
        "ciphers": tls_args(certs) + ["--ciphers", "NO-SUCH-CIPHER"],
        "ca_certs": tls_args(certs) + ["--ca-certs", certs["server.ext"], "--cert-reqs", "2"],
        "not_pem": ["--certfile", certs["server.ext"], "--keyfile", certs["server.key"]],
        "keyfile_alone": ["--keyfile", certs["server.key"]],
        "proxy_protocol": tls_args(certs) + ["--proxy-protocol", "v1"],
    }[case]
    needle = {
        "missing": "Error: certfile: /nonexistent/cert.pem: No such file or directory",
        "mismatch": "Error: keyfile: %s does not match the certificate" % certs["other.key"],
        "ciphers": "Error: ciphers: 'NO-SUCH-CIPHER'",
        "ca_certs": "Error: ca_certs: %s" % certs["server.ext"],
        "not_pem": "Error: certfile: %s: not a PEM certificate chain" % certs["server.ext"],
        "keyfile_alone": "Error: keyfile: set without certfile",
        "proxy_protocol": "Error: certfile: TLS with proxy_protocol is not supported",
    }[case]
    code, log, left = start_to_exit(*args, "--chdir", appdir, "tlsapp:app", cwd=appdir)
    assert code not in (0, None), log
    lines = [l for l in log.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith(needle), log
    assert "Booting worker" not in log and not left


# ---- certificate rotation on HUP ------------------------------------------------

def serial_seen(port, certs):
    with connect(port, certs) as c:
        return c.getpeercert()["serialNumber"]


def test_hup_rotates_the_certificate(make_server, certs, appdir, tmp_path):
    cert, key = tmp_path / "live.pem", tmp_path / "live.key"
    shutil.copy(certs["server.pem"], cert)
    shutil.copy(certs["server.key"], key)
    s = make_server("-k", "gthread", "--certfile", str(cert), "--keyfile", str(key),
                    "--chdir", appdir, "tlsapp:app", cwd=appdir)
    assert serial_seen(s.port, certs) == "03E9"                 # 1001
    shutil.copy(certs["server2.pem"], cert)
    shutil.copy(certs["server2.key"], key)
    s.send(signal.SIGHUP)
    wait_for(lambda: serial_seen(s.port, certs) == "07D2", 15,  # 2002
             what="the new certificate after HUP")
    # a broken one: logged, the running context stays
    cert.write_text("not a certificate\n")
    s.send(signal.SIGHUP)
    s.wait_log("kept the running TLS context")
    assert "[ERROR] Reload: certfile: %s: not a PEM certificate chain" % cert in s.log()
    s.wait_log("Booting worker", count=3)           # the workers after the second HUP
    for _ in range(3):
        assert serial_seen(s.port, certs) == "07D2"
    assert get(s.port, certs)[2] == b"https /"


# ---- nothing leaks ---------------------------------------------------------------

@pytest.mark.parametrize("worker", sorted(WORKERS))
def test_descriptors_back_to_baseline(make_server, certs, appdir, worker):
    s = serve(make_server, certs, appdir, worker)
    pid = worker_pid(s)
    assert get(s.port, certs)[0] == 200
    fds = lambda: len(os.listdir("/proc/%d/fd" % pid))     # noqa: E731
    base = wait_for(fds, 5)
    for i in range(60):
        if i % 3 == 0:      # a full request
            assert get(s.port, certs, "/n%d" % i)[0] == 200
        elif i % 3 == 1:    # a handshake, then gone
            connect(s.port, certs).close()
        else:               # plain TCP, gone mid-nothing
            socket.create_connection(("127.0.0.1", s.port)).close()
    assert get(s.port, certs)[0] == 200
    wait_for(lambda: fds() <= base, 10, what="the worker's descriptors back to %d" % base)
    assert "Traceback" not in s.log() and "[ERROR]" not in s.log()


# ---- the files are read with the workers' rights ------------------------------

def test_files_are_read_with_the_workers_user(make_server, certs, appdir):
    """With user/group set, the master (root) reads certfile and keyfile as
    the workers' user: a key only root may read is refused at start (the
    workers would hold it in their memory), one the workers' user may
    read is served — as gunicorn, whose workers read them after the drop."""
    d = tempfile.mkdtemp(prefix="cunicorn-tls-user-")
    try:
        os.chmod(d, 0o755)
        for n in ("server.pem", "server.key"):
            shutil.copy(certs[n], d)
        cert, key = os.path.join(d, "server.pem"), os.path.join(d, "server.key")
        os.chmod(cert, 0o644)
        os.chmod(key, 0o600)            # root's alone
        as_nobody = ("-u", "nobody", "-g", "nogroup")
        code, log, left = start_to_exit("--certfile", cert, "--keyfile", key, *as_nobody,
                                        "--chdir", appdir, "tlsapp:app", cwd=appdir)
        assert code not in (0, None), log
        lines = [l for l in log.splitlines() if l.strip()]
        assert len(lines) == 1 and lines[0].startswith(
            "Error: keyfile: %s: Permission denied (read as the workers' user 65534" % key), log
        assert not left
        # the workers' user may read it: served, and the master is root still
        os.chown(key, 65534, 65534)
        os.chmod(appdir, 0o755)
        s = make_server("-k", "gthread", "--certfile", cert, "--keyfile", key, *as_nobody,
                        "--chdir", appdir, "tlsapp:app", cwd=appdir)
        status, _, body, _ = get(s.port, certs, "/u")
        assert (status, body) == (200, b"https /u")
        assert os.stat("/proc/%d" % s.pid).st_uid == 0
        os.chown(key, 0, 0)
        s.proc.send_signal(signal.SIGHUP)       # read again on HUP, as nobody too
        wait_for(lambda: "Permission denied (read as the workers' user" in s.log(), 15,
                 what="the HUP's refused key")
        status, _, body, _ = get(s.port, certs, "/v")
        assert (status, body) == (200, b"https /v")
    finally:
        shutil.rmtree(d, ignore_errors=True)
