"""The ASGI worker (-k asgi) through the real binary over raw sockets:
the http scope, receive/send event order, request and response
streaming, keep-alive and pipelining, disconnects, errors, lifespan,
malformed requests, draining on TERM and max_requests."""

import json
import os
import signal

import pytest

from conftest import blocked_signals, http_get, raw_http, start_to_exit, wait_for
from httpraw import (Connection, assert_term_finishes_inflight, leave_mid_stream,
                     assert_worker_connections_backlog, check_expect_100_continue, get,
                     keepalive_clients, seconds_to_idle_close)

APP = "tests.integration.apps.asgi_apps"


def asgi(make_server, app, *extra, **kw):
    return make_server("-k", "asgi", *extra, "%s:%s" % (APP, app), **kw)


def echo(c, req):
    c.send(req)
    status, h, body = c.response()
    assert status == 200, body
    return h, json.loads(body)


def test_scope_fields(make_server):
    s = asgi(make_server, "scope_echo", "--root-path", "/api")
    with Connection(s.port) as c:
        h, got = echo(c, b"GET /a%20b/%C3%A9?x=1&y=%20 HTTP/1.1\r\nHost: example\r\n"
                      b"X-Custom: One\r\nX-Custom: Two\r\n\r\n")
        sc = got["scope"]
        assert sc["type"] == "http"
        assert sc["asgi"]["version"] == "3.0"
        assert sc["http_version"] == "1.1"
        assert sc["method"] == "GET"
        assert sc["scheme"] == "http"
        assert sc["path"] == "/a b/\u00e9"
        assert sc["raw_path"] == "/a%20b/%C3%A9"
        assert sc["query_string"] == "x=1&y=%20"
        assert sc["root_path"] == "/api"
        assert ["host", "example"] in sc["headers"]
        assert ["x-custom", "One"] in sc["headers"] and ["x-custom", "Two"] in sc["headers"]
        assert sc["client"][0] == "127.0.0.1" and sc["client"][1] == c.sock.getsockname()[1]
        assert sc["server"] == ["127.0.0.1", s.port]
        assert got["events"] == [{"type": "http.request", "len": 0, "more_body": False}]
        assert h["server"] == "cunicorn" and "date" in h
        assert h["connection"] == "keep-alive"
    assert "Using worker: asgi" in s.log()


def test_scheme_from_trusted_forwarded_header(make_server):
    s = asgi(make_server, "scope_echo")
    with Connection(s.port) as c:
        _, got = echo(c, get("/", extra=b"X-Forwarded-Proto: https\r\n"))
        assert got["scope"]["scheme"] == "https"
    s2 = asgi(make_server, "scope_echo", "--forwarded-allow-ips", "10.9.9.9")
    with Connection(s2.port) as c:
        _, got = echo(c, get("/", extra=b"X-Forwarded-Proto: https\r\n"))
        assert got["scope"]["scheme"] == "http"


def test_uvicorn_worker_names_run_the_asgi_worker(make_server):
    for name in ("uvicorn.workers.UvicornWorker", "uvicorn.workers.UvicornH11Worker"):
        s = make_server("-k", name, "%s:hello" % APP)
        assert http_get(s.port, "/u")[2] == b"hello /u"
        assert "worker class %s: running cunicorn's asgi worker" % name in s.log()
        assert "Using worker: asgi" in s.log()
        s.stop()


