"""The dirty arbiter against the real binary: routing, per-app allocation,
errors, timeouts, worker death, signals, titles, log lines, parent death,
orphan cleanup and the stale-pid-file rule (SPEC §5, §6).

Direct clients speak the wire protocol by hand (dirty_raw.py); HTTP
requests go through the WSGI app in apps/dirty_apps.py, which calls the
dirty apps with gunicorn.dirty.get_dirty_client().
"""
import concurrent.futures
import json
import os
import signal
import socket
import subprocess
import threading
import time
import uuid

import pytest

from conftest import BINARY, ROOT, Server, has_open, http_get, pid_alive, proc_title, wait_for
import dirty_raw as d
from dirty_raw import arbiter_pid, dirty_workers, socket_path

APPS = os.path.join(ROOT, "tests", "integration", "apps")
BIN = os.environ.get("DIRTY_TEST_BINARY", BINARY)
ECHO, LIMITED, CLASS_LIMITED = "dirty_apps:Echo", "dirty_apps:Limited", "dirty_apps:ClassLimited"


def unique_name(tag):
    return "dt-%s-%s" % (tag, uuid.uuid4().hex[:8])


def dirty_args(name, workers=1, apps=(ECHO,), *extra):
    args = ["--chdir", APPS, "-n", name, "--dirty-workers", str(workers)]
    for a in apps:
        args += ["--dirty-app", a]
    return args + list(extra) + ["dirty_apps:application"]


def start(make_server, name, workers=1, apps=(ECHO,), extra=(), nworkers_ready=None, **kw):
    kw.setdefault("binary", BIN)
    s = make_server(*dirty_args(name, workers, apps, *extra), **kw)
    arbiter = wait_for(lambda: arbiter_pid(s), 10, what="a dirty arbiter")
    n = workers if nworkers_ready is None else nworkers_ready
    wait_for(lambda: len(dirty_workers(s)) == n, 15, what="%d dirty workers" % n)
    s.arbiter = arbiter
    s.sock = socket_path(s)
    return s


def connect(s):
    return d.Conn(s.sock)


def status(s):
    return d.status(s.sock, 77)


def get_json(port, path):
    st, _, body = http_get(port, path, timeout=30)
    assert st == 200, body
    return json.loads(body)


def children(pid):
    """Live and zombie children of pid (one cheap read: a test killing
    fresh processes as soon as they exist)."""
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def private_kb(pid):
    with open("/proc/%d/smaps_rollup" % pid) as f:
        rollup = f.read()
    return sum(int(l.split()[1]) for l in rollup.splitlines()
               if l.startswith(("Private_Clean:", "Private_Dirty:")))


