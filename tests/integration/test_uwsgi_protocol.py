"""gunicorn 25+'s uWSGI protocol (`--protocol uwsgi`, uwsgi_allow_ips),
through the real build/cunicorn with each worker type (sync, gthread,
asgi), from raw packets and from a real nginx with `uwsgi_pass`:

- a packet's variables make the request: method, REQUEST_URI (or
  PATH_INFO re-encoded and QUERY_STRING), HTTP_* headers, CONTENT_TYPE,
  CONTENT_LENGTH and the body after the packet, HTTPS, REMOTE_ADDR and
  REMOTE_PORT (the client nginx saw, not nginx);
- a response of unknown length ends with the connection, never chunked
  (nginx's uwsgi module would hand chunk framing to its client as data);
- several packets on one connection with Connection: keep-alive;
- a peer not in uwsgi_allow_ips gets 403; malformed packets (modifier1,
  truncated variables, a variable forging a header line, plain HTTP, too
  many variables, a head past the limits) get 400 or 431 and the worker
  serves on; a packet a byte at a time is waited for;
- `protocol` takes http or uwsgi, from the command line or a file.
"""

import json
import os
import signal
import socket
import struct
import subprocess
import time

import pytest

from conftest import free_port, port_open, raw_http, read_until_close, wait_for

APPS = "tests.integration.apps.uwsgi_apps"
WORKERS = ["sync", "gthread", "asgi"]


def packet(variables, body=b"", modifier1=0):
    block = b""
    for k, v in variables.items():
        k = k.encode("latin-1") if isinstance(k, str) else k
        v = v.encode("latin-1") if isinstance(v, str) else v
        block += struct.pack("<H", len(k)) + k + struct.pack("<H", len(v)) + v
    return bytes([modifier1]) + struct.pack("<H", len(block)) + b"\x00" + block + body


def split(data):
    """[(status, headers dict, body)] of the responses in data; a response
    without Content-Length runs to the end."""
    out = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        hdrs = {}
        for line in lines[1:]:
            n, _, v = line.partition(b":")
            hdrs[n.strip().lower().decode()] = v.strip().decode()
        n = int(hdrs["content-length"]) if "content-length" in hdrs else len(rest)
        out.append((status, hdrs, rest[:n]))
        data = rest[n:]
    return out


def start(make_server, worker, *args):
    return make_server("-k", worker, "-w", "1", "--protocol", "uwsgi", *args,
                       APPS + (":asgi" if worker == "asgi" else ":wsgi"))


@pytest.mark.parametrize("worker", WORKERS)
def test_a_packet_makes_the_request(make_server, worker):
    s = start(make_server, worker)
    v = {"REQUEST_METHOD": "POST", "REQUEST_URI": "/a%20b?x=1&y=%2F",
         "PATH_INFO": "/a b", "QUERY_STRING": "x=1&y=%2F", "CONTENT_TYPE": "text/plain",
         "CONTENT_LENGTH": "5", "HTTP_HOST": "example.com", "HTTP_X_THING": "yes",
         "REMOTE_ADDR": "203.0.113.5", "REMOTE_PORT": "5555", "HTTPS": "on",
         "SERVER_NAME": "ignored", "DOCUMENT_ROOT": "/srv"}
    [(st, h, body)] = split(raw_http(s.port, packet(v, b"hello")))
    assert st == 200
    d = json.loads(body)
    assert d == {"REQUEST_METHOD": "POST", "PATH_INFO": "/a b", "QUERY_STRING": "x=1&y=%2F",
                 "RAW_URI": "/a%20b?x=1&y=%2F", "REMOTE_ADDR": "203.0.113.5",
                 "REMOTE_PORT": "5555", "wsgi.url_scheme": "https",
                 "CONTENT_TYPE": "text/plain", "CONTENT_LENGTH": "5",
                 "HTTP_HOST": "example.com", "HTTP_X_THING": "yes", "body": "hello"}
    # no REQUEST_URI: PATH_INFO (decoded) is encoded again; no REMOTE_ADDR: the peer
    path = "/p q/\u00e9".encode()
    v = {"PATH_INFO": path, "QUERY_STRING": "k=v"}
    [(st, h, body)] = split(raw_http(s.port, packet(v)))
    d = json.loads(body)
    assert st == 200 and d["REQUEST_METHOD"] == "GET"
    # PEP 3333's latin-1 string, ASGI's UTF-8 one
    assert d["PATH_INFO"] == path.decode("utf-8" if worker == "asgi" else "latin-1")
    assert d["QUERY_STRING"] == "k=v"
    assert d["RAW_URI"] == "/p%20q/%C3%A9?k=v"
    assert d["REMOTE_ADDR"] == "127.0.0.1" and d["wsgi.url_scheme"] == "http"


