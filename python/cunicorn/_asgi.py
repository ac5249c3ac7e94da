"""The ASGI worker's Python side (the worker: src/asgi_worker.c).

Owns the event loop (uvloop when asgi_loop asks for it and it is
installed, asyncio otherwise), the lifespan protocol, the servers over
the inherited listening sockets, and under TLS (certfile) the worker's
ssl.SSLContext: the loop's SSL transports encrypt, the C protocol sees
plaintext.  Every connection's HTTP -- heads,
deadlines, the scope, receive/send, framing -- is the C protocol
_cunicorn_asgi.Protocol; nothing per request runs here.

run() returns the worker's exit status: 0, or 3 (gunicorn's "Worker
failed to boot.") when the app's lifespan startup failed.
"""

import asyncio
import functools
import os
import socket

import _cunicorn
import _cunicorn_asgi

WORKER_BOOT_ERROR = 3

# ssl_version's numbers (settings.h: SETTINGS_SSL_*): 5, PROTOCOL_TLSv1_2,
# pins TLS 1.2; the others (TLS, SSLv23, TLS_SERVER) negotiate 1.2 or 1.3
_SSL_TLSv1_2 = 5


def _log(level, msg):
    _cunicorn.log(level, msg)


def _new_loop(kind):
    if kind in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if kind == "uvloop":
                _log(_cunicorn.WARNING, "asgi_loop = uvloop but uvloop is not "
                     "installed; using asyncio")
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def _ssl_context(o):
    """The worker's SSLContext from the TLS settings (tls_options()), as
    gunicorn's default one: a server context; client certificates
    verified by ca_certs (the system's CAs without it) when cert_reqs
    asks for them; ciphers for TLS 1.2; TLS 1.2 at least."""
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if o["ssl_version"] == _SSL_TLSv1_2:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(o["certfile"], o["keyfile"])
    ctx.verify_mode = ssl.VerifyMode(o["cert_reqs"])
    if o["ca_certs"]:
        ctx.load_verify_locations(cafile=o["ca_certs"])
    elif o["cert_reqs"]:
        ctx.load_default_certs(ssl.Purpose.CLIENT_AUTH)
    if o["ciphers"]:
        ctx.set_ciphers(o["ciphers"])
    return ctx


def _tls():
    """create_server's TLS keywords ({} for plain HTTP), or None when the
    context cannot be built (logged: the worker fails to boot)."""
    o = _cunicorn_asgi.tls_options()
    if o is None:
        return {}
    try:
        ctx = _ssl_context(o)
    except (OSError, ValueError) as e:  # ssl.SSLError is an OSError
        _log(_cunicorn.ERROR, "TLS: cannot use certfile %s / keyfile %s: %s"
             % (o["certfile"], o["keyfile"] or "(in certfile)", e))
        return None
    if not o["suppress_ragged_eofs"]:
        _log(_cunicorn.WARNING, "suppress_ragged_eofs = False has no effect on "
             "the asgi worker: the loop's TLS treats an EOF without "
             "close_notify as an EOF")
    # a handshake failure (a plain-HTTP client, a refused certificate) is
    # an OSError, which asyncio and uvloop log only in debug mode
    return {"ssl": ctx, "ssl_handshake_timeout": o["handshake_timeout"],
            "ssl_shutdown_timeout": o["shutdown_timeout"]}


