"""ASGI apps for tests/integration/test_asgi*.py (-k asgi)."""

import asyncio
import json


async def hello(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"hello " + scope["path"].encode()})


def _jsonable(scope):
    out = {}
    for k, v in scope.items():
        if k == "headers":
            out[k] = [[n.decode("latin-1"), x.decode("latin-1")] for n, x in v]
        elif isinstance(v, bytes):
            out[k] = v.decode("latin-1")
        elif isinstance(v, tuple):
            out[k] = list(v)
        elif k == "state":
            out[k] = {a: repr(b) for a, b in v.items()}
        else:
            out[k] = v
    return out


async def scope_echo(scope, receive, send):
    """Answers the scope and every receive() message as JSON."""
    if scope["type"] != "http":
        return
    events, body = [], b""
    while True:
        m = await receive()
        events.append({"type": m["type"], "len": len(m.get("body", b"")),
                       "more_body": m.get("more_body")})
        body += m.get("body", b"")
        if not m.get("more_body"):
            break
    out = json.dumps({"scope": _jsonable(scope), "events": events,
                      "body": body.decode("latin-1")}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [[b"content-type", b"application/json"]]})
    await send({"type": "http.response.body", "body": out})


async def stream(scope, receive, send):
    """n chunks (?n=), no Content-Length: chunked."""
    if scope["type"] != "http":
        return
    qs = dict(p.split("=") for p in scope["query_string"].decode().split("&") if "=" in p)
    n = int(qs.get("n", "3"))
    await send({"type": "http.response.start", "status": 200, "headers": []})
    for i in range(n):
        await send({"type": "http.response.body", "body": b"chunk%d\n" % i, "more_body": True})
        await asyncio.sleep(0)
    await send({"type": "http.response.body", "body": b"", "more_body": False})


def _mark(path, text):
    import os
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.rename(path + ".tmp", path)   # the test sees it whole


async def until_disconnect(scope, receive, send):
    """Streams until the client goes; writes a marker file then."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"first\n", "more_body": True})
    m = await receive()  # the body (empty)
    m = await receive()  # waits for the disconnect
    import os
    path = os.environ.get("ASGI_MARKER")
    if path:
        _mark(path, m["type"])


async def unread(scope, receive, send):
    """Answers 401 without reading the request body (an auth check in
    front of an upload), after ?ms= milliseconds if given; with
    $ASGI_MARKER set, then calls receive() and writes the type of what it
    got there (http.disconnect: the response is complete)."""
    if scope["type"] != "http":
        return
    qs = dict(p.split("=") for p in scope["query_string"].decode().split("&") if "=" in p)
    if qs.get("ms"):
        await asyncio.sleep(int(qs["ms"]) / 1000)
    await send({"type": "http.response.start", "status": 401,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"no " + scope["path"].encode()})
    import os
    path = os.environ.get("ASGI_MARKER")
    if path:
        m = await receive()
        _mark(path, m["type"])


async def boom(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/late":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
    if scope["path"] == "/none":
        return
    raise ValueError("boom")


async def slow(scope, receive, send):
    """Answers after ?ms= milliseconds (for draining tests)."""
    if scope["type"] != "http":
        return
    qs = dict(p.split("=") for p in scope["query_string"].decode().split("&") if "=" in p)
    if qs.get("mark"):
        _mark(qs["mark"], "inside")
    await asyncio.sleep(int(qs.get("ms", "500")) / 1000)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"slow done"})


class LifespanApp:
    """Lifespan with state; startup fails when $ASGI_FAIL_STARTUP is set."""

    def __init__(self):
        self.events = []

    async def __call__(self, scope, receive, send):
        import os
        if scope["type"] == "lifespan":
            while True:
                m = await receive()
                if m["type"] == "lifespan.startup":
                    if os.environ.get("ASGI_FAIL_STARTUP"):
                        await send({"type": "lifespan.startup.failed",
                                    "message": "no database"})
                        return
                    scope["state"]["db"] = "connected"
                    await send({"type": "lifespan.startup.complete"})
                elif m["type"] == "lifespan.shutdown":
                    path = os.environ.get("ASGI_MARKER")
                    if path:
                        _mark(path, "shutdown")
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = json.dumps({"state": dict(scope.get("state", {}))}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})


lifespan = LifespanApp()


async def lifespan_raises(scope, receive, send):
    if scope["type"] == "lifespan":
        raise RuntimeError("lifespan not here")
    await hello(scope, receive, send)


async def ws_echo(scope, receive, send):
    """websocket: echo text and bytes; "close" -> close 4001; "who" -> the
    scope as JSON; "deny" in the path -> refused before the handshake.
    The disconnect code goes to $ASGI_MARKER."""
    import os
    if scope["type"] == "http":
        await hello(scope, receive, send)
        return
    if scope["type"] != "websocket":
        return
    m = await receive()
    assert m["type"] == "websocket.connect"
    if "deny" in scope["path"]:
        await send({"type": "websocket.close"})
        return
    sub = scope["subprotocols"][0] if scope["subprotocols"] else None
    await send({"type": "websocket.accept", "subprotocol": sub,
                "headers": [(b"x-ws", b"yes")]})
    while True:
        m = await receive()
        if m["type"] == "websocket.disconnect":
            path = os.environ.get("ASGI_MARKER")
            if path:
                _mark(path, str(m["code"]))
            return
        if m.get("text") == "close":
            await send({"type": "websocket.close", "code": 4001, "reason": "bye"})
            return
        if m.get("text") == "who":
            await send({"type": "websocket.send", "text": json.dumps(_jsonable(scope))})
        elif m.get("text") is not None:
            await send({"type": "websocket.send", "text": m["text"]})
        else:
            await send({"type": "websocket.send", "bytes": m["bytes"]})


async def body_steps(scope, receive, send):
    """Streams one line per http.request message as it gets it, so that a
    client can wait for the app to have a piece before sending the next."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    while True:
        m = await receive()
        await send({"type": "http.response.body", "more_body": True,
                    "body": ("got %d more=%s\n" % (len(m.get("body", b"")),
                                                      m.get("more_body"))).encode()})
        if not m.get("more_body"):
            break
    await send({"type": "http.response.body", "body": b"end\n"})


async def spawner(scope, receive, send):
    """Starts `sleep 30`; answers its pid (signal mask test)."""
    if scope["type"] != "http":
        return
    import subprocess
    p = subprocess.Popen(["sleep", "30"])
    body = str(p.pid).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
