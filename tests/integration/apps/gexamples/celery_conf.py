"""Config of the celery_alternative shape: gthread, settings from the
environment with defaults, per-app allocation by class attributes, and
hooks reading arbiter.cfg and worker.apps (left without flush=True, as
that example writes them)."""

import multiprocessing
import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", multiprocessing.cpu_count() * 2 + 1))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", 4))

dirty_apps = [
    "gexamples.tasks:EmailWorker",
    "gexamples.tasks:ImageWorker",
    "gexamples.tasks:DataWorker",
    "gexamples.tasks:ScheduledWorker",
]
dirty_workers = int(os.environ.get("DIRTY_WORKERS", 9))
dirty_timeout = int(os.environ.get("DIRTY_TIMEOUT", 300))
dirty_threads = int(os.environ.get("DIRTY_THREADS", 1))
dirty_graceful_timeout = int(os.environ.get("DIRTY_GRACEFUL_TIMEOUT", 30))

timeout = 120
keepalive = 5
max_requests = 1000
max_requests_jitter = 50

loglevel = os.environ.get("LOG_LEVEL", "info")
accesslog = "-"
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(D)s'
errorlog = "-"


def on_starting(server):
    print("[celery] starting")


def on_dirty_starting(arbiter):
    print(f"[Dirty] Registered apps: {list(arbiter.cfg.dirty_apps)}")


def dirty_post_fork(arbiter, worker):
    print(f"[Dirty] Worker {worker.pid} started")


def dirty_worker_init(worker):
    print(f"[Dirty] Worker {worker.pid} initialized apps: {sorted(worker.apps.keys())}")


def dirty_worker_exit(arbiter, worker):
    print(f"[Dirty] Worker {worker.pid} exiting")


def worker_int(worker):
    print(f"[HTTP] Worker {worker.pid} interrupted")


def worker_exit(server, worker):
    print(f"[HTTP] Worker {worker.pid} exited")


reload = os.environ.get("GUNICORN_RELOAD", "false").lower() == "true"
preload_app = os.environ.get("GUNICORN_PRELOAD", "false").lower() == "true"
