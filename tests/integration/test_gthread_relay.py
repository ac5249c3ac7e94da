"""Streams don't hold threads: in the gthread worker, a WSGI app that
returns a dirty stream (client.stream(...)) as its body has its thread back
at once; the worker's event loop relays the chunks to the client.

Through the real binary, one HTTP worker with ONE thread: several streams
run at once and plain requests are answered meanwhile; chunks arrive as
produced; the connection is reused after a stream; the client going away
cancels the generator in the dirty worker; an error or a non-bytes chunk
mid-stream cuts the response (headers are out) and is logged; an iterator
the app wraps itself is iterated by a thread as before.

Apps: tests/integration/apps/stream_apps.py.
"""
import json
import os
import select
import shutil
import socket
import tempfile
import time

import pytest

from conftest import http_get, read_until_close, wait_for
from httpraw import Connection, chunk, chunked_head, get
from streamkit import start, status, use_stash

ONE_THREAD = ("-k", "gthread", "--threads", "1", "--dirty-threads", "16")


def read_chunk(sock_buf):
    """(data, rest) of one chunk from a Connection's buffer, reading more."""
    c = sock_buf
    while b"\r\n" not in c.buf:
        c._fill()
    size_line, c.buf = c.buf.split(b"\r\n", 1)
    size = int(size_line, 16)
    while len(c.buf) < size + 2:
        c._fill()
    data, c.buf = c.buf[:size], c.buf[size + 2:]
    return data


def open_stream(port, path):
    c = Connection(port)
    c.send(get(path))
    while b"\r\n\r\n" not in c.buf:
        c._fill()
    head, c.buf = c.buf.split(b"\r\n\r\n", 1)
    return c, head


def read_three_and_leave(s, path, tag, what):
    """Read chunks 0, 1, 2 of the endless stream at path?tag=TAG, close the
    connection, and wait until `what` (the generator in the dirty worker)
    is closed: it stores TAG:closed in the stash.  Returns the stash."""
    c, _ = open_stream(s.port, "%s?tag=%s&delay=0.02" % (path, tag))
    for i in range(3):
        assert read_chunk(c) == b"%d\n" % i
    c.close()
    st = use_stash(s)
    wait_for(lambda: st.get("stream_progress", tag + ":closed") is not None, 10,
             what=what + " to be closed")
    return st


def test_streams_run_while_the_only_thread_serves_others(make_server):
    s = start(make_server, "relay1", extra=ONE_THREAD)
    streams = [open_stream(s.port, "/stream?n=8&delay=0.25") for _ in range(4)]
    for c, head in streams:
        assert b"Transfer-Encoding: chunked" in head
        assert read_chunk(c).startswith(b"line 0 ")
    # every stream has started and none can have ended (8 x 0.25 s):
    # the one thread answers other requests meanwhile
    t0 = time.monotonic()
    for i in range(5):
        assert http_get(s.port, "/")[0] == 200
    assert time.monotonic() - t0 < 1.0
    for c, _ in streams:
        got = [read_chunk(c) for _ in range(8)]
        assert [g.split()[:2] for g in got[:7]] == [[b"line", b"%d" % i] for i in range(1, 8)]
        assert got[7] == b""                    # the last chunk
        # the connection is reused after the stream
        c.send(get("/"))
        status, h, body = c.response()
        assert status == 200 and b'"ok"' in body
        c.close()


def test_chunks_arrive_as_produced(make_server):
    s = start(make_server, "relay2", extra=ONE_THREAD)
    c, head = open_stream(s.port, "/stream?n=4&delay=0.4")
    t0 = time.monotonic()
    stamps = []
    for _ in range(4):
        read_chunk(c)
        stamps.append(time.monotonic() - t0)
    assert read_chunk(c) == b""
    # one by one, not all at the end
    assert stamps[0] < stamps[3] - 0.6, stamps
    c.close()


def test_many_concurrent_streams_on_one_thread(make_server):
    s = start(make_server, "relay3", extra=ONE_THREAD + ("--dirty-threads", "64"))
    n = 50
    streams = [open_stream(s.port, "/stream?n=3&delay=0.2") for _ in range(n)]
    for c, _ in streams:
        got = [read_chunk(c) for _ in range(4)]
        assert got[3] == b"" and all(g.startswith(b"line ") for g in got[:3])
        c.close()


