"""--reload (gunicorn's reload, reload_extra_files, reload_engine) through the
real binary: a worker whose code changed on disk logs
"Worker reloading: <path> modified", leaves as max_requests does (cleanly:
no "was terminated", no "exited with code"), and the master boots a fresh
worker that imports the new code.

Every edit bumps the file's mtime explicitly (os.utime to now + 2 s), so no
test depends on the filesystem's mtime granularity; the server runs with
PYTHONDONTWRITEBYTECODE (conftest), so no stale .pyc is read either.  Waits
are bounded polls; the only sleeps are lower bounds for "has not happened"
checks (the worker looks about once a second).
"""
import os
import textwrap
import time

from conftest import http_get, pid_alive, wait_for

# The app module: GET / answers BODY, GET /pid the worker's pid, GET /lazy
# imports the module `lazy` (on first use) and answers its VALUE.
APP = textwrap.dedent("""\
    import os
    BODY = %r
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        path = environ["PATH_INFO"]
        if path == "/pid":
            return [str(os.getpid()).encode()]
        if path == "/lazy":
            import lazy
            return [lazy.VALUE]
        return [BODY]
""")

# An app whose body comes from a data file read at import time: only a new
# worker shows a change of it.
DATA_APP = textwrap.dedent("""\
    import os
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "page.txt"), "rb") as f:
        BODY = f.read()
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        if environ["PATH_INFO"] == "/pid":
            return [str(os.getpid()).encode()]
        return [BODY]
""")


def write(path, text):
    """Write text to path and move its mtime 2 s past both now and its
    previous mtime: a change whatever the mtime granularity."""
    try:
        before = os.stat(path).st_mtime
    except OSError:
        before = 0
    with open(path, "w") as f:
        f.write(text)
    t = max(time.time(), before) + 2
    os.utime(path, (t, t))


def get(port, path="/"):
    """The body of a 200 answer, or None (a worker being replaced may leave
    a connection unanswered for a moment)."""
    try:
        status, _, body = http_get(port, path, timeout=5)
    except OSError:
        return None
    return body if status == 200 else None


def worker_pid(port):
    return int(wait_for(lambda: get(port, "/pid"), 10, what="an answer to /pid"))


def assert_clean(s):
    log = s.log()
    assert "was terminated" not in log and "exited with code" not in log, log[-3000:]
    assert "Traceback" not in log and "Error" not in log, log[-3000:]


def serve(make_server, appdir, *args, app="reapp:app"):
    return make_server("--chdir", str(appdir), "-w", "1", *args, app, cwd=str(appdir))


def test_changed_module_reloads_the_worker(make_server, tmp_path):
    appdir = os.path.realpath(str(tmp_path))
    module = os.path.join(appdir, "reapp.py")
    write(module, APP % b"one")
    s = serve(make_server, appdir, "--reload")
    assert get(s.port) == b"one"
    old = worker_pid(s.port)

    write(module, APP % b"two")
    s.wait_log("[INFO] Worker reloading: %s modified" % module, timeout=10)
    assert wait_for(lambda: get(s.port) == b"two", 10, what="the new body")
    new = worker_pid(s.port)
    assert new != old
    wait_for(lambda: not pid_alive(old), 10, what="the old worker gone")
    s.wait_log("Worker exiting (pid: %d)" % old)
    s.wait_log("Booting worker with pid: %d" % new)
    log = s.log()
    assert log.count("Worker reloading:") == 1, log[-3000:]
    assert "not supported" not in log
    assert_clean(s)
    assert s.stop() == 0


def test_module_imported_later_is_watched_not_reloaded(make_server, tmp_path):
    """A module first imported by a request is recorded, not taken for a
    change; an edit of it afterwards reloads."""
    appdir = os.path.realpath(str(tmp_path))
    write(os.path.join(appdir, "reapp.py"), APP % b"one")
    lazy = os.path.join(appdir, "lazy.py")
    write(lazy, "VALUE = b'lazy-1'\n")
    s = serve(make_server, appdir, "--reload")
    pid = worker_pid(s.port)
    assert get(s.port, "/lazy") == b"lazy-1"
    time.sleep(2.5)         # lower bound: two looks at least, nothing changed
    assert worker_pid(s.port) == pid
    assert "Worker reloading" not in s.log()

    write(lazy, "VALUE = b'lazy-2'\n")
    s.wait_log("Worker reloading: %s modified" % lazy, timeout=10)
    assert wait_for(lambda: get(s.port, "/lazy") == b"lazy-2", 10, what="the new value")
    assert worker_pid(s.port) != pid
    assert_clean(s)


def data_app(tmp_path):
    """DATA_APP in a new app directory, with page.txt saying "page one";
    returns (the directory, page.txt's path)."""
    appdir = os.path.realpath(str(tmp_path))
    write(os.path.join(appdir, "reapp.py"), DATA_APP)
    page = os.path.join(appdir, "page.txt")
    write(page, "page one")
    return appdir, page


def assert_page_change_reloads(s, page, logged_as):
    """s serves DATA_APP's "page one": page.txt edited, the worker logs it
    (as `logged_as`) and a new worker serves "page two"."""
    assert get(s.port) == b"page one"
    old = worker_pid(s.port)

    write(page, "page two")
    s.wait_log("Worker reloading: %s modified" % logged_as, timeout=10)
    assert wait_for(lambda: get(s.port) == b"page two", 10, what="the new page")
    assert worker_pid(s.port) != old
    assert_clean(s)


def test_extra_file_reloads_from_the_command_line(make_server, tmp_path):
    appdir, page = data_app(tmp_path)
    # relative, as users write it: the worker runs in --chdir
    s = serve(make_server, appdir, "--reload", "--reload-extra-file", "page.txt",
              "--reload-engine", "inotify")
    assert_page_change_reloads(s, page, "page.txt")


