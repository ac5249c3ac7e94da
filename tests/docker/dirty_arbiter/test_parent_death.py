"""The seed's manual verification, through Compose: build the image with
`docker compose` (Docker) or `podman-compose` (Podman, configured by
scripts/podman-env.sh), start the service with its published port, check
it answers from the host, SIGKILL the master inside and watch the whole
tree go, read the logs, restart it with `exec sh -c "gunicorn ... &"` (as
gunicorn's own tests do) and see it serve, tear everything down.

Every lifecycle scenario (parent death, orphan cleanup, respawn, graceful
and quick stops, nothing left behind) runs in tests/lifecycle/ against both
the PID-namespace sandbox and a container built from this directory's
Dockerfile; this file checks that the Compose setup a user would run works.
It never skips: no engine means a failure saying why.
"""

import os
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "lifecycle"))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

import harness  # noqa: E402
from conftest import free_port  # noqa: E402


class Compose:
    def __init__(self):
        try:
            eng, env = harness.engine()
        except harness.BackendUnavailable as e:
            pytest.fail("no container engine: %s" % e, pytrace=False)
        self.eng = eng
        self.env = dict(env)
        self.port = free_port()
        self.env["DIRTY_ARBITER_PORT"] = str(self.port)
        self.project = "cunicornda" + uuid.uuid4().hex[:8]
        if eng[0] == "docker":
            self.cmd = ["docker", "compose", "-p", self.project]
        else:
            self.cmd = ["podman-compose", "-p", self.project]
        self.cid = None

    def run(self, *args, timeout=1200):
        return subprocess.run(self.cmd + list(args), cwd=HERE, env=self.env,
                              capture_output=True, text=True, timeout=timeout)

    def engine(self, *args, timeout=60):
        return subprocess.run(self.eng + list(args), env=self.env, capture_output=True,
                              text=True, timeout=timeout)

    def up(self):
        r = self.run("build")
        assert r.returncode == 0, "compose build failed:\n%s" % (r.stdout + r.stderr)[-4000:]
        r = self.run("up", "-d")
        assert r.returncode == 0, "compose up failed:\n%s" % (r.stdout + r.stderr)[-4000:]
        r = self.engine("ps", "-q", "--filter", "label=com.docker.compose.project=" + self.project)
        ids = r.stdout.split()
        assert len(ids) == 1, "expected one container of project %s: %r" % (self.project, r.stdout)
        self.cid = ids[0]

    def exec(self, *argv):
        return self.engine("exec", self.cid, *argv)

    def logs(self):
        r = self.engine("logs", self.cid)
        return r.stdout + r.stderr

    def pids(self):
        out = {"master": [], "dirty-arbiter": [], "worker": [], "dirty-worker": []}
        for line in self.exec("ps", "-eo", "pid=,stat=,args=").stdout.splitlines():
            pid, stat, args = line.split(None, 2)
            if stat.startswith("Z"):
                continue
            for role, title in harness.TITLES.items():
                if args.startswith(title + " "):
                    out[role].append(int(pid))
        return out

    def down(self):
        self.run("down", timeout=120)
        if self.cid:
            self.engine("rm", "-f", self.cid)
        if self.eng[0] == "podman":
            # podman-compose leaves the project's network behind.
            self.engine("network", "rm", self.project + "_default")


@pytest.fixture
def compose():
    c = Compose()
    try:
        c.up()
        yield c
    finally:
        if c.cid:
            print("=== container logs ===\n" + c.logs()[-6000:])
        c.down()


def wait(pred, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    return pred()


def test_compose_service_parent_sigkill(compose):
    # Ready: master and dirty arbiter titled as gunicorn's, port published.
    p = wait(lambda: (lambda p: p if p["master"] and p["dirty-arbiter"] else None)(compose.pids()), 60)
    assert p, "gunicorn did not start: %s\n%s" % (compose.pids(), compose.logs()[-3000:])

    def host_get():
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/dirty/ping" % compose.port, timeout=5) as r:
                return r.status, r.read().decode()
        except OSError:
            return None
    got = wait(host_get, 30)
    assert got and got[0] == 200 and '"pong": true' in got[1], got

    # The seed: kill -9 the master, then no gunicorn process remains.
    # As the README does it: pgrep in one exec, kill in another (a shell
    # running both would match its own command line).
    r = compose.exec("pgrep", "-f", "gunicorn: master")
    assert r.returncode == 0 and r.stdout.split() == [str(p["master"][0])], r
    r = compose.exec("kill", "-9", r.stdout.strip())
    assert r.returncode == 0, r.stderr
    # polled through `exec ps` (slow on a loaded machine); tests/lifecycle
    # times this from inside
    gone = wait(lambda: not any(compose.pids().values()), 15)
    assert gone, "processes survived the master: %s" % compose.pids()
    # written before the arbiter exited; the container's log may lag
    assert wait(lambda: "Parent changed, shutting down dirty arbiter" in compose.logs(), 10), \
        compose.logs()[-3000:]
    # Nothing holds the published port any more.
    assert host_get() is None

    # Restarted as gunicorn's own container tests do it: the exec session
    # ends as soon as sh does, and the server logs into its closed pipe.
    r = compose.exec("sh", "-c", "gunicorn app:application -c gunicorn_conf.py &")
    assert r.returncode == 0, r
    p2 = wait(lambda: (lambda p: p if p["master"] and p["dirty-worker"] else None)(compose.pids()), 60)
    assert p2, "no restart: %s\n%s" % (compose.pids(), compose.logs()[-3000:])
    got = wait(host_get, 30)
    assert got and got[0] == 200 and '"pong": true' in got[1], got
    for _ in range(3):
        assert host_get()[0] == 200
    assert compose.pids()["master"] == p2["master"], compose.pids()
