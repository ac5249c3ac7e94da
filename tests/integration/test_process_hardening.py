"""Process hardening (issue 8), through the real binary: a log sink whose
reader is gone, a planted pid file symlink, $GUNICORN_FD naming things
that are not listeners, the runtime directory when workers run as another
user, and what such runs leave behind."""
import json
import os
import signal
import socket
import stat
import subprocess

import pytest

from conftest import ROOT, fd_targets, http_get, loopback_listener, wait_for
from dirty_raw import socket_path

APPS = os.path.join(ROOT, "tests", "integration", "apps")
HELLO = ["--chdir", APPS, "master_app:hello"]
DIRTY = ["--chdir", APPS, "--dirty-app", "dirty_apps:Echo", "--dirty-workers", "1",
         "dirty_apps:application"]


def launch(s, argv=None, **popen):
    """Start Server s (from make_server(..., start=False)) with our own
    stdio; it is still cleaned up by the fixture."""
    popen.setdefault("stdin", subprocess.DEVNULL)
    s.proc = subprocess.Popen(argv or s.argv, cwd=s.cwd, env=s.env,
                              start_new_session=True, **popen)
    s.pid = s.proc.pid
    return s


def dirty_call(port, value):
    status, _, body = http_get(port, '/call?app=dirty_apps:Echo&action=echo&arg=%s'
                               % json.dumps(value))
    assert status == 200, body
    return json.loads(body)


# ---- 1. SIGPIPE: a log sink that fails never stops the server ----------

def test_serves_with_stdout_and_stderr_a_pipe_whose_reader_is_gone(make_server):
    """`docker exec C sh -c "gunicorn ... &"`: the session's pipe closes as
    soon as sh exits; every log line after that is an EPIPE."""
    s = make_server("--log-level", "debug", "--access-logfile", "-", *DIRTY, start=False)
    r, w = os.pipe()
    os.close(r)
    try:
        launch(s, stdout=w, stderr=w)
    finally:
        os.close(w)
    s.wait_ready()
    assert dirty_call(s.port, "still_here") == {"result": "still_here"}
    for _ in range(3):      # access log lines and debug lines: more EPIPEs
        assert http_get(s.port, "/modules")[0] == 200
    assert s.proc.poll() is None
    assert s.stop(signal.SIGTERM, 15) == 0
    wait_for(lambda: not s.leftovers(), 10, what="every process gone")
    assert not [e for e in s.runtime_entries() if "/" in e], s.runtime_entries()


def test_closed_stdout_and_stderr_are_never_reused(make_server):
    """Started with 1 and 2 closed: they are /dev/null, so no socket or
    file opened later takes their number and receives log lines."""
    s = make_server("--log-level", "debug", "--access-logfile", "-", *HELLO, start=False)
    launch(s, ["sh", "-c", 'exec "$@" 1>&- 2>&-', "sh"] + s.argv)
    s.wait_ready()
    status, _, body = http_get(s.port, "/")
    assert (status, body) == (200, b"OK")
    for pid in [s.pid] + s.pids_titled("worker"):
        targets = {fd: os.readlink("/proc/%d/fd/%d" % (pid, fd)) for fd in (1, 2)}
        assert targets == {1: "/dev/null", 2: "/dev/null"}, (pid, targets)
    assert s.stop() == 0


# ---- 2. pid file: the temporary never follows a symlink -----------------

