"""gunicorn.dirty.stash: the very module cunicorn.dirty.stash.

Aliased in sys.modules (not a copy), so classes, module state and
isinstance checks are shared under both names."""

import sys

from cunicorn.dirty import stash as _impl

sys.modules[__name__] = _impl
