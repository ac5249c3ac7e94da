"""permessage-deflate (RFC 7692) on the asgi worker's websockets, and the
websocket lines of the access log.

python3-websockets offers permessage-deflate by default: round trips of
text, binary, large and fragmented messages go compressed both ways.  Raw
sockets check the wire: RSV1 on our compressed frames, context takeover
(and its absence when the client asks), the negotiation's answers and
refusals, and the failures — a compressed bomb closes with 1009 without
the worker growing past the limit, undecodable data with 1007, RSV1
without an agreement or on a continuation with 1002."""

import base64
import os
import socket
import struct
import zlib

import pytest
import websockets

from conftest import http_get, wait_for
from wskit import run, ws_server

TAIL = b"\x00\x00\xff\xff"


def test_websockets_client_round_trips_compressed(make_server):
    s = ws_server(make_server)

    async def go():
        async with websockets.connect("ws://127.0.0.1:%d/" % s.port, max_size=None) as ws:
            assert ws.response_headers["Sec-WebSocket-Extensions"] == "permessage-deflate"
            for msg in ["h\u00e9llo", b"\x00\x01\xff", "", b"",
                        "x" * 5_000_000,                      # inflates to 5 MB
                        os.urandom(400_000),                  # does not compress
                        b"abc" * 100_000]:
                await ws.send(msg)
                assert await ws.recv() == msg
            # fragmented by the client: RSV1 on the first frame only
            await ws.send(["frag", "mented ", "compressed"] * 50)
            assert await ws.recv() == "fragmented compressed" * 50
            # many small messages: context taken over both ways
            for i in range(200):
                text = '{"event": "tick", "n": %d, "pad": "%s"}' % (i, "ab" * 40)
                await ws.send(text)
                assert await ws.recv() == text
    run(go())
    assert http_get(s.port, "/after")[2] == b"hello /after"


