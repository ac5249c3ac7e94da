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
  exception) writing into cunicorn's error log, and its statsd logger's
  metrics (extra={"metric": ...}, gauge/increment/decrement/histogram).

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
    """gunicorn's logger surface over cunicorn's error log, with its statsd
    logger's (gunicorn.instrument.statsd.Statsd): a warning or worse is
    counted as gunicorn.log.<level> by the C side, whatever the level
    shows; debug(), info() and log() with extra={"metric": name, "value":
    v, "mtype": "gauge" | "counter" | "histogram"} send that metric, and
    gauge(), increment(), decrement(), histogram() send one (nothing
    without statsd_host)."""

    _LEVELS = {"debug": _cunicorn.DEBUG, "info": _cunicorn.INFO,
               "warning": _cunicorn.WARNING, "error": _cunicorn.ERROR,
               "critical": _cunicorn.CRITICAL}

    @staticmethod
    def _text(msg, args):
        if args:
            try:
                return str(msg % args)
            except Exception:
                return "%s %r" % (msg, args)
        return str(msg)

    def _emit(self, level, msg, args):
        # a warning or worse always reaches the C side, which counts it
        # for statsd before the level filters it
        if level < _cunicorn.WARNING and level < _cunicorn.log_level():
            return
        _cunicorn.log(level, self._text(msg, args))

    def _metric(self, kw):
        """gunicorn's Statsd.log(): a metric in extra, when all three
        parts are true values."""
        try:
            extra = kw.get("extra")
            if not extra:
                return
            metric, value = extra.get("metric"), extra.get("value")
            mtype = extra.get("mtype")
            if metric and value and mtype:
                if mtype == "gauge":
                    self.gauge(metric, value)
                elif mtype == "counter":
                    self.increment(metric, value)
                elif mtype == "histogram":
                    self.histogram(metric, value)
        except Exception:
            pass

    def debug(self, msg, *args, **kw):
        self.log(_cunicorn.DEBUG, msg, *args, **kw)

    def info(self, msg, *args, **kw):
        self.log(_cunicorn.INFO, msg, *args, **kw)

    def warning(self, msg, *args, **kw):
        self._emit(_cunicorn.WARNING, msg, args)

    warn = warning

    def error(self, msg, *args, **kw):
        self._emit(_cunicorn.ERROR, msg, args)

    def critical(self, msg, *args, **kw):
        self._emit(_cunicorn.CRITICAL, msg, args)

    def exception(self, msg, *args, **kw):
        """One record, the line and its traceback, counted as
        gunicorn.log.exception (not .error), as gunicorn's."""
        import traceback
        text = self._text(msg, args)
        tb = traceback.format_exc()
        if tb and not tb.startswith("NoneType"):
            text += "\n" + tb.rstrip("\n")
        _cunicorn.log(_cunicorn.ERROR, text, True)

    def log(self, level, msg, *args, **kw):
        if isinstance(level, str):
            level = self._LEVELS.get(level.lower(), _cunicorn.INFO)
        self._metric(kw)
        if msg:
            self._emit(int(level), msg, args)

    # gunicorn's statsd methods ("you can use those directly")
    def gauge(self, name, value):
        _cunicorn.statsd("{0}:{1}|g".format(name, value))

    def increment(self, name, value, sampling_rate=1.0):
        _cunicorn.statsd("{0}:{1}|c|@{2}".format(name, value, sampling_rate))

    def decrement(self, name, value, sampling_rate=1.0):
        _cunicorn.statsd("{0}:-{1}|c|@{2}".format(name, value, sampling_rate))

    def histogram(self, name, value):
        _cunicorn.statsd("{0}:{1}|ms".format(name, value))

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
