"""Shared pytest helpers for cunicorn's integration and lifecycle tests.

Owns: starting build/cunicorn (or build/gunicorn) over loopback on a free
port, in its own process group and with its own runtime directory, waiting
for its own listener on that port (another port if someone else took the
one picked), collecting its output to files, and killing everything it
started in teardown.  Never: uses a fixed port, leaves a process behind, skips a
test because the binary is missing (that is a failure, with a clear line).

Usage in a test module (tests/integration/test_*.py):

    from conftest import Server, free_port, http_get, wait_for

    def test_hello(make_server):
        s = make_server("-c", "examples/gunicorn_conf.py", "examples.app:app")
        status, headers, body = http_get(s.port, "/")
        assert status == 200

`make_server(*args, **kw)` builds a Server, starts it, waits for its port and
registers it for teardown.  `Server(...)` can also be used directly
(`with Server(...) as s:`); `start_to_exit(*args, **kw)` runs one whose
start must fail and returns (exit status, log, processes left).  Every Server:
  - prepends `-b 127.0.0.1:<free port>` unless bind=False (the command line
    wins over the config file, as in gunicorn);
  - runs with cwd = repository root, PYTHONPATH = repo root (for `examples.`
    modules), and XDG_RUNTIME_DIR = a private 0700 directory, so the dirty
    arbiter's runtime directory (pid file, socket) never collides with
    another test's or another person's server of the same proc_name;
  - writes stdout to <dir>/stdout.log and stderr to <dir>/stderr.log;
    .out() / .err() / .log() (both) read them; .wait_log(text) polls;
  - stop(sig) signals the master and waits for it; kill() SIGKILLs the
    whole process group; cleanup() kills the group and every descendant
    found while it ran; leftovers() lists what is still alive.

The server does most things asynchronously (hooks after the port answers,
log reopening, accepting a connection, exits after a signal): never sleep
and then assert that something happened; poll with wait_for(predicate,
seconds).  Observables for it: has_open(pid, path) (a process reopened its
log), accepted(port, sock) (a worker took the connection), pid_alive(pid).

Raw sockets: raw_http(port, bytes) sends a request as given and returns
everything the server sent until it closed; unix_request(path, bytes) does
the same over a Unix socket.

Marker `nosan(reason)`: scripts/test.sh runs every test of
tests/integration a second time against the ASan + UBSan build
(CUNICORN_BIN_DIR=build-san, `-m "not nosan"`); a test or module that must
not run there says so, with the reason, e.g.
    @pytest.mark.nosan(reason="measures RSS; ASan's shadow memory inflates it")
A nosan marker without a reason is a collection error.
"""

import http.client
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "build")
# CUNICORN_BIN_DIR: run the suite against another build of the binary, e.g.
# build-san/ (ASan + UBSan, scripts/test.sh's "sanitized" stage).
BIN_DIR = os.environ.get("CUNICORN_BIN_DIR", BUILD)
BINARY = os.path.join(BIN_DIR, "cunicorn")
COMPAT_BINARY = os.path.join(BIN_DIR, "gunicorn")
PYTHON = "/usr/bin/python3"


_ports_given = set()


def free_port(host="127.0.0.1"):
    """An ephemeral TCP port that was free a moment ago, and that this
    process has not handed out before (two servers of one test, started
    one after the other, never get the same port)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port not in _ports_given:
            _ports_given.add(port)
            return port


def loopback_listener():
    """A TCP socket listening on 127.0.0.1, on a port the kernel picked
    (SO_REUSEADDR), for the tests that hand the server a listener."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    return s


def wait_for(predicate, timeout=10.0, interval=0.02, what="condition"):
    """Poll predicate() until it returns a truthy value; return that value.
    Raises AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = predicate()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def listening_inodes(port):
    """Socket inodes of the TCP listeners on `port` (any address, v4 or v6),
    from /proc/net/tcp{,6}."""
    out = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) > 9 and cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                out.add(cols[9])
    return out


def socket_inodes(pid):
    """Inodes of the sockets process `pid` holds open."""
    out = set()
    for t in fd_targets(pid):
        if t.startswith("socket:["):
            out.add(t[8:-1])
    return out


def fd_targets(pid):
    """What each open descriptor of `pid` points to (readlink of
    /proc/PID/fd/N): paths of open files, 'socket:[inode]', ..."""
    out = []
    try:
        fds = os.listdir("/proc/%d/fd" % pid)
    except OSError:
        return out
    for fd in fds:
        try:
            out.append(os.readlink("/proc/%d/fd/%s" % (pid, fd)))
        except OSError:
            pass
    return out


def has_open(pid, path):
    """True if `pid` holds `path` open, as that name (a renamed file shows
    its new name: after `mv log log.1`, a process that has not reopened
    its log holds log.1, not log)."""
    return str(path) in fd_targets(pid)


def accepted(port, client):
    """True once the server side of `client` (a connected socket to
    127.0.0.1:port) has been accept()ed.  A connection still waiting in the
    listener's queue has no socket inode yet (0 in /proc/net/tcp)."""
    local = client.getsockname()[1]
    with open("/proc/net/tcp") as f:
        for line in f.read().splitlines()[1:]:
            cols = line.split()
            if (int(cols[1].rsplit(":", 1)[1], 16) == port and
                    int(cols[2].rsplit(":", 1)[1], 16) == local):
                return cols[9] != "0"
    return False