def test_request_body_streams_with_more_body(make_server):
    s = asgi(make_server, "body_steps")
    with Connection(s.port) as c:
        c.send(b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5\r\nhello\r\n")
        assert c._line().startswith(b"HTTP/1.1 200")
        while c._line():
            pass                                  # the head
        c._line()                                 # chunk size
        assert c._line() == b"got 5 more=True\n"  # the app has the first piece
        c.send(b"6\r\n world\r\n0\r\n\r\n")
        rest = b""
        while b"end" not in rest:
            rest += c._line() + b"\n"
        assert b"got 6 more=True" in rest or b"got 6 more=False" in rest
        assert b"more=False" in rest
    s = asgi(make_server, "scope_echo")
    with Connection(s.port) as c:
        big = b"y" * 300000
        c.send(b"POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(big) + big)
        got = json.loads(c.response()[2])
        assert len(got["body"]) == len(big)
        assert len(got["events"]) > 1 and got["events"][-1]["more_body"] is False


def test_response_streams_chunked_and_http10_until_close(make_server):
    s = asgi(make_server, "stream")
    with Connection(s.port) as c:
        c.send(get("/?n=5"))
        status, h, body = c.response()
        assert h["transfer-encoding"] == "chunked"
        assert body == b"".join(b"chunk%d\n" % i for i in range(5))
        assert h["connection"] == "keep-alive"
    out = raw_http(s.port, b"GET /?n=3 HTTP/1.0\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert b"Connection: close" in head and b"chunked" not in head.lower()
    assert body == b"chunk0\nchunk1\nchunk2\n"


def test_keepalive_and_pipelining_in_order(make_server):
    s = asgi(make_server, "scope_echo")
    body = b"z" * 5000
    burst = (get("/one")
             + b"POST /two HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body
             + get("/three")
             + b"PUT /four HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
             + b"3\r\nabc\r\n0\r\n\r\n"
             + get("/five"))
    with Connection(s.port) as c:
        c.send(burst)
        got = [json.loads(c.response()[2]) for _ in range(5)]
        assert [g["scope"]["path"] for g in got] == ["/one", "/two", "/three", "/four", "/five"]
        assert got[1]["body"] == body.decode() and got[3]["body"] == "abc"
        for i in range(20):
            c.send(get("/again%d" % i))
            assert json.loads(c.response()[2])["scope"]["path"] == "/again%d" % i
        assert not c.closed(0.3)


def test_head_and_unread_body(make_server):
    s = asgi(make_server, "hello")
    with Connection(s.port) as c:
        c.send(b"HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n")
        status, h, body = c.response(head_only=True)
        assert status == 200 and h["content-length"] == "8" and body == b""
        # hello never reads the body: it is skipped, the connection lives on
        c.send(b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nabcd" + get("/q"))
        assert c.response()[2] == b"hello /p"
        assert c.response()[2] == b"hello /q"


def test_expect_100_continue(make_server):
    s = asgi(make_server, "scope_echo")
    with Connection(s.port) as c:
        check_expect_100_continue(c, b"abc")


def test_disconnect_mid_stream_reaches_the_app(make_server, tmp_path):
    marker = str(tmp_path / "gone")
    s = asgi(make_server, "until_disconnect", env={"ASGI_MARKER": marker})
    assert leave_mid_stream(s, marker, "http.disconnect in the app") == "http.disconnect"
    with Connection(s.port) as c2:     # the worker serves on
        c2.send(get("/"))
        assert c2.response.__self__._line().startswith(b"HTTP/1.1 200")
    assert "without completing response" not in s.log()


def test_errors_before_and_after_response_start(make_server):
    s = asgi(make_server, "boom")
    with Connection(s.port) as c:
        c.send(get("/early"))
        status, h, body = c.response()
        assert status == 500 and h["connection"] == "close"
        assert c.closed(5)
    with Connection(s.port) as c:
        c.send(get("/late"))
        with pytest.raises(EOFError):   # the chunked body never ends
            c.response()
    with Connection(s.port) as c:
        c.send(get("/none"))
        assert c.response()[0] == 500
    s.wait_log("ValueError: boom")
    s.wait_log("ASGI callable returned without starting response.")
    assert http_get(s.port, "/x")[0] == 500   # still serving


@pytest.mark.parametrize("req,status", [
    (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (b"GET /\x00 HTTP/1.1\r\n\r\n", 400),
    (b"BAD REQUEST LINE\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 9000 + b"\r\n\r\n", 431),
], ids=["cl-and-te", "nul-in-target", "bad-request-line", "huge-field"])
def test_malformed_requests_get_400_and_the_worker_serves_on(make_server, req, status):
    s = asgi(make_server, "hello")
    out = raw_http(s.port, req)
    assert out.startswith(b"HTTP/1.1 %d" % status), out[:200]
    assert b"Connection: close" in out
    assert http_get(s.port, "/ok")[2] == b"hello /ok"


def test_bad_chunked_body_closes_the_connection(make_server):
    s = asgi(make_server, "scope_echo")
    out = raw_http(s.port, b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"zz\r\nabc\r\n0\r\n\r\n")
    assert b"HTTP/1.1 200" not in out
    assert http_get(s.port, "/")[0] == 200


def test_idle_keepalive_connection_closed_after_keepalive(make_server):
    s = asgi(make_server, "hello", "--keep-alive", "1")
    assert 0.5 < seconds_to_idle_close(s.port, 5) < 3.5


def test_slow_head_is_closed_at_its_deadline(make_server):
    s = asgi(make_server, "hello", "-t", "2")   # head deadline: 1 s
    with Connection(s.port) as c:
        c.send(b"GET / HTTP/1.1\r\n")
        assert c.closed(5)
    assert http_get(s.port, "/")[0] == 200


def test_lifespan_state_and_shutdown(make_server, tmp_path):
    marker = str(tmp_path / "shutdown")
    s = asgi(make_server, "lifespan", env={"ASGI_MARKER": marker})
    status, _, body = http_get(s.port, "/")
    assert json.loads(body)["state"] == {"db": "connected"}
    assert "Application startup complete." in s.log()
    assert s.stop() == 0
    with open(marker) as f:
        assert f.read() == "shutdown"
    assert "Application shutdown complete." in s.log()


def test_lifespan_startup_failure_stops_the_boot(make_server):
    code, log, _ = start_to_exit("-k", "asgi", "%s:lifespan" % APP,
                                 env={"ASGI_FAIL_STARTUP": "1"}, timeout=20)
    assert code == 3
    assert "Application startup failed: no database" in log
    assert "Worker failed to boot." in log


def test_lifespan_auto_tolerates_an_app_without_it(make_server):
    s = asgi(make_server, "lifespan_raises")
    assert http_get(s.port, "/a")[2] == b"hello /a"
    assert "ASGI 'lifespan' protocol appears unsupported." in s.log()


def test_lifespan_on_requires_it(make_server):
    code, log, _ = start_to_exit("-k", "asgi", "--asgi-lifespan", "on",
                                 "%s:lifespan_raises" % APP, timeout=20)
    assert code == 3
    assert "lifespan not here" in log


def test_lifespan_off_never_calls_it(make_server):
    s = asgi(make_server, "lifespan", "--asgi-lifespan", "off")
    assert json.loads(http_get(s.port, "/")[2])["state"] == {}
    assert "Waiting for application startup." not in s.log()


def test_asgi_loop_setting(make_server):
    s = asgi(make_server, "hello", "--asgi-loop", "asyncio")
    assert http_get(s.port, "/l")[2] == b"hello /l"
    out = raw_http(s.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200")


def test_term_finishes_inflight_request(make_server, tmp_path):
    s = asgi(make_server, "slow", "--graceful-timeout", "10")
    marker = str(tmp_path / "inside")
    assert_term_finishes_inflight(s, get("/?ms=1"), get("/?ms=1500&mark=" + marker), marker,
                                  body=b"slow done")


def test_max_requests_recycling_drops_nothing(make_server):
    s = asgi(make_server, "hello", "-w", "2", "--max-requests", "7")
    assert keepalive_clients(s.port) == []
    assert s.log().count("Autorestarting worker after current request.") >= 2


@pytest.mark.parametrize("sig,hook,status", [(signal.SIGINT, "worker_int", 0),
                                             (signal.SIGQUIT, "worker_int", 0),
                                             (signal.SIGABRT, "worker_abort", 1)])
def test_worker_signal_hooks(make_server, tmp_path, sig, hook, status):
    """gunicorn's worker signals, as for the WSGI workers: INT and QUIT run
    worker_int, ABRT worker_abort, then worker_exit, in the worker."""
    hook_log = tmp_path / "hooks.jsonl"
    conf = os.path.join(os.path.dirname(__file__), "apps", "wsgi_hooks_conf.py")
    s = asgi(make_server, "hello", "-c", conf, env={"HOOK_LOG": str(hook_log)})

    def lines():
        text = hook_log.read_text() if hook_log.exists() else ""
        return [json.loads(x) for x in text[:text.rfind("\n") + 1].splitlines()]
    worker = wait_for(lambda: s.pids_titled("worker"), 10, what="worker")[0]
    wait_for(lambda: any(h["hook"] == "post_worker_init" and h["pid"] == worker
                         for h in lines()), 10, what="post_worker_init")
    os.kill(worker, sig)
    s.wait_log("Worker exiting (pid: %d)" % worker)
    names = [h["hook"] for h in lines() if h.get("pid") == worker]
    assert names.index(hook) < names.index("worker_exit"), names
    if status:
        s.wait_log("Worker (pid:%d) exited with code %d" % (worker, status))


def test_quit_and_usr1(make_server):
    s = asgi(make_server, "hello")
    http_get(s.port, "/")
    s.send(signal.SIGUSR1)
    assert http_get(s.port, "/")[0] == 200
    assert s.stop(signal.SIGQUIT, 5) == 0


@pytest.mark.parametrize("flag,value", [("--asgi-loop", "trio"), ("--asgi-lifespan", "maybe")])
def test_bad_asgi_setting_fails_the_start(tmp_path, flag, value):
    from conftest import ROOT, run_to_exit
    rc, out, err, left = run_to_exit(["-k", "asgi", flag, value, "%s:hello" % APP], tmp_path,
                                     env_extra={"PYTHONPATH": ROOT})
    assert rc != 0 and "Error:" in err and flag.lstrip("-").replace("-", "_") in err, err
    assert left == []


def test_print_config_shows_the_asgi_settings(tmp_path):
    from conftest import ROOT, run_to_exit
    rc, out, err, left = run_to_exit(["--print-config", "-k", "uvicorn.workers.UvicornWorker",
                                      "--root-path", "/api", "%s:hello" % APP], tmp_path,
                                     env_extra={"PYTHONPATH": ROOT})
    assert rc == 0, err
    assert "asgi_loop" in out and "asgi_lifespan" in out and "/api" in out


def test_access_log(make_server):
    s = asgi(make_server, "hello", "--access-logfile", "-", "--access-logformat",
             '%(h)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(u)s <%({x-trace}i)s> '
             '<%({content-type}o)s> %(m)s %(U)s %(q)s %(H)s %({nope}e)s')
    with Connection(s.port) as c:
        c.send(b"GET /p?a=1 HTTP/1.1\r\nHost: x\r\nReferer: http://r/\r\nUser-Agent: ua/1\r\n"
               b"X-Trace: t1\r\nAuthorization: Basic dXNlcjpwdw==\r\n\r\n")
        c.response()
    s.wait_log('127.0.0.1 "GET /p?a=1 HTTP/1.1" 200 8 "http://r/" "ua/1" user <t1> '
               '<text/plain> GET /p a=1 HTTP/1.1 -')
    s2 = asgi(make_server, "boom", "--access-logfile", "-")
    http_get(s2.port, "/early")
    s2.wait_log('"GET /early HTTP/1.1" 500 0')


def test_reload_replaces_the_worker_with_new_code(make_server, tmp_path):
    app = tmp_path / "reload_asgi_app.py"
    src = ('async def app(scope, receive, send):\n'
           '    if scope["type"] != "http":\n'
           '        return\n'
           '    await send({"type": "http.response.start", "status": 200, "headers": []})\n'
           '    await send({"type": "http.response.body", "body": b"%s"})\n')
    app.write_text(src % "v1")
    s = make_server("-k", "asgi", "--reload", "--chdir", str(tmp_path), "reload_asgi_app:app")
    assert http_get(s.port, "/")[2] == b"v1"
    st = os.stat(app)
    app.write_text(src % "v2")
    os.utime(app, (st.st_atime + 5, st.st_mtime + 5))
    s.wait_log("Worker reloading:", timeout=15)
    wait_for(lambda: http_get(s.port, "/")[2] == b"v2", 15, what="the new code")


def test_worker_connections_leaves_the_rest_in_the_backlog(make_server):
    s = asgi(make_server, "hello", "--worker-connections", "2", "--keep-alive", "30")
    assert_worker_connections_backlog(s.port)


def test_preload_runs_lifespan_in_each_worker(make_server):
    s = asgi(make_server, "lifespan", "--preload", "-w", "2")
    s.wait_log("Application startup complete.", count=2)
    assert json.loads(http_get(s.port, "/")[2])["state"] == {"db": "connected"}


def test_a_process_the_app_starts_has_no_signal_blocked(make_server):
    """The worker takes its signals through handlers (sigpipe.c), not by
    blocking them: a child the app starts must not inherit TERM blocked."""
    s = asgi(make_server, "spawner")
    pid = int(http_get(s.port, "/")[2])
    try:
        blocked = blocked_signals(pid)
        assert blocked == 0, "blocked signals: %x" % blocked
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
