"""Dirty apps of the celery_alternative shape: task classes with a
`workers = N` class attribute each, type-annotated actions taking keyword
arguments, generators reporting progress, a __call__ that records runs
before dispatching, and one app that runs an asyncio loop in a thread of
its own (set up in init(), stopped in close()) as some apps do."""

import asyncio
import os
import threading
import time
from datetime import datetime
from typing import Any, Generator

from gunicorn.dirty import DirtyApp, DirtyTimeoutError  # noqa: F401 (the import form is the point)


class _Dispatch(DirtyApp):
    def __call__(self, action: str, *args, **kwargs) -> Any:
        method = getattr(self, action, None)
        if method is None or action.startswith("_"):
            raise ValueError(f"Unknown action: {action}")
        return method(*args, **kwargs)


class EmailWorker(_Dispatch):
    workers = 2

    def __init__(self):
        self.sent = 0
        self.connection = None

    def init(self):
        self.connection = "connected"

    def send_email(self, to: str, subject: str, body: str, html: bool = False) -> dict:
        self.sent += 1
        return {"status": "sent", "to": to, "subject": subject, "html": html,
                "message_id": f"msg-{os.getpid()}-{self.sent}"}

    def send_bulk_emails(self, recipients: list, subject: str,
                         body: str) -> Generator[dict, None, None]:
        total = len(recipients)
        for i, to in enumerate(recipients):
            self.send_email(to, subject, body)
            yield {"type": "progress", "current": i + 1, "total": total,
                   "percent": int((i + 1) / total * 100), "last_sent": to}
        yield {"type": "complete", "total": total, "sent": total, "failed": 0}

    def stats(self) -> dict:
        return {"emails_sent": self.sent, "smtp_connected": self.connection is not None,
                "worker_pid": os.getpid()}


class ImageWorker(_Dispatch):
    workers = 2

    def __init__(self):
        self.processed = 0

    def init(self):
        pass

    def resize(self, image_data: str, width: int, height: int) -> dict:
        self.processed += 1
        return {"status": "resized", "original_size": len(image_data),
                "target_dimensions": f"{width}x{height}"}

    def generate_thumbnail(self, image_data: str, size: int = 150) -> dict:
        return self.resize(image_data, size, size)

    def process_batch(self, images: list, operation: str, **params) -> Generator[dict, None, None]:
        for i, img in enumerate(images):
            data = img.get("data", b"fake")
            if operation == "thumbnail":
                result = self.generate_thumbnail(data, params.get("size", 150))
            else:
                result = self.resize(data, params.get("width", 800), params.get("height", 600))
            yield {"type": "progress", "current": i + 1, "total": len(images),
                   "image_id": img.get("id", f"img-{i}"), "result": result}
        yield {"type": "complete", "total": len(images), "processed": self.processed}

    def stats(self) -> dict:
        return {"images_processed": self.processed, "worker_pid": os.getpid()}


class DataWorker(_Dispatch):
    workers = 4

    def __init__(self):
        self.cache = {}
        self.done = 0

    def init(self):
        self.cache = {}

    def aggregate(self, data: list, group_by: str, agg_field: str,
                  agg_func: str = "sum") -> dict:
        result = {}
        for item in data:
            key = item.get(group_by, "unknown")
            if agg_func == "count":
                result[key] = result.get(key, 0) + 1
            elif agg_func == "list":
                result.setdefault(key, []).append(item.get(agg_field))
            else:
                result[key] = result.get(key, 0) + item.get(agg_field, 0)
        self.done += 1
        return {"status": "completed", "result": result, "record_count": len(data)}

    def etl_pipeline(self, source_data: list, transformations: list) -> Generator[dict, None, None]:
        data = source_data
        yield {"type": "progress", "phase": "extract", "message": f"Extracting {len(data)} records"}
        for t in transformations:
            yield {"type": "progress", "phase": "transform", "message": f"Applying {t.get('name')}"}
            if t.get("type") == "filter":
                data = [d for d in data if d.get(t["field"]) == t["value"]]
            elif t.get("type") == "map":
                for d in data:
                    if isinstance(d.get(t["field"]), str):
                        d[t["field"]] = d[t["field"]].upper()
        yield {"type": "progress", "phase": "load", "message": f"Loading {len(data)} records"}
        self.done += 1
        yield {"type": "complete", "records_processed": len(source_data),
               "records_output": len(data), "output": data}

    def cached_query(self, query_key: str, ttl: int = 300) -> dict:
        now = time.time()
        hit = self.cache.get(query_key)
        if hit and now - hit["timestamp"] < ttl:
            return {"status": "cache_hit", "data": hit["data"], "worker_pid": os.getpid()}
        self.cache[query_key] = {"data": {"query": query_key, "computed_at": now},
                                 "timestamp": now}
        return {"status": "cache_miss", "data": self.cache[query_key]["data"],
                "worker_pid": os.getpid()}

    def stats(self) -> dict:
        return {"tasks_completed": self.done, "cache_size": len(self.cache),
                "worker_pid": os.getpid()}


class ScheduledWorker(DirtyApp):
    workers = 1

    def __init__(self):
        super().__init__()
        self.last_runs = {}
        self.run_counts = {}
        self.loop = None

    def init(self):
        # an event loop of the app's own, in a daemon thread
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run_loop, daemon=True)
        self.thread.start()

    def _run_loop(self):
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def __call__(self, action: str, *args, **kwargs) -> Any:
        method = getattr(self, action, None)
        if method is None or action.startswith("_"):
            raise ValueError(f"Unknown action: {action}")
        self.last_runs[action] = datetime.now().isoformat()
        self.run_counts[action] = self.run_counts.get(action, 0) + 1
        return method(*args, **kwargs)

    async def _sync_async(self, source):
        await asyncio.sleep(0.001)
        return {"status": "completed", "source": source, "records_synced": len(source) * 10}

    def sync_external_data(self, source: str) -> dict:
        return asyncio.run_coroutine_threadsafe(self._sync_async(source), self.loop).result()

    def cleanup_old_files(self, directory: str, max_age_days: int = 7) -> dict:
        return {"status": "completed", "directory": directory, "max_age_days": max_age_days}

    def generate_daily_report(self) -> dict:
        return {"status": "completed", "report_date": datetime.now().strftime("%Y-%m-%d")}

    def stats(self) -> dict:
        return {"last_runs": sorted(self.last_runs), "run_counts": self.run_counts,
                "worker_pid": os.getpid()}

    def close(self):
        if self.loop is not None and self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=5)