def test_client_going_away_cancels_the_generator(make_server):
    s = start(make_server, "relay4", extra=ONE_THREAD)
    st = read_three_and_leave(s, "/endless_raw", "r1", "the abandoned generator")
    p1 = st.get("stream_progress", "r1")
    time.sleep(0.3)
    assert st.get("stream_progress", "r1") == p1
    assert http_get(s.port, "/")[0] == 200


def test_error_mid_stream_cuts_the_response(make_server):
    s = start(make_server, "relay5", extra=ONE_THREAD)
    c, head = open_stream(s.port, "/fail_raw?n=2")
    assert read_chunk(c) == b"0\n"
    assert read_chunk(c) == b"1\n"
    assert c.closed(10)            # no last chunk: the response is cut
    wait_for(lambda: "Error in a relayed dirty stream: broke after 2" in s.log(), 10,
             what="the stream's error in the log")
    c2, _ = open_stream(s.port, "/not_bytes")
    assert read_chunk(c2) == b"fine\n"
    assert c2.closed(10)
    wait_for(lambda: "a chunk is not bytes" in s.log(), 10, what="the non-bytes error")
    assert http_get(s.port, "/")[0] == 200


def test_wrapped_iterator_still_streams_through_a_thread(make_server):
    """/endless wraps the stream in a generator of its own: not relayable,
    a thread iterates it as the sync worker would."""
    s = start(make_server, "relay6", extra=("-k", "gthread", "--threads", "2"))
    read_three_and_leave(s, "/endless", "w1", "the wrapped generator")



def test_a_quick_dirty_call_keeps_requests_on_the_loop_thread(make_server):
    """A dirty call answered within the client's grace period (1 ms) hands
    nothing to another thread: request after request on a kept connection
    runs inline, in the worker's main thread.  (Telling the loop at once
    called a deputy for every call and sent the next second of requests to
    the pool.)  Best of twenty tries: a loaded machine may stretch a call
    past the grace period (it once read 7 of 20 under a full CI run, and
    five tries peaked at 13 with the sanitized stage running beside this
    one); a regression (a deputy for every call) reads about none, however
    many tries."""
    s = start(make_server, "quick", extra=("-k", "gthread", "--threads", "2"))
    best = 0
    for _ in range(20):
        with Connection(s.port) as c:
            on_main = 0
            for _ in range(20):
                c.send(get("/call_where"))
                status, _, body = c.response()
                assert status == 200
                on_main += json.loads(body)["main_thread"]
        best = max(best, on_main)
        if best >= 15:
            break
    assert best >= 15


def test_requests_answered_while_one_waits_on_a_dirty_call(make_server):
    """The first request on an idle worker runs in the loop's own thread
    (inline); when it waits on a dirty call, a pool thread takes over the
    loop, so the other connections are answered meanwhile, and the long
    call still gets its answer on its kept connection."""
    s = start(make_server, "inline1", extra=("-k", "gthread", "--threads", "2"))
    assert http_get(s.port, "/")[0] == 200
    with Connection(s.port) as slow:
        slow.send(get("/call?s=3"))
        time.sleep(0.2)            # the call is under way in the dirty worker
        for _ in range(5):
            assert http_get(s.port, "/")[0] == 200
        # answered while the call still runs (it has nearly 3 s to go)
        assert select.select([slow.sock], [], [], 0)[0] == []
        status, h, body = slow.response()
        assert status == 200 and b"pid" in body
        slow.send(get("/"))
        assert slow.response()[0] == 200


# ---- a relay after which the rest of the request body is dropped ----

TOTAL = 200000      # declared: within the 1 MiB the loop drains
FIRST = 50000       # sent with the head


def read_head(c):
    while b"\r\n\r\n" not in c.buf:
        c._fill()
    head, c.buf = c.buf.split(b"\r\n\r\n", 1)
    return head