def gone_within(pids, seconds):
    """Seconds until every pid is gone, or None if some survived."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        if not any(pid_alive(p) for p in pids):
            return time.monotonic() - t0
        time.sleep(0.005)
    return None


# ---- routing -------------------------------------------------------------

def test_http_request_calls_a_dirty_app(make_server):
    s = start(make_server, unique_name("http"))
    out = get_json(s.port, '/call?app=dirty_apps:Echo&action=echo&arg="hello"')
    assert out == {"result": "hello"}
    out = get_json(s.port, "/call?app=dirty_apps:Echo&action=pid")
    assert out["result"] in dirty_workers(s)


def test_http_worker_using_gunicorn_dirty_does_not_load_asyncio(make_server):
    """`from gunicorn.dirty import ...` and sync calls must not import
    asyncio (about 5 MB per HTTP worker)."""
    s = start(make_server, unique_name("noaio"))
    assert get_json(s.port, '/call?app=dirty_apps:Echo&action=echo&arg="x"') == {"result": "x"}
    for _ in range(3):
        out = get_json(s.port, "/modules")
        assert out["asyncio"] is False, out


def test_direct_client_values_and_stream(make_server):
    s = start(make_server, unique_name("direct"))
    c = connect(s)
    value = [1, -2, 3.5, "é", b"\x00\xff", None, True, {"k": [{"x": 1}]}]
    assert d.result(c.call(1, ECHO, "echo", value)) == value
    assert c.call(2, ECHO, "count", 5) == (d.END, {"chunks": [0, 1, 2, 3, 4]})
    # ids are the client's own, even huge ones
    assert d.result(c.call(2**64 - 1, ECHO, "echo", "max-id")) == "max-id"


def test_many_http_and_direct_clients_at_once(make_server):
    s = start(make_server, unique_name("load"), workers=4, extra=("-w", "4"))
    errors = []

    def http_one(n):
        out = get_json(s.port, "/call?app=dirty_apps:Echo&action=tag&arg=%d" % n)
        return out["result"]["n"]

    def direct(k):
        c = connect(s)
        try:
            ids = list(range(k * 1000, k * 1000 + 100))
            # pipelined: all requests first, then every reply by id
            c.send(b"".join(d.request(i, ECHO, "tag", i) for i in ids))
            got = {}
            for _ in ids:
                t, rid, v = c.recv_frame()
                assert t == d.RESPONSE, v
                got[rid] = v["result"]["n"]
            if got != {i: i for i in ids}:
                errors.append(("direct", k))
        finally:
            c.close()

    with concurrent.futures.ThreadPoolExecutor(64) as ex:
        directs = [ex.submit(direct, k) for k in range(8)]
        https = {n: ex.submit(http_one, n) for n in range(200)}
        results = {n: f.result() for n, f in https.items()}
        for f in directs:
            f.result()
    assert results == {n: n for n in range(200)}
    assert errors == []
    st = status(s)
    assert sum(w["served"] for w in st["workers"]) >= 1000
    assert st["in_flight"] == 0


@pytest.mark.nosan(reason="asserts the arbiter's private memory is back under 4 MB after 60 MB of replies; ASan's quarantine keeps freed buffers")
def test_large_payloads_and_a_client_that_does_not_read(make_server):
    s = start(make_server, unique_name("large"), workers=2)
    big = os.urandom(20 * 1024 * 1024)
    lazy = connect(s)
    # 3 x 20 MB replies queued for a client that reads nothing for a while
    lazy.send(b"".join(d.request(i, ECHO, "echo", big) for i in range(3)))
    c = connect(s)
    for i in range(3):
        blob = os.urandom(3 * 1024 * 1024 + i)
        assert d.result(c.call(10 + i, ECHO, "echo", blob)) == blob
    assert d.result(c.call(20, ECHO, "echo", "small")) == "small"
    time.sleep(0.5)
    got = {}
    for i in range(3):      # two workers: replies may come in any order
        t, rid, v = lazy.recv_frame()
        assert t == d.RESPONSE
        got[rid] = v["result"] == big
    assert got == {0: True, 1: True, 2: True}
    # the big buffers are given back once drained (the arbiter frees a
    # buffer after its last write, which may be just after we read it)
    kb = wait_for(lambda: (lambda k: k if k <= 4096 else None)(private_kb(s.arbiter)), 10,
                  what="the arbiter's private memory back under 4 MB")
    print("dirty arbiter private memory after 60 MB of replies: %d kB" % kb)
    assert arbiter_pid(s) == s.arbiter


# ---- allocation ----------------------------------------------------------

def test_per_app_allocation_config_limit(make_server):
    s = start(make_server, unique_name("alloc"), workers=4, apps=(ECHO, LIMITED + ":2"))
    c = connect(s)
    limited = {d.result(c.call(i, LIMITED, "pid")) for i in range(40)}
    echo = {d.result(c.call(100 + i, ECHO, "pid")) for i in range(40)}
    workers = set(dirty_workers(s))
    assert len(limited) == 2 and limited <= workers
    assert echo == workers and len(workers) == 4
    st = status(s)
    loaded = [w["pid"] for w in st["workers"] if LIMITED in w["apps"]]
    assert sorted(loaded) == sorted(limited)
    assert all(ECHO in w["apps"] for w in st["workers"])


def test_replacement_loads_the_same_apps(make_server):
    s = start(make_server, unique_name("sameapps"), workers=3, apps=(ECHO, LIMITED + ":1"))
    c = connect(s)
    holder = d.result(c.call(1, LIMITED, "pid"))
    os.kill(holder, signal.SIGKILL)
    s.wait_log("Dirty worker (pid: %d) died" % holder)
    new = wait_for(lambda: (lambda p: p if p != holder else None)(d.result(c.call(2, LIMITED, "pid"))),
                   10, what="a replacement holding Limited")
    assert new in dirty_workers(s)
    st = status(s)
    assert [w["pid"] for w in st["workers"] if LIMITED in w["apps"]] == [new]
    assert len(st["workers"]) == 3


def test_class_attribute_workers_limit(make_server):
    s = start(make_server, unique_name("classlim"), workers=3, apps=(ECHO, CLASS_LIMITED))

    def holders():
        st = status(s)
        return [w["pid"] for w in st["workers"]
                if CLASS_LIMITED in w["apps"] and w["state"] == "alive"]
    wait_for(lambda: len(holders()) == 1 and len(dirty_workers(s)) == 3, 15,
             what="ClassLimited (workers = 1) loaded by exactly one worker")
    c = connect(s)
    pids = {d.result(c.call(i, CLASS_LIMITED, "pid")) for i in range(10)}
    assert pids == set(holders())
    # made and init()ed in that one worker only, never in every worker
    # for a moment (a model loaded three times): the first worker reports
    # the class limits before it makes any app, the others wait for them
    wait_for(lambda: s.log().count("Initialized dirty app: %s" % ECHO) == 3, 10,
             what="Echo in the three workers")
    assert s.log().count("Initialized dirty app: %s" % CLASS_LIMITED) == 1, s.log()
    assert "Retiring" not in s.log() and "retir" not in s.log().lower()


# ---- errors --------------------------------------------------------------

def test_error_types(make_server):
    s = start(make_server, unique_name("errors"))
    c = connect(s)
    assert d.error_type(c.call(1, "dirty_apps:Nope", "pid")) == "DirtyAppNotFoundError"
    t, v = c.call(2, ECHO, "fail", "boom")
    assert t == d.ERROR and v["error"]["error_type"] == "DirtyAppError"
    assert "boom" in v["error"]["message"]
    # the connection carries on after application errors
    assert d.result(c.call(3, ECHO, "echo", 1)) == 1
    out = get_json(s.port, "/call?app=dirty_apps:Nope&action=pid")
    assert out["error"] == "DirtyAppNotFoundError"
    out = get_json(s.port, '/call?app=dirty_apps:Echo&action=fail&arg="kaput"')
    assert out["error"] == "DirtyAppError" and "kaput" in out["message"]


def test_no_workers_available_while_a_crashing_worker_waits(make_server):
    s = start(make_server, unique_name("noworkers"), workers=2, apps=(ECHO, LIMITED + ":1"))
    c = connect(s)
    first = d.result(c.call(1, LIMITED, "pid"))
    # A worker dying young (under a second old) for the second time within
    # 5 s is respawned only after a second: meanwhile nobody has the app.
    # The holder, then each replacement as soon as it exists (a replacement
    # loads Limited: it is the only child the arbiter starts), so that the
    # last two deaths are young however slow the machine.
    victims, known = [first], set(children(s.arbiter))
    os.kill(first, signal.SIGKILL)
    s.wait_log("Dirty worker (pid: %d) died" % first)
    for _ in range(2):
        new = wait_for(lambda: [p for p in children(s.arbiter) if p not in known], 10,
                       interval=0.001, what="the replacement")[0]
        os.kill(new, signal.SIGKILL)
        victims.append(new)
        known.add(new)
        s.wait_log("Dirty worker (pid: %d) died" % new)
    assert d.error_type(c.call(2, LIMITED, "pid")) == "DirtyNoWorkersAvailableError"
    assert d.result(c.call(3, ECHO, "echo", 3)) == 3
    third = wait_for(lambda: (lambda r: r[1]["result"] if r[0] == d.RESPONSE else None)(
        c.call(4, LIMITED, "pid")), 10, interval=0.1, what="Limited back")
    assert third not in victims


def test_call_timeout_and_worker_heartbeat_timeout(make_server):
    s = start(make_server, unique_name("timeout"), extra=("--dirty-timeout", "1"))
    c = connect(s)
    worker = dirty_workers(s)[0]
    t0 = time.monotonic()
    t, v = c.call(1, ECHO, "sleep", 30)
    took = time.monotonic() - t0
    assert t == d.ERROR and v["error"]["error_type"] == "DirtyTimeoutError", v
    # at dirty_timeout (checked every 200 ms), not when the call ends
    assert 0.9 <= took < 10, took
    # the stuck worker stops beating and is killed and replaced
    s.wait_log("DIRTY WORKER TIMEOUT (pid:%d)" % worker, timeout=10)
    wait_for(lambda: dirty_workers(s) and worker not in dirty_workers(s), 10,
             what="a replacement worker")
    assert d.result(c.call(2, ECHO, "echo", "alive")) == "alive"


def test_worker_killed_mid_call_fails_at_once(make_server):
    s = start(make_server, unique_name("midcall"), workers=2)
    c = connect(s)
    c.send(d.request(1, ECHO, "sleep", 30))
    busy = wait_for(lambda: [w["pid"] for w in status(s)["workers"] if w["in_flight"] == 1], 5,
                    what="the busy worker")[0]
    other = connect(s)
    os.kill(busy, signal.SIGKILL)
    t0 = time.monotonic()
    t, rid, v = c.recv_frame()
    took = time.monotonic() - t0
    assert (t, rid) == (d.ERROR, 1)
    assert v["error"]["error_type"] == "DirtyWorkerError"
    assert str(busy) in v["error"]["message"]
    # at once (SPEC 6.3), not at the end of the 30 s call or at dirty_timeout
    assert took < 5, took
    s.wait_log("spawning a replacement")
    wait_for(lambda: len(dirty_workers(s)) == 2 and busy not in dirty_workers(s), 10,
             what="the replacement")
    assert d.result(other.call(2, ECHO, "echo", "ok")) == "ok"


def _state(pid):
    """The process state letter of /proc/PID/stat (R, S, T, Z...)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