def read_until_close(sock):
    """Everything `sock` receives until the peer closes (or resets) it."""
    data = b""
    while True:
        try:
            d = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not d:
            return data
        data += d


def raw_http(port, data, timeout=10.0, half_close=False, host="127.0.0.1"):
    """Send `data` as given on a fresh TCP connection (then shut down our
    side if half_close); return all the server sent until it closed.  A
    server that closes before reading everything is fine: what it answered
    is returned."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        try:
            s.sendall(data)
            if half_close:
                s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass
        return read_until_close(s)


def unix_request(path, request=b"GET / HTTP/1.0\r\n\r\n", timeout=10.0):
    """Send the raw `request` on a fresh connection to the unix socket at
    `path`; return all the server sent until it closed the connection."""
    with socket.socket(socket.AF_UNIX) as c:
        c.settimeout(timeout)
        c.connect(path)
        c.sendall(request)
        return read_until_close(c)


def run_to_exit(args, cwd, env_extra=None, timeout=30, binary=BINARY):
    """Run the binary to completion in its own session, without the
    environment variables that are settings.  Returns (returncode, stdout,
    stderr, leftovers): leftovers are processes of its process group still
    alive 5 s after the master exited (then killed)."""
    assert os.access(binary, os.X_OK), "%s is missing: run `make` first" % binary
    env = dict(os.environ)
    for k in ("GUNICORN_CMD_ARGS", "PORT", "WEB_CONCURRENCY", "FORWARDED_ALLOW_IPS",
              "VIRTUAL_ENV", "SENDFILE"):
        env.pop(k, None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["XDG_RUNTIME_DIR"] = str(cwd)
    env.update(env_extra or {})
    p = subprocess.Popen([binary] + [str(a) for a in args], cwd=str(cwd), env=env,
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        raise AssertionError("did not exit within %ds; stderr:\n%s"
                             % (timeout, err.decode(errors="replace")[-3000:]))
    finally:
        deadline = time.monotonic() + 5
        left = pgroup_members(p.pid)
        while left and time.monotonic() < deadline:
            time.sleep(0.05)
            left = pgroup_members(p.pid)
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except OSError:
            pass
    return p.returncode, out.decode(errors="replace"), err.decode(errors="replace"), left


def http_get(port, path="/", headers=None, method="GET", body=None, timeout=10.0, host="127.0.0.1"):
    """One HTTP request on a fresh connection: (status, headers dict lowercased, body bytes)."""
    c = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        c.close()


def proc_file(pid, name):
    """The bytes of /proc/PID/NAME, or None once the process is gone."""
    try:
        with open("/proc/%s/%s" % (pid, name), "rb") as f:
            return f.read()
    except OSError:
        return None


def pid_alive(pid):
    """True if pid exists and is not a zombie."""
    stat = proc_file(pid, "stat")
    if stat is None:
        return False
    return stat[stat.rindex(b")") + 2:][:1] != b"Z"


def blocked_signals(pid):
    """The mask of the signals `pid` blocks (SigBlk in /proc/PID/status)."""
    for line in proc_file(pid, "status").decode().splitlines():
        if line.startswith("SigBlk:"):
            return int(line.split()[1], 16)
    raise AssertionError("no SigBlk line for pid %d" % pid)


def proc_title(pid):
    """What `ps` shows as the command line (the process title), or None."""
    raw = proc_file(pid, "cmdline")
    if raw is None:
        return None
    return raw.replace(b"\0", b" ").decode("utf-8", "replace").strip()


def children_map():
    """{ppid: [pid, ...]} for every live process."""
    m = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        stat = proc_file(name, "stat")
        if stat is None:
            continue
        rest = stat[stat.rindex(b")") + 2:].split()
        if rest[0] == b"Z":
            continue
        m.setdefault(int(rest[1]), []).append(int(name))
    return m


def descendants(pid):
    """Live descendants of pid (not pid itself)."""
    m = children_map()
    out, todo = [], [pid]
    while todo:
        for c in m.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def pgroup_members(pgid):
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if os.getpgid(int(name)) == pgid and pid_alive(int(name)):
                out.append(int(name))
        except OSError:
            pass
    return out


class Server:
    """build/cunicorn started with `args`, in its own process group."""

    def __init__(self, *args, port=None, bind=True, binary=BINARY, cwd=ROOT,
                 env=None, workdir=None, runtime_dir=None, groups=None, pass_fds=()):
        # a port we picked may be taken by someone else before the server
        # binds it: start() then tries another one
        self._auto_port = port is None and bind
        self.port = port if port is not None else free_port()
        self.binary = binary
        self.groups = groups    # supplementary groups to start with (root only)
        self.pass_fds = tuple(pass_fds)     # descriptors the server inherits
        self._bind, self._args = bind, [str(a) for a in args]
        self._set_argv()
        self.cwd = cwd
        self._own_workdir = workdir is None     # removed by cleanup()
        self.workdir = workdir or tempfile.mkdtemp(prefix="cunicorn-test-")
        os.makedirs(self.workdir, exist_ok=True)
        # Short on purpose: the dirty socket path under it must fit in
        # sun_path (108 bytes), or cunicorn falls back to the shared /tmp.
        self._own_runtime = runtime_dir is None
        self.runtime_dir = runtime_dir or tempfile.mkdtemp(prefix="cu-", dir="/tmp")
        os.chmod(self.runtime_dir, 0o700)
        self.stdout_path = os.path.join(self.workdir, "stdout.log")
        self.stderr_path = os.path.join(self.workdir, "stderr.log")
        e = dict(os.environ)
        e.pop("GUNICORN_CMD_ARGS", None)
        e.pop("GUNICORN_DIRTY_SOCKET", None)
        e["PYTHONPATH"] = ROOT + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
        e["XDG_RUNTIME_DIR"] = self.runtime_dir
        e["PYTHONDONTWRITEBYTECODE"] = "1"
        if env:
            e.update(env)
        self.env = e
        self.proc = None
        self.pid = None
        self._seen = set()

    # -- life --------------------------------------------------------------
    def _set_argv(self):
        self.argv = ([self.binary] + (["-b", "127.0.0.1:%d" % self.port] if self._bind else [])
                     + self._args)

    def start(self, wait=True, timeout=15.0):
        if not os.access(self.binary, os.X_OK):
            raise AssertionError("%s is missing: run `make` first" % self.binary)
        for attempt in range(3):
            mode = "ab" if attempt == 0 else "wb"    # a retry starts clean logs
            self._out = open(self.stdout_path, mode)
            self._err = open(self.stderr_path, mode)
            self.proc = subprocess.Popen(self.argv, cwd=self.cwd, env=self.env,
                                         stdin=subprocess.DEVNULL, stdout=self._out,
                                         stderr=self._err, start_new_session=True,
                                         extra_groups=self.groups,
                                         pass_fds=self.pass_fds)
            self.pid = self.proc.pid
            if not wait:
                return self
            try:
                self.wait_ready(timeout)
                return self
            except AssertionError:
                taken = "Connection in use: ('127.0.0.1', %d)" % self.port in self.log()
                if not (self._auto_port and taken and self.proc.poll() is not None) or attempt == 2:
                    raise
            # the free port we picked was taken meanwhile: another one
            self._out.close()
            self._err.close()
            self.port = free_port()
            self._set_argv()
        return self

    def wait_ready(self, timeout=15.0):
        """Wait until the master listens on the port (its own listener, not
        whatever else may hold that port); fail with the log if it exits
        first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("server exited with %s before listening:\n%s"
                                     % (self.proc.returncode, self.log()[-4000:]))
            if listening_inodes(self.port) & socket_inodes(self.pid):
                self.track()
                return
            time.sleep(0.02)
        raise AssertionError("server not listening on %d after %.0fs:\n%s"
                             % (self.port, timeout, self.log()[-4000:]))

    def track(self):
        """Remember the current descendants so cleanup() can find them later
        even if they left the process group."""
        if self.pid:
            self._seen.update(descendants(self.pid))
        return self._seen

    def send(self, sig):
        self.track()
        os.kill(self.pid, sig)

    def wait(self, timeout=10.0):
        """Wait for the master to exit; return its exit status (negative =
        killed by that signal) or None on timeout."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        """Signal the master and wait for it.  Returns its exit status, or
        None if it did not exit within timeout.  Does not kill the rest:
        call leftovers() to check, cleanup() to kill."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.send(sig)
        return self.wait(timeout)

    def kill(self):
        """SIGKILL the master's whole process group."""
        self.track()
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except OSError:
            pass

    def leftovers(self):
        """Pids of this server's processes that are still alive."""
        pids = set(self._seen)
        if self.pid:
            pids.add(self.pid)
            pids.update(descendants(self.pid))
            pids.update(pgroup_members(self.pid))
        return sorted(p for p in pids if pid_alive(p) and p != os.getpid())

    def cleanup(self):
        if self.proc is None:
            if self._own_runtime:
                shutil.rmtree(self.runtime_dir, ignore_errors=True)
            if self._own_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)
            return
        for p in self.leftovers():
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        for f in (getattr(self, "_out", None), getattr(self, "_err", None)):
            if f:
                f.close()
        if self._own_runtime:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self):
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc):
        self.cleanup()

    # -- output -------------------------------------------------------------
    def _read(self, path):
        try:
            with open(path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def out(self):
        return self._read(self.stdout_path)

    def err(self):
        return self._read(self.stderr_path)

    def log(self):
        return self.err() + self.out()

    def wait_log(self, text, timeout=10.0, count=1):
        """Wait until `text` appears at least `count` times in stdout+stderr."""
        wait_for(lambda: self.log().count(text) >= count, timeout,
                 what="%r x%d in the log; log so far:\n%s" % (text, count, self.log()[-3000:]))

    # -- processes ----------------------------------------------------------
    def runtime_entries(self):
        """Every path left under the private XDG_RUNTIME_DIR (relative), e.g.
        ['cunicorn-0', 'cunicorn-0/app_application-1a2b3c4d/dirty.sock']."""
        out = []
        for d, dirs, files in os.walk(self.runtime_dir):
            for n in dirs + files:
                out.append(os.path.relpath(os.path.join(d, n), self.runtime_dir))
        return sorted(out)

    def processes(self):
        """{pid: title} of the master's live descendants."""
        self.track()
        return {p: proc_title(p) for p in descendants(self.pid) if pid_alive(p)}

    def pids_titled(self, role):
        """Pids of descendants whose title contains ': <role> ' or
        ': <role>' at the end, e.g. role='worker', 'dirty-arbiter'."""
        out = []
        for p, t in self.processes().items():
            if t and (": %s " % role in t + " "):
                out.append(p)
        return sorted(out)


def start_to_exit(*args, timeout=10.0, **kw):
    """A Server(*args, **kw) that must exit by itself (a start that fails):
    started without waiting for its port, given `timeout` seconds to exit,
    then cleaned up.  Returns (its exit status, None if it did not exit;
    its log; the pids of its processes still alive when it exited)."""
    s = Server(*args, **kw)
    try:
        s.start(wait=False)
        code = s.wait(timeout)
        return code, s.log(), s.leftovers()
    finally:
        s.cleanup()


@pytest.fixture
def make_server(tmp_path):
    """Factory: make_server(*args, **kw) -> started Server; all are cleaned
    up at teardown.  Pass start=False to get it unstarted."""
    servers = []

    def factory(*args, start=True, **kw):
        kw.setdefault("workdir", str(tmp_path / ("server%d" % len(servers))))
        s = Server(*args, **kw)
        servers.append(s)
        if start:
            s.start()
        return s

    yield factory
    for s in servers:
        s.cleanup()


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "nosan(reason): not run against the ASan + UBSan build "
        "(scripts/test.sh's sanitized stage); the reason is required")


def pytest_collection_modifyitems(config, items):
    for item in items:
        for mark in item.iter_markers("nosan"):
            if not mark.kwargs.get("reason"):
                raise pytest.UsageError(
                    "%s: @pytest.mark.nosan needs reason=\"...\"" % item.nodeid)


def pytest_report_header(config):
    ok = os.access(BINARY, os.X_OK)
    return "cunicorn binary: %s (%s)" % (BINARY, "present" if ok else "MISSING - run make")


def pytest_terminal_summary(terminalreporter):
    """Print the lifecycle figures the harness recorded (tests/lifecycle)."""
    import sys
    h = sys.modules.get("harness")
    rows = getattr(h, "TIMINGS", None)
    if not rows:
        return
    tr = terminalreporter
    tr.section("lifecycle timings (ms, signal -> observed inside)")
    for backend, scenario, measure, ms in rows:
        tr.write_line("%-10s %-40s %-26s %s" % (backend, scenario, measure,
                                                 "TIMEOUT" if ms is None else ms))
