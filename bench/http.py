#!/usr/bin/python3
"""Hello-world HTTP throughput and per-role memory: cunicorn vs Debian's
uWSGI vs Debian's gunicorn 20.1, same app (bench/hello.py), 2 workers each,
wrk on loopback, one run after the other on the same machine.

Every request carries "Connection: close", so each server does the same
work per request (accept, parse, call the app, respond, close) whatever its
keep-alive support: gunicorn's sync worker never keeps connections alive,
and uWSGI is run with --http-socket (HTTP parsed in the worker itself, like
the other two; --http would add a router process and a hop).

  bench/http.py [SECONDS]     default 5 s per server (BENCH_SECONDS)

Memory: peak RSS (VmHWM from /proc/PID/status) and private memory
(Private_Clean + Private_Dirty from /proc/PID/smaps_rollup), read after the
load, per process role; for several workers, the largest ("all processes"
is that largest times the count, an approximation).  cunicorn runs
with one dirty worker so its dirty arbiter and dirty worker are measured
too (they are idle during the HTTP load).  A peer that is not installed
shows n/a.  Prints figures; asserts nothing.
"""

import os
import sys
import time

from common import (BENCH, BUILD, PYTHON, Proc, children, fmt, free_port, have,
                    memory, title, wrk)

SECONDS = int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ.get("BENCH_SECONDS", "5"))


def servers(port):
    cun = os.path.join(BUILD, "cunicorn")
    out = []
    out.append(("cunicorn", [cun, "-w", "2", "-b", "127.0.0.1:%d" % port,
                             "--dirty-app", "hello:BenchDirtyApp", "--dirty-workers", "1",
                             "hello:application"] if os.access(cun, os.X_OK) else None,
                "build/cunicorn missing (make)"))
    uw = have("uwsgi") and any(os.path.exists("/usr/lib/uwsgi/plugins/%s_plugin.so" % p)
                               for p in ("python3", "python311"))
    out.append(("uWSGI", ["uwsgi", "--plugin", "python3", "--master", "--processes", "2",
                          "--http-socket", "127.0.0.1:%d" % port, "--wsgi-file", "hello.py",
                          "--disable-logging", "--die-on-term", "--need-app"] if uw else None,
                "uwsgi + uwsgi-plugin-python3 not installed"))
    gu = os.system("%s -c 'import gunicorn' 2>/dev/null" % PYTHON) == 0
    out.append(("gunicorn 20.1", [PYTHON, "-m", "gunicorn", "-w", "2", "-b", "127.0.0.1:%d" % port,
                                  "hello:application"] if gu else None,
                "python3-gunicorn not installed"))
    return out


def roles(name, pid):
    """{role: [pids]} of a running server."""
    r = {"master": [pid], "worker": [], "dirty-arbiter": [], "dirty-worker": []}
    for c in children(pid):
        t = title(c)
        if name == "cunicorn" and ": dirty-arbiter" in t:
            r["dirty-arbiter"].append(c)
            r["dirty-worker"] += children(c)
        else:
            r["worker"].append(c)
    return r


def main():
    if not have("wrk"):
        print("wrk is not installed (scripts/deps.sh bench): no figures")
        return 1
    results = []
    for name, _argv, why in servers(0):
        port = free_port()
        argv = dict((n, a) for n, a, _ in servers(port))[name]
        if argv is None:
            results.append((name, None, why, {}))
            continue
        p = Proc(argv, port, cwd=BENCH)
        if not p.ok:
            results.append((name, None, "did not start: " + p.log()[-300:].replace("\n", " | "), {}))
            p.stop()
            continue
        url = "http://127.0.0.1:%d/" % port
        wrk(url, seconds=1)                      # warm-up
        rps, non2xx, sockerr = wrk(url, seconds=SECONDS)
        time.sleep(0.2)
        mem = {}
        for role, pids in roles(name, p.p.pid).items():
            ms = [memory(x) for x in pids]
            ms = [m for m in ms if m[0] is not None]
            if ms:
                mem[role] = (max(m[0] for m in ms), max(m[1] for m in ms), len(ms))
        note = ""
        if non2xx:
            note += "non-2xx: %d " % non2xx
        if sockerr:
            note += "socket errors: " + sockerr
        results.append((name, rps, note, mem))
        p.stop()

    names = [r[0] for r in results]
    w = 16
    print("HTTP hello world, 2 workers, wrk -t2 -c32 -d%ds -H 'Connection: close', loopback" % SECONDS)
    print("%-28s" % "" + "".join("%*s" % (w, n) for n in names))
    print("%-28s" % "requests/s" + "".join("%*s" % (w, fmt(r[1])) for r in results))
    for role in ("master", "worker", "dirty-arbiter", "dirty-worker"):
        for i, what in ((0, "peak RSS kB"), (1, "private kB")):
            row = []
            for r in results:
                m = r[3].get(role)
                row.append(fmt(m[i] if m else None, "%d"))
            print("%-28s" % ("%s %s" % (role, what)) + "".join("%*s" % (w, v) for v in row))
    tot = []
    for r in results:
        tot.append(fmt(sum(m[1] * m[2] for m in r[3].values()) if r[3] else None, "%d"))
    print("%-28s" % "all processes private kB~" + "".join("%*s" % (w, v) for v in tot))
    for r in results:
        if r[2]:
            print("note: %s: %s" % (r[0], r[2]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