def test_requests_routed_to_a_worker_dead_but_not_yet_seen_go_to_another(make_server):
    """A worker that died an instant before the arbiter routed to it (its
    death not yet seen) never got those requests: they go to a live worker
    instead of failing with "connection lost".  Made deterministic by
    freezing the arbiter: the requests arrive first, then the worker dies,
    then the arbiter runs and sees both in that order."""
    s = start(make_server, unique_name("reroute"), workers=2)
    c = connect(s)
    assert d.result(c.call(1, ECHO, "echo", "warm")) == "warm"
    victim, survivor = dirty_workers(s)
    os.kill(s.arbiter, signal.SIGSTOP)
    try:
        wait_for(lambda: _state(s.arbiter) == "T", 5, what="the arbiter to stop")
        c.send(b"".join(d.request(10 + i, ECHO, "tag", i) for i in range(6)))
        os.kill(victim, signal.SIGKILL)
        # the zombie leader alone: every thread has dropped the process's
        # descriptors, so its socket is closed (a thread still exiting
        # holds it open, and requests sent then are lost with it)
        wait_for(lambda: _state(victim) == "Z" and len(os.listdir("/proc/%d/task" % victim)) == 1,
                 5, what="the worker's exit")
    finally:
        os.kill(s.arbiter, signal.SIGCONT)
    replies = {}
    for _ in range(6):
        t, rid, v = c.recv_frame()
        replies[rid] = (t, v)
    for i in range(6):
        t, v = replies[10 + i]
        assert t == d.RESPONSE, v
        assert v["result"] == {"n": i, "pid": survivor}
    s.wait_log("spawning a replacement")
    assert "connection lost" not in s.log()


def test_client_disconnect_with_calls_in_flight(make_server):
    s = start(make_server, unique_name("disconnect"))
    for i in range(5):
        c = connect(s)
        c.send(d.request(i, ECHO, "sleep", 0.2))
        c.close()
    c = connect(s)
    assert d.result(c.call(9, ECHO, "echo", "still here")) == "still here"
    wait_for(lambda: status(s)["in_flight"] == 0, 5, what="forgotten calls drained")
    assert arbiter_pid(s) == s.arbiter


