"""The master and its HTTP workers, driven as a user would: real binary,
real sockets, real signals, titles read from /proc (what `ps` shows)."""
import json
import os
import signal
import socket
import subprocess
import time

import pytest

from conftest import (BINARY, COMPAT_BINARY, ROOT, Server, blocked_signals, children_map,
                      free_port, has_open, http_get, loopback_listener, pid_alive, port_open,
                      proc_title, read_until_close, start_to_exit, unix_request, wait_for)

APPS = os.path.join(ROOT, "tests", "integration", "apps")


def app_args(app="master_app:hello", *extra):
    return ["--chdir", APPS] + list(extra) + [app]


def get_json(port, path="/"):
    status, _, body = http_get(port, path)
    assert status == 200, body
    return json.loads(body)


def worker_pids(s, n=None, timeout=10):
    if n is None:
        return s.pids_titled("worker")
    return wait_for(lambda: (lambda p: p if len(p) == n else None)(s.pids_titled("worker")),
                    timeout, what="%d workers" % n)


def slow_request(port, seconds, tmp_path):
    """Start GET /sleep/<seconds> on a fresh connection and wait until the
    worker is inside the app (it creates a marker file there); returns the
    open socket."""
    mark = tmp_path / ("inside-%s" % os.urandom(4).hex())
    c = socket.create_connection(("127.0.0.1", port))
    c.sendall(b"GET /sleep/%s?mark=%s HTTP/1.1\r\nHost: x\r\n\r\n"
              % (str(seconds).encode(), str(mark).encode()))
    wait_for(mark.exists, 10, what="the request inside the app")
    return c


def new_master(s, old_children):
    """The master a USR2 started: the master's child titled as a master
    that was not among its children before (a freshly forked worker shows
    its parent's title for a moment, hence old_children = every child that
    existed before the signal, taken once they were all titled)."""
    def find():
        kids = [p for p in children_map().get(s.pid, []) if p not in old_children]
        return [p for p in kids if (proc_title(p) or "").startswith("cunicorn: master")]
    found = wait_for(find, 10, what="the new master")
    assert len(found) == 1, found
    s.track()
    return found[0]


def test_titles_under_the_gunicorn_name(make_server):
    s = make_server(*app_args("master_app:hello", "-w", "2"), binary=COMPAT_BINARY)
    workers = worker_pids(s, 2)
    assert proc_title(s.pid) == "gunicorn: master [master_app:hello]"
    for p in workers:
        assert proc_title(p) == "gunicorn: worker [master_app:hello]"
    out = subprocess.run(["pgrep", "-f", "gunicorn: master \\[master_app:hello\\]"],
                         capture_output=True, text=True).stdout.split()
    assert str(s.pid) in out
    assert http_get(s.port, "/")[2] == b"OK"
    s.wait_log("Booting worker with pid: %d" % workers[0])
    assert "Listening at: http://127.0.0.1:%d (%d)" % (s.port, s.pid) in s.log()


def test_proc_name_in_titles(make_server):
    s = make_server(*app_args("master_app:hello", "-n", "shop"))
    worker_pids(s, 1)
    assert proc_title(s.pid) == "cunicorn: master [shop]"
    assert proc_title(worker_pids(s)[0]) == "cunicorn: worker [shop]"


def test_ttin_ttou_change_worker_count(make_server):
    s = make_server(*app_args("master_app:hello", "-w", "2"))
    before = worker_pids(s, 2)
    s.send(signal.SIGTTIN)
    after = worker_pids(s, 3)
    assert set(before) < set(after)
    s.send(signal.SIGTTOU)
    left = worker_pids(s, 2)
    # the oldest is retired first
    assert before[0] not in left or before[1] not in left
    assert http_get(s.port, "/")[2] == b"OK"


def test_killed_worker_is_replaced(make_server):
    s = make_server(*app_args("master_app:hello", "-w", "2"))
    old = worker_pids(s, 2)
    os.kill(old[0], signal.SIGKILL)
    new = wait_for(lambda: (lambda p: p if len(p) == 2 and old[0] not in p else None)(worker_pids(s)),
                   what="replacement worker")
    assert old[1] in new
    s.wait_log("Worker (pid:%d) was sent SIGKILL" % old[0])
    assert http_get(s.port, "/")[2] == b"OK"


