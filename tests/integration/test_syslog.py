"""gunicorn's syslog settings (src/log_syslog.c), through the real binary
and receivers of the test's own: a UDP socket on loopback, unix datagram
and stream sockets in a temporary directory, a TCP listener.

A message is what gunicorn's handler sends: "<PRI>gunicorn.PREFIX.error:
[PID] MESSAGE" and a NUL, PRI the facility * 8 + the line's severity,
PREFIX syslog_prefix or else proc_name with ':' made '.'; the access
log's lines go too (".access", INFO) unless
disable_redirect_access_to_syslog.  Every process sends (the master, its
workers), and the error log and access log files get their lines as
before.  A bad facility or address is one "Error:" line at start.  A
receiver that goes away, or stops reading, never stops the server:
lines are dropped and counted, and once the receiver is back a WARNING
says how many were lost.

Apps: tests/integration/apps/syslog_apps.py.
"""
import concurrent.futures
import fcntl
import os
import re
import shutil
import signal
import socket
import struct
import tempfile
import termios
import threading
import time

import pytest

from conftest import ROOT, http_get, start_to_exit, wait_for

APPS = os.path.join(ROOT, "tests", "integration", "apps")
APP = "syslog_apps:application"
TAG = "gunicorn.syslog_apps.application"      # proc_name, ':' made '.'
MSG = re.compile(rb"<(\d+)>([^ ]+): \[(\d+)\] (.*)", re.S)
FACILITY = {"user": 1, "daemon": 3, "local3": 19}
SEVERITY = {"CRITICAL": 2, "ERROR": 3, "WARNING": 4, "INFO": 6, "DEBUG": 7}


def parse(raw):
    """(priority, tag, pid, text) of one message, which must end with its
    NUL and nothing else."""
    assert raw.endswith(b"\0") and b"\0" not in raw[:-1], raw
    m = MSG.fullmatch(raw[:-1])
    assert m, raw
    return int(m.group(1)), m.group(2).decode(), int(m.group(3)), m.group(4).decode()


class Receiver:
    """Messages that arrived, in order; `poll` reads what is there."""

    def __init__(self):
        self.raw = []

    def messages(self):
        self.poll()
        return [parse(r) for r in self.raw]

    def find(self, needle, timeout=10):
        """The first message whose text contains needle (waiting for it)."""
        def look():
            for m in self.messages():
                if needle in m[3]:
                    return m
            return None
        return wait_for(look, timeout, what="a syslog message with %r" % needle)


class Datagrams(Receiver):
    def __init__(self, family, address):
        super().__init__()
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.setblocking(False)

    def poll(self):
        while True:
            try:
                self.raw.append(self.sock.recv(1 << 16))
            except BlockingIOError:
                return

    def close(self):
        self.sock.close()


