"""Websocket echo, with permessage-deflate and without: cunicorn's asgi
worker beside uvicorn (Debian's 0.17, websockets implementation, uvloop),
in one run, on this machine (figures printed; nothing asserted).

    /usr/bin/python3 bench/websocket.py [SECONDS]

Every server: 1 worker.  Client: 2 processes of python3-websockets, 16
connections each, each connection sending a 600-byte JSON text message
and awaiting its echo, over and over.  Printed: round trips per second
(the Python client is much of the cost, so this is a ceiling shared by
both servers), and the server's CPU time per round trip (its processes'
user + system time over the run, from /proc), which is the figure that
tells the servers apart.
"""

import asyncio
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time

from common import BENCH, BUILD, PYTHON, Proc, children, free_port

SECONDS = int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ.get("BENCH_SECONDS", "5"))
CUN = os.path.join(BUILD, "cunicorn")
CONNS = 16
CLIENTS = 2
MESSAGE = json.dumps({"event": "quote", "items": [
    {"symbol": "SYM%d" % i, "price": 100 + i * 0.25, "note": "steady"} for i in range(12)]})


def servers(port):
    bind = "127.0.0.1:%d" % port
    out = [("cunicorn -k asgi", [CUN, "-w", "1", "-k", "asgi", "-b", bind,
                                 "--log-level", "warning", "ws_app:echo"])]
    if os.system("%s -c 'import uvicorn, websockets' 2>/dev/null" % PYTHON) == 0:
        out.append(("uvicorn 0.17 websockets", [
            PYTHON, "-m", "uvicorn", "--workers", "1", "--ws", "websockets",
            "--loop", "uvloop", "--http", "httptools", "--no-access-log",
            "--log-level", "warning", "--host", "127.0.0.1", "--port", str(port),
            "ws_app:echo"]))
    return out


def cpu_seconds(pids):
    t = 0
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid, "rb") as f:
                st = f.read()
            fields = st[st.rindex(b")") + 2:].split()
            t += int(fields[11]) + int(fields[12])
        except (OSError, ValueError, IndexError):
            pass
    return t / os.sysconf("SC_CLK_TCK")


def client(port, compress, seconds, q):
    import websockets

    async def one(stop):
        n = 0
        kw = {} if compress else {"compression": None}
        async with websockets.connect("ws://127.0.0.1:%d/" % port, **kw) as ws:
            while time.monotonic() < stop:
                await ws.send(MESSAGE)
                assert await ws.recv() == MESSAGE
                n += 1
        return n

    async def main():
        stop = time.monotonic() + seconds
        return sum(await asyncio.gather(*(one(stop) for _ in range(CONNS))))
    q.put(asyncio.new_event_loop().run_until_complete(main()))


def run(port, pids, compress, seconds):
    q = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=client, args=(port, compress, seconds, q))
             for _ in range(CLIENTS)]
    c0, t0 = cpu_seconds(pids), time.monotonic()
    for p in procs:
        p.start()
    total = sum(q.get() for _ in procs)
    for p in procs:
        p.join()
    dt, cpu = time.monotonic() - t0, cpu_seconds(pids) - c0
    return total / dt, cpu / total * 1e6 if total else None


def main():
    appdir = tempfile.mkdtemp(prefix="cunicorn-bench-ws-")
    shutil.copy(os.path.join(BENCH, "ws_app.py"), appdir)
    print("Websocket echo, 1 worker, %d clients x %d connections, %d-byte text, %d s each"
          % (CLIENTS, CONNS, len(MESSAGE), SECONDS))
    print("%-26s %-9s %12s %16s" % ("server", "deflate", "round trips/s", "server CPU us/rt"))
    for compress in (True, False):
        for i in range(len(servers(0))):
            port = free_port()
            name, argv = servers(port)[i]
            p = Proc(argv, port, cwd=appdir)
            if not p.ok:
                print("%-26s did not start: %s" % (name, p.log()[-300:]))
                p.stop()
                continue
            pids = [p.p.pid] + children(p.p.pid)
            run(port, pids, compress, 1)                   # warm up
            rps, us = run(port, pids, compress, SECONDS)
            print("%-26s %-9s %12.0f %16.1f" % (name, "on" if compress else "off", rps, us))
            p.stop()
    shutil.rmtree(appdir, ignore_errors=True)


if __name__ == "__main__":
    main()