def test_hup_reloads_config_and_replaces_workers(make_server, tmp_path):
    conf = tmp_path / "conf.py"
    conf.write_text("workers = 1\nraw_env = ['CUNI_GEN=1']\n")
    # a relative -c with --chdir elsewhere: HUP must re-read the same file
    s = make_server("-c", os.path.relpath(str(conf), ROOT), *app_args("master_app:info"))
    old = worker_pids(s, 1)
    assert get_json(s.port)["env"]["CUNI_GEN"] == "1"
    conf.write_text("workers = 2\nraw_env = ['CUNI_GEN=2']\n")
    s.send(signal.SIGHUP)
    new = wait_for(lambda: (lambda p: p if len(p) == 2 and not set(p) & set(old) else None)(worker_pids(s)),
                   what="two fresh workers after HUP")
    assert all(pid_alive(p) for p in new)
    wait_for(lambda: not pid_alive(old[0]), what="old worker retired")
    s.wait_log("Hang up: Master")
    assert s.pid == s.proc.pid and s.proc.poll() is None


def test_bad_config_on_hup_keeps_serving(make_server, tmp_path):
    conf = tmp_path / "conf.py"
    conf.write_text("workers = 1\n")
    s = make_server("-c", str(conf), *app_args())
    worker_pids(s, 1)
    conf.write_text("workers = 'many'\n")
    s.send(signal.SIGHUP)
    s.wait_log("Reload failed")
    assert http_get(s.port, "/")[2] == b"OK"


def test_worker_timeout_kills_and_replaces(make_server):
    s = make_server(*app_args("master_app:info", "-t", "2"))
    old = worker_pids(s, 1)[0]
    # the request in flight gets gunicorn 26's 500 page from the dying worker
    assert http_get(s.port, "/sleep/30", timeout=15)[0] == 500
    s.wait_log("WORKER TIMEOUT (pid:%d)" % old, timeout=10)
    new = wait_for(lambda: (lambda p: p if p and old not in p else None)(worker_pids(s)),
                   what="replacement after timeout")
    assert new and get_json(s.port)["pid"] == new[0]


def test_term_lets_the_current_request_finish(make_server, tmp_path):
    s = make_server(*app_args("master_app:info", "--graceful-timeout", "10"))
    worker_pids(s, 1)
    c = slow_request(s.port, 1.5, tmp_path)
    t0 = time.monotonic()
    s.send(signal.SIGTERM)
    c.settimeout(10)
    data = read_until_close(c)
    assert data.startswith(b"HTTP/1.1 200"), data
    assert s.wait(10) == 0
    assert time.monotonic() - t0 < 8
    assert not port_open(s.port)
    assert s.leftovers() == []
    assert "Shutting down: Master" in s.log()


def test_graceful_timeout_is_enforced(make_server, tmp_path):
    s = make_server(*app_args("master_app:info", "--graceful-timeout", "1"))
    worker_pids(s, 1)
    c = slow_request(s.port, 30, tmp_path)
    s.track()
    t0 = time.monotonic()
    os.kill(s.pid, signal.SIGTERM)
    assert s.wait(20) is not None
    # 1 s of grace, then KILL: far before the request's 30 s are up
    assert time.monotonic() - t0 < 10
    assert s.leftovers() == []


@pytest.mark.parametrize("sig", [signal.SIGQUIT, signal.SIGINT])
def test_quick_stop(make_server, tmp_path, sig):
    s = make_server(*app_args("master_app:info", "-w", "2"))
    worker_pids(s, 2)
    c = slow_request(s.port, 30, tmp_path)
    tree = set(s.track()) | {s.pid}
    # timed from the signal, by cheap /proc reads of the known pids
    t0 = time.monotonic()
    os.kill(s.pid, sig)
    wait_for(lambda: not any(pid_alive(p) for p in tree), 3, interval=0.005,
             what="every process gone after SIG%s" % sig.name[3:])
    took = time.monotonic() - t0
    assert s.wait(5) is not None
    assert s.leftovers() == []
    print("quick stop (%s): tree gone in %.3f s" % (sig.name, took))


