"""Instructions per request of one asgi worker, under callgrind: a figure
the machine's load cannot move (bench/asgi.py's req/s can).

    /usr/bin/python3 bench/asgi_instr.py [BINARY] [APP] [REQUESTS] [CONNECTIONS]

BINARY defaults to build/cunicorn, APP to hello (bench/asgi_app.py's
hello, hello_waits or api); BINARY "uvicorn" measures the peer the same
way (Debian's uvicorn, httptools and uvloop as in bench/asgi.py, one
process: --workers 1 serves in the process it starts, no fork), so the
two servers compare in instructions as well as in req/s; ASGI_INSTR_ARGS adds server options (say
--asgi-loop asyncio).  The server runs with -w 1 under valgrind
--tool=callgrind (the forked worker is followed); CONNECTIONS (default
1) keep-alive connections send GET / in lockstep: 300 in one run, 300 +
REQUESTS (default 2000) in another; the figure is the difference of the
worker's instructions (Ir, start to exit) divided by REQUESTS -- the
whole worker: the loop, the app's Python, the server's C.
(callgrind_control cannot reach a forked child here, hence two runs
rather than zeroing the counters.)
"""

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from common import BENCH, BUILD, free_port, wait_port

REQ = b"GET / HTTP/1.1\r\nHost: bench\r\nUser-Agent: asgi_instr\r\nAccept: */*\r\n\r\n"


def requests(port, n, conns=1):
    """n requests over conns keep-alive connections, in lockstep: one
    request on each, then every response read (so that, with several
    connections, the worker finds several requests ready at once, as
    under wrk)."""
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(conns)]
    bufs = [b""] * conns
    try:
        for _ in range(n // conns):
            for s in socks:
                s.sendall(REQ)
            for i, s in enumerate(socks):
                buf = bufs[i]
                while True:
                    end = buf.find(b"\r\n\r\n")
                    if end >= 0:
                        m = re.search(rb"(?i)content-length:\s*(\d+)", buf[:end])
                        need = end + 4 + int(m.group(1))
                        if len(buf) >= need:
                            if not buf.startswith(b"HTTP/1.1 200"):
                                raise SystemExit("bad response: %r" % buf[:200])
                            buf = buf[need:]
                            break
                    chunk = s.recv(65536)
                    if not chunk:
                        raise SystemExit("connection closed")
                    buf += chunk
                bufs[i] = buf
    finally:
        for s in socks:
            s.close()


def worker_pid(master):
    for _ in range(600):
        try:
            kids = open("/proc/%d/task/%d/children" % (master, master)).read().split()
        except OSError:
            kids = []
        if kids:
            return int(kids[0])
        time.sleep(0.1)
    raise SystemExit("no worker")


def total_ir(path):
    ir = 0
    with open(path) as f:
        for line in f:
            if line.startswith("summary:") or line.startswith("totals:"):
                ir = int(line.split()[1])
    return ir


def run(binary, app, n, conns):
    """The worker's instructions from its start to its exit, having served
    300 + n requests."""
    appdir = tempfile.mkdtemp(prefix="cunicorn-instr-")
    shutil.copy(os.path.join(BENCH, "asgi_app.py"), appdir)
    port = free_port()
    env = dict(os.environ, PYTHONHASHSEED="0")
    if binary == "uvicorn":
        server = [sys.executable, "-m", "uvicorn", "--workers", "1", "--http", "httptools",
                  "--loop", "uvloop", "--no-access-log", "--log-level", "warning",
                  "--host", "127.0.0.1", "--port", str(port)]
    else:
        server = [binary, "-w", "1", "-k", "asgi", "-b", "127.0.0.1:%d" % port,
                  "--log-level", "warning", "--timeout", "600"]
    p = subprocess.Popen(
        ["valgrind", "--tool=callgrind",
         "--callgrind-out-file=" + os.path.join(appdir, "cg.%p")] + server
        + os.environ.get("ASGI_INSTR_ARGS", "").split() + ["asgi_app:" + app],
        cwd=appdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    ok, ir = False, None
    try:
        if not wait_port(port, p, timeout=300):
            raise SystemExit("server did not start")
        pid = p.pid if binary == "uvicorn" else worker_pid(p.pid)
        requests(port, 300 + n, conns)
        ok = True
    finally:
        if p.poll() is None:
            os.killpg(p.pid, 15)
            try:
                p.wait(120)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, 9)
                p.wait()
        if ok:
            ir = total_ir(os.path.join(appdir, "cg.%d" % pid))
            if os.environ.get("ASGI_INSTR_KEEP"):   # the output, for callgrind_annotate
                shutil.copy(os.path.join(appdir, "cg.%d" % pid),
                            os.environ["ASGI_INSTR_KEEP"] + ".%d" % n)
        shutil.rmtree(appdir, ignore_errors=True)   # also when the server did not start
    return ir


def measure(binary, app, n, conns=1):
    """Two runs, n apart: what start-up and exit cost cancels out."""
    return (run(binary, app, n, conns) - run(binary, app, 0, conns)) / n


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else os.path.join(BUILD, "cunicorn")
    if binary != "uvicorn":
        binary = os.path.abspath(binary)
    app = sys.argv[2] if len(sys.argv) > 2 else "hello"
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
    conns = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    print("%s %s: %.0f instructions/request (%d requests over %d connections, -w 1, "
          "callgrind)" % (binary, app, measure(binary, app, n, conns), n, conns))


if __name__ == "__main__":
    main()
