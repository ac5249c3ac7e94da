"""The app of bench/stream_stash.py: a dirty app with generators (small
chunks as fast as possible; bytes after a delay) and a WSGI app whose body
is client.stream(...)."""
import time

from gunicorn.dirty import DirtyApp, get_dirty_client


class StreamBench(DirtyApp):
    def small(self, n):
        """n small chunks, as fast as the generator goes."""
        for i in range(n):
            yield i

    def delayed(self, n, delay):
        """n bytes chunks, each `delay` seconds after the previous."""
        for i in range(n):
            time.sleep(delay)
            yield b"chunk %d\n" % i

    def ping(self):
        return 1


def application(environ, start_response):
    from urllib.parse import parse_qs
    q = parse_qs(environ.get("QUERY_STRING", ""))
    n = int(q.get("n", ["1"])[0])
    delay = float(q.get("delay", ["0.05"])[0])
    start_response("200 OK", [("Content-Type", "text/plain")])
    return get_dirty_client().stream("stream_stash_app:StreamBench", "delayed", n, delay)
