"""ASGI app for tests/integration/test_asgi_tls.py (-k asgi with
certfile): what the app sees of a TLS connection, and every way of
sending and receiving over it.

  /scope            the scope as JSON (scheme, client, headers...)
  /hash             reads the body in its pieces; answers its sha256, its
                    length and how many http.request messages it took
  /file?path=P      http.response.pathsend of P (Content-Length: its size)
  /stream?n=N       N chunks of 64 KiB (chunked), each its index's byte
  /wait?mark=F      creates F, then waits for http.disconnect
  websocket         scheme as the first message, then echoes text/bytes
"""

import hashlib
import json
import os
import urllib.parse


async def app(scope, receive, send):
    if scope["type"] == "websocket":
        return await ws(scope, receive, send)
    if scope["type"] != "http":
        return
    q = dict(urllib.parse.parse_qsl(scope["query_string"].decode()))
    path = scope["path"]
    if path == "/hash":
        h, n, msgs = hashlib.sha256(), 0, 0
        while True:
            m = await receive()
            msgs += 1
            h.update(m.get("body", b""))
            n += len(m.get("body", b""))
            if not m.get("more_body"):
                break
        await _json(send, {"sha256": h.hexdigest(), "len": n, "messages": msgs})
    elif path == "/file":
        size = os.path.getsize(q["path"])
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"application/octet-stream"),
            (b"content-length", str(size).encode())]})
        await send({"type": "http.response.pathsend", "path": q["path"]})
    elif path == "/wait":
        open(q["mark"], "w").close()
        while (await receive())["type"] != "http.disconnect":
            pass
    elif path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for i in range(int(q.get("n", "4"))):
            await send({"type": "http.response.body", "body": bytes([i % 256]) * 65536,
                        "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    else:
        await _json(send, {"scheme": scope["scheme"], "path": path,
                           "client": list(scope["client"] or ()),
                           "extensions": sorted(scope.get("extensions") or {}),
                           "headers": [[k.decode(), v.decode()] for k, v in scope["headers"]]})


async def _json(send, obj):
    body = json.dumps(obj).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def ws(scope, receive, send):
    m = await receive()
    assert m["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": scope["scheme"]})
    while True:
        m = await receive()
        if m["type"] == "websocket.disconnect":
            return
        if m.get("text") is not None:
            await send({"type": "websocket.send", "text": m["text"]})
        else:
            await send({"type": "websocket.send", "bytes": m["bytes"]})
