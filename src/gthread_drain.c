/*
 * gthread_drain.c — the gthread worker's drain and linger (contract:
 * gthread_drain.h).
 *
 * Drain.  An app answered without reading its request's body, and the
 * client was still sending it: the thread dropped what had come
 * (wsgi_body_drain, never waiting) and handed the connection back with
 * what is still to come (c->drain: a Content-Length count within 1 MiB,
 * the bound the response head was decided with, or a chunked body's
 * decoder state).  Here the loop reads it as it arrives and drops it
 * (http_drain.c decides what is the body's): a Content-Length rest into
 * a sink, never more than is left, so that the first byte after the
 * body — a pipelined request — stays in the socket for the next request,
 * as after any kept response; a chunked rest, whose end is known only
 * by decoding its framing, into the connection's buffer, which keeps
 * what follows the end for the next request.  The deadline is set by
 * the worker (http_drain_ms): a client that does not finish in time is
 * closed by its timers.  Malformed framing, or more chunk data than the
 * bound, lingers and closes.
 *
 * Linger.  A connection that closes with request bytes maybe unread (a
 * refused request, a body not drained): shut our side, read and drop
 * until the client hangs up or a short deadline passes.
 *
 * Owns nothing: the drain's state lives in the connection, the
 * deadlines in the worker's timer lists.  Never: calls Python, blocks,
 * drops a byte past a drained body, or frees a connection itself (the worker's close_conn
 * does, deferred past the loop turn).
 */
#include "gthread_drain.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>

#include "http_conn.h"
#include "log.h"
#include "tls.h"

#define SINK	16384

static struct drain_host H;

void
drain_setup(const struct drain_host *host)
{
	H = *host;
}

void
drain_readable(struct http_conn *c)
{
	char sink[SINK], *into;
	size_t room, used;
	ssize_t n;
	int r;

	for (;;) {
		/* c->len == 0: what was read is the body's, until its end */
		if (c->drain.kind == HTTP_BODY_CHUNKED) {
			into = c->buf;
			room = c->cap;
		} else {
			into = sink;
			room = http_drain_want(&c->drain, SINK);
		}
		n = tls_io_read(c->fd, into, room);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN)
			return;		/* the next edge brings more */
		if (n <= 0) {
			http_drain_log_eof(&c->drain);
			H.close_conn(c);
			return;
		}
		r = http_drain_feed(&c->drain, into, (size_t)n, &used);
		if (r == HTTP_DRAIN_MORE)
			continue;
		if (r != HTTP_DRAIN_END) {
			H.linger(c);
			return;
		}
		if (into == c->buf) {	/* the start of the next request */
			c->len = (size_t)n - used;
			memmove(c->buf, c->buf + used, c->len);
		}
		H.next_request(c);
		return;
	}
}

void
drain_start(struct http_conn *c)
{
	H.arm(c);
	drain_readable(c);
}

void
linger_readable(struct http_conn *c)
{
	char sink[SINK];
	ssize_t n;

	while ((n = read(c->fd, sink, sizeof(sink))) > 0)
		;
	if (n == 0 || errno != EAGAIN)
		H.close_conn(c);
}

void
linger_start(struct http_conn *c)
{
	tls_conn_end(c->fd);	/* close_notify; what is read from here is dropped raw */
	shutdown(c->fd, SHUT_WR);
	c->len = 0;
	H.arm(c);
}