def mask_frame(b0, payload):
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", b0, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", b0, 0x80 | 127, n)
    key = os.urandom(4)
    masked = bytes(c ^ key[i % 4] for i, c in enumerate(payload)) if n < 100000 else \
        (int.from_bytes(payload, "big") ^ int.from_bytes((key * (n // 4 + 1))[:n], "big")
         ).to_bytes(n, "big")
    return head + key + masked


class Raw:
    """A websocket over a raw socket that offers `extensions`."""

    def __init__(self, port, extensions=b"permessage-deflate"):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        key = base64.b64encode(os.urandom(16))
        ext = b"Sec-WebSocket-Extensions: " + extensions + b"\r\n" if extensions else b""
        self.sock.sendall(b"GET /raw HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                          b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key +
                          b"\r\nSec-WebSocket-Version: 13\r\n" + ext + b"\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            d = self.sock.recv(4096)
            assert d, head
            head += d
        self.head, self.buf = head.split(b"\r\n\r\n", 1)
        assert self.head.startswith(b"HTTP/1.1 101"), self.head
        self.agreed = None
        for line in self.head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"sec-websocket-extensions":
                self.agreed = value.strip()
        self.comp = zlib.compressobj(wbits=-15)
        self.decomp = zlib.decompressobj(wbits=-15)

    def send_compressed(self, data, opcode=0x1):
        z = self.comp.compress(data) + self.comp.flush(zlib.Z_SYNC_FLUSH)
        assert z.endswith(TAIL)
        self.sock.sendall(mask_frame(0xc0 | opcode, z[:-4]))

    def _need(self, n):
        while len(self.buf) < n:
            d = self.sock.recv(65536)
            if not d:
                raise EOFError(self.buf)
            self.buf += d

    def frame(self):
        """(b0, payload) of the next server frame."""
        self._need(2)
        b0, n = self.buf[0], self.buf[1] & 0x7f
        h = 2
        if n == 126:
            self._need(4)
            n, h = struct.unpack("!H", self.buf[2:4])[0], 4
        elif n == 127:
            self._need(10)
            n, h = struct.unpack("!Q", self.buf[2:10])[0], 10
        self._need(h + n)
        payload, self.buf = self.buf[h:h + n], self.buf[h + n:]
        return b0, payload

    def message(self):
        """(compressed?, the wire length, the message) of the next one."""
        b0, payload = self.frame()
        assert b0 & 0x80, "we send messages whole"
        if b0 & 0x40:
            return True, len(payload), self.decomp.decompress(payload + TAIL)
        return False, len(payload), payload

    def close_code(self):
        while True:
            try:
                b0, payload = self.frame()
            except (EOFError, ConnectionResetError, socket.timeout):
                raise AssertionError("no close frame")
            if b0 & 0x0f == 0x8:
                return struct.unpack("!H", payload[:2])[0]


def test_our_frames_carry_rsv1_and_take_context_over(make_server):
    s = ws_server(make_server)
    c = Raw(s.port)
    assert c.agreed == b"permessage-deflate"
    text = b'{"price": 12.5, "symbol": "ACME", "note": "' + b"ab" * 100 + b'"}'
    c.send_compressed(text)
    deflated, first, got = c.message()
    assert deflated and got == text and first < len(text)
    c.send_compressed(text)            # our side of the client's window
    deflated, second, got = c.message()
    assert deflated and got == text
    assert second < first / 3, (first, second)   # our window remembered it
    # a binary message compressed by the client across its own window
    c.send_compressed(b"\x00" * 1000 + text, opcode=0x2)
    deflated, _, got = c.message()
    assert deflated and got == b"\x00" * 1000 + text
    # an uncompressed message is still fine
    c.sock.sendall(mask_frame(0x81, b"plain"))
    assert c.message()[2] == b"plain"
    c.sock.close()


def test_no_context_takeover_and_window_bits(make_server):
    s = ws_server(make_server)
    c = Raw(s.port, b"permessage-deflate; server_no_context_takeover; "
                    b"client_no_context_takeover; server_max_window_bits=10")
    assert c.agreed == (b"permessage-deflate; server_no_context_takeover; "
                        b"client_no_context_takeover; server_max_window_bits=10")
    text = b"the same words again and again " * 10
    sizes = []
    for _ in range(3):
        # the client resets too (it agreed not to take context over)
        c.comp = zlib.compressobj(wbits=-15)
        c.send_compressed(text)
        deflated, n, got = c.message()
        c.decomp = zlib.decompressobj(wbits=-10)   # each one alone, window 2^10
        assert deflated and got == text
        sizes.append(n)
    assert sizes[0] == sizes[1] == sizes[2]
    c.sock.close()

    # 8 bits cannot be honoured: that offer is declined, the next one taken
    c = Raw(s.port, b"permessage-deflate; server_max_window_bits=8, "
                    b"permessage-deflate; client_max_window_bits")
    assert c.agreed == b"permessage-deflate"
    c.sock.close()
    for offer in [b"permessage-deflate; server_max_window_bits=8",
                  b"permessage-deflate; unknown_param",
                  b"permessage-deflate; server_no_context_takeover=yes",
                  b"x-webkit-deflate-frame"]:
        c = Raw(s.port, offer)
        assert c.agreed is None, offer
        c.sock.sendall(mask_frame(0x81, b"plain"))
        assert c.message() == (False, 5, b"plain")
        c.sock.close()


def check_closed_with(s, c, code, marker):
    assert c.close_code() == code
    c.sock.close()
    wait_for(lambda: os.path.exists(marker), 10, what="the app's disconnect")
    with open(marker) as f:
        assert f.read() == str(code)
    os.unlink(marker)
    assert http_get(s.port, "/after")[2] == b"hello /after"


def test_compressed_bomb_closes_1009(make_server, tmp_path):
    marker = str(tmp_path / "code")
    s = ws_server(make_server, env={"ASGI_MARKER": marker})
    # 64 MiB of zeros in ~64 KiB: past the 16 MiB limit once inflated
    c = Raw(s.port)
    comp = zlib.compressobj(9, wbits=-15)
    z = b"".join(comp.compress(b"\x00" * (1 << 20)) for _ in range(64))
    z += comp.flush(zlib.Z_SYNC_FLUSH)
    assert len(z) < 100_000
    c.sock.sendall(mask_frame(0xc2, z[:-4]))
    check_closed_with(s, c, 1009, marker)
    # the same bomb spread over fragments
    c = Raw(s.port)
    body = z[:-4]
    c.sock.sendall(mask_frame(0x42, body[:1000]))
    for i in range(1000, len(body), 5000):
        c.sock.sendall(mask_frame(0x80 if i + 5000 >= len(body) else 0x00, body[i:i + 5000]))
    check_closed_with(s, c, 1009, marker)


def test_deflate_protocol_errors(make_server, tmp_path):
    marker = str(tmp_path / "code")
    s = ws_server(make_server, env={"ASGI_MARKER": marker})
    # RSV1 without an agreement
    c = Raw(s.port, None)
    assert c.agreed is None
    c.sock.sendall(mask_frame(0xc1, b"\xf2\x48\xcd\xc9\xc9\x07\x00"))
    check_closed_with(s, c, 1002, marker)
    # RSV1 on a continuation frame
    c = Raw(s.port)
    c.sock.sendall(mask_frame(0x41, b"\xf2\x48") + mask_frame(0xc0, b"\xcd\xc9"))
    check_closed_with(s, c, 1002, marker)
    # not DEFLATE at all
    c = Raw(s.port)
    c.sock.sendall(mask_frame(0xc1, b"\xff\xff\xff\xff"))
    check_closed_with(s, c, 1007, marker)
    # valid DEFLATE, invalid UTF-8 in a text message
    c = Raw(s.port)
    c.send_compressed(b"\xff\xfe")
    check_closed_with(s, c, 1007, marker)


def test_websocket_access_log_lines(make_server):
    s = ws_server(make_server, "--access-logfile", "-", "--access-logformat",
                  '%(h)s "%(r)s" %(s)s %(b)s "%(a)s" <%({x-ws}o)s>')

    async def go():
        async with websockets.connect("ws://127.0.0.1:%d/chat?room=1" % s.port,
                                      user_agent_header="wsclient/1") as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello"
        with pytest.raises(websockets.InvalidStatusCode):
            await websockets.connect("ws://127.0.0.1:%d/deny" % s.port)
    run(go())
    s.wait_log('127.0.0.1 "GET /chat?room=1 HTTP/1.1" 101 ')
    line = [l for l in s.log().splitlines() if "/chat?room=1" in l][0]
    sent = int(line.split(" 101 ")[1].split()[0])
    assert 0 < sent < 10            # "hello", compressed
    assert line.endswith('"wsclient/1" <yes>')
    s.wait_log('127.0.0.1 "GET /deny HTTP/1.1" 403 ')
    # one line each
    assert s.log().count("/chat?room=1") == 1