class Lifespan:
    """The ASGI lifespan protocol: one task that lives as long as the
    worker; startup before the first connection, shutdown after the last."""

    def __init__(self, app, mode):
        self.app = app
        self.mode = mode
        self.state = {}
        self.supported = True
        self.failed = None
        self.queue = asyncio.Queue()
        self.started = asyncio.Event()
        self.finished = asyncio.Event()
        self.task = None

    async def _main(self):
        scope = {"type": "lifespan",
                 "asgi": {"version": "3.0", "spec_version": "2.0"},
                 "state": self.state}
        try:
            await self.app(scope, self.queue.get, self._send)
        except BaseException as e:  # noqa: B902 -- the app's own failure
            if not self.started.is_set():
                if self.mode == "auto":
                    self.supported = False
                    _log(_cunicorn.INFO,
                         "ASGI 'lifespan' protocol appears unsupported.")
                else:
                    self.failed = "%s: %s" % (type(e).__name__, e)
                    import traceback
                    _log(_cunicorn.ERROR, "Exception in 'lifespan' protocol\n"
                         + "".join(traceback.format_exception(e)).rstrip())
            elif not self.finished.is_set():
                import traceback
                _log(_cunicorn.ERROR, "Exception in 'lifespan' protocol\n"
                     + "".join(traceback.format_exception(e)).rstrip())
        finally:
            self.started.set()
            self.finished.set()

    async def _send(self, message):
        t = message.get("type")
        if t == "lifespan.startup.complete":
            self.started.set()
        elif t == "lifespan.startup.failed":
            self.failed = message.get("message") or "lifespan.startup.failed"
            self.started.set()
        elif t in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
            if t == "lifespan.shutdown.failed":
                _log(_cunicorn.ERROR, "Application shutdown failed: %s"
                     % (message.get("message") or ""))
            self.finished.set()
        else:
            raise RuntimeError("Unexpected ASGI lifespan message %r" % (t,))

    async def startup(self):
        if self.mode == "off":
            self.supported = False
            return True
        _log(_cunicorn.INFO, "Waiting for application startup.")
        self.task = asyncio.get_running_loop().create_task(self._main())
        await self.queue.put({"type": "lifespan.startup"})
        await self.started.wait()
        if self.failed is not None:
            _log(_cunicorn.ERROR, "Application startup failed: %s" % self.failed)
            _log(_cunicorn.ERROR, "Application startup failed. Exiting.")
            return False
        if self.supported:
            _log(_cunicorn.INFO, "Application startup complete.")
        return True

    async def shutdown(self, timeout):
        if not self.supported or self.task is None or self.task.done():
            return
        _log(_cunicorn.INFO, "Waiting for application shutdown.")
        await self.queue.put({"type": "lifespan.shutdown"})
        try:
            await asyncio.wait_for(self.finished.wait(), timeout)
        except asyncio.TimeoutError:
            _log(_cunicorn.WARNING, "Application shutdown timed out.")
            return
        _log(_cunicorn.INFO, "Application shutdown complete.")


async def _serve(app, listeners, sigfd, lifespan_mode, backlog):
    loop = asyncio.get_running_loop()
    tls = _tls()
    if tls is None:
        return WORKER_BOOT_ERROR
    lifespan = Lifespan(app, lifespan_mode)
    if not await lifespan.startup():
        return WORKER_BOOT_ERROR
    wake = asyncio.Event()
    tasks = set()
    servers = []

    def stop_accepting():
        # stopping, or worker_connections reached (then called from inside
        # connection_made, so that not one more connection is accepted);
        # tick() says when to listen again
        while servers:
            servers.pop().close()

    async def listen():
        # each server owns a duplicate of the inherited listener, so that
        # closing it leaves the socket itself to be listened on again
        for i, (fd, family) in enumerate(listeners):
            sock = socket.socket(family, socket.SOCK_STREAM, 0, os.dup(fd))
            servers.append(await loop.create_server(
                functools.partial(_cunicorn_asgi.Protocol, i), sock=sock,
                backlog=backlog, **tls))

    _cunicorn_asgi.configure(loop, app, tasks,
                             lifespan.state if lifespan.supported else None,
                             wake.set, stop_accepting)
    await listen()

    def on_signals():
        _cunicorn_asgi.on_signals()
        wake.set()

    loop.add_reader(sigfd, on_signals)
    _cunicorn_asgi.post_worker_init()
    while True:
        delay, stopping, done, full = _cunicorn_asgi.tick()
        if (stopping or full) and servers:
            stop_accepting()
        if done:
            # a connection the loop accepted just before its listeners
            # closed may still be on its way to connection_made (uvloop
            # schedules it): give it one turn, then ask again
            await asyncio.sleep(0)
            if _cunicorn_asgi.tick()[2]:
                break
            continue
        if not stopping and not full and not servers:
            await listen()
            continue
        wake.clear()
        try:
            await asyncio.wait_for(wake.wait(), delay)
        except asyncio.TimeoutError:
            pass
    loop.remove_reader(sigfd)
    await lifespan.shutdown(5.0)
    return 0


def run(app, listeners, sigfd, loop_kind, lifespan_mode, backlog):
    loop = _new_loop(loop_kind)
    asyncio.set_event_loop(loop)
    return loop.run_until_complete(
        _serve(app, listeners, sigfd, lifespan_mode, backlog))
