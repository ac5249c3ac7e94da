"""Apps for test_asgi_settings.py: request hooks and the disconnect grace
period.  Markers go to files named in the environment."""
import asyncio
import os


def _mark(name, text):
    path = os.environ["MARK_DIR"] + "/" + name
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.rename(path + ".tmp", path)


async def hello(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b"hi " + scope["path"].encode()
    await send({"type": "http.response.start", "status": 201,
                "headers": [(b"content-type", b"text/plain"), (b"x-app", b"yes")]})
    await send({"type": "http.response.body", "body": body})


async def lingers(scope, receive, send):
    """Streams a first chunk; after the client leaves, /polite cleans up
    for 0.3 s and returns, /stubborn never returns by itself.  Marks
    'cleaned' or 'cancelled'."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"first\n", "more_body": True})
    try:
        while (await receive())["type"] != "http.disconnect":
            pass
        if scope["path"] == "/polite":
            await asyncio.sleep(0.3)
            _mark("cleaned", "yes")
            return
        while True:
            await asyncio.sleep(0.05)
    except asyncio.CancelledError:
        _mark("cancelled", scope["path"])
        raise
