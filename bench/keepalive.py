"""Keep-alive HTTP: cunicorn's gthread worker beside the strongest peers,
in one run, on this machine (figures printed; nothing asserted).

    /usr/bin/python3 bench/keepalive.py [SECONDS]

1. hello world, 2 workers, wrk -t2 -c32 with keep-alive: cunicorn gthread
   (--threads 4 and 1), cunicorn sync (closes after each response), uWSGI
   --http11-socket (its keep-alive mode), Debian's gunicorn gthread
   --threads 4, nginx serving the same body from a static file.
2. cunicorn gthread alone: one dirty call per request vs hello, with one
   dirty worker and with two (both servers up at once, measured in turns,
   against the hello of the same run); hello with
   1,000 idle keep-alive connections and 10 clients trickling a byte per
   second open; wrk while workers recycle every 50 requests and while the
   master gets 10 HUPs (failed requests counted); the memory of 10,000
   idle keep-alive connections on one worker.
"""

import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time

from common import BENCH, BUILD, PYTHON, Proc, children, free_port, in_turn, median, memory, nginx_conf, print_in_turn, start_all, wrk

SECONDS = int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ.get("BENCH_SECONDS", "5"))
CUN = os.path.join(BUILD, "cunicorn")


def have(cmd):
    return shutil.which(cmd) is not None


def peers(port, root):
    out = []
    out.append(("cunicorn gthread -t4", [CUN, "-w", "2", "-k", "gthread", "--threads", "4",
                                          "-b", "127.0.0.1:%d" % port, "hello:application"]))
    out.append(("cunicorn gthread -t1", [CUN, "-w", "2", "-k", "gthread", "--threads", "1",
                                          "-b", "127.0.0.1:%d" % port, "hello:application"]))
    out.append(("cunicorn sync", [CUN, "-w", "2", "-b", "127.0.0.1:%d" % port,
                                   "hello:application"]))
    if have("uwsgi"):
        out.append(("uWSGI http11", ["uwsgi", "--plugin", "python3", "--master", "--processes", "2",
                                      "--http11-socket", "127.0.0.1:%d" % port, "--wsgi-file",
                                      "hello.py", "--disable-logging", "--die-on-term",
                                      "--need-app"]))
    if os.system("%s -c 'import gunicorn' 2>/dev/null" % PYTHON) == 0:
        out.append(("gunicorn 20.1 gthread -t4", [PYTHON, "-m", "gunicorn", "-w", "2", "-k",
                                                   "gthread", "--threads", "4", "-b",
                                                   "127.0.0.1:%d" % port, "hello:application"]))
    if have("nginx") or os.path.exists("/usr/sbin/nginx"):
        d, conf = nginx_conf(port, root)
        out.append(("nginx static", ["/usr/sbin/nginx", "-c", conf, "-p", d]))
    return out


def rps_of(argv, port, path="/", conns=32, env=None):
    p = Proc(argv, port, cwd=BENCH, env=env)
    try:
        if not p.ok:
            return None, "did not start: " + p.log()[-200:].replace("\n", " | ")
        url = "http://127.0.0.1:%d%s" % (port, path)
        wrk(url, seconds=1, conns=conns, close=False)
        rps, non2xx, sockerr = wrk(url, seconds=SECONDS, conns=conns, close=False)
        note = ("non-2xx %d " % non2xx if non2xx else "") + (sockerr or "")
        return rps, note
    finally:
        p.stop()


def table(rounds=3):
    """Every peer up at once, measured round-robin `rounds` times: each
    figure is a median over moments spread across the whole run, so a
    passing load on the machine weighs on every peer alike."""
    root = tempfile.mkdtemp(prefix="cunicorn-bench-www-")
    procs, notes, figures, cpu = [], {}, {}, {}
    try:
        procs, notes = start_all(lambda port: peers(port, root), BENCH)
        figures = in_turn(procs, rounds, SECONDS, notes, cpu)
    finally:
        for _, p, _ in procs:
            p.stop()
        shutil.rmtree(root, ignore_errors=True)
        for d in os.listdir("/tmp"):
            if d.startswith("cunicorn-bench-nginx-"):
                shutil.rmtree(os.path.join("/tmp", d), ignore_errors=True)
    print("hello world, 2 workers, wrk -t2 -c32 -d%ds, keep-alive client, loopback; "
          "median of %d rounds, peers measured in turn" % (SECONDS, rounds))
    print_in_turn(procs, figures, notes, "cunicorn gthread -t4", "cunicorn gthread -t4", cpu=cpu)


def trickle_and_idle(port, n_idle, n_trickle, stop):
    socks = []
    for _ in range(n_idle):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        s.recv(4096)
        socks.append(s)
    tr = [socket.create_connection(("127.0.0.1", port)) for _ in range(n_trickle)]
    msg = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 1000

    def trickler(s):
        for ch in msg:
            if stop.is_set():
                return
            try:
                s.send(bytes([ch]))
            except OSError:
                return
            stop.wait(1.0)
    ts = [threading.Thread(target=trickler, args=(s,), daemon=True) for s in tr]
    for t in ts:
        t.start()
    return socks + tr