# ---- stash -----------------------------------------------------------------

def stash_op(c, rid, **kw):
    c.send(d.frame(d.STASH, rid, kw))
    t, got, v = c.recv_frame()
    assert got == rid
    return t, v


def test_stash_operations(make_server):
    s = start(make_server, unique_name("stash"))
    c = connect(s)
    R = lambda rid, **kw: d.result(stash_op(c, rid, **kw))
    assert R(1, op=1, table="t", key="a", value={"x": [1, 2.5]}) is True
    assert R(2, op=1, table="t", key=7, value=b"\x00bin") is True
    assert R(3, op=1, table="t", key="ab", value=None) is True
    assert R(4, op=2, table="t", key="a") == {"x": [1, 2.5]}
    assert R(5, op=2, table="t", key=7) == b"\x00bin"
    assert R(6, op=4, table="t") == ["a", 7, "ab"]
    assert R(7, op=4, table="t", pattern="a?") == ["ab"]
    assert R(8, op=6, table="t") == {"size": 3, "table": "t"}
    assert R(9, op=10, table="t", key="a") is True
    assert R(10, op=3, table="t", key="a") is True
    assert R(11, op=3, table="t", key="a") is False
    assert R(12, op=10, table="t", key="a") is False
    t, v = stash_op(c, 13, op=2, table="t", key="a")
    assert t == d.ERROR and v["error"]["error_type"] == "StashKeyNotFoundError"
    assert v["error"]["details"] == {"table_name": "t", "key": "a"}
    t, v = stash_op(c, 14, op=6, table="nope")
    assert t == d.ERROR and v["error"]["error_type"] == "StashTableNotFoundError"
    assert R(15, op=7, table="e") is True and R(16, op=7, table="e") is True
    assert sorted(R(17, op=9, table="")) == ["e", "t"]
    assert R(18, op=5, table="t") is True and R(19, op=6, table="t")["size"] == 0
    assert R(20, op=8, table="t") is True and R(21, op=8, table="t") is False
    assert R(22, op=10, table="t") is False and R(23, op=10, table="e") is True
    # many keys, half deleted: the survivors are all there, in order
    for k in range(2000):
        assert R(100 + k, op=1, table="big", key="k%d" % k, value=k)
    for k in range(0, 2000, 2):
        assert R(5000 + k, op=3, table="big", key="k%d" % k) is True
    assert R(9000, op=6, table="big")["size"] == 1000
    assert R(9001, op=4, table="big") == ["k%d" % k for k in range(1, 2000, 2)]
    assert R(9002, op=2, table="big", key="k1999") == 1999


def test_stash_shared_by_dirty_workers_and_clients(make_server):
    s = start(make_server, unique_name("stash2"), workers=2, apps=(ECHO, "dirty_apps:Stashing"))
    c = connect(s)
    # the declared table exists once the workers loaded the app
    wait_for(lambda: "declared" in d.result(stash_op(c, 1, op=9, table="")), 10,
             what="the declared stash table")
    pids = {d.result(c.call(10 + i, "dirty_apps:Stashing", "put", "shared", "k%d" % i, i))
            for i in range(4)}
    assert len(pids) == 2           # both workers wrote
    assert d.result(stash_op(c, 20, op=4, table="shared")) == ["k0", "k1", "k2", "k3"]
    assert d.result(c.call(21, "dirty_apps:Stashing", "get", "shared", "k3")) == 3
    assert d.result(c.call(22, "dirty_apps:Stashing", "get", "shared", "zz")) == "<missing>"


# ---- titles, logs, signals -----------------------------------------------

def test_titles_and_log_lines(make_server):
    name = unique_name("titles")
    s = start(make_server, name, workers=2)
    assert proc_title(s.arbiter) == "cunicorn: dirty-arbiter [%s]" % name
    for p in dirty_workers(s):
        assert proc_title(p) == "cunicorn: dirty-worker [%s]" % name
        assert open("/proc/%d/stat" % p).read().split(") ")[1].split()[1] == str(s.arbiter)
    log = s.log()
    assert "Spawning dirty arbiter" in log
    assert "Spawned dirty arbiter (pid: %d) at %s" % (s.arbiter, s.sock) in log
    assert "Dirty arbiter starting (pid: %d)" % s.arbiter in log
    # the arbiter holds no listener and no inherited descriptor
    fds = os.listdir("/proc/%d/fd" % s.arbiter)
    targets = [os.readlink("/proc/%d/fd/%s" % (s.arbiter, f)) for f in fds]
    inodes = {l.split()[9] for l in open("/proc/net/tcp").read().splitlines()[1:]
              if l.split()[3] == "0A"}
    assert not [t for t in targets if t.startswith("socket:[") and t[8:-1] in inodes]
    assert s.stop(signal.SIGTERM) == 0
    s.wait_log("Dirty arbiter exiting (pid: %d)" % s.arbiter)
    assert s.leftovers() == []
    assert s.runtime_entries() == []


def test_graceful_term_lets_calls_finish(make_server):
    s = start(make_server, unique_name("graceful"))
    c = connect(s)
    c.send(d.request(5, ECHO, "sleep", 1.0))
    wait_for(lambda: status(s)["in_flight"] == 1, 5, what="the call in flight")
    os.kill(s.arbiter, signal.SIGTERM)
    t, rid, v = c.recv_frame()
    assert (t, rid) == (d.RESPONSE, 5) and v["result"]["slept"] == 1.0
    s.wait_log("Dirty arbiter exiting (pid: %d)" % s.arbiter, timeout=10)
    assert gone_within([s.arbiter], 5) is not None