@pytest.mark.parametrize("worker", WORKERS)
def test_unknown_length_ends_with_the_connection(make_server, worker):
    s = start(make_server, worker)
    data = raw_http(s.port, packet({"PATH_INFO": "/stream", "HTTP_CONNECTION": "keep-alive"}))
    [(st, h, body)] = split(data)
    assert st == 200 and "transfer-encoding" not in h
    assert body == b"one two HTTP/1.0"


@pytest.mark.parametrize("worker", ["gthread", "asgi"])
def test_packets_in_a_row_on_one_connection(make_server, worker):
    s = start(make_server, worker)
    ka = {"HTTP_CONNECTION": "keep-alive"}
    data = raw_http(s.port, packet(dict(ka, PATH_INFO="/1", REMOTE_ADDR="192.0.2.1"))
                    + packet(dict(ka, PATH_INFO="/2", CONTENT_LENGTH="3"), b"abc")
                    + packet({"PATH_INFO": "/3"}))
    got = split(data)
    assert [st for st, _, _ in got] == [200, 200, 200]
    ds = [json.loads(b) for _, _, b in got]
    assert [d["PATH_INFO"] for d in ds] == ["/1", "/2", "/3"]
    assert ds[1]["body"] == "abc"
    # REMOTE_ADDR is each request's own
    assert [d["REMOTE_ADDR"] for d in ds] == ["192.0.2.1", "127.0.0.1", "127.0.0.1"]


@pytest.mark.parametrize("worker", WORKERS)
def test_a_packet_a_byte_at_a_time(make_server, worker):
    s = start(make_server, worker)
    data = packet({"PATH_INFO": "/slow", "CONTENT_LENGTH": "4"}, b"body")
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as c:
        for i in range(len(data)):
            c.sendall(data[i:i + 1])
            time.sleep(0.002)
        out = read_until_close(c)
    [(st, _, body)] = split(out)
    assert st == 200 and json.loads(body)["body"] == "body"


def too_many():
    return {"HTTP_X_%d" % i: "v" for i in range(1001)}


BAD = [
    (packet({"PATH_INFO": "/"}, modifier1=5), 400, b"modifier1"),
    (b"\x00\x05\x00\x00" + b"\x02\x00ab\x09\x00", 400, b"runs past"),
    (packet({"HTTP_X": "a\r\nEvil: 1"}), 400, b"CR, LF or NUL"),
    (packet({"HTTP_X": "a\x00b"}), 400, b"CR, LF or NUL"),
    (packet({"REQUEST_METHOD": "GET /x"}), 400, b"REQUEST_METHOD"),
    (packet({"REQUEST_URI": "/a b"}), 400, b"REQUEST_URI"),
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 400, b"modifier1"),
    (packet(too_many()), 400, b"more than 1000"),
    (packet({"HTTP_BAD NAME": "v"}), 400, b"not [A-Z0-9_]"),
    # only what nginx sends: a lower-case name cannot frame the body
    (packet({"HTTP_content_length": "5"}, b"hello"), 400, b"not [A-Z0-9_]"),
    (packet({"HTTP_TRANSFER-ENCODING": "chunked"}), 400, b"not [A-Z0-9_]"),
]