def test_pidfile_temporary_never_follows_a_planted_symlink(make_server, tmp_path):
    precious = tmp_path / "precious"
    precious.write_text("root only\n")
    os.chmod(precious, 0o600)
    rundir = tmp_path / "run"
    rundir.mkdir()
    pidfile = rundir / "app.pid"
    s = make_server("-p", str(pidfile), *HELLO, start=False)
    # The temporary used to be <pidfile>.<master pid>.tmp, opened with
    # O_CREAT|O_TRUNC: plant it for the pid the master will have (exec
    # keeps the shell's pid).
    launch(s, ["sh", "-c", 'ln -s "$0" "$1.$$.tmp" && shift && exec "$@"',
               str(precious), str(pidfile)] + s.argv,
           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    s.wait_ready()
    planted = rundir / ("app.pid.%d.tmp" % s.pid)
    assert os.path.islink(planted)
    assert precious.read_text() == "root only\n"
    assert stat.S_IMODE(os.stat(precious).st_mode) == 0o600
    st = os.lstat(pidfile)
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o644
    assert pidfile.read_text() == "%d\n" % s.pid
    # nothing else was left beside it
    assert sorted(os.listdir(rundir)) == sorted(["app.pid", planted.name])
    assert s.stop() == 0
    assert sorted(os.listdir(rundir)) == [planted.name]
    assert precious.read_text() == "root only\n"


# ---- 4. $GUNICORN_FD: only listening sockets ---------------------------

def _pipe():
    r, w = os.pipe()
    return [r, w], w


def _file(tmp_path):
    fd = os.open(str(tmp_path / "a-file"), os.O_RDWR | os.O_CREAT, 0o600)
    return [fd], fd


def _connected_tcp():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    c = socket.create_connection(srv.getsockname())
    srv.close()
    return [c], c.fileno()


def _bound_tcp_not_listening():
    c = socket.socket()
    c.bind(("127.0.0.1", 0))
    return [c], c.fileno()


def _udp():
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c.bind(("127.0.0.1", 0))
    return [c], c.fileno()


def _unix_dgram():
    c = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    return [c], c.fileno()


@pytest.mark.parametrize("kind", ["pipe", "file", "connected_tcp", "bound_tcp", "udp",
                                  "unix_dgram", "not_open", "garbage"])
def test_gunicorn_fd_that_is_not_a_listener_fails_the_start(make_server, tmp_path, kind):
    held = []
    try:
        if kind == "pipe":
            held, fd = _pipe()
        elif kind == "file":
            held, fd = _file(tmp_path)
        elif kind == "connected_tcp":
            held, fd = _connected_tcp()
        elif kind == "bound_tcp":
            held, fd = _bound_tcp_not_listening()
        elif kind == "udp":
            held, fd = _udp()
        elif kind == "unix_dgram":
            held, fd = _unix_dgram()
        else:
            fd = None
        value = {"not_open": "987", "garbage": "5x"}.get(kind, str(fd))
        s = make_server(*HELLO, start=False, env={"GUNICORN_FD": value})
        launch(s, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
               pass_fds=[fd] if fd is not None else [])
        _, err = s.proc.communicate(timeout=15)
        err = err.decode(errors="replace")
        assert s.proc.returncode == 1, err
        lines = [l for l in err.splitlines() if "GUNICORN_FD" in l]
        assert len(lines) == 1 and lines[0].startswith("Error: GUNICORN_FD: "), err
        if fd is not None:
            assert "fd %d " % fd in lines[0], err
        assert "Traceback" not in err
        assert s.leftovers() == []
    finally:
        for h in held:
            if isinstance(h, int):
                os.close(h)
            else:
                h.close()


def test_gunicorn_fd_listener_is_served_and_others_are_kept(make_server, tmp_path):
    """A listening socket is still taken (the USR2 hand-over); a file the
    master holds (its error log) is never closed because of it."""
    lsock = loopback_listener()
    port = lsock.getsockname()[1]
    errlog = tmp_path / "error.log"
    try:
        s = make_server("--error-logfile", str(errlog), *HELLO, start=False, bind=False,
                        port=port, env={"GUNICORN_FD": str(lsock.fileno())})
        s._args[:0] = ["-b", "127.0.0.1:%d" % port]
        s._set_argv()
        launch(s, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
               pass_fds=[lsock.fileno()])
        s.wait_ready()
    finally:
        lsock.close()
    assert http_get(port, "/")[2] == b"OK"
    assert str(errlog) in fd_targets(s.pid)
    assert s.stop() == 0
    assert "Shutting down: Master" in errlog.read_text()


# ---- 4b. what an HTTP worker inherits (spawn.c) ------------------------

HOLDER_APP = """
import os
held = open(os.environ["HELD_PATH"], "w")   # a preloaded app's descriptor

def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"OK"]
"""


def test_http_worker_keeps_what_the_app_opened_and_not_the_masters_pipe(make_server, tmp_path):
    """Decision: an HTTP worker does not close every inherited descriptor
    (a preloaded app shares what it opened with its workers, as under
    gunicorn), but the master's own signal pipe is gone from it."""
    (tmp_path / "holder_app.py").write_text(HOLDER_APP)
    held = tmp_path / "held.txt"
    s = make_server("--chdir", str(tmp_path), "--preload", "-w", "1", "holder_app:application",
                    env={"HELD_PATH": str(held)})
    worker = wait_for(lambda: (lambda p: p[0] if len(p) == 1 else None)(s.pids_titled("worker")),
                      10, what="the worker")
    assert http_get(s.port, "/")[2] == b"OK"
    master_fds, worker_fds = fd_targets(s.pid), fd_targets(worker)
    master_pipes = {t for t in master_fds if t.startswith("pipe:")}
    assert master_pipes, master_fds           # the master's signal pipe
    assert not master_pipes & set(worker_fds), (master_fds, worker_fds)
    assert str(held) in master_fds and str(held) in worker_fds
    assert s.stop() == 0


# ---- 3. runtime dir under -u/-g: nothing an unprivileged user can change

NOBODY = 65534


def nogroup():
    import grp
    return grp.getgrnam("nogroup").gr_gid


def unique_name(tag):
    return "ph-%s-%s" % (tag, os.urandom(4).hex())


def start_as_nobody(make_server, name):
    assert os.geteuid() == 0, "switching users needs root"
    s = make_server("-u", "nobody", "-g", "nogroup", "-n", name, *DIRTY)
    s.sock = socket_path(s)
    assert wait_for(lambda: (lambda r: r if "result" in r else None)(dirty_call(s.port, "n")),
                    15, what="a dirty call") == {"result": "n"}
    return s


ATTACK = r"""
import os, sys
d, top = sys.argv[1], sys.argv[2]
tries = [lambda: os.symlink("/etc/passwd", os.path.join(d, "evil")),
         lambda: os.mkdir(os.path.join(d, "x")),
         lambda: os.rename(os.path.join(d, "dirty.sock"), os.path.join(d, "moved")),
         lambda: os.unlink(os.path.join(d, "dirty-arbiter.pid")),
         lambda: os.chmod(d, 0o777),
         lambda: os.symlink("/etc", os.path.join(top, "evil")),
         lambda: os.rename(d, d + ".moved")]
done = []
for i, t in enumerate(tries):
    try:
        t()
        done.append(i)
    except PermissionError:
        pass
    except OSError as e:
        done.append((i, e.errno))
print(done)
"""


def test_workers_user_cannot_change_the_runtime_dir(make_server):
    """The arbiter stays root and works by path in its runtime dir (bind,
    lchown, unlink): no directory on that path may be writable by the
    workers' user, who could swap a symlink in."""
    s = start_as_nobody(make_server, unique_name("user"))
    d = os.path.dirname(s.sock)
    top = os.path.dirname(d)
    # as the workers' user: every attempt to change what root works in fails
    r = subprocess.run(["/usr/bin/python3", "-c", ATTACK, d, top], user=NOBODY,
                       group=nogroup(), extra_groups=[], capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == b"[]", r.stdout
    assert top == "/tmp/cunicorn-%d" % os.geteuid()
    st = os.lstat(d)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, nogroup(), 0o710)
    st = os.lstat(top)
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o711)
    st = os.lstat(s.sock)
    assert stat.S_ISSOCK(st.st_mode)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (NOBODY, nogroup(), 0o600)
    # and the workers still reach the socket
    assert dirty_call(s.port, "again") == {"result": "again"}
    assert s.stop() == 0
    assert not os.path.exists(d)


