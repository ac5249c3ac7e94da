"""ASGI apps for tests/integration/test_asgi_ext.py: the ASGI extensions
the asgi worker serves (http.response.pathsend, websocket.http.response),
used as the spec says and misused.  Raw ASGI: Debian's Starlette (0.26)
predates both; newer Starlette's FileResponse sends what /file sends."""

import json
import os
import urllib.parse


def _query(scope):
    return dict(urllib.parse.parse_qsl(scope["query_string"].decode()))


async def _text(send, status, body, headers=()):
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain")] + list(headers)})
    await send({"type": "http.response.body", "body": body})


async def app(scope, receive, send):
    if scope["type"] == "websocket":
        return await websocket(scope, receive, send)
    if scope["type"] != "http":
        return
    q, route = _query(scope), scope["path"]
    if route == "/ext":
        ext = scope.get("extensions")
        await _text(send, 200, json.dumps(ext).encode())
    elif route == "/file":
        await send_file(scope, send, q)
    elif route == "/ticker":
        # the loop's longest pause while this waits in small sleeps
        import asyncio
        import time
        gap, last = 0.0, time.monotonic()
        for _ in range(int(q.get("n", "150"))):
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gap, last = max(gap, now - last), now
        await _text(send, 200, json.dumps({"max_gap": gap}).encode())
    elif route == "/before-start":
        await send({"type": "http.response.pathsend", "path": q["path"]})
    elif route == "/body-after":
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-length", str(os.path.getsize(q["path"])).encode())]})
        await send({"type": "http.response.pathsend", "path": q["path"]})
        await send({"type": "http.response.body", "body": b"more"})
    elif route == "/mixed":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        await send({"type": "http.response.pathsend", "path": q["path"]})
    elif route == "/twice":
        size = os.path.getsize(q["path"])
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-length", str(size).encode())]})
        await send({"type": "http.response.pathsend", "path": q["path"]})
        await send({"type": "http.response.pathsend", "path": q["path"]})
    else:
        await _text(send, 200, b"hello " + route.encode())


async def send_file(scope, send, q):
    """What Starlette's FileResponse sends when the server offers
    pathsend: the start with the file's length (?cl= says another, ?nocl
    none), then the path.  ?done=FILE is created once send() returned."""
    path = q["path"]
    headers = [(b"content-type", b"application/octet-stream")]
    if "cl" in q:
        headers.append((b"content-length", q["cl"].encode()))
    elif "nocl" not in q:
        headers.append((b"content-length", str(os.path.getsize(path)).encode()))
    await send({"type": "http.response.start", "status": int(q.get("status", "200")),
                "headers": headers})
    await send({"type": "http.response.pathsend", "path": path})
    if "done" in q:
        with open(q["done"], "w") as f:
            f.write("sent")


async def websocket(scope, receive, send):
    route = scope["path"]
    assert (await receive())["type"] == "websocket.connect"
    if route == "/deny":
        await send({"type": "websocket.http.response.start", "status": 403,
                    "headers": [(b"content-type", b"text/plain"), (b"x-why", b"not you")]})
        await send({"type": "websocket.http.response.body", "body": b"go away"})
    elif route == "/deny-streamed":
        await send({"type": "websocket.http.response.start", "status": 401, "headers": []})
        await send({"type": "websocket.http.response.body", "body": b"one,", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"two"})
    elif route == "/deny-after-accept":
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.http.response.start", "status": 403, "headers": []})
    elif route == "/accept-after-deny":
        await send({"type": "websocket.http.response.start", "status": 403, "headers": []})
        await send({"type": "websocket.accept"})
    elif route == "/deny-unfinished":
        await send({"type": "websocket.http.response.start", "status": 403, "headers": []})
        await send({"type": "websocket.http.response.body", "body": b"half", "more_body": True})
    else:
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": json.dumps(scope.get("extensions"))})
        await send({"type": "websocket.close"})
