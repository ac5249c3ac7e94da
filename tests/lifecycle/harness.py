"""The lifecycle harness: one set of operations over two isolated places
where a cunicorn tree can live and die, so every scenario of the seed
(gunicorn's tests/docker/dirty_arbiter) and SPEC section 6 runs twice.

Backends (same app files: tests/docker/dirty_arbiter/app.py + gunicorn_conf.py,
same command as the container's: PID 1 is `sh -c 'gunicorn ... & while true;
do sleep 1; done'`, so orphans are re-parented to a shell):

  sandbox    `unshare --pid --fork --mount-proc --net` as root: own PID
             namespace (the shell is PID 1), own network namespace (lo up, so
             port 8000 is private), own tmpfs on /tmp (so the runtime dir
             /tmp/cunicorn-0/ is private).  Runs the host's build/gunicorn.
             exec = `nsenter -t <pid1> -p -m -n`; logs = the file PID 1's
             stdout/stderr point to.
  container  `docker` when its daemon answers, else Podman with
             scripts/podman-env.sh's private configuration; the image is
             built from tests/docker/dirty_arbiter/Dockerfile (cunicorn
             built from source inside).  exec = `<engine> exec -i`,
             logs = `<engine> logs`.

Owns: the processes and containers it starts (close() kills them all: the
sandbox's PID 1, which takes the namespace with it; `rm -f -t 0` the
container).  Never: skips — a backend that cannot run raises
BackendUnavailable, which the tests turn into a failure with the reason.

Timing: `timed(action, waits)` runs a shell action inside and polls each
condition *inside* (5 ms steps, no exec round trip), so the figures are the
time from the signal to the observed change, within ~10 ms.
"""

import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
APPDIR = os.path.join(ROOT, "tests", "docker", "dirty_arbiter")
DOCKERFILE = os.path.join(APPDIR, "Dockerfile")
IMAGE = "localhost/cunicorn-dirty-arbiter:test"
PORT = 8000
START_CMD = "gunicorn app:application -c gunicorn_conf.py"

TITLES = {
    "master": "gunicorn: master",
    "worker": "gunicorn: worker",
    "dirty-arbiter": "gunicorn: dirty-arbiter",
    "dirty-worker": "gunicorn: dirty-worker",
}

# (backend, scenario, measure, ms) — printed by tests/conftest.py at the end.
TIMINGS = []


def record(backend, scenario, measure, ms):
    TIMINGS.append((backend, scenario, measure, ms))


def _die_with_parent():
    """preexec_fn: SIGKILL this child when the test runner dies."""
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL


class BackendUnavailable(Exception):
    pass


# Shell prelude for scripts run inside (POSIX sh: dash in both places).
# Patterns reach awk through the environment so that no process's argv
# contains a title we look for.
PRELUDE = r'''
now() { date +%s%N; }
alive() { { read -r l < /proc/$1/stat; } 2>/dev/null || return 1
  case "$l" in *") Z "*) return 1;; esac; return 0; }
gone() { ! alive "$1"; }
# titled TEXT [PID...]: a live process whose title contains TEXT, not in PIDs
titled() { T="$1"; shift; X=" $* "; export T X
  ps -eo pid=,stat=,args= | awk '$2 !~ /^Z/ && index($0, ENVIRON["T"]) && index(ENVIRON["X"], " " $1 " ") == 0 { f = 1 } END { exit !f }'; }
none_titled() { ! titled "$1"; }
http_ok() { curl -fs -o /dev/null --max-time 2 "http://127.0.0.1:@PORT@$1"; }
'''.replace("@PORT@", str(PORT))


class Proc:
    __slots__ = ("pid", "ppid", "stat", "title")

    def __init__(self, pid, ppid, stat, title):
        self.pid, self.ppid, self.stat, self.title = pid, ppid, stat, title

    def __repr__(self):
        return "Proc(%d, ppid=%d, %s, %r)" % (self.pid, self.ppid, self.stat, self.title)


