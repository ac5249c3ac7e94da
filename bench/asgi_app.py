"""Apps for bench/asgi.py: a raw ASGI hello callable and a FastAPI route
(and, for bench/asgi_instr.py, the hello that waits once first)."""

import asyncio

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

BODY = b"Hello, World!"


async def hello(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"),
                            (b"content-length", b"13")]})
    await send({"type": "http.response.body", "body": BODY})


async def hello_waits(scope, receive, send):
    """hello, after one loop iteration: the eager first step waits."""
    await asyncio.sleep(0)
    await hello(scope, receive, send)


api = FastAPI()


@api.get("/", response_class=PlainTextResponse)
async def root():
    return "Hello, World!"


class Echo:
    """A dirty app (cunicorn --dirty-app asgi_app:Echo): one call per request."""

    def __init__(self):
        pass

    def __call__(self, action, *args, **kwargs):
        return getattr(self, action)(*args, **kwargs)

    def init(self):
        pass

    def close(self):
        pass

    def echo(self, value):
        return value


@api.get("/dirty", response_class=PlainTextResponse)
async def dirty():
    from gunicorn.dirty import get_dirty_client_async
    client = await get_dirty_client_async()
    return await client.execute_async("asgi_app:Echo", "echo", "Hello, World!")
