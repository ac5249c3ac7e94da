"""A WSGI app for tests/integration/test_log_stall.py.

  /spam?n=N&size=S   writes N lines of S bytes to wsgi.errors, then answers
  /ok                answers at once
"""
from urllib.parse import parse_qs


def application(environ, start_response):
    q = parse_qs(environ.get("QUERY_STRING", ""))
    if environ["PATH_INFO"] == "/spam":
        n = int(q.get("n", ["1"])[0])
        size = int(q.get("size", ["200"])[0])
        errors = environ["wsgi.errors"]
        for i in range(n):
            errors.write("spam %06d %s\n" % (i, "e" * size))
        body = b"spammed %d\n" % n
    else:
        body = b"ok\n"
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]