def test_usr1_reopens_log_files(make_server, tmp_path):
    err, acc = tmp_path / "error.log", tmp_path / "access.log"
    s = make_server(*app_args("master_app:hello", "--error-logfile", str(err),
                              "--access-logfile", str(acc)))
    worker_pids(s, 1)
    http_get(s.port, "/first")
    wait_for(lambda: "/first" in acc.read_text(), what="access line")
    os.rename(err, tmp_path / "error.log.1")
    os.rename(acc, tmp_path / "access.log.1")
    s.send(signal.SIGUSR1)
    wait_for(lambda: err.exists() and acc.exists(), what="reopened files")
    # the master forwards USR1; the worker reopens on its next wake-up
    for w in worker_pids(s, 1):
        wait_for(lambda: has_open(w, acc) and has_open(w, err), 10,
                 what="worker %d holding the new log files" % w)
    http_get(s.port, "/second")
    wait_for(lambda: "/second" in acc.read_text(), what="access line in the new file")
    assert "/second" not in (tmp_path / "access.log.1").read_text()
    assert "Handling signal: usr1" in (tmp_path / "error.log.1").read_text() + err.read_text()


def test_pidfile_written_and_removed(make_server, tmp_path):
    pidfile = tmp_path / "app.pid"
    s = make_server(*app_args("master_app:hello", "-p", str(pidfile)))
    assert int(pidfile.read_text()) == s.pid
    assert s.stop() == 0
    assert not pidfile.exists()


def test_daemon_mode(tmp_path):
    pidfile, err = tmp_path / "d.pid", tmp_path / "err.log"
    port = free_port()
    rc = subprocess.run([BINARY, "-D", "-p", str(pidfile), "--error-logfile", str(err),
                         "-b", "127.0.0.1:%d" % port] + app_args(), cwd=ROOT, timeout=10).returncode
    assert rc == 0
    pid = wait_for(lambda: pidfile.exists() and pidfile.read_text().strip() and int(pidfile.read_text()),
                   what="daemon pid file")
    try:
        wait_for(lambda: port_open(port), what="daemon listening")
        assert http_get(port, "/")[2] == b"OK"
        assert os.getsid(pid) == pid or os.getsid(pid) != os.getsid(0)
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not pid_alive(pid), what="daemon exit")
    finally:
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_unix_socket_bind(make_server, tmp_path):
    path = str(tmp_path / "s.sock")
    s = make_server(*app_args("master_app:hello", "-b", "unix:" + path), bind=False, start=False)
    s.start(wait=False)
    wait_for(lambda: os.path.exists(path), what="unix socket")
    def get():
        try:
            return unix_request(path)
        except OSError:
            return None
    data = wait_for(get, what="answer over the unix socket")
    assert data.startswith(b"HTTP/1.0 200") and data.endswith(b"OK")
    assert s.stop() == 0
    assert not os.path.exists(path)


def test_ipv6_and_second_bind(make_server):
    try:
        socket.socket(socket.AF_INET6).bind(("::1", 0))
    except OSError:
        pytest.fail("IPv6 loopback unavailable on this machine")
    p2 = free_port()
    s = make_server(*app_args("master_app:hello", "-b", "[::1]:%d" % p2))
    assert http_get(s.port, "/")[2] == b"OK"
    assert http_get(p2, "/", host="::1")[2] == b"OK"
    assert "Listening at: http://[::1]:%d" % p2 in s.log()


def test_fd_bind(tmp_path):
    lsock = loopback_listener()
    port, fd = lsock.getsockname()[1], lsock.fileno()
    s = Server(*app_args("master_app:hello", "-b", "fd://%d" % fd), bind=False, port=port,
               workdir=str(tmp_path))
    s.start(wait=False)
    # Popen closes fds by default: re-launch with pass_fds
    s.cleanup()
    proc = subprocess.Popen(s.argv, cwd=ROOT, pass_fds=(fd,), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=s.env)
    try:
        lsock.close()
        assert wait_for(lambda: (lambda r: r if r[0] == 200 else None)(http_get(port, "/")),
                        what="answer on the inherited fd")[2] == b"OK"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def test_raw_env_umask_and_user(make_server):
    s = make_server(*app_args("master_app:info", "-e", "CUNI_A=1", "--env", "CUNI_B=two",
                              "-m", "027", "-u", "nobody"))
    info = get_json(s.port)
    assert info["env"] == {"CUNI_A": "1", "CUNI_B": "two"}
    assert info["umask"] == 0o27
    assert info["uid"] == 65534
    assert info["ppid"] == s.pid


