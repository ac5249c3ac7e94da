"""The asgi worker's ASGI extensions through the real binary, with raw
ASGI apps (apps/asgi_ext_apps.py) and raw sockets:

- http.response.pathsend: the file named by the app is the body, sent
  with sendfile(2) by the protocol as the client's socket takes it
  (src/asgi_file.c): byte-exact for small and multi-MiB files, keep-alive
  and pipelining after it, HEAD, Content-Length the app's or the file's;
  a slow reader does not hold the worker's one loop, one that takes
  nothing is closed after the I/O timeout; a file that is missing,
  unreadable, a directory, shorter than the Content-Length (at once, or
  shrinking while it is sent) is an error logged and the connection
  closes, never a crash, and every descriptor goes (/proc/PID/fd of the
  worker back to its count before);
- websocket.http.response: a handshake answered with the app's own HTTP
  response (status, headers, body; then the connection closes);
- both advertised in scope["extensions"], and misuse (pathsend before
  start or after a body, a body after it, a denial after accept, accept
  after a denial) is a clear error while the server goes on serving."""

import asyncio
import json
import os
import shutil
import socket
import stat
import tempfile
import threading
import time

import pytest
import websockets

from conftest import http_get, read_until_close, wait_for
from httpraw import Connection, get

APP = "tests.integration.apps.asgi_ext_apps:app"
BIG = 32 << 20      # far more than a socket holds for a slow reader (4 MiB wmem)


def asgi(make_server, *extra):
    return make_server("-k", "asgi", "-w", "1", *extra, APP)


def worker_pid(s):
    return wait_for(lambda: (lambda p: p[0] if len(p) == 1 else None)(s.pids_titled("worker")),
                    10, what="one worker")


def nfds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def baseline(s, pid):
    """The worker's descriptors once it has served a request and closed
    its connection (its loop's own are all made by then)."""
    with Connection(s.port) as c:
        c.send(get("/warm", extra=b"Connection: close\r\n"))
        c.response()
        assert c.closed(5)
    return nfds(pid)


def settled_fds(pid, base):
    """Wait until the worker holds no more descriptors than `base`."""
    wait_for(lambda: nfds(pid) <= base, 10,
             what="the worker's descriptors back to %d (now %d)" % (base, nfds(pid)))


def file_req(path, method="GET", extra=b"", **q):
    qs = "&".join("%s=%s" % kv for kv in [("path", path)] + sorted(q.items()))
    return (method.encode() + b" /file?" + qs.encode() + b" HTTP/1.1\r\nHost: x\r\n"
            + extra + b"\r\n")


@pytest.fixture
def files(tmp_path):
    d = tmp_path / "files"
    d.mkdir()
    out = {"dir": str(d)}
    for name, data in (("small", b"hello, file\n"), ("empty", b""),
                       ("mid", os.urandom(3 << 20) + b"end"), ("big", os.urandom(BIG))):
        p = d / name
        p.write_bytes(data)
        out[name] = str(p)
        out[name + "_data"] = data
    return out


def test_extensions_are_advertised_in_scope(make_server):
    s = asgi(make_server)
    with Connection(s.port) as c:
        for _ in range(2):      # a request's own dict: nothing carries over
            c.send(get("/ext"))
            assert c.response()[2] == b'{"http.response.pathsend": {}}'

    async def ws():
        async with websockets.connect("ws://127.0.0.1:%d/ext" % s.port) as w:
            return await w.recv()
    assert asyncio.new_event_loop().run_until_complete(ws()) == \
        '{"websocket.http.response": {}}'


def test_no_sendfile_offers_no_pathsend(make_server, files):
    """--no-sendfile (a filesystem whose sendfile is broken): pathsend is
    not offered, and an app that sends it anyway gets a clear error."""
    s = asgi(make_server, "--no-sendfile")
    with Connection(s.port) as c:
        c.send(get("/ext"))
        assert c.response()[2] == b"{}"
        c.send(file_req(files["small"]))
        assert c.response()[0] == 500
    wait_for(lambda: "Unexpected ASGI message 'http.response.pathsend' sent, but the server "
             "does not offer it (sendfile is off)." in s.log(), 5, what="the error")


LOOPS = pytest.mark.parametrize("loop", ["uvloop", "asyncio"])


