"""Starlette and FastAPI apps (Debian's packages) for
test_asgi_frameworks.py, run by -k asgi with --chdir apps/.

  asgi_frameworks:starlette_app  lifespan with state, path params, streaming
  asgi_frameworks:fastapi_app    params, JSON, form, upload, streaming,
                                 background tasks, the async dirty client
                                 (execute_async, stream_async as SSE)
"""
import asyncio
import contextlib
import json
import os
import time

from fastapi import BackgroundTasks, FastAPI, File, Form, UploadFile
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.responses import StreamingResponse as SStreamingResponse
from starlette.routing import Route

from gunicorn.dirty import get_dirty_client_async
from gunicorn.dirty.errors import DirtyError

STREAMER = "stream_apps:Streamer"


# ---- Starlette ------------------------------------------------------------

@contextlib.asynccontextmanager
async def lifespan(app):
    yield {"started_at": time.time(), "pid": os.getpid()}
    marker = os.environ.get("ASGI_MARKER")
    if marker:
        with open(marker + ".tmp", "w") as f:
            f.write("shutdown")
        os.rename(marker + ".tmp", marker)


async def s_state(request):
    return JSONResponse({"pid": request.state.pid,
                         "has_started": request.state.started_at > 0})


async def s_user(request):
    return PlainTextResponse("user %s" % request.path_params["name"])


async def s_stream(request):
    async def gen():
        for i in range(4):
            yield "part %d\n" % i
            await asyncio.sleep(0.01)
    return SStreamingResponse(gen(), media_type="text/plain")


starlette_app = Starlette(routes=[
    Route("/state", s_state),
    Route("/user/{name}", s_user),
    Route("/stream", s_stream),
], lifespan=lifespan)


# ---- FastAPI --------------------------------------------------------------

fastapi_app = FastAPI()


class Item(BaseModel):
    name: str
    price: float
    tags: list = []


@fastapi_app.get("/hello")
async def hello():
    return {"hello": "world"}


@fastapi_app.get("/items/{item_id}")
async def read_item(item_id: int, q: str = None):
    return {"item_id": item_id, "q": q}


@fastapi_app.post("/items")
async def create_item(item: Item):
    return {"name": item.name, "total": item.price * 2, "tags": item.tags}


@fastapi_app.post("/form")
async def form(user: str = Form(...), age: int = Form(...)):
    return {"user": user, "age": age}


@fastapi_app.post("/upload")
async def upload(file: UploadFile = File(...), note: str = Form("")):
    data = await file.read()
    return {"filename": file.filename, "size": len(data), "note": note,
            "head": data[:5].decode("latin-1")}


@fastapi_app.get("/stream")
async def stream(n: int = 5):
    async def gen():
        for i in range(n):
            yield b"tok%d " % i
            await asyncio.sleep(0)
    return StreamingResponse(gen(), media_type="text/plain")


def _write_marker(path, text):
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.rename(path + ".tmp", path)


@fastapi_app.get("/background")
async def background(tasks: BackgroundTasks, path: str):
    tasks.add_task(_write_marker, path, "done")
    return {"queued": True}


@fastapi_app.get("/dirty/pid")
async def dirty_pid():
    client = await get_dirty_client_async()
    return {"pid": await client.execute_async(STREAMER, "pid")}


@fastapi_app.get("/dirty/error")
async def dirty_error():
    client = await get_dirty_client_async()
    try:
        await client.execute_async(STREAMER, "no_such_action")
    except DirtyError as e:
        return {"error": type(e).__name__}
    return {"error": None}


@fastapi_app.get("/dirty/sse")
async def dirty_sse(n: int = 5, delay: float = 0.05):
    client = await get_dirty_client_async()

    async def events():
        async for chunk in client.stream_async(STREAMER, "slow", n, delay):
            yield "data: %s\n\n" % json.dumps({"i": chunk["i"], "t": chunk["t"]})
        yield "event: end\ndata: {}\n\n"
    return StreamingResponse(events(), media_type="text/event-stream")


@fastapi_app.get("/dirty/endless")
async def dirty_endless(tag: str):
    client = await get_dirty_client_async()

    async def events():
        async for i in client.stream_async(STREAMER, "endless", tag, 0.02):
            yield "data: %d\n\n" % i
    return StreamingResponse(events(), media_type="text/event-stream")
