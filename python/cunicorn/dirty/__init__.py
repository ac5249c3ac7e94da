"""Dirty apps: a separate pool of processes for slow, stateful work (ML
models, heavy computation) that HTTP workers call over a Unix socket.

The public API, the same names as gunicorn 25's gunicorn.dirty (which
cunicorn also provides, re-exporting this package):

    DirtyApp                         base class of dirty apps
    get_dirty_client(timeout=30.0)   per-thread sync client
    await get_dirty_client_async()   per-event-loop asyncio client
    stash                            shared key/value tables (module)
    errors: DirtyError and its subclasses
"""

from .errors import (
    DirtyError,
    DirtyTimeoutError,
    DirtyConnectionError,
    DirtyWorkerError,
    DirtyAppError,
    DirtyAppNotFoundError,
    DirtyNoWorkersAvailableError,
    DirtyProtocolError,
    StashError,
    StashTableNotFoundError,
    StashKeyNotFoundError,
)
from .app import DirtyApp
from .client import (
    DirtyClient,
    get_dirty_client,
    get_dirty_client_async,
    set_dirty_socket_path,
    close_dirty_client,
    close_dirty_client_async,
)
from . import stash

__all__ = [
    "DirtyError",
    "DirtyTimeoutError",
    "DirtyConnectionError",
    "DirtyWorkerError",
    "DirtyAppError",
    "DirtyAppNotFoundError",
    "DirtyNoWorkersAvailableError",
    "DirtyProtocolError",
    "StashError",
    "StashTableNotFoundError",
    "StashKeyNotFoundError",
    "DirtyApp",
    "DirtyClient",
    "get_dirty_client",
    "get_dirty_client_async",
    "set_dirty_socket_path",
    "close_dirty_client",
    "close_dirty_client_async",
    "stash",
]
