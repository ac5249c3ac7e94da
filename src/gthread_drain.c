/*
 * gthread_drain.c — the gthread worker's drain and linger (contract:
 * gthread_drain.h).
 *
 * Drain.  An app answered without reading its request's body, and the
 * client was still sending it: the thread dropped what had come
 * (wsgi_body_drain, never waiting) and handed the connection back with
 * the count of Content-Length bytes still to come (c->drain_left, at
 * most 1 MiB: the bound the response head was decided with).  Here the
 * loop reads them as they arrive into a sink, never more than are left,
 * so that the first byte after the body — a pipelined request — stays in
 * the socket for the next request, as after any kept response.  The
 * deadline is the body reader's own (wsgi_body_rest_ms): a client that
 * does not finish in time is closed by the worker's timers.  A chunked
 * body still coming is not drained here (its end is known only by
 * decoding its framing): that connection closes, lingering.
 *
 * Linger.  A connection that closes with request bytes maybe unread (a
 * refused request, a body not drained): shut our side, read and drop
 * until the client hangs up or a short deadline passes.
 *
 * Owns nothing: the count lives in the connection, the deadlines in the
 * worker's timer lists.  Never: calls Python, blocks, reads a byte past
 * a drained body, or frees a connection itself (the worker's close_conn
 * does, deferred past the loop turn).
 */
#include "gthread_drain.h"

#include <errno.h>
#include <unistd.h>
#include <sys/socket.h>

#include "http_conn.h"
#include "log.h"

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
	char sink[SINK];
	ssize_t n;

	while (c->drain_left > 0) {
		size_t want = c->drain_left < SINK ? (size_t)c->drain_left : SINK;
		n = read(c->fd, sink, want);
		if (n > 0) {
			c->drain_left -= (uint64_t)n;
			continue;
		}
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN)
			return;		/* the next edge brings more */
		log_debug("Ignored premature client disconnection: %llu body bytes "
		    "still to come", (unsigned long long)c->drain_left);
		H.close_conn(c);
		return;
	}
	H.next_request(c);
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
	shutdown(c->fd, SHUT_WR);
	c->len = 0;
	H.arm(c);
}