@LOOPS
def test_pathsend_bodies_byte_exact_keepalive_and_pipelined(make_server, files, tmp_path, loop):
    """Small, empty and multi-MiB files on one kept-alive connection, the
    app's Content-Length or none (then the file's size is sent), a
    Content-Length shorter than the file cuts it there; then several
    requests pipelined in one write, answered in order; HTTP/1.0.  On
    either event loop (their transports buffer and write differently)."""
    s = asgi(make_server, "--asgi-loop", loop, "--access-logfile", "-")
    pid = worker_pid(s)
    with Connection(s.port) as c:
        for name in ("small", "empty", "mid"):
            c.send(file_req(files[name]))
            status, h, body = c.response()
            assert status == 200 and body == files[name + "_data"], name
            assert h["connection"] == "keep-alive"
        c.send(file_req(files["mid"], nocl=1))
        status, h, body = c.response()
        assert h["content-length"] == str(len(files["mid_data"]))
        assert body == files["mid_data"]
        c.send(file_req(files["mid"], cl=1000))
        assert c.response()[2] == files["mid_data"][:1000]
        done = tmp_path / "done"
        c.send(file_req(files["mid"], done=str(done)) + file_req(files["small"])
               + get("/after") + file_req(files["empty"], nocl=1))
        assert c.response()[2] == files["mid_data"]
        assert c.response()[2] == files["small_data"]
        assert c.response()[2] == b"hello /after"
        status, h, body = c.response()
        assert h["content-length"] == "0" and body == b""
        assert done.read_text() == "sent"       # the app's send() returned
    out = b"".join(_raw(s.port, b"GET /file?path=%s HTTP/1.0\r\n\r\n" % files["small"].encode()))
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200") and b"Connection: close" in head
    assert body == files["small_data"]
    wait_for(lambda: '"GET /file?path=%s HTTP/1.1" 200 %d ' % (files["mid"], len(files["mid_data"]))
             in s.out(), 5, what="the access log line with the file's length")
    assert "Exception" not in s.log()
    assert worker_pid(s) == pid


def _raw(port, data):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as k:
        k.sendall(data)
        yield read_until_close(k)


def test_pathsend_head(make_server, files):
    """HEAD: the head with the file's Content-Length (the app's, or the
    file's size when it gave none), no body, the connection kept."""
    s = asgi(make_server)
    with Connection(s.port) as c:
        for q in ({}, {"nocl": 1}):
            c.send(file_req(files["mid"], method="HEAD", **q))
            status, h, body = c.response(head_only=True)
            assert status == 200 and h["content-length"] == str(len(files["mid_data"]))
            assert h["connection"] == "keep-alive"
        c.send(get("/next"))
        assert c.response()[2] == b"hello /next"   # no stray body bytes between


@LOOPS
def test_slow_reader_does_not_hold_the_loop(make_server, files, tmp_path, loop):
    """One worker.  A client asks for 32 MiB (and pipelines a second
    request) and reads nothing: the file waits
    for its socket, the app's send() with it, and another client is
    answered at once meanwhile.  Then the slow client reads it all,
    byte-exact, and its pipelined answer; the worker's descriptors go
    back to what they were."""
    s = asgi(make_server, "--asgi-loop", loop)
    pid = worker_pid(s)
    base = baseline(s, pid)
    done = tmp_path / "done"
    slow = Connection(s.port, timeout=30)
    try:
        slow.send(file_req(files["big"], done=str(done)) + get("/pipelined"))
        # the connection, the file and our duplicate of the socket that
        # the loop watches: the file waits for the client
        wait_for(lambda: nfds(pid) >= base + 3, 10, what="the file waiting for its socket")
        for i in range(3):
            t0 = time.monotonic()
            with Connection(s.port, timeout=5) as fast:
                fast.send(get("/fast%d" % i))
                assert fast.response()[2] == b"hello /fast%d" % i
            assert time.monotonic() - t0 < 2
        assert not done.exists()            # send() returns at the file's end
        status, h, body = slow.response()
        assert status == 200 and len(body) == BIG
        assert body == files["big_data"]
        assert slow.response()[2] == b"hello /pipelined"
        wait_for(done.exists, 5, what="the app's send() to return")
    finally:
        slow.close()
    settled_fds(pid, base + 1)      # the epoll set of waiting sockets stays
    assert "Exception" not in s.log() and "ERROR" not in s.log()


