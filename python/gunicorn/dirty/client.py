"""gunicorn.dirty.client: the very module cunicorn.dirty.client.

Aliased in sys.modules (not a copy), so classes, module state and
isinstance checks are shared under both names."""

import sys

from cunicorn.dirty import client as _impl

sys.modules[__name__] = _impl
