/*
 * test_conn_out.c — unit tests for src/conn_out.c, a connection's output
 * buffer, over a real socketpair whose reader reads nothing at first:
 * what the socket refuses is kept (in order, after what was kept
 * before, never past the cap, nor past the process's total), a write
 * that does not fit waits and fails at the I/O timeout, flushing hands
 * over every byte exactly once, a reader gone is an error; the loop's
 * side (the relay) counts in the same total, its allocation is bounded
 * by its limit and given back when it drains.  Owns its sockets; prints
 * "N passed, M failed".
 */
#include "conn_out.h"
#include "check.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>

#include "http_conn.h"
#include "util.h"

#define CAP	(256 * 1024)

static void
pair(int sv[2])
{
	int small = 16 * 1024;

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == -1)
		abort();
	(void)setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	(void)fd_set_nonblock(sv[0], 1);
	(void)fd_set_nonblock(sv[1], 1);
}

static void
fill(char *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (char)(seed + i * 7 + i / 251);
}

/* Read what sv[1] has while flushing o into sv[0]: everything, in order. */
static size_t
drain_into(struct conn_out *o, int sv[2], char *got, size_t room)
{
	size_t n = 0;

	for (int spins = 0; spins < 100000; spins++) {
		ssize_t r;
		int f = conn_out_flush(o, sv[0]);
		if (f == -1)
			break;
		r = read(sv[1], got + n, room - n);
		if (r > 0)
			n += (size_t)r;
		else if (f == 0 && r == -1 && errno == EAGAIN)
			break;
	}
	return n;
}

static void
test_keeps_what_the_socket_refuses(void)
{
	int sv[2];
	struct conn_out o = { 0 };
	size_t total = 200 * 1024, got;
	char *a = malloc(total), *b = malloc(64), *back = malloc(total + 64 + 1);
	struct iovec iov[3];

	pair(sv);
	fill(a, total, 1);
	fill(b, 64, 9);
	iov[0] = (struct iovec){ a, 1000 };
	iov[1] = (struct iovec){ a + 1000, total - 1000 };
	CHECK(conn_out_send_iov(&o, sv[0], CAP, iov, 2) == 0);
	CHECK(conn_out_pending(&o) > 0);		/* the socket took only part */
	CHECK(conn_out_pending(&o) < total);
	CHECK(o.alloc <= CAP);
	/* more bytes go after the kept ones, never around them */
	iov[2] = (struct iovec){ b, 64 };
	CHECK(conn_out_send_iov(&o, sv[0], CAP, &iov[2], 1) == 0);
	got = drain_into(&o, sv, back, total + 64 + 1);
	CHECK_MSG(got == total + 64, "got %zu", got);
	CHECK(memcmp(back, a, total) == 0);
	CHECK(memcmp(back + total, b, 64) == 0);
	CHECK(conn_out_pending(&o) == 0);
	conn_out_free(&o);
	CHECK(o.data == NULL && o.alloc == 0);
	close(sv[0]);
	close(sv[1]);
	free(a);
	free(b);
	free(back);
}

static void
test_past_the_cap_waits_then_times_out(void)
{
	int sv[2];
	struct conn_out o = { 0 };
	size_t total = CAP + 64 * 1024;
	char *a = malloc(total);
	struct iovec iov;
	struct http_io_hooks h = { .timeout_ms = 200 };
	uint64_t t0;
	int rc;

	pair(sv);
	fill(a, total, 3);
	http_io_configure(&h);
	iov = (struct iovec){ a, total };
	t0 = monotonic_ms();
	rc = conn_out_send_iov(&o, sv[0], CAP, &iov, 1);
	CHECK(rc == -1 && errno == ETIMEDOUT);
	CHECK(monotonic_ms() - t0 >= 150);
	CHECK(conn_out_pending(&o) == 0);	/* nothing kept: it did not fit */
	/* the process's total applies as well */
	conn_out_set_total_max(1024);
	iov = (struct iovec){ a, 4096 };
	CHECK(conn_out_send_iov(&o, sv[0], CAP, &iov, 1) == -1 && errno == ETIMEDOUT);
	CHECK(conn_out_room(&o, CAP, 4096) == NULL);
	conn_out_set_total_max(0);
	CHECK(conn_out_room(&o, 0, 16) == NULL);	/* cap 0: no buffer */
	{
		char *at = conn_out_room(&o, CAP, 16);
		CHECK(at != NULL);
		if (at != NULL) {
			memcpy(at, "0123456789abcdef", 16);
			conn_out_commit(&o, 16);
		}
		CHECK(conn_out_pending(&o) == 16);
	}
	/* the reader goes away: flushing fails (SIGPIPE is ignored) */
	close(sv[1]);
	CHECK(conn_out_drain(&o, sv[0]) == -1);
	conn_out_free(&o);
	h.timeout_ms = -1;
	http_io_configure(&h);
	close(sv[0]);
	free(a);
}

static void
test_the_loops_side_counts_in_the_total(void)
{
	int sv[2];
	struct conn_out a = { 0 }, b = { 0 };
	size_t n = 96 * 1024;
	char *p = malloc(n), *back = malloc(2 * n + 1), *at;

	pair(sv);
	fill(p, n, 5);
	conn_out_set_total_max(128 * 1024);
	CHECK(!conn_out_over_total());
	at = conn_out_space(&a, n, 64 * 1024);
	memcpy(at, p, n);
	conn_out_commit(&a, n);
	CHECK(!conn_out_over_total());
	/* grown past its limit: no more than it holds */
	CHECK_MSG(a.alloc == n, "alloc %zu", a.alloc);
	conn_out_append(&b, p, n);		/* another buffer, the same total */
	CHECK(conn_out_over_total());
	/* a writing thread finds no room either */
	CHECK(conn_out_room(&a, CAP, 1) == NULL);
	CHECK(drain_into(&a, sv, back, 2 * n + 1) == n);
	CHECK(memcmp(back, p, n) == 0);
	CHECK(!conn_out_over_total());		/* what was sent left the total */
	conn_out_trim(&a);			/* drained: the buffer goes */
	CHECK(a.data == NULL && a.alloc == 0);
	conn_out_trim(&b);			/* holding bytes: it stays */
	CHECK(b.data != NULL && conn_out_pending(&b) == n);
	conn_out_free(&b);			/* dropped bytes leave the total */
	at = conn_out_space(&a, 16, 64 * 1024);	/* small: the first allocation */
	CHECK(a.alloc == 64 * 1024);
	memcpy(at, p, 16);
	conn_out_commit(&a, 16);
	CHECK(drain_into(&a, sv, back, 2 * n + 1) == 16);
	conn_out_trim(&a);			/* small: kept for the next chunk */
	CHECK(a.data != NULL);
	conn_out_free(&a);
	conn_out_set_total_max(0);
	CHECK(!conn_out_over_total());
	close(sv[0]);
	close(sv[1]);
	free(p);
	free(back);
}

int
main(void)
{
	signal(SIGPIPE, SIG_IGN);
	test_keeps_what_the_socket_refuses();
	test_past_the_cap_waits_then_times_out();
	test_the_loops_side_counts_in_the_total();
	return check_summary("test_conn_out");
}
