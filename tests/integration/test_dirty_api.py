"""The dirty Python API (`gunicorn.dirty` / `cunicorn.dirty`) against the
real binary: DirtyApp dispatch in the dirty worker, errors carried back to
the caller, streaming, the asyncio client, dirty_threads, shutdown and
hooks.  Plus unit tests of the pure-Python parts (errors mapping, DirtyApp
dispatch) that need no server.

Apps: tests/integration/apps/dirtyapi_apps.py, config dirtyapi_conf.py,
plain-python3 client scenarios dirtyapi_client.py.
"""
import glob
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import (BUILD, PYTHON, ROOT, blocked_signals, has_open, http_get, pid_alive,
                      proc_title, wait_for)
import dirty_raw
from dirty_raw import dirty_workers

APPS = os.path.join(ROOT, "tests", "integration", "apps")
CONF = os.path.join(APPS, "dirtyapi_conf.py")
PYDIR = os.path.join(ROOT, "python")
EXTDIR = os.path.join(BUILD, "python")
BASIC = "dirtyapi_apps:Basic"

# The pure-Python package, imported the way a plain python3 would (appended,
# so that a Debian `gunicorn` elsewhere in this process is not shadowed).
if PYDIR not in sys.path:
    sys.path.append(PYDIR)


# ---- helpers -----------------------------------------------------------

def call(s, app, action, *args, timeout=30, **kwargs):
    q = {"app": app, "action": action, "args": list(args), "kwargs": kwargs,
         "timeout": timeout}
    status, _, body = http_get(s.port, "/call", method="POST", body=json.dumps(q).encode(),
                               headers={"Content-Type": "application/json"},
                               timeout=timeout + 10)
    assert status == 200, body
    return json.loads(body)


def stream(s, app, action, *args):
    q = {"app": app, "action": action, "args": list(args)}
    status, _, body = http_get(s.port, "/stream", method="POST", body=json.dumps(q).encode(),
                               headers={"Content-Type": "application/json"})
    assert status == 200, body
    return json.loads(body)


def ready(s, app=BASIC, timeout=15):
    """Wait until the dirty worker answers (it may still be loading)."""
    def ok():
        try:
            r = call(s, app, "echo", "ready", timeout=5)
        except (OSError, AssertionError):
            return None
        return r if r.get("ok") == "ready" else None
    return wait_for(ok, timeout, interval=0.1, what="the dirty app to answer")


def start(make_server, tmp_path, *extra, conf=CONF, apps=None):
    side = str(tmp_path / "side.txt")
    args = ["-c", conf, "--chdir", APPS]
    for a in apps or []:
        args += ["--dirty-app", a]
    kw = {}
    if os.environ.get("DIRTYAPI_BINARY"):   # e.g. a sanitizer build
        kw["binary"] = os.environ["DIRTYAPI_BINARY"]
    s = make_server(*(args + list(extra) + ["dirtyapi_apps:application"]),
                    env={"DIRTYAPI_SIDE": side, "CUNICORN_PYTHON_DIR": PYDIR,
                         "ASAN_OPTIONS": "detect_leaks=0"}, **kw)
    s.side = side
    return s


def side_lines(s):
    try:
        with open(s.side) as f:
            return f.read().splitlines()
    except OSError:
        return []


