"""The Python side of cunicorn's process glue (called from src/python.c).

- load_app(uri): import "module:callable" the way gunicorn does, raising
  AppLoadError with one clear line when the module or the callable is
  missing (the app's own import-time errors propagate with their traceback);
  "paste:FILE[#NAME]" (--paste) through PasteDeploy's loadapp, with
  PASTE_GLOBAL_CONF (--paste-global, set by src/python.c) as global_conf.
- Server / Worker: the objects hooks receive as `server`/`arbiter` and
  `worker`, with the attributes hooks commonly read (pid, age, cfg, log,
  alive, ...).
- Log: gunicorn's logger surface (debug/info/warning/error/critical/
  exception) writing into cunicorn's error log.

Nothing here runs per request.
"""
import importlib
import importlib.util
import os
import time

import _cunicorn


class AppLoadError(Exception):
    """The app could not be found; str() is the line to log."""


def _parse_callable(module_name, expr):
    """Accept a name, a dotted attribute path, or a call of one with literal
    arguments ("create_app()", "create_app('prod', debug=False)"), as
    gunicorn does; nothing else is evaluated."""
    parts = expr.split(".")
    if all(p.isidentifier() for p in parts):
        return parts, False, [], {}     # the common case, without ast
    import ast  # only for call forms: the module costs ~1 MB per process
    try:
        node = ast.parse(expr, mode="eval").body
    except SyntaxError:
        raise AppLoadError("Failed to parse %r as an attribute name or function call." % expr)
    args, kwargs, call = [], {}, False
    if isinstance(node, ast.Call):
        call = True
        try:
            args = [ast.literal_eval(a) for a in node.args]
            kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords}
        except ValueError:
            raise AppLoadError("Failed to parse arguments as literal values: %r." % expr)
        node = node.func
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        raise AppLoadError("Failed to parse %r as an attribute name or function call." % expr)
    parts.append(node.id)
    return list(reversed(parts)), call, args, kwargs


# --paste-global KEY=VALUE pairs (src/python.c sets them with the settings)
PASTE_GLOBAL_CONF = {}


def _load_paste_app(uri):
    """gunicorn's PasteDeploy loader: the file's app section (main, or the
    NAME after '#'), paths in it relative to the current directory."""
    try:
        from paste.deploy import loadapp
    except ImportError:
        raise AppLoadError("--paste needs PasteDeploy (the paste.deploy module: "
                           "pip install PasteDeploy, or Debian's python3-pastedeploy)") from None
    path, _, name = uri.partition("#")
    return loadapp("config:" + path, name=name or None, relative_to=os.getcwd(),
                   global_conf=dict(PASTE_GLOBAL_CONF) or None)


def load_app(uri):
    if uri.startswith("paste:"):
        return _load_paste_app(uri[len("paste:"):])
    module_name, _, expr = uri.partition(":")
    if not module_name:
        raise AppLoadError("No application module specified.")
    expr = expr or "application"
    try:
        mod = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise AppLoadError("No module named '%s'" % exc.name) from None
        raise
    path, call, args, kwargs = _parse_callable(module_name, expr)
    obj = mod
    for name in path:
        try:
            obj = getattr(obj, name)
        except AttributeError:
            raise AppLoadError("Failed to find attribute %r in %r." % (".".join(path), module_name)) from None
    if call:
        obj = obj(*args, **kwargs)
        if obj is None:
            raise AppLoadError("The function %r in module %r returned None." % (expr, module_name))
    if not callable(obj):
        raise AppLoadError("Application object must be callable.")
    return obj


def warm_import(uri):
    """In the master, before forking: find the app's module without
    importing it, so that importlib's path caches are built once and shared
    by every worker instead of copied into each (about 1 MB per worker)."""
    if uri.startswith("paste:"):
        return
    module_name = uri.partition(":")[0]
    try:
        importlib.util.find_spec(module_name.partition(".")[0])
    except Exception:
        pass    # the worker's import reports any problem


class Log:
    """gunicorn's logger surface over cunicorn's error log."""

    def _emit(self, level, msg, args):
        if level < _cunicorn.log_level():
            return
        if args:
            try:
                msg = msg % args
            except Exception:
                msg = "%s %r" % (msg, args)
        _cunicorn.log(level, str(msg))

    def debug(self, msg, *args, **kw):
        self._emit(_cunicorn.DEBUG, msg, args)

    def info(self, msg, *args, **kw):
        self._emit(_cunicorn.INFO, msg, args)

    def warning(self, msg, *args, **kw):
        self._emit(_cunicorn.WARNING, msg, args)

    warn = warning

    def error(self, msg, *args, **kw):
        self._emit(_cunicorn.ERROR, msg, args)

    def critical(self, msg, *args, **kw):
        self._emit(_cunicorn.CRITICAL, msg, args)

    def exception(self, msg, *args, **kw):
        self._emit(_cunicorn.ERROR, msg, args)
        import traceback
        tb = traceback.format_exc()
        if tb and not tb.startswith("NoneType"):
            _cunicorn.log(_cunicorn.ERROR, tb.rstrip("\n"))

    def log(self, level, msg, *args, **kw):
        self._emit(int(level), msg, args)

    def reopen_files(self):
        _cunicorn.reopen_logs()


_log = Log()


class Server:
    """What hooks get as `server` / `arbiter`."""

    def __init__(self, cfg, pid):
        self.cfg = cfg
        self.pid = pid
        self.log = _log
        self.proc_name = getattr(cfg, "proc_name", None)
        self.num_workers = getattr(cfg, "workers", 1)
        self.app = None
        self.WORKERS = {}

    def __repr__(self):
        return "<cunicorn.Server pid=%d>" % self.pid


class Worker:
    """What hooks get as `worker` (HTTP worker or dirty worker)."""

    def __init__(self, cfg, pid, age):
        self.cfg = cfg
        self.pid = pid
        self.ppid = os.getppid()
        self.age = age
        self.log = _log
        self.alive = True
        self.booted = False
        self.aborted = False
        self.nr = 0
        self.started = time.time()

    def __repr__(self):
        return "<cunicorn.Worker pid=%d age=%d>" % (self.pid, self.age)
