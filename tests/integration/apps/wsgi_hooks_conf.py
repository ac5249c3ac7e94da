"""Config for test_wsgi.py's hook test: pre_request / post_request write
what they saw to $HOOK_LOG as JSON lines."""
import json
import os


def pre_request(worker, req):
    with open(os.environ["HOOK_LOG"], "a") as f:
        f.write(json.dumps({"hook": "pre", "method": req.method, "path": req.path,
                            "query": req.query, "uri": req.uri,
                            "headers": [list(h) for h in req.headers]}) + "\n")


def post_request(worker, req, environ, resp):
    with open(os.environ["HOOK_LOG"], "a") as f:
        f.write(json.dumps({"hook": "post", "path": req.path,
                            "env_path": environ.get("PATH_INFO"),
                            "status": resp.status, "status_code": resp.status_code,
                            "headers": [list(h) for h in resp.headers],
                            "sent": resp.sent}) + "\n")


def _note(name, worker):
    with open(os.environ["HOOK_LOG"], "a") as f:
        f.write(json.dumps({"hook": name, "pid": worker.pid}) + "\n")


def post_worker_init(worker):
    _note("post_worker_init", worker)


def worker_int(worker):
    _note("worker_int", worker)


def worker_abort(worker):
    _note("worker_abort", worker)


def worker_exit(server, worker):
    with open(os.environ["HOOK_LOG"], "a") as f:
        f.write(json.dumps({"hook": "worker_exit", "pid": worker.pid,
                            "server_pid": server.pid, "in": os.getpid()}) + "\n")