class Stream(Receiver):
    """A listener: each process that logs connects on its own; messages
    are ended by a NUL."""

    def __init__(self, family, address):
        super().__init__()
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.bind(address)
        self.sock.listen(16)
        self.sock.setblocking(False)
        self.conns = []
        self.bufs = {}

    def poll(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except BlockingIOError:
                break
            c.setblocking(False)
            self.conns.append(c)
            self.bufs[c] = b""
        for c in self.conns:
            while True:
                try:
                    b = c.recv(1 << 16)
                except BlockingIOError:
                    break
                if not b:
                    break
                self.bufs[c] += b
            *whole, self.bufs[c] = self.bufs[c].split(b"\0")
            self.raw += [w + b"\0" for w in whole]

    def close(self):
        for c in self.conns:
            c.close()
        self.sock.close()


@pytest.fixture
def sockdir():
    """A short directory for unix sockets (sun_path holds 108 bytes)."""
    d = tempfile.mkdtemp(prefix="cu-syslog-", dir="/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def serve(make_server, *extra):
    return make_server("--chdir", APPS, "-w", "1", *extra, APP)


def worker_pid(s):
    return wait_for(lambda: (lambda p: p[0] if len(p) == 1 else None)(s.pids_titled("worker")),
                    10, what="one worker")


def test_udp_error_and_access_lines(make_server):
    """udp://127.0.0.1:PORT, facility local3, log level debug: the
    master's and the worker's lines, each at its severity (INFO, DEBUG,
    ERROR with its traceback in the same message), and the access log's
    line; the error log and the access log get theirs too."""
    r = Datagrams(socket.AF_INET, ("127.0.0.1", 0))
    try:
        port = r.sock.getsockname()[1]
        s = serve(make_server, "--log-syslog", "--log-syslog-to", "udp://127.0.0.1:%d" % port,
                  "--log-syslog-facility", "local3", "--log-level", "debug",
                  "--access-logfile", "-")
        wid = worker_pid(s)
        assert http_get(s.port, "/")[0] == 200
        assert http_get(s.port, "/boom")[0] == 500
        pri, tag, pid, text = r.find("Listening at: ")
        assert (pri, tag, pid) == (19 * 8 + 6, TAG + ".error", s.pid)
        assert r.find("Booting worker with pid: %d" % wid)[:3] == (158, TAG + ".error", wid)
        pri, tag, pid, text = r.find("Current configuration")
        assert (pri, pid) == (19 * 8 + 7, s.pid) and "\n" in text
        pri, tag, pid, text = r.find("Error handling request /boom")
        assert (pri, tag, pid) == (19 * 8 + 3, TAG + ".error", wid)
        assert "Traceback" in text and "RuntimeError: boom for syslog" in text
        pri, tag, pid, text = r.find('"GET / HTTP/1.1" 200 3')
        assert (pri, tag, pid) == (158, TAG + ".access", wid)
        assert not text.endswith("\n")
        # the files get their lines as before
        wait_for(lambda: '"GET / HTTP/1.1" 200 3' in s.out(), 10, what="the access log's line")
        assert "Error handling request /boom" in s.log()
        assert "] syslog: " not in s.log()
    finally:
        r.close()


@pytest.mark.parametrize("dgram", [False, True], ids=["unix", "unix#dgram"])
def test_unix_datagrams_prefix_and_no_access(make_server, sockdir, dgram):
    """unix://PATH (a datagram receiver there: the socket is one) and
    unix://PATH#dgram; syslog_prefix from a config file; facility daemon;
    disable_redirect_access_to_syslog keeps the access lines out (the
    access log file has them); a worker timeout is CRITICAL."""
    path = os.path.join(sockdir, "log")
    r = Datagrams(socket.AF_UNIX, path)
    try:
        conf = os.path.join(sockdir, "conf.py")
        with open(conf, "w") as f:
            f.write("syslog = True\nsyslog_addr = 'unix://%s%s'\nsyslog_prefix = 'web'\n"
                    "syslog_facility = 'DAEMON'\ndisable_redirect_access_to_syslog = True\n"
                    % (path, "#dgram" if dgram else ""))
        access = os.path.join(sockdir, "access.log")
        s = serve(make_server, "-c", conf, "--access-logfile", access, "--timeout", "1")
        wid = worker_pid(s)
        assert r.find("Booting worker with pid: %d" % wid)[:3] == (3 * 8 + 6, "gunicorn.web.error", wid)
        assert http_get(s.port, "/")[0] == 200
        wait_for(lambda: os.path.exists(access) and "GET / " in open(access).read(), 10,
                 what="the access log file's line")
        try:
            http_get(s.port, "/sleep?s=5", timeout=8)
        except OSError:
            pass
        pri, tag, pid, text = r.find("WORKER TIMEOUT (pid:%d)" % wid)
        assert (pri, tag, pid) == (3 * 8 + 2, "gunicorn.web.error", s.pid)
        assert not any(m[1].endswith(".access") for m in r.messages())
    finally:
        r.close()


@pytest.mark.parametrize("kind", ["unix", "tcp"])
def test_stream_receivers(make_server, sockdir, kind):
    """A stream receiver: unix://PATH where the socket is a stream one (a
    datagram socket cannot connect to it: the stream one is used, as
    gunicorn's handler does), and tcp://127.0.0.1:PORT.  Every process
    connects on its own: the messages of the master and the worker
    arrive whole, each ended by its NUL, on two connections."""
    if kind == "unix":
        path = os.path.join(sockdir, "log")
        r = Stream(socket.AF_UNIX, path)
        addr = "unix://" + path
    else:
        r = Stream(socket.AF_INET, ("127.0.0.1", 0))
        addr = "tcp://127.0.0.1:%d" % r.sock.getsockname()[1]
    try:
        s = serve(make_server, "--log-syslog", "--log-syslog-to", addr)
        wid = worker_pid(s)
        assert r.find("Listening at: ")[:3] == (8 + 6, TAG + ".error", s.pid)
        assert r.find("Booting worker with pid: %d" % wid)[2] == wid
        for i in range(20):
            assert http_get(s.port, "/?n=%d" % i)[0] == 200
        r.find('"GET /?n=19 HTTP/1.1" 200')
        access = [m for m in r.messages() if m[1] == TAG + ".access"]
        assert len(access) == 20 and all(m[2] == wid for m in access)
        assert len(r.conns) >= 2
    finally:
        r.close()


@pytest.mark.parametrize("dgram", [False, True], ids=["stream", "dgram"])
def test_the_dirty_arbiter_and_its_workers_send_too(make_server, sockdir, dgram):
    """The dirty arbiter closes every descriptor it does not own, but
    not syslog's: its lines and its dirty worker's arrive, over a stream
    of each one's own or the shared datagram socket."""
    from streamkit import arbiter_pid, dirty_workers, start
    path = os.path.join(sockdir, "log")
    r = (Datagrams if dgram else Stream)(socket.AF_UNIX, path)
    try:
        s = start(make_server, "syslog", extra=("--log-syslog", "--log-syslog-to",
                                                "unix://" + path))
        arb = arbiter_pid(s)
        dw = dirty_workers(s)[0]
        assert r.find("Dirty arbiter starting")[2] == arb
        assert r.find("Initialized dirty app")[2] == dw
        assert http_get(s.port, "/")[0] == 200
    finally:
        r.close()


@pytest.mark.parametrize("args,needle", [
    (["--log-syslog-facility", "loud"], "Invalid value for syslog_facility: loud"),
    (["--log-syslog", "--log-syslog-to", "syslog.example:514"],
     "Invalid value for syslog_addr"),
    (["--log-syslog", "--log-syslog-to", "udp://127.0.0.1:http"],
     "Invalid value for syslog_addr"),
    (["--log-syslog", "--log-syslog-to", "unix://"], "Invalid value for syslog_addr"),
    (["--log-syslog", "--log-syslog-to", "udp://no-such-host.invalid:514"],
     "Error: syslog_addr udp://no-such-host.invalid:514: cannot resolve"),
    (["--log-syslog-prefix", "web\x01"],
     "Invalid value for syslog_prefix: web\\x01 (only printable ASCII characters)"),
    (["--log-syslog-prefix", "web\u00e9"],
     "(only printable ASCII characters)"),
    (["--log-syslog-prefix", "p" * 201], "Invalid value for syslog_prefix: %s (too long)" % ("p" * 201)),
])
def test_a_bad_facility_address_or_prefix_is_a_config_error(args, needle):
    code, log, left = start_to_exit("--chdir", APPS, *args, APP)
    assert code not in (0, None), log
    errors = [ln for ln in log.splitlines() if ln.startswith("Error")]
    assert len(errors) == 1 and needle in errors[0], log
    assert "Traceback" not in log
    assert not left


def test_a_receiver_that_goes_away_does_not_stop_the_server(make_server, sockdir):
    """The unix datagram receiver closes (its socket gone): requests are
    answered at once meanwhile, one WARNING says syslog cannot be sent
    to; a new receiver at the same path gets the lines again (tried
    again at most once a second), and a WARNING counts the lines lost."""
    path = os.path.join(sockdir, "log")
    r = Datagrams(socket.AF_UNIX, path)
    s = serve(make_server, "-k", "gthread", "--threads", "2", "--log-syslog",
              "--log-syslog-to", "unix://" + path)
    wid = worker_pid(s)
    r.find("Booting worker with pid: %d" % wid)
    r.close()
    os.unlink(path)
    try:
        t0 = time.monotonic()
        for i in range(30):
            assert http_get(s.port, "/?gone=%d" % i, timeout=5)[0] == 200
        assert time.monotonic() - t0 < 5
        wait_for(lambda: "syslog: cannot send to unix://" in s.log(), 10, what="the warning")
        r = Datagrams(socket.AF_UNIX, path)
        # lines come again once the worker tries again
        def back():
            http_get(s.port, "/?back=1")
            return any('"GET /?back=1 ' in m[3] for m in r.messages())
        wait_for(back, 15, interval=0.2, what="the lines to come again")
        pri, tag, pid, text = r.find("syslog: ")
        assert re.search(r"syslog: \d+ lines lost: unix://", text), text
        assert pid == wid and pri == 8 + 4       # WARNING
        assert s.pids_titled("worker") == [wid]
    finally:
        r.close()


def test_a_receiver_that_stops_reading_does_not_stall_the_server(make_server, sockdir):
    """A unix datagram receiver that reads nothing (its queue fills):
    the first line to find no room waits at most a second, later ones do
    not wait; the requests are answered in a few seconds.  Once it reads
    again the lines go through, a WARNING first counting those lost.
    Each access line is 4 KiB, and there are enough of them to fill the
    sender's buffer (net.core.wmem_default) whatever the receiver's
    queue takes (net.unix.max_dgram_qlen): some lines are lost either
    way."""
    path = os.path.join(sockdir, "log")
    with open("/proc/sys/net/core/wmem_default") as f:
        n = max(100, int(f.read()) // 4096 + 50)
    pad = {"Referer": "r" * 4000}
    r = Datagrams(socket.AF_UNIX, path)
    try:
        s = serve(make_server, "-k", "gthread", "--threads", "2", "--log-syslog",
                  "--log-syslog-to", "unix://%s#dgram" % path)
        wid = worker_pid(s)
        r.find("Booting worker with pid: %d" % wid)
        t0 = time.monotonic()
        for i in range(n):
            assert http_get(s.port, "/?full=%d" % i, headers=pad, timeout=5)[0] == 200
        took = time.monotonic() - t0
        assert took < 8 + n * 0.02, took
        r.poll()        # the queue's lines, then room again
        def back():
            http_get(s.port, "/?after=1")
            return any('"GET /?after=1 ' in m[3] for m in r.messages())
        wait_for(back, 10, interval=0.2, what="the lines to go through again")
        assert re.search(r"syslog: \d+ lines lost", r.find("lines lost")[3])
        got = [m for m in r.messages() if "GET /?full=" in m[3]]
        assert 0 < len(got) < n, len(got)
    finally:
        r.close()


def test_hup_turns_syslog_on(make_server, sockdir):
    """syslog set in the config file and the master told to reload: the
    new worker's lines go there."""
    path = os.path.join(sockdir, "log")
    r = Datagrams(socket.AF_UNIX, path)
    try:
        conf = os.path.join(sockdir, "conf.py")
        with open(conf, "w") as f:
            f.write("workers = 1\n")
        s = serve(make_server, "-c", conf)
        old = worker_pid(s)
        with open(conf, "w") as f:
            f.write("workers = 1\nsyslog = True\nsyslog_addr = 'unix://%s'\n" % path)
        s.send(signal.SIGHUP)
        pri, tag, pid, text = r.find("Booting worker with pid: ", timeout=15)
        assert pid != old and tag == TAG + ".error"
        assert http_get(s.port, "/")[0] == 200
        r.find('"GET / HTTP/1.1" 200')
    finally:
        r.close()


class SlowStream:
    """A unix stream receiver that is slow but never stops: a thread of
    its own accepts every connection and reads 4 KiB from each every
    half second (8 KiB/s), whatever the test does; `unread` says how
    many bytes wait in its connections."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(16)
        self.sock.setblocking(False)
        self.conns = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _accept(self):
        while True:
            try:
                self.conns.append(self.sock.accept()[0])
            except BlockingIOError:
                return

    def _run(self):
        while not self.stop.wait(0.5):
            with self.lock:
                self._accept()
                for c in self.conns:
                    try:
                        c.recv(4096, socket.MSG_DONTWAIT)
                    except OSError:
                        pass

    def unread(self):
        with self.lock:
            self._accept()
            return sum(struct.unpack("i", fcntl.ioctl(c, termios.FIONREAD, b"\0" * 4))[0]
                       for c in self.conns)

    def close(self):
        self.stop.set()
        self.thread.join(5)
        for c in self.conns:
            c.close()
        self.sock.close()


def test_a_slow_receiver_does_not_hold_the_other_threads(make_server, sockdir):
    """A stream receiver that reads, but slowly: once the socket's
    buffer is full, an access line waits for room, a second at most from
    the call, the wait for syslog's lock included.  It waits without the
    GIL: 8 requests at once on a gthread worker of 8 threads, each with
    a 3 KB access line, are answered at once (before, each line's wait
    held the GIL, the threads' lines queued for syslog's lock, and the
    requests went one after the other: 0, 1, 1, 1, 2, 2, 3, 3 s)."""
    path = os.path.join(sockdir, "log")
    r = SlowStream(path)
    try:
        s = serve(make_server, "-k", "gthread", "--threads", "8", "--log-syslog",
                  "--log-syslog-to", "unix://" + path)
        worker_pid(s)
        pad = {"Referer": "r" * 3000}

        def timed(i):
            t0 = time.monotonic()
            assert http_get(s.port, "/?slow=%d" % i, headers=pad, timeout=20)[0] == 200
            return time.monotonic() - t0

        # one after the other until the buffer is full: the bytes
        # waiting for the receiver no longer grow (or a request is slow)
        unread = []
        for i in range(400):
            slow = timed(i) > 0.2
            unread.append(r.unread())
            if slow or (i >= 10 and 0 < unread[-1] <= unread[-11]):
                break
        else:
            pytest.fail("the receiver's buffer never filled: %r" % unread[-20:])
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            took = sorted(pool.map(timed, range(1000, 1008)))
        assert took[-1] < 1.5, took
    finally:
        r.close()