def test_worker_tmp_dir(make_server, tmp_path):
    s = make_server(*app_args("master_app:hello", "--worker-tmp-dir", str(tmp_path)))
    assert http_get(s.port, "/")[2] == b"OK"
    assert os.listdir(tmp_path) != [] or True  # the file is unlinked at once
    code, log, _ = start_to_exit(*app_args("master_app:hello", "--worker-tmp-dir",
                                           str(tmp_path / "missing")),
                                 workdir=str(tmp_path / "bad"))
    assert code not in (None, 0)
    assert "worker_tmp_dir" in log


def test_pidfile_of_a_running_server_is_refused_and_kept(make_server, tmp_path):
    """As gunicorn: a pid file naming a live process means a server already
    runs; a second start fails (before it binds) and leaves the file alone."""
    pidfile = tmp_path / "app.pid"
    s = make_server(*app_args("master_app:hello", "-p", str(pidfile)))
    for port in (None, s.port):         # a free port, and the one in use
        code, log, left = start_to_exit(*app_args("master_app:hello", "-p", str(pidfile)),
                                        port=port, workdir=str(tmp_path / ("other%s" % port)),
                                        timeout=15)
        assert code not in (None, 0)
        assert "Already running on PID %d (or pid file '%s' is stale)" % (s.pid, pidfile) in log
        assert left == []
        assert int(pidfile.read_text()) == s.pid
    assert http_get(s.port, "/")[2] == b"OK"
    assert s.stop() == 0
    assert not pidfile.exists()


def test_stale_pidfile_is_replaced(make_server, tmp_path):
    pidfile = tmp_path / "app.pid"
    dead = subprocess.Popen(["true"])
    dead.wait()
    pidfile.write_text("%d\n" % dead.pid)
    s = make_server(*app_args("master_app:hello", "-p", str(pidfile)))
    assert int(pidfile.read_text()) == s.pid


def test_listeners_inherited_without_gunicorn_pid_stay_the_parents(make_server, tmp_path):
    """$GUNICORN_FD from a master that does not set $GUNICORN_PID (an
    earlier cunicorn): the parent is taken as the old master, still serving
    the unix socket, so the new master leaves the file in place."""
    path = str(tmp_path / "u.sock")
    usock = socket.socket(socket.AF_UNIX)
    usock.bind(path)
    usock.listen(16)
    fd = usock.fileno()
    env = {"GUNICORN_FD": str(fd)}
    s = make_server(*app_args("master_app:hello", "-b", "unix:" + path), bind=False,
                    start=False, env=env, pass_fds=(fd,))
    s.env.pop("GUNICORN_PID", None)
    s.start(wait=False)
    try:
        assert wait_for(lambda: unix_request(path).endswith(b"OK"), 15,
                        what="an answer on the inherited socket")
        assert s.stop() == 0
        assert os.path.exists(path)
    finally:
        usock.close()


def test_preload_loads_in_master(make_server):
    s = make_server(*app_args("master_app:preload_pid", "--preload", "-w", "2"))
    info = get_json(s.port)
    assert info["loaded_in"] == s.pid and info["pid"] != s.pid
    s2 = make_server(*app_args("master_app:preload_pid"))
    info2 = get_json(s2.port)
    assert info2["loaded_in"] == info2["pid"]


def test_capture_output(make_server, tmp_path):
    err = tmp_path / "err.log"
    s = make_server(*app_args("master_app:prints", "--capture-output", "--error-logfile", str(err)))
    http_get(s.port, "/")
    wait_for(lambda: "printed-by-app-" in err.read_text(), what="app's print in the error log")


def test_hooks_called_with_gunicorn_signatures(make_server, tmp_path):
    hook_log = tmp_path / "hooks.log"
    s = make_server("-c", os.path.join(APPS, "master_hooks_conf.py"),
                    *app_args("master_app:hello", "-w", "1"),
                    env={"CUNI_HOOK_LOG": str(hook_log)})
    w = worker_pids(s, 1)[0]
    http_get(s.port, "/hooked")
    s.send(signal.SIGTTIN)
    worker_pids(s, 2)
    assert s.stop() == 0
    text = hook_log.read_text()
    for needle in ["on_starting %d" % s.pid, "when_ready %d 1" % s.pid, "pre_fork 1",
                   "post_fork %d %d" % (w, w), "post_worker_init %d" % w,
                   "pre_request GET /hooked", "post_request /hooked",
                   "nworkers_changed 2 1", "child_exit %d" % w, "worker_exit %d" % w,
                   "on_exit"]:
        assert needle in text, (needle, text)


