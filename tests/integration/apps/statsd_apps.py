"""Apps for test_statsd.py, one WSGI and one ASGI with the same routes:

  /                      200 "OK"
  /missing               404
  /boom                  the app raises: gunicorn's 500 page
  /sleep?ms=N            200 after N milliseconds
  /hold?mark=M&until=U   creates file M once inside the request, then
                         waits (at most 20 s) for file U to exist: a test
                         holds the one sync worker as long as it needs

The ASGI app accepts a websocket and closes it at once.
"""
import asyncio
import os
import time
from urllib.parse import parse_qs


def _query(qs):
    return {k: v[0] for k, v in parse_qs(qs).items()}


def _hold(q):
    open(q["mark"], "w").close()
    deadline = time.monotonic() + 20
    while not os.path.exists(q["until"]) and time.monotonic() < deadline:
        time.sleep(0.01)


def app(environ, start_response):
    path, q = environ["PATH_INFO"], _query(environ.get("QUERY_STRING", ""))
    if path == "/boom":
        raise RuntimeError("boom")
    if path == "/missing":
        start_response("404 Not Found", [("Content-Length", "0")])
        return [b""]
    if path == "/sleep":
        time.sleep(int(q["ms"]) / 1000)
    elif path == "/hold":
        _hold(q)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"OK"]


async def asgi_app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            await send({"type": msg["type"] + ".complete"})
            if msg["type"] == "lifespan.shutdown":
                return
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 1000})
        return
    path, q = scope["path"], _query(scope["query_string"].decode())
    if path == "/boom":
        raise RuntimeError("boom")
    status = 404 if path == "/missing" else 200
    if path == "/sleep":
        await asyncio.sleep(int(q["ms"]) / 1000)
    elif path == "/hold":
        await asyncio.get_running_loop().run_in_executor(None, _hold, q)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"OK" if status == 200 else b""})
