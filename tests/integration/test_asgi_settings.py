"""gunicorn's settings around a request on the asgi worker:
pre_request/post_request hooks (HTTP requests, as gunicorn's asgi worker;
a hook that raises is logged and the request goes on) and
asgi_disconnect_grace_period (after the client leaves, the app's task has
that long to finish, then it is cancelled; 0 cancels at once)."""

import json
import os
import socket

from conftest import ROOT, http_get, wait_for

APPS = "tests.integration.apps.asgi_hooks_apps"
CONF = os.path.join(ROOT, "tests", "integration", "apps", "asgi_hooks_conf.py")


def hook_lines(path):
    try:
        with open(path) as f:
            return [json.loads(l) for l in f if l.strip()]
    except FileNotFoundError:
        return []


def test_request_hooks(make_server, tmp_path):
    log = tmp_path / "hooks.jsonl"
    s = make_server("-k", "asgi", "-c", CONF, "%s:hello" % APPS, env={"HOOK_LOG": str(log)})
    status, _, body = http_get(s.port, "/hp?z=9", headers={"X-H": "1"})[:3]
    assert body == b"hi /hp"
    lines = wait_for(lambda: (lambda r: r if len(r) >= 2 else None)(hook_lines(log)), 10,
                     what="hook log")
    pre, post = lines[:2]
    assert pre["hook"] == "pre" and pre["method"] == "GET" and pre["path"] == "/hp"
    assert pre["query"] == "z=9" and pre["uri"] == "/hp?z=9" and pre["version"] == [1, 1]
    assert ["X-H", "1"] in pre["headers"] and pre["pid"] in s.pids_titled("worker")
    assert post["hook"] == "post" and post["path"] == "/hp"
    assert post["env_path"] == "/hp" and post["env_method"] == "GET"
    assert post["env_x"] == "1" and post["env_remote"] == "127.0.0.1"
    assert post["status"] == 201 and post["status_code"] == 201
    assert ["x-app", "yes"] in post["headers"] and post["sent"] == 6

    # a pre_request that raises: logged, and the request is still served
    assert http_get(s.port, "/raise")[2] == b"hi /raise"
    s.wait_log("Exception in pre_request hook")
    s.wait_log("pre_request refuses")
    wait_for(lambda: any(h["hook"] == "post" and h["path"] == "/raise"
                         for h in hook_lines(log)), 10, what="post_request of /raise")
    # one pre and one post per request
    assert [h["hook"] for h in hook_lines(log)] == ["pre", "post", "pre", "post"]


def leave_mid_stream(port, path):
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while b"first" not in data:
        d = sock.recv(4096)
        assert d, data
        data += d
    sock.close()


def test_disconnect_grace_period(make_server, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    env = {"MARK_DIR": str(marks)}
    # the default (3 s): an app that cleans up after the disconnect may finish
    s = make_server("-k", "asgi", "%s:lingers" % APPS, env=env)
    leave_mid_stream(s.port, "/polite")
    wait_for(lambda: (marks / "cleaned").exists(), 10, what="the app's cleanup")
    # one that never returns is cancelled once the grace period is over
    leave_mid_stream(s.port, "/stubborn")
    wait_for(lambda: (marks / "cancelled").exists(), 15,
             what="cancellation after 3 s; log:\n" + s.log()[-3000:])
    assert (marks / "cancelled").read_text() == "/stubborn"
    assert "Exception in ASGI application" not in s.log()
    leave_mid_stream(s.port, "/again")       # the worker serves on


def test_disconnect_grace_period_zero_cancels_at_once(make_server, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    s = make_server("-k", "asgi", "--asgi-disconnect-grace-period", "0",
                    "%s:lingers" % APPS, env={"MARK_DIR": str(marks)})
    leave_mid_stream(s.port, "/polite")
    wait_for(lambda: (marks / "cancelled").exists(), 10, what="cancellation")
    assert (marks / "cancelled").read_text() == "/polite"
    assert not (marks / "cleaned").exists()     # cancelled in its cleanup sleep
    assert "Exception in ASGI application" not in s.log()


def test_grace_period_is_a_setting(make_server, tmp_path):
    import subprocess
    from conftest import BINARY
    out = subprocess.run([BINARY, "--print-config", "-k", "asgi",
                          "--asgi-disconnect-grace-period", "7", "%s:hello" % APPS],
                         cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "asgi_disconnect_grace_period" in out.stdout and "7" in out.stdout
    assert "not supported" not in out.stderr and "ignored" not in out.stderr
    bad = subprocess.run([BINARY, "--check-config", "--asgi-disconnect-grace-period", "-1",
                          "%s:hello" % APPS], cwd=ROOT, capture_output=True, text=True,
                         timeout=30)
    assert bad.returncode != 0
