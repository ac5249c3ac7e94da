"""The SSE benchmark's apps (bench/sse.py): a dirty app that yields
server-sent events stamped with the time each was produced; a WSGI app
that returns client.stream(...) as its body (relayed by the gthread
worker's event loop); a FastAPI app that streams the same tokens with
stream_async() (the asgi worker, the client on its event loop)."""
import time

from gunicorn.dirty import DirtyApp, get_dirty_client


class Tokens(DirtyApp):
    def generate(self, n, delay):
        for i in range(n):
            time.sleep(delay)
            yield b"data: %d %.6f\n\n" % (i, time.time())


def application(environ, start_response):
    q = dict(p.split("=") for p in environ.get("QUERY_STRING", "").split("&") if "=" in p)
    start_response("200 OK", [("Content-Type", "text/event-stream")])
    return get_dirty_client().stream("sse_app:Tokens", "generate",
                                     int(q.get("n", 10)), float(q.get("delay", 0.1)))


try:
    from fastapi import FastAPI
    from fastapi.responses import StreamingResponse
except ImportError:     # the gthread half runs without FastAPI
    FastAPI = None

if FastAPI is not None:
    api = FastAPI()

    @api.get("/")
    async def tokens(n: int = 10, delay: float = 0.1):
        from gunicorn.dirty import get_dirty_client_async
        client = await get_dirty_client_async()
        return StreamingResponse(client.stream_async("sse_app:Tokens", "generate", n, delay),
                                 media_type="text/event-stream")


async def raw(scope, receive, send):
    """The same stream from a bare ASGI callable (no framework): what the
    server and the async dirty client cost without Starlette's."""
    if scope["type"] != "http":
        return
    from gunicorn.dirty import get_dirty_client_async
    q = dict(p.split(b"=") for p in scope["query_string"].split(b"&") if b"=" in p)
    client = await get_dirty_client_async()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/event-stream")]})
    async for chunk in client.stream_async("sse_app:Tokens", "generate",
                                           int(q.get(b"n", 10)), float(q.get(b"delay", 0.1))):
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})
