"""http.response.pathsend in order behind what the transport still holds
(src/asgi_file.c): the response's head goes straight to the socket only
when the transport holds nothing (send_head), and the file's bytes only
once the transport's buffer is empty (file_send); else they overtake a
body, or the file's own head, still queued in the transport.

What reaches both checks on either loop: one kept-alive connection with
a 16 KiB receive buffer pipelining a 64 MiB body (the app's send()
returns once the transport is below its low-water mark, not empty), then
many times a 40 KiB body (below the high-water mark: queued behind the
rest, send() does not wait) and a small file.  The client's small window
frees the server's socket a little at a time, so the transport often
still holds bytes while the socket could take some: a file sent then
without the checks lands inside the body before it (seen within the
first 40 rounds).  Every response must come byte-exact and in order.
App: apps/asgi_ext_order_apps.py."""

import socket

import pytest

from httpraw import Connection, get
from tests.integration.apps.asgi_ext_order_apps import BIG, BODY40K, big_body

APP = "tests.integration.apps.asgi_ext_order_apps:app"
FILE = b"hello, file\n"
ROUNDS = 200


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_pathsend_never_overtakes_the_transports_buffer(make_server, tmp_path, loop):
    small = tmp_path / "small"
    small.write_bytes(FILE)
    s = make_server("-k", "asgi", "-w", "1", "--asgi-loop", loop, APP)
    reqs = get("/bigbody") + (get("/body40k") + get("/file?path=%s" % small)) * ROUNDS
    with Connection(s.port) as c:
        c.sock.close()      # again, with the small buffer set before connecting
        c.sock = socket.socket()
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 10)   # before the window
        c.sock.settimeout(10)
        c.sock.connect(("127.0.0.1", s.port))
        c.send(reqs)
        status, _, body = c.response()
        assert status == 200 and len(body) == BIG
        assert body == big_body(), "the 64 MiB body is not byte-exact"
        for i in range(ROUNDS):
            status, _, body = c.response()
            assert (status, body) == (200, BODY40K), "round %d: the 40 KiB body" % i
            status, h, body = c.response()
            assert (status, body) == (200, FILE), "round %d: the file" % i
            assert h["content-length"] == str(len(FILE))
    assert "Exception" not in s.log() and "ERROR" not in s.log()