def relay_then_drain(port, post, pieces):
    """`post` (a POST to /stream?n=6 whose body the app never reads) is
    answered with a relayed stream; one piece of the rest of the body is
    sent after each of the first five chunks, the last with a request
    pipelined right behind the body's end; after the last chunk that
    request is answered on the same connection, kept, and then another."""
    with Connection(port, timeout=10) as c:
        c.send(post)
        head = read_head(c)
        assert b"Transfer-Encoding: chunked" in head
        assert b"Connection: keep-alive" in head
        for i, piece in enumerate(pieces):
            assert read_chunk(c).startswith(b"line %d " % i)
            c.sock.sendall(piece + (get("/pipelined") if i == len(pieces) - 1 else b""))
        assert read_chunk(c).startswith(b"line 5 ")
        assert read_chunk(c) == b""
        status, h, body = c.response()
        assert (status, h["connection"]) == (200, "keep-alive") and b'"ok"' in body
        c.send(get("/after"))
        status, h, body = c.response()
        assert (status, h["connection"]) == (200, "keep-alive") and b'"ok"' in body
        assert not c.closed(0.3)


def test_a_body_still_arriving_during_a_relay_is_dropped_after_it(make_server):
    """Content-Length: 200 kB declared, 50 kB with the head; the app
    returns a stream without reading the body, the client sends the rest
    while the chunks come.  After the last chunk the loop drops the rest
    (DRAIN) and the connection goes on."""
    s = start(make_server, "relaydrain1", extra=ONE_THREAD)
    rest = b"y" * (TOTAL - FIRST)
    step = len(rest) // 5
    pieces = [rest[i * step:(i + 1) * step if i < 4 else len(rest)] for i in range(5)]
    post = (b"POST /stream?n=6&delay=0.1 HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: %d\r\n\r\n" % TOTAL + b"y" * FIRST)
    relay_then_drain(s.port, post, pieces)


def test_a_chunked_body_still_arriving_during_a_relay_is_dropped_after_it(make_server):
    """The same with a chunked request body, cut inside a size line, the
    data and the trailers."""
    s = start(make_server, "relaydrain2", extra=ONE_THREAD)
    rest = (chunk(b"y" * 70000, b";name=value") + chunk(b"z" * 3)
            + b"0\r\nX-Checksum: abc\r\n\r\n")
    cuts = [0, 3, 40000, len(rest) - 10, len(rest) - 1, len(rest)]
    pieces = [rest[cuts[i]:cuts[i + 1]] for i in range(5)]
    post = chunked_head("/stream?n=6&delay=0.1") + chunk(b"x" * 1000)
    relay_then_drain(s.port, post, pieces)


# ---- a relay to a client that does not read ----

PAD = 1 << 20       # a head of 1 MiB: far more than a unix socket holds


def unix_server(make_server, tag, *extra):
    """The stream apps with one thread on TCP and on a unix socket: there
    the kernel holds a fixed ~200 kB (net.core.wmem_default) whoever the
    client is, so a head of PAD bytes meets a full socket."""
    d = tempfile.mkdtemp(prefix="cu-relay-", dir="/tmp")
    path = os.path.join(d, "h.sock")
    try:
        s = start(make_server, tag, extra=ONE_THREAD + ("-b", "unix:" + path) + extra)
    except BaseException:
        shutil.rmtree(d, ignore_errors=True)
        raise
    s.unix_dir = d
    wait_for(lambda: os.path.exists(path), 10, what="the unix socket")
    return s, path


def unix_connection(path, timeout=10.0):
    c = Connection.__new__(Connection)
    c.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.sock.settimeout(timeout)
    c.sock.connect(path)
    c.buf = b""
    return c


