"""The sync worker's WSGI glue (PEP 3333), end to end: the real binary on a
free loopback port, real sockets, apps from tests/integration/apps/wsgi_apps.py
that report what they were given."""
import base64
import hashlib
import json
import os
import re
import signal
import socket
import threading
import time

import pytest

from conftest import (ROOT, accepted, has_open, http_get, pid_alive, raw_http as raw,
                      read_until_close, wait_for)

APPS = os.path.join(ROOT, "tests", "integration", "apps")


def serve(make_server, app, *extra, **kw):
    return make_server("--chdir", APPS, *extra, "wsgi_apps:" + app, **kw)


# -- raw HTTP helpers ----------------------------------------------------------

def dechunk(body):
    """Decode a chunked body; returns (data, complete)."""
    out = b""
    while True:
        i = body.find(b"\r\n")
        if i < 0:
            return out, False
        size = int(body[:i].split(b";")[0], 16)
        if size == 0:
            return out, body[i + 2:].startswith(b"\r\n") or b"\r\n" in body[i + 2:]
        chunk = body[i + 2:i + 2 + size]
        if len(chunk) < size or body[i + 2 + size:i + 4 + size] != b"\r\n":
            return out + chunk, False
        out += chunk
        body = body[i + 4 + size:]


def parse(resp):
    """(status, [(name, value)], body as received, decoded body)."""
    head, _, body = resp.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers = []
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        headers.append((k.decode().lower(), v.strip().decode("latin-1")))
    decoded = body
    if ("transfer-encoding", "chunked") in headers:
        decoded, _ = dechunk(body)
    return status, headers, body, decoded


def hget(headers, name):
    vals = [v for k, v in headers if k == name]
    return vals[-1] if vals else None


def get_json(port, path, **kw):
    status, headers, body = http_get(port, path, **kw)
    assert status == 200, body
    return json.loads(body)


def slow_in_background(port, seconds, tmp_path, result=None):
    """GET /?t=SECONDS (app "slow") from a thread; returns once the worker
    is inside the app (it creates a marker file there).  The response, or
    the exception, goes to result["r"]."""
    mark = tmp_path / ("inside-%s" % os.urandom(4).hex())
    result = {} if result is None else result

    def client():
        try:
            result["r"] = http_get(port, "/?t=%s&mark=%s" % (seconds, mark), timeout=seconds + 15)
        except Exception as e:   # noqa: BLE001 - the test decides what it expects
            result["r"] = e

    t = threading.Thread(target=client, daemon=True)
    t.start()
    wait_for(mark.exists, 10, what="the request inside the app")
    return t, result


# -- environ -------------------------------------------------------------------

def test_environ_contents(make_server):
    s = serve(make_server, "environ")
    with socket.create_connection(("127.0.0.1", s.port)) as c:
        local_port = c.getsockname()[1]
        c.sendall(b"POST /some/path?a=1&b=two HTTP/1.1\r\nHost: example.org:1234\r\n"
                  b"X-Custom: hello\r\nX-Dup: a\r\nX-Dup: b\r\nX_Under: dropped\r\n"
                  b"Content-Type: text/x-test\r\nContent-Length: 3\r\n\r\nabc")
        resp = read_until_close(c)
    status, headers, _, body = parse(resp)
    assert status == 200
    env = json.loads(body)
    assert env["REQUEST_METHOD"] == "POST"
    assert env["PATH_INFO"] == "/some/path"
    assert env["QUERY_STRING"] == "a=1&b=two"
    assert env["RAW_URI"] == "/some/path?a=1&b=two"
    assert env["SCRIPT_NAME"] == ""
    assert env["SERVER_NAME"] == "127.0.0.1"
    assert env["SERVER_PORT"] == str(s.port)
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["SERVER_SOFTWARE"].startswith("cunicorn/")
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["REMOTE_PORT"] == str(local_port)
    assert env["CONTENT_TYPE"] == "text/x-test"
    assert env["CONTENT_LENGTH"] == "3"
    assert "HTTP_CONTENT_TYPE" not in env and "HTTP_CONTENT_LENGTH" not in env
    assert env["HTTP_HOST"] == "example.org:1234"
    assert env["HTTP_X_CUSTOM"] == "hello"
    assert env["HTTP_X_DUP"] == "a,b"
    assert not any("UNDER" in k for k in env), "headers with '_' must be dropped"
    assert env["wsgi.version"] == [1, 0]
    assert env["wsgi.url_scheme"] == "http"
    assert env["wsgi.multithread"] is False
    assert env["wsgi.multiprocess"] is False
    assert env["wsgi.run_once"] is False
    assert env["wsgi.input_terminated"] is True
    assert env["_errors_has_write"] and env["_input_has_read"]
    assert "wsgi.file_wrapper" in env
    assert hget(headers, "connection") == "close"
    assert hget(headers, "server") and hget(headers, "date")