def test_a_client_that_takes_nothing_is_closed_after_the_io_timeout(make_server, files):
    """--timeout 2: the I/O timeout is 1.5 s.  A client that reads none
    of its 32 MiB is closed once that long passed without it taking a
    byte; the file, our socket and the connection are gone, the worker
    goes on."""
    s = asgi(make_server, "--timeout", "2", "--log-level", "debug")
    pid = worker_pid(s)
    base = baseline(s, pid)
    c = Connection(s.port, timeout=30)
    try:
        c.send(file_req(files["big"]))
        wait_for(lambda: nfds(pid) >= base + 3, 10, what="the file waiting for its socket")
        t0 = time.monotonic()
        wait_for(lambda: nfds(pid) <= base + 1, 20, what="the stalled connection closed")
        assert time.monotonic() - t0 > 1.0
        assert len(read_until_close(c.sock)) < BIG      # cut
    finally:
        c.close()
    assert "pathsend: the client took nothing of %s for 1500 ms" % files["big"] in s.log()
    with Connection(s.port) as after:
        after.send(get("/after"))
        assert after.response()[2] == b"hello /after"
    assert worker_pid(s) == pid


@LOOPS
def test_client_leaving_mid_file_and_file_shrinking(make_server, files, loop):
    """A slow client that leaves while its file waits: the file and our
    socket are closed.  A file cut short while it is sent (its head
    promised more): the error is logged, the client gets what there was
    and the end of the connection."""
    s = asgi(make_server, "--asgi-loop", loop)
    pid = worker_pid(s)
    base = baseline(s, pid)
    c = Connection(s.port, timeout=30)
    c.send(file_req(files["big"]))
    wait_for(lambda: nfds(pid) >= base + 3, 10, what="the file waiting for its socket")
    c.close()
    settled_fds(pid, base + 1)          # + the epoll set
    base += 1

    victim = os.path.join(files["dir"], "shrinking")
    shutil.copyfile(files["big"], victim)
    c = Connection(s.port, timeout=30)
    try:
        c.send(file_req(victim))
        wait_for(lambda: nfds(pid) >= base + 3, 10, what="the file waiting for its socket")
        os.truncate(victim, 1 << 20)
        got = read_until_close(c.sock)
    finally:
        c.close()
    head, _, body = got.partition(b"\r\n\r\n")
    assert b"content-length: %d" % BIG in head
    assert len(body) < BIG and body == files["big_data"][:len(body)]
    wait_for(lambda: "pathsend: %s ended" % victim in s.log(), 5, what="the error logged")
    assert "bytes short of the response's length" in s.log()
    settled_fds(pid, base)
    with Connection(s.port) as after:
        after.send(get("/after"))
        assert after.response()[2] == b"hello /after"
    assert worker_pid(s) == pid


def test_file_errors_are_500_and_close(make_server, files, tmp_path):
    """A path that is missing, a directory, a FIFO, relative, or a file
    shorter than the app's Content-Length: send() raises in the app (an
    OSError naming the file), the client gets a 500 and the end of the
    connection, nothing is left open, and the next client is served."""
    s = asgi(make_server)
    pid = worker_pid(s)
    base = baseline(s, pid)
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    cases = [
        (file_req(os.path.join(files["dir"], "missing"), nocl=1),
         "FileNotFoundError: [Errno 2] No such file or directory"),
        (file_req(files["dir"], nocl=1), "IsADirectoryError: [Errno 21] Is a directory"),
        (file_req(fifo, nocl=1), "OSError: [Errno 22] Invalid argument: '%s'" % fifo),
        (file_req("relative/path", nocl=1), "needs an absolute path, not 'relative/path'"),
        (file_req(files["small"], cl=1000),
         "has %d bytes, fewer than the response's Content-Length (1000)"
         % len(files["small_data"])),
    ]
    for req, logged in cases:
        with Connection(s.port) as c:
            c.send(req)
            status, h, _ = c.response()
            assert status == 500 and h["connection"] == "close", logged
            assert c.closed(5), logged
        wait_for(lambda: logged in s.log(), 5, what=logged)
    settled_fds(pid, base)
    with Connection(s.port) as c:
        c.send(file_req(files["small"]))
        assert c.response()[2] == files["small_data"]
    assert worker_pid(s) == pid


def test_unreadable_file(make_server):
    """The worker runs as nobody: a file it may not read is a 500 (the
    app's send() raised PermissionError), then the server goes on."""
    d = tempfile.mkdtemp(prefix="cunicorn-pathsend-")
    try:
        os.chmod(d, 0o755)
        secret = os.path.join(d, "secret")
        public = os.path.join(d, "public")
        for p, mode in ((secret, 0o600), (public, 0o644)):
            with open(p, "wb") as f:
                f.write(b"data\n")
            os.chmod(p, mode)
        s = asgi(make_server, "-u", "nobody", "-g", "nogroup")
        pid = worker_pid(s)
        wait_for(lambda: os.stat("/proc/%d" % pid).st_uid == 65534, 10, what="nobody")
        base = baseline(s, pid)
        with Connection(s.port) as c:
            c.send(file_req(secret, nocl=1))
            assert c.response()[0] == 500
            assert c.closed(5)
        wait_for(lambda: "PermissionError: [Errno 13] Permission denied: '%s'" % secret
                 in s.log(), 5, what="the error logged")
        settled_fds(pid, base)
        with Connection(s.port) as c:
            c.send(file_req(public))
            assert c.response()[2] == b"data\n"
    finally:
        shutil.rmtree(d)


