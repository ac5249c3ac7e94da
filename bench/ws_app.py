"""App for bench/websocket.py: a websocket echo (raw ASGI)."""


async def echo(scope, receive, send):
    if scope["type"] != "websocket":
        return
    await receive()                              # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        m = await receive()
        if m["type"] == "websocket.disconnect":
            return
        if m.get("text") is not None:
            await send({"type": "websocket.send", "text": m["text"]})
        else:
            await send({"type": "websocket.send", "bytes": m["bytes"]})
