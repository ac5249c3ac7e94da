"""WebSockets (RFC 6455) on the ASGI worker: the handshake, text and
binary messages, fragmentation, ping/pong, close codes both ways, a
refused handshake, and malformed frames from raw sockets (each closed
with a clear code while the worker serves on).  The client is Debian's
python3-websockets."""

import asyncio
import base64
import json
import os
import socket
import struct

import pytest
import websockets

from conftest import http_get, wait_for
from wskit import run, ws_server



def test_echo_text_binary_large_and_subprotocol(make_server):
    s = ws_server(make_server)

    async def go():
        async with websockets.connect("ws://127.0.0.1:%d/chat?room=1" % s.port,
                                      subprotocols=["chat.v1", "other"],
                                      max_size=None) as ws:
            assert ws.subprotocol == "chat.v1"
            assert ws.response_headers["x-ws"] == "yes"
            await ws.send("h\u00e9llo")
            assert await ws.recv() == "h\u00e9llo"
            await ws.send(b"\x00\x01\xff")
            assert await ws.recv() == b"\x00\x01\xff"
            big = os.urandom(300000)
            await ws.send(big)
            assert await ws.recv() == big
            await ws.send(["frag", "mented", " message"])     # fragmented by the client
            assert await ws.recv() == "fragmented message"
            pong = await ws.ping(b"pp")
            await asyncio.wait_for(pong, 5)
            await ws.send("who")
            scope = json.loads(await ws.recv())
            assert scope["type"] == "websocket" and scope["scheme"] == "ws"
            assert scope["path"] == "/chat" and scope["query_string"] == "room=1"
            assert scope["subprotocols"] == ["chat.v1", "other"]
            assert "method" not in scope
    run(go())
    assert http_get(s.port, "/x")[2] == b"hello /x"


def test_close_codes_both_ways(make_server, tmp_path):
    marker = str(tmp_path / "code")
    s = ws_server(make_server, env={"ASGI_MARKER": marker})

    async def server_closes():
        async with websockets.connect("ws://127.0.0.1:%d/" % s.port) as ws:
            await ws.send("close")
            with pytest.raises(websockets.ConnectionClosed):
                await ws.recv()
            assert ws.close_code == 4001 and ws.close_reason == "bye"

    async def client_closes():
        ws = await websockets.connect("ws://127.0.0.1:%d/" % s.port)
        await ws.close(code=4321, reason="done")
        assert ws.close_code == 4321
    run(server_closes())
    run(client_closes())
    wait_for(lambda: os.path.exists(marker), 10, what="websocket.disconnect in the app")
    with open(marker) as f:
        assert f.read() == "4321"


def test_refused_handshake_is_403(make_server):
    s = ws_server(make_server)

    async def go():
        with pytest.raises(websockets.InvalidStatusCode) as e:
            await websockets.connect("ws://127.0.0.1:%d/deny" % s.port)
        assert e.value.status_code == 403
    run(go())


def handshake(port):
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    key = base64.b64encode(os.urandom(16))
    sock.sendall(b"GET /raw HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key +
                 b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        d = sock.recv(4096)
        assert d, head
        head += d
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock, head.split(b"\r\n\r\n", 1)[1]


def frame(opcode, payload, fin=True, mask=True, rsv=0):
    b0 = (0x80 if fin else 0) | rsv | opcode
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", b0, (0x80 if mask else 0) | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, (0x80 if mask else 0) | 126, n)
    else:
        head = struct.pack("!BBQ", b0, (0x80 if mask else 0) | 127, n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(c ^ key[i % 4] for i, c in enumerate(payload))


def close_code(sock, rest=b""):
    data = rest
    while True:
        try:
            d = sock.recv(65536)
        except (ConnectionResetError, socket.timeout):
            break
        if not d:
            break
        data += d
    i = data.find(b"\x88")     # the close frame (server frames are unmasked)
    assert i >= 0, data
    return struct.unpack("!H", data[i + 2:i + 4])[0]


@pytest.mark.parametrize("bad,code", [
    (frame(0x1, b"x", mask=False), 1002),
    (frame(0x1, b"x", rsv=0x40), 1002),
    (frame(0x3, b"x"), 1002),
    (frame(0x9, b"p" * 126), 1002),
    (frame(0x9, b"p", fin=False), 1002),
    (frame(0x0, b"x"), 1002),
    (frame(0x1, b"a", fin=False) + frame(0x1, b"b"), 1002),
    (frame(0x1, b"\xff\xfe"), 1007),
    (frame(0x8, b"\x00"), 1002),
    (frame(0x8, struct.pack("!H", 999)), 1002),
    (struct.pack("!BBQ", 0x82, 0x80 | 127, 1 << 40) + b"mask", 1009),
], ids=["unmasked", "rsv", "opcode", "long-control", "fragmented-control",
        "orphan-continuation", "message-in-message", "bad-utf8", "short-close",
        "bad-close-code", "too-big"])
def test_malformed_frames_close_with_a_clear_code(make_server, tmp_path, bad, code):
    marker = str(tmp_path / "code")
    s = ws_server(make_server, env={"ASGI_MARKER": marker})
    sock, rest = handshake(s.port)
    sock.sendall(bad)
    assert close_code(sock, rest) == code
    sock.close()
    wait_for(lambda: os.path.exists(marker), 10, what="the app's disconnect")
    with open(marker) as f:
        assert f.read() == str(code)
    assert http_get(s.port, "/after")[2] == b"hello /after"


def test_ping_gets_pong_and_bad_handshakes(make_server):
    s = ws_server(make_server)
    sock, rest = handshake(s.port)
    sock.sendall(frame(0x9, b"hi"))
    data = rest
    while len(data) < 4:
        d = sock.recv(100)
        assert d, data
        data += d
    assert data[:4] == b"\x8a\x02hi"
    sock.close()
    from conftest import raw_http
    out = raw_http(s.port, b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                   b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400")
    out = raw_http(s.port, b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                   b"Connection: Upgrade\r\nSec-WebSocket-Key: " + base64.b64encode(b"k" * 16)
                   + b"\r\nSec-WebSocket-Version: 8\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 426") and b"Sec-WebSocket-Version: 13" in out


def test_term_closes_open_websockets_going_away(make_server):
    import signal
    s = ws_server(make_server, "--graceful-timeout", "20")

    async def go():
        async with websockets.connect("ws://127.0.0.1:%d/" % s.port) as ws:
            await ws.send("a")
            assert await ws.recv() == "a"
            s.send(signal.SIGTERM)
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            return ws.close_code
    assert run(go()) == 1001
    assert s.wait(10) == 0