def test_a_relayed_head_refused_by_a_full_socket_waits_then_comes_whole(make_server):
    """The head (1 MiB) does not fit in the socket: its rest and the
    chunks wait in the connection's output buffer, the one thread is free
    (another client is answered meanwhile); once the client reads it gets
    the head and every chunk, whole and in order, and the connection is
    kept."""
    s, path = unix_server(make_server, "relayfull1")
    try:
        c = unix_connection(path)
        try:
            c.send(get("/stream?n=5&delay=0.05&pad=%d" % PAD))
            time.sleep(1.0)     # the stream has ended in the dirty worker
            t0 = time.monotonic()
            for i in range(3):
                assert http_get(s.port, "/")[0] == 200
            assert time.monotonic() - t0 < 2
            head = read_head(c)
            assert head.startswith(b"HTTP/1.1 200 ")
            assert b"\r\nX-Pad: " + b"p" * PAD + b"\r\n" in head + b"\r\n"
            got = [read_chunk(c) for _ in range(6)]
            assert [g.split()[:2] for g in got[:5]] == [[b"line", b"%d" % i] for i in range(5)]
            assert got[5] == b""
            c.send(get("/after"))
            assert c.response()[0] == 200
        finally:
            c.close()
    finally:
        shutil.rmtree(s.unix_dir, ignore_errors=True)


def test_a_relay_to_a_client_that_never_reads_is_cut_at_the_io_timeout(make_server):
    """--timeout 2: the I/O timeout is 1.5 s, the stream's own timeouts
    are 30 s.  An endless stream relayed to a client that reads nothing
    (its head already refused): the connection is closed once the client
    has taken nothing for the I/O timeout, the generator is closed in the
    dirty worker and the arbiter has no call in flight; another client is
    answered meanwhile."""
    s, path = unix_server(make_server, "relayfull2", "--timeout", "2")
    try:
        st = use_stash(s)
        c = unix_connection(path)
        try:
            c.send(get("/endless_raw?tag=nr&delay=0.02&pad=%d" % PAD))
            wait_for(lambda: (st.get("stream_progress", "nr") or 0) > 3, 10,
                     what="the stream under way")
            t0 = time.monotonic()
            assert http_get(s.port, "/")[0] == 200
            wait_for(lambda: st.get("stream_progress", "nr:closed") is not None, 10,
                     what="the generator closed")
            assert time.monotonic() - t0 > 0.5
            wait_for(lambda: status(s)["in_flight"] == 0, 10, what="no call in flight")
            # the client gets what the socket held, then the end
            c.sock.settimeout(10)
            assert len(read_until_close(c.sock)) < PAD
        finally:
            c.close()
        assert http_get(s.port, "/")[0] == 200
    finally:
        shutil.rmtree(s.unix_dir, ignore_errors=True)


def test_a_slow_reader_is_not_charged_to_the_streams_idle_timeout(make_server):
    """The stream's idle timeout (1 s here) is the wait for its next
    chunk, as its iterator has it: a client reading its 1 MiB head in
    pieces over ~3 s, while the relay does not read the arbiter (256 KiB
    wait for the client), gets the whole response, not a cut."""
    s, path = unix_server(make_server, "relayslow")
    try:
        c = unix_connection(path)
        try:
            c.send(get("/stream?n=5&delay=0.01&idle=1&pad=%d" % PAD))
            got = b""
            while len(got) < PAD:
                d = c.sock.recv(64 << 10)
                assert d, "cut after %d bytes" % len(got)
                got += d
                time.sleep(0.15)
            c.buf = got
            head = read_head(c)
            assert b"\r\nX-Pad: " + b"p" * PAD + b"\r\n" in head + b"\r\n"
            got = [read_chunk(c) for _ in range(6)]
            assert [g.split()[:2] for g in got[:5]] == [[b"line", b"%d" % i] for i in range(5)]
            assert got[5] == b""
        finally:
            c.close()
        assert "no chunk for" not in s.log()
    finally:
        shutil.rmtree(s.unix_dir, ignore_errors=True)


# ---- relays within the worker's total of unsent output ----

MiB = 1 << 20
DATA_LIMIT = 96 * MiB       # the worker's, from post_fork: a total of 24 MiB
CLIENTS = 250
NBLOCKS, BLOCK = 80, 8192   # 640 KiB a stream: more than a unix socket
                            # holds (~200 kB) and a relay's own 256 KiB

LIMIT_CONF = """
import resource

def post_fork(server, worker):
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    resource.setrlimit(resource.RLIMIT_DATA, (%d, hard))
""" % DATA_LIMIT