def test_pathsend_misuse_is_a_clear_error(make_server, files):
    """pathsend before http.response.start: a 500; after a body (they
    cannot be mixed): the head and that body went out, the connection
    closes; a body, or a second pathsend, after the file: the response
    was complete, the client has it all and its connection is kept.
    Each is one clear line in the log; the server goes on."""
    s = asgi(make_server)
    small = files["small"]
    with Connection(s.port) as c:
        c.send(b"GET /before-start?path=%s HTTP/1.1\r\nHost: x\r\n\r\n" % small.encode())
        assert c.response()[0] == 500 and c.closed(5)
    wait_for(lambda: "RuntimeError: Unexpected ASGI message 'http.response.pathsend' sent, "
             "before 'http.response.start'." in s.log(), 5, what="before start")
    with Connection(s.port) as c:
        c.send(b"GET /mixed?path=%s HTTP/1.1\r\nHost: x\r\n\r\n" % small.encode())
        got = read_until_close(c.sock)
        assert got.startswith(b"HTTP/1.1 200") and got.endswith(b"4\r\npart\r\n")
    wait_for(lambda: "RuntimeError: Unexpected ASGI message 'http.response.pathsend' sent, "
             "after 'http.response.body' (they cannot be mixed)." in s.log(), 5, what="mixed")
    with Connection(s.port) as c:
        for route in ("/body-after", "/twice"):
            c.send(b"GET %s?path=%s HTTP/1.1\r\nHost: x\r\n\r\n" % (route.encode(), small.encode()))
            status, h, body = c.response()
            assert status == 200 and body == files["small_data"], route
        c.send(get("/kept"))
        assert c.response()[2] == b"hello /kept"
    wait_for(lambda: "RuntimeError: Unexpected ASGI message 'http.response.body' sent, after "
             "response already completed." in s.log(), 5, what="a body after the file")
    wait_for(lambda: "RuntimeError: Unexpected ASGI message 'http.response.pathsend' sent, "
             "after response already completed." in s.log(), 5, what="pathsend twice")
    assert "Traceback" in s.log()       # the app's own error, with where it was
    with Connection(s.port) as c:
        c.send(get("/still"))
        assert c.response()[2] == b"hello /still"


