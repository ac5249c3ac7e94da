"""The smallest WSGI app: imports nothing (bench/memory.py)."""


def application(environ, start_response):
    start_response("200 OK", [("Content-Length", "2")])
    return [b"OK"]
