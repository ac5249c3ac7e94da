"""Malformed and hostile requests, sent as raw bytes to the real binary:
each is answered with gunicorn's error page (400-ish, Connection: close),
never reaches the app, and the very next normal request is served by the
same worker."""
import json
import os
import socket
import time

import pytest

from conftest import ROOT, http_get, raw_http as raw, read_until_close, wait_for

APPS = os.path.join(ROOT, "tests", "integration", "apps")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from conftest import Server
    s = Server("--chdir", APPS, "wsgi_apps:body",
               workdir=str(tmp_path_factory.mktemp("errors")))
    s.start()
    yield s
    s.cleanup()


def worker_pid(port):
    return json.loads(http_get(port, "/pid-check", method="POST", body=b"x")[2])


def assert_served(s):
    status, _, body = http_get(s.port, "/?mode=read", method="POST", body=b"ping")
    assert status == 200, body
    assert json.loads(body)["pieces"] == ["ping"]


LONG = b"a" * 5000
VECTORS = {
    "cl_and_te": b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te_and_cl": b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
                 b"Content-Length: 5\r\n\r\n0\r\n\r\n",
    "duplicate_cl": b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n"
                    b"Content-Length: 6\r\n\r\nhello!",
    "negative_cl": b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n",
    "cl_with_sign": b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\nhello",
    "te_not_chunked_last": b"POST / HTTP/1.1\r\nHost: h\r\n"
                           b"Transfer-Encoding: chunked, gzip\r\n\r\n",
    "te_unknown": b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: bogus\r\n\r\n",
    "te_http10": b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "bare_lf": b"GET / HTTP/1.1\nHost: h\n\n",
    "bare_lf_in_header": b"GET / HTTP/1.1\r\nHost: h\nX: y\r\n\r\n",
    "bare_cr": b"GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n",
    "space_before_colon": b"GET / HTTP/1.1\r\nHost : h\r\n\r\n",
    "obs_fold": b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n  folded\r\n\r\n",
    "invalid_method": b"G@T / HTTP/1.1\r\nHost: h\r\n\r\n",
    "lowercase_method": b"get / HTTP/1.1\r\nHost: h\r\n\r\n",
    "bad_version": b"GET / HTTP/1.x\r\nHost: h\r\n\r\n",
    "http2_version": b"GET / HTTP/2.0\r\nHost: h\r\n\r\n",
    "no_version": b"GET /\r\nHost: h\r\n\r\n",
    "double_space": b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n",
    "nul_in_header": b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x00b\r\n\r\n",
    "ctl_in_target": b"GET /a\x01b HTTP/1.1\r\nHost: h\r\n\r\n",
    "header_name_not_token": b"GET / HTTP/1.1\r\nHost: h\r\nX(y): z\r\n\r\n",
    "duplicate_host": b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "too_long_line": b"GET /" + LONG + b" HTTP/1.1\r\nHost: h\r\n\r\n",
    "too_long_header": b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n",
    "too_many_headers": b"GET / HTTP/1.1\r\nHost: h\r\n" +
                        b"".join(b"X-%d: v\r\n" % i for i in range(120)) + b"\r\n",
    "bad_chunk_size": b"POST /?mode=read HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"zz\r\nhello\r\n0\r\n\r\n",
    "chunk_size_overflow": b"POST /?mode=read HTTP/1.1\r\nHost: h\r\n"
                           b"Transfer-Encoding: chunked\r\n\r\n"
                           b"fffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
    "chunk_missing_crlf": b"POST /?mode=read HTTP/1.1\r\nHost: h\r\n"
                          b"Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
    "chunk_bare_lf": b"POST /?mode=read HTTP/1.1\r\nHost: h\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_malformed_request_is_refused_and_worker_keeps_serving(server, name):
    resp = raw(server.port, VECTORS[name])
    head, _, body = resp.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n")[0]
    assert status_line.startswith(b"HTTP/1.1 "), resp[:200]
    status = int(status_line.split()[1])
    assert status in (400, 431, 501), resp[:300]
    assert b"\r\nConnection: close\r\n" in head + b"\r\n"
    assert b"<h1><p>" in body and b"</html>" in body
    # never reached the app: the body app answers JSON
    assert b'"pieces"' not in resp
    assert_served(server)


CHUNKED_HEAD = b"POST /?mode=read HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
# The requests of gunicorn's own corpus that gunicorn 26 refuses with 400
# (and a few neighbours of each): the parser must refuse them the same way.
GUNICORN_CORPUS_400 = {
    "absolute_form_not_a_uri": b"PUT s://]ufd/: HTTP/1.1\r\nHost: h\r\n"
                               b"Content-Length: 0\r\n\r\n",
    "absolute_form_unclosed_ipv6": b"GET http://[::1/ HTTP/1.1\r\nHost: h\r\n\r\n",
    "absolute_form_http_no_host": b"GET http:///x HTTP/1.1\r\nHost: h\r\n\r\n",
    "asterisk_with_get": b"GET * HTTP/1.1\r\nHost: h\r\n\r\n",
    "asterisk_with_post": b"POST * HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
    "chunk_size_then_space": CHUNKED_HEAD + b"0 \r\n\r\n",
    "chunk_size_then_tab": CHUNKED_HEAD + b"5\t\r\nhello\r\n0\r\n\r\n",
    "trailer_content_length": CHUNKED_HEAD + b"5\r\nhello\r\n0\r\nContent-Length: 5\r\n\r\n",
    "trailer_host": CHUNKED_HEAD + b"0\r\nHost: evil\r\n\r\n",
    "trailer_transfer_encoding": CHUNKED_HEAD + b"0\r\nTransfer-Encoding: chunked\r\n\r\n",
    "trailer_authorization": CHUNKED_HEAD + b"0\r\nX-Ok: 1\r\nAuthorization: x\r\n\r\n",
    "trailer_content_type": CHUNKED_HEAD + b"0\r\ncontent-type: a/b\r\n\r\n",
    "duplicate_content_type": b"POST /?mode=read HTTP/1.1\r\nHost: h\r\n"
                              b"Content-Type: text/plain\r\nContent-Type: application/json\r\n"
                              b"Content-Length: 2\r\n\r\n{}",
}


@pytest.mark.parametrize("name", sorted(GUNICORN_CORPUS_400))
def test_gunicorn_corpus_request_is_400_and_worker_keeps_serving(server, name):
    resp = raw(server.port, GUNICORN_CORPUS_400[name])
    head = resp.partition(b"\r\n\r\n")[0]
    assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n"), resp[:300]
    assert b"\r\nConnection: close" in head
    assert b'"pieces"' not in resp
    assert_served(server)


def test_transfer_encoding_identity_with_content_length_is_framed_by_length(server):
    """gunicorn accepts "identity" (no coding at all) beside a Content-Length:
    the length frames the body, the bytes after it are not body."""
    resp = raw(server.port, b"POST /?mode=read HTTP/1.1\r\nHost: h\r\n"
                            b"Transfer-Encoding: identity\r\nContent-Length: 5\r\n\r\n"
                            b"helloEXTRA", half_close=True)
    head, _, body = resp.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), resp[:300]
    got = json.loads(body)
    assert got["pieces"] == ["hello"] and got["extra"] == ""
    assert got["content_length"] == "5"
    assert_served(server)