class Backend:
    name = "?"
    start_cmd = START_CMD
    bin_dir = None		# prepended to PATH inside, where gunicorn is

    # -- to implement ---------------------------------------------------
    def _start(self):
        raise NotImplementedError

    def exec(self, argv, input=None, timeout=60):
        """subprocess.CompletedProcess of argv run inside (text mode)."""
        raise NotImplementedError

    def logs(self):
        raise NotImplementedError

    def close(self):
        raise NotImplementedError

    # -- common ---------------------------------------------------------
    def start(self, timeout=60):
        self._start()
        try:
            self.wait_ready(timeout=timeout)
        except Exception:
            self.close()
            raise
        return self

    def sh(self, script, timeout=60):
        """Run a sh script inside, fed on stdin (so it is not in any argv)."""
        return self.exec(["sh", "-s"], input=PRELUDE + script, timeout=timeout)

    def procs(self):
        r = self.exec(["ps", "-eo", "pid=,ppid=,stat=,args="])
        out = []
        for line in r.stdout.splitlines():
            parts = line.split(None, 3)
            if len(parts) < 4:
                continue
            out.append(Proc(int(parts[0]), int(parts[1]), parts[2], parts[3]))
        return out

    def roles(self):
        """{role: [pid, ...]} of live (non-zombie) cunicorn processes."""
        r = {k: [] for k in TITLES}
        for p in self.procs():
            if p.stat.startswith("Z"):
                continue
            for role, t in TITLES.items():
                if p.title.startswith(t + " ") or p.title == t:
                    r[role].append(p.pid)
        return r

    def tree(self):
        """All live cunicorn pids (every role)."""
        return sorted(p for pids in self.roles().values() for p in pids)

    def kill(self, sig, pid):
        return self.exec(["kill", "-%s" % sig, str(pid)])

    def http(self, path="/"):
        """(status code, body) of a request made inside; status 0 when no
        connection could be made."""
        r = self.exec(["curl", "-s", "--max-time", "15", "-o", "-", "-w", "\n%{http_code}",
                       "http://127.0.0.1:%d%s" % (PORT, path)])
        body, _, code = r.stdout.rpartition("\n")
        return int(code or 0), body

    def start_master(self):
        """Start another master in the same place, detached, its output
        appended to PID 1's (= the logs)."""
        path = "export PATH=%s:$PATH; " % self.bin_dir if self.bin_dir else ""
        self.sh("%scd %s && (%s >>/proc/1/fd/1 2>&1 &)\n" % (path, self.appdir, self.start_cmd))

    def exec_argv(self, argv):
        """(full argv, env) that runs argv inside, as exec() does."""
        raise NotImplementedError

    def start_master_exec_detached(self, timeout=60):
        """Start a master the way gunicorn's own container tests restart
        one: `docker exec C sh -c "gunicorn ... &"`.  sh exits at once and
        the exec session's pipes lose their reader: every line the server
        writes from then on meets a pipe nobody reads (EPIPE, or SIGPIPE
        for a process that does not ignore it).  Returns once sh has
        exited and our end of both pipes is closed."""
        path = "export PATH=%s:$PATH; " % self.bin_dir if self.bin_dir else ""
        argv, env = self.exec_argv(["sh", "-c", "%scd %s && %s &" % (path, self.appdir, self.start_cmd)])
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=env)
        try:
            p.wait(timeout)
        finally:
            p.stdout.close()
            p.stderr.close()
            if p.poll() is None:
                p.kill()
                p.wait()
        return p.returncode

    def wait_ready(self, timeout=60, exclude=()):
        """Wait for master, worker, dirty arbiter and dirty worker (none of
        whose pids is in `exclude`) and for `/` to answer 200."""
        deadline = time.monotonic() + timeout
        while True:
            r = self.roles()
            ok = all(any(p not in exclude for p in r[k]) for k in TITLES)
            if ok and self.http("/")[0] == 200:
                return r
            if time.monotonic() > deadline:
                raise AssertionError("%s: cunicorn not ready after %ds; processes %s\nlogs:\n%s"
                                     % (self.name, timeout, r, self.logs()[-4000:]))
            time.sleep(0.1)

    def wait_log(self, text, timeout=10, count=1):
        deadline = time.monotonic() + timeout
        while True:
            logs = self.logs()
            if logs.count(text) >= count:
                return logs
            if time.monotonic() > deadline:
                raise AssertionError("%s: %r (x%d) not logged within %ds; logs:\n%s"
                                     % (self.name, text, count, timeout, logs[-4000:]))
            time.sleep(0.05)

    def timed(self, action, waits, timeout=5.0):
        """Run shell `action` inside, then poll every (name, condition)
        until each holds or `timeout` s pass.  Returns {name: ms or None}.
        Conditions are sh using the prelude: `gone PID`, `titled TEXT PID..`,
        `none_titled TEXT`, `http_ok /path`."""
        # Each condition is polled by its own subshell, so a slow one
        # (ps, curl) does not blur the timing of a cheap one (gone PID).
        lines = ["tmo=%d" % int(timeout * 1000), "t0=$(now)", action]
        names = [n for n, _ in waits]
        for i, (_, cond) in enumerate(waits):
            lines.append("( while :; do if %s; then echo \"W%d $(( ($(now) - t0) / 1000000 ))\"; break; fi; "
                         "[ $(( ($(now) - t0) / 1000000 )) -gt $tmo ] && break; sleep 0.005; done ) &"
                         % (cond, i))
        lines.append("wait")
        r = self.sh("\n".join(lines) + "\n", timeout=timeout + 60)
        res = {n: None for n in names}
        for m in re.finditer(r"^W(\d+) (\d+)$", r.stdout, re.M):
            res[names[int(m.group(1))]] = int(m.group(2))
        return res

    def runtime_entries(self):
        """Everything left under /tmp inside (runtime dirs, sockets, pid
        files, temp files)."""
        r = self.exec(["find", "/tmp", "-mindepth", "1"])
        return sorted(x for x in r.stdout.split("\n") if x)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --------------------------------------------------------------------------