@pytest.mark.parametrize("worker", WORKERS)
def test_malformed_packets_and_the_worker_serves_on(make_server, worker):
    s = start(make_server, worker, "--limit-request-fields", "20")
    pid = wait_for(lambda: s.pids_titled("worker"), what="the worker")
    for data, status, why in BAD:
        out = raw_http(s.port, data)
        assert out.startswith(b"HTTP/1.1 %d " % status), (data[:40], out[:120])
        assert why in out, (data[:40], out)
    # past the head's limits, as an HTTP head would be: 21 headers, then one huge
    out = raw_http(s.port, packet({"HTTP_X_%d" % i: "v" for i in range(21)}))
    assert out.startswith(b"HTTP/1.1 431 "), out[:80]
    out = raw_http(s.port, packet({"HTTP_X": "v" * 20000}))
    assert out.startswith(b"HTTP/1.1 431 "), out[:80]
    [(st, _, _)] = split(raw_http(s.port, packet({"PATH_INFO": "/ok"})))
    assert st == 200
    assert s.pids_titled("worker") == pid
    assert "Traceback" not in s.log()


@pytest.mark.parametrize("worker", WORKERS)
def test_allow_list(make_server, worker):
    s = start(make_server, worker, "--uwsgi-allow-from", "10.0.0.1")
    out = raw_http(s.port, packet({"PATH_INFO": "/"}))
    assert out.startswith(b"HTTP/1.1 403 "), out[:80]
    s2 = start(make_server, worker, "--uwsgi-allow-from", "10.0.0.1,127.0.0.0/8")
    [(st, _, _)] = split(raw_http(s2.port, packet({"PATH_INFO": "/"})))
    assert st == 200


@pytest.mark.parametrize("worker", WORKERS)
def test_a_large_body_in_the_packets_read(make_server, worker):
    """Body bytes read with the packet are the body's, not the head's: a
    300 KB POST under small head limits (the asgi worker reads up to 256
    KiB at once) is served."""
    s = start(make_server, worker, "--limit-request-fields", "10",
              "--limit-request-field_size", "1024")
    body = bytes(range(256)) * 1200
    [(st, _, out)] = split(raw_http(s.port, packet(
        {"REQUEST_METHOD": "POST", "CONTENT_LENGTH": str(len(body))}, body)))
    assert st == 200 and json.loads(out)["body"] == body.decode("latin-1")


@pytest.mark.parametrize("worker", WORKERS)
def test_behind_a_proxy_preamble(make_server, worker):
    """A PROXY preamble first, then packets: REMOTE_ADDR wins where given,
    else the preamble's client."""
    s = start(make_server, worker, "--proxy-protocol")
    ka = {"HTTP_CONNECTION": "keep-alive"}
    data = raw_http(s.port, b"PROXY TCP4 192.0.2.30 192.0.2.1 4444 80\r\n"
                    + packet(dict(ka, PATH_INFO="/1"))
                    + packet({"PATH_INFO": "/2", "REMOTE_ADDR": "198.51.100.9",
                              "REMOTE_PORT": "9"}))
    got = [json.loads(b) for _, _, b in split(data)]
    want = [("192.0.2.30", "4444"), ("198.51.100.9", "9")]
    if worker == "sync":        # one request per connection
        want = want[:1]
    assert [(d["REMOTE_ADDR"], d["REMOTE_PORT"]) for d in got] == want


def test_packets_past_the_first_buffer(make_server):
    """Packets whose heads are longer than the packets, pipelined past the
    gthread worker's first buffer (16 KiB): all answered, none left in the
    socket until keep-alive expires."""
    s = start(make_server, "gthread", "--keep-alive", "30")
    pk = packet({"PATH_INFO": "/p", "HTTP_CONNECTION": "keep-alive", "HTTP_X_PAD": "p" * 1800})
    n = 16384 // len(pk) + 4
    with socket.create_connection(("127.0.0.1", s.port), timeout=5) as c:
        c.sendall(pk * n + packet({"PATH_INFO": "/end"}))
        data = b""
        while not data.endswith(b'"body": ""}') or data.count(b" 200 OK") < n + 1:
            d = c.recv(65536)
            assert d, data.count(b" 200 OK")
            data += d
    assert [json.loads(b)["PATH_INFO"] for _, _, b in split(data)] == ["/p"] * n + ["/end"]


