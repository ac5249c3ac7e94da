"""Dirty arbiter lifecycle scenarios (the seed's four + SPEC section 6), each
run in the PID-namespace sandbox and in a real container (harness.py).

Bounds are generous (a loaded CI machine must not flake); the measured
figures are recorded and printed at the end of the pytest run, and
bench/lifecycle.py reports medians over several runs.
"""

import pytest

import harness
from harness import TITLES, BackendUnavailable, record

BACKENDS = ["sandbox", "container", "sandbox-gthread", "sandbox-asgi"]
PIDFILE_GLOB = "/tmp/cunicorn-0/*/dirty-arbiter.pid"
SOCKET_GLOB = "/tmp/cunicorn-0/*/dirty.sock"


@pytest.fixture(params=BACKENDS)
def env(request):
    b = harness.make(request.param)
    try:
        b.start()
    except BackendUnavailable as e:
        pytest.fail("%s backend cannot run here: %s" % (request.param, e), pytrace=False)
    yield b
    print("=== %s logs ===\n%s" % (b.name, b.logs()[-6000:]))
    b.close()


def _one(roles, role):
    pids = roles[role]
    assert len(pids) == 1, "expected one %s, found %s" % (role, roles)
    return pids[0]


def _glob(b, pattern):
    r = b.sh("for f in %s; do [ -e \"$f\" ] && echo \"$f\"; done; true\n" % pattern)
    return [x for x in r.stdout.split("\n") if x]


# -- the tree exists ---------------------------------------------------------

def test_tree_and_dirty_worker_exist(env):
    r = env.roles()
    master = _one(r, "master")
    arbiter = _one(r, "dirty-arbiter")
    worker = _one(r, "worker")
    dworker = _one(r, "dirty-worker")
    ppid = {p.pid: p.ppid for p in env.procs()}
    assert ppid[arbiter] == master and ppid[worker] == master
    assert ppid[dworker] == arbiter
    code, body = env.http("/dirty/ping")
    assert code == 200 and '"pong": true' in body, body
    code, body = env.http("/dirty/ping")
    assert '"calls": 2' in body, body
    code, body = env.http("/dirty/echo?m=hello")
    assert code == 200 and '"message": "hello"' in body, body
    assert _glob(env, PIDFILE_GLOB) and _glob(env, SOCKET_GLOB)


# -- 1. parent SIGKILL -----------------------------------------------------------

def test_parent_sigkill_takes_the_whole_tree(env):
    r = env.roles()
    master, arbiter = _one(r, "master"), _one(r, "dirty-arbiter")
    others = r["worker"] + r["dirty-worker"]
    waits = [("dirty arbiter gone", "gone %d" % arbiter)]
    waits += [("%d gone" % p, "gone %d" % p) for p in others]
    waits.append(("whole tree gone", " && ".join("gone %d" % p for p in [arbiter] + others)))
    t = env.timed("kill -9 %d" % master, waits, timeout=5)
    record(env.name, "parent SIGKILL", "dirty arbiter gone", t["dirty arbiter gone"])
    record(env.name, "parent SIGKILL", "whole tree gone", t["whole tree gone"])
    assert t["dirty arbiter gone"] is not None, "dirty arbiter %d survived its master by 5 s" % arbiter
    assert t["whole tree gone"] is not None, "processes survived the master by 5 s: %s" % env.roles()
    env.wait_log("Parent changed, shutting down dirty arbiter", timeout=10)
    assert env.tree() == []
    # The arbiter's own files go with it (the master could not remove them).
    assert _glob(env, PIDFILE_GLOB) == [] and _glob(env, SOCKET_GLOB) == []


# -- 2. orphan cleanup -----------------------------------------------------------

