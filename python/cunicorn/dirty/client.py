"""Calling dirty apps: the client side of the dirty protocol.

    from gunicorn.dirty import get_dirty_client
    client = get_dirty_client()                  # per thread, reused
    client.execute("myapp.ml:MLApp", "predict", data)
    for chunk in client.stream("myapp.llm:LLMApp", "generate", prompt): ...

    client = await get_dirty_client_async()      # per event loop, reused
    await client.execute_async("myapp.ml:MLApp", "predict", data)
    async for chunk in client.stream_async(...): ...

Sync calls go through _cunicorn_dirty.Connection (C: encode, one send, one
recv, decode; the GIL is released while waiting).  A client keeps its idle
connections and checks one out per call, so a stream being iterated and a
call made inside the loop each get their own.  Async calls share one
asyncio connection per client, many calls in flight at once, matched by
request id.

Connection policy: connecting is retried for a short while (the arbiter may
be restarting); a call whose request could not be delivered (the arbiter
closed an idle connection: EPIPE on send; asyncio also: ECONNRESET, the
request left unread, see aio._AsyncChannel) is re-sent once on a fresh
connection; a call that may have reached the arbiter is never re-sent — it
raises DirtyConnectionError, and the next call reconnects.  The client's
timeout bounds a whole call: connect, send (a full socket) and reply.

This module owns the sync half (DirtyClient and its connections,
DirtyStreamIterator, _StreamBase: what both stream iterators share), the
protocol constants, and the per-thread / per-loop client registry
(get_dirty_client*, close_dirty_client*, the fork hook).  The asyncio half
(_AsyncChannel, its protocol, DirtyAsyncStreamIterator) is in aio.py.

The socket path comes from set_dirty_socket_path() or the environment
variable GUNICORN_DIRTY_SOCKET, which cunicorn exports to its workers.

asyncio, and aio.py with it, are imported inside the async functions
only: importing asyncio costs about 5 MB per process, which every HTTP
worker of an app doing `from gunicorn.dirty import ...` would pay without
ever calling async.  The names that moved to aio.py are still attributes
of this module (see __getattr__ at the end), loaded on first access.
"""

import os
import threading
import time
import weakref

from .errors import (
    DirtyConnectionError,
    DirtyError,
    DirtyProtocolError,
    DirtyTimeoutError,
    error_from_wire,
)

try:
    import _cunicorn_dirty as _wire
except ImportError:  # pragma: no cover - only outside cunicorn without `make ext`
    _wire = None

MSG_REQUEST = 0x01
MSG_RESPONSE = 0x02
MSG_ERROR = 0x03
MSG_CHUNK = 0x04
MSG_END = 0x05
MSG_STASH = 0x10

DEFAULT_TIMEOUT = 30.0
DEFAULT_IDLE_TIMEOUT = 30.0  # streams: longest wait for the next chunk
CONNECT_RETRY_SECONDS = 2.0  # keep retrying a refused/missing socket this long
_MAX_IDLE = 4                # idle sync connections kept per client
_MAX_IDLE_STREAMS = 32       # idle async stream connections kept per client


def _need_wire():
    if _wire is None:
        raise DirtyError("the _cunicorn_dirty extension is not available "
                         "(run inside cunicorn, or build it with `make ext`)")
    return _wire


def _remote(exc):
    """A _cunicorn_dirty.RemoteError as the matching DirtyError."""
    return error_from_wire(getattr(exc, "error_type", None),
                           getattr(exc, "message", None),
                           getattr(exc, "details", None))


