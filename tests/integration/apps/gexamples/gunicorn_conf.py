"""Config of the dirty_example shape: sync workers, three dirty apps, and
every dirty hook printing what gunicorn's objects carry."""

import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = 2
worker_class = "sync"
timeout = 30

dirty_apps = [
    "gexamples.dirty_app:MLApp",
    "gexamples.dirty_app:ComputeApp",
    "gexamples.dirty_app:SessionApp",
]
dirty_workers = 2
dirty_timeout = 300
dirty_graceful_timeout = 30

loglevel = "info"
accesslog = "-"
errorlog = "-"


def on_starting(server):
    print("=== starting ===", flush=True)


def when_ready(server):
    print(f"=== ready http={server.num_workers} dirty={server.cfg.dirty_workers} "
          f"apps={len(server.cfg.dirty_apps)} ===", flush=True)


def on_dirty_starting(arbiter):
    print(f"=== dirty arbiter starting apps={list(arbiter.cfg.dirty_apps)} ===", flush=True)


def dirty_post_fork(arbiter, worker):
    print(f"=== dirty worker {worker.pid} forked ===", flush=True)


def dirty_worker_init(worker):
    print(f"=== dirty worker {worker.pid} initialized {sorted(worker.apps.keys())} ===",
          flush=True)


def dirty_worker_exit(arbiter, worker):
    print(f"=== dirty worker {worker.pid} exiting ===", flush=True)
