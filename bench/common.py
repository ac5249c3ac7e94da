"""Helpers shared by the benchmarks: free ports, starting servers in their
own process group, waiting for a port, wrk runs, per-process memory.
Benchmarks print figures; they never assert timings."""

import atexit
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
BUILD = os.path.join(ROOT, "build")
PYTHON = "/usr/bin/python3"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


# Servers still running: stopped at exit, also when the benchmark is
# interrupted (Ctrl-C, or a TERM/HUP turned into SystemExit below) before
# its own stop() calls, so no server tree outlives it.
_running = set()


def _stop_running():
    for p in list(_running):
        p.stop()


def _exit_on_signal(signum, frame):
    sys.exit(128 + signum)


atexit.register(_stop_running)
for _sig in (signal.SIGTERM, signal.SIGHUP):
    signal.signal(_sig, _exit_on_signal)


class Proc:
    """A server started in its own process group; output to a log file."""

    def __init__(self, argv, port, cwd=BENCH, env=None, log=None):
        self.port = port
        self.log_path = log or "/tmp/cunicorn-bench-%d.log" % port
        self.logf = open(self.log_path, "wb")
        e = dict(os.environ)
        for k in ("PYTHONPATH", "GUNICORN_CMD_ARGS", "GUNICORN_DIRTY_SOCKET"):
            e.pop(k, None)
        if env:
            e.update(env)
        self.p = subprocess.Popen(argv, cwd=cwd, env=e, stdin=subprocess.DEVNULL,
                                  stdout=self.logf, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        _running.add(self)
        self.ok = wait_port(port, self.p)

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self):
        if self not in _running:
            return
        _running.discard(self)
        try:
            os.killpg(self.p.pid, signal.SIGTERM)
            self.p.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            pass
        try:
            os.killpg(self.p.pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            self.p.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self.logf.close()
        try:
            os.unlink(self.log_path)
        except OSError:
            pass


def wrk(url, seconds=5, conns=32, threads=2, close=True):
    """Requests/s from wrk (None if wrk failed)."""
    argv = ["wrk", "-t%d" % threads, "-c%d" % conns, "-d%ds" % seconds]
    if close:
        argv += ["-H", "Connection: close"]
    r = subprocess.run(argv + [url], capture_output=True, text=True)
    m = re.search(r"Requests/sec:\s+([\d.]+)", r.stdout)
    errs = re.search(r"Non-2xx or 3xx responses: (\d+)", r.stdout)
    sock = re.search(r"Socket errors: (.*)", r.stdout)
    return (float(m.group(1)) if m else None,
            int(errs.group(1)) if errs else 0,
            sock.group(1) if sock else "")


def start_all(make, cwd):
    """make(port) -> [(name, argv), ...]: start each server on a port of its
    own.  Returns [(name, Proc, url)] of those up, and {name: note} for
    those that did not start."""
    procs, notes = [], {}
    for name, _ in make(0):
        port = free_port()
        p = Proc(dict(make(port))[name], port, cwd=cwd)
        if not p.ok:
            notes[name] = "did not start: " + p.log()[-200:].replace("\n", " | ")
            p.stop()
            continue
        procs.append((name, p, "http://127.0.0.1:%d/" % port))
    return procs, notes


def in_turn(procs, rounds, seconds, notes, cpu=None):
    """Warm each server up, then wrk (keep-alive) each in turn, `rounds`
    times: every figure is a median over moments spread across the run, so
    a passing load on the machine weighs on every server alike.  Returns
    {name: [req/s of each round]}; errors go into notes.  With a dict
    `cpu`, also {name: [µs of the server's whole process tree's CPU per
    request, each round]} for the procs given with their Proc: on two
    CPUs shared with wrk, req/s is partly wrk's ceiling, CPU per request
    is the server's own cost."""
    for _, _, url in procs:
        wrk(url, 1, close=False)
    figures = dict((name, []) for name, _, _ in procs)
    if cpu is not None:
        cpu.update((name, []) for name, p, _ in procs if p is not None)
    for _ in range(rounds):
        for name, p, url in procs:
            c0 = tree_cpu(p.p.pid) if cpu is not None and p is not None else None
            rps, non2xx, sock = wrk(url, seconds, close=False)
            if rps:
                figures[name].append(rps)
                if c0 is not None:
                    cpu[name].append((tree_cpu(p.p.pid) - c0) * 1e6 / (rps * seconds))
            if non2xx or sock:
                notes[name] = ("non-2xx %d " % non2xx if non2xx else "") + (sock or "")
    return figures


def median(v):
    return sorted(v)[len(v) // 2] if v else None


def print_in_turn(procs, figures, notes, ref, ref_label, width=26, label=None, cpu=None):
    """One line per server of an in_turn() run: the median, its ratio to
    ref's (a name in figures), every round's figure, the notes; with
    `cpu` (in_turn's), the median server CPU per request and its ratio
    to ref's (how many times more CPU than ref it spends)."""
    med = dict((n, median(v)) for n, v in figures.items() if v)
    base = med.get(ref)
    cmed = dict((n, median(v)) for n, v in (cpu or {}).items() if v)
    cbase = cmed.get(ref)
    lead = "  %%-%ds " % width + ("%-8s " % label if label else "")
    for name, _, _ in procs:
        rps = med.get(name)
        ratio = ("  (%s = %.2fx)" % (ref_label, base / rps)
                 if base and rps and name != ref else "")
        spread = " [%s]" % " ".join("%.0f" % x for x in figures[name])
        c = cmed.get(name)
        cpu_txt = ""
        if c:
            cpu_txt = "  %.1f us CPU/req" % c
            if cbase and name != ref:
                cpu_txt += " (%.2fx %s's)" % (c / cbase, ref_label)
        print(lead % name + "%10s req/s%s%s%s %s" % ("%.0f" % rps if rps else "-", ratio,
                                                       spread, cpu_txt, notes.get(name, "")))
    for name, note in notes.items():
        if name not in figures:
            print(lead % name + note)


def tree(pid):
    """pid and all its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children(p))
    return out


def tree_cpu(pid):
    """CPU seconds of pid's whole process tree so far (live processes)."""
    return sum(cpu_seconds(p) for p in tree(pid))


def children(pid):
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open("/proc/%s/stat" % name, "rb") as f:
                    st = f.read()
                if int(st[st.rindex(b")") + 2:].split()[1]) == pid:
                    out.append(int(name))
            except (OSError, ValueError):
                pass
    return out


def cpu_seconds(pid):
    """User + system CPU time of one process so far (seconds), 0 if gone."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            st = f.read()
    except OSError:
        return 0.0
    fields = st[st.rindex(b")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def title(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return ""


def memory(pid):
    """(peak RSS kB = VmHWM, private kB = Private_Clean + Private_Dirty)."""
    hwm = priv = None
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
        with open("/proc/%d/smaps_rollup" % pid) as f:
            priv = 0
            for line in f:
                if line.startswith(("Private_Clean:", "Private_Dirty:")):
                    priv += int(line.split()[1])
    except OSError:
        pass
    return hwm, priv


def have(cmd):
    return shutil.which(cmd) is not None


def fmt(v, spec="%.0f"):
    return "n/a" if v is None else spec % v


def nginx_conf(port, root, tls=None):
    """nginx serving root/index.html (the hello body) on port, 2 workers,
    keep-alive; tls=(cert, key) for HTTPS.  Returns (its directory under
    /tmp, "cunicorn-bench-nginx-*", the caller's to remove; the conf)."""
    d = tempfile.mkdtemp(prefix="cunicorn-bench-nginx-")
    os.chmod(root, 0o755)       # nginx's workers read it as nobody
    with open(os.path.join(root, "index.html"), "wb") as f:
        f.write(b"Hello, World!")
    listen = "127.0.0.1:%d" % port
    if tls:
        listen += " ssl; ssl_certificate %s; ssl_certificate_key %s" % tls
    conf = os.path.join(d, "nginx.conf")
    with open(conf, "w") as f:
        f.write("""worker_processes 2;
daemon off;
pid %(d)s/nginx.pid;
error_log %(d)s/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path %(d)s; proxy_temp_path %(d)s; fastcgi_temp_path %(d)s;
  uwsgi_temp_path %(d)s; scgi_temp_path %(d)s;
  server { listen %(listen)s; root %(root)s; }
}
""" % {"d": d, "listen": listen, "root": root})
    return d, conf
