/*
 * gthread_behind.c — the gthread worker's write-behind (contract:
 * gthread_behind.h).
 *
 * A pool thread writing a response to a client that does not read found
 * the socket full: it copied what was left (up to BEHIND_CONN_MAX per
 * connection, BEHIND_WORKER_MAX per worker: conn_out.h) into the
 * connection's output buffer, finished the request (access log, hooks,
 * close()) and gave the connection back.  Here the loop writes that
 * buffer each time the socket drains (EPOLLOUT, one-shot), then lets the
 * worker go on as after any complete response: the next request, the
 * pipelined bytes already read, a linger or a close.  A client that
 * takes nothing for the I/O timeout is closed, as the thread would have
 * given up; one that hangs up or resets is closed at once.  So a slow
 * reader costs a descriptor and at most BEHIND_CONN_MAX bytes, never a
 * thread.
 *
 * Owns: the list of active write-behinds.  Never: calls Python, blocks,
 * reads from the client, or frees a connection itself (the worker's
 * close_conn does, deferred past the loop turn).
 */
#include "gthread_behind.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>

#include "http_conn.h"
#include "log.h"
#include "util.h"

static struct behind_host H;
static struct behind *active;
static size_t nactive;

void
behind_setup(const struct behind_host *host)
{
	H = *host;
}

size_t
behind_count(void)
{
	return nactive;
}

void
behind_free(struct behind *b)
{
	if (b->conn == NULL)
		return;
	if (b->prev != NULL)
		b->prev->next = b->next;
	else
		active = b->next;
	if (b->next != NULL)
		b->next->prev = b->prev;
	b->next = b->prev = NULL;
	b->conn = NULL;
	nactive--;
}

/* Write what the socket takes; the last byte out ends it. */
static void
behind_pump(struct behind *b)
{
	struct http_conn *c = b->conn;
	size_t before = conn_out_pending(&c->out);
	struct epoll_event ev = { .events = EPOLLOUT | EPOLLONESHOT, .data.ptr = c };
	int f = conn_out_flush(&c->out, c->fd);

	if (f == -1) {
		log_debug("Write-behind cut, %zu bytes unsent: %s",
		    conn_out_pending(&c->out), strerror(errno));
		H.close_conn(c);
		return;
	}
	if (conn_out_pending(&c->out) < before)
		b->last_ms = monotonic_ms();
	if (f == 0) {
		behind_free(b);
		conn_out_free(&c->out);
		H.finished(c);
		return;
	}
	if (epoll_ctl(H.epfd, EPOLL_CTL_MOD, c->fd, &ev) == -1)
		log_warn("epoll_ctl (write-behind)");
}

void
behind_start(struct behind *b, struct http_conn *c)
{
	memset(b, 0, sizeof(*b));
	b->conn = c;
	b->last_ms = monotonic_ms();
	b->next = active;
	if (active != NULL)
		active->prev = b;
	active = b;
	nactive++;
	behind_pump(b);
}

void
behind_client_event(struct behind *b, uint32_t events)
{
	if (b->conn == NULL)
		return;
	if (events & (EPOLLHUP | EPOLLERR)) {
		log_debug("Write-behind cut: the client went away");
		H.close_conn(b->conn);
		return;
	}
	behind_pump(b);
}

void
behind_timeouts(uint64_t now)
{
	if (H.stall_ms < 0)
		return;
	for (struct behind *b = active, *n; b != NULL; b = n) {
		n = b->next;
		if (now - b->last_ms > (uint64_t)H.stall_ms) {
			log_debug("Write-behind cut: the client took nothing for %d ms, "
			    "%zu bytes unsent", H.stall_ms, conn_out_pending(&b->conn->out));
			H.close_conn(b->conn);
		}
	}
}
