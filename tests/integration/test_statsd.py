"""gunicorn's statsd instrumentation (statsd_host, statsd_prefix,
dogstatsd_tags, enable_backlog_metric), through the real build/cunicorn:
a UDP (or unix datagram) socket in the test is the statsd server and
keeps every datagram.

- every request of the sync, gthread and asgi workers sends, in one
  datagram, gunicorn's three lines: `gunicorn.request.duration:<ms>|ms`,
  `gunicorn.requests:1|c|@1.0`, `gunicorn.request.status.<code>:1|c|@1.0`;
  a websocket sends none (as gunicorn's asgi worker);
- the master sends `gunicorn.workers:<n>|g` when the count changes (start,
  TTIN, TTOU) and `gunicorn.backlog:<n>|ms` with --enable-backlog-metric;
- every warning, error, critical and exception record is counted as
  `gunicorn.log.<kind>:1|c|@1.0`, hidden by the log level or not, in
  every process (the dirty arbiter's too); hooks send metrics of their own
  through server.log (extra={"metric": ...}, increment(), ...);
- gunicorn's prefix rule and dogstatsd tags; the settings from the command
  line, GUNICORN_CMD_ARGS and the config file, read again on HUP;
- real gunicorn (Debian's, installed) sends the same lines for the same
  requests;
- a statsd server that is not there never breaks serving; a bad
  statsd_host is one clear config error.
"""

import json
import os
import re
import signal
import socket
import subprocess
import textwrap
import threading

import pytest

from conftest import ROOT, free_port, http_get, pid_alive, wait_for
from conftest import run_to_exit as run

APP = "tests.integration.apps.statsd_apps"
KINDS = {"sync": "app", "gthread": "app", "asgi": "asgi_app"}
DURATION = re.compile(r"^(?P<prefix>.*)gunicorn\.request\.duration:(?P<ms>\d+\.\d{1,3})\|ms"
                      r"(?P<tags>.*)$")


class Sink:
    """A statsd server: a datagram socket on 127.0.0.1 (or at a unix
    path) that keeps every datagram it receives."""

    def __init__(self, path=None):
        self.path = path
        if path is None:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind(("127.0.0.1", 0))
            self.host = "127.0.0.1:%d" % self.sock.getsockname()[1]
        else:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self.sock.bind(path)
            self.host = "unix://" + path
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.setblocking(False)
        self.packets = []

    def datagrams(self):
        while True:
            try:
                self.packets.append(self.sock.recv(65536).decode())
            except BlockingIOError:
                return self.packets

    def lines(self):
        return [l for p in self.datagrams() for l in p.split("\n")]

    def count(self, line):
        return self.lines().count(line)

    def wait(self, line, count=1, timeout=15.0):
        """Wait until `line` arrived `count` times at least."""
        wait_for(lambda: self.count(line) >= count, timeout,
                 what="%r x%d from statsd; got:\n%s" % (line, count,
                                                       "\n".join(self.lines()[-40:])))

    def gauges(self, name):
        return [int(l.split(":", 1)[1].split("|", 1)[0]) for l in self.lines()
                if l.startswith(name + ":") and "|g" in l]

    def close(self):
        self.sock.close()
        if self.path is not None and os.path.exists(self.path):
            os.unlink(self.path)


@pytest.fixture
def sinks():
    made = []

    def factory(path=None):
        made.append(Sink(path))
        return made[-1]

    yield factory
    for s in made:
        s.close()


def serve(make_server, kind, *args, **kw):
    return make_server("-k", kind, *args, "%s:%s" % (APP, KINDS[kind]), **kw)


def request_packets(sink):
    return [p for p in sink.datagrams() if "gunicorn.requests:" in p]


# ---- requests ------------------------------------------------------------------

