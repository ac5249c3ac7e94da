"""The WSGI front of the dirty_example shape (sync worker): query-string
endpoints, each one client.execute() with positional or keyword args."""

import json
import os
from urllib.parse import parse_qs

ML = "gexamples.dirty_app:MLApp"
COMPUTE = "gexamples.dirty_app:ComputeApp"
SESSION = "gexamples.dirty_app:SessionApp"


def get_dirty_client():
    try:
        from gunicorn.dirty import get_dirty_client as _get
        return _get()
    except Exception:
        return None


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    q = parse_qs(environ.get("QUERY_STRING", ""))
    arg = lambda name, default: q.get(name, [default])[0]  # noqa: E731
    client = get_dirty_client()
    try:
        if path == "/":
            result = {"dirty_enabled": client is not None, "pid": os.getpid()}
        elif path == "/models":
            result = client.execute(ML, "list_models")
        elif path == "/load":
            result = client.execute(ML, "load_model", arg("name", "model1"))
        elif path == "/inference":
            result = client.execute(ML, "inference", arg("model", "default"),
                                    arg("data", "test input"))
        elif path == "/unload":
            result = client.execute(ML, "unload_model", arg("name", "model1"))
        elif path == "/fibonacci":
            result = client.execute(COMPUTE, "fibonacci", int(arg("n", "10")))
        elif path == "/prime":
            result = client.execute(COMPUTE, "prime_check", int(arg("n", "17")))
        elif path == "/stats":
            result = {"ml_app": client.execute(ML, "list_models"),
                      "compute_app": client.execute(COMPUTE, "stats"),
                      "http_worker_pid": os.getpid()}
        elif path == "/session/login":
            result = client.execute(SESSION, "login", user_id=arg("user_id", "1"),
                                    user_data={"name": arg("name", "Anonymous")})
        elif path == "/session/get":
            result = client.execute(SESSION, "get_session", user_id=arg("user_id", "1"))
        elif path == "/session/list":
            result = client.execute(SESSION, "list_sessions")
        elif path == "/session/logout":
            result = client.execute(SESSION, "logout", user_id=arg("user_id", "1"))
        elif path == "/session/stats":
            result = client.execute(SESSION, "get_stats")
        elif path == "/session/clear":
            result = client.execute(SESSION, "clear_all")
        else:
            start_response("404 Not Found", [("Content-Type", "application/json")])
            return [json.dumps({"error": "Not found"}).encode()]
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(result, indent=2).encode()]
    except Exception as e:
        start_response("500 Internal Server Error", [("Content-Type", "application/json")])
        return [json.dumps({"error": str(e), "type": type(e).__name__}).encode()]