def test_quit_is_immediate(make_server):
    s = start(make_server, unique_name("quit"), workers=2)
    c = connect(s)
    c.send(d.request(5, ECHO, "sleep", 30))
    tree = [s.arbiter] + dirty_workers(s)
    os.kill(s.arbiter, signal.SIGQUIT)
    took = gone_within(tree, 1.0)
    assert took is not None, [p for p in tree if pid_alive(p)]
    assert "Dirty arbiter exiting (pid: %d)" % s.arbiter in s.log()


def test_master_sigquit_whole_tree_gone(make_server):
    s = start(make_server, unique_name("mquit"), workers=2)
    tree = [s.pid] + list(s.processes())
    s.send(signal.SIGQUIT)
    assert gone_within(tree, 1.0) is not None, [proc_title(p) for p in tree if pid_alive(p)]


def test_ttin_ttou_and_the_allocation_floor(make_server):
    s = start(make_server, unique_name("ttin"), workers=2, apps=(ECHO, LIMITED + ":2"))
    os.kill(s.arbiter, signal.SIGTTIN)
    wait_for(lambda: len(dirty_workers(s)) == 3, 10, what="3 dirty workers")
    os.kill(s.arbiter, signal.SIGTTOU)
    wait_for(lambda: len(dirty_workers(s)) == 2, 10, what="2 dirty workers")
    os.kill(s.arbiter, signal.SIGTTOU)
    s.wait_log("SIGTTOU: Cannot decrease below 2 workers (required by app specs)")
    time.sleep(0.5)
    assert len(dirty_workers(s)) == 2
    c = connect(s)
    assert len({d.result(c.call(i, LIMITED, "pid")) for i in range(10)}) == 2


def test_usr1_reopens_the_error_log(make_server, tmp_path):
    log = tmp_path / "error.log"
    s = make_server(*dirty_args(unique_name("usr1"), 1, (ECHO,), "--error-logfile", str(log)),
                    binary=BIN)
    s.arbiter = wait_for(lambda: arbiter_pid(s), 10, what="the dirty arbiter")
    wait_for(lambda: "Dirty arbiter starting" in log.read_text(), 10, what="the starting line")
    assert "Dirty arbiter starting (pid: %d)" % s.arbiter in log.read_text()
    os.rename(str(log), str(log) + ".1")
    os.kill(s.arbiter, signal.SIGUSR1)
    wait_for(lambda: has_open(s.arbiter, log), 10, what="the arbiter holding the new log")
    os.kill(s.arbiter, signal.SIGTTIN)     # something the arbiter logs
    wait_for(lambda: log.exists() and "SIGTTIN: Increasing dirty workers to 2" in log.read_text(),
             10, what="the arbiter writing to the reopened log")
    assert "SIGTTIN" not in open(str(log) + ".1").read()


def test_hup_replaces_all_workers(make_server):
    s = start(make_server, unique_name("hup"), workers=2)
    old = set(dirty_workers(s))
    os.kill(s.arbiter, signal.SIGHUP)
    wait_for(lambda: len(dirty_workers(s)) == 2 and not (set(dirty_workers(s)) & old), 10,
             what="two new dirty workers")
    c = connect(s)
    assert d.result(c.call(1, ECHO, "pid")) not in old
    assert arbiter_pid(s) == s.arbiter


def test_usr1_bursts_during_hup_never_kill_a_fresh_worker(make_server):
    """A dirty worker forked by HUP gets the arbiter's USR1 (log reopen)
    before it has installed its handlers: it must keep it pending, not die
    of the default action."""
    s = start(make_server, unique_name("hupusr1"), workers=3)
    for _ in range(8):
        os.kill(s.arbiter, signal.SIGHUP)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 0.4:
            os.kill(s.arbiter, signal.SIGUSR1)
            time.sleep(0.0005)
    wait_for(lambda: len(dirty_workers(s)) == 3, 15, what="3 dirty workers")
    time.sleep(0.5)
    log = s.log()
    assert "killed by signal %d" % signal.SIGUSR1 not in log, log[-3000:]
    assert "Dirty worker died" not in log, log[-3000:]
    c = connect(s)
    assert d.result(c.call(1, ECHO, "echo", "ok")) == "ok"
    assert arbiter_pid(s) == s.arbiter


def vm_kb(pid, field):
    for line in open("/proc/%d/status" % pid):
        if line.startswith(field + ":"):
            return int(line.split()[1])