@pytest.mark.parametrize("kind", sorted(KINDS))
def test_request_metrics(make_server, sinks, kind):
    sink = sinks()
    s = serve(make_server, kind, "-w", "1", "--statsd-host", sink.host,
              "--statsd-prefix", "web")
    sink.wait("web.gunicorn.workers:1|g")
    assert http_get(s.port, "/")[0] == 200
    assert http_get(s.port, "/missing")[0] == 404
    assert http_get(s.port, "/boom")[0] == 500
    assert http_get(s.port, "/sleep?ms=300")[0] == 200
    sink.wait("web.gunicorn.requests:1|c|@1.0", count=4)

    # one datagram per request, gunicorn's three lines in its order
    packets = request_packets(sink)
    assert len(packets) == 4, packets
    durations, statuses = [], []
    for p in packets:
        d, r, st = p.split("\n")
        m = DURATION.match(d)
        assert m and m.group("prefix") == "web." and m.group("tags") == "", p
        durations.append(float(m.group("ms")))
        assert r == "web.gunicorn.requests:1|c|@1.0", p
        m = re.match(r"^web\.gunicorn\.request\.status\.(\d{3}):1\|c\|@1\.0$", st)
        assert m, p
        statuses.append(int(m.group(1)))
    assert statuses == [200, 404, 500, 200]     # one worker: in request order
    # the duration is the request's, in milliseconds
    assert all(d >= 0 for d in durations), durations
    assert 300 <= durations[3] < 30000, durations
    # the app's exception: one exception record, not an error
    assert sink.count("web.gunicorn.log.exception:1|c|@1.0") == 1
    assert not [l for l in sink.lines() if ".log.error" in l or "backlog" in l]
    assert all(l.startswith("web.gunicorn.") for l in sink.lines()), sink.lines()
    assert "Traceback" in s.log()     # the 500 still logs the app's traceback


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_workers_gauge(make_server, sinks, kind):
    """The master's gauge: the count at start, then after every change
    (and only then: a respawned worker changes nothing)."""
    sink = sinks()
    s = serve(make_server, kind, "-w", "2", "--statsd-host", sink.host)
    sink.wait("gunicorn.workers:2|g")
    s.send(signal.SIGTTIN)
    sink.wait("gunicorn.workers:3|g")
    wait_for(lambda: len(s.pids_titled("worker")) == 3, 15, what="3 workers")
    s.send(signal.SIGTTOU)
    sink.wait("gunicorn.workers:2|g", count=2)
    wait_for(lambda: len(s.pids_titled("worker")) == 2, 15, what="2 workers")
    # a worker killed and replaced: the count is the same, no new gauge
    os.kill(s.pids_titled("worker")[0], signal.SIGKILL)
    s.wait_log("was sent SIGKILL", timeout=15)
    wait_for(lambda: s.log().count("Booting worker") >= 4, 15, what="the replacement")
    assert http_get(s.port, "/")[0] == 200
    sink.wait("gunicorn.requests:1|c|@1.0")
    assert sink.gauges("gunicorn.workers") == [2, 3, 2]
    # the master's SIGKILL line is an error record
    assert sink.count("gunicorn.log.error:1|c|@1.0") == 1


def test_websocket_sends_no_request_metrics(make_server, sinks):
    """gunicorn's asgi worker sends no metrics for a websocket (its whole
    life is no request duration); its access log line is still written."""
    sink = sinks()
    s = serve(make_server, "asgi", "-w", "1", "--statsd-host", sink.host,
              "--access-logfile", "-")
    sink.wait("gunicorn.workers:1|g")
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as c:
        c.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                  b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        got = b""
        while b"\r\n\r\n" not in got:
            chunk = c.recv(4096)
            assert chunk, got
            got += chunk
        assert got.startswith(b"HTTP/1.1 101 "), got
    s.wait_log('"GET /ws HTTP/1.1" 101')
    assert http_get(s.port, "/")[0] == 200     # its metrics come after any of the websocket's
    sink.wait("gunicorn.requests:1|c|@1.0")
    assert sink.count("gunicorn.requests:1|c|@1.0") == 1
    assert not [l for l in sink.lines() if "status.101" in l], sink.lines()


# ---- the same lines as gunicorn -------------------------------------------------

def shape(lines):
    """Lines with the duration's value masked, sorted."""
    return sorted(re.sub(r"duration:\d+\.\d+\|", "duration:X|", l) for l in lines)


