"""ASGI app for tests/integration/test_asgi_ext_order.py: bodies that
fill the transport's buffer, and http.response.pathsend right behind
them on the same connection.  /bigbody: BIG bytes in one
http.response.body; /body40k: 40 KiB in one; /file?path=P: pathsend of P
with its length."""

import os
import urllib.parse

BIG = 64 << 20
BODY40K = b"b" * (40 << 10)


def big_body():
    """BIG bytes that say where they are: 64 KiB blocks, each numbered."""
    fill = b"." * ((64 << 10) - 16)
    return b"".join(b"%015d\n" % i + fill for i in range(BIG >> 16))


_big = None


async def app(scope, receive, send):
    global _big
    if scope["type"] != "http":
        return
    route = scope["path"]
    if route == "/file":
        path = dict(urllib.parse.parse_qsl(scope["query_string"].decode()))["path"]
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-length", str(os.path.getsize(path)).encode())]})
        await send({"type": "http.response.pathsend", "path": path})
        return
    if route == "/bigbody":
        if _big is None:
            _big = big_body()
        body = _big
    else:
        body = BODY40K
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