# ---- 5. nothing left behind by runs with -u/-g --------------------------

@pytest.mark.parametrize("how", ["TERM", "QUIT", "INT", "KILL master"])
def test_runs_as_another_user_leave_no_runtime_dir(make_server, how):
    s = start_as_nobody(make_server, unique_name("left"))
    d = os.path.dirname(s.sock)
    sig = getattr(signal, "SIG" + how.split()[0])
    rc = s.stop(sig, 15)
    assert rc == (-signal.SIGKILL if how == "KILL master" else 0)
    wait_for(lambda: not s.leftovers(), 10, what="every process gone")
    wait_for(lambda: not os.path.exists(d), 10, what="%s removed" % d)


def test_runtime_dir_of_a_server_killed_whole_is_removed_by_the_next(make_server):
    """SIGKILL to every process of a server leaves nobody to clean up: the
    next server (any proc_name) removes the directory nothing uses."""
    first = start_as_nobody(make_server, unique_name("killed"))
    d1 = os.path.dirname(first.sock)
    first.kill()
    assert first.wait(10) == -signal.SIGKILL    # reaped, as its parent would
    wait_for(lambda: not first.leftovers(), 10, what="the first server gone")
    assert os.path.isdir(d1)    # what a whole-group SIGKILL leaves
    second = start_as_nobody(make_server, unique_name("next"))
    d2 = os.path.dirname(second.sock)
    assert os.path.dirname(d1) == os.path.dirname(d2)
    assert not os.path.exists(d1)
    assert "Killing orphaned" not in second.log()
    assert second.stop() == 0
    assert not os.path.exists(d2)
