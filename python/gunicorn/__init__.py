"""gunicorn, as cunicorn provides it: code written for gunicorn 25+ keeps
importing `gunicorn` (version, gunicorn.dirty) when served by cunicorn.

Only the parts apps and config files use live here; the server itself is
cunicorn's C binary.
"""

version_info = (25, 0, 0)
__version__ = ".".join(str(v) for v in version_info)
SERVER = "gunicorn"
SERVER_SOFTWARE = "%s/%s" % (SERVER, __version__)