def test_neighbours_of_the_corpus_cases_are_still_served(server):
    """What the new rules must not catch: OPTIONS *, a valid absolute-form
    with userinfo and an IPv6 literal, whitespace before a chunk extension,
    trailers merely named like forbidden fields."""
    resp = raw(server.port, b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n")
    assert resp.startswith(b"HTTP/1.1 200 "), resp[:300]
    resp = raw(server.port, b"POST http://u:p@[::1]:8080/?mode=read HTTP/1.1\r\nHost: h\r\n"
                            b"Content-Length: 2\r\n\r\nok")
    assert resp.startswith(b"HTTP/1.1 200 "), resp[:300]
    assert json.loads(resp.partition(b"\r\n\r\n")[2])["pieces"] == ["ok"]
    resp = raw(server.port, CHUNKED_HEAD + b"5 ;ext\r\nhello\r\n0\r\n"
                            b"X-Host: a\r\nContent-MD5: b\r\n\r\n")
    assert resp.startswith(b"HTTP/1.1 200 "), resp[:300]
    assert json.loads(resp.partition(b"\r\n\r\n")[2])["pieces"] == ["hello"]


def test_error_page_looks_like_gunicorns(server):
    resp = raw(server.port, b"GET / HTTP/1.x\r\nHost: h\r\n\r\n")
    head, _, body = resp.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 400 Bad Request"
    hdrs = dict(l.split(b": ", 1) for l in lines[1:])
    assert hdrs[b"Connection"] == b"close"
    assert hdrs[b"Content-Type"] == b"text/html"
    assert int(hdrs[b"Content-Length"]) == len(body)
    assert body.startswith(b"<html>\n  <head>\n    <title>Bad Request</title>\n  </head>\n"
                           b"  <body>\n    <h1><p>Bad Request</p></h1>\n")
    assert body.endswith(b"\n  </body>\n</html>\n")


def test_html_in_error_message_is_escaped(server):
    resp = raw(server.port, b"GET /<script> HTTP/9.9\r\nHost: h\r\n\r\n")
    assert b"<script>" not in resp.partition(b"\r\n\r\n")[2]


def test_client_disconnects_mid_head_and_mid_body(server):
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHo")
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(b"POST /?mode=read HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\nonly-some")
        time.sleep(0.2)
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(b"POST /?mode=read HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab")
        time.sleep(0.2)
    assert_served(server)
    assert "Traceback" not in server.log()


def test_garbage_bytes(server):
    for junk in (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(64),
                 b"\r\n\r\n\r\n", os.urandom(300), b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"):
        # half-close: a head that is only empty lines is still incomplete
        resp = raw(server.port, junk + b"\r\n\r\n", half_close=True)
        if resp:
            assert int(resp.split()[1]) in (400, 431, 501), resp[:200]
    assert_served(server)


def test_small_limits_from_the_command_line(make_server):
    s = make_server("--chdir", APPS, "--limit-request-line", "64",
                    "--limit-request-fields", "3", "--limit-request-field_size", "40",
                    "wsgi_apps:body")
    resp = raw(s.port, b"GET /" + b"x" * 100 + b" HTTP/1.1\r\nHost: h\r\n\r\n")
    assert int(resp.split()[1]) == 400
    resp = raw(s.port, b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n")
    assert int(resp.split()[1]) in (400, 431)
    resp = raw(s.port, b"GET / HTTP/1.1\r\nHost: h\r\nA: " + b"v" * 60 + b"\r\n\r\n")
    assert int(resp.split()[1]) in (400, 431)
    status, _, body = http_get(s.port, "/?mode=read", method="POST", body=b"ok")
    assert status == 200


def test_slow_and_pipelined_head(server):
    # a head that trickles in byte by byte still parses
    req = b"POST /?mode=read HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        for i in range(0, len(req), 7):
            s.sendall(req[i:i + 7])
            time.sleep(0.01)
        out = read_until_close(s)
    assert out.startswith(b"HTTP/1.1 200 ")
    assert json.loads(out.partition(b"\r\n\r\n")[2])["pieces"] == ["abc"]


def test_mutated_requests_never_kill_the_worker(server):
    """Thousands of randomly mutated requests (seeded): every one gets a
    well-formed answer or a close, and the same worker survives them all."""
    import random
    rnd = random.Random(1234)
    workers_before = wait_for(lambda: (lambda p: p if len(p) == 1 else None)(
        server.pids_titled("worker")), 10, what="the worker")
    seeds = [
        b"POST /?mode=read HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
        b"POST /?mode=readline HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhel\nl\r\n3;a=b\r\nabc\r\n0\r\nT: x\r\n\r\n",
        b"GET /p?q=1 HTTP/1.0\r\nX-A: b\r\n\r\n",
    ]
    statuses = set()
    for i in range(1500):
        req = bytearray(rnd.choice(seeds))
        for _ in range(rnd.randint(1, 4)):
            op = rnd.random()
            pos = rnd.randrange(len(req))
            if op < 0.4:
                req[pos] = rnd.randrange(256)
            elif op < 0.7:
                del req[pos]
            else:
                req.insert(pos, rnd.choice(b"\r\n :;0aZ\x00\t-"))
        resp = raw(server.port, bytes(req), timeout=5, half_close=True)
        if resp:
            assert resp.startswith(b"HTTP/1."), resp[:100]
            statuses.add(int(resp.split()[1]))
    assert statuses <= {200, 400, 431, 500, 501}, statuses
    assert 400 in statuses and 200 in statuses
    assert_served(server)
    assert server.pids_titled("worker") == workers_before