def test_multiprocess_and_http10(make_server):
    s = serve(make_server, "environ", "-w", "2")
    resp = raw(s.port, b"GET /x HTTP/1.0\r\n\r\n")
    assert resp.startswith(b"HTTP/1.0 200 ")
    env = json.loads(parse(resp)[3])
    assert env["wsgi.multiprocess"] is True
    assert env["SERVER_PROTOCOL"] == "HTTP/1.0"


def test_path_info_is_percent_decoded_latin1(make_server):
    s = serve(make_server, "environ")
    resp = raw(s.port, b"GET /caf%C3%A9/a%2Fb/%zz%4?q=%20x HTTP/1.1\r\nHost: h\r\n\r\n")
    env = json.loads(parse(resp)[3])
    assert env["PATH_INFO"] == b"/caf\xc3\xa9/a/b/%zz%4".decode("latin-1")
    assert env["RAW_URI"] == "/caf%C3%A9/a%2Fb/%zz%4?q=%20x"
    assert env["QUERY_STRING"] == "q=%20x"


def test_query_string_empty_and_fragment(make_server):
    s = serve(make_server, "environ")
    env = json.loads(parse(raw(s.port, b"GET /p HTTP/1.1\r\nHost: h\r\n\r\n"))[3])
    assert env["QUERY_STRING"] == ""
    env = json.loads(parse(raw(s.port, b"GET /p?x=1&y=%41 HTTP/1.1\r\nHost: h\r\n\r\n"))[3])
    assert env["QUERY_STRING"] == "x=1&y=%41"


def test_script_name_from_environment(make_server):
    s = serve(make_server, "environ", env={"SCRIPT_NAME": "/app"})
    env = get_json(s.port, "/app/foo/bar")
    assert env["SCRIPT_NAME"] == "/app"
    assert env["PATH_INFO"] == "/foo/bar"
    status, _, body = http_get(s.port, "/other")
    assert status == 400
    assert b"does not start with SCRIPT_NAME" in body
    # the worker keeps serving
    assert get_json(s.port, "/app/")["PATH_INFO"] == "/"


def test_url_scheme_from_trusted_proxy_only(make_server):
    s = serve(make_server, "environ")
    env = get_json(s.port, "/", headers={"X-Forwarded-Proto": "https"})
    assert env["wsgi.url_scheme"] == "https"
    env = get_json(s.port, "/", headers={"X-Forwarded-Proto": "http"})
    assert env["wsgi.url_scheme"] == "http"
    resp = raw(s.port, b"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-Proto: https\r\n"
                       b"X-Forwarded-Ssl: off\r\n\r\n")
    assert parse(resp)[0] == 400 and b"Contradictory scheme headers" in resp

    s2 = serve(make_server, "environ", "--forwarded-allow-ips", "10.9.9.9")
    env = get_json(s2.port, "/", headers={"X-Forwarded-Proto": "https"})
    assert env["wsgi.url_scheme"] == "http"


# -- wsgi.input ----------------------------------------------------------------

BODY = b"line one\nline two\n\nlast line without newline"


