"""Drop-in fidelity of the WSGI side (issue 8 §4): forwarder_headers, CIDR
ranges in forwarded_allow_ips, gunicorn.socket, wsgi.early_hints, Upgrade
responses, invalid-request logging and the 500 answer on a quick stop.
The real binary on a loopback port; apps in apps/dropin_wsgi_apps.py."""
import json
import os
import signal
import socket

import pytest

from conftest import ROOT, free_port, raw_http as raw, read_until_close, wait_for

APPS = os.path.join(ROOT, "tests", "integration", "apps")


def serve(make_server, app, *extra, **kw):
    return make_server("--chdir", APPS, *extra, "dropin_wsgi_apps:" + app, **kw)


def get_env(port, path="/", headers=(), host="127.0.0.1"):
    req = "GET %s HTTP/1.0\r\nHost: h\r\n" % path
    req += "".join("%s: %s\r\n" % kv for kv in headers) + "\r\n"
    resp = raw(port, req.encode(), host=host)
    head, _, body = resp.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == b"200", resp
    return json.loads(body)


# -- 1. forwarder_headers ------------------------------------------------------

def test_forwarder_headers_from_trusted_peer(make_server):
    s = serve(make_server, "environ")
    env = get_env(s.port, "/app/x", [("SCRIPT_NAME", "/app"), ("PATH_INFO", "/y"),
                                     ("X_OTHER", "dropped")])
    assert env["SCRIPT_NAME"] == "/app"
    assert env["PATH_INFO"] == "/x"
    # as gunicorn: both also appear as HTTP_ keys; PATH_INFO comes from the path
    assert env["HTTP_SCRIPT_NAME"] == "/app"
    assert env["HTTP_PATH_INFO"] == "/y"
    assert "HTTP_X_OTHER" not in env
    # a SCRIPT_NAME the path does not start with is refused
    resp = raw(s.port, b"GET /other HTTP/1.0\r\nSCRIPT_NAME: /app\r\n\r\n")
    assert resp.split(b" ")[1] == b"400" and b"does not start with SCRIPT_NAME" in resp


def test_forwarder_headers_ignored_from_untrusted_peer(make_server):
    s = serve(make_server, "environ", "--forwarded-allow-ips", "10.9.9.9")
    env = get_env(s.port, "/app/x", [("SCRIPT_NAME", "/app"), ("PATH_INFO", "/y")])
    assert env["SCRIPT_NAME"] == ""
    assert env["PATH_INFO"] == "/app/x"
    assert "HTTP_SCRIPT_NAME" not in env and "HTTP_PATH_INFO" not in env


def test_forwarder_headers_setting(make_server):
    s = serve(make_server, "environ", "--forwarder-headers", "REMOTE_USER")
    env = get_env(s.port, "/app/x", [("SCRIPT_NAME", "/app"), ("Remote_User", "bob")])
    assert env["HTTP_REMOTE_USER"] == "bob"
    assert env["SCRIPT_NAME"] == "" and "HTTP_SCRIPT_NAME" not in env
    assert "forwarder_headers" not in s.log()   # honoured: no "not supported" warning


# -- 2. CIDR ranges in forwarded_allow_ips --------------------------------------

@pytest.mark.parametrize("allow,trusted", [
    ("127.0.0.0/8", True), ("127.0.0.1/32", True), ("10.0.0.0/8", False),
    ("10.0.0.0/8, 127.0.0.0/24", True), ("127.0.0.2", False), ("0.0.0.0/0", True),
])
def test_forwarded_allow_ips_ipv4_cidr(make_server, allow, trusted):
    s = serve(make_server, "environ", "--forwarded-allow-ips", allow)
    env = get_env(s.port, headers=[("X-Forwarded-Proto", "https")])
    assert env["wsgi.url_scheme"] == ("https" if trusted else "http")


def _has_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6) as t:
            t.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback")
@pytest.mark.parametrize("allow,trusted", [
    ("::1/128", True), ("::/0", True), ("fe80::/10", False), ("127.0.0.0/8", False),
])
def test_forwarded_allow_ips_ipv6_cidr(make_server, allow, trusted):
    port = free_port()
    s = serve(make_server, "environ", "-b", "[::1]:%d" % port,
              "--forwarded-allow-ips", allow, port=port, bind=False)
    env = get_env(port, headers=[("X-Forwarded-Proto", "https")], host="::1")
    assert env["wsgi.url_scheme"] == ("https" if trusted else "http")


# -- 3. gunicorn.socket and wsgi.early_hints ----------------------------------

def _worker_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


@pytest.mark.parametrize("worker", [(), ("-k", "gthread", "--threads", "2")])
def test_gunicorn_socket(make_server, worker):
    s = serve(make_server, "sock", *worker)
    with socket.create_connection(("127.0.0.1", s.port)) as c:
        c.sendall(b"GET / HTTP/1.0\r\n\r\n")
        resp = read_until_close(c)
        mine = list(c.getsockname()[:2])
    out = json.loads(resp.partition(b"\r\n\r\n")[2])
    assert out["isinstance"]
    assert out["peer"] == mine
    # reused, not made (nor an fd dup'd) per request; kept ones are detached
    fds = None
    for i in range(30):
        out = get_env(s.port, "/" + ("?keep=1" if i % 3 == 0 else ""))
        if i == 5:
            fds = _worker_fds(out["pid"])
    assert _worker_fds(out["pid"]) == fds
    kept = get_env(s.port, "/kept")
    assert kept["fds"] and all(fd == -1 for fd in kept["fds"])
    # an app closing it gives the fd back: the response still goes out,
    # and the next request gets a live socket
    out = get_env(s.port, "/?close=1")
    assert out["closed_fd"] == -1
    out = get_env(s.port, "/")
    assert out["fd"] >= 0 and "closed_fd" not in out
    assert _worker_fds(out["pid"]) == fds