def client_script(s, scenario, *args, stdin=None, timeout=60):
    """Run dirtyapi_client.py in a plain /usr/bin/python3 against s."""
    assert glob.glob(os.path.join(EXTDIR, "_cunicorn_dirty*.so")), \
        "build/python/_cunicorn_dirty*.so is missing: run `make ext`"
    sock = dirty_socket(s)
    assert sock and os.path.exists(sock), sock
    env = dict(os.environ, GUNICORN_DIRTY_SOCKET=sock, PYTHONDONTWRITEBYTECODE="1",
               PYTHONPATH=os.pathsep.join([PYDIR, EXTDIR, APPS]))
    return subprocess.Popen([PYTHON, os.path.join(APPS, "dirtyapi_client.py"), scenario]
                            + [str(a) for a in args], env=env, cwd=APPS,
                            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_client(s, scenario, *args, timeout=60):
    p = client_script(s, scenario, *args)
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, "client failed:\n%s\n%s\nserver log:\n%s" % (out, err, s.log()[-3000:])
    return json.loads(out.strip().splitlines()[-1])


def sleeps(s, which="start", pid=None):
    """[(pid, time)] of the Basic.sleep calls that started (or ended)."""
    out = []
    for l in side_lines(s):
        f = l.split()
        if len(f) == 4 and f[:2] == ["sleep", which] and (pid is None or int(f[2]) == pid):
            out.append((int(f[2]), float(f[3])))
    return out


def wait_sleeping(s, n, pid=None):
    """Wait until n Basic.sleep calls are inside the app."""
    wait_for(lambda: len(sleeps(s, "start", pid)) >= n, 15, what="%d sleep calls running" % n)


def dirty_socket(s):
    """The arbiter's socket, asked of the app once (/socket does not
    involve the dirty worker)."""
    sock = getattr(s, "dirty_socket", None)
    if sock is None:
        sock = s.dirty_socket = json.loads(http_get(s.port, "/socket")[2])["ok"]
    return sock


def status(s):
    """The arbiter's STATUS, asked from this process (no interpreter start)."""
    return dirty_raw.status(dirty_socket(s))


def ppid(pid):
    with open("/proc/%d/stat" % pid) as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


# ---- against the binary --------------------------------------------------

def test_example_ping_counts_and_echo(make_server, tmp_path):
    s = start(make_server, tmp_path)
    ready(s)
    first = call(s, BASIC, "ping")["ok"]
    second = call(s, BASIC, "ping")["ok"]
    assert first["pong"] is True
    assert second["calls"] == first["calls"] + 1      # state lives in the worker
    assert second["pid"] == first["pid"] != s.pid
    assert first["pid"] in dirty_workers(s)
    assert proc_title(first["pid"]) == "cunicorn: dirty-worker [dirtyapi_apps:application]"
    assert call(s, BASIC, "echo", "héllo wörld ✓")["ok"] == "héllo wörld ✓"
    payload = {"list": [1, -2, 3.5, None, True, False], "nested": {"a": {"b": ["c"]}},
               "big": 2 ** 62, "empty": {}, "text": "x" * 100000}
    assert call(s, BASIC, "echo", payload)["ok"] == payload
    assert call(s, BASIC, "kw", 1, b=5, c=7)["ok"] == [1, 5, 7]
    assert call(s, BASIC, "kw", 1)["ok"] == [1, 2, 3]
    s.wait_log("Initialized dirty app: %s" % BASIC)


def test_app_error_carries_message_and_traceback(make_server, tmp_path):
    s = start(make_server, tmp_path)
    ready(s)
    e = call(s, BASIC, "fail", "xyz")["error"]
    assert e["class"] == "DirtyAppError" and e["is_dirty_error"]
    assert e["message"] == "boom: xyz"
    assert "Traceback (most recent call last)" in e["traceback"]
    assert 'raise ValueError("boom: %s" % text)' in e["traceback"]
    assert "ValueError: boom: xyz" in e["traceback"]
    assert e["app_path"] == BASIC and e["action"] == "fail"
    assert e["details"]["exception_type"] == "ValueError"
    s.wait_log("Error executing %s.fail: boom: xyz" % BASIC)
    # the worker survives its app's exceptions
    assert call(s, BASIC, "echo", 1)["ok"] == 1


@pytest.mark.parametrize("action", ["nosuch", "_private", "__init__", "not_callable", "__class__"])
def test_unknown_and_private_actions(make_server, tmp_path, action):
    s = start(make_server, tmp_path)
    ready(s)
    e = call(s, BASIC, action)["error"]
    assert e["class"] == "DirtyAppError"
    assert e["message"] == "Unknown action: %s" % action


def test_custom_call_gets_action_and_args(make_server, tmp_path):
    s = start(make_server, tmp_path)
    ready(s)
    r = call(s, "dirtyapi_apps:Custom", "_anything", 1, "two", k=[3])["ok"]
    assert r == {"action": "_anything", "args": [1, "two"], "kwargs": {"k": [3]}}


def test_unknown_app_is_not_found(make_server, tmp_path):
    s = start(make_server, tmp_path)
    ready(s)
    e = call(s, "dirtyapi_apps:Nope", "ping")["error"]
    assert e["class"] == "DirtyAppNotFoundError"
    assert "dirtyapi_apps:Nope" in e["message"]


def test_unencodable_result_is_a_clear_app_error(make_server, tmp_path):
    s = start(make_server, tmp_path)
    ready(s)
    e = call(s, BASIC, "bad_result")["error"]
    assert e["class"] == "DirtyAppError"
    assert e["message"].startswith("result cannot be encoded: ")
    assert call(s, BASIC, "echo", "ok")["ok"] == "ok"


def test_coroutine_action_is_awaited(make_server, tmp_path):
    s = start(make_server, tmp_path)
    ready(s)
    assert call(s, BASIC, "coro", 21)["ok"] == 42


def test_streaming_chunks_in_order_and_error_mid_stream(make_server, tmp_path):
    s = start(make_server, tmp_path)
    ready(s)
    assert stream(s, BASIC, "count", 50)["ok"] == [{"i": i} for i in range(50)]
    assert stream(s, BASIC, "acount", 4)["ok"] == ["a0", "a1", "a2", "a3"]
    assert stream(s, BASIC, "count", 0)["ok"] == []
    r = stream(s, BASIC, "count_then_fail", 3)
    assert r["chunks"] == [0, 1, 2]
    assert r["error"]["class"] == "DirtyAppError"
    assert r["error"]["message"] == "stream broke after 3"
    assert "RuntimeError" in r["error"]["traceback"]
    # the connection and the worker are fine afterwards
    assert call(s, BASIC, "echo", "after")["ok"] == "after"


def test_plain_python_sync_client(make_server, tmp_path):
    s = start(make_server, tmp_path)
    ready(s)
    r = run_client(s, "sync")
    assert r["same"] is True
    assert r["echo"] == {"k": [1, 2.5, None, True, "0062"]}
    assert r["inner"] == [[{"i": 0}, 0], [{"i": 1}, 1], [{"i": 2}, 2]]
    assert r["abandoned_first"] == {"i": 0}
    assert r["after_abandon"] == "still fine"


@pytest.mark.parametrize("threads", ["1", "4"])
def test_asyncio_client(make_server, tmp_path, threads):
    # with 4 threads, calls, streams and errors run at once in one worker
    # and their frames interleave on its one channel
    s = start(make_server, tmp_path, "--dirty-threads", threads)
    ready(s)
    r = run_client(s, "async")
    assert r["same"] is True
    assert r["values"] == list(range(50))
    assert r["coro"] == 42
    assert r["chunks"] == [{"i": i} for i in range(5)]
    assert r["achunks"] == ["a0", "a1", "a2"]
    assert r["partial"] == [0, 1, 2]
    assert r["stream_error"]["class"] == "DirtyAppError"
    assert r["stream_error"]["message"] == "stream broke after 3"
    assert r["app_error"]["message"] == "boom: async"
    assert "ValueError" in r["app_error"]["traceback"]
    assert r["notfound"]["class"] == "DirtyAppNotFoundError"
    assert r["slow"] == [True, "fast"]
    assert r["big_ok"] == [True] * 9
    assert r["reuse"] == {"again": [{"i": 0}, {"i": 1}], "reused": True,
                          "abandoned_closed": True}


def test_dirty_threads_run_calls_concurrently(make_server, tmp_path):
    s = start(make_server, tmp_path, "--dirty-threads", "4")
    ready(s)
    r = run_client(s, "parallel", 4, 0.6)
    assert r["errors"] == []
    assert len(r["pids"]) == 4 and len(set(r["pids"])) == 1   # one worker
    # all four inside the app at once: every start before any end
    starts, ends = [t for _, t in sleeps(s, "start")], [t for _, t in sleeps(s, "end")]
    assert len(starts) == len(ends) == 4, side_lines(s)
    assert max(starts) < min(ends), (starts, ends)


def test_single_thread_serializes_calls(make_server, tmp_path):
    s = start(make_server, tmp_path)   # dirty_threads = 1
    ready(s)
    r = run_client(s, "parallel", 3, 0.3)
    assert r["errors"] == []
    assert r["elapsed"] >= 0.85, r                            # three in a row


def test_close_and_hooks_at_shutdown(make_server, tmp_path):
    s = start(make_server, tmp_path)
    ready(s)
    call(s, BASIC, "ping")
    (wpid,) = dirty_workers(s)
    lines = side_lines(s)
    assert "dirty_post_fork %d arbiter=%d" % (wpid, ppid(wpid)) in lines
    assert "dirty_worker_init %d apps=%s" % (wpid, ",".join(sorted([BASIC, "dirtyapi_apps:Custom"]))) in lines
    assert not any(l.startswith("close") for l in lines)
    assert s.stop(signal.SIGTERM, timeout=15) is not None
    wait_for(lambda: not pid_alive(wpid), 10, what="dirty worker exit")
    lines = side_lines(s)
    assert "close Basic %d calls=1" % wpid in lines
    assert "dirty_worker_exit %d" % wpid in lines
    # close() runs before the exit hook, each once
    assert lines.index("close Basic %d calls=1" % wpid) < lines.index("dirty_worker_exit %d" % wpid)
    assert sum(l.startswith("close Basic") for l in lines) == 1
    s.wait_log("Dirty worker %d exiting" % wpid)


@pytest.mark.parametrize("threads,calls", [("1", 1), ("3", 3)])
def test_term_lets_the_running_calls_finish(make_server, tmp_path, threads, calls):
    s = start(make_server, tmp_path, "--dirty-threads", threads)
    ready(s)
    (wpid,) = dirty_workers(s)
    p = client_script(s, "parallel", calls, 1.0)
    wait_sleeping(s, calls, wpid)
    os.kill(wpid, signal.SIGTERM)
    out, err = p.communicate(timeout=30)
    r = json.loads(out.strip().splitlines()[-1])
    assert r["errors"] == [] and r["pids"] == [wpid] * calls, (r, err)
    wait_for(lambda: not pid_alive(wpid), 10, what="dirty worker exit")
    assert "close Basic %d" % wpid in "\n".join(side_lines(s))


def test_quit_exits_at_once_even_in_a_call(make_server, tmp_path):
    s = start(make_server, tmp_path)
    ready(s)
    (wpid,) = dirty_workers(s)
    p = client_script(s, "parallel", 1, 10)
    wait_sleeping(s, 1, wpid)
    t0 = time.monotonic()
    os.kill(wpid, signal.SIGQUIT)
    wait_for(lambda: not pid_alive(wpid), 2, interval=0.01, what="dirty worker gone")
    assert time.monotonic() - t0 < 1.0
    out, err = p.communicate(timeout=30)
    r = json.loads(out.strip().splitlines()[-1])
    assert r["pids"] == [] and len(r["errors"]) == 1      # the caller hears of it
    assert not any(l.startswith("close") for l in side_lines(s))


@pytest.mark.parametrize("threads", ["1", "3"])
def test_processes_spawned_by_apps_obey_sigterm(make_server, tmp_path, threads):
    # the worker's signal handling must not leak a blocked mask into them,
    # from the main thread or from a pool thread
    s = start(make_server, tmp_path, "--dirty-threads", threads)
    ready(s)
    child = call(s, BASIC, "spawn_sleeper")["ok"]
    try:
        assert blocked_signals(child) & (1 << (signal.SIGTERM - 1)) == 0
        os.kill(child, signal.SIGTERM)
        assert call(s, BASIC, "reap")["ok"] == -signal.SIGTERM
    finally:
        if pid_alive(child):
            os.kill(child, signal.SIGKILL)


def test_broken_app_keeps_worker_up_and_answers_errors(make_server, tmp_path):
    # --dirty-app replaces the config file's list (command line wins)
    s = start(make_server, tmp_path, apps=[BASIC, "dirtyapi_apps:Broken"])
    ready(s)
    s.wait_log("Failed to load dirty app dirtyapi_apps:Broken")
    s.wait_log("cannot load the model")
    (wpid,) = dirty_workers(s)
    e = call(s, "dirtyapi_apps:Broken", "ping")["error"]
    assert e["class"] == "DirtyAppError"
    assert "dirtyapi_apps:Broken failed to load" in e["message"]
    assert "RuntimeError: cannot load the model" in e["message"]
    # other apps of the same worker work, and no crash loop
    assert call(s, BASIC, "echo", 5)["ok"] == 5
    time.sleep(0.5)
    assert dirty_workers(s) == [wpid]


@pytest.mark.parametrize("scenario", ["reconnect", "reconnect_async"])
def test_client_reconnects_after_arbiter_restart(make_server, tmp_path, scenario):
    s = start(make_server, tmp_path)
    ready(s)
    p = client_script(s, scenario, stdin=True)
    first = json.loads(p.stdout.readline())["first"]
    (arbiter,) = s.pids_titled("dirty-arbiter")
    os.kill(arbiter, signal.SIGKILL)
    wait_for(lambda: (lambda a: a and a != [arbiter])(s.pids_titled("dirty-arbiter")),
             10, what="a new dirty arbiter")
    ready(s)
    out, err = p.communicate("go\n", timeout=30)
    r = json.loads(out.strip().splitlines()[-1])
    # the idle connection is closed under the client: its EOF seen before
    # the write (asyncio: a closing transport) or the write's EPIPE (sync,
    # and asyncio when the loop had not read the EOF yet) means "not
    # delivered", so the call is re-sent on a new connection and succeeds
    assert "second" in r, (r, err)
    second = r["second"]
    assert second["pid"] != first["pid"]
    assert second["calls"] >= 1


def test_class_workers_attribute_limits_the_app(make_server, tmp_path):
    s = start(make_server, tmp_path, "--dirty-workers", "3",
              apps=[BASIC, "dirtyapi_apps:Limited"])
    ready(s)

    def limited_once():
        st = run_client(s, "status")
        loaders = [w["pid"] for w in st["workers"] if "dirtyapi_apps:Limited" in w["apps"]
                   and w["state"] == "alive"]
        return (st, loaders) if len(st["workers"]) == 3 and len(loaders) == 1 else None
    st, loaders = wait_for(limited_once, 15, interval=0.2, what="Limited on exactly one worker")
    pids = {call(s, "dirtyapi_apps:Limited", "pid")["ok"] for _ in range(6)}
    assert pids == set(loaders)


@pytest.mark.parametrize("threads", ["1", "3"])
def test_heartbeat_goes_on_during_a_long_call(make_server, tmp_path, threads):
    s = start(make_server, tmp_path, "--dirty-timeout", "5", "--dirty-threads", threads)
    ready(s)
    (wpid,) = dirty_workers(s)
    status(s)                                    # warm: socket path known
    p = client_script(s, "parallel", 1, 3.5)     # shorter than dirty_timeout
    wait_sleeping(s, 1, wpid)
    # 1.6 s into the call: a worker that stopped beating when the call
    # began would show >= 1600 ms; it beats every 250 ms
    time.sleep(1.6)
    st = status(s)
    (w,) = [w for w in st["workers"] if w["pid"] == wpid]
    assert w["in_flight"] == 1, st
    assert w["last_heartbeat_ms_ago"] < 1200, w
    out, _ = p.communicate(timeout=30)
    assert json.loads(out)["pids"] == [wpid]


@pytest.mark.parametrize("threads", ["1", "3"])
def test_stuck_call_times_out_and_worker_is_replaced(make_server, tmp_path, threads):
    # with a pool, the stuck call's thread speaks for the worker: the
    # other threads idling does not keep it beating
    s = start(make_server, tmp_path, "--dirty-timeout", "2", "--dirty-threads", threads)
    ready(s)
    (wpid,) = dirty_workers(s)
    t0 = time.monotonic()
    e = call(s, BASIC, "sleep", 60)["error"]
    assert e["class"] == "DirtyTimeoutError", e
    assert time.monotonic() - t0 < 15      # at dirty_timeout (2 s), not after 60 s
    # the worker stops beating once its call outlives dirty_timeout; the
    # arbiter then replaces it
    wait_for(lambda: not pid_alive(wpid), 10, what="stuck dirty worker killed")
    s.wait_log("DIRTY WORKER TIMEOUT (pid:%d)" % wpid)
    ready(s)
    assert call(s, BASIC, "ping")["ok"]["pid"] != wpid


def test_stash_from_clients_and_apps(make_server, tmp_path):
    s = start(make_server, tmp_path, apps=[BASIC, "dirtyapi_apps:Stashy"])
    ready(s)
    r = run_client(s, "stash")
    assert r["get"] == {"name": "Alice"}
    assert r["missing"] == "dflt"
    assert r["keys"] == ["other", "user:1", "user:2"]
    assert r["pattern"] == ["user:1", "user:2"]
    assert r["exists_key"] == [True, False]
    assert r["exists_table"] == [True, False]
    assert r["table"] == ["v", True, 4]
    assert r["keyerror"] is True
    assert r["delete"] == [True, False]
    assert "apitbl" in r["tables"] and "t1" in r["tables"] and "t2" in r["tables"]
    assert r["after_clear"] == []
    assert "t2" not in r["after_delete_table"]
    assert r["info"]["size"] == 0
    # from inside a dirty worker, through the same API
    assert call(s, "dirtyapi_apps:Stashy", "put", "k", [1, "x"])["ok"] == [1, "x"]


def test_usr1_reopens_the_worker_log(make_server, tmp_path):
    log = tmp_path / "error.log"
    s = start(make_server, tmp_path, "--error-logfile", str(log))
    ready(s)
    (wpid,) = dirty_workers(s)
    call(s, BASIC, "fail", "before")
    wait_for(lambda: "boom: before" in log.read_text(), 5, what="first error line")
    os.rename(log, str(log) + ".1")
    os.kill(wpid, signal.SIGUSR1)
    # the loop reopens on its next turn
    wait_for(lambda: has_open(wpid, log), 10, what="the dirty worker holding the new log")
    call(s, BASIC, "fail", "after")
    wait_for(lambda: log.exists() and "boom: after" in log.read_text(), 5,
             what="error line in the reopened log")
    assert "boom: after" not in open(str(log) + ".1").read()
    assert dirty_workers(s) == [wpid]


# ---- pure Python, no server ---------------------------------------------

def test_error_from_wire_maps_every_type():
    from cunicorn.dirty import errors as E
    for name in ("DirtyError", "DirtyTimeoutError", "DirtyConnectionError",
                 "DirtyWorkerError", "DirtyAppError", "DirtyAppNotFoundError",
                 "DirtyNoWorkersAvailableError", "DirtyProtocolError",
                 "StashError", "StashTableNotFoundError", "StashKeyNotFoundError"):
        e = E.error_from_wire(name, "msg " + name, {"k": 1})
        assert type(e) is getattr(E, name)
        assert isinstance(e, E.DirtyError)
        assert e.message == "msg " + name and e.details == {"k": 1}
    e = E.error_from_wire("DirtyAppError", "boom", {"traceback": "TB", "app_path": "a:B", "action": "x"})
    assert (e.traceback, e.app_path, e.action) == ("TB", "a:B", "x")
    e = E.error_from_wire("DirtyTimeoutError", "late", {"timeout": 3})
    assert e.timeout == 3
    e = E.error_from_wire("DirtyNoWorkersAvailableError", "none", {"app_path": "a:B"})
    assert e.app_path == "a:B"
    # unknown / malformed input never raises and falls back to DirtyError
    e = E.error_from_wire("SomethingElse", None, "not a dict")
    assert type(e) is E.DirtyError and e.message == "Unknown error" and e.details == {}
    e = E.error_from_wire(None, 42, None)
    assert type(e) is E.DirtyError and e.message == "42"
    e = E.DirtyError.from_dict({"error_type": "DirtyAppError", "message": "m"})
    assert isinstance(e, E.DirtyAppError) and e.traceback is None
    # constructors as gunicorn's
    assert E.DirtyAppNotFoundError("x:Y").message == "Dirty app not found: x:Y"
    assert str(E.DirtyError("plain")) == "plain"
    assert E.DirtyAppError("m", app_path="a:B").to_dict() == {
        "error_type": "DirtyAppError", "message": "m", "details": {"app_path": "a:B"}}
    assert issubclass(E.DirtyAppNotFoundError, E.DirtyAppError)


def test_dirtyapp_dispatch():
    from cunicorn.dirty import DirtyApp

    class A(DirtyApp):
        attr = 5

        def add(self, a, b=1):
            return a + b

        def _hidden(self):
            return "no"

    a = A()
    assert A.workers is None and A.stashes == []
    assert a("add", 2, b=3) == 5
    for bad in ("_hidden", "__init__", "nosuch", "attr", ""):
        with pytest.raises(ValueError, match="Unknown action"):
            a(bad)
    assert a.init() is None and a.close() is None


def test_gunicorn_names_are_the_same_objects():
    code = ("import gunicorn, gunicorn.dirty, cunicorn.dirty\n"
            "from gunicorn.dirty import DirtyApp, get_dirty_client, get_dirty_client_async, stash\n"
            "from gunicorn.dirty.errors import DirtyError, DirtyAppError\n"
            "from gunicorn.dirty.app import DirtyApp as A2\n"
            "import gunicorn.dirty.stash as S2, gunicorn.dirty.client as C2\n"
            "assert A2 is DirtyApp is cunicorn.dirty.DirtyApp\n"
            "assert S2 is stash is cunicorn.dirty.stash\n"
            "assert DirtyError is cunicorn.dirty.errors.DirtyError\n"
            "assert C2.get_dirty_client is get_dirty_client\n"
            "assert gunicorn.version_info >= (25, 0)\n"
            "for n in ('put','get','delete','exists','keys','clear','info','ensure','delete_table','tables','table'):\n"
            "    assert callable(getattr(stash, n)), n\n"
            "print('ok', gunicorn.__version__)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([PYDIR, EXTDIR]), PYTHONDONTWRITEBYTECODE="1")
    r = subprocess.run([PYTHON, "-c", code], env=env, capture_output=True, text=True, cwd="/")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ok 25.")


def run_client_script(code):
    """Run code in a plain python3 importing the package as an app would,
    with a socket path set (nothing listens there: no call may connect)."""
    env = dict(os.environ, GUNICORN_DIRTY_SOCKET="/nonexistent/dirty.sock",
               PYTHONPATH=os.pathsep.join([PYDIR, EXTDIR]), PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run([PYTHON, "-c", code], env=env, capture_output=True, text=True, cwd="/")


def test_importing_the_client_does_not_import_asyncio():
    # asyncio costs every HTTP worker ~5 MB: only an async call may load it
    # (and cunicorn.dirty.aio, the client's asyncio half); the names moved
    # there stay reachable from the client module, loading it on access.
    code = ("import sys\n"
            "from gunicorn.dirty import get_dirty_client, get_dirty_client_async\n"
            "from gunicorn.dirty.client import DirtyClient, close_dirty_client_async\n"
            "import cunicorn.dirty.client as C\n"
            "c = get_dirty_client()\n"
            "assert not hasattr(C, 'nosuch')\n"
            "for m in ('asyncio', 'cunicorn.dirty.aio'):\n"
            "    assert m not in sys.modules, m + ' imported by the sync client'\n"
            "from gunicorn.dirty.client import DirtyAsyncStreamIterator\n"
            "import cunicorn.dirty.aio as A\n"
            "assert DirtyAsyncStreamIterator is A.DirtyAsyncStreamIterator\n"
            "assert C._AsyncChannel is A._AsyncChannel and C._END is A._END\n"
            "assert isinstance(c.stream_async('m:A', 'x'), DirtyAsyncStreamIterator)\n"
            "import asyncio\n"
            "async def main():\n"
            "    a = await get_dirty_client_async()\n"
            "    assert a is await get_dirty_client_async() and a is not c\n"
            "    await close_dirty_client_async()\n"
            "asyncio.run(main())\n"
            "print('ok')\n")
    r = run_client_script(code)
    assert r.returncode == 0 and r.stdout == "ok\n", r.stderr


def test_cached_clients_are_not_shared_with_a_forked_child():
    code = ("import os\n"
            "from gunicorn.dirty import get_dirty_client\n"
            "c = get_dirty_client()\n"
            "pid = os.fork()\n"
            "if pid == 0:\n"
            "    os._exit(0 if get_dirty_client() is not c else 1)\n"
            "_, st = os.waitpid(pid, 0)\n"
            "assert os.waitstatus_to_exitcode(st) == 0, 'child reused the parent client'\n"
            "assert get_dirty_client() is c\n"
            "print('ok')\n")
    r = run_client_script(code)
    assert r.returncode == 0 and r.stdout == "ok\n", r.stderr


def test_client_without_socket_path_says_so():
    code = ("from gunicorn.dirty import get_dirty_client, DirtyError\n"
            "try:\n    get_dirty_client()\nexcept DirtyError as e:\n    print('E', e)\n")
    env = {k: v for k, v in os.environ.items() if k != "GUNICORN_DIRTY_SOCKET"}
    env.update(PYTHONPATH=os.pathsep.join([PYDIR, EXTDIR]), PYTHONDONTWRITEBYTECODE="1")
    r = subprocess.run([PYTHON, "-c", code], env=env, capture_output=True, text=True, cwd="/")
    assert r.returncode == 0, r.stderr
    assert "Dirty socket path not configured" in r.stdout
