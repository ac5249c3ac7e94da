/*
 * gthread_behind.h — the gthread worker's write-behind: the end of a
 * response that a slow client did not read yet, written by the worker's
 * event loop as the socket drains, while the pool thread that ran the
 * app serves someone else (gthread_behind.c says how).
 *
 * Used by gthread_worker.c only, from its loop thread: the state lives
 * inside the worker's connection object (so the loop's deferred free
 * covers it); the worker says how to close a connection and how to go on
 * after a complete response.
 */
#ifndef CUNICORN_GTHREAD_BEHIND_H
#define CUNICORN_GTHREAD_BEHIND_H

#include <stddef.h>
#include <stdint.h>

struct http_conn;

/* What a pool thread may leave in one connection's output buffer
 * (c->out_cap).  4 MiB: the most the kernel itself holds for one socket
 * here (tcp_wmem's default maximum), so a page, a JSON document or a
 * file of a few MiB frees its thread at once; a bigger body makes its
 * thread wait until its rest fits, as before. */
#define BEHIND_CONN_MAX		(4u << 20)
/* ... and all of a worker's connections together, written behind or
 * relayed (gthread_relay.c) alike: past this total, threads wait for
 * their sockets again and relays stop reading their dirty streams (many
 * slow readers cost at most this much memory, then threads, as before
 * write-behind).  Lowered to a quarter of the memory the worker may
 * count on (memory_limit(), util.h: a container's limit, a data limit
 * from ulimit -d or a post_fork hook) when that is less, never under
 * BEHIND_WORKER_MIN; gthread_worker.c sets it at start. */
#define BEHIND_WORKER_MAX	(256u << 20)
#define BEHIND_WORKER_MIN	(4u << 20)
#define BEHIND_TICK_MS		100	/* stalls are looked at this often */

struct behind {
	struct http_conn *conn;		/* NULL: not writing behind */
	uint64_t last_ms;		/* the last byte the client took */
	struct behind *next, *prev;	/* every active write-behind */
};

struct behind_host {
	int epfd;
	int stall_ms;			/* the I/O timeout: a client taking
					   nothing this long is closed (-1: never) */
	void (*close_conn)(struct http_conn *c);	/* close and free it */
	/* after the last byte: keep-alive, linger or close, as after a
	 * response a thread wrote whole */
	void (*finished)(struct http_conn *c);
};

void behind_setup(const struct behind_host *host);
/* c->out holds the end of a complete response: write it into the
 * socket as it drains (the client's descriptor is re-armed for EPOLLOUT
 * with data.ptr = c), then host->finished(c). */
void behind_start(struct behind *b, struct http_conn *c);
void behind_client_event(struct behind *b, uint32_t events);
/* Leave the list (no-op when idle); the worker frees the connection. */
void behind_free(struct behind *b);
/* Close every write-behind whose client took nothing for stall_ms. */
void behind_timeouts(uint64_t now);
size_t behind_count(void);

#endif