@pytest.mark.nosan(reason="asserts the arbiter's peak RSS (VmHWM) after 160 MB of requests; ASan's shadow memory and quarantine inflate it")
def test_requests_queued_for_a_busy_worker_are_bounded(make_server):
    """A client pipelining 160 MB of requests to a busy worker: the arbiter
    queues at most WORKER_MAX_OUT (64 MB) for that worker, answers the rest
    DirtyNoWorkersAvailableError at once, and serves the queued ones when
    the worker is free again."""
    s = start(make_server, unique_name("wqcap"), workers=1)
    hwm0 = vm_kb(s.arbiter, "VmHWM")
    c = connect(s)
    c.s.settimeout(60)
    # busy long enough for 160 MB to be sent meanwhile on a slow machine
    c.send(d.request(1, ECHO, "sleep", 4))
    blob = b"x" * (4 * 1024 * 1024)
    n = 40
    for i in range(n):
        c.send(d.request(100 + i, ECHO, "length", blob))
    replies = {}
    while len(replies) < n + 1:
        t, rid, v = c.recv_frame()
        replies[rid] = (t, v)
    hwm = vm_kb(s.arbiter, "VmHWM")
    print("arbiter peak RSS %d kB -> %d kB" % (hwm0, hwm))
    assert replies[1][0] == d.RESPONSE
    ok = [i for i in range(n) if replies[100 + i][0] == d.RESPONSE]
    refused = [i for i in range(n) if replies[100 + i][0] == d.ERROR]
    assert len(ok) + len(refused) == n
    assert all(replies[100 + i][1]["result"] == len(blob) for i in ok)
    assert all(d.error_type(replies[100 + i]) == "DirtyNoWorkersAvailableError" for i in refused)
    assert "queue" in replies[100 + refused[0]][1]["error"]["message"]
    assert 12 <= len(ok) <= 20, (len(ok), len(refused))
    assert hwm - hwm0 < 120 * 1024, (hwm0, hwm)
    assert d.result(c.call(999, ECHO, "echo", "after")) == "after"


def test_manage_and_status(make_server):
    s = start(make_server, unique_name("manage"), workers=1)
    c = connect(s)
    c.send(d.frame(d.MANAGE, 3, {"op": 1, "count": 2}))
    t, rid, v = c.recv_frame()
    assert (t, rid) == (d.RESPONSE, 3) and v["result"]["num_workers"] == 3
    wait_for(lambda: len(dirty_workers(s)) == 3, 10, what="3 dirty workers")
    c.send(d.frame(d.MANAGE, 4, {"op": 2, "count": 5}))
    t, rid, v = c.recv_frame()
    assert v["result"]["removed"] == 2 and v["result"]["num_workers"] == 1
    wait_for(lambda: len(dirty_workers(s)) == 1, 10, what="1 dirty worker")
    st = status(s)
    assert st["arbiter_pid"] == s.arbiter
    assert [w["pid"] for w in st["workers"] if w["state"] == "alive"] == dirty_workers(s)


@pytest.mark.nosan(reason="asserts private memory under 2 MB; ASan's shadow memory inflates it")
def test_arbiter_memory_with_100_connections(make_server):
    s = start(make_server, unique_name("mem"), workers=4)
    conns = [connect(s) for _ in range(100)]
    for i, c in enumerate(conns):
        assert d.result(c.call(i, ECHO, "echo", "x" * 100)) == "x" * 100
    kb = wait_for(lambda: (lambda k: k if k <= 2048 else None)(private_kb(s.arbiter)), 10,
                  what="the arbiter's private memory under 2 MB")
    print("dirty arbiter private memory: %d kB" % kb)
    for c in conns:
        c.close()


# ---- lifecycle: parent death, respawn, orphans -----------------------------

def test_parent_sigkill_takes_the_dirty_tree_down(make_server):
    s = start(make_server, unique_name("pdeath"), workers=2)
    workers = dirty_workers(s)
    c = connect(s)
    c.send(d.request(1, ECHO, "sleep", 30))
    os.kill(s.pid, signal.SIGKILL)
    # detected at once (pidfd): milliseconds; the bound only says "gone"
    t_arb = gone_within([s.arbiter], 5.0)
    t_all = gone_within([s.arbiter] + workers, 5.0)
    print("parent death: arbiter gone in %.3fs, dirty tree in %.3fs" % (t_arb or -1, t_all or -1))
    assert t_arb is not None and t_all is not None
    assert "Parent changed, shutting down dirty arbiter" in s.log()
    assert s.runtime_entries() == []


def test_arbiter_respawned_after_sigkill(make_server):
    s = start(make_server, unique_name("respawn"), workers=2)
    old_workers = dirty_workers(s)
    os.kill(s.arbiter, signal.SIGKILL)
    s.wait_log("Spawning dirty arbiter", count=2)
    new = wait_for(lambda: (lambda p: p if p and p != s.arbiter else None)(arbiter_pid(s)), 10,
                   what="a new dirty arbiter")
    assert gone_within(old_workers, 2.0) is not None
    wait_for(lambda: len(dirty_workers(s)) == 2, 10, what="new dirty workers")
    out = get_json(s.port, '/call?app=dirty_apps:Echo&action=echo&arg="again"')
    assert out == {"result": "again"}
    assert "Dirty arbiter starting (pid: %d)" % new in s.log()


def runtime_subdir(proc_name):
    """The runtime directory name rule of dirty_runtime.h, re-derived."""
    raw = proc_name.encode()
    keep = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"
    s = bytes(c if c in keep else ord("_") for c in raw[:40]).decode()
    if not s:
        s = "_"
    elif s[0] == ".":
        s = "_" + s[1:]
    h = 2166136261
    for c in raw:
        h = ((h ^ c) * 16777619) & 0xFFFFFFFF
    return "%s-%08x" % (s, h)


def test_orphan_arbiter_killed_by_next_master(make_server):
    name = unique_name("orphan")
    a = start(make_server, name, workers=2)
    orphan, orphan_workers = a.arbiter, dirty_workers(a)
    os.kill(orphan, signal.SIGSTOP)          # frozen: it cannot notice anything
    os.kill(a.pid, signal.SIGKILL)
    time.sleep(0.3)
    assert pid_alive(orphan)
    b = start(make_server, name, workers=1, runtime_dir=a.runtime_dir)
    assert "Killing orphaned dirty arbiter (pid: %d)" % orphan in b.log()
    assert gone_within([orphan] + orphan_workers, 10.0) is not None
    assert b.arbiter != orphan
    pidfile = os.path.join(a.runtime_dir, "cunicorn-%d" % os.getuid(), runtime_subdir(name),
                           "dirty-arbiter.pid")
    assert open(pidfile).read().split() == [str(b.arbiter), str(b.pid)]
    out = get_json(b.port, '/call?app=dirty_apps:Echo&action=echo&arg="fresh"')
    assert out == {"result": "fresh"}