def test_missing_app_module_fails_cleanly(tmp_path):
    code, log, left = start_to_exit(*app_args("no_such_module:app"), workdir=str(tmp_path))
    assert code not in (None, 0)
    assert "No module named 'no_such_module'" in log
    assert "Traceback" not in log
    assert left == []


def test_missing_callable_fails_cleanly(tmp_path):
    code, log, left = start_to_exit(*app_args("master_app:nope"), workdir=str(tmp_path))
    assert code not in (None, 0)
    assert "Failed to find attribute 'nope' in 'master_app'." in log
    assert left == []


def test_port_in_use_fails_cleanly(tmp_path):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    try:
        code, log, left = start_to_exit(*app_args(), port=port, workdir=str(tmp_path))
    finally:
        busy.close()
    assert code not in (None, 0)
    assert "Connection in use: ('127.0.0.1', %d)" % port in log
    assert "Traceback" not in log
    assert left == []


@pytest.mark.parametrize("how", ["flag", "env"])
def test_virtualenv_site_packages(make_server, tmp_path, how):
    site = tmp_path / "venv" / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    (site / "venv_only_mod.py").write_text(
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Length', '4')])\n"
        "    return [b'venv']\n")
    venv = str(tmp_path / "venv")
    if how == "flag":
        s = make_server("--virtualenv", venv, "venv_only_mod:app")
    else:
        s = make_server("venv_only_mod:app", env={"VIRTUAL_ENV": venv})
    assert http_get(s.port, "/")[2] == b"venv"


def test_worker_with_hung_request_leaves_when_master_is_killed(make_server, tmp_path):
    """Nobody enforces graceful_timeout once the master is gone: the worker
    must do it itself (SPEC §6.1: no process of the tree survives)."""
    s = make_server(*app_args("master_app:info", "-t", "60", "--graceful-timeout", "1"))
    w = worker_pids(s, 1)[0]
    c = slow_request(s.port, 60, tmp_path)
    os.kill(s.pid, signal.SIGKILL)
    # graceful_timeout (1 s) after it noticed, far before the request's 60 s
    wait_for(lambda: not pid_alive(w), timeout=15, what="hung worker gone after master SIGKILL")
    c.close()


def test_group_only_drops_supplementary_groups(make_server):
    s = make_server(*app_args("master_app:info", "-g", "nogroup"))
    info = get_json(s.port)
    import grp
    gid = grp.getgrnam("nogroup").gr_gid
    assert info["gid"] == gid and info["groups"] == [gid]


DIRTY_APP_CONF = """
dirty_apps = ['dirty_apps:Echo']
dirty_workers = {n}
"""


def test_hup_cannot_turn_the_dirty_arbiter_on_or_off(make_server, tmp_path):
    conf = tmp_path / "conf.py"
    conf.write_text("workers = 1\n")
    s = make_server("-c", str(conf), *app_args("master_app:hello"))
    worker_pids(s, 1)
    conf.write_text("workers = 1\n" + DIRTY_APP_CONF.format(n=1))
    s.send(signal.SIGHUP)
    s.wait_log("need a restart")
    time.sleep(1.5)
    assert "Spawning dirty arbiter" not in s.log()
    assert http_get(s.port, "/")[2] == b"OK"
    assert s.stop() == 0
    assert s.runtime_entries() in ([], ["cunicorn-0"])


def test_hup_turning_dirty_off_keeps_it_and_cleans_up(make_server, tmp_path):
    conf = tmp_path / "conf.py"
    conf.write_text("workers = 1\n" + DIRTY_APP_CONF.format(n=1))
    s = make_server("-c", str(conf), "--chdir", APPS, "--pythonpath",
                    os.path.join(ROOT, "tests", "integration", "apps"), "master_app:hello")
    wait_for(lambda: s.pids_titled("dirty-worker"), what="dirty worker")
    conf.write_text("workers = 1\n")
    s.send(signal.SIGHUP)
    s.wait_log("need a restart")
    assert s.stop() == 0
    assert not [e for e in s.runtime_entries() if "/" in e], s.runtime_entries()


def test_failed_start_leaves_no_runtime_dir(make_server, tmp_path):
    conf = tmp_path / "conf.py"
    conf.write_text(DIRTY_APP_CONF.format(n=1))
    s = make_server("-c", str(conf), "-p", str(tmp_path / "missing" / "x.pid"),
                    *app_args("master_app:hello"), start=False)
    s.start(wait=False)
    assert s.wait(10) == 1
    assert "Cannot write pidfile" in s.log()
    assert "Shutting down: Master" in s.log()
    assert not [e for e in s.runtime_entries() if "/" in e], s.runtime_entries()
    assert s.leftovers() == []