@pytest.mark.parametrize("mode,expect", [
    ("read", [BODY]),
    ("readn", [BODY[i:i + 5] for i in range(0, len(BODY), 5)]),
    ("readline", BODY.splitlines(keepends=True)),
    ("readlines", BODY.splitlines(keepends=True)),
    ("iter", BODY.splitlines(keepends=True)),
])
@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_input_reads(make_server, mode, expect, framing):
    s = serve(make_server, "body")
    path = "/?mode=%s&n=5" % mode
    if framing == "length":
        req = (b"POST %s HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n"
               % (path.encode(), len(BODY))) + BODY
    else:
        chunked = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(BODY[i:i + 7]), BODY[i:i + 7])
                           for i in range(0, len(BODY), 7))
        req = (b"POST %s HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
               % path.encode()) + chunked + b"0\r\nX-Trailer: t\r\nX-Other: u\r\n\r\n"
    status, _, _, body = parse(raw(s.port, req))
    assert status == 200, body
    got = json.loads(body)
    assert [p.encode("latin-1") for p in got["pieces"]] == expect
    assert got["extra"] == ""


def test_readline_with_limit(make_server):
    s = serve(make_server, "body")
    status, _, body = http_get(s.port, "/?mode=readline_limit&n=4", method="POST",
                               body=b"abcdefghij\nxy\n")
    assert [p for p in json.loads(body)["pieces"]] == ["abcd", "efgh", "ij\n", "xy\n"]


