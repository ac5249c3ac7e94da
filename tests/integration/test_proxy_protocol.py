"""The PROXY protocol (gunicorn 24+'s proxy_protocol and proxy_allow_ips),
through the real build/cunicorn, with each worker type (sync, gthread,
asgi):

- a v1 line or a v2 header before the first request names the client:
  REMOTE_ADDR / REMOTE_PORT and PROXY_PROTOCOL / PROXY_ADDR / PROXY_PORT in
  the WSGI environ, the ASGI scope's client, the access log's %(h)s; for
  every request on that connection (keep-alive, pipelining);
- v1 UNKNOWN and v2 LOCAL (a load balancer's health check) keep the
  socket's peer;
- the preamble is optional; a peer not in proxy_allow_ips (addresses or
  CIDR networks) that sends one gets 403; a malformed one gets 400 with
  the reason; either way the worker goes on serving;
- a preamble in pieces (a byte at a time) is waited for within the head's
  deadline; mode v1 does not take v2's header, nor v2 v1's line; off (the
  default) takes neither;
- forwarded_allow_ips trust is the socket peer's, and CIDR networks work
  for the asgi worker as for the others.
"""

import json
import socket
import struct
import time

import pytest

from conftest import http_get, raw_http, read_until_close, wait_for

APPS = "tests.integration.apps.proxy_apps"
WORKERS = ["sync", "gthread", "asgi"]

V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"
REQ = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
REQ_KEEP = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def v2(cmd, fam, addr=b"", tlv=b"", version=2):
    body = addr + tlv
    return V2_SIG + bytes([version << 4 | cmd, fam]) + struct.pack(">H", len(body)) + body


def v2_inet(src, dst, sport, dport, proto=1):
    return v2(1, 0x10 | proto, socket.inet_pton(socket.AF_INET, src)
              + socket.inet_pton(socket.AF_INET, dst) + struct.pack(">HH", sport, dport))


def v2_inet6(src, dst, sport, dport):
    return v2(1, 0x21, socket.inet_pton(socket.AF_INET6, src)
              + socket.inet_pton(socket.AF_INET6, dst) + struct.pack(">HH", sport, dport))


def responses(data):
    """The (status, body) of each response in data (Content-Length framed)."""
    out = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        out.append((status, rest[:length]))
        data = rest[length:]
    return out


def start(make_server, worker, *args):
    s = make_server("-k", worker, "-w", "1", "--access-logfile", "-",
                    "--access-logformat", "%(h)s %(r)s %(s)s", *args,
                    APPS + (":asgi" if worker == "asgi" else ":wsgi"))
    return s


def client_of(worker, body):
    """(addr, port) the app saw, and the WSGI PROXY_* values (None for asgi)."""
    d = json.loads(body)
    if worker == "asgi":
        return tuple(d["client"]), None
    proxy = (d["PROXY_PROTOCOL"], d["PROXY_ADDR"], d["PROXY_PORT"])
    return (d["REMOTE_ADDR"], int(d["REMOTE_PORT"])), proxy


def ask(port, data):
    return responses(raw_http(port, data))


@pytest.mark.parametrize("worker", WORKERS)
def test_v1_and_v2_name_the_client(make_server, worker):
    s = start(make_server, worker, "--proxy-protocol")
    [(st, body)] = ask(s.port, b"PROXY TCP4 192.0.2.7 198.51.100.1 40001 443\r\n" + REQ)
    assert st == 200
    client, proxy = client_of(worker, body)
    assert client == ("192.0.2.7", 40001)
    if proxy:
        assert proxy == ("TCP4", "198.51.100.1", "443")

    [(st, body)] = ask(s.port, v2_inet6("2001:db8::5", "2001:db8::1", 50000, 8443) + REQ)
    assert st == 200
    client, proxy = client_of(worker, body)
    assert client == ("2001:db8::5", 50000)
    if proxy:
        assert proxy == ("TCP6", "2001:db8::1", "8443")

    # v2 with TLVs after the addresses (as AWS NLB sends): skipped whole
    tlv = bytes([0xEA]) + struct.pack(">H", 22) + b"\x01" + b"vpce-0123456789abcdef"
    pre = v2(1, 0x11, socket.inet_pton(socket.AF_INET, "203.0.113.9")
             + socket.inet_pton(socket.AF_INET, "10.0.0.1") + struct.pack(">HH", 1234, 80), tlv)
    [(st, body)] = ask(s.port, pre + REQ)
    assert st == 200 and client_of(worker, body)[0] == ("203.0.113.9", 1234)

    # the access log names the client, not the balancer
    s.wait_log("203.0.113.9 GET / HTTP/1.1 200")
    s.wait_log("192.0.2.7 GET / HTTP/1.1 200")


