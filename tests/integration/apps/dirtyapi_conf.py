# Config for test_dirty_api.py: dirty hooks append a line each to the file
# named by $DIRTYAPI_SIDE.
import os

workers = 1
graceful_timeout = 5
dirty_workers = 1
dirty_graceful_timeout = 5
dirty_apps = ["dirtyapi_apps:Basic", "dirtyapi_apps:Custom"]


def _side(line):
    path = os.environ.get("DIRTYAPI_SIDE")
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


def dirty_post_fork(arbiter, worker):
    _side("dirty_post_fork %d arbiter=%s" % (os.getpid(), getattr(arbiter, "pid", None)))


def dirty_worker_init(worker):
    _side("dirty_worker_init %d apps=%s" % (os.getpid(), ",".join(sorted(getattr(worker, "apps", {}) or {}))))


def dirty_worker_exit(arbiter, worker):
    _side("dirty_worker_exit %d" % os.getpid())
