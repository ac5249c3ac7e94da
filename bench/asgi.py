"""ASGI hello world with a keep-alive client: cunicorn's asgi worker
beside uvicorn (Debian's, with httptools and uvloop), in one run, on this
machine (figures printed; nothing asserted).

    /usr/bin/python3 bench/asgi.py [SECONDS]

Every server: 2 workers, wrk -t2 -c32 keep-alive.  For each app, every
server is up at once and they are measured in turn, BENCH_ROUNDS (3)
times; a figure is the median of its rounds, and each peer's line says
how many times faster cunicorn's median was (the issue's targets: raw
>= 1.5x and FastAPI >= 1.3x uvicorn).  CUNICORN_BIN_DIR picks another
build.  Apps (bench/asgi_app.py):
a raw ASGI callable and a FastAPI route.  Peers: `uvicorn --workers 2
--http httptools --loop uvloop` and Debian's gunicorn 20.1 with
-k uvicorn.workers.UvicornWorker.  Then cunicorn alone: a FastAPI route
awaiting one execute_async on a dirty worker per request, beside the
same hello route, measured in turns with it (warm, median of the rounds).
"""

import os
import shutil
import sys
import tempfile
import time

from common import BENCH, BUILD, PYTHON, Proc, fmt, free_port, in_turn, median, print_in_turn, start_all, wrk

SECONDS = int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ.get("BENCH_SECONDS", "5"))
CUN = os.path.join(os.environ.get("CUNICORN_BIN_DIR", BUILD), "cunicorn")
CUN_NAME = "cunicorn -k asgi"


def servers(app, port):
    bind = "127.0.0.1:%d" % port
    out = [(CUN_NAME, [CUN, "-w", "2", "-k", "asgi", "-b", bind,
                                 "--log-level", "warning", "asgi_app:" + app])]
    if os.system("%s -c 'import uvicorn' 2>/dev/null" % PYTHON) == 0:
        out.append(("uvicorn 0.17 httptools", [
            PYTHON, "-m", "uvicorn", "--workers", "2", "--http", "httptools",
            "--loop", "uvloop", "--no-access-log", "--log-level", "warning",
            "--host", "127.0.0.1", "--port", str(port), "asgi_app:" + app]))
        if os.system("%s -c 'import gunicorn' 2>/dev/null" % PYTHON) == 0:
            out.append(("gunicorn 20.1 -k UvicornWorker", [
                PYTHON, "-m", "gunicorn", "-w", "2", "-k", "uvicorn.workers.UvicornWorker",
                "-b", bind, "--log-level", "warning", "asgi_app:" + app]))
    return out


def table(app, appdir, rounds):
    """Every server for app up at once, measured round-robin `rounds`
    times: each figure is a median over moments spread across the run,
    so a passing load on the machine weighs on every server alike."""
    procs, notes, figures, cpu = [], {}, {}, {}
    label = "raw" if app == "hello" else "FastAPI"
    try:
        procs, notes = start_all(lambda port: servers(app, port), appdir)
        # the port opens before every worker has imported the app: an
        # early client's connections would all land in the first one up
        time.sleep(3)
        figures = in_turn(procs, rounds, SECONDS, notes, cpu)
    finally:
        for _, p, _ in procs:
            p.stop()
    print_in_turn(procs, figures, notes, CUN_NAME, "cunicorn", width=34, label=label, cpu=cpu)


def main():
    # the servers run from a directory holding only the app: bench/http.py
    # would shadow the standard library's http package
    appdir = tempfile.mkdtemp(prefix="cunicorn-bench-asgi-")
    try:
        shutil.copy(os.path.join(BENCH, "asgi_app.py"), appdir)
        run(appdir)
    finally:
        shutil.rmtree(appdir, ignore_errors=True)


def run(appdir):
    rounds = int(os.environ.get("BENCH_ROUNDS", "3"))
    print("ASGI hello world, 2 workers, wrk -t2 -c32 -d%ds keep-alive; median of %d rounds, "
          "servers measured in turn" % (SECONDS, rounds))
    for app in ("hello", "api"):
        table(app, appdir, rounds)
    # one dirty call per request (cunicorn only: the peers have no dirty
    # arbiter), against the hello route of the same server, in turns
    port = free_port()
    p = Proc([CUN, "-w", "2", "-k", "asgi", "-b", "127.0.0.1:%d" % port, "--log-level",
              "warning", "--dirty-workers", "1", "--dirty-app", "asgi_app:Echo",
              "asgi_app:api"], port, cwd=appdir)
    if p.ok:
        base = "http://127.0.0.1:%d" % port
        for _ in range(50):     # the dirty worker is up once a call answers
            if wrk(base + "/dirty", 1, conns=1, threads=1, close=False)[0]:
                break
        runs = [("FastAPI hello", p, base + "/"), ("FastAPI+dirty", p, base + "/dirty")]
        notes, cpu = {}, {}
        figures = in_turn(runs, rounds, SECONDS, notes, cpu)
        med = dict((n, median(v)) for n, v in figures.items() if v)
        hello, dirty = med.get("FastAPI hello"), med.get("FastAPI+dirty")
        print("%s, one execute_async per request vs the hello route, same server, "
              "median of %d rounds in turns:" % (CUN_NAME, rounds))
        for name, _, _ in runs:
            c = median(cpu.get(name))
            print("  %-34s %10s req/s [%s] %s %s" % (
                name, fmt(med.get(name)), " ".join("%.0f" % x for x in figures[name]),
                "%.1f us CPU/req (whole tree)" % c if c else "", notes.get(name, "")))
        if hello and dirty:
            print("  FastAPI+dirty = %.0f%% of FastAPI hello (target >= 50%%)" % (100.0 * dirty / hello))
    else:
        print("  %s with a dirty worker did not start: %s" % (CUN_NAME, p.log()[-300:]))
    p.stop()


if __name__ == "__main__":
    main()
