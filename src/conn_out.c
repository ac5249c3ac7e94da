/*
 * conn_out.c — a client connection's output buffer (contract: conn_out.h).
 *
 * Owns: the buffer's memory and the count of bytes held by every buffer
 * of the process (an atomic: pool threads append, the loop appends and
 * flushes), which the total bounds.
 * Memory: a buffer filled by a writing thread never grows past its cap
 * (it is allocated to at most max(cap, the first append)); one filled by
 * the loop (the relay) is bounded by its user (its own limit, the total)
 * and given back when it drains (conn_out_trim).  Never: calls Python,
 * decides what happens to the connection, or waits but through
 * http_io_wait (bounded by the I/O timeout, the GIL released).
 */
#include "conn_out.h"

#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http_conn.h"
#include "log.h"
#include "tls.h"

#define FIRST_ALLOC	(64 * 1024)

static atomic_size_t held;	/* bytes in every buffer, not yet written */
static size_t total_max;

/* Room for n more bytes at data + len; allocation at most max(limit,
 * what is needed) when limit > 0. */
static void
reserve(struct conn_out *o, size_t n, size_t limit)
{
	size_t need, a;

	if (o->off > 0 && o->len + n > o->alloc) {
		memmove(o->data, o->data + o->off, o->len - o->off);
		o->len -= o->off;
		o->off = 0;
	}
	need = o->len + n;
	if (need <= o->alloc)
		return;
	a = o->alloc > 0 ? o->alloc * 2 : FIRST_ALLOC;
	if (a < need)
		a = need;
	if (limit > 0 && a > limit)
		a = need > limit ? need : limit;
	o->data = xrealloc(o->data, a);
	o->alloc = a;
}

void
conn_out_append(struct conn_out *o, const void *p, size_t n)
{
	reserve(o, n, 0);
	memcpy(o->data + o->len, p, n);
	o->len += n;
	atomic_fetch_add_explicit(&held, n, memory_order_relaxed);
}

char *
conn_out_space(struct conn_out *o, size_t n, size_t limit)
{
	reserve(o, n, limit);
	return o->data + o->len;
}

void
conn_out_trim(struct conn_out *o)
{
	if (o->off == o->len && o->alloc > FIRST_ALLOC) {
		free(o->data);
		o->data = NULL;
		o->off = o->len = o->alloc = 0;
	}
}

int
conn_out_over_total(void)
{
	return total_max != 0 &&
	    atomic_load_explicit(&held, memory_order_relaxed) >= total_max;
}

int
conn_out_flush(struct conn_out *o, int fd)
{
	while (o->off < o->len) {
		ssize_t w = tls_io_send(fd, o->data + o->off, o->len - o->off);
		if (w > 0) {
			o->off += (size_t)w;
			atomic_fetch_sub_explicit(&held, (size_t)w, memory_order_relaxed);
			continue;
		}
		if (w == -1 && errno == EINTR)
			continue;
		if (w == -1 && errno == EAGAIN)
			return 1;
		if (w == 0)
			errno = EPIPE;
		return -1;
	}
	o->off = o->len = 0;
	return 0;
}

void
conn_out_free(struct conn_out *o)
{
	atomic_fetch_sub_explicit(&held, conn_out_pending(o), memory_order_relaxed);
	free(o->data);
	memset(o, 0, sizeof(*o));
}

/* ---- the writing thread's side ---- */

void
conn_out_set_total_max(size_t max)
{
	total_max = max;
}

static int
fits(const struct conn_out *o, size_t cap, size_t n)
{
	return conn_out_pending(o) + n <= cap && (total_max == 0 ||
	    atomic_load_explicit(&held, memory_order_relaxed) + n <= total_max);
}

char *
conn_out_room(struct conn_out *o, size_t cap, size_t n)
{
	if (cap == 0 || !fits(o, cap, n))
		return NULL;
	reserve(o, n, cap);
	return o->data + o->len;
}

void
conn_out_commit(struct conn_out *o, size_t n)
{
	o->len += n;
	atomic_fetch_add_explicit(&held, n, memory_order_relaxed);
}

int
conn_out_send_iov(struct conn_out *o, int fd, size_t cap, struct iovec *iov, int iovcnt)
{
	if (cap == 0)
		return http_io_send_iov(fd, iov, iovcnt);
	for (;;) {
		size_t rest = 0;

		if (conn_out_pending(o) > 0 && conn_out_flush(o, fd) == -1)
			return -1;
		/* nothing held before them: the bytes go straight out */
		if (conn_out_pending(o) == 0 &&
		    http_io_writev_nowait(fd, &iov, &iovcnt) == -1)
			return -1;
		if (iovcnt == 0)
			return 0;
		for (int i = 0; i < iovcnt; i++)
			rest += iov[i].iov_len;
		if (fits(o, cap, rest)) {
			/* the socket is full: the rest waits here, not the thread */
			reserve(o, rest, cap);
			for (int i = 0; i < iovcnt; i++) {
				memcpy(o->data + o->len, iov[i].iov_base, iov[i].iov_len);
				o->len += iov[i].iov_len;
			}
			atomic_fetch_add_explicit(&held, rest, memory_order_relaxed);
			return 0;
		}
		/* over the cap: wait as a thread without a buffer would */
		if (http_io_wait(fd, POLLOUT) == -1)
			return -1;
	}
}

int
conn_out_drain(struct conn_out *o, int fd)
{
	for (;;) {
		int f = conn_out_flush(o, fd);
		if (f <= 0)
			return f;
		if (http_io_wait(fd, POLLOUT) == -1)
			return -1;
	}
}