def _masters(port_pid):
    return sorted(p for p in [port_pid] if pid_alive(p))


def test_usr2_binary_upgrade_keeps_the_port(make_server, tmp_path):
    """USR2: a new master starts from the binary on disk with the listeners
    handed over ($GUNICORN_FD); the pid file moves to .oldbin; the old
    master can then be stopped while the port keeps answering."""
    pidfile = tmp_path / "app.pid"
    s = make_server(*app_args("master_app:info", "-p", str(pidfile)))
    old_worker = worker_pids(s, 1)[0]
    s.send(signal.SIGUSR2)
    new = new_master(s, [old_worker])
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip() == str(new),
             what="pid file naming the new master")
    assert int((tmp_path / "app.pid.oldbin").read_text()) == s.pid
    # both masters serve; stop the old one while requests keep coming
    wait_for(lambda: len(s.pids_titled("worker")) >= 2, what="new master's worker")
    s.send(signal.SIGTERM)
    assert s.wait(10) == 0
    assert not (tmp_path / "app.pid.oldbin").exists()
    for _ in range(20):
        assert get_json(s.port)["pid"] != old_worker
    assert "Re-executing" in s.log()
    os.kill(new, signal.SIGTERM)
    wait_for(lambda: not pid_alive(new), what="new master exit")
    assert not pidfile.exists()


def test_usr2_unix_socket_survives_the_old_master(make_server, tmp_path):
    path = str(tmp_path / "u.sock")
    s = make_server(*app_args("master_app:hello", "-b", "unix:" + path), bind=False, start=False)
    s.start(wait=False)
    wait_for(lambda: os.path.exists(path), what="unix socket")
    old_worker = worker_pids(s, 1)[0]     # started: in its loop, every child titled
    s.send(signal.SIGUSR2)
    new = new_master(s, [old_worker])
    s.send(signal.SIGTERM)
    assert s.wait(10) == 0
    assert os.path.exists(path)
    assert unix_request(path).endswith(b"OK")
    os.kill(new, signal.SIGTERM)
    wait_for(lambda: not pid_alive(new), what="new master exit")
    assert not os.path.exists(path)


def test_usr2_with_dirty_arbiter(make_server, tmp_path):
    """The new master of a USR2 upgrade gets its own arbiter (the old one is
    a live sibling, not an orphan); dirty calls work through the switch."""
    conf = tmp_path / "conf.py"
    conf.write_text(DIRTY_APP_CONF.format(n=1))
    s = make_server("-c", str(conf), *app_args("dirty_apps:application"))
    call = "/call?app=dirty_apps:Echo&action=echo&arg=%22x%22"
    assert get_json(s.port, call) == {"result": "x"}
    old_arbiter = wait_for(lambda: s.pids_titled("dirty-arbiter"), what="arbiter")[0]
    old_children = worker_pids(s, 1) + [old_arbiter]
    s.send(signal.SIGUSR2)
    new = new_master(s, old_children)
    wait_for(lambda: len(s.pids_titled("dirty-arbiter")) == 2, what="second arbiter")
    assert "Killing orphaned" not in s.log()
    s.send(signal.SIGTERM)
    assert s.wait(15) == 0
    wait_for(lambda: not pid_alive(old_arbiter), what="old arbiter gone")
    for _ in range(10):
        assert get_json(s.port, call) == {"result": "x"}
    os.kill(new, signal.SIGTERM)
    wait_for(lambda: not pid_alive(new), timeout=15, what="new master exit")


@pytest.mark.parametrize("uri,body", [
    ("master_app:create_app()", b"hi"),
    ("master_app:create_app('hey', upper=True)", b"HEY"),
    ("master_app:Holder.nested", b"OK"),
    ("master_app", None),            # callable defaults to `application`
])
def test_app_uri_forms(make_server, tmp_path, uri, body):
    if body is None:
        code, log, _ = start_to_exit(*app_args(uri), workdir=str(tmp_path))
        assert code not in (None, 0)
        assert "Failed to find attribute 'application' in 'master_app'." in log
        return
    s = make_server(*app_args(uri))
    assert http_get(s.port, "/")[2] == body


