"""ASGI hello world with a keep-alive client: cunicorn's asgi worker
beside uvicorn (Debian's, with httptools and uvloop), in one run, on this
machine (figures printed; nothing asserted).

    /usr/bin/python3 bench/asgi.py [SECONDS]

Every server: 2 workers, wrk -t2 -c32 keep-alive.  Apps (bench/asgi_app.py):
a raw ASGI callable and a FastAPI route.  Peers: `uvicorn --workers 2
--http httptools --loop uvloop` and Debian's gunicorn 20.1 with
-k uvicorn.workers.UvicornWorker.  Then cunicorn alone: a FastAPI route
awaiting one execute_async on a dirty worker per request, beside the
same hello route.
"""

import os
import shutil
import sys
import tempfile

from common import BENCH, BUILD, PYTHON, Proc, free_port, fmt, wrk

SECONDS = int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ.get("BENCH_SECONDS", "5"))
CUN = os.path.join(BUILD, "cunicorn")


def servers(app, port):
    bind = "127.0.0.1:%d" % port
    out = [("cunicorn -k asgi", [CUN, "-w", "2", "-k", "asgi", "-b", bind,
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


def main():
    # the servers run from a directory holding only the app: bench/http.py
    # would shadow the standard library's http package
    appdir = tempfile.mkdtemp(prefix="cunicorn-bench-asgi-")
    shutil.copy(os.path.join(BENCH, "asgi_app.py"), appdir)
    print("ASGI hello world, 2 workers, wrk -t2 -c32 keep-alive, %d s each" % SECONDS)
    print("%-34s %-10s %12s %8s" % ("server", "app", "req/s", "errors"))
    for app in ("hello", "api"):
        for i in range(len(servers(app, 0))):
            port = free_port()
            name, argv = servers(app, port)[i]
            p = Proc(argv, port, cwd=appdir)
            if not p.ok:
                print("%-34s %-10s %12s  (did not start: %s)" % (name, app, "n/a",
                                                                 p.log()[-300:]))
                p.stop()
                continue
            wrk("http://127.0.0.1:%d/" % port, 1, close=False)     # warm up
            rps, non2xx, sock = wrk("http://127.0.0.1:%d/" % port, SECONDS, close=False)
            print("%-34s %-10s %12s %8s %s" % (name, "raw" if app == "hello" else "FastAPI",
                                               fmt(rps), non2xx, sock))
            p.stop()
    # one dirty call per request (cunicorn only: the peers have no dirty arbiter)
    port = free_port()
    p = Proc([CUN, "-w", "2", "-k", "asgi", "-b", "127.0.0.1:%d" % port, "--log-level",
              "warning", "--dirty-workers", "1", "--dirty-app", "asgi_app:Echo",
              "asgi_app:api"], port, cwd=appdir)
    if p.ok:
        url = "http://127.0.0.1:%d/dirty" % port
        for _ in range(50):     # the dirty worker is up once a call answers
            if wrk(url, 1, conns=1, threads=1, close=False)[0]:
                break
        rps, non2xx, sock = wrk(url, SECONDS, close=False)
        print("%-34s %-10s %12s %8s %s" % ("cunicorn -k asgi", "FastAPI+dirty", fmt(rps),
                                           non2xx, sock))
    p.stop()
    shutil.rmtree(appdir, ignore_errors=True)


if __name__ == "__main__":
    main()