# Sandbox: PID + network + mount namespaces with unshare.

class SandboxBackend(Backend):
    name = "sandbox"

    def __init__(self):
        self.bin_dir = os.path.join(ROOT, "build")
        self.appdir = APPDIR
        self.workdir = tempfile.mkdtemp(prefix="cunicorn-sandbox-")
        self.logpath = os.path.join(self.workdir, "sandbox.log")
        self.proc = None
        self.pid1 = None

    def _start(self):
        if os.geteuid() != 0:
            raise BackendUnavailable("the PID-namespace sandbox needs root (unshare --pid --net)")
        for tool in ("unshare", "nsenter", "ip", "curl", "ps"):
            if not shutil.which(tool):
                raise BackendUnavailable("%s is not installed (scripts/deps.sh test)" % tool)
        gb = os.path.join(self.bin_dir, "gunicorn")
        if not os.access(gb, os.X_OK):
            raise BackendUnavailable("%s is missing: run `make` first" % gb)
        # A private tmpfs on /tmp; when the repository itself lives under
        # /tmp (a CI clone), it is bound back at the same path through a
        # descriptor opened before the tmpfs hid it.
        rebind = ""
        if self._under_tmp(ROOT):
            rebind = "mkdir -p '%s'\nmount --no-canonicalize --bind /proc/self/fd/3 '%s'\n" % (ROOT, ROOT)
        script = ("set -e\n"
                  "exec 3<'%s'\n"
                  "mount -t tmpfs -o mode=1777 tmpfs /tmp\n"
                  "%s"
                  "exec 3<&-\n" % (ROOT, rebind) +
                  "ip link set lo up\n"
                  "cd %s\n"
                  "export PATH=%s:$PATH\n"
                  "set +e\n"
                  "%s & while true; do sleep 1; done\n") % (self.appdir, self.bin_dir, self.start_cmd)
        env = dict(os.environ)
        for k in ("GUNICORN_CMD_ARGS", "GUNICORN_DIRTY_SOCKET", "XDG_RUNTIME_DIR", "PYTHONPATH",
                  "PYTHONHOME", "VIRTUAL_ENV"):
            env.pop(k, None)
        env["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        self.log = open(self.logpath, "ab")
        self.proc = subprocess.Popen(
            # --kill-child and the parent-death signal: a test runner that
            # dies mid-test takes its namespace (and everything in it) along
            ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc", "--net",
             "--propagation", "private", "sh", "-c", script],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log, env=env,
            start_new_session=True, preexec_fn=_die_with_parent)
        # PID 1 of the namespace is unshare's only child.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                with open("/proc/%d/task/%d/children" % (self.proc.pid, self.proc.pid)) as f:
                    kids = f.read().split()
            except OSError:
                kids = []
            if kids:
                self.pid1 = int(kids[0])
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.01)
        raise BackendUnavailable("unshare did not start a namespace: %s" % self.logs()[-2000:])

    @staticmethod
    def _under_tmp(path):
        return os.path.realpath(path).startswith("/tmp/")

    def runtime_entries(self):
        """As Backend's, without the repository bound back under /tmp."""
        root = os.path.realpath(ROOT)
        return [e for e in Backend.runtime_entries(self)
                if not (e == root or root.startswith(e + "/") or e.startswith(root + "/"))]

    def exec_argv(self, argv):
        return ["nsenter", "-t", str(self.pid1), "-p", "-m", "-n"] + argv, None

    def exec(self, argv, input=None, timeout=60):
        return subprocess.run(self.exec_argv(argv)[0],
                              input=input, capture_output=True, text=True, timeout=timeout)

    def logs(self):
        try:
            with open(self.logpath, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def close(self):
        # Killing PID 1 kills every process of the namespace.
        if self.pid1:
            try:
                os.kill(self.pid1, 9)
            except OSError:
                pass
        if self.proc:
            try:
                os.killpg(self.proc.pid, 9)
            except OSError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
            self.log.close()
            self.proc = None
        shutil.rmtree(self.workdir, ignore_errors=True)


# --------------------------------------------------------------------------
# Containers: Docker if its daemon answers, else Podman.

_engine = None
_image_built = None


def engine():
    """(argv prefix, env) of a working container engine, or raise
    BackendUnavailable with the reason."""
    global _engine
    if _engine is not None:
        if isinstance(_engine, BackendUnavailable):
            raise _engine
        return _engine
    try:
        if shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True,
                                                      timeout=20).returncode == 0:
            _engine = (["docker"], dict(os.environ))
            return _engine
        if not shutil.which("podman"):
            raise BackendUnavailable("no container engine: docker's daemon does not answer and "
                                     "podman is not installed (scripts/deps.sh container)")
        env = dict(os.environ)
        r = subprocess.run([os.path.join(ROOT, "scripts", "podman-env.sh"), "env"],
                           capture_output=True, text=True)
        for m in re.finditer(r"^export (\w+)='([^']*)'$", r.stdout, re.M):
            env[m.group(1)] = m.group(2)
        r = subprocess.run([os.path.join(ROOT, "scripts", "podman-env.sh"), "base-image"],
                           capture_output=True, text=True, env=env, timeout=600)
        if r.returncode != 0:
            raise BackendUnavailable("podman base image could not be made:\n" + r.stdout + r.stderr)
        _engine = (["podman"], env)
        return _engine
    except BackendUnavailable as e:
        _engine = e
        raise


