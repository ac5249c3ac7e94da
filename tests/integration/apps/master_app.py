"""Apps for test_master.py: hello, environment echo, slow, pid."""
import json
import os
import time


def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"OK"]


def info(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path.startswith("/sleep/"):
        # /sleep/SECONDS?mark=PATH: PATH is created once the app is inside
        # the request, so a test knows when to signal
        q = environ.get("QUERY_STRING", "")
        if q.startswith("mark="):
            open(q[5:], "w").close()
        time.sleep(float(path.split("/")[2]))
    body = json.dumps({
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "uid": os.getuid(),
        "gid": os.getgid(),
        "groups": os.getgroups(),
        "env": {k: v for k, v in os.environ.items() if k.startswith("CUNI_")},
        "cwd": os.getcwd(),
        "umask": _umask(),
    }).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]


def _umask():
    m = os.umask(0)
    os.umask(m)
    return m


LOADED_IN = os.getpid()


def preload_pid(environ, start_response):
    body = json.dumps({"loaded_in": LOADED_IN, "pid": os.getpid()}).encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


def prints(environ, start_response):
    print("printed-by-app-%d" % os.getpid(), flush=True)
    start_response("200 OK", [("Content-Length", "2")])
    return [b"OK"]


def create_app(greeting="hi", upper=False):
    body = (greeting.upper() if upper else greeting).encode()

    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]
    return app


class Holder:
    nested = staticmethod(hello)
