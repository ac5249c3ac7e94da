# The seed's configuration: 1 sync worker, 1 dirty worker, short graceful
# timeouts for fast tests, debug logging, access and error logs on the console.
import os

bind = os.environ.get("CUNICORN_BIND", "127.0.0.1:8000")
workers = 1
worker_class = "sync"
timeout = 30
graceful_timeout = 5

dirty_apps = ["app:TestDirtyApp"]
dirty_workers = 1
dirty_timeout = 30
dirty_graceful_timeout = 5

loglevel = "debug"
accesslog = "-"
errorlog = "-"
