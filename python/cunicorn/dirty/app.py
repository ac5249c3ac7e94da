"""DirtyApp: the base class of dirty apps (gunicorn.dirty.app.DirtyApp).

A dirty worker imports each configured "module:Class", instantiates it once,
calls init(), then for every call `app(action, *args, **kwargs)`; close() at
shutdown.  Instance state therefore lives as long as the worker (a model
loaded in init() serves every call).  With dirty_threads > 1 several calls
run at once in one worker: the app must then be thread-safe.

Class attributes:
  workers  how many dirty workers load this app (None: all of them); a
           "module:Class:N" dirty_apps entry overrides it.
  stashes  stash table names the arbiter creates at start.

The worker (src/dirty_worker.c) performs the default __call__ dispatch
itself, with exactly these rules, when a subclass does not override
__call__; an override is called as is.
"""

from .errors import DirtyAppError, DirtyAppNotFoundError


class DirtyApp:
    """Base class for dirty applications."""

    workers = None
    stashes = []

    def init(self):
        """Called once in the worker, after instantiation: load models,
        open connections."""

    def __call__(self, action, *args, **kwargs):
        """Dispatch to the method named `action`.  Unknown names and
        private names (leading underscore) are errors."""
        if not isinstance(action, str) or not action or action.startswith("_"):
            raise ValueError("Unknown action: %s" % (action,))
        method = getattr(self, action, None)
        if method is None or not callable(method):
            raise ValueError("Unknown action: %s" % (action,))
        return method(*args, **kwargs)

    def close(self):
        """Called once when the worker shuts down."""


def load_dirty_app(import_path):
    """Import "module.path:ClassName" and return an instance (init() not
    called), as gunicorn's helper of the same name."""
    import importlib

    module_path, sep, class_name = import_path.partition(":")
    if not sep or not module_path or not class_name:
        raise DirtyAppError("Invalid import path format: %s. Expected "
                            "'module.path:ClassName'" % import_path,
                            app_path=import_path)
    if ":" in class_name and class_name.rsplit(":", 1)[1].isdigit():
        class_name = class_name.rsplit(":", 1)[0]
    try:
        obj = importlib.import_module(module_path)
    except ImportError as exc:
        raise DirtyAppNotFoundError(import_path) from exc
    try:
        for part in class_name.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise DirtyAppNotFoundError(import_path) from None
    if not isinstance(obj, type):
        raise DirtyAppError("%s is not a class" % import_path, app_path=import_path)
    try:
        app = obj()
    except Exception as exc:
        raise DirtyAppError("Failed to instantiate %s: %s" % (import_path, exc),
                            app_path=import_path) from exc
    for name in ("init", "__call__", "close"):
        if not callable(getattr(app, name, None)):
            raise DirtyAppError("%s is missing required method: %s" % (import_path, name),
                                app_path=import_path)
    return app


def load_dirty_apps(import_paths):
    """{import_path: instance} for each path."""
    return {p: load_dirty_app(p) for p in import_paths}