class DirtyClient:
    """A client of the dirty arbiter: sync (execute/stream) and asyncio
    (execute_async/stream_async) calls."""

    def __init__(self, socket_path, timeout=DEFAULT_TIMEOUT):
        self.socket_path = socket_path
        self.timeout = timeout
        self._idle = []          # idle _cunicorn_dirty.Connection objects
        self._achan = None       # _AsyncChannel (asyncio side)
        self._astreams = []      # idle stream channels, reused by stream_async
        self._agen = 0           # close_async() count: older channels are not kept

    def __repr__(self):
        return "<DirtyClient %s>" % (self.socket_path,)

    # ---- sync ---------------------------------------------------------

    def _connect(self):
        wire = _need_wire()
        deadline = time.monotonic() + min(CONNECT_RETRY_SECONDS,
                                          self.timeout if self.timeout else CONNECT_RETRY_SECONDS)
        delay = 0.01
        while True:
            try:
                return wire.Connection(self.socket_path, self.timeout)
            except (FileNotFoundError, ConnectionRefusedError) as exc:
                if time.monotonic() + delay > deadline:
                    raise DirtyConnectionError(
                        "Failed to connect to dirty arbiter: %s" % exc,
                        socket_path=self.socket_path) from exc
                time.sleep(delay)
                delay = min(delay * 2, 0.2)
            except OSError as exc:
                raise DirtyConnectionError(
                    "Failed to connect to dirty arbiter: %s" % exc,
                    socket_path=self.socket_path) from exc

    def _checkout(self):
        try:
            return self._idle.pop()
        except IndexError:
            return self._connect()

    def _checkin(self, conn):
        if not conn.closed and len(self._idle) < _MAX_IDLE:
            self._idle.append(conn)
        else:
            conn.close()

    def connect(self):
        """Open a connection now (calls connect lazily anyway)."""
        if not self._idle:
            self._idle.append(self._connect())

    def _call(self, fn, *args):
        """Run fn(conn, *args) on a checked-out connection, mapping errors.
        A request that was not delivered (EPIPE) is re-sent once."""
        for attempt in (0, 1):
            conn = self._checkout()
            try:
                result = fn(conn, *args)
            except BrokenPipeError as exc:
                conn.close()
                if attempt == 0:
                    continue
                raise DirtyConnectionError("Communication error: %s" % exc,
                                           socket_path=self.socket_path) from exc
            except BaseException as exc:
                mapped = self._map_error(conn, exc)
                if mapped is exc:
                    raise
                raise mapped from (None if isinstance(mapped, DirtyError) and
                                   not isinstance(exc, OSError) else exc)
            self._checkin(conn)
            return result

    def _map_error(self, conn, exc):
        """The DirtyError to raise for exc; decides whether conn survives."""
        if _wire is not None and isinstance(exc, _wire.RemoteError):
            self._checkin(conn)
            return _remote(exc)
        conn.close()
        if isinstance(exc, DirtyError):
            return exc
        if isinstance(exc, TimeoutError):
            return DirtyTimeoutError("Timeout waiting for dirty app response",
                                     timeout=self.timeout)
        if _wire is not None and isinstance(exc, _wire.ProtocolError):
            return DirtyProtocolError("Protocol error: %s" % exc)
        if isinstance(exc, OSError):
            return DirtyConnectionError("Communication error: %s" % exc,
                                        socket_path=self.socket_path)
        return exc

    def execute(self, app_path, action, *args, **kwargs):
        """Call `action` of the dirty app `app_path` and return its result.
        Raises DirtyAppError (the app raised; .message, .traceback),
        DirtyTimeoutError, DirtyConnectionError, DirtyAppNotFoundError, ..."""
        return self._call(_request, app_path, action, args, kwargs)

    def stream(self, app_path, action, *args, **kwargs):
        """Iterate over the chunks of an action that returns a generator.
        An error in the middle of the stream is raised by the iterator.

        Timeouts (DirtyTimeoutError): the whole stream must end within
        the client's timeout (total), and each chunk must come within
        min(DEFAULT_IDLE_TIMEOUT, timeout) of the previous one (idle); set
        .total_timeout / .idle_timeout on the iterator before iterating to
        change them (None: no limit).  Closing the iterator (or dropping
        it, or a timeout) closes its connection: the arbiter forgets the
        call and the dirty worker stops producing for it."""
        return DirtyStreamIterator(self, app_path, action, args, kwargs)

    def _raw(self, msg_type, payload):
        """Send one message (STASH, MANAGE, STATUS) and return the result
        of its RESPONSE; an ERROR is raised as its DirtyError."""
        return self._call(_raw_call, msg_type, payload)

    def close(self):
        """Close the sync connections."""
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def __enter__(self):
        self.connect()
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- asyncio ------------------------------------------------------

    def _channel(self):
        import asyncio
        loop = asyncio.get_running_loop()
        ch = self._achan
        if ch is None or ch.loop is not loop or ch.closed:
            from .aio import _AsyncChannel
            ch = self._achan = _AsyncChannel(self, loop)
        return ch

    async def connect_async(self):
        await self._channel().connect()

    async def execute_async(self, app_path, action, *args, **kwargs):
        """asyncio version of execute(); many calls may be in flight."""
        return await self._channel().execute(app_path, action, args, kwargs)

    def stream_async(self, app_path, action, *args, **kwargs):
        """asyncio version of stream(): an async iterator of chunks, with
        the same total and idle timeouts.  Each stream has a connection of
        its own, closed when the stream ends, is closed (aclose()) or
        times out: the worker then stops producing for it."""
        from .aio import DirtyAsyncStreamIterator
        return DirtyAsyncStreamIterator(self, app_path, action, args, kwargs)

    def _stream_channel(self, loop):
        """A channel for one stream: an idle one on this loop (its stream
        ended cleanly, the arbiter holds nothing for it) or a new one;
        reusing spares a connect and an accept per stream."""
        from .aio import _AsyncChannel, _drop_channel, _healthy
        idle = self._astreams
        while idle:
            ch = idle.pop()
            if ch.loop is loop and _healthy(ch):
                return ch
            _drop_channel(ch)
        ch = _AsyncChannel(self, loop)
        ch.gen = self._agen
        return ch

    def _stream_done(self, ch):
        """A stream ended with its END, result or error frame: its channel
        is kept for the next stream if it is healthy and there is room."""
        from .aio import _healthy
        if (not ch.pending and _healthy(ch) and ch.gen == self._agen
                and len(self._astreams) < _MAX_IDLE_STREAMS):
            self._astreams.append(ch)
        else:
            ch.abort()

    async def close_async(self):
        from .aio import _drop_channel
        self._agen += 1          # a stream still running is not kept after it
        idle, self._astreams = self._astreams, []
        for ch in idle:
            _drop_channel(ch)
        ch, self._achan = self._achan, None
        if ch is not None:
            await ch.close()

    async def __aenter__(self):
        await self.connect_async()
        return self

    async def __aexit__(self, *exc):
        await self.close_async()


