"""cunicorn's Python side: the packages apps import.

- cunicorn.dirty: the dirty-app API (DirtyApp, the clients, stash, errors),
  also importable as gunicorn.dirty for code written for gunicorn.
- cunicorn._hooks: the process glue src/python.c calls (not an API).
- cunicorn._config: config-file loading for src/settings_file.c (not an API).

Nothing here runs at import time beyond defining names.
"""

version_info = (0, 1, 0)
__version__ = ".".join(str(v) for v in version_info)
