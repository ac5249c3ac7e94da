"""gunicorn, as cunicorn provides it: code written for gunicorn 25+ keeps
importing `gunicorn` (version, gunicorn.dirty) when served by cunicorn.

Only the parts apps and config files use live here; the server itself is
cunicorn's C binary.  An installed gunicorn is not hidden: its modules
(gunicorn.glogging, gunicorn.util, ...) are found after ours on the
package path, so `from gunicorn import glogging` in a config file works
when gunicorn is installed, while gunicorn.dirty stays cunicorn's.
"""

from pkgutil import extend_path

# ours first (this directory comes first on sys.path), then every other
# `gunicorn` package on sys.path, in sys.path's order
__path__ = extend_path(__path__, __name__)

version_info = (25, 0, 0)
__version__ = ".".join(str(v) for v in version_info)
SERVER = "gunicorn"
SERVER_SOFTWARE = "%s/%s" % (SERVER, __version__)