def test_orphan_cleanup_kills_stopped_orphan(env):
    r = env.roles()
    master, arbiter = _one(r, "master"), _one(r, "dirty-arbiter")
    dworker = _one(r, "dirty-worker")
    # A frozen arbiter cannot notice its master's death: a real orphan.
    env.kill("STOP", arbiter)
    t = env.timed("kill -9 %d" % master,
                  [("http worker gone", " && ".join("gone %d" % p for p in r["worker"]))],
                  timeout=10)
    assert t["http worker gone"] is not None, env.roles()
    assert arbiter in env.roles()["dirty-arbiter"], "the stopped orphan should still exist"
    # The orphan never holds the HTTP port.
    assert env.http("/")[0] == 0, "something still answers on the HTTP port"
    env.start_master()
    env.wait_log("Killing orphaned dirty arbiter (pid: %d)" % arbiter, timeout=15)
    t = env.timed("true", [("orphan gone", "gone %d" % arbiter),
                           ("orphan's worker gone", "gone %d" % dworker)], timeout=10)
    record(env.name, "orphan cleanup (SIGSTOPped)", "orphan gone after log", t["orphan gone"])
    assert t["orphan gone"] is not None, "orphan %d survived the new master" % arbiter
    assert t["orphan's worker gone"] is not None, "orphan's worker %d survived" % dworker
    r2 = env.wait_ready(timeout=20, exclude=(master, arbiter, dworker))
    assert _one(r2, "dirty-arbiter") != arbiter
    code, body = env.http("/dirty/ping")
    assert code == 200 and '"pong": true' in body, body


# -- 2b. restart with `exec sh -c "gunicorn ... &"` ----------------------------

def test_restart_through_exec_sh_with_the_session_closed(env):
    """gunicorn's own container tests restart a killed server with
    `docker exec C sh -c "gunicorn app:application -c gunicorn_conf.py &"`:
    the exec session (and the pipe the server logs to) closes as soon as
    sh exits.  The server must start and keep serving with every log line
    (debug level, access log on stdout) written to a pipe nobody reads."""
    r = env.roles()
    master = _one(r, "master")
    everyone = env.tree()
    t = env.timed("kill -9 %d" % master,
                  [("whole tree gone", " && ".join("gone %d" % p for p in everyone))], timeout=10)
    assert t["whole tree gone"] is not None, env.roles()
    rc = env.start_master_exec_detached()
    assert rc == 0, "exec sh -c '... &' failed: %s" % rc
    r2 = env.wait_ready(timeout=30, exclude=everyone)
    new_master = _one(r2, "master")
    for i in range(5):      # access log and debug lines: one EPIPE each, at least
        code, body = env.http("/dirty/ping")
        assert code == 200 and '"pong": true' in body, (code, body)
    assert env.http("/")[0] == 200
    assert env.roles()["master"] == [new_master], env.roles()
    # and it still stops cleanly, its last lines lost
    _stop(env, "TERM", 12, "SIGTERM after an exec-detached restart")


def test_stale_pidfile_never_kills_an_unrelated_process(env):
    r = env.roles()
    files = _glob(env, PIDFILE_GLOB)
    assert len(files) == 1, files
    pidfile = files[0]
    # A crash that leaves the pid file behind: every process SIGKILLed.
    env.sh("kill -9 %s\n" % " ".join(str(p) for p in env.tree()))
    env.timed("true", [("all gone", "none_titled 'gunicorn: '")], timeout=5)
    assert env.tree() == []
    # An unrelated long-lived process, whose pid the stale file now names.
    # (polled: the background shell may not have exec'd sleep yet)
    out = env.sh("(sleep 1000 >/dev/null 2>&1 &); i=0; while [ $i -lt 1000 ]; do "
                 "p=$(ps -eo pid=,args= | awk '$2 == \"sleep\" && $3 == \"1000\" { print $1 }'); "
                 "[ -n \"$p\" ] && { echo $p; break; }; sleep 0.01; i=$((i+1)); done\n").stdout
    assert out.split(), "the unrelated process did not start"
    victim = int(out.split()[0])
    env.sh("mkdir -p \"$(dirname %s)\"; echo %d > %s\n" % (pidfile, victim, pidfile))
    env.start_master()
    r2 = env.wait_ready(timeout=20, exclude=tuple(r["master"] + r["dirty-arbiter"]))
    # The stale file was replaced: it now names the new arbiter.
    newpid = str(_one(r2, "dirty-arbiter"))
    t = env.timed("true", [("pid file names the new arbiter",
                            "[ \"$(cut -d' ' -f1 %s 2>/dev/null)\" = %s ]" % (pidfile, newpid))], timeout=5)
    assert t["pid file names the new arbiter"] is not None, env.exec(["cat", pidfile]).stdout
    alive = env.sh("alive %d && echo yes || echo no\n" % victim).stdout.strip()
    assert alive == "yes", "the unrelated process %d named by a stale pid file was killed" % victim
    assert "Killing orphaned dirty arbiter" not in env.logs()
    code, _ = env.http("/dirty/ping")
    assert code == 200