def test_two_servers_with_the_same_proc_name_each_keep_their_arbiter(make_server):
    """Blue/green: a second master of the same proc_name is no orphan
    hunter.  It leaves the first one's arbiter and files alone and uses
    <name>.2; each serves dirty calls through its own arbiter; the first
    master's SIGKILL is handled by its own arbiter (parent death), and a
    third master takes the freed base directory."""
    name = unique_name("twins")
    a = start(make_server, name, workers=1)
    b = start(make_server, name, workers=1, runtime_dir=a.runtime_dir)
    top = os.path.join(a.runtime_dir, "cunicorn-%d" % os.getuid())
    base = os.path.join(top, runtime_subdir(name))
    assert a.sock == os.path.join(base, "dirty.sock")
    assert b.sock == os.path.join(base + ".2", "dirty.sock")
    assert "Killing orphaned" not in b.log()
    assert ("Another server with proc_name %s is running (master pid %d); using runtime dir %s.2"
            % (name, a.pid, base)) in b.log()
    assert a.arbiter != b.arbiter and pid_alive(a.arbiter) and pid_alive(b.arbiter)
    assert open(os.path.join(base, "dirty-arbiter.pid")).read().split() == [str(a.arbiter), str(a.pid)]
    assert open(os.path.join(base + ".2", "dirty-arbiter.pid")).read().split() == [str(b.arbiter), str(b.pid)]
    for s in (a, b):
        out = get_json(s.port, "/call?app=dirty_apps:Echo&action=pid")
        assert out["result"] in dirty_workers(s)
    time.sleep(1.2)           # past the arbiters' periodic parent check
    assert arbiter_pid(a) == a.arbiter and arbiter_pid(b) == b.arbiter
    assert "Parent changed" not in a.log() + b.log()

    os.kill(a.pid, signal.SIGKILL)
    assert gone_within([a.arbiter], 10.0) is not None
    assert "Parent changed, shutting down dirty arbiter" in a.log()
    assert not os.path.exists(base)
    assert pid_alive(b.arbiter)
    out = get_json(b.port, '/call?app=dirty_apps:Echo&action=echo&arg="still"')
    assert out == {"result": "still"}

    c = start(make_server, name, workers=1, runtime_dir=a.runtime_dir)
    assert c.sock == os.path.join(base, "dirty.sock")
    assert "Another server" not in c.log() and "Killing orphaned" not in c.log()
    assert pid_alive(b.arbiter)


def test_sibling_between_two_arbiters_keeps_its_directory(make_server):
    """A master whose arbiter exited keeps its directory claimed ("0 MASTER")
    until it respawns one: a sibling starting in that window uses <name>.2,
    and the respawned arbiter takes its old directory back."""
    name = unique_name("window")
    a = start(make_server, name, workers=1)
    base = os.path.dirname(a.sock)
    os.kill(a.pid, signal.SIGSTOP)            # no respawn while we look
    try:
        os.kill(a.arbiter, signal.SIGQUIT)
        wait_for(lambda: open(os.path.join(base, "dirty-arbiter.pid")).read().split() == ["0", str(a.pid)],
                 10, what="the master's claim")
        assert not os.path.exists(a.sock)
        b = start(make_server, name, workers=1, runtime_dir=a.runtime_dir)
        assert b.sock == base + ".2/dirty.sock"
    finally:
        os.kill(a.pid, signal.SIGCONT)
    new = wait_for(lambda: (lambda p: p if p and p != a.arbiter else None)(arbiter_pid(a)), 10,
                   what="a new dirty arbiter")
    wait_for(lambda: open(os.path.join(base, "dirty-arbiter.pid")).read().split() == [str(new), str(a.pid)],
             10, what="the respawned arbiter's pid file")
    wait_for(lambda: len(dirty_workers(a)) == 1, 10, what="a dirty worker")
    for s in (a, b):
        out = get_json(s.port, "/call?app=dirty_apps:Echo&action=pid")
        assert out["result"] in dirty_workers(s)


def test_orphan_in_a_numbered_runtime_dir_is_found(make_server):
    """An orphan left in <name>.2 is killed by a later master even when
    <name> is free, and its directory is cleaned away."""
    name = unique_name("orph2")
    a = start(make_server, name, workers=1)
    b = start(make_server, name, workers=1, runtime_dir=a.runtime_dir)
    assert b.sock.endswith(".2/dirty.sock")
    orphan = b.arbiter
    os.kill(orphan, signal.SIGSTOP)          # frozen: it cannot notice anything
    os.kill(b.pid, signal.SIGKILL)
    assert a.stop(signal.SIGTERM) == 0
    assert pid_alive(orphan)
    c = start(make_server, name, workers=1, runtime_dir=a.runtime_dir)
    assert "Killing orphaned dirty arbiter (pid: %d)" % orphan in c.log()
    assert gone_within([orphan], 10.0) is not None
    assert not c.sock.endswith(".2/dirty.sock")
    assert not os.path.exists(os.path.dirname(b.sock))
    out = get_json(c.port, '/call?app=dirty_apps:Echo&action=echo&arg="fresh"')
    assert out == {"result": "fresh"}