def test_protocol_setting(make_server, tmp_path):
    from conftest import start_to_exit
    rc, log, left = start_to_exit("--protocol", "uwsgi2", APPS + ":wsgi")
    assert rc != 0 and "expected http or uwsgi" in log, log
    assert not left
    conf = tmp_path / "conf.py"
    conf.write_text("protocol = 'uwsgi'\nuwsgi_allow_ips = ['127.0.0.1']\n")
    s = make_server("-c", str(conf), "-w", "1", APPS + ":wsgi")
    [(st, _, body)] = split(raw_http(s.port, packet({"PATH_INFO": "/f"})))
    assert st == 200 and json.loads(body)["PATH_INFO"] == "/f"
    # the default speaks HTTP
    h = make_server("-w", "1", APPS + ":wsgi")
    assert split(raw_http(h.port, b"GET /h HTTP/1.0\r\n\r\n"))[0][0] == 200


NGINX_CONF = """\
daemon off;
master_process off;
pid {d}/nginx.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {d}/cb; proxy_temp_path {d}/pt; fastcgi_temp_path {d}/ft;
    uwsgi_temp_path {d}/ut; scgi_temp_path {d}/st;
    server {{
        listen 127.0.0.1:{port};
        location / {{ include /etc/nginx/uwsgi_params; uwsgi_pass 127.0.0.1:{upstream}; }}
    }}
}}
"""


@pytest.fixture
def nginx(tmp_path):
    """A real nginx in front: start(upstream_port) -> its port."""
    procs = []

    def start_nginx(upstream):
        d = tmp_path / ("nginx%d" % len(procs))
        d.mkdir()
        port = free_port()
        (d / "nginx.conf").write_text(NGINX_CONF.format(d=d, port=port, upstream=upstream))
        p = subprocess.Popen(["nginx", "-c", str(d / "nginx.conf"), "-p", str(d),
                              "-e", str(d / "error.log")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
        procs.append(p)
        wait_for(lambda: port_open(port) or p.poll() is not None, 10, what="nginx")
        assert p.poll() is None, (d / "error.log").read_text()
        return port

    yield start_nginx
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


@pytest.mark.parametrize("worker", WORKERS)
def test_behind_a_real_nginx(make_server, nginx, worker):
    s = start(make_server, worker)
    port = nginx(s.port)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        me = c.getsockname()
        c.sendall(b"POST /a%20b/c?q=%2F&r=1 HTTP/1.1\r\nHost: site.test\r\nX-Thing: yes\r\n"
                  b"Content-Type: text/plain\r\nContent-Length: 11\r\nConnection: close\r\n\r\n"
                  b"hello world")
        out = read_until_close(c)
    [(st, h, body)] = split(out)
    assert st == 200, out
    d = json.loads(body)
    assert d["REQUEST_METHOD"] == "POST" and d["PATH_INFO"] == "/a b/c"
    assert d["RAW_URI"] == "/a%20b/c?q=%2F&r=1" and d["QUERY_STRING"] == "q=%2F&r=1"
    assert d["HTTP_HOST"] == "site.test" and d["HTTP_X_THING"] == "yes"
    assert d["body"] == "hello world" and d["CONTENT_TYPE"] == "text/plain"
    # the client nginx saw: this socket, not nginx's own connection
    assert (d["REMOTE_ADDR"], d["REMOTE_PORT"]) == (me[0], str(me[1]))
    # a streamed response of unknown length arrives whole, without chunk framing
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        c.sendall(b"GET /stream HTTP/1.0\r\nHost: site.test\r\n\r\n")
        out = read_until_close(c)
    assert out.startswith(b"HTTP/1.1 200 ") and out.endswith(b"\r\n\r\none two HTTP/1.0"), out