# -- 3. respawn --------------------------------------------------------------------

def test_dirty_arbiter_respawn(env):
    r = env.roles()
    master, arbiter = _one(r, "master"), _one(r, "dirty-arbiter")
    old_workers = r["dirty-worker"]
    # a container's log reaches `logs` a moment after it is written
    spawned = env.wait_log("Spawning dirty arbiter").count("Spawning dirty arbiter")
    waits = [("new dirty arbiter", "titled '%s' %d" % (TITLES["dirty-arbiter"], arbiter)),
             ("old dirty workers gone", " && ".join("gone %d" % p for p in old_workers)),
             ("new dirty worker", "titled '%s' %s" % (TITLES["dirty-worker"],
                                                      " ".join(map(str, old_workers)))),
             ("dirty call ok", "http_ok /dirty/ping")]
    t = env.timed("kill -9 %d" % arbiter, waits, timeout=10)
    for k, v in t.items():
        record(env.name, "dirty arbiter SIGKILL", k, v)
    assert all(v is not None for v in t.values()), t
    env.wait_log("Spawning dirty arbiter", count=spawned + 1, timeout=10)
    r2 = env.roles()
    assert r2["master"] == [master], "the master must survive: %s" % r2
    assert _one(r2, "dirty-arbiter") != arbiter
    assert not set(old_workers) & set(r2["dirty-worker"])
    code, body = env.http("/dirty/ping")
    assert code == 200 and '"pong": true' in body, body


def test_dirty_worker_respawn(env):
    r = env.roles()
    arbiter, dworker = _one(r, "dirty-arbiter"), _one(r, "dirty-worker")
    waits = [("new dirty worker", "titled '%s' %d" % (TITLES["dirty-worker"], dworker)),
             ("dirty call ok", "gone %d && http_ok /dirty/ping" % dworker)]
    t = env.timed("kill -9 %d" % dworker, waits, timeout=10)
    for k, v in t.items():
        record(env.name, "dirty worker SIGKILL", k, v)
    assert all(v is not None for v in t.values()), t
    r2 = env.roles()
    assert r2["dirty-arbiter"] == [arbiter]
    new = _one(r2, "dirty-worker")
    assert new != dworker
    # The replacement loaded the app: a fresh instance counts from 1.
    code, body = env.http("/dirty/ping")
    assert code == 200 and '"pong": true' in body, body


# -- 4. stops, 5. nothing left behind ------------------------------------------------

def _stop(env, sig, bound, scenario):
    r = env.roles()
    master = _one(r, "master")
    everyone = env.tree()
    t = env.timed("kill -%s %d" % (sig, master),
                  [("dirty arbiter gone", "gone %d" % _one(r, "dirty-arbiter")),
                   ("whole tree gone", " && ".join("gone %d" % p for p in everyone))],
                  timeout=bound)
    for k, v in t.items():
        record(env.name, scenario, k, v)
    assert t["whole tree gone"] is not None, \
        "SIG%s: processes left after %ss: %s" % (sig, bound, env.roles())
    assert env.tree() == []
    left = env.runtime_entries()
    assert left == [], "left behind under /tmp: %s" % left
    return t


def test_graceful_sigterm(env):
    # graceful_timeout 5 + dirty_graceful_timeout 5: an idle tree is far faster.
    _stop(env, "TERM", 12, "SIGTERM (graceful)")
    # written before the processes exited; a container's log may lag
    env.wait_log("Dirty arbiter exiting")
    env.wait_log("Shutting down: Master")