def _request(conn, app_path, action, args, kwargs):
    return conn.request(app_path, action, args, kwargs or None)


def _raw_call(conn, msg_type, payload):
    rid = conn.send_raw(msg_type, payload)
    kind, reply = conn.recv_reply(rid)
    if kind == MSG_RESPONSE:
        if isinstance(reply, dict) and "result" in reply:
            return reply["result"]
        # An empty or foreign payload means the peers no longer agree on
        # the stream: never answer None for it, and drop the connection.
        conn.close()
        raise DirtyProtocolError("malformed RESPONSE: no result")
    if kind == MSG_ERROR:
        err = reply.get("error") if isinstance(reply, dict) else None
        if not isinstance(err, dict):
            err = {}
        raise error_from_wire(err.get("error_type"), err.get("message"),
                              err.get("details"))
    conn.close()
    raise DirtyProtocolError("unexpected reply type 0x%02x" % kind)


def _default_idle(client):
    t = client.timeout
    return DEFAULT_IDLE_TIMEOUT if not t else min(DEFAULT_IDLE_TIMEOUT, t)


class _StreamBase:
    """What the sync and async stream iterators share: the call, its state
    and its total and idle timeouts."""

    DEFAULT_IDLE_TIMEOUT = DEFAULT_IDLE_TIMEOUT

    def __init__(self, client, app_path, action, args, kwargs,
                 idle_timeout=None, total_timeout=None):
        self.client = client
        self.app_path = app_path
        self.action = action
        self.args = args
        self.kwargs = kwargs
        self._id = None
        self._done = False
        self.total_timeout = client.timeout if total_timeout is None else total_timeout
        self.idle_timeout = _default_idle(client) if idle_timeout is None else idle_timeout
        self._deadline = None
        self._last = None

    def _arm(self):
        self._last = time.monotonic()
        self._deadline = (self._last + self.total_timeout
                          if self.total_timeout else None)

    def _wait_budget(self):
        """Seconds the next chunk may take (None: no limit), or raise."""
        idle = self.idle_timeout or None
        if self._deadline is None:
            return idle
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise self._timeout_error()
        return left if idle is None or left < idle else idle

    def _timeout_error(self):
        now = time.monotonic()
        if self._deadline is not None and now >= self._deadline - 0.001:
            return DirtyTimeoutError("Stream exceeded total timeout",
                                     timeout=self.total_timeout)
        return DirtyTimeoutError("Timeout waiting for next chunk (idle %.1fs)"
                                 % (now - self._last), timeout=self.idle_timeout)


