"""Apps for test_asgi_eager.py: what running the app's first step inside
data_received (the eager start, src/asgi_proto.c) could break."""

import asyncio
import contextvars
import json
import os

REQ = contextvars.ContextVar("req", default="unset")


def _mark(path, text):
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.rename(path + ".tmp", path)


async def _json(send, obj, status=200):
    body = json.dumps(obj).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


async def ctxvars(scope, receive, send):
    """Reads REQ (never set by an earlier request), sets it to the path,
    optionally waits (?wait), reads it again; also the current task's
    identity before and after the wait."""
    if scope["type"] != "http":
        return
    before = REQ.get()
    REQ.set(scope["path"])
    t0 = asyncio.current_task()
    if scope["query_string"] == b"wait":
        await asyncio.sleep(0.01)
    await _json(send, {"before": before, "after": REQ.get(),
                       "task": t0 is not None, "same_task": asyncio.current_task() is t0})


async def steps(scope, receive, send):
    """Exceptions and waits around the first await, by path."""
    if scope["type"] != "http":
        return
    p = scope["path"]
    if p == "/raise-now":
        raise ValueError("eager-boom")
    if p == "/raise-after-await":
        await asyncio.sleep(0.01)
        raise ValueError("late-boom")
    if p == "/sleep-then-answer":
        await asyncio.sleep(0.02)
        return await _json(send, {"slept": True})
    if p == "/timeout-scope":
        async with asyncio.timeout(5):          # current_task().cancelling()
            await asyncio.sleep(0.01)
        return await _json(send, {"timeout_scope": "ok"})
    if p == "/anyio-scope":
        import anyio
        with anyio.CancelScope():                # entered in the eager step
            await anyio.sleep(0.01)              # left after a suspension
        return await _json(send, {"anyio_scope": "ok"})
    if p == "/cancelled-wait":
        # a wait that the app itself cancels: CancelledError reaches it
        t = asyncio.current_task()
        asyncio.get_running_loop().call_later(0.01, t.cancel)
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            return await _json(send, {"cancelled": True})
    await _json(send, {"path": p})


AWAITED = {}


async def awaits(scope, receive, send):
    """receive() and send() awaited every way an app can: `await`, as a
    future (ensure_future, wait_for), by hand through __await__(), and
    called with the wrong arguments; what each gave is kept in AWAITED
    (after the response, since a receive() then answers at once), and
    GET /report answers with it.  AWAITED is emptied before the response
    starts, so a /report that comes before this request has filled it
    in answers {} (the test asks again), never an earlier request's."""
    if scope["type"] != "http":
        return
    if scope["path"] == "/report":
        return await _json(send, AWAITED)
    AWAITED.clear()
    got = {}
    it = receive().__await__()                  # by hand: StopIteration(message)
    try:
        next(it)
    except StopIteration as e:
        got["by_hand"] = [e.value["type"], e.value["body"].decode()]
    for name, call in (("send_none", lambda: send()), ("send_two", lambda: send({}, {})),
                       ("receive_two", lambda: receive(1, 2))):
        try:
            call()
        except TypeError as e:
            got[name] = str(e)
    got["send_kw"] = "called"
    try:
        send(message={"type": "x"})
    except TypeError as e:
        got["send_kw"] = str(e)
    got["sent"] = [
        await asyncio.ensure_future(send({"type": "http.response.start", "status": 200,
                                          "headers": [(b"content-length", b"2")]})),
        await asyncio.wait_for(send({"type": "http.response.body", "body": b"o",
                                     "more_body": True}), 5)]
    it = send({"type": "http.response.body", "body": b"k"}).__await__()
    try:
        next(it)
    except StopIteration as e:
        got["sent"].append(e.value)
    r = receive()                               # complete: http.disconnect at once
    got["twice"] = [(await r)["type"], (await r)["type"]]
    got["wait_for"] = (await asyncio.wait_for(receive(), 5))["type"]
    got["future"] = (await asyncio.ensure_future(receive()))["type"]
    AWAITED.update(got)


def starlette_stream():
    """A Starlette StreamingResponse that never ends: anyio's task group
    (entered in the eager step) cancels the generator when the client
    goes; a marker file says so."""
    from starlette.applications import Starlette
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    async def gen():
        try:
            yield b"first\n"
            while True:
                await asyncio.sleep(0.01)
                yield b"tick\n"
        except asyncio.CancelledError:
            path = os.environ.get("ASGI_MARKER")
            if path:
                _mark(path, "cancelled")
            raise

    async def endpoint(request):
        return StreamingResponse(gen(), media_type="text/plain")

    return Starlette(routes=[Route("/", endpoint)])


stream = starlette_stream()