def build_image():
    """Build the test image once per session."""
    global _image_built
    if _image_built is True:
        return IMAGE
    if isinstance(_image_built, BackendUnavailable):
        raise _image_built
    eng, env = engine()
    t0 = time.monotonic()
    r = subprocess.run(eng + ["build", "-t", IMAGE, "-f", DOCKERFILE, ROOT],
                       capture_output=True, text=True, env=env, timeout=1200)
    if r.returncode != 0:
        _image_built = BackendUnavailable("image build failed (%s build -f %s):\n%s"
                                          % (eng[0], DOCKERFILE, (r.stdout + r.stderr)[-4000:]))
        raise _image_built
    record("container", "image", "build", int((time.monotonic() - t0) * 1000))
    _image_built = True
    return IMAGE


class ContainerBackend(Backend):
    name = "container"

    def __init__(self):
        self.appdir = "/app"
        self.cname = "cunicorn-lc-" + uuid.uuid4().hex[:10]
        self.started = False

    def _run(self, args, input=None, timeout=120):
        eng, env = engine()
        return subprocess.run(eng + args, input=input, capture_output=True, text=True,
                              env=env, timeout=timeout)

    def _start(self):
        image = build_image()
        r = self._run(["run", "-d", "--name", self.cname, image])
        self.started = True
        if r.returncode != 0:
            raise BackendUnavailable("%s run failed: %s" % (engine()[0][0], r.stderr))

    def exec_argv(self, argv):
        eng, env = engine()
        return eng + ["exec", self.cname] + argv, env

    def exec(self, argv, input=None, timeout=60):
        return self._run(["exec", "-i", self.cname] + argv, input=input, timeout=timeout)

    def logs(self):
        r = self._run(["logs", self.cname])
        return r.stdout + r.stderr

    def close(self):
        if self.started:
            # Podman waits 10 s for a shell PID 1 that ignores TERM unless
            # told not to; docker's rm -f kills at once.
            t = ["-t", "0"] if engine()[0][0] == "podman" else []
            self._run(["rm", "-f"] + t + [self.cname])
            self.started = False


BACKENDS = {"sandbox": SandboxBackend, "container": ContainerBackend}


def make(name):
    """A backend by name; "<backend>-gthread" runs the same scenarios with
    `-k gthread --threads 2` (gunicorn's own dirty-arbiter container test
    runs gthread); "<backend>-asgi" with `-k asgi` and app.py's ASGI app
    (gunicorn's dirty-arbiter examples run asgi)."""
    base, _, worker = name.partition("-")
    b = BACKENDS[base]()
    if worker == "asgi":    # the seed's routes as an ASGI app
        b.start_cmd = (START_CMD.replace("app:application", "app:asgi_application")
                       + " -k asgi")
        b.name = name
    elif worker:
        b.start_cmd = START_CMD + " -k %s --threads 2" % worker
        b.name = name
    return b
