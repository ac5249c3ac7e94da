#!/usr/bin/python3
"""Streaming and stash figures (issue 5 targets) against a running
cunicorn, from Python clients using the standalone extension
(PYTHONPATH=python:build/python):

  - stash get / put: µs per op, one op at a time (stash.put / stash.get)
  - small-chunk streaming: chunks/s from one dirty worker to one client
    (client.stream over a generator yielding small ints)
  - time to first chunk at an HTTP client (raw socket, chunked response of
    a WSGI app returning client.stream(...)) vs the generator's own delay
    before its first yield: median and max over RUNS
  - the dirty arbiter's memory with 1 million small keys in one table
    (private memory growth, smaps_rollup) vs their encoded size (the
    key's and the value's TLV bytes)

  bench/stream_stash.py [OPS]     default 20000 stash ops (BENCH_OPS)

Targets (issue 5): first chunk <= delay + 5 ms; >= 100,000 chunks/s;
stash op <= 30 µs; 1M keys in < 2x their encoded size.

A one-op round trip is bound by the cost of waking the other process: the
stash ops are also measured with the server and the client pinned to one
CPU (taskset -c 0), each beside a bare Python one-hop socket ping-pong
between two processes measured the same way (the floor).
Prints figures; asserts nothing.
"""

import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from common import BENCH, BUILD, PYTHON, ROOT, Proc, fmt, free_port

OPS = int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ.get("BENCH_OPS", "20000"))
CHUNKS = int(os.environ.get("BENCH_CHUNKS", "300000"))
KEYS = int(os.environ.get("BENCH_KEYS", "1000000"))
RUNS = int(os.environ.get("BENCH_RUNS", "20"))
DELAY = 0.05
APP = "stream_stash_app:StreamBench"

# Runs in a child Python with the client package on its path.
STASH_CLIENT = r'''
import sys, time
from gunicorn.dirty import stash
n = int(sys.argv[1])
keys = ["key:%06d" % i for i in range(n)]
for k in keys[:500]:
    stash.put("bench", k, 1)
t0 = time.perf_counter()
for i, k in enumerate(keys):
    stash.put("bench", k, i)
put = (time.perf_counter() - t0) / n * 1e6
t0 = time.perf_counter()
for k in keys:
    stash.get("bench", k)
get = (time.perf_counter() - t0) / n * 1e6
print("%.3f %.3f" % (put, get))
'''

STREAM_CLIENT = r'''
import sys, time
from gunicorn.dirty import get_dirty_client
n = int(sys.argv[1])
c = get_dirty_client(timeout=300)
app = "stream_stash_app:StreamBench"
for _ in c.stream(app, "small", 2000):
    pass
t0 = time.perf_counter()
got = 0
for _ in c.stream(app, "small", n):
    got += 1
dt = time.perf_counter() - t0
assert got == n
print("%.1f" % (n / dt))
'''

MEM_CLIENT = r'''
import socket, struct, sys
import _cunicorn_dirty as w
path, n = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_UNIX); s.connect(path)
data, B = 0, 5000
for start in range(0, n, B):
    frames = []
    for i in range(start, min(n, start + B)):
        k = "key:%07d" % i
        data += len(w.encode(k)) + len(w.encode(i))
        frames.append(w.encode_frame(0x10, i + 1, {"op": 1, "table": "mem", "key": k, "value": i}))
    s.sendall(b"".join(frames))
    left, buf = len(frames), b""
    while left:
        while len(buf) < 16:
            buf += s.recv(1 << 20)
        ln = struct.unpack(">I", buf[4:8])[0]
        while len(buf) < 16 + ln:
            buf += s.recv(1 << 20)
        assert buf[3] == 0x02
        buf = buf[16 + ln:]
        left -= 1
print(data)
'''


PINGPONG = r'''
import os, socket, time
a, b = socket.socketpair()
pid = os.fork()
if pid == 0:
    a.close()
    while True:
        m = b.recv(64)
        if not m:
            os._exit(0)
        b.sendall(m)
b.close()
for _ in range(500):
    a.sendall(b"x"); a.recv(64)
n = 20000
t0 = time.perf_counter()
for _ in range(n):
    a.sendall(b"x"); a.recv(64)
print("%.3f" % ((time.perf_counter() - t0) / n * 1e6))
a.close()
os.waitpid(pid, 0)
'''


def private_kb(pid):
    with open("/proc/%d/smaps_rollup" % pid) as f:
        return sum(int(l.split()[1]) for l in f if l.startswith(("Private_Clean:", "Private_Dirty:")))


def first_chunk(port, delay):
    """Seconds from sending the request to the first body chunk's data
    (the response is read to its end: the sync worker is then free)."""
    s = socket.create_connection(("127.0.0.1", port))
    req = ("GET /?n=2&delay=%g HTTP/1.1\r\nHost: b\r\n\r\n" % delay).encode()
    t0 = time.perf_counter()
    s.sendall(req)
    buf, t = b"", None
    while True:
        d = s.recv(65536)
        if not d:
            break
        buf += d
        head, sep, body = buf.partition(b"\r\n\r\n")
        if t is None and sep and b"chunk 0" in body:
            t = time.perf_counter() - t0
    s.close()
    return t


