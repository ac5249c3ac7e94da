"""Shared helpers of test_streaming.py, test_stash.py and
test_dirty_scaling.py: start cunicorn with tests/integration/apps/
stream_apps.py, find its dirty arbiter and socket, and talk to it with the
real Python client (cunicorn.dirty from python/, _cunicorn_dirty from
build/python) from inside the test process.

Owns nothing but the clients it creates; servers are make_server's.
"""
import os
import sys
import uuid

from conftest import BUILD, ROOT, wait_for
from dirty_raw import arbiter_pid, dirty_workers, socket_path  # noqa: F401 - for the tests

APPS = os.path.join(ROOT, "tests", "integration", "apps")
PYDIR = os.path.join(ROOT, "python")
EXTDIR = os.path.join(BUILD, "python")
for _d in (PYDIR, EXTDIR):
    if _d not in sys.path:
        sys.path.append(_d)

from cunicorn.dirty import client as dclient  # noqa: E402
from cunicorn.dirty import errors as derrors  # noqa: E402
from cunicorn.dirty import stash as dstash  # noqa: E402

STREAMER = "stream_apps:Streamer"
STASHER = "stream_apps:Stasher"


def unique_name(tag):
    return "st-%s-%s" % (tag, uuid.uuid4().hex[:8])


def start(make_server, tag, workers=1, apps=(STREAMER, STASHER), extra=(), http_workers=1):
    args = ["--chdir", APPS, "-n", unique_name(tag), "-w", str(http_workers),
            "--dirty-workers", str(workers)]
    for a in apps:
        args += ["--dirty-app", a]
    s = make_server(*(args + list(extra) + ["stream_apps:application"]))
    s.arbiter = wait_for(lambda: arbiter_pid(s), 10, what="a dirty arbiter")
    s.sock = socket_path(s)
    wait_for(lambda: len(dirty_workers(s)) == workers, 15, what="%d dirty workers" % workers)
    # ready: every worker loaded its apps (the declared stash tables exist)
    c = client(s)
    wait_for(lambda: _answers(c), 15, what="the dirty apps to answer")
    c.close()
    return s


def _answers(c):
    try:
        return c.execute(STREAMER, "pid") > 0
    except derrors.DirtyError:
        return False


def client(s, timeout=30.0):
    return dclient.DirtyClient(s.sock, timeout=timeout)


def use_stash(s):
    """Point this thread's default client (the stash module's) at s."""
    dclient.close_dirty_client()
    dclient.set_dirty_socket_path(s.sock)
    return dstash


def status(s):
    c = client(s)
    try:
        return c._raw(0x11, {})
    finally:
        c.close()