def dirty_server(dirty_workers):
    port = free_port()
    argv = [CUN, "-w", "2", "-k", "gthread", "--threads", "4", "-b", "127.0.0.1:%d" % port,
            "--keep-alive", "60", "--timeout", "120", "--dirty-app", "hello:BenchDirtyApp",
            "--dirty-workers", str(dirty_workers), "hello:application"]
    p = Proc(argv, port, cwd=BENCH)
    if not p.ok:
        print("cunicorn (%d dirty workers) did not start:" % dirty_workers, p.log()[-300:])
        p.stop()
        return None, None
    url = "http://127.0.0.1:%d" % port
    wrk(url + "/", seconds=1, close=False)
    wrk(url + "/dirty", seconds=1, close=False)
    return p, url


def dirty_vs_hello(p, one, p2, two, rounds=3):
    """Median req/s of hello and of /dirty with 1 and 2 dirty workers,
    measured in turns (a passing load weighs on each alike), with the
    server's whole-tree CPU per request."""
    runs = [("hello", p, one + "/"), ("dirty1", p, one + "/dirty")]
    if two:
        runs.append(("dirty2", p2, two + "/dirty"))
    notes, cpu = {}, {}
    figs = in_turn(runs, rounds, SECONDS, notes, cpu)
    med = dict((n, median(v)) for n, v in figs.items() if v)
    cmed = dict((n, median(v)) for n, v in cpu.items() if v)
    hello = med.get("hello")
    print("hello (2 workers, gthread --threads 4): %.0f req/s, %.1f us CPU/req; median of %d rounds"
          % (hello or 0, cmed.get("hello") or 0, rounds))
    for name, label in (("dirty1", "1 dirty worker"), ("dirty2", "2 dirty workers")):
        if name in med and hello:
            print("one dirty call per request, %s: %.0f req/s (%.0f%% of hello), %.1f us CPU/req [%s] %s"
                  % (label, med[name], 100.0 * med[name] / hello, cmed.get(name) or 0,
                     " ".join("%.0f" % x for x in figs[name]), notes.get(name, "")))
    return hello


def loaded():
    p, url = dirty_server(1)
    if p is None:
        return
    p2, url2 = dirty_server(2)
    try:
        hello = dirty_vs_hello(p, url, p2, url2)
    finally:
        if p2 is not None:
            p2.stop()
    port = p.port
    try:
        stop = threading.Event()
        socks = trickle_and_idle(port, 1000, 10, stop)
        busy = wrk(url + "/", seconds=SECONDS, close=False)[0]
        stop.set()
        for s in socks:
            s.close()
        print("hello with 1,000 idle + 10 trickling connections open: %.0f req/s (%.0f%% of %.0f)"
              % (busy, 100.0 * busy / hello, hello))
    finally:
        p.stop()

    # recycling and HUPs: failed requests
    port = free_port()
    p = Proc([CUN, "-w", "2", "-k", "gthread", "--threads", "4", "--max-requests", "50",
              "-b", "127.0.0.1:%d" % port, "hello:application"], port, cwd=BENCH)
    try:
        rps, non2xx, sockerr = wrk("http://127.0.0.1:%d/" % port, seconds=SECONDS, close=False)
        print("workers recycled every 50 requests: %.0f req/s, non-2xx %d, socket errors: %s"
              % (rps, non2xx, sockerr or "none"))
    finally:
        p.stop()
    port = free_port()
    p = Proc([CUN, "-w", "2", "-k", "gthread", "--threads", "4",
              "-b", "127.0.0.1:%d" % port, "hello:application"], port, cwd=BENCH)
    try:
        def hups():
            for _ in range(10):
                time.sleep(SECONDS / 12.0)
                os.kill(p.p.pid, signal.SIGHUP)
        t = threading.Thread(target=hups)
        t.start()
        rps, non2xx, sockerr = wrk("http://127.0.0.1:%d/" % port, seconds=SECONDS, close=False)
        t.join()
        print("10 HUPs to the master during the run: %.0f req/s, non-2xx %d, socket errors: %s"
              % (rps, non2xx, sockerr or "none"))
    finally:
        p.stop()

    # 10,000 idle connections, one worker
    port = free_port()
    p = Proc([CUN, "-w", "1", "-k", "gthread", "--threads", "4", "--worker-connections", "20000",
              "--keep-alive", "120", "-b", "127.0.0.1:%d" % port, "hello:application"],
             port, cwd=BENCH)
    try:
        for _ in range(100):         # the master may bind before it forks
            if children(p.p.pid):
                break
            time.sleep(0.05)
        worker = children(p.p.pid)[0]
        socks = []
        for _ in range(3):           # warm the worker
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            s.recv(4096)
            socks.append(s)
        before = memory(worker)
        n = 10000
        try:
            for _ in range(n):
                s = socket.create_connection(("127.0.0.1", port))
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                socks.append(s)
            for s in socks[3:]:
                s.recv(4096)
        except OSError as e:
            print("idle connections: stopped at %d: %s" % (len(socks), e))
        time.sleep(0.5)
        after = memory(worker)
        print("%d idle keep-alive connections on one worker: private memory %d -> %d kB "
              "(+%.1f MB; peak RSS while their first requests were all in flight: +%.1f MB)"
              % (len(socks) - 3, before[1], after[1], (after[1] - before[1]) / 1024.0,
                 (after[0] - before[0]) / 1024.0))
        for s in socks:
            s.close()
    finally:
        p.stop()


if __name__ == "__main__":
    table()
    print()
    loaded()