class DirtyStreamIterator(_StreamBase):
    """The iterator stream() returns.  Holds its own connection from the
    first next() until END, an error, or close()."""

    _conn = None

    def __iter__(self):
        return self

    def _start(self):
        client = self.client
        for attempt in (0, 1):
            conn = client._checkout()
            try:
                self._id = conn.stream_start(self.app_path, self.action,
                                             self.args, self.kwargs or None)
            except BrokenPipeError as exc:
                conn.close()
                if attempt == 0:
                    continue
                self._done = True
                raise DirtyConnectionError("Communication error: %s" % exc,
                                           socket_path=client.socket_path) from exc
            except BaseException as exc:
                self._done = True
                mapped = client._map_error(conn, exc)
                if mapped is exc:
                    raise
                raise mapped from None
            self._conn = conn
            self._arm()
            return

    def __next__(self):
        if self._done:
            raise StopIteration
        if self._conn is None:
            self._start()
        conn = self._conn
        try:
            budget = self._wait_budget()
            if conn.timeout != budget:
                conn.timeout = budget
            kind, value = conn.stream_next(self._id)
        except BaseException as exc:
            self._done = True
            self._conn = None
            if _wire is not None and isinstance(exc, _wire.RemoteError):
                self._checkin(conn)   # the stream is over: reusable
                raise _remote(exc) from None
            if isinstance(exc, (TimeoutError, DirtyTimeoutError)):
                conn.close()          # the arbiter cancels the call
                raise self._timeout_error() from None
            mapped = self.client._map_error(conn, exc)
            if mapped is exc:
                raise
            raise mapped from None
        if kind == MSG_CHUNK:
            self._last = time.monotonic()
            return value
        self._done = True
        self._conn = None
        self._checkin(conn)
        if kind == MSG_RESPONSE:
            # a plain (non-generator) result: the one item of the stream
            return value
        raise StopIteration

    def _checkin(self, conn):
        if conn.timeout != self.client.timeout:
            conn.timeout = self.client.timeout
        self.client._checkin(conn)

    def _cunicorn_relay(self):
        """For cunicorn's threaded worker: start the call and hand its
        connection over, so that the worker's event loop relays the chunks
        to the HTTP client and no thread waits for them.  Returns (fd,
        request id, bytes already read, idle timeout, total timeout;
        seconds, 0 for none); the iterator is over then.  None when it
        was already iterated (the worker iterates it as any other)."""
        if self._done or self._conn is not None:
            return None
        self._start()
        conn, self._conn = self._conn, None
        self._done = True
        fd, pending = conn.detach()
        return (fd, self._id, pending, float(self.idle_timeout or 0),
                float(self.total_timeout or 0))

    def close(self):
        """Abandon the stream; its connection (with chunks still coming)
        is closed, not reused: the arbiter forgets the call and the dirty
        worker stops producing for it."""
        self._done = True
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def __del__(self):
        conn = self.__dict__.get("_conn")
        if conn is not None:
            conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---- per-thread / per-loop clients ------------------------------------

_thread_local = threading.local()
_loop_clients = weakref.WeakKeyDictionary()
_dirty_socket_path = None


def set_dirty_socket_path(path):
    """Set the socket path (instead of $GUNICORN_DIRTY_SOCKET)."""
    global _dirty_socket_path
    _dirty_socket_path = path


def get_dirty_socket_path():
    if _dirty_socket_path is not None:
        return _dirty_socket_path
    path = os.environ.get("GUNICORN_DIRTY_SOCKET")
    if path:
        return path
    raise DirtyError("Dirty socket path not configured. "
                     "Make sure dirty_workers > 0 and dirty_apps are configured.")


def get_dirty_client(timeout=DEFAULT_TIMEOUT):
    """This thread's client (created on first use, then reused)."""
    client = getattr(_thread_local, "dirty_client", None)
    if client is None:
        client = DirtyClient(get_dirty_socket_path(), timeout=timeout)
        _thread_local.dirty_client = client
    elif client.timeout != timeout:
        client.timeout = timeout
        for conn in client._idle:
            conn.timeout = timeout
    return client


async def get_dirty_client_async(timeout=DEFAULT_TIMEOUT):
    """The running event loop's client (created on first use)."""
    import asyncio
    loop = asyncio.get_running_loop()
    client = _loop_clients.get(loop)
    if client is None:
        client = DirtyClient(get_dirty_socket_path(), timeout=timeout)
        _loop_clients[loop] = client
    else:
        client.timeout = timeout
    return client


def close_dirty_client():
    """Close this thread's client."""
    client = getattr(_thread_local, "dirty_client", None)
    if client is not None:
        client.close()
        _thread_local.dirty_client = None


def _forget_clients_after_fork():
    """In a forked child (an HTTP worker forked by a master that already
    made dirty calls, e.g. with --preload): the parent's connections must
    not be shared, so every cached client is dropped (its descriptors are
    closed in the child only).  cunicorn's C fork paths run this too, via
    PyOS_AfterFork_Child()."""
    global _thread_local, _loop_clients
    _thread_local = threading.local()
    _loop_clients = weakref.WeakKeyDictionary()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_clients_after_fork)


async def close_dirty_client_async():
    """Close the running loop's client."""
    import asyncio
    client = _loop_clients.pop(asyncio.get_running_loop(), None)
    if client is not None:
        await client.close_async()


# The asyncio half moved to aio.py; its names stay reachable here (as
# cunicorn.dirty.client.DirtyAsyncStreamIterator, ...) without this module
# importing aio.py, and asyncio with it, until one of them is asked for.
_AIO_NAMES = frozenset((
    "DirtyAsyncStreamIterator", "_AsyncChannel", "_ChannelProtocol", "_Sink",
    "_END", "_RESEND", "_expire", "_healthy", "_drop_channel",
    "_running_loop", "_retrieve",
))


def __getattr__(name):
    if name in _AIO_NAMES:
        from . import aio
        return getattr(aio, name)
    raise AttributeError("module %r has no attribute %r" % (__name__, name))
