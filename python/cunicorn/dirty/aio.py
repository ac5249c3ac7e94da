"""The asyncio half of the dirty client: what execute_async(),
stream_async() and close_async() of a DirtyClient (client.py) run on.

Owns the asyncio connection to the arbiter (_AsyncChannel: many calls in
flight on one connection, matched by request id, and the policy of when
a lost request is sent again), its protocol (_ChannelProtocol: frames
cut out of data_received and routed to the callers' futures and stream
sinks), and the async stream iterator (DirtyAsyncStreamIterator).  The
client object, its caches of channels, the per-loop client registry and
the sync half stay in client.py.

Imported by client.py only when an async method is first used, never by
`import cunicorn.dirty` / `gunicorn.dirty` (see client.py's docstring:
asyncio costs about 5 MB per process).  This module does not import
asyncio at its top either: an async function imports it when it runs.
"""

import collections
import itertools
import time

from .client import (
    CONNECT_RETRY_SECONDS,
    MSG_CHUNK,
    MSG_END,
    MSG_ERROR,
    MSG_RESPONSE,
    _need_wire,
    _StreamBase,
    _wire,
)
from .errors import (
    DirtyConnectionError,
    DirtyProtocolError,
    DirtyTimeoutError,
    error_from_wire,
)


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
