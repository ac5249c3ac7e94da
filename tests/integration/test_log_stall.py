"""A log whose reader stalls must not stall the server (log.c's header):
pipes, FIFOs, sockets and terminals are written without blocking, a line
waits at most a second for room, then lines are dropped and counted until
the reader reads again, and a WARNING says how many were lost.
wsgi.errors goes through the same path, without the GIL.

The error log is a FIFO the test reads, then stops reading: one request
writes 2 MB to wsgi.errors (the FIFO holds 64 KiB); another request on
the same gthread worker must still be answered.  Before, the first
request's write blocked holding the GIL and the worker answered nothing
until the reader came back.  Then the reader drains and the server logs
again, first the count of lost lines.

The non-blocking descriptors follow a dup2 over a log's descriptor:
--capture-output with the access log on stdout, stdout a pipe.

Apps: tests/integration/apps/errlog_apps.py.
"""
import concurrent.futures
import fcntl
import os
import signal
import subprocess
import time

from conftest import BINARY, ROOT, free_port, http_get, port_open, wait_for

APPS = os.path.join(ROOT, "tests", "integration", "apps")


class Reader:
    """The FIFO's reading end; reads only when asked to."""

    def __init__(self, path):
        self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        self.text = b""

    def drain(self):
        while True:
            try:
                b = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                return self.text
            if not b:
                return self.text
            self.text += b

    def has(self, what):
        return what in self.drain()


def test_stalled_error_log_reader_does_not_stall_the_worker(make_server, tmp_path):
    fifo = str(tmp_path / "error.fifo")
    os.mkfifo(fifo)
    r = Reader(fifo)        # a reader first: the server's open succeeds
    try:
        s = make_server("--chdir", APPS, "-w", "1", "-k", "gthread", "--threads", "4",
                        "--error-logfile", fifo, "errlog_apps:application")
        st, _, body = http_get(s.port, "/ok")
        assert st == 200
        wait_for(lambda: r.has(b"Booting worker"), 10, what="the worker's boot line")
        # the reader stops reading; 10,000 lines of ~215 bytes follow
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            spam = pool.submit(http_get, s.port, "/spam?n=10000&size=200", timeout=30)
            time.sleep(0.5)                         # the pipe is full by now
            t0 = time.monotonic()
            st, _, body = http_get(s.port, "/ok", timeout=20)
            took = time.monotonic() - t0
            assert (st, body) == (200, b"ok\n")
            print("/ok answered in %.3f s while the log was stalled" % took)
            assert took < 10
            st, _, body = spam.result(timeout=30)
            assert (st, body) == (200, b"spammed 10000\n")
        # the reader is back: the server logs again, the loss counted first
        r.drain()
        r.text = b""
        st, _, body = http_get(s.port, "/spam?n=1&size=5")
        assert st == 200
        wait_for(lambda: r.has(b"spam 000000 eeeee\n"), 10, what="the new line")
        assert b"lines dropped: the error log's reader did not read for 1000 ms" in r.text, \
            r.text[-2000:]
        assert s.proc.poll() is None
    finally:
        os.close(r.fd)


def test_capture_output_moves_a_piped_access_log(tmp_path):
    """--capture-output puts the error log's file on stdout and stderr, so
    an access log on stdout ("-") goes to that file.  With stdout a pipe,
    the access log's non-blocking descriptor (opened from stdout) must
    follow the dup2, not keep writing to the pipe."""
    errlog = str(tmp_path / "error.log")
    port = free_port()
    env = dict(os.environ, PYTHONPATH=ROOT, PYTHONDONTWRITEBYTECODE="1")
    env.pop("GUNICORN_CMD_ARGS", None)
    p = subprocess.Popen([BINARY, "-b", "127.0.0.1:%d" % port, "--chdir", APPS, "-w", "1",
                          "--capture-output", "--error-logfile", errlog,
                          "--access-logfile", "-", "errlog_apps:application"],
                         cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: port_open(port), 15, what="the server")
        st, _, _ = http_get(port, "/ok?capture")
        assert st == 200
        wait_for(lambda: '"GET /ok?capture' in open(errlog).read(), 10,
                 what="the access line in the error log")
    finally:
        os.killpg(p.pid, signal.SIGTERM)
        out, _ = p.communicate(timeout=30)
    assert b"GET /ok?capture" not in out, out


def test_a_line_cut_by_a_stall_does_not_glue_the_next(make_server, tmp_path):
    """A line longer than the pipe's room is written in part, then dropped
    when the reader does not read for a second: the next line written must
    begin on a line of its own, not after the head of the lost one."""
    fifo = str(tmp_path / "error.fifo")
    os.mkfifo(fifo)
    r = Reader(fifo)
    try:
        s = make_server("--chdir", APPS, "-w", "1", "-k", "gthread", "--threads", "2",
                        "--error-logfile", fifo, "errlog_apps:application")
        assert http_get(s.port, "/ok")[0] == 200
        wait_for(lambda: r.has(b"Booting worker"), 10, what="the worker's boot line")
        r.drain()
        # one page of room: a 10,000-byte line goes in part, then waits
        fcntl.fcntl(r.fd, fcntl.F_SETPIPE_SZ, 4096)
        st, _, body = http_get(s.port, "/spam?n=1&size=10000", timeout=20)
        assert (st, body) == (200, b"spammed 1\n")
        r.text = b""
        r.drain()
        assert r.text.startswith(b"spam 000000 eee") and b"\n" not in r.text, r.text[:100]
        r.text = b""
        st, _, body = http_get(s.port, "/spam?n=1&size=5")
        assert st == 200
        wait_for(lambda: r.has(b"spam 000000 eeeee\n"), 10, what="the next line")
        assert r.text.startswith(b"\nspam 000000 eeeee\n"), r.text[:200]
    finally:
        os.close(r.fd)
