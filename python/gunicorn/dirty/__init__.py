"""gunicorn.dirty: the same objects as cunicorn.dirty (not copies), so
isinstance checks and `except` clauses work with either name."""

from cunicorn.dirty import *  # noqa: F401,F403
from cunicorn.dirty import __all__  # noqa: F401
from cunicorn.dirty import stash  # noqa: F401
from . import app, client, errors  # noqa: F401
