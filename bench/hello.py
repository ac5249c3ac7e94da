"""The benchmark app: the same hello-world WSGI callable for cunicorn,
uWSGI and gunicorn, plus a dirty app and an endpoint making one dirty call
(cunicorn only).  Imports nothing from gunicorn at module level, so the
peers load it unchanged."""

BODY = b"Hello, World!"


def application(environ, start_response):
    if environ.get("PATH_INFO") == "/dirty":
        from gunicorn.dirty import get_dirty_client
        r = get_dirty_client().execute("hello:BenchDirtyApp", "ping")
        body = repr(r).encode()
    else:
        body = BODY
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]


try:
    from gunicorn.dirty import DirtyApp
except ImportError:  # a peer without dirty apps (gunicorn 20.1, uWSGI)
    DirtyApp = object


class BenchDirtyApp(DirtyApp):
    def init(self):
        self.n = 0

    def ping(self, *args):
        self.n += 1
        return self.n

    def echo(self, value):
        return value
