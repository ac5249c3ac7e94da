/*
 * asgi.h — the ASGI worker (-k asgi, uvicorn's worker names): an asyncio
 * event loop in the worker process, HTTP in C.
 *
 *   asgi_worker.c   the worker role: signals (a signalfd the loop
 *                   watches), boot, the Python glue's run(), the exit
 *   asgi_proto.c    the built-in module _cunicorn_asgi (with asgi_http.c,
 *                   asgi_ws.c, asgi_state.c; see asgi_int.h): the asyncio
 *                   protocol (one object per connection) that parses
 *                   heads, enforces limits and deadlines, builds the
 *                   `http` scope and provides receive/send, all in C;
 *                   and the worker's state the glue polls (tick)
 *   python/cunicorn/_asgi.py  the glue: the loop (uvloop or asyncio),
 *                   lifespan, the servers over the inherited listeners
 */
#ifndef CUNICORN_ASGI_H
#define CUNICORN_ASGI_H

struct http_worker_ctx;

/* Called by asgi_worker.c before the glue runs: the worker's context and
 * its signalfd (read by _cunicorn_asgi.on_signals()). */
void asgi_proto_setup(struct http_worker_ctx *ctx, int sigfd);

#endif