@pytest.mark.parametrize("sig", ["QUIT", "INT"])
def test_quick_stop(env, sig):
    _stop(env, sig, 3, "SIG%s (quick)" % sig)


# -- 3b. in-flight calls on a dead process fail at once ----------------------------

def _start_call(env, seconds):
    """A dirty call of `seconds` from curl in the background; returns once
    the dirty worker is inside it (the app creates /tmp/inflight.started)."""
    env.sh("rm -f /tmp/inflight.*; (curl -s --max-time 60 -o /tmp/inflight.body -w '%%{http_code}' "
           "'http://127.0.0.1:8000/dirty/sleep?s=%s&mark=/tmp/inflight.started' "
           "> /tmp/inflight.code.tmp; "
           "mv /tmp/inflight.code.tmp /tmp/inflight.code) >/dev/null 2>&1 &\n" % seconds)
    t = env.timed("true", [("busy", "[ -e /tmp/inflight.started ]")], timeout=15)
    assert t["busy"] is not None, "the dirty call never started:\n%s" % env.logs()[-3000:]


@pytest.mark.parametrize("victim", ["dirty-worker", "dirty-arbiter"])
def test_inflight_call_fails_fast_when_its_process_dies(env, victim):
    r = env.roles()
    pid = _one(r, victim)
    # A 20 s dirty call in flight (dirty_timeout is 30 s) ...
    _start_call(env, 20)
    # ... and the process serving it is SIGKILLed.
    t = env.timed("kill -9 %d" % pid, [("in-flight call answered", "[ -e /tmp/inflight.code ]")],
                  timeout=10)
    record(env.name, "%s SIGKILL, call in flight" % victim, "call answered", t["in-flight call answered"])
    assert t["in-flight call answered"] is not None, "the in-flight call hung after its %s died" % victim
    out = env.sh("cat /tmp/inflight.code; echo; cat /tmp/inflight.body; rm -f /tmp/inflight.*\n").stdout
    code, _, body = out.partition("\n")
    assert code.strip() == "502", out
    assert "Dirty" in body and "Error" in body, "not a clear dirty error: %r" % body


# -- 4b. stops with a dirty call in flight ---------------------------------------------

def _call_result(env):
    out = env.sh("cat /tmp/inflight.code 2>/dev/null; echo; cat /tmp/inflight.body 2>/dev/null; "
                 "rm -f /tmp/inflight.*\n").stdout
    code, _, body = out.partition("\n")
    return code.strip(), body


def test_graceful_sigterm_lets_an_inflight_dirty_call_finish(env):
    _start_call(env, 2)
    master = _one(env.roles(), "master")
    everyone = env.tree()
    t = env.timed("kill -TERM %d" % master,
                  [("call answered", "[ -e /tmp/inflight.code ]"),
                   ("whole tree gone", " && ".join("gone %d" % p for p in everyone))], timeout=12)
    for k, v in t.items():
        record(env.name, "SIGTERM, 2 s dirty call in flight", k, v)
    code, body = _call_result(env)
    assert code == "200" and '"slept": 2' in body, (code, body)
    assert t["whole tree gone"] is not None, "tree not gone 12 s after SIGTERM: %s" % env.roles()
    assert env.runtime_entries() == []


@pytest.mark.parametrize("sig", ["QUIT", "INT"])
def test_quick_stop_with_an_inflight_dirty_call(env, sig):
    _start_call(env, 20)
    master = _one(env.roles(), "master")
    everyone = env.tree()
    t = env.timed("kill -%s %d" % (sig, master),
                  [("whole tree gone", " && ".join("gone %d" % p for p in everyone))], timeout=3)
    record(env.name, "SIG%s, 20 s dirty call in flight" % sig, "whole tree gone", t["whole tree gone"])
    assert t["whole tree gone"] is not None, \
        "SIG%s with a call in flight: processes left after 3 s: %s" % (sig, env.roles())
    assert env.runtime_entries() == [] or all(e.startswith("/tmp/inflight.") for e in env.runtime_entries())
