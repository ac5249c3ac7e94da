"""Config-file glue for src/settings_file.c (not an API).

The C side reads settings out of the namespace load() returns and calls
hook() on every server hook a file sets; what is simpler in Python lives
here:

- load(location): run a config file the way gunicorn does (importlib,
  module "__config__"; "python:mod" imports a module instead) and return
  its namespace as a dict.
- describe(exc, location): an exception as one line, naming the file's
  line where there is one.
- hook(f, n, name): a hook value (a callable or "module.callable") checked
  for its arity, post_request adapted as gunicorn adapts it.
- noop: what cfg.<hook> is for a hook nobody set.

The master imports this before the app, so it imports nothing heavy at
import time (inspect only once a hook is set).  Config files may
`from gunicorn import ...`: python/gunicorn is on sys.path beside us.
"""
import importlib
import importlib.machinery
import importlib.util
import os
import sys


def load(location):
    if location.startswith('python:'):
        return dict(vars(importlib.import_module(location[7:])))
    if location.startswith('file:'):
        location = location[5:]
    name = '__config__'
    loader = importlib.machinery.SourceFileLoader(name, location)
    spec = importlib.util.spec_from_file_location(name, location,
                                                  loader=loader)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    loader.exec_module(mod)
    return dict(vars(mod))


def describe(exc, location):
    if location.startswith('file:'):
        location = location[5:]
    line = None
    if isinstance(exc, SyntaxError):
        msg = exc.msg
        line = exc.lineno
    else:
        msg = str(exc)
    target = os.path.abspath(location)
    tb = exc.__traceback__
    while tb is not None:
        fn = tb.tb_frame.f_code.co_filename
        if fn and os.path.abspath(fn) == target:
            line = tb.tb_lineno
        tb = tb.tb_next
    text = type(exc).__name__ + (': ' + msg if msg else '')
    text = ' '.join(text.split())
    if line:
        text += ' (line %d)' % line
    return text


def _accepts(f, n):
    import inspect  # only when a hook is set: keeps the master small
    try:
        sig = inspect.signature(f)
    except (TypeError, ValueError):
        return True
    required = total = 0
    for p in sig.parameters.values():
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            total += 1
            if p.default is p.empty:
                required += 1
        elif p.kind == p.VAR_POSITIONAL:
            total = 1 << 30
        elif p.kind == p.KEYWORD_ONLY and p.default is p.empty:
            return False
    return required <= n <= total


def hook(f, n, name):
    if isinstance(f, str):
        mod, _, obj = f.rpartition('.')
        if not mod:
            raise TypeError("'%s' is not an import string "
                            '(module.callable)' % f)
        try:
            f = getattr(importlib.import_module(mod), obj)
        except (ImportError, AttributeError) as e:
            raise TypeError('cannot import %s: %s' % (f, e))
    if not callable(f):
        raise TypeError('not callable')
    if name == 'post_request':
        if _accepts(f, 4):
            return f
        if _accepts(f, 3):
            return lambda worker, req, environ, resp: f(worker, req, environ)
        if _accepts(f, 2):
            return lambda worker, req, environ, resp: f(worker, req)
        raise TypeError('must accept 4 arguments')
    if not _accepts(f, n):
        raise TypeError('must accept %d argument%s' % (n, 's' if n > 1 else ''))
    return f


def noop(*args, **kwargs):
    pass
