"""Apps for test_uwsgi_protocol.py: each answers with what the server told
it about the request, as JSON (its body echoed)."""

import json


def wsgi(environ, start_response):
    body = environ["wsgi.input"].read()
    if environ["PATH_INFO"] == "/stream":       # no length: the close ends it
        start_response("200 OK", [("Content-Type", "text/plain")])
        return iter([b"one ", b"two ", environ["SERVER_PROTOCOL"].encode()])
    keys = ("REQUEST_METHOD", "PATH_INFO", "QUERY_STRING", "RAW_URI", "REMOTE_ADDR",
            "REMOTE_PORT", "wsgi.url_scheme", "CONTENT_TYPE", "CONTENT_LENGTH",
            "HTTP_HOST", "HTTP_X_THING")
    d = {k: environ.get(k) for k in keys}
    d["body"] = body.decode("latin-1")
    out = json.dumps(d).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(out)))])
    return [out]


async def asgi(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            m = await receive()
            if m["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif m["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    while True:
        m = await receive()
        body += m.get("body", b"")
        if not m.get("more_body"):
            break
    if scope["path"] == "/stream":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        for part in (b"one ", b"two ", ("HTTP/" + scope["http_version"]).encode()):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    headers = dict(scope["headers"])
    d = {"REQUEST_METHOD": scope["method"], "PATH_INFO": scope["path"],
         "QUERY_STRING": scope["query_string"].decode(),
         "RAW_URI": scope["raw_path"].decode() + (
             "?" + scope["query_string"].decode() if scope["query_string"] else ""),
         "REMOTE_ADDR": scope["client"][0] if scope["client"] else None,
         "REMOTE_PORT": str(scope["client"][1]) if scope["client"] else None,
         "wsgi.url_scheme": scope["scheme"],
         "CONTENT_TYPE": headers.get(b"content-type", b"").decode() or None,
         "CONTENT_LENGTH": headers.get(b"content-length", b"").decode() or None,
         "HTTP_HOST": headers.get(b"host", b"").decode() or None,
         "HTTP_X_THING": headers.get(b"x-thing", b"").decode() or None,
         "body": body.decode("latin-1")}
    out = json.dumps(d).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(out)).encode())]})
    await send({"type": "http.response.body", "body": out})