def test_same_lines_as_gunicorn(make_server, sinks, tmp_path):
    """Debian's gunicorn (20.1) and cunicorn, each given the same settings
    and the same four requests, send the same lines."""
    args = ["-w", "2", "--statsd-prefix", "web.", "--dogstatsd-tags", "env:test,svc"]

    def exercise(port, sink):
        sink.wait("web.gunicorn.workers:2|g|#env:test,svc")
        for path in ("/", "/missing", "/boom", "/"):
            http_get(port, path)
        sink.wait("web.gunicorn.requests:1|c|@1.0|#env:test,svc", count=4)
        return shape(sink.lines())

    ours = sinks()
    s = make_server(*args, "--statsd-host", ours.host, "%s:app" % APP)
    got = exercise(s.port, ours)
    s.stop()

    theirs = sinks()
    port = free_port()
    env = dict(os.environ, PYTHONPATH=ROOT, PYTHONDONTWRITEBYTECODE="1")
    env.pop("GUNICORN_CMD_ARGS", None)
    log = open(tmp_path / "gunicorn.log", "wb")
    g = subprocess.Popen(["/usr/bin/python3", "-m", "gunicorn", "-b", "127.0.0.1:%d" % port]
                         + args + ["--statsd-host", theirs.host, "%s:app" % APP],
                         cwd=ROOT, env=env, stdout=log, stderr=log, start_new_session=True)
    try:
        want = exercise(port, theirs)
    finally:
        os.killpg(g.pid, signal.SIGKILL)
        g.wait(10)
        log.close()
    assert got == want


# ---- prefix and tags ------------------------------------------------------------

@pytest.mark.parametrize("prefix", ["svc.web...", "a"])
def test_prefix_rule_and_tags(make_server, sinks, prefix):
    """gunicorn's prefix rule, its own regular expression here as the
    oracle ("a" gets no dot: a one-letter prefix does not match it), and
    the dogstatsd tags after every line, counters' sample rate first."""
    sink = sinks()
    want = re.sub(r"^(.+[^.]+)\.*$", "\\g<1>.", prefix)
    tags = "env:test,role:web"
    s = make_server("--statsd-host", sink.host, "--statsd-prefix", prefix,
                    "--dogstatsd-tags", tags, "%s:app" % APP)
    assert http_get(s.port, "/missing")[0] == 404
    sink.wait("%sgunicorn.requests:1|c|@1.0|#%s" % (want, tags))
    lines = sink.lines()
    assert "%sgunicorn.workers:1|g|#%s" % (want, tags) in lines
    assert "%sgunicorn.request.status.404:1|c|@1.0|#%s" % (want, tags) in lines
    assert any(DURATION.match(l) and DURATION.match(l).group("prefix") == want and
               DURATION.match(l).group("tags") == "|#" + tags for l in lines), lines


# ---- settings: config file, GUNICORN_CMD_ARGS, hooks, HUP ----------------------

def test_config_file_hooks_and_log_counters(make_server, sinks, tmp_path):
    """From the config file (the prefix from GUNICORN_CMD_ARGS, which wins):
    a hook sees cfg.statsd_host as gunicorn's (host, port); its warning,
    hidden by loglevel = error, is counted all the same; its critical too;
    its own metrics go out with the prefix and tags."""
    sink = sinks()
    out = tmp_path / "cfg.json"
    conf = tmp_path / "conf.py"
    conf.write_text(textwrap.dedent("""\
        import json, os
        statsd_host = %r
        statsd_prefix = "fromfile"
        dogstatsd_tags = "t:1"
        loglevel = "error"

        def when_ready(server):
            server.log.warning("hidden-warning")
            server.log.critical("shown-critical")
            server.log.info("", extra={"metric": "custom.gauge", "value": 7, "mtype": "gauge"})
            server.log.debug("x", extra={"metric": "custom.zero", "value": 0, "mtype": "gauge"})
            server.log.increment("custom.count", 2)
            server.log.histogram("custom.ms", 12.5)
            try:
                raise ValueError("caught")
            except ValueError:
                server.log.exception("handled")
            c = server.cfg
            with open(%r + ".tmp", "w") as f:
                json.dump([c.statsd_host, c.statsd_prefix, c.dogstatsd_tags,
                           c.enable_backlog_metric], f)
            os.rename(%r + ".tmp", %r)
    """) % (sink.host, str(out), str(out), str(out)))
    s = make_server("-c", str(conf), "%s:app" % APP,
                    env={"GUNICORN_CMD_ARGS": "--statsd-prefix fromenv"})
    got = wait_for(lambda: out.exists() and json.loads(out.read_text()), 15,
                   what="when_ready's cfg dump")
    host, port = sink.host.split(":")
    assert got == [[host, int(port)], "fromenv", "t:1", False]
    for line in ("fromenv.gunicorn.log.warning:1|c|@1.0|#t:1",
                 "fromenv.gunicorn.log.critical:1|c|@1.0|#t:1",
                 "fromenv.gunicorn.log.exception:1|c|@1.0|#t:1",
                 "fromenv.custom.gauge:7|g|#t:1",
                 "fromenv.custom.count:2|c|@1.0|#t:1",
                 "fromenv.custom.ms:12.5|ms|#t:1"):
        sink.wait(line)
    lines = sink.lines()
    assert not [l for l in lines if "custom.zero" in l]      # gunicorn: a 0 is no metric
    assert not [l for l in lines if ".log.error" in l], lines
    log = s.log()
    assert "hidden-warning" not in log and "shown-critical" in log
    rec = log[log.index("handled"):]
    assert "Traceback" in rec and "ValueError: caught" in rec


