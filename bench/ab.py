"""Two builds of cunicorn side by side, for a change that must not cost
speed (a refactoring, say): both servers up at once, measured in turn,
A B A B ..., on the same scenarios; prints each one's median req/s and the
CPU time its whole process tree spent per request (from /proc: less
sensitive than req/s to wrk and other load sharing the CPUs), and B/A.
Nothing asserted.

    /usr/bin/python3 bench/ab.py BUILD_A BUILD_B [SECONDS] [ROUNDS]

BUILD_A / BUILD_B: directories holding a built `cunicorn` (e.g. the build/
of a clone checked out at the commit before the change, and build/).
"""

import os
import shutil
import statistics
import sys
import tempfile

from common import BENCH, Proc, cpu_seconds, free_port, tree, wrk

SCENARIOS = [
    # name, cunicorn arguments, app, path, keep-alive client
    ("sync hello, Connection: close", ["-w", "2"], "hello:application", "/", False),
    ("gthread -t4 hello, keep-alive", ["-w", "2", "-k", "gthread", "--threads", "4"],
     "hello:application", "/", True),
    ("gthread -t4 one dirty call", ["-w", "2", "-k", "gthread", "--threads", "4",
                                    "--dirty-app", "hello:BenchDirtyApp",
                                    "--dirty-workers", "1"], "hello:application", "/dirty", True),
    ("asgi raw hello, keep-alive", ["-w", "2", "-k", "asgi"], "asgi_app:hello", "/", True),
]


def measure(proc, path, seconds, keepalive):
    pids = tree(proc.p.pid)
    cpu0 = sum(cpu_seconds(p) for p in pids)
    rps = wrk("http://127.0.0.1:%d%s" % (proc.port, path), seconds, close=not keepalive)[0]
    cpu = sum(cpu_seconds(p) for p in tree(proc.p.pid)) - cpu0
    if not rps:
        return None, None
    return rps, cpu * 1e6 / (rps * seconds)


def main():
    if len(sys.argv) < 3:
        print(__doc__)
        return 2
    builds = [os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])]
    seconds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    # the apps run from a directory of their own: bench/http.py would
    # shadow the standard library's http package (FastAPI imports it)
    appdir = tempfile.mkdtemp(prefix="cunicorn-bench-ab-")
    for f in ("hello.py", "asgi_app.py"):
        shutil.copy(os.path.join(BENCH, f), appdir)
    print("A = %s\nB = %s\n%d rounds of %d s each, A and B in turn; median req/s, "
          "CPU µs per request (whole tree)" % (builds[0], builds[1], rounds, seconds))
    print("%-32s %10s %8s %10s %8s %8s %8s" % ("scenario", "A req/s", "A µs", "B req/s",
                                              "B µs", "B/A r/s", "B/A µs"))
    try:
        for name, args, app, path, keepalive in SCENARIOS:
            procs = []
            for b in builds:
                port = free_port()
                procs.append(Proc([os.path.join(b, "cunicorn")] + args +
                                  ["-b", "127.0.0.1:%d" % port, "--log-level", "warning", app],
                                  port, cwd=appdir))
            try:
                if not all(p.ok for p in procs):
                    print("%-32s did not start" % name)
                    continue
                for p in procs:      # warm up (and dirty workers up)
                    for _ in range(20):
                        if wrk("http://127.0.0.1:%d%s" % (p.port, path), 1,
                               close=not keepalive)[0]:
                            break
                res = [[], []]
                for _ in range(rounds):
                    for i, p in enumerate(procs):
                        r = measure(p, path, seconds, keepalive)
                        if r[0]:
                            res[i].append(r)
                if not res[0] or not res[1]:
                    print("%-32s no figures" % name)
                    continue
                med = [(statistics.median(r for r, _ in x), statistics.median(c for _, c in x))
                       for x in res]
                print("%-32s %10.0f %8.1f %10.0f %8.1f %8.3f %8.3f"
                      % (name, med[0][0], med[0][1], med[1][0], med[1][1],
                         med[1][0] / med[0][0], med[1][1] / med[0][1]))
            finally:
                for p in procs:
                    p.stop()
    finally:
        shutil.rmtree(appdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
