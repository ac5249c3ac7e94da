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
"""
import os
import sys


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
