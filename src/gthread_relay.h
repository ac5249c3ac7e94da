/*
 * gthread_relay.h — the gthread worker's relay of dirty streams: the body
 * of a response whose app returned client.stream(...), carried from the
 * dirty arbiter to the client by the worker's event loop, with no thread
 * waiting for it (gthread_relay.c says how).
 *
 * Used by gthread_worker.c only, from its loop thread: the relay state
 * lives inside the worker's connection object (so the loop's deferred
 * free covers it); the worker tells the relay how to close a connection
 * and how to go on to its next request.
 */
#ifndef CUNICORN_GTHREAD_RELAY_H
#define CUNICORN_GTHREAD_RELAY_H

#include <stddef.h>
#include <stdint.h>

#include "dirty_wire.h"

struct http_conn;
struct http_relay;

#define RELAY_TICK_MS	100	/* relay timeouts are looked at this often */

struct relay {
	struct http_relay *r;		/* fd, id, timeouts (from wsgi.c); NULL: idle */
	struct http_conn *conn;		/* the client's connection */
	void *tag;			/* epoll data of the arbiter side */
	struct dirty_reader in;		/* frames from the arbiter (chunked
					   HTTP for the client: conn->out) */
	uint64_t last_ms, end_ms;	/* last chunk; total deadline (0: none) */
	uint64_t out_ms;		/* the client last took a byte, or had
					   none to take */
	int ended;			/* END seen: out holds the last chunk */
	int paused;			/* RELAY_OUT_MAX, or bytes while the worker
					   is at its total, wait for the client: the
					   arbiter is not read, the idle clock stands */
	const char *failed;		/* why the response is cut once out is sent */
	unsigned long chunks;
	struct relay *next, *prev;	/* every active relay */
};

struct relay_host {
	int epfd;
	int stall_ms;		/* a client taking nothing this long is cut (-1: never) */
	void (*close_conn)(struct http_conn *c);	/* close and free it */
	void (*next_request)(struct http_conn *c);	/* after a complete response */
};

void relay_setup(const struct relay_host *host);
/* c->relay was set by wsgi.c: relay into rl (the connection's own
 * struct), with `tag` as the epoll data of the arbiter's side.  The
 * client's descriptor is re-armed for EPOLLRDHUP / EPOLLOUT with
 * data.ptr = c. */
void relay_start(struct relay *rl, struct http_conn *c, void *tag);
void relay_readable(struct relay *rl);			/* the arbiter's side */
void relay_client_event(struct relay *rl, uint32_t events);	/* the client's */
/* Close the arbiter's side and free the buffers (no-op when idle). */
void relay_free(struct relay *rl);
/* Cut every relay past its idle or total timeout, or whose client has
 * taken nothing for stall_ms. */
void relay_timeouts(uint64_t now);
size_t relay_count(void);

#endif