def test_environ_has_socket_and_early_hints(make_server):
    s = make_server("--chdir", APPS, "dropin_wsgi_apps:environ")
    env = get_env(s.port)
    assert env["gunicorn.socket"] == "<ClientSocket>"
    assert env["wsgi.early_hints"].startswith("<")


def test_early_hints_http11(make_server):
    s = serve(make_server, "hints")
    resp = raw(s.port, b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    parts = resp.split(b"\r\n\r\n")
    assert parts[0] == (b"HTTP/1.1 103 Early Hints\r\n"
                        b"Link: </style.css>; rel=preload; as=style")
    assert parts[1] == (b"HTTP/1.1 103 Early Hints\r\n"
                        b"Link: </app.js>; rel=preload; as=script\r\nX-Hint: two")
    assert parts[2].startswith(b"HTTP/1.1 200 OK\r\n")
    assert parts[3] == b'{"ok": true}'


def test_early_hints_noop_on_http10(make_server):
    s = serve(make_server, "hints", "-k", "gthread", "--threads", "2")
    resp = raw(s.port, b"GET / HTTP/1.0\r\n\r\n")
    assert resp.startswith(b"HTTP/1.0 200 OK\r\n") and b"103" not in resp
    assert resp.endswith(b'{"ok": true}')


# -- 4. Upgrade responses --------------------------------------------------------

def _head(resp):
    head = resp.partition(b"\r\n\r\n")[0].split(b"\r\n")
    return head[0], [tuple(h.decode().split(": ", 1)) for h in head[1:]]


@pytest.mark.parametrize("worker", [(), ("-k", "gthread", "--threads", "2")])
def test_websocket_upgrade_headers_pass(make_server, worker):
    s = serve(make_server, "upgrade", *worker)
    resp = raw(s.port, b"GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\n"
                       b"Upgrade: websocket\r\n\r\n")
    status, headers = _head(resp)
    assert status == b"HTTP/1.1 101 Switching Protocols"
    assert ("Upgrade", "websocket") in headers
    assert [v for k, v in headers if k == "Connection"] == ["upgrade"]
    assert not any(k.lower() == "transfer-encoding" for k, v in headers)


def test_other_upgrade_values_dropped_as_gunicorn(make_server):
    s = serve(make_server, "upgrade_200")
    resp = raw(s.port, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    status, headers = _head(resp)
    assert status == b"HTTP/1.1 200 OK"
    assert not any(k.lower() == "upgrade" for k, v in headers)
    assert [v for k, v in headers if k == "Connection"] == ["upgrade"]
    assert resp.endswith(b"\r\n\r\nok")


# -- 5. logging --------------------------------------------------------------------

@pytest.mark.parametrize("worker", [(), ("-k", "gthread", "--threads", "2")])
def test_invalid_request_logged_at_warning(make_server, worker):
    s = serve(make_server, "environ", *worker)
    resp = raw(s.port, b"GET / HTTP/1.1\r\nBad Header\r\n\r\n")
    assert resp.split(b" ")[1] == b"400"
    s.wait_log("[WARNING] Invalid request from ip=127.0.0.1:")
    # refused by the WSGI glue (SCRIPT_NAME not a prefix of the path)
    resp = raw(s.port, b"GET /x HTTP/1.0\r\nSCRIPT_NAME: /app\r\n\r\n")
    assert resp.split(b" ")[1] == b"400"
    s.wait_log("[WARNING] Invalid request from ip=127.0.0.1:", count=2)


def test_debug_request_line(make_server):
    s = serve(make_server, "environ", "--log-level", "debug")
    get_env(s.port, "/some/path?q=1")
    s.wait_log("[DEBUG] GET /some/path\n")


# -- 6. a quick stop with a request in flight answers 500 ------------------------

@pytest.mark.parametrize("worker", [(), ("-k", "gthread", "--threads", "2")])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGQUIT, signal.SIGABRT])
def test_quick_stop_answers_500_in_flight(make_server, tmp_path, sig, worker):
    s = serve(make_server, "slow", *worker)
    mark = str(tmp_path / "in-app")
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as c:
        c.sendall(b"GET /?mark=" + mark.encode() + b" HTTP/1.1\r\nHost: h\r\n\r\n")
        wait_for(lambda: os.path.exists(mark), what="the app running")
        with open(mark) as f:
            worker = int(f.read())
        os.kill(worker, sig)
        resp = read_until_close(c)
    assert resp.startswith(b"HTTP/1.1 500 Internal Server Error\r\n"), resp
    assert b"Connection: close" in resp


def test_worker_timeout_answers_500_in_flight(make_server, tmp_path):
    """sync only: gthread's heartbeat is its loop's, which a busy app does
    not stop (as in gunicorn); the master's ABRT is covered above."""
    s = serve(make_server, "slow", "--timeout", "1")
    mark = str(tmp_path / "in-app")
    resp = raw(s.port, b"GET /?mark=" + mark.encode() + b" HTTP/1.1\r\nHost: h\r\n\r\n",
               timeout=20)
    assert resp.startswith(b"HTTP/1.1 500 Internal Server Error\r\n"), resp
    s.wait_log("WORKER TIMEOUT")
