"""Apps that set SIGPIPE back to SIG_DFL (some libraries do) must not turn
a peer that left into the death of one of our processes: every socket
write of ours says MSG_NOSIGNAL (util.h: send_full), and sendfile, which
has no such flag, runs with SIGPIPE blocked and a pending one taken back.

- HTTP workers (sync and gthread): a client over a unix socket that reads
  a little of an 8 MiB body and closes.  The worker's next write is an
  EPIPE; before, SIGPIPE killed it ("terminated due to signal 13") and
  the master booted another.  Body from a list (sendmsg) and from
  wsgi.file_wrapper (sendfile).
- the dirty worker (dirty_threads 2: replies go through the write lock):
  an action that stops the arbiter (so that it does not see the EOF and
  kill the worker first) and shuts its channel to it for writing; the
  reply write is an EPIPE, and the worker waits for the arbiter instead
  of dying of signal 13 (the arbiter, resumed, sees the EOF and replaces
  it).  (A dirty worker whose arbiter is killed dies of
  its parent-death signal, SIGKILL, whatever it writes: the channel cut
  from its own side is the way to have it write to a gone peer.)

Apps: tests/integration/apps/sigpipe_apps.py.
"""
import os
import signal
import socket
import time

import pytest

from conftest import ROOT, http_get, wait_for
import dirty_raw as d
from test_dirty_arbiter import start, unique_name

APPS = os.path.join(ROOT, "tests", "integration", "apps")


def _worker_pid(s):
    st, _, body = http_get(s.port, "/pid")
    assert st == 200
    return int(body)


@pytest.mark.parametrize("path", ["/big", "/file"])
@pytest.mark.parametrize("worker", ["sync", "gthread"])
def test_http_worker_survives_a_client_leaving_mid_body(make_server, tmp_path, worker, path):
    sock = str(tmp_path / "s.sock")
    s = make_server("--chdir", APPS, "-w", "1", "-k", worker, "-b", "unix:" + sock,
                    "sigpipe_apps:application")
    pid = _worker_pid(s)
    for _ in range(3):
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.settimeout(10)
        c.connect(sock)
        c.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert c.recv(4096).startswith(b"HTTP/1.1 200")
        c.close()               # 8 MiB left to write to nobody
        time.sleep(0.3)
    assert _worker_pid(s) == pid, s.log()[-3000:]
    assert "signal 13" not in s.log()


def _state(pid):
    with open("/proc/%d/stat" % pid) as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def test_dirty_worker_reply_to_a_cut_channel_is_not_sigpipe(make_server):
    s = start(make_server, unique_name("sigpipe"), workers=1, apps=("sigpipe_apps:Dirty",),
              extra=("--dirty-threads", "2"), cwd=APPS)
    for i in range(2):
        old = d.dirty_workers(s)
        c = d.Conn(s.sock)
        try:
            c.send(d.request(1, "sigpipe_apps:Dirty", "cut"))
            wait_for(lambda: _state(s.arbiter) == "T", 10, what="the arbiter stopped")
            time.sleep(0.3)     # the reply is written meanwhile: EPIPE, or SIGPIPE before
        finally:
            os.kill(s.arbiter, signal.SIGCONT)
            c.close()
        s.wait_log("Dirty worker (pid: %d)" % old[0], 10)
        wait_for(lambda: len(d.dirty_workers(s)) == 1 and d.dirty_workers(s) != old,
                 15, what="a replacement")
    assert "killed by signal 13" not in s.log(), s.log()[-3000:]


@pytest.mark.parametrize("worker", ["sync", "gthread"])
def test_a_log_pipe_whose_reader_left_is_not_sigpipe(make_server, tmp_path, worker):
    """The access and error logs on a FIFO whose reader goes away (a
    `docker logs`-like reader that exits): the worker's next log line is
    an EPIPE and the line is lost; before, with the app's SIGPIPE at
    SIG_DFL, the line killed the worker."""
    fifo = str(tmp_path / "log.fifo")
    os.mkfifo(fifo)
    r = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)    # a reader: the open succeeds
    try:
        s = make_server("--chdir", APPS, "-w", "1", "-k", worker, "--error-logfile", fifo,
                        "--access-logfile", fifo, "--log-level", "debug",
                        "sigpipe_apps:application")
        pid = _worker_pid(s)
    finally:
        os.close(r)             # nobody reads any more
    for _ in range(5):
        assert _worker_pid(s) == pid        # each answered, each access line an EPIPE
    assert s.proc.poll() is None
