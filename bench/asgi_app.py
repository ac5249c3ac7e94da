"""Apps for bench/asgi.py: a raw ASGI hello callable and a FastAPI route."""

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


api = FastAPI()


@api.get("/", response_class=PlainTextResponse)
async def root():
    return "Hello, World!"