def test_extra_file_reloads_from_a_config_file(make_server, tmp_path):
    appdir, page = data_app(tmp_path)
    conf = os.path.join(appdir, "conf.py")
    with open(conf, "w") as f:
        f.write("reload = True\nreload_engine = 'poll'\nreload_extra_files = [%r]\n" % page)
    s = serve(make_server, appdir, "-c", conf)
    assert_page_change_reloads(s, page, page)


def test_deleted_file_is_skipped_until_it_returns(make_server, tmp_path):
    """As gunicorn: a watched file that is gone is skipped (no reload); once
    it is back with another mtime, that is a change."""
    appdir = os.path.realpath(str(tmp_path))
    write(os.path.join(appdir, "reapp.py"), APP % b"one")
    extra = os.path.join(appdir, "settings.ini")
    write(extra, "[a]\n")
    s = serve(make_server, appdir, "--reload", "--reload-extra-file", extra)
    pid = worker_pid(s.port)
    os.unlink(extra)
    time.sleep(2.5)         # lower bound: two looks at least
    assert worker_pid(s.port) == pid
    assert "Worker reloading" not in s.log()

    write(extra, "[b]\n")
    s.wait_log("Worker reloading: %s modified" % extra, timeout=10)
    wait_for(lambda: get(s.port, "/pid") not in (None, str(pid).encode()), 10,
             what="another worker")
    assert_clean(s)


def test_syntax_error_is_served_until_the_fix(make_server, tmp_path):
    """As gunicorn's worker under reload: a module saved with a syntax error
    does not stop the server (a failed boot would); the worker logs it,
    answers 500 with the error, and the fix reloads it."""
    appdir = os.path.realpath(str(tmp_path))
    module = os.path.join(appdir, "reapp.py")
    write(module, APP % b"one")
    s = serve(make_server, appdir, "--reload")
    old = worker_pid(s.port)

    write(module, "def app(environ, start_response:\n")
    s.wait_log("Worker reloading: %s modified" % module, timeout=10)
    s.wait_log("Exception in worker process: SyntaxError:", timeout=10)

    def error_page():
        try:
            status, _, body = http_get(s.port, "/", timeout=5)
        except OSError:
            return None
        return body if status == 500 else None
    body = wait_for(error_page, 10, what="the error page")
    assert b"SyntaxError" in body and module.encode() in body, body

    write(module, APP % b"fixed")
    assert wait_for(lambda: get(s.port) == b"fixed", 10, what="the fixed app")
    assert s.proc.poll() is None
    log = s.log()
    assert log.count("Worker reloading:") == 2, log[-3000:]
    assert "failed to boot" not in log and "was terminated" not in log, log[-3000:]
    assert "exited with code" not in log and not pid_alive(old)


def test_without_reload_a_changed_module_stays_as_loaded(make_server, tmp_path):
    appdir = os.path.realpath(str(tmp_path))
    module = os.path.join(appdir, "reapp.py")
    write(module, APP % b"one")
    s = serve(make_server, appdir)
    assert get(s.port) == b"one"
    pid = worker_pid(s.port)

    write(module, APP % b"two")
    time.sleep(2.5)         # lower bound: a reloading worker would have looked twice
    assert get(s.port) == b"one"
    assert worker_pid(s.port) == pid
    assert "Worker reloading" not in s.log()
    assert_clean(s)


def test_hooks_run_on_reload_as_in_gunicorn(make_server, tmp_path):
    """gunicorn's reloader calls worker_int, then the worker exits (and
    worker_exit runs in it); the next worker runs post_worker_init."""
    appdir = os.path.realpath(str(tmp_path))
    module = os.path.join(appdir, "reapp.py")
    write(module, APP % b"one")
    events = os.path.join(appdir, "events.txt")
    conf = os.path.join(appdir, "conf.py")
    with open(conf, "w") as f:
        f.write(textwrap.dedent("""\
            import os
            def _note(what):
                with open(%r, "a") as f:
                    f.write("%%s %%d\\n" %% (what, os.getpid()))
            def post_worker_init(worker):
                _note("init")
            def worker_int(worker):
                _note("int")
            def worker_exit(server, worker):
                _note("exit")
        """) % events)
    s = serve(make_server, appdir, "--reload", "-c", conf)
    old = worker_pid(s.port)
    write(module, APP % b"two")
    assert wait_for(lambda: get(s.port) == b"two", 15, what="the new body")
    new = worker_pid(s.port)

    def lines():
        with open(events) as f:
            return f.read().splitlines()
    want = ["init %d" % old, "int %d" % old, "exit %d" % old, "init %d" % new]
    wait_for(lambda: lines() == want, 10, what="hooks %r" % want)
    assert_clean(s)


def test_with_preload_warns_and_restarts_with_the_same_code(make_server, tmp_path):
    """The code lives in the master: a change restarts the worker, which
    still runs what the master loaded (gunicorn documents the two as not
    meant together); one warning at start says so."""
    appdir = os.path.realpath(str(tmp_path))
    module = os.path.join(appdir, "reapp.py")
    write(module, APP % b"one")
    s = serve(make_server, appdir, "--reload", "--preload")
    old = worker_pid(s.port)
    log = s.log()
    assert log.count("[WARNING] reload with preload_app:") == 1, log[-3000:]

    write(module, APP % b"two")
    s.wait_log("Worker reloading: %s modified" % module, timeout=10)
    new = wait_for(lambda: (lambda p: p if p and p != old else None)(worker_pid(s.port)),
                   10, what="another worker")
    assert new != old
    assert get(s.port) == b"one"
    log = s.log()
    assert log.count("Worker reloading:") == 1, log[-3000:]
    assert "was terminated" not in log and "exited with code" not in log
