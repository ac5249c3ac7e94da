"""The SSE relay benchmark's apps (bench/sse.py): a dirty app that yields
server-sent events stamped with the time each was produced, and a WSGI app
that returns client.stream(...) as its body (relayed by the gthread
worker's event loop)."""
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