def test_app_uri_rejects_code(tmp_path):
    code, log, _ = start_to_exit(*app_args("master_app:create_app(__import__('os'))"),
                                 workdir=str(tmp_path))
    assert code not in (None, 0)
    assert "Failed to parse arguments as literal values" in log


def test_process_started_by_a_master_hook_does_not_inherit_blocked_signals(make_server, tmp_path):
    """A hook (when_ready) may start a helper process with fork and exec (multiprocessing,
    a daemonizing library); it must get a clean signal mask, or it would
    ignore TERM forever.  (subprocess resets the mask itself.)"""
    pidfile = tmp_path / "helper.pid"
    conf = tmp_path / "conf.py"
    conf.write_text(
        "import os\n"
        "def when_ready(server):\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        os.setsid()\n"
        "        os.execvp('sleep', ['sleep', '60'])\n"
        "    with open(%r + '.tmp', 'w') as f:\n"
        "        f.write(str(pid))\n"
        "    os.rename(%r + '.tmp', %r)\n" % (str(pidfile), str(pidfile), str(pidfile)))
    s = make_server("-c", str(conf), *app_args("master_app:hello"))
    # the port answers once it listens, before when_ready has run
    helper = wait_for(lambda: pidfile.exists() and pidfile.read_text().strip() and
                      int(pidfile.read_text()), 10, what="when_ready's helper pid")
    try:
        # the pid is written right after fork(): until the child has exec'd
        # sleep it still runs the master's copy, with the master's handlers
        # (a TERM then is caught and lost, and its mask is not the helper's)
        wait_for(lambda: proc_title(helper) == "sleep 60", 10, what="the helper to exec sleep")
        blocked = blocked_signals(helper)
        assert blocked == 0, "blocked signals: %x" % blocked
        os.kill(helper, signal.SIGTERM)
        wait_for(lambda: not pid_alive(helper), what="helper process obeys TERM")
    finally:
        if pid_alive(helper):
            os.kill(helper, signal.SIGKILL)
    assert http_get(s.port, "/")[2] == b"OK"


def test_usr1_bursts_during_spawns_kill_no_worker(make_server):
    """Signals arriving while a worker is being forked wait for its own
    handlers (every fork of ours happens with all signals blocked)."""
    s = make_server(*app_args("master_app:hello", "-w", "2"))
    worker_pids(s, 2)
    for _ in range(5):
        s.send(signal.SIGTTIN)
        for _ in range(20):
            s.send(signal.SIGUSR1)
            for p in s.pids_titled("worker"):
                try:
                    os.kill(p, signal.SIGUSR1)
                except OSError:
                    pass
        time.sleep(0.1)
    time.sleep(1)
    assert "was terminated due to signal 10" not in s.log()
    assert "exited with code" not in s.log()
    assert http_get(s.port, "/")[2] == b"OK"


def test_max_requests_with_jitter(make_server):
    """A worker restarts after max_requests + randint(0, jitter) requests."""
    s = make_server(*app_args("master_app:info", "--max-requests", "5",
                              "--max-requests-jitter", "5"))
    counts, pid, n = [], None, 0
    for _ in range(60):
        p = get_json(s.port)["pid"]
        if pid is not None and p != pid:
            counts.append(n)
            n = 0
        pid, n = p, n + 1
    assert len(counts) >= 3, counts
    assert all(5 <= c <= 10 for c in counts), counts
    s.wait_log("Autorestarting worker after current request.")


def test_reuse_port_lets_two_servers_share_a_port(make_server):
    a = make_server(*app_args("master_app:info", "--reuse-port"))
    b = make_server(*app_args("master_app:info", "--reuse-port"), port=a.port)
    b.wait_log("Booting worker")    # the port was open already: wait for b's own worker
    time.sleep(0.3)
    assert "Connection in use" not in b.log()
    pids = {get_json(a.port)["ppid"] for _ in range(40)}
    assert pids <= {a.pid, b.pid} and len(pids) == 2, pids


def test_backlog_reaches_listen(make_server):
    s = make_server(*app_args("master_app:hello", "--backlog", "77"))
    out = subprocess.run(["ss", "-ltnH", "sport = :%d" % s.port],
                         capture_output=True, text=True).stdout.split()
    # State Recv-Q Send-Q Local Peer: for a listener Send-Q is the backlog
    assert out[2] == "77", out
