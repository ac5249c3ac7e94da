"""The stash: named key -> value tables held by the dirty arbiter, shared
by every worker and HTTP worker (gunicorn.dirty.stash).

    from gunicorn.dirty import stash
    stash.put("sessions", "user:1", {"name": "Alice"})
    stash.get("sessions", "user:1", default=None)
    sessions = stash.table("sessions"); sessions["user:2"] = {...}

Each operation is one STASH message {"op", "table", "key"?, "value"?,
"pattern"?} answered by RESPONSE {"result": ...} or ERROR, sent through this
thread's dirty client (get_dirty_client()).  Usable from HTTP workers, dirty
workers and any process that can reach the socket.  Tables live in the
arbiter's memory: they survive dirty worker restarts, and are lost when the
arbiter restarts.  The setting dirty_stash_max_bytes caps the encoded size
of what the stash holds (keys, values, table names and a fixed overhead
per table and per entry); a put or ensure beyond it raises StashError
naming it.  keys() and tables() raise StashError when the answer would
not fit in one message (over 64 MiB, or over 1,048,576 names).
"""

from .client import MSG_STASH, get_dirty_client
from .errors import (
    DirtyError,
    DirtyProtocolError,
    StashError,
    StashKeyNotFoundError,
    StashTableNotFoundError,
)

STASH_OP_PUT = 1
STASH_OP_GET = 2
STASH_OP_DELETE = 3
STASH_OP_KEYS = 4
STASH_OP_CLEAR = 5
STASH_OP_INFO = 6
STASH_OP_ENSURE = 7
STASH_OP_DELETE_TABLE = 8
STASH_OP_TABLES = 9
STASH_OP_EXISTS = 10

_MISSING = object()


def _op(op, table, key=_MISSING, value=_MISSING, pattern=None):
    msg = {"op": op, "table": table}
    if key is not _MISSING:
        msg["key"] = key
    if value is not _MISSING:
        msg["value"] = value
    if pattern is not None:
        msg["pattern"] = pattern
    try:
        return get_dirty_client()._raw(MSG_STASH, msg)
    except (StashError, StashKeyNotFoundError, StashTableNotFoundError):
        raise
    except DirtyError as exc:
        kind = exc.details.get("error_type") if isinstance(exc.details, dict) else None
        # The arbiter names stash errors in details or in the message type;
        # the client maps the type names itself (errors.error_from_wire).
        if kind == "StashTableNotFoundError":
            raise StashTableNotFoundError(table) from None
        if kind == "StashKeyNotFoundError":
            raise StashKeyNotFoundError(table, key) from None
        raise


def _list_result(result):
    """keys() and tables() answer a list; anything else is an error, never
    an empty list (a reply too large for one frame is a StashError)."""
    if not isinstance(result, list):
        raise DirtyProtocolError("stash reply is not a list: %r"
                                 % type(result).__name__)
    return result


def put(table, key, value):
    """Store value under key (the table is created if needed)."""
    _op(STASH_OP_PUT, table, key, value)


def get(table, key, default=None):
    """The value under key, or default when the key (or table) is absent."""
    try:
        return _op(STASH_OP_GET, table, key)
    except (StashKeyNotFoundError, StashTableNotFoundError):
        return default


def delete(table, key):
    """Remove key; True if it was there."""
    return bool(_op(STASH_OP_DELETE, table, key))


def exists(table, key=None):
    """Whether the table (key None) or the key in it exists."""
    if key is None:
        return bool(_op(STASH_OP_EXISTS, table))
    return bool(_op(STASH_OP_EXISTS, table, key))


def keys(table, pattern=None):
    """The keys of the table, optionally only those matching a glob."""
    return _list_result(_op(STASH_OP_KEYS, table, pattern=pattern))


def clear(table):
    """Remove every entry of the table."""
    _op(STASH_OP_CLEAR, table)


def info(table):
    """A dict describing the table (at least "size")."""
    return _op(STASH_OP_INFO, table)


def ensure(table):
    """Create the table if it does not exist (idempotent)."""
    _op(STASH_OP_ENSURE, table)


def delete_table(table):
    """Remove the table and its entries."""
    _op(STASH_OP_DELETE_TABLE, table)


def tables():
    """The names of every table."""
    return _list_result(_op(STASH_OP_TABLES, ""))


class StashTable:
    """A dict-like view of one table: t[k], t[k] = v, del t[k], k in t,
    iter(t), len(t), get, keys, items, values, clear."""

    def __init__(self, name):
        self._name = name

    @property
    def name(self):
        return self._name

    def __repr__(self):
        return "<StashTable %r>" % (self._name,)

    def __getitem__(self, key):
        value = get(self._name, key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def __setitem__(self, key, value):
        put(self._name, key, value)

    def __delitem__(self, key):
        if not delete(self._name, key):
            raise KeyError(key)

    def __contains__(self, key):
        return exists(self._name, key)

    def __iter__(self):
        return iter(keys(self._name))

    def __len__(self):
        i = info(self._name)
        return int(i.get("size", 0)) if isinstance(i, dict) else 0

    def get(self, key, default=None):
        return get(self._name, key, default)

    def keys(self, pattern=None):
        return keys(self._name, pattern=pattern)

    def items(self):
        for k in keys(self._name):
            v = get(self._name, k, _MISSING)
            if v is not _MISSING:
                yield k, v

    def values(self):
        for _, v in self.items():
            yield v

    def clear(self):
        clear(self._name)


def table(name):
    """A dict-like view of the named table."""
    return StashTable(name)


__all__ = ["put", "get", "delete", "exists", "keys", "clear", "info",
           "ensure", "delete_table", "tables", "table", "StashTable",
           "StashError", "StashTableNotFoundError", "StashKeyNotFoundError"]


def _ensure_tables(names):
    """Create the tables a DirtyApp declares in `stashes` (called by the
    dirty worker after loading the app).  A single name is accepted too."""
    if isinstance(names, str):
        names = [names]
    for name in names:
        ensure(str(name))
