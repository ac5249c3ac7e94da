"""A WSGI app for tests/integration/test_syslog.py.

  /           answers at once
  /boom       raises: gunicorn's "Error handling request" at ERROR
  /sleep?s=S  sleeps S seconds first (a worker timeout: CRITICAL)
"""
import time
from urllib.parse import parse_qs


def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/boom":
        raise RuntimeError("boom for syslog")
    if path == "/sleep":
        time.sleep(float(parse_qs(environ.get("QUERY_STRING", ""))["s"][0]))
    start_response("200 OK", [("Content-Length", "3")])
    return [b"ok\n"]