def test_stale_pid_file_never_kills_an_unrelated_process(make_server, tmp_path):
    name = unique_name("stale")
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        s = make_server(*dirty_args(name), start=False, binary=BIN)
        top = os.path.join(s.runtime_dir, "cunicorn-%d" % os.getuid())
        sub = os.path.join(top, runtime_subdir(name))
        os.makedirs(sub, mode=0o700)
        os.chmod(top, 0o700)
        with open(os.path.join(sub, "dirty-arbiter.pid"), "w") as f:
            f.write("%d\n" % sleeper.pid)
        open(os.path.join(sub, "dirty.sock"), "w").close()   # a leftover
        s.start()
        arb = wait_for(lambda: arbiter_pid(s), 10, what="the dirty arbiter")
        wait_for(lambda: open(os.path.join(sub, "dirty-arbiter.pid")).read().split()[:1] == [str(arb)],
                 10, what="the new pid file")
        # the pid file comes before the socket listens; workers after it
        wait_for(lambda: len(dirty_workers(s)) == 1, 15, what="the dirty worker")
        s.sock = socket_path(s)
        c = d.Conn(s.sock)
        assert d.result(c.call(1, ECHO, "echo", 7)) == 7
        assert sleeper.poll() is None, "the unrelated process was killed"
        assert "Killing orphaned" not in s.log()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_runtime_dir_is_private(make_server):
    name = unique_name("private")
    s = start(make_server, name)
    top = os.path.join(s.runtime_dir, "cunicorn-%d" % os.getuid())
    sub = os.path.join(top, runtime_subdir(name))
    for p in (top, sub):
        st = os.lstat(p)
        assert oct(st.st_mode & 0o7777) == "0o700" and st.st_uid == os.getuid()
    assert s.sock == os.path.join(sub, "dirty.sock")
    assert oct(os.lstat(s.sock).st_mode & 0o777) == "0o600"


def uid_of(pid):
    for line in open("/proc/%d/status" % pid):
        if line.startswith("Uid:"):
            return int(line.split()[2])


def dropped_uid(pid, uid):
    """A worker is titled before it drops its privileges (as in gunicorn:
    title, post_fork hook as root, then the switch), so a test that found
    it by title waits for the switch; returns the effective uid seen."""
    wait_for(lambda: uid_of(pid) == uid, timeout=15,
             what="pid %d to run as uid %d" % (pid, uid))
    return uid_of(pid)


def test_workers_running_as_another_user_reach_the_socket(make_server):
    if os.geteuid() != 0:
        pytest.skip("needs root to switch users")
    name = unique_name("user")
    s = start(make_server, name, extra=("-u", "nobody", "-g", "nogroup"))
    nobody = 65534
    assert dropped_uid(dirty_workers(s)[0], nobody) == nobody
    # the private XDG_RUNTIME_DIR is not traversable by nobody: /tmp is
    # used; the directory stays root's, nobody gets in by group
    assert s.sock.startswith("/tmp/cunicorn-%d/" % os.geteuid())
    st = os.lstat(os.path.dirname(s.sock))
    assert st.st_uid == 0 and st.st_mode & 0o777 == 0o710
    out = get_json(s.port, '/call?app=dirty_apps:Echo&action=echo&arg="as_nobody"')
    assert out == {"result": "as_nobody"}
    assert s.stop(signal.SIGTERM) == 0
    assert not os.path.exists(os.path.dirname(s.sock))


def groups_of(pid):
    for line in open("/proc/%d/status" % pid):
        if line.startswith("Groups:"):
            return sorted(int(g) for g in line.split()[1:])


def test_user_without_group_keeps_none_of_roots_groups(make_server):
    """-u without -g (group stays root's egid, as in gunicorn): every worker,
    HTTP and dirty alike, drops the supplementary groups the master was
    started with."""
    assert os.geteuid() == 0, "switching users needs root"
    s = start(make_server, unique_name("usergroups"), extra=("-u", "nobody"),
              groups=[4242])
    assert groups_of(s.pid) == [4242]
    http_worker = wait_for(lambda: s.pids_titled("worker"), what="an HTTP worker")[0]
    for pid in (http_worker, dirty_workers(s)[0]):
        assert dropped_uid(pid, 65534) == 65534
        assert groups_of(pid) == [os.getegid()], pid
    out = get_json(s.port, '/call?app=dirty_apps:Echo&action=echo&arg="g"')
    assert out == {"result": "g"}
    assert s.stop(signal.SIGTERM) == 0     # leaves no runtime dir in /tmp


def test_symlinked_runtime_dir_is_refused(make_server, tmp_path):
    name = unique_name("symlink")
    s = make_server(*dirty_args(name), start=False, binary=BIN)
    top = os.path.join(s.runtime_dir, "cunicorn-%d" % os.getuid())
    os.makedirs(top, mode=0o700)
    target = tmp_path / "elsewhere"
    target.mkdir()
    os.symlink(str(target), os.path.join(top, runtime_subdir(name)))
    s.proc = subprocess.Popen(s.argv, cwd=s.cwd, env=s.env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, start_new_session=True)
    s.pid = s.proc.pid
    _, err = s.proc.communicate(timeout=15)
    assert s.proc.returncode != 0
    assert b"symlink" in err or b"not a directory" in err, err
    assert list(target.iterdir()) == []