def block(i, size):
    """stream_apps.block: chunk i of a /blocks stream."""
    return (b"%07d|" % i * (size // 8 + 1))[:size]


def kb(pid, field):
    for line in open("/proc/%d/status" % pid):
        if line.startswith(field + ":"):
            return int(line.split()[1])


def settled_rss(pid, timeout=60):
    """The worker's RSS once it stopped changing (1 s, 256 kB): it took
    what it may of the streams."""
    samples = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        samples = (samples + [kb(pid, "VmRSS")])[-6:]
        if len(samples) == 6 and max(samples) - min(samples) < 256:
            return samples[-1]
        time.sleep(0.2)
    raise AssertionError("the worker's RSS did not settle: %s" % samples)


@pytest.mark.nosan(reason="measures the worker's peak RSS under a data limit; "
                   "ASan's shadow memory and quarantine break both")
def test_relays_to_clients_that_do_not_read_share_the_workers_total(make_server, tmp_path):
    """A post_fork hook lowers the worker's data limit (ulimit -d) to
    96 MiB: its total of unsent output, write-behind and relays alike, is
    a quarter of it, 24 MiB (logged at debug).  250 clients of a unix
    socket each ask for a 640 KiB stream (8 KiB chunks) and read nothing:
    a relay holds at most 256 KiB of its own, 62.5 MiB for all of them,
    but together they stop at the total (plus the chunk a relay keeping
    pace holds, and what each read from its dirty stream): the worker's
    peak RSS grows by less than the 256 KiB each would hold, and the
    worker lives (before: it held them all, and died on its data limit).
    Then the clients read, one after the other while the rest still read
    nothing: a client that reads is never starved by those that hold the
    total, and each gets its stream whole, byte-exact."""
    conf = tmp_path / "limit.conf.py"
    conf.write_text(LIMIT_CONF)
    s, path = unix_server(make_server, "relaytotal", "-c", str(conf), "--timeout", "120",
                          "--log-level", "debug", "--dirty-threads", "4")
    try:
        wait_for(lambda: "gthread: unsent output capped at %d KiB in all"
                 % (DATA_LIMIT // 4 // 1024) in s.log(), 10, what="the total logged")
        pid = wait_for(lambda: (lambda p: p[0] if len(p) == 1 else None)(s.pids_titled("worker")),
                       10, what="one worker")
        with unix_connection(path) as c:        # warm: the app's first request
            c.send(get("/blocks?n=2&size=16"))
            assert c.response()[0] == 200
        hwm0 = kb(pid, "VmHWM")
        want = b"".join(block(i, BLOCK) for i in range(NBLOCKS))
        clients = []
        try:
            for _ in range(CLIENTS):
                c = unix_connection(path, timeout=60)
                c.send(get("/blocks?n=%d&size=%d&timeout=120" % (NBLOCKS, BLOCK)))
                clients.append(c)
            wait_for(lambda: status(s)["in_flight"] == 0, 60,
                     what="every stream produced")
            rss = settled_rss(pid)
            print("worker RSS %d kB at start, %d kB with %d clients not reading"
                  % (hwm0, rss, CLIENTS))
            for i, c in enumerate(clients):
                status_, headers, body = c.response()
                assert status_ == 200, i
                assert len(body) == len(want) and body == want, i
                c.close()
        finally:
            for c in clients:
                c.close()
        hwm = kb(pid, "VmHWM")
        print("worker peak RSS %d kB -> %d kB (+%d MiB)" % (hwm0, hwm, (hwm - hwm0) // 1024))
        # the total; per relay a chunk, what it read of its stream (64
        # KiB) and its connection's buffer (16 KiB); 20 MiB of the rest
        per_relay = BLOCK + (64 << 10) + (16 << 10)
        bound = DATA_LIMIT // 4 + CLIENTS * per_relay + 20 * MiB
        # ... less than the relays' own 256 KiB each would be (a check of
        # this test's parameters, not of the server: the bound below must
        # tell a shared total from none)
        assert bound < CLIENTS * ((256 << 10) + per_relay)
        assert (hwm - hwm0) * 1024 < bound, (hwm0, hwm)
        assert s.pids_titled("worker") == [pid]
        assert "WORKER TIMEOUT" not in s.log()
    finally:
        shutil.rmtree(s.unix_dir, ignore_errors=True)
