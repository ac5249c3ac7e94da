# A config file whose hooks append one line each to $CUNI_HOOK_LOG.
import os

_LOG = os.environ["CUNI_HOOK_LOG"]


def _w(line):
    with open(_LOG, "a") as f:
        f.write(line + "\n")


def on_starting(server):
    _w("on_starting %d" % server.pid)


def when_ready(server):
    _w("when_ready %d %s" % (server.pid, server.cfg.workers))


def pre_fork(server, worker):
    _w("pre_fork %d" % worker.age)


def post_fork(server, worker):
    _w("post_fork %d %d" % (worker.pid, os.getpid()))


def post_worker_init(worker):
    _w("post_worker_init %d" % worker.pid)


def pre_request(worker, req):
    _w("pre_request %s %s" % (req.method, req.path))


def post_request(worker, req, environ, resp):
    _w("post_request %s" % req.path)


def child_exit(server, worker):
    _w("child_exit %d" % worker.pid)


def worker_exit(server, worker):
    _w("worker_exit %d" % worker.pid)


def nworkers_changed(server, new_value, old_value):
    _w("nworkers_changed %s %s" % (new_value, old_value))


def on_reload(server):
    _w("on_reload")


def on_exit(server):
    _w("on_exit")
