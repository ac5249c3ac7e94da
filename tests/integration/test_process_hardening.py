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

from conftest import ROOT, fd_targets, http_get, wait_for

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