def ws_handshake(path):
    return (b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n")


def test_websocket_denial_response(make_server):
    """The app refuses a handshake with an HTTP response of its own: its
    status, headers and body (Content-Length, or chunked when it comes in
    pieces), Connection: close, and then the connection closes (the spec:
    nothing may follow).  A real client sees the status; the access log
    has the line."""
    s = asgi(make_server, "--access-logfile", "-")
    with Connection(s.port) as c:
        c.send(ws_handshake(b"/deny"))
        status, h, body = c.response()
        assert status == 403 and body == b"go away"
        assert h["x-why"] == "not you" and h["content-type"] == "text/plain"
        assert h["content-length"] == "7" and h["connection"] == "close"
        assert "upgrade" not in h and "sec-websocket-accept" not in h
        assert c.closed(5)
    with Connection(s.port) as c:
        c.send(ws_handshake(b"/deny-streamed"))
        status, h, body = c.response()
        assert status == 401 and h["transfer-encoding"] == "chunked"
        assert body == b"one,two" and c.closed(5)

    async def client():
        try:
            async with websockets.connect("ws://127.0.0.1:%d/deny" % s.port):
                return None
        except websockets.exceptions.InvalidStatusCode as e:
            return e.status_code
    assert asyncio.new_event_loop().run_until_complete(client()) == 403
    wait_for(lambda: '"GET /deny HTTP/1.1" 403 7 ' in s.out(), 5, what="the access log line")
    assert '"GET /deny-streamed HTTP/1.1" 401 7 ' in s.out()
    assert "Exception" not in s.log()


def test_websocket_denial_misuse(make_server):
    """A denial after accept: the app's error, the websocket closes with
    1011.  Accept after a denial started: the app's error and a 500 (the
    denial's head was not sent yet).  A denial whose body never ends:
    what was sent, then the connection closes.  The server goes on."""
    s = asgi(make_server)
    with Connection(s.port) as c:
        c.send(ws_handshake(b"/deny-after-accept"))
        assert c.response()[0] == 101
        assert c.buf + read_until_close(c.sock) == b"\x88\x02\x03\xf3"     # close 1011
    wait_for(lambda: "RuntimeError: Unexpected ASGI message 'websocket.http.response.start' "
             "sent, after 'websocket.accept'." in s.log(), 5, what="denial after accept")
    with Connection(s.port) as c:
        c.send(ws_handshake(b"/accept-after-deny"))
        assert c.response()[0] == 500 and c.closed(5)
    wait_for(lambda: "RuntimeError: Unexpected ASGI message 'websocket.accept' sent, after "
             "'websocket.http.response.start'" in s.log(), 5, what="accept after denial")
    with Connection(s.port) as c:
        c.send(ws_handshake(b"/deny-unfinished"))
        got = read_until_close(c.sock)
        assert got.startswith(b"HTTP/1.1 403") and got.endswith(b"\r\n\r\n4\r\nhalf\r\n")
    wait_for(lambda: "ASGI callable returned without completing response." in s.log(), 5,
             what="the unfinished denial")
    with Connection(s.port) as c:
        c.send(get("/still"))
        assert c.response()[2] == b"hello /still"


@pytest.mark.nosan(reason="8 GiB through loopback, 5-25 s a loop, a measure of time; the "
                   "capped step's C runs under the sanitizers in the other pathsend tests")
@LOOPS
def test_a_fast_reader_of_a_big_file_does_not_hold_the_loop(make_server, tmp_path, loop):
    """sendfile steps are capped (4 MiB a turn): a client that takes all
    it is sent (a 256 MiB receive buffer, forced: we are root) of an 8 GiB
    file leaves the loop free for the others -- here an app sleeping 10 ms
    at a time sees no pause near a second (uncapped, one step ran until
    the socket was full: a 2.4 s pause here, the whole file at disk speed
    for a cold one).  The file must still be on its way when the app's
    answer comes: with the cap taken out, the app's request waited for
    the whole file, and the gap measured after it was small (the test
    passed without the cap).  8 GiB took 2.5 to 23 s here (the loopback's
    speed varies with the machine's load); with 4 GiB the test failed
    in one run of five."""
    s = asgi(make_server, "--asgi-loop", loop, "--timeout", "120")
    big = str(tmp_path / "sparse.bin")
    size = 8 << 30
    with open(big, "wb") as f:
        f.truncate(size)            # sparse: no disk, all page cache speed
    got = [0]

    def download():
        with socket.socket() as c:
            c.setsockopt(socket.SOL_SOCKET, 33, 256 << 20)     # SO_RCVBUFFORCE
            c.settimeout(120)
            c.connect(("127.0.0.1", s.port))
            c.sendall(file_req(big, extra=b"Connection: close\r\n"))
            buf = bytearray(4 << 20)
            while True:
                n = c.recv_into(buf)
                if not n:
                    break
                got[0] += n

    t = threading.Thread(target=download)
    t.start()
    try:
        wait_for(lambda: got[0] > (64 << 20), 30, what="the download under way")
        status, _, body = http_get(s.port, "/ticker?n=100", timeout=60)
        sent_by_then = got[0]
        assert status == 200
        # uncapped, the app's answer waited for the whole file: the loop was
        # held; a machine that reads 8 GiB in the ticker's second would
        # need a bigger file
        assert sent_by_then < size, ("the whole file was sent before the app's "
                                     "answer came: the file held the loop")
        gap = json.loads(body)["max_gap"]
        assert gap < 1.0, "the loop paused %.2f s while the file was sent" % gap
    finally:
        t.join(120)
    assert got[0] > size, got[0]        # the whole file (and its head)


def test_a_fifo_is_refused_before_it_is_opened(make_server, tmp_path):
    """A FIFO's path is refused by its type before open(): a writer
    waiting on it is not released by the server (nor is a device
    touched)."""
    s = asgi(make_server)
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    opened = threading.Event()

    def writer():
        fd = os.open(fifo, os.O_WRONLY)     # blocks until a reader opens it
        opened.set()
        os.close(fd)

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    with Connection(s.port) as c:
        c.send(file_req(fifo, nocl=1))
        status, _, _ = c.response()
        assert status == 500
    assert not opened.wait(0.5), "the server opened the FIFO"
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)   # release the writer
    try:
        assert opened.wait(5)
    finally:
        os.close(fd)
    t.join(5)

