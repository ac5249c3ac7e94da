#!/usr/bin/python3
"""Dirty call cost: round trip µs/call and calls/s from a Python client
(the standalone extension: PYTHONPATH=python:build/python) against a running
cunicorn's dirty arbiter, beside a raw Unix-socket ping-pong floor measured
in the same run with the same hop count (client -> relay -> echo -> relay ->
client, as client -> arbiter -> dirty worker and back); and HTTP requests/s
for an endpoint making one dirty call vs hello world.

  bench/dirty.py [CALLS]      default 20000 calls (BENCH_CALLS)

BENCH_DIRTY_THREADS=N runs the dirty worker with --dirty-threads N
(default 1: the worker serves on its main thread; N > 1: a pool of N).

The socket path is the one the master logs at start-up ("Spawned dirty
arbiter (pid: N) at PATH").  Prints figures; asserts nothing.
"""

import os
import re
import socket
import subprocess
import sys
import tempfile
import time

from common import BENCH, BUILD, PYTHON, ROOT, Proc, fmt, free_port, have, wrk

CALLS = int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ.get("BENCH_CALLS", "20000"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "5"))
DIRTY_THREADS = int(os.environ.get("BENCH_DIRTY_THREADS", "1"))

# Runs in a child Python with the client package on its path.
CLIENT = r'''
import os, sys, time
from gunicorn.dirty import get_dirty_client
n, payload = int(sys.argv[1]), sys.argv[2]
c = get_dirty_client(timeout=30)
app = "hello:BenchDirtyApp"
arg = "x" * int(payload)
for _ in range(200):
    c.execute(app, "echo", arg)
t0 = time.perf_counter()
for _ in range(n):
    c.execute(app, "echo", arg)
dt = time.perf_counter() - t0
print("%.3f" % (dt / n * 1e6))
'''


def floor(n, size):
    """µs per round trip through two hops of Unix stream sockets."""
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    relay = os.fork()
    if relay == 0:
        a.close(); d.close()
        try:
            while True:
                m = b.recv(65536)
                if not m:
                    break
                c.sendall(m)
                need = len(m)
                while need:
                    r = c.recv(65536)
                    b.sendall(r)
                    need -= len(r)
        finally:
            os._exit(0)
    echo = os.fork()
    if echo == 0:
        a.close(); b.close(); c.close()
        try:
            while True:
                m = d.recv(65536)
                if not m:
                    break
                d.sendall(m)
        finally:
            os._exit(0)
    b.close(); c.close(); d.close()
    msg = b"x" * size

    def rt():
        a.sendall(msg)
        got = 0
        while got < size:
            got += len(a.recv(65536))
    for _ in range(200):
        rt()
    t0 = time.perf_counter()
    for _ in range(n):
        rt()
    dt = time.perf_counter() - t0
    a.close()
    os.waitpid(relay, 0)
    os.waitpid(echo, 0)
    return dt / n * 1e6


def main():
    cun = os.path.join(BUILD, "cunicorn")
    if not os.access(cun, os.X_OK):
        print("build/cunicorn missing (make): n/a")
        return 1
    rtdir = tempfile.mkdtemp(prefix="cub-", dir="/tmp")
    port = free_port()
    p = Proc([cun, "-w", "2", "-b", "127.0.0.1:%d" % port, "--dirty-app", "hello:BenchDirtyApp",
              "--dirty-workers", "1", "--dirty-threads", str(DIRTY_THREADS), "hello:application"], port, cwd=BENCH,
             env={"XDG_RUNTIME_DIR": rtdir})
    try:
        if not p.ok:
            print("cunicorn did not start:\n" + p.log()[-2000:])
            return 1
        m = None
        deadline = time.monotonic() + 10
        while m is None and time.monotonic() < deadline:
            m = re.search(r"Spawned dirty arbiter \(pid: \d+\) at (\S+)", p.log())
            time.sleep(0.05)
        if not m:
            print("no 'Spawned dirty arbiter ... at PATH' line in the log")
            return 1
        sock = m.group(1)
        env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "python") + ":" + os.path.join(BUILD, "python"),
                   GUNICORN_DIRTY_SOCKET=sock)
        env.pop("PYTHONHOME", None)
        ext = [f for f in os.listdir(os.path.join(BUILD, "python"))] if os.path.isdir(os.path.join(BUILD, "python")) else []
        print("dirty calls, 1 dirty worker (%d dirty thread%s), Python client (%s), %d calls each" %
              (DIRTY_THREADS, "" if DIRTY_THREADS == 1 else "s",
               "standalone extension" if ext else "NO build/python: run make ext", CALLS))
        print("%-34s %12s %12s %14s" % ("", "µs/call", "calls/s", "floor µs/rt"))
        for size in (16, 1024, 65536):
            n = CALLS if size < 65536 else max(CALLS // 10, 100)
            r = subprocess.run([PYTHON, "-c", CLIENT, str(n), str(size)], env=env,
                               capture_output=True, text=True)
            us = float(r.stdout.strip()) if r.returncode == 0 and r.stdout.strip() else None
            fl = floor(n, size + 64)
            print("%-34s %12s %12s %14s" % ("echo(%d-byte str)" % size, fmt(us, "%.1f"),
                                            fmt(1e6 / us if us else None),
                                            fmt(fl, "%.1f")))
            if us is None:
                print("  client failed: " + (r.stderr.strip().splitlines() or ["?"])[-1])
        if have("wrk"):
            print()
            print("HTTP, 2 workers, wrk -t2 -c32 -d%ds -H 'Connection: close'" % SECONDS)
            for path in ("/", "/dirty"):
                url = "http://127.0.0.1:%d%s" % (port, path)
                wrk(url, seconds=1)
                rps, non2xx, se = wrk(url, seconds=SECONDS)
                print("%-34s %12s req/s%s" % ("GET " + path + (" (one dirty call)" if path != "/" else " (hello)"),
                                             fmt(rps), ("   non-2xx: %d" % non2xx) if non2xx else ""))
        else:
            print("wrk not installed: HTTP figures n/a")
    finally:
        p.stop()
        subprocess.run(["rm", "-rf", rtdir])
    return 0


if __name__ == "__main__":
    sys.exit(main())