@pytest.mark.parametrize("worker", WORKERS)
def test_unknown_local_and_no_preamble_keep_the_peer(make_server, worker):
    s = start(make_server, worker, "--proxy-protocol")
    for pre, kind in ((b"PROXY UNKNOWN\r\n", "UNKNOWN"),
                      (b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", "UNKNOWN"),
                      (v2(0, 0x11, b"\x00" * 12), "LOCAL"),
                      (v2(1, 0x00), "UNKNOWN"),
                      (b"", None)):
        [(st, body)] = ask(s.port, pre + REQ)
        assert st == 200, pre
        client, proxy = client_of(worker, body)
        assert client[0] == "127.0.0.1", pre
        if proxy:
            assert proxy == (kind, None, None), pre


@pytest.mark.parametrize("worker", ["gthread", "asgi"])
def test_the_client_holds_for_the_whole_connection(make_server, worker):
    s = start(make_server, worker, "--proxy-protocol", "v1")
    data = raw_http(s.port, b"PROXY TCP4 192.0.2.8 192.0.2.1 1000 80\r\n" + REQ_KEEP + REQ_KEEP + REQ)
    got = responses(data)
    assert [st for st, _ in got] == [200, 200, 200]
    assert {client_of(worker, b)[0] for _, b in got} == {("192.0.2.8", 1000)}
    # a second PROXY line on the same connection is no preamble: a bad request
    data = raw_http(s.port, b"PROXY TCP4 192.0.2.8 192.0.2.1 1000 80\r\n" + REQ_KEEP
                    + b"PROXY TCP4 192.0.2.9 192.0.2.1 1000 80\r\n" + REQ)
    got = responses(data)
    assert got[0][0] == 200 and got[1][0] == 400


@pytest.mark.parametrize("worker", WORKERS)
def test_a_preamble_in_pieces(make_server, worker):
    s = start(make_server, worker, "--proxy-protocol", "auto")
    for pre, client in ((b"PROXY TCP4 192.0.2.10 192.0.2.1 1111 80\r\n", ("192.0.2.10", 1111)),
                        (v2_inet("192.0.2.11", "192.0.2.1", 2222, 80), ("192.0.2.11", 2222))):
        with socket.create_connection(("127.0.0.1", s.port), timeout=10) as c:
            for i in range(len(pre)):
                c.sendall(pre[i:i + 1])
                time.sleep(0.002)
            c.sendall(REQ)
            data = read_until_close(c)
        [(st, body)] = responses(data)
        assert st == 200
        assert client_of(worker, body)[0] == client


def test_pipelined_requests_past_the_first_buffer_after_a_preamble(make_server):
    """The preamble is taken out of a read that filled the gthread worker's
    first buffer (16 KiB): the loop still reads on for what the socket
    holds (edge-triggered), instead of waiting for keep-alive to expire."""
    s = start(make_server, "gthread", "--proxy-protocol", "--keep-alive", "30")
    pre = b"PROXY TCP4 192.0.2.20 192.0.2.1 3333 80\r\n"
    one = b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: %s\r\n\r\n"
    base = len(one % b"")
    first = 16384 - len(pre)
    reqs = [one % (b"p" * (first // 8 - base))] * 7
    reqs.append(one % (b"p" * (first - sum(map(len, reqs)) - base)))
    assert len(pre) + sum(map(len, reqs)) == 16384
    reqs += [one % b"q"] * 3 + [REQ]
    with socket.create_connection(("127.0.0.1", s.port), timeout=5) as c:
        c.sendall(pre + b"".join(reqs))
        data = b""
        while data.count(b"HTTP/1.1 200 ") < 12 or not data.endswith(b"}"):
            d = c.recv(65536)
            assert d, data.count(b"HTTP/1.1 200 ")
            data += d
    got = responses(data)
    assert len(got) == 12
    assert {client_of("gthread", b)[0] for _, b in got} == {("192.0.2.20", 3333)}


@pytest.mark.parametrize("worker", WORKERS)
def test_a_peer_not_allowed_is_refused_and_cidr_allows(make_server, worker):
    s = start(make_server, worker, "--proxy-protocol", "--proxy-allow-from", "10.0.0.1, 192.0.2.0/24")
    out = raw_http(s.port, b"PROXY TCP4 192.0.2.7 198.51.100.1 40001 443\r\n" + REQ)
    assert out.startswith(b"HTTP/1.1 403 "), out[:80]
    if worker != "asgi":        # the asgi worker logs refusals at debug, as uvicorn
        s.wait_log("not in proxy_allow_ips")
    # without a preamble the same peer is served
    status, _, body = http_get(s.port, "/")
    assert status == 200 and client_of(worker, body)[0][0] == "127.0.0.1"
    # a network holding 127.0.0.1 allows it
    s2 = start(make_server, worker, "--proxy-protocol", "--proxy-allow-from", "127.0.0.0/8")
    [(st, body)] = ask(s2.port, b"PROXY TCP4 192.0.2.7 198.51.100.1 40001 443\r\n" + REQ)
    assert st == 200 and client_of(worker, body)[0] == ("192.0.2.7", 40001)


BAD = [
    (b"PROXY TCP4 192.0.2.7 198.51.100.1 40001 99999\r\n", "bad port"),
    (b"PROXY TCP4 192.0.2.7 198.51.100.1 40001\r\n", "expected PROXY"),
    (b"PROXY TCP4  192.0.2.7 198.51.100.1 40001 443\r\n", "expected PROXY"),
    (b"PROXY TCP4 192.0.2.7 198.51.100.1.5 40001 443\r\n", "bad address"),
    (b"PROXY TCP4 2001:db8::1 198.51.100.1 40001 443\r\n", "bad address"),
    (b"PROXY UDP4 192.0.2.7 198.51.100.1 40001 443\r\n", "protocol not"),
    (b"PROXY TCP4 192.0.2.7 198.51.100.1 40001 443\n", "CRLF"),
    (b"PROXY TCP4 192.0.2.7\x00zz 198.51.100.1 40001 443\r\n", "control character"),
    (b"PROXY " + b"A" * 120 + b"\r\n", "longer than 107"),
    (v2(1, 0x11, b"\x00" * 12, version=1), "version not 2"),
    (v2(5, 0x11, b"\x00" * 12), "command"),
    (v2(1, 0x12, b"\x00" * 12), "not a stream"),
    (v2(1, 0x11, b"\x00" * 8), "short IPv4"),
    (v2(1, 0x21, b"\x00" * 20), "short IPv6"),
    (v2(1, 0x51, b"\x00" * 12), "unknown address family"),
    (V2_SIG + b"\x21\x11\xff\xff", "longer than 4112"),
]


@pytest.mark.parametrize("worker", WORKERS)
def test_malformed_preambles_get_400_and_the_worker_serves_on(make_server, worker):
    s = start(make_server, worker, "--proxy-protocol")
    pid = wait_for(lambda: s.pids_titled("worker"), what="the worker")
    for pre, why in BAD:
        out = raw_http(s.port, pre + REQ)
        assert out.startswith(b"HTTP/1.1 400 "), (pre, out[:80])
        assert why.encode() in out, (pre, out)
    status, _, _ = http_get(s.port, "/")
    assert status == 200
    assert s.pids_titled("worker") == pid      # the same worker, alive
    assert "Traceback" not in s.log()


@pytest.mark.parametrize("worker", WORKERS)
def test_modes_take_only_their_version(make_server, worker):
    line = b"PROXY TCP4 192.0.2.7 198.51.100.1 40001 443\r\n"
    header = v2_inet("192.0.2.7", "198.51.100.1", 40001, 443)
    s = start(make_server, worker, "--proxy-protocol", "v2")
    assert ask(s.port, header + REQ)[0][0] == 200
    assert raw_http(s.port, line + REQ).startswith(b"HTTP/1.1 400 ")
    s1 = start(make_server, worker, "--proxy-protocol", "v1")
    assert ask(s1.port, line + REQ)[0][0] == 200
    assert raw_http(s1.port, header + REQ).startswith(b"HTTP/1.1 400 ")
    off = start(make_server, worker)        # the default: off
    assert raw_http(off.port, line + REQ).startswith(b"HTTP/1.1 400 ")
    status, _, body = http_get(off.port, "/")
    assert status == 200 and client_of(worker, body)[0][0] == "127.0.0.1"


def test_config_file_values(make_server, tmp_path):
    conf = tmp_path / "conf.py"
    conf.write_text("proxy_protocol = True\nproxy_allow_ips = ['127.0.0.1']\n")
    s = make_server("-c", str(conf), "-w", "1", APPS + ":wsgi")
    [(st, body)] = ask(s.port, v2_inet("192.0.2.7", "198.51.100.1", 40001, 443) + REQ)
    assert st == 200 and client_of("sync", body)[0] == ("192.0.2.7", 40001)
    bad = tmp_path / "bad.py"
    bad.write_text("proxy_protocol = 'v3'\n")
    from conftest import start_to_exit
    rc, log, left = start_to_exit("-c", str(bad), APPS + ":wsgi")
    assert rc != 0 and "proxy_protocol" in log and "expected off, v1, v2 or auto" in log, log
    assert not left


@pytest.mark.parametrize("worker", WORKERS)
def test_forwarded_trust_is_the_socket_peers_and_takes_networks(make_server, worker):
    s = start(make_server, worker, "--proxy-protocol", "--forwarded-allow-ips", "127.0.0.0/8")
    fwd = b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-Proto: https\r\nConnection: close\r\n\r\n"
    # the client the preamble names is not trusted, the balancer is
    [(st, body)] = ask(s.port, b"PROXY TCP4 192.0.2.7 198.51.100.1 40001 443\r\n" + fwd)
    d = json.loads(body)
    assert (d.get("scheme") or d.get("wsgi.url_scheme")) == "https"
    s2 = start(make_server, worker, "--forwarded-allow-ips", "10.0.0.0/8")
    [(st, body)] = ask(s2.port, fwd)
    d = json.loads(body)
    assert (d.get("scheme") or d.get("wsgi.url_scheme")) == "http"
    # the client a preamble names is never the one trusted
    s3 = start(make_server, worker, "--proxy-protocol", "--forwarded-allow-ips", "192.0.2.7")
    [(st, body)] = ask(s3.port, b"PROXY TCP4 192.0.2.7 198.51.100.1 40001 443\r\n" + fwd)
    d = json.loads(body)
    assert (d.get("scheme") or d.get("wsgi.url_scheme")) == "http"