def test_hup_reads_the_statsd_settings_again(make_server, sinks, tmp_path):
    """A HUP with a new statsd_host and prefix: the new workers send there,
    with the new prefix, and the master sends its gauge there too."""
    one, two = sinks(), sinks()
    conf = tmp_path / "conf.py"
    conf.write_text("statsd_host = %r\nstatsd_prefix = 'one'\n" % one.host)
    s = make_server("-c", str(conf), "-w", "1", "%s:app" % APP)
    assert http_get(s.port, "/")[0] == 200
    one.wait("one.gunicorn.requests:1|c|@1.0")
    conf.write_text("statsd_host = %r\nstatsd_prefix = 'two'\n" % two.host)
    s.send(signal.SIGHUP)
    two.wait("two.gunicorn.workers:1|g")

    def served_by_new():
        http_get(s.port, "/")
        return two.count("two.gunicorn.requests:1|c|@1.0") > 0
    wait_for(served_by_new, 15, what="a request counted with the new settings")
    assert not [l for l in one.lines() if l.startswith("two.")], one.lines()
    assert not [l for l in two.lines() if l.startswith("one.")], two.lines()


@pytest.mark.parametrize("form", ["unix:", "unix://"])
def test_unix_socket(make_server, sinks, tmp_path, form):
    sink = sinks(str(tmp_path / "statsd.sock"))
    s = make_server("-k", "gthread", "--statsd-host", form + sink.path, "%s:app" % APP)
    assert http_get(s.port, "/")[0] == 200
    sink.wait("gunicorn.requests:1|c|@1.0")
    assert "gunicorn.workers:1|g" in sink.lines()
    assert "gunicorn.request.status.200:1|c|@1.0" in sink.lines()


def test_backlog_metric(make_server, sinks, tmp_path):
    """--enable-backlog-metric: connections waiting in the listener's
    accept queue while the one sync worker is held, as the master counts
    them each turn (gunicorn.backlog, gunicorn's histogram type)."""
    sink = sinks()
    mark, until = tmp_path / "inside", tmp_path / "release"
    s = make_server("-w", "1", "--enable-backlog-metric", "--statsd-host", sink.host,
                    "%s:app" % APP)
    held = threading.Thread(target=http_get, args=(s.port, "/hold?mark=%s&until=%s"
                                                   % (mark, until)), daemon=True)
    held.start()
    waiting = []
    try:
        wait_for(mark.exists, 15, what="the worker inside the request")
        for _ in range(3):
            waiting.append(socket.create_connection(("127.0.0.1", s.port), timeout=10))
        sink.wait("gunicorn.backlog:3|ms")
    finally:
        until.touch()
        held.join(15)
        for c in waiting:
            c.close()
    assert not [l for l in sink.lines() if re.match(r"gunicorn\.backlog:0\|", l)]


def test_dirty_arbiter_counts_its_warnings(make_server, sinks):
    """The dirty arbiter keeps the statsd socket: its warnings are counted
    too (it sends nothing else, as gunicorn's)."""
    sink = sinks()
    s = make_server("--dirty-workers", "1", "--dirty-app",
                    "tests.integration.apps.dirty_apps:Echo", "--statsd-host", sink.host,
                    "%s:app" % APP)
    s.wait_log("Dirty arbiter starting", timeout=15)
    arbiter = wait_for(lambda: s.pids_titled("dirty-arbiter"), 15, what="the arbiter")[0]
    before = sink.count("gunicorn.log.warning:1|c|@1.0")
    os.kill(arbiter, signal.SIGTTOU)        # one dirty worker: it cannot go lower
    s.wait_log("SIGTTOU: Cannot decrease below", timeout=15)
    sink.wait("gunicorn.log.warning:1|c|@1.0", count=before + 1)
    assert not [l for l in sink.lines() if "dirty" in l], sink.lines()


# ---- a statsd server that is not there -------------------------------------------

