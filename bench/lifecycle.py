#!/usr/bin/python3
"""Lifecycle timings over several runs in the PID-namespace sandbox
(tests/lifecycle/harness.py; needs root): for each scenario, the time from
the signal to each process's exit and to the replacement's readiness,
observed from inside the namespace in 5 ms polling steps.  Prints median
and max per measure; asserts nothing.

  bench/lifecycle.py [RUNS]        default 5 (BENCH_RUNS)

Targets from the issue (SPEC section 6): after a parent SIGKILL, dirty
arbiter gone <= 100 ms and the whole tree <= 1 s (gunicorn 26.1 measured
1.2 s and 13.9 s); SIGQUIT: everything gone within a second.
"""

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "tests", "lifecycle"))
import harness  # noqa: E402

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ.get("BENCH_RUNS", "5"))
T = harness.TITLES


def gone_all(pids):
    return " && ".join("gone %d" % p for p in pids) or "true"


def parent_sigkill(b):
    r = b.roles()
    a = r["dirty-arbiter"][0]
    rest = r["worker"] + r["dirty-worker"]
    return b.timed("kill -9 %d" % r["master"][0],
                   [("dirty arbiter gone", "gone %d" % a),
                    ("dirty workers gone", gone_all(r["dirty-worker"])),
                    ("HTTP workers gone", gone_all(r["worker"])),
                    ("whole tree gone", gone_all([a] + rest))], timeout=20)


def arbiter_sigkill(b):
    # The master respawns an arbiter that died younger than 1 s only after
    # a 1 s crash-loop brake; measure the steady state (arbiter older).
    time.sleep(1.2)
    r = b.roles()
    a = r["dirty-arbiter"][0]
    return b.timed("kill -9 %d" % a,
                   [("old dirty workers gone", gone_all(r["dirty-worker"])),
                    ("new dirty arbiter", "titled '%s' %d" % (T["dirty-arbiter"], a)),
                    ("new dirty worker", "titled '%s' %s" % (T["dirty-worker"],
                                                             " ".join(map(str, r["dirty-worker"])))),
                    ("dirty call ok", "http_ok /dirty/ping")], timeout=20)


def sigkill(role, replaced, served, path):
    """SIGKILL the first `role` process: time until a new one is titled
    (`replaced`) and `path` answers again (`served`)."""
    def f(b):
        w = b.roles()[role][0]
        return b.timed("kill -9 %d" % w,
                       [(replaced, "titled '%s' %d" % (T[role], w)),
                        (served, "gone %d && http_ok %s" % (w, path))], timeout=20)
    return f


worker_sigkill = sigkill("dirty-worker", "new dirty worker", "dirty call ok",
                         "/dirty/ping")
http_worker_sigkill = sigkill("worker", "new HTTP worker", "HTTP ok", "/")


def stop(sig):
    def f(b):
        r = b.roles()
        return b.timed("kill -%s %d" % (sig, r["master"][0]),
                       [("dirty arbiter gone", "gone %d" % r["dirty-arbiter"][0]),
                        ("whole tree gone", gone_all(b.tree()))], timeout=20)
    return f


def orphan(b):
    r = b.roles()
    a = r["dirty-arbiter"][0]
    b.kill("STOP", a)
    b.timed("kill -9 %d" % r["master"][0], [("w", gone_all(r["worker"]))], timeout=10)
    path = "export PATH=%s:$PATH; " % b.bin_dir
    return b.timed("%scd %s && (%s >>/proc/1/fd/1 2>&1 &)" % (path, b.appdir, harness.START_CMD),
                   [("orphan gone", "gone %d" % a),
                    ("orphan's workers gone", gone_all(r["dirty-worker"])),
                    ("new dirty arbiter", "titled '%s' %d" % (T["dirty-arbiter"], a)),
                    ("dirty call ok", "http_ok /dirty/ping")], timeout=20)


SCENARIOS = [
    ("parent SIGKILL", parent_sigkill),
    ("dirty arbiter SIGKILL", arbiter_sigkill),
    ("dirty worker SIGKILL", worker_sigkill),
    ("HTTP worker SIGKILL", http_worker_sigkill),
    ("SIGTERM (graceful)", stop("TERM")),
    ("SIGQUIT", stop("QUIT")),
    ("SIGINT", stop("INT")),
    ("orphan cleanup (new master start)", orphan),
]


def main():
    if os.geteuid() != 0:
        print("the sandbox needs root (unshare --pid --net): n/a")
        return 1
    print("lifecycle, PID-namespace sandbox, %d runs each, ms from the signal (median / max)" % RUNS)
    for name, fn in SCENARIOS:
        runs = {}
        failures = 0
        for _ in range(RUNS):
            b = harness.make("sandbox")
            try:
                b.start(timeout=30)
                time.sleep(0.2)
                res = fn(b)
            except Exception as e:  # a run that failed is reported, not hidden
                failures += 1
                res = {}
                err = str(e).splitlines()[0]
            finally:
                b.close()
            for k, v in res.items():
                runs.setdefault(k, []).append(v)
        print(name)
        for k, vs in runs.items():
            ok = [v for v in vs if v is not None]
            miss = len(vs) - len(ok)
            if ok:
                print("  %-28s %8.0f / %-8d%s" % (k, statistics.median(ok), max(ok),
                                                  ("  (%d runs: not within 20 s)" % miss) if miss else ""))
            else:
                print("  %-28s %s" % (k, "never (within 20 s)"))
        if failures:
            print("  %d run(s) failed: %s" % (failures, err))
    return 0


if __name__ == "__main__":
    sys.exit(main())
