"""The web front of the celery_alternative shape (gthread), as plain WSGI
since Flask is not installed here: JSON POST bodies, client.execute() with
keyword arguments only, client.stream() relayed as server-sent events, and
DirtyError subclasses mapped to status codes."""

import json

from gunicorn.dirty import get_dirty_client
from gunicorn.dirty.errors import DirtyAppNotFoundError, DirtyError, DirtyTimeoutError  # noqa: F401

EMAIL = "gexamples.tasks:EmailWorker"
IMAGE = "gexamples.tasks:ImageWorker"
DATA = "gexamples.tasks:DataWorker"
SCHEDULED = "gexamples.tasks:ScheduledWorker"


def _json(start_response, obj, status="200 OK"):
    start_response(status, [("Content-Type", "application/json")])
    return [json.dumps(obj).encode()]


def _sse(start_response, it):
    def generate():
        try:
            for progress in it():
                yield f"data: {json.dumps(progress)}\n\n".encode()
        except DirtyError as e:
            yield f"data: {json.dumps({'error': str(e)})}\n\n".encode()
    start_response("200 OK", [("Content-Type", "text/event-stream"),
                              ("Cache-Control", "no-cache"), ("X-Accel-Buffering", "no")])
    return generate()


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    n = int(environ.get("CONTENT_LENGTH") or 0)
    data = json.loads(environ["wsgi.input"].read(n) or b"{}") if n else {}
    client = get_dirty_client()
    try:
        if path == "/api/email/send":
            return _json(start_response, client.execute(
                EMAIL, "send_email", to=data["to"], subject=data["subject"],
                body=data["body"], html=data.get("html", False)))
        if path == "/api/email/send-bulk":
            return _sse(start_response, lambda: client.stream(
                EMAIL, "send_bulk_emails", recipients=data["recipients"],
                subject=data["subject"], body=data["body"]))
        if path == "/api/image/resize":
            return _json(start_response, client.execute(
                IMAGE, "resize", image_data=data.get("image_data", ""),
                width=data.get("width", 800), height=data.get("height", 600)))
        if path == "/api/image/process-batch":
            return _sse(start_response, lambda: client.stream(
                IMAGE, "process_batch", images=data["images"],
                operation=data.get("operation", "resize"), width=data.get("width", 800),
                height=data.get("height", 600), size=data.get("size", 150)))
        if path == "/api/data/aggregate":
            return _json(start_response, client.execute(
                DATA, "aggregate", data=data["data"], group_by=data["group_by"],
                agg_field=data["agg_field"], agg_func=data.get("agg_func", "sum")))
        if path == "/api/data/etl":
            return _sse(start_response, lambda: client.stream(
                DATA, "etl_pipeline", source_data=data["source_data"],
                transformations=data.get("transformations", [])))
        if path == "/api/data/query":
            return _json(start_response, client.execute(
                DATA, "cached_query", query_key=data["query_key"], ttl=data.get("ttl", 300)))
        if path == "/api/scheduled/sync":
            return _json(start_response, client.execute(
                SCHEDULED, "sync_external_data", source=data.get("source", "default")))
        if path == "/api/scheduled/cleanup":
            return _json(start_response, client.execute(
                SCHEDULED, "cleanup_old_files", directory=data.get("directory", "/tmp"),
                max_age_days=data.get("max_age_days", 7)))
        if path == "/api/scheduled/daily-report":
            return _json(start_response, client.execute(SCHEDULED, "generate_daily_report"))
        if path.startswith("/api/") and path.endswith("/stats"):
            which = {"email": EMAIL, "image": IMAGE, "data": DATA, "scheduled": SCHEDULED}
            return _json(start_response, client.execute(which[path.split("/")[2]], "stats"))
        if path == "/api/bogus":
            return _json(start_response, client.execute(EMAIL, "no_such_action"))
        if path == "/health":
            client.execute(EMAIL, "stats")
            return _json(start_response, {"status": "healthy", "workers": "connected"})
        return _json(start_response, {"error": "Not found"}, "404 Not Found")
    except DirtyTimeoutError:
        return _json(start_response, {"error": "Task timed out"}, "504 Gateway Timeout")
    except DirtyError as e:
        return _json(start_response, {"error": str(e), "type": type(e).__name__},
                     "500 Internal Server Error")