def closed_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.bind(("127.0.0.1", 0))
        return u.getsockname()[1]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_closed_statsd_port_keeps_serving(make_server, kind):
    """Nothing listens there: every sendto's ICMP answer is ignored, no
    request waits or fails, nothing is logged."""
    s = serve(make_server, kind, "-w", "1", "--statsd-host",
              "127.0.0.1:%d" % closed_udp_port())
    for _ in range(30):
        assert http_get(s.port, "/")[0] == 200
    assert http_get(s.port, "/boom")[0] == 500
    log = s.log()
    assert "statsd_host" not in log and "WARNING" not in log, log[-3000:]


@pytest.mark.parametrize("host,said", [
    ("no-such-host.invalid:8125", "cannot resolve no-such-host.invalid"),
    ("unix:/nonexistent-dir/statsd.sock", "cannot connect to the unix socket"),
])
def test_unreachable_statsd_warns_once_and_serves(make_server, host, said):
    s = make_server("-k", "gthread", "-w", "2", "--statsd-host", host, "%s:app" % APP)
    for _ in range(10):
        assert http_get(s.port, "/")[0] == 200
    log = s.log()
    assert log.count("[WARNING] statsd_host %s: %s" % (host, said)) == 1, log[-3000:]
    assert "Traceback" not in log


# ---- bad values ------------------------------------------------------------------

@pytest.mark.parametrize("value,why", [
    ("localhost:abc", "not a valid port number"),
    ("localhost:70000", "not a valid port number"),
    ("localhost:0", "not a valid port number"),
    ("localhost:", "not a valid port number"),
    ("::1:8125", "expected HOST:PORT"),
    ("[::1", "expected [ADDRESS]:PORT"),
    ("fd://3", "a descriptor is no statsd address"),
    ("unix:", "unix: needs a path"),
    ("unix://", "unix: needs a path"),
])
def test_bad_statsd_host_is_a_config_error(tmp_path, value, why):
    (tmp_path / "hello.py").write_text("def app(e, s):\n    return []\n")
    port = free_port()
    rc, out, err, left = run(["-b", "127.0.0.1:%d" % port, "--statsd-host", value,
                              "hello:app"], tmp_path)
    assert rc != 0 and not left
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("Error: Invalid value for statsd_host: %s (" % value), err
    assert why in lines[0], err
    with socket.socket() as sk:         # nothing ever listened there
        sk.bind(("127.0.0.1", port))


@pytest.mark.parametrize("text,needle", [
    ("statsd_host = 'localhost:x'\n", "Invalid value for statsd_host: localhost:x"),
    ("statsd_host = ('localhost', 8125)\n", "statsd_host"),
    ("statsd_prefix = 'a\\nb'\n", "statsd_prefix"),
    ("dogstatsd_tags = 'x' * 3000\n", "dogstatsd_tags"),
    ("dogstatsd_tags = 'caf\\u00e9'\n", "dogstatsd_tags"),
])
def test_bad_values_in_a_config_file(tmp_path, text, needle):
    (tmp_path / "hello.py").write_text("def app(e, s):\n    return []\n")
    (tmp_path / "conf.py").write_text(text)
    rc, out, err, left = run(["--check-config", "-c", "conf.py", "hello:app"], tmp_path)
    assert rc != 0 and not left
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and needle in lines[0], err


def test_print_config_shows_gunicorn_values(tmp_path):
    (tmp_path / "hello.py").write_text("def app(e, s):\n    return []\n")

    def printed(*args):
        rc, out, err, left = run(["--print-config"] + list(args) + ["hello:app"], tmp_path)
        assert rc == 0 and err == "", err
        return {k.strip(): v for k, v in (l.split(" = ", 1) for l in out.splitlines())}

    cfg = printed()
    assert (cfg["statsd_host"], cfg["statsd_prefix"], cfg["dogstatsd_tags"],
            cfg["enable_backlog_metric"]) == ("None", "", "", "False")
    cfg = printed("--statsd-host", "LocalHost:9125", "--statsd-prefix", "p",
                  "--dogstatsd-tags", "a:b", "--enable-backlog-metric")
    assert (cfg["statsd_host"], cfg["statsd_prefix"], cfg["dogstatsd_tags"],
            cfg["enable_backlog_metric"]) == ("('localhost', 9125)", "p", "a:b", "True")
    assert printed("--statsd-host", "[::1]")["statsd_host"] == "('::1', 8125)"
    assert printed("--statsd-host", "unix:///run/dsd.sock")["statsd_host"] == "/run/dsd.sock"