def test_body_arriving_slowly_in_pieces(make_server):
    s = serve(make_server, "body")
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as c:
        c.sendall(b"POST /?mode=readline HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
        for piece in (b"4\r\nab\nc\r\n", b"3\r", b"\nde\n", b"\r\n0\r\n", b"\r\n"):
            time.sleep(0.05)
            c.sendall(piece)
        resp = read_until_close(c)
    got = json.loads(parse(resp)[3])
    assert got["pieces"] == ["ab\n", "cde\n"]


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_big_body_sha(make_server, framing):
    s = serve(make_server, "sha")
    data = os.urandom(3 * 1024 * 1024 + 17)
    if framing == "length":
        req = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % len(data) + data
    else:
        step = 100000
        req = (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" +
               b"".join(b"%x\r\n%s\r\n" % (len(data[i:i + step]), data[i:i + step])
                        for i in range(0, len(data), step)) + b"0\r\n\r\n")
    got = json.loads(parse(raw(s.port, req))[3])
    assert got == {"len": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def test_expect_100_continue_sent_when_app_reads(make_server):
    s = serve(make_server, "body")
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as c:
        c.sendall(b"POST /?mode=read HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        interim = c.recv(1024)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        c.sendall(b"hello")
        resp = read_until_close(c)
    assert json.loads(parse(resp)[3])["pieces"] == ["hello"]


def test_no_100_continue_when_app_does_not_read(make_server):
    s = serve(make_server, "unread")
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as c:
        c.sendall(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        resp = read_until_close(c)
    assert resp.startswith(b"HTTP/1.1 413 "), resp[:100]
    assert b"100 Continue" not in resp
    assert resp.endswith(b"too big!")


def test_unread_body_still_gets_the_response(make_server):
    s = serve(make_server, "unread")
    status, _, body = http_get(s.port, "/", method="POST", body=b"z" * (512 * 1024))
    assert status == 413 and body == b"too big!"
    # and the worker serves the next one
    status, _, body = http_get(s.port, "/")
    assert status == 413


# -- responses -----------------------------------------------------------------

def test_write_callable(make_server):
    s = serve(make_server, "writer")
    status, headers, body, decoded = parse(raw(s.port, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"))
    assert status == 200
    assert hget(headers, "transfer-encoding") == "chunked"
    assert decoded == b"one,two,three"
    assert dechunk(body)[1], "the response must end with the last chunk"


@pytest.mark.parametrize("worker", [[], ["-k", "gthread", "--threads", "2"]],
                         ids=["sync", "gthread"])
def test_objects_kept_past_their_request_fail_cleanly(make_server, worker):
    """start_response, write, wsgi.input and wsgi.early_hints belong to
    their request: kept by the app, they fail (or read nothing) in a later
    request instead of touching it, and another thread of the app cannot
    use the running request's."""
    s = serve(make_server, "kept", *worker)
    for _ in range(3):
        status, _, body = http_get(s.port, "/?step=keep", method="POST", body=b"first body")
        assert (status, body) == (200, b"kept")
        r = get_json(s.port, "/?step=use", method="POST", body=b"second body")
        assert r == {
            "kept_input_read": "", "kept_input_readline": "",
            "kept_start_response": "RuntimeError", "kept_write": "RuntimeError",
            "kept_early_hints": "RuntimeError",
            "thread_input_read": "", "thread_start_response": "RuntimeError",
            "thread_early_hints": "RuntimeError",
            "own_body": "second body",
        }


def test_chunked_response_and_http10_close_delimited(make_server):
    s = serve(make_server, "chunks")
    status, headers, body, decoded = parse(raw(s.port, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"))
    assert hget(headers, "transfer-encoding") == "chunked"
    assert body == b"6\r\nalpha-\r\n5\r\nbeta-\r\n5\r\ngamma\r\n0\r\n\r\n"
    resp = raw(s.port, b"GET / HTTP/1.0\r\n\r\n")
    status, headers, body, _ = parse(resp)
    assert resp.startswith(b"HTTP/1.0 200")
    assert hget(headers, "transfer-encoding") is None
    assert hget(headers, "content-length") is None
    assert body == b"alpha-beta-gamma"


def test_list_response_gets_content_length(make_server):
    s = serve(make_server, "head")
    status, headers, body, _ = parse(raw(s.port, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"))
    assert status == 200
    assert body == b"the body that HEAD must not get"
    assert hget(headers, "content-length") == str(len(body))


def test_head_sends_no_body(make_server):
    s = serve(make_server, "head")
    resp = raw(s.port, b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n")
    status, headers, body, _ = parse(resp)
    assert status == 200
    assert body == b""
    assert hget(headers, "x-method") == "HEAD"
    assert hget(headers, "content-length") == "31"
    s2 = serve(make_server, "chunks")
    status, headers, body, _ = parse(raw(s2.port, b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n"))
    assert status == 200 and body == b""
    assert hget(headers, "transfer-encoding") is None


def test_iterable_close_is_called(make_server, tmp_path):
    s = serve(make_server, "closing")
    marker = tmp_path / "marker"
    status, _, body = http_get(s.port, "/?marker=%s" % marker)
    assert status == 200 and body == b"abc"
    wait_for(lambda: marker.exists() and marker.read_text() == "closed\n", 5, what="close()")


def test_iterable_close_called_on_error_after_headers(make_server, tmp_path):
    s = serve(make_server, "closing")
    marker = tmp_path / "marker"
    resp = raw(s.port, b"GET /?marker=%s&fail_at=1 HTTP/1.1\r\nHost: h\r\n\r\n" % str(marker).encode())
    status, headers, body, _ = parse(resp)
    assert status == 200
    data, complete = dechunk(body)
    assert data == b"a" and not complete, "an error after the headers must cut the response"
    wait_for(lambda: marker.exists() and marker.read_text() == "closed\n", 5, what="close()")
    s.wait_log("iteration failed on purpose")
    assert http_get(s.port, "/?marker=%s" % marker)[0] == 200


def test_iterable_close_called_on_error_before_headers(make_server, tmp_path):
    s = serve(make_server, "closing_raise_before")
    marker = tmp_path / "marker"
    status, _, body = http_get(s.port, "/?marker=%s" % marker)
    assert status == 500
    assert b"Internal Server Error" in body
    wait_for(lambda: marker.exists() and marker.read_text() == "closed\n", 5, what="close()")


def test_sendfile_5mb_byte_exact(make_server, tmp_path):
    s = serve(make_server, "sendfile")
    data = os.urandom(5 * 1024 * 1024 + 3)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    status, headers, body = http_get(s.port, "/?path=%s" % path)
    assert status == 200
    assert headers["content-length"] == str(len(data))
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(data).hexdigest()
    # an explicit Content-Length limits what is sent
    status, headers, body = http_get(s.port, "/?path=%s&cl=1000" % path)
    assert body == data[:1000]
    # HEAD: headers only
    resp = raw(s.port, b"HEAD /?path=%s HTTP/1.1\r\nHost: h\r\n\r\n" % str(path).encode())
    st, hd, b, _ = parse(resp)
    assert st == 200 and b == b"" and hget(hd, "content-length") == str(len(data))


def test_file_wrapper_without_fileno_is_iterated(make_server):
    s = serve(make_server, "filelike")
    status, headers, body = http_get(s.port, "/")
    assert status == 200
    assert body == b"x" * 20000 + b"END"


def test_content_length_caps_the_body(make_server):
    s = serve(make_server, "too_long")
    resp = raw(s.port, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    status, headers, body, _ = parse(resp)
    assert hget(headers, "content-length") == "5"
    assert body == b"12345"


def test_hop_by_hop_headers_are_dropped(make_server):
    s = serve(make_server, "hop_by_hop")
    status, headers, body, _ = parse(raw(s.port, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"))
    assert status == 200 and body == b"ok"
    assert [v for k, v in headers if k == "connection"] == ["close"]
    assert hget(headers, "keep-alive") is None
    assert hget(headers, "transfer-encoding") is None
    assert hget(headers, "x-kept") == "yes"


# -- errors --------------------------------------------------------------------

def test_exc_info_before_headers_replaces_status(make_server):
    s = serve(make_server, "exc_info_before")
    status, _, body = http_get(s.port, "/")
    assert status == 503 and body == b"app error page"


def test_exc_info_after_headers_reraises_and_cuts(make_server):
    s = serve(make_server, "exc_info_after")
    status, headers, body, _ = parse(raw(s.port, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"))
    assert status == 200
    data, complete = dechunk(body)
    assert data == b"partial" and not complete
    s.wait_log("late failure")
    assert b"never" not in body


def test_start_response_twice_is_an_error(make_server):
    s = serve(make_server, "twice")
    status, _, body = http_get(s.port, "/")
    assert status == 500
    s.wait_log("Response headers already set!")


def test_app_exception_gives_500_and_logs_traceback(make_server):
    s = serve(make_server, "raises")
    resp = raw(s.port, b"GET /boom?x=1 HTTP/1.1\r\nHost: h\r\n\r\n")
    status, headers, body, _ = parse(resp)
    assert status == 500
    assert hget(headers, "connection") == "close"
    assert hget(headers, "content-type") == "text/html"
    assert b"<h1><p>Internal Server Error</p></h1>" in body
    assert b"secret-token" not in resp and b"Traceback" not in resp
    s.wait_log("ValueError: secret-token-xyzzy")
    log = s.log()
    assert "Error handling request /boom?x=1" in log
    assert "Traceback (most recent call last)" in log
    assert http_get(s.port, "/")[0] == 500  # still serving


def test_header_injection_is_refused(make_server):
    s = serve(make_server, "bad_header")
    resp = raw(s.port, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert parse(resp)[0] == 500
    assert b"Injected" not in resp


def test_wsgi_errors_goes_to_error_log(make_server):
    s = serve(make_server, "logging_app")
    assert http_get(s.port, "/")[0] == 201
    s.wait_log("from wsgi.errors")


# -- access log and hooks ------------------------------------------------------

def test_access_log_every_atom(make_server, tmp_path):
    alog = tmp_path / "access.log"
    fmt = ("h=%(h)s l=%(l)s u=%(u)s t=%(t)s r=\"%(r)s\" s=%(s)s m=%(m)s U=%(U)s q=%(q)s "
           "H=%(H)s b=%(b)s B=%(B)s f=\"%(f)s\" a=\"%(a)s\" T=%(T)s M=%(M)s D=%(D)s L=%(L)s "
           "p=%(p)s i=%({X-Req}i)s o=%({x-resp}o)s e=%({REMOTE_ADDR}e)s "
           "missing=%({X-None}i)s pct=100%%")
    s = serve(make_server, "logging_app", "--access-logfile", str(alog),
              "--access-logformat", fmt)
    auth = "Basic " + base64.b64encode(b"alice:secret").decode()
    status, _, body = http_get(s.port, "/some%20path?k=v", headers={
        "Authorization": auth, "Referer": "http://ref/", "User-Agent": "test-agent/1",
        "X-Req": "req-val"})
    assert status == 201
    line = wait_for(lambda: alog.exists() and alog.read_text().strip(), 5, what="access log")
    m = re.fullmatch(
        r'h=127\.0\.0\.1 l=- u=alice t=\[(\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4})\] '
        r'r="GET /some%20path\?k=v HTTP/1\.1" s=201 m=GET U=/some path q=k=v H=HTTP/1\.1 '
        r'b=11 B=11 f="http://ref/" a="test-agent/1" T=(\d+) M=(\d+) D=(\d+) L=(\d+\.\d{6}) '
        r'p=<(\d+)> i=req-val o=resp-val e=127\.0\.0\.1 missing=- pct=100%', line)
    assert m, line
    assert int(m.group(2)) == 0 and int(m.group(4)) < 5_000_000
    assert int(m.group(6)) in s.pids_titled("worker")


def test_default_access_log_format(make_server, tmp_path):
    alog = tmp_path / "access.log"
    s = serve(make_server, "head", "--access-logfile", str(alog))
    http_get(s.port, "/x", headers={"User-Agent": "ua"})
    line = wait_for(lambda: alog.exists() and alog.read_text().strip(), 5, what="access log")
    assert re.fullmatch(r'127\.0\.0\.1 - - \[[^\]]+\] "GET /x HTTP/1\.1" 200 31 "-" "ua"', line), line


def test_request_hooks(make_server, tmp_path):
    hook_log = tmp_path / "hooks.jsonl"
    s = serve(make_server, "head", "-c", os.path.join(APPS, "wsgi_hooks_conf.py"),
              env={"HOOK_LOG": str(hook_log)})
    http_get(s.port, "/hp?z=9", headers={"X-H": "1"})
    lines = wait_for(lambda: (lambda r: r if len(r) >= 2 else None)(
        [h for h in _hook_lines(hook_log) if h["hook"] in ("pre", "post")]), 5, what="hook log")
    pre, post = lines[:2]
    assert pre["hook"] == "pre" and pre["method"] == "GET" and pre["path"] == "/hp"
    assert pre["query"] == "z=9" and pre["uri"] == "/hp?z=9"
    assert ["X-H", "1"] in pre["headers"]
    assert post["hook"] == "post" and post["env_path"] == "/hp"
    assert post["status"] == "200 OK" and post["status_code"] == 200
    assert ["X-Method", "GET"] in post["headers"]
    assert post["sent"] == 31


# -- worker lifecycle ----------------------------------------------------------

def test_max_requests_restarts_the_worker(make_server):
    s = serve(make_server, "pid", "--max-requests", "3")
    pids = [get_json(s.port, "/")["pid"] for _ in range(3)]
    assert len(set(pids)) == 1
    s.wait_log("Autorestarting worker after current request.")
    wait_for(lambda: not pid_alive(pids[0]), 10, what="old worker exit")
    newpid = wait_for(lambda: (lambda p: p if p != pids[0] else None)(
        get_json(s.port, "/")["pid"]), 10, what="new worker")
    assert newpid != pids[0]
    s.wait_log("Worker exiting (pid: %d)" % pids[0])


def test_sigterm_lets_the_current_request_finish(make_server, tmp_path):
    s = serve(make_server, "slow")
    worker = wait_for(lambda: s.pids_titled("worker"), 10, what="worker")[0]
    t, result = slow_in_background(s.port, 1.5, tmp_path)
    os.kill(worker, signal.SIGTERM)
    t.join(15)
    assert isinstance(result.get("r"), tuple), result
    status, _, body = result["r"]
    assert status == 200 and json.loads(body)["pid"] == worker
    wait_for(lambda: not pid_alive(worker), 10, what="worker exit")
    s.wait_log("Worker exiting (pid: %d)" % worker)


def test_sigquit_interrupts_a_busy_app(make_server, tmp_path):
    s = serve(make_server, "slow")
    worker = wait_for(lambda: s.pids_titled("worker"), 10, what="worker")[0]
    slow_in_background(s.port, 20, tmp_path)
    t0 = time.monotonic()
    os.kill(worker, signal.SIGQUIT)
    # the app would sleep 20 s more: QUIT must cut it short
    wait_for(lambda: not pid_alive(worker), 10, what="worker exit on QUIT")
    assert time.monotonic() - t0 < 10


def test_app_threads_run_while_the_worker_is_idle(make_server, tmp_path):
    s = serve(make_server, "ticks")
    tick_file = tmp_path / "ticks"
    first = get_json(s.port, "/?file=%s" % tick_file)

    def ticks_since():
        try:
            return int(tick_file.read_text()) - first["ticks"]
        except (OSError, ValueError):
            return 0
    # ~100 ticks/s if the GIL is released while the worker waits for
    # connections; no request meanwhile, so only then can the thread run
    wait_for(lambda: ticks_since() > 30, 10, interval=0.1, what="the app's thread ticking")
    second = get_json(s.port, "/")
    assert second["pid"] == first["pid"]
    assert second["ticks"] - first["ticks"] > 30, (first, second)


def _hook_lines(path):
    """The complete JSON lines the hooks wrote so far (a line being written
    right now is left for the next look)."""
    if not path.exists():
        return []
    text = path.read_text()
    return [json.loads(x) for x in text[:text.rfind("\n") + 1].splitlines()]


@pytest.mark.parametrize("worker", [[], ["-k", "gthread", "--threads", "2"]],
                         ids=["sync", "gthread"])
@pytest.mark.parametrize("sig,hook", [(signal.SIGINT, "worker_int"),
                                      (signal.SIGQUIT, "worker_int"),
                                      (signal.SIGABRT, "worker_abort")])
def test_worker_signal_hooks(make_server, tmp_path, sig, hook, worker):
    hook_log = tmp_path / "hooks.jsonl"
    s = serve(make_server, "slow", "-c", os.path.join(APPS, "wsgi_hooks_conf.py"),
              *worker, env={"HOOK_LOG": str(hook_log)})
    worker = wait_for(lambda: s.pids_titled("worker"), 10, what="worker")[0]
    wait_for(lambda: any(h["hook"] == "post_worker_init" and h["pid"] == worker
                         for h in _hook_lines(hook_log)), 5, what="post_worker_init")
    # busy in the app (time.sleep, 20 s): the signal must still get through
    slow_in_background(s.port, 20, tmp_path)
    t0 = time.monotonic()
    os.kill(worker, sig)
    wait_for(lambda: not pid_alive(worker), 10, what="worker exit")
    assert time.monotonic() - t0 < 10
    assert any(h["hook"] == hook and h["pid"] == worker for h in _hook_lines(hook_log))
    s.wait_log("Worker exiting (pid: %d)" % worker)
    # worker_exit runs in the worker process itself, as in gunicorn
    assert any(h["hook"] == "worker_exit" and h["pid"] == worker and h["in"] == worker
               and h["server_pid"] == s.pid for h in _hook_lines(hook_log))


def test_sigusr1_reopens_the_access_log(make_server, tmp_path):
    alog = tmp_path / "access.log"
    s = serve(make_server, "pid", "--access-logfile", str(alog))
    worker = get_json(s.port, "/one")["pid"]
    wait_for(lambda: alog.exists() and "/one" in alog.read_text(), 5, what="first line")
    os.rename(alog, tmp_path / "access.log.1")
    os.kill(worker, signal.SIGUSR1)
    wait_for(lambda: has_open(worker, alog), 10, what="the worker holding the new access log")
    s.send(signal.SIGUSR1)  # the master reopens its own copy too
    wait_for(lambda: has_open(s.pid, alog), 10, what="the master holding the new access log")
    assert get_json(s.port, "/two")["pid"] == worker
    wait_for(lambda: alog.exists() and "/two" in alog.read_text(), 5, what="line in new file")
    assert "/two" not in (tmp_path / "access.log.1").read_text()


def test_sighup_to_worker_exits_it_and_master_replaces_it(make_server):
    s = serve(make_server, "pid")
    worker = get_json(s.port, "/")["pid"]
    os.kill(worker, signal.SIGHUP)
    wait_for(lambda: not pid_alive(worker), 5, what="worker exit on HUP")
    newpid = wait_for(lambda: (lambda p: p if p != worker else None)(
        get_json(s.port, "/")["pid"]), 10, what="replacement worker")
    assert newpid != worker


def test_master_sigterm_lets_the_current_request_finish(make_server, tmp_path):
    s = serve(make_server, "slow")
    t, result = slow_in_background(s.port, 1.5, tmp_path)
    rc = s.stop(signal.SIGTERM, timeout=15)
    t.join(15)
    assert isinstance(result.get("r"), tuple), result
    status, _, body = result["r"]
    assert status == 200 and json.loads(body)["slept"] == "1.5"
    assert rc == 0
    assert s.leftovers() == []


def test_unix_socket_listener(make_server, tmp_path):
    path = str(tmp_path / "s.sock")
    s = make_server("--chdir", APPS, "-b", "unix:" + path, "wsgi_apps:environ",
                    bind=False, start=False)
    s.start(wait=False)
    wait_for(lambda: os.path.exists(path), 10, what="unix socket")

    def ask(req):
        with socket.socket(socket.AF_UNIX) as c:
            c.settimeout(10)
            wait_for(lambda: c.connect_ex(path) == 0, 5, what="connect")
            c.sendall(req)
            out = read_until_close(c)
            return json.loads(parse(out)[3])

    env = ask(b"GET /u HTTP/1.1\r\nHost: example.com:8080\r\n\r\n")
    assert env["SERVER_NAME"] == "example.com" and env["SERVER_PORT"] == "8080"
    assert env["REMOTE_ADDR"] == "" and "REMOTE_PORT" not in env
    assert env["PATH_INFO"] == "/u"
    env = ask(b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n")
    assert env["SERVER_PORT"] == "80"
    # a unix-socket peer is trusted for the scheme headers, as in gunicorn
    env = ask(b"GET / HTTP/1.1\r\nHost: example.com\r\nX-Forwarded-Proto: https\r\n\r\n")
    assert env["wsgi.url_scheme"] == "https" and env["SERVER_PORT"] == "443"


def test_ipv6_listener(make_server):
    with socket.socket(socket.AF_INET6) as probe:
        probe.bind(("::1", 0))
        port = probe.getsockname()[1]
    s = make_server("--chdir", APPS, "-b", "[::1]:%d" % port, "wsgi_apps:environ",
                    bind=False, start=False, port=port)
    s.start(wait=False)

    def ask():
        try:
            with socket.create_connection(("::1", port), timeout=5) as c:
                c.sendall(b"GET /six HTTP/1.1\r\nHost: h\r\n\r\n")
                return read_until_close(c)
        except OSError:
            return None

    out = wait_for(ask, 10, what="IPv6 answer")
    env = json.loads(parse(out)[3])
    assert env["REMOTE_ADDR"] == "::1" and env["SERVER_NAME"] == "::1"
    assert env["SERVER_PORT"] == str(port)


def test_sendfile_starts_at_the_logical_position(make_server, tmp_path):
    s = serve(make_server, "sendfile_after_read")
    data = os.urandom(100000)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    status, headers, body = http_get(s.port, "/?path=%s" % path)
    assert status == 200 and body == data[10:]
    assert headers["content-length"] == str(len(data) - 10)


def test_sigterm_does_not_wait_for_a_silent_client(make_server):
    s = serve(make_server, "pid")
    worker = get_json(s.port, "/")["pid"]
    with socket.create_connection(("127.0.0.1", s.port)) as idle:
        # the worker accepted it and waits for a head
        wait_for(lambda: accepted(s.port, idle), 10, what="the worker to accept")
        t0 = time.monotonic()
        os.kill(worker, signal.SIGTERM)
        # not the request timeout (30 s) nor graceful_timeout (30 s)
        wait_for(lambda: not pid_alive(worker), 10, what="worker exit")
        assert time.monotonic() - t0 < 10
        idle.settimeout(5)
        assert idle.recv(100) == b""