class Server:
    """cunicorn serving stream_stash_app (optionally under a CPU mask)."""

    def __init__(self, pin=None):
        self.pin = pin
        self.rtdir = tempfile.mkdtemp(prefix="cub-", dir="/tmp")
        self.port = free_port()
        argv = ([] if pin is None else ["taskset", "-c", pin]) + [
            os.path.join(BUILD, "cunicorn"), "-w", "1", "-b", "127.0.0.1:%d" % self.port,
            "--dirty-app", APP, "--dirty-workers", "1", "stream_stash_app:application"]
        self.p = Proc(argv, self.port, cwd=BENCH, env={"XDG_RUNTIME_DIR": self.rtdir})
        self.sock = None
        if not self.p.ok:
            print("cunicorn did not start:\n" + self.p.log()[-2000:])
            return
        m = None
        deadline = time.monotonic() + 10
        while m is None and time.monotonic() < deadline:
            m = re.search(r"Spawned dirty arbiter \(pid: (\d+)\) at (\S+)", self.p.log())
            time.sleep(0.05)
        if not m:
            print("no 'Spawned dirty arbiter ... at PATH' line in the log")
            return
        self.arbiter, self.sock = int(m.group(1)), m.group(2)
        self.env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "python") + ":" +
                        os.path.join(BUILD, "python"), GUNICORN_DIRTY_SOCKET=self.sock)
        self.env.pop("PYTHONHOME", None)
        time.sleep(0.3)                  # the dirty worker loads its app

    def child(self, code, *args):
        argv = ([] if self.pin is None else ["taskset", "-c", self.pin]) + [PYTHON, "-c", code]
        r = subprocess.run(argv + [str(a) for a in args], env=self.env,
                           capture_output=True, text=True)
        if r.returncode != 0:
            print("  client failed: " + (r.stderr.strip().splitlines() or ["?"])[-1])
            return None
        return r.stdout.split()

    def stop(self):
        self.p.stop()
        subprocess.run(["rm", "-rf", self.rtdir])


def stash_ops(srv, label):
    out = srv.child(STASH_CLIENT, OPS)
    floor = srv.child(PINGPONG)
    put, get = (float(out[0]), float(out[1])) if out else (None, None)
    fl = float(floor[0]) if floor else None
    print("%-46s %11s µs %10s" % ("stash put, one at a time%s" % label, fmt(put, "%.1f"), "<= 30"))
    print("%-46s %11s µs %10s" % ("stash get, one at a time%s" % label, fmt(get, "%.1f"), "<= 30"))
    print("%-46s %11s µs" % ("  bare one-hop blocking ping-pong%s" % label, fmt(fl, "%.1f")))


def main():
    if not os.access(os.path.join(BUILD, "cunicorn"), os.X_OK):
        print("build/cunicorn missing (make): n/a")
        return 1
    srv = Server()
    try:
        if srv.sock is None:
            return 1
        arbiter, sock, port, child = srv.arbiter, srv.sock, srv.port, srv.child
        print("1 HTTP worker, 1 dirty worker; Python clients (standalone extension), "
              "%d CPUs" % os.cpu_count())
        print("%-46s %14s %10s" % ("", "figure", "target"))
        stash_ops(srv, "")

        out = child(STREAM_CLIENT, CHUNKS)
        cps = float(out[0]) if out else None
        print("%-46s %9s ch/s %10s" % ("small-chunk stream, 1 worker -> 1 client", fmt(cps), ">= 100000"))
        

        first_chunk(port, 0.001)             # warm: connection, imports
        ttfc = [first_chunk(port, DELAY) for _ in range(RUNS)]
        over = [(t - DELAY) * 1000 for t in ttfc]
        print("%-46s %11s ms %10s" % ("HTTP first chunk - generator delay (%d ms), median"
                                      % (DELAY * 1000), fmt(statistics.median(over), "%.2f"), "<= 5"))
        print("%-46s %11s ms %10s" % ("  max over %d runs" % RUNS, fmt(max(over), "%.2f"), ""))

        time.sleep(0.2)
        base = private_kb(arbiter)
        t0 = time.perf_counter()
        out = child(MEM_CLIENT, sock, KEYS)
        dt = time.perf_counter() - t0
        if out:
            data = int(out[0])
            grown = (private_kb(arbiter) - base) * 1024
            print("%-46s %11.1f MB" % ("%d small keys: encoded keys + values" % KEYS, data / 1e6))
            print("%-46s %11.1f MB %10s" % ("  dirty arbiter private memory growth", grown / 1e6, ""))
            print("%-46s %12.2fx %10s" % ("  ratio", grown / data, "< 2"))
            print("%-46s %11.2f µs" % ("  pipelined put (5000 in flight), per key", dt / KEYS * 1e6))
    finally:
        srv.stop()
    if os.cpu_count() > 1 and shutil.which("taskset"):
        srv = Server(pin="0")
        try:
            if srv.sock is not None:
                stash_ops(srv, " (1 CPU)")
        finally:
            srv.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
