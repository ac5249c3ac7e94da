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
request left unread, see _AsyncChannel) is re-sent once on a fresh
connection; a call that may have reached the arbiter is never re-sent — it
raises DirtyConnectionError, and the next call reconnects.  The client's
timeout bounds a whole call: connect, send (a full socket) and reply.

The socket path comes from set_dirty_socket_path() or the environment
variable GUNICORN_DIRTY_SOCKET, which cunicorn exports to its workers.

asyncio is imported inside the async functions only: importing it costs
about 5 MB per process, which every HTTP worker of an app doing
`from gunicorn.dirty import ...` would pay without ever calling async.
"""

import collections
import itertools
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
        return DirtyAsyncStreamIterator(self, app_path, action, args, kwargs)

    def _stream_channel(self, loop):
        """A channel for one stream: an idle one on this loop (its stream
        ended cleanly, the arbiter holds nothing for it) or a new one;
        reusing spares a connect and an accept per stream."""
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
        if (not ch.pending and _healthy(ch) and ch.gen == self._agen
                and len(self._astreams) < _MAX_IDLE_STREAMS):
            self._astreams.append(ch)
        else:
            ch.abort()

    async def close_async(self):
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


# ---- asyncio -----------------------------------------------------------

_END = object()
_RESEND = object()  # the request never reached the arbiter whole: send it again


def _expire(fut, timeout):
    if not fut.done():
        fut.set_exception(DirtyTimeoutError("Timeout waiting for dirty app response",
                                            timeout=timeout))


class _Sink:
    """A stream's chunks as they arrive, and the one waiter for the next:
    what asyncio.Queue would do without its getter futures and locks."""

    __slots__ = ("items", "waiter")

    def __init__(self):
        self.items = collections.deque()
        self.waiter = None

    def put(self, item):
        self.items.append(item)
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)


class _ChannelProtocol:
    """The asyncio protocol of one connection of a channel: frames are cut
    out of the bytes in data_received (by the extension's FrameReader, the
    codec's one reassembler) and routed at once, with no reader
    task and no StreamReader between the socket and the caller's future
    (asyncio and uvloop call these methods by name: no base class, so
    that importing this module does not import asyncio)."""

    def __init__(self, channel):
        self.channel = channel
        self.transport = None
        self.reader = _wire.FrameReader()    # the codec's reassembler
        self.paused = None       # a future while the transport is full (or closing)

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        ch = self.channel
        if ch.proto is not self:
            return
        try:
            frames = self.reader.feed(data)
        except Exception as exc:
            if isinstance(exc, _wire.ProtocolError):
                exc = DirtyProtocolError("Protocol error: %s" % exc)
            else:
                exc = DirtyConnectionError("Communication error: %s" % exc,
                                           socket_path=ch.client.socket_path)
            ch._fail_all(exc)
            return
        for kind, rid, msg in frames:
            ch._route(kind, rid, msg)

    def eof_received(self):
        return False             # close: the arbiter has nothing more to say

    def connection_lost(self, exc):
        self._wake()
        ch = self.channel
        if ch.proto is not self:
            return
        if ch.closed:
            err = DirtyConnectionError("dirty connection closed",
                                       socket_path=ch.client.socket_path)
        elif exc is not None:
            err = DirtyConnectionError("Communication error: %s" % exc,
                                       socket_path=ch.client.socket_path)
        else:
            err = DirtyConnectionError("dirty arbiter closed the connection",
                                       socket_path=ch.client.socket_path)
        # Which call may be sent again: see _AsyncChannel.last.
        ch._fail_all(err, undelivered=isinstance(exc, (BrokenPipeError,
                                                       ConnectionResetError)))

    def pause_writing(self):
        if self.paused is None:
            self.paused = self.channel.loop.create_future()

    def resume_writing(self):
        self._wake()

    def wait_future(self):
        """The future _wake() resolves: when the transport drains, or when
        the connection is lost."""
        if self.paused is None:
            self.paused = self.channel.loop.create_future()
        return self.paused

    def _wake(self):
        p, self.paused = self.paused, None
        if p is not None and not p.done():
            p.set_result(None)


def _healthy(ch):
    """A channel that may carry another call: open, not closing."""
    proto = ch.proto
    return (proto is not None and not ch.closed and proto.transport is not None
            and not proto.transport.is_closing())


def _drop_channel(ch):
    """Close a channel of any loop from any thread: on its own loop while
    that loop lives (transports are not thread-safe); a closed loop's is
    left to the garbage collector."""
    loop = ch.loop
    if loop.is_closed():
        ch.closed = True
        ch.proto = None
        return
    try:
        running = _running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        ch.abort()
    else:
        try:
            loop.call_soon_threadsafe(ch.abort)
        except RuntimeError:         # closed meanwhile
            ch.closed = True
            ch.proto = None


def _running_loop():
    import asyncio
    return asyncio.get_running_loop()


def _retrieve(task):
    """A connect task's outcome is read by its waiters; when they all left
    (timed out), asyncio must not log it as never retrieved."""
    if not task.cancelled():
        task.exception()


class _AsyncChannel:
    """One asyncio connection to the arbiter, many calls in flight matched
    by id; its protocol routes replies to futures and stream sinks.

    A call's future (a stream's waiter) is the one thing it waits on, with
    one timer on it: the connect and the wait for the socket to drain
    (_send) end when that future is done too, so the call's timeout
    bounds the whole call, and so does a stream's aclose().

    Sending again (`last`).  A call is re-sent, once, on a new connection
    only when its request certainly never reached the arbiter whole: the
    arbiter runs a request only once it has read all of its frame.  That
    is known when:
      - the transport was already closing before we wrote (an EOF or a
        failed write not yet delivered as connection_lost): we wait for the
        connection_lost, then connect again; nothing was written;
      - the connection is lost with EPIPE (a write found the arbiter's end
        closed: those bytes and every later one never left us) or
        ECONNRESET (Linux AF_UNIX: the arbiter's end was closed with bytes
        of ours unread in it).  Either way the stream's tail never reached
        the arbiter, and the last frame written (`last`) ends that tail: it
        is sent again, unless a reply to it arrived.  Frames written before
        it may have been read and run: they fail.
    A plain EOF after we wrote is never retried: the arbiter may have read
    the request, handed it to a worker and died before replying (killed,
    restarted), and a call must not run twice.  An idle connection the
    arbiter closed is still caught: if the loop saw its EOF before our
    write, the transport is closing (first case); if not, the write meets
    the closed end (EPIPE, second case)."""

    gen = 0                      # the client's close_async() count at birth

    def __init__(self, client, loop):
        self.client = client
        self.loop = loop
        self.proto = None            # the _ChannelProtocol of the connection
        self.pending = {}            # id -> Future (execute) or _Sink (stream)
        self.ids = itertools.count(1)
        self.closed = False
        self.last = 0                # id of the connection's last request, until a reply to it
        self._connecting = None

    def _connect_task(self):
        task = self._connecting
        if task is None:
            task = self._connecting = self.loop.create_task(self._open())
            task.add_done_callback(self._connect_done)
        return task

    def _connect_done(self, task):
        if self._connecting is task:
            self._connecting = None
        _retrieve(task)

    async def connect(self):
        import asyncio
        if self.proto is None:
            await asyncio.shield(self._connect_task())

    async def _open(self):
        import asyncio
        _need_wire()
        client = self.client
        deadline = self.loop.time() + min(CONNECT_RETRY_SECONDS,
                                          client.timeout or CONNECT_RETRY_SECONDS)
        delay = 0.01
        proto = _ChannelProtocol(self)
        while True:
            try:
                await self.loop.create_unix_connection(lambda: proto, client.socket_path)
                break
            except (FileNotFoundError, ConnectionRefusedError) as exc:
                if self.loop.time() + delay > deadline:
                    raise DirtyConnectionError(
                        "Failed to connect to dirty arbiter: %s" % exc,
                        socket_path=client.socket_path) from exc
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.2)
            except OSError as exc:
                raise DirtyConnectionError(
                    "Failed to connect to dirty arbiter: %s" % exc,
                    socket_path=client.socket_path) from exc
        if self.closed or proto.transport is None or proto.transport.is_closing():
            # closed while connecting, or the connection was lost before
            # it was ours (its connection_lost was not for this channel)
            if proto.transport is not None:
                proto.transport.close()
            raise DirtyConnectionError("dirty connection closed",
                                       socket_path=client.socket_path)
        self.last = 0
        self.proto = proto

    def _route(self, kind, rid, msg):
        if rid == self.last:
            self.last = 0            # it reached the arbiter: never sent again
        target = self.pending.get(rid)
        if target is None:
            return  # a call that timed out or was abandoned
        if kind == MSG_ERROR:
            e = msg.get("error") if isinstance(msg, dict) else None
            e = e if isinstance(e, dict) else {}
            exc = error_from_wire(e.get("error_type"), e.get("message"), e.get("details"))
            item = exc
        elif kind == MSG_RESPONSE:
            item = ("result", msg.get("result") if isinstance(msg, dict) else None)
        elif kind == MSG_CHUNK:
            item = ("chunk", msg.get("data") if isinstance(msg, dict) else None)
        elif kind == MSG_END:
            item = _END
        else:
            item = DirtyProtocolError("unexpected message type 0x%02x" % kind)
        if type(target) is not _Sink:
            self.pending.pop(rid, None)
            if target.done():
                return
            if isinstance(item, BaseException):
                target.set_exception(item)
            elif isinstance(item, tuple):
                target.set_result(item[1])
            else:
                target.set_exception(DirtyProtocolError(
                    "stream reply to a call: use stream_async()"))
        else:
            if item is _END or isinstance(item, BaseException) or item[0] == "result":
                self.pending.pop(rid, None)
            target.put(item)

    def _fail_all(self, exc, undelivered=False):
        """The connection is gone: every call on it fails with exc, but the
        last request written gets _RESEND when it certainly was not
        delivered (undelivered: see the class comment)."""
        pending, self.pending = self.pending, {}
        last, self.last = self.last, 0
        for rid, target in pending.items():
            again = undelivered and rid == last
            if type(target) is not _Sink:
                if not target.done():
                    if again:
                        target.set_result(_RESEND)
                    else:
                        target.set_exception(exc)
            else:
                target.put(_RESEND if again else exc)
        proto, self.proto = self.proto, None
        if proto is not None:
            proto._wake()
            if proto.transport is not None:
                proto.transport.close()

    async def _wait(self, shared, fut):
        """Wait until `shared` (the connect task, a drain: others wait on
        them too, so neither is cancelled with us) or fut is done."""
        w = self.loop.create_future()

        def wake(_):
            if not w.done():
                w.set_result(None)
        shared.add_done_callback(wake)
        fut.add_done_callback(wake)
        try:
            await w
        finally:
            shared.remove_done_callback(wake)
            fut.remove_done_callback(wake)

    async def _send(self, fut, target, app_path, action, args, kwargs):
        """Write one request once connected, registered in pending as
        target; returns its id.  Returns None, nothing written, if fut got
        done first (the call's timer, a stream's aclose()).  A sender that
        finds the socket full waits for it to drain once, then writes: the
        buffer grows by at most one frame per caller, and a call that times
        out meanwhile never writes its frame.  Fast path (connected, not
        full): no await."""
        drained = False
        while True:
            if self.closed:
                raise DirtyConnectionError("dirty connection closed",
                                           socket_path=self.client.socket_path)
            proto = self.proto
            if proto is None:
                task = self._connect_task()
                await self._wait(task, fut)
                if fut.done():
                    return None
                if task.done():
                    task.result()    # the connect's error
                continue
            t = proto.transport
            if t.is_closing():
                # lost, its connection_lost not run yet: let it settle the
                # calls on it (see the class comment), then connect again
                # (a drain may wake us first: we wait again)
                await self._wait(proto.wait_future(), fut)
                if fut.done():
                    return None
                continue
            if proto.paused is not None and not drained:
                drained = True
                await self._wait(proto.paused, fut)
                if fut.done():
                    return None
                continue
            break
        rid = next(self.ids)
        try:
            frame = _wire.encode_request(rid, app_path, action, list(args), kwargs or None)
        except Exception as exc:
            raise DirtyProtocolError("cannot encode request: %s" % exc) from exc
        self.pending[rid] = target
        self.last = rid
        t.write(frame)
        return rid

    async def execute(self, app_path, action, args, kwargs):
        loop = self.loop
        timeout = self.client.timeout
        deadline = loop.time() + timeout if timeout else None
        resent = False
        while True:
            fut = loop.create_future()
            # one timer on the future for the whole call, connect and send
            # included: asyncio.wait_for() would add a task per call
            timer = (loop.call_at(deadline, _expire, fut, timeout)
                     if deadline is not None else None)
            rid = None
            try:
                rid = await self._send(fut, fut, app_path, action, args, kwargs)
                result = await fut
            finally:
                if timer is not None:
                    timer.cancel()
                if rid is not None:
                    self.pending.pop(rid, None)
            if result is not _RESEND:
                return result
            if resent:
                raise DirtyConnectionError(
                    "dirty arbiter connection lost before the request was sent",
                    socket_path=self.client.socket_path)
            resent = True

    def forget(self, rid):
        self.pending.pop(rid, None)

    def abort(self):
        """Close now, without waiting (usable outside a coroutine)."""
        self.closed = True
        proto, self.proto = self.proto, None
        if proto is not None:
            proto._wake()
            if proto.transport is not None:
                proto.transport.close()

    async def close(self):
        self.closed = True
        self._fail_all(DirtyConnectionError("dirty client closed"))


class DirtyAsyncStreamIterator(_StreamBase):
    """The async iterator stream_async() returns.  The stream runs on a
    channel (connection) of its own, so that abandoning it can be told to
    the arbiter the one way every arbiter understands: by closing it.  A
    stream that ran to its end (END, a result, an error frame) leaves its
    channel to the client for the next stream.
    Each wait for a chunk is one future and, when a timeout applies, one
    timer on it (no task, no asyncio.wait_for); the first wait covers the
    connect and the send too."""

    _chan = None
    _sink = None
    _resent = False

    def __aiter__(self):
        return self

    async def __anext__(self):
        while True:
            if self._done:
                raise StopAsyncIteration
            sink = self._sink
            if sink is None:
                import asyncio
                sink = self._sink = _Sink()
                self._chan = self.client._stream_channel(asyncio.get_running_loop())
                self._arm()     # the total timeout counts the connect and the send
            if not sink.items:
                ch = self._chan
                try:
                    budget = self._wait_budget()
                    loop = ch.loop
                    fut = sink.waiter = loop.create_future()
                    timer = (loop.call_later(budget, _expire, fut, budget)
                             if budget is not None else None)
                    try:
                        if self._id is None:
                            self._id = await ch._send(fut, sink, self.app_path, self.action,
                                                      self.args, self.kwargs)
                        await fut
                    finally:
                        sink.waiter = None
                        if timer is not None:
                            timer.cancel()
                except DirtyTimeoutError:
                    if self._done:          # aclose() won the race
                        raise StopAsyncIteration from None
                    self._finish()
                    raise self._timeout_error() from None
                except BaseException:
                    self._finish()          # cancelled: the caller went away
                    raise
                continue                    # an item, or aclose() from another task
            item = sink.items.popleft()
            if item is _RESEND:
                # the request never reached the arbiter whole (see
                # _AsyncChannel): once more, on a new connection
                if self._resent:
                    self._finish()
                    raise DirtyConnectionError(
                        "dirty arbiter connection lost before the request was sent",
                        socket_path=self.client.socket_path)
                self._resent = True
                self._id = None
                continue
            break
        if item is _END:
            self._release()
            raise StopAsyncIteration
        if isinstance(item, BaseException):
            if isinstance(item, DirtyProtocolError):
                self._finish()  # the peers no longer agree: not kept
            else:
                self._release()  # an error frame; a broken channel is not kept
            raise item
        if item[0] == "result":
            self._release()
        self._last = time.monotonic()
        return item[1]

    def _finish(self):
        """Done or abandoned: close the stream's own channel (the arbiter
        then cancels the call if it is still running), and wake a task
        waiting in __anext__ (aclose() from another task): it gets
        StopAsyncIteration, see aclose()."""
        self._done = True
        ch, self._chan = self._chan, None
        sink = self._sink
        if sink is not None:
            w = sink.waiter
            if w is not None and not w.done():
                w.set_result(None)
        if ch is not None:
            ch.forget(self._id)
            ch.abort()

    def _release(self):
        """Ended by the arbiter's last frame: the channel may serve again."""
        self._done = True
        ch, self._chan = self._chan, None
        if ch is not None:
            ch.forget(self._id)
            self.client._stream_done(ch)

    async def aclose(self):
        """Abandon the stream: its connection is closed, the worker stops
        producing for it.  A task waiting in __anext__ meanwhile (aclose()
        called from another task: a disconnect handler, a watchdog) is
        woken at once and gets StopAsyncIteration, its `async for` ends:
        what any __anext__ after aclose() gets, here as from an async
        generator.  An async generator itself refuses a concurrent aclose()
        (RuntimeError: it is running) and leaves the waiter waiting;
        nothing of this iterator runs while it waits, and leaving the waiter
        hanging on a closed stream helps nobody."""
        self._finish()

    def __del__(self):
        ch = self.__dict__.get("_chan")
        if ch is not None:
            try:
                ch.abort()
            except Exception:
                pass


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
