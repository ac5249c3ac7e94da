"""cunicorn/gunicorn configuration for the dirty arbiter lifecycle tests:
1 sync worker, 1 dirty worker, 5 s graceful timeouts, debug logging, access
and error logs on the console (the container log)."""

bind = "0.0.0.0:8000"
workers = 1
worker_class = "sync"
dirty_workers = 1
dirty_apps = ["app:TestDirtyApp"]
dirty_timeout = 30
dirty_graceful_timeout = 5
timeout = 30
graceful_timeout = 5
loglevel = "debug"
accesslog = "-"
errorlog = "-"
