"""Config for test_asgi_settings.py: pre_request / post_request write what
they saw to $HOOK_LOG as JSON lines; a request for /raise makes
pre_request raise (logged; the request goes on, as in gunicorn)."""
import json
import os


def pre_request(worker, req):
    with open(os.environ["HOOK_LOG"], "a") as f:
        f.write(json.dumps({"hook": "pre", "method": req.method, "path": req.path,
                            "query": req.query, "uri": req.uri, "pid": worker.pid,
                            "version": list(req.version),
                            "headers": [list(h) for h in req.headers]}) + "\n")
    if req.path == "/raise":
        raise RuntimeError("pre_request refuses")


def post_request(worker, req, environ, resp):
    with open(os.environ["HOOK_LOG"], "a") as f:
        f.write(json.dumps({"hook": "post", "path": req.path,
                            "env_path": environ.get("PATH_INFO"),
                            "env_method": environ.get("REQUEST_METHOD"),
                            "env_x": environ.get("HTTP_X_H"),
                            "env_remote": environ.get("REMOTE_ADDR"),
                            "status": resp.status, "status_code": resp.status_code,
                            "headers": [list(h) for h in resp.headers],
                            "sent": resp.sent}) + "\n")
