"""gunicorn's `reload` setting: which file changed (called from
src/http_worker.c).

The sync worker's C loop calls Reloader.changed() at most once a second,
between requests, and only when --reload is on: there is no thread, and
nothing here runs when reload is off.  It watches the file of every module
in sys.modules (a .pyc/.pyo name read as its .py, as gunicorn does) and the
reload_extra_files, by their mtimes:

- a file seen for the first time (the first call, a module imported since)
  is recorded, not reported;
- a file whose mtime moved either way is reported (gunicorn only reports a
  newer one; an editor or a checkout restoring an older mtime is a change
  too);
- a file that cannot be stat()ed (deleted, renamed, inside a zip) is
  skipped, as gunicorn does.

Paths are used as given: relative ones against the worker's working
directory (after --chdir), as gunicorn's reloader does.

Reloader.load_app() is how a reloading worker imports the app: a
SyntaxError (an edit saved half-way) does not fail the worker's boot, which
would stop the whole server; as gunicorn's worker does under reload, it is
logged, the broken file is watched, and every request gets a 500 showing
the error until the fix reloads the worker.  Any other error propagates.
"""
import os
import sys

import _cunicorn


class Reloader:
    def __init__(self, extra_files=()):
        self._extra_files = list(extra_files)
        self._mtimes = {}

    def _files(self):
        for module in tuple(sys.modules.values()):
            path = getattr(module, "__file__", None)
            if not path or not isinstance(path, str):
                continue
            if path.endswith((".pyc", ".pyo")):
                path = path[:-1]
            yield path
        yield from self._extra_files

    def load_app(self, uri):
        from cunicorn import _hooks
        try:
            return _hooks.load_app(uri)
        except SyntaxError as e:
            import traceback    # only then: a worker need not carry it
            text = "".join(traceback.format_exception(e))
            _cunicorn.log(_cunicorn.ERROR, "Exception in worker process: %s: %s"
                          % (type(e).__name__, e))
            _cunicorn.log(_cunicorn.ERROR, text.rstrip("\n"))
            if e.filename:
                self._extra_files.append(e.filename)
            return _error_app(text.encode("utf-8", "replace"))

    def changed(self):
        """The first watched file whose mtime differs from the one recorded,
        or None; new files are recorded without counting as a change."""
        mtimes = self._mtimes
        for path in self._files():
            try:
                mtime = os.stat(path).st_mtime_ns
            except (OSError, ValueError):
                continue
            old = mtimes.get(path)
            mtimes[path] = mtime
            if old is not None and old != mtime:
                return path
        return None


def _error_app(body):
    """gunicorn's make_fail_app: 500, the error as text."""
    def app(environ, start_response):
        start_response("500 Internal Server Error",
                       [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    return app
