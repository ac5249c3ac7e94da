/*
 * gthread_drain.h — what the gthread worker's loop reads and drops after
 * a response: the rest of a request body the app left unread while its
 * client is still sending it (drain: then the connection goes on, kept
 * alive), or whatever a client still sends to a connection that closes
 * (linger: so that it reads the response, not a reset).  No pool thread
 * waits for either (gthread_drain.c says how).
 *
 * Used by gthread_worker.c only, from its loop thread.  The worker owns
 * the states (CS_DRAIN, CS_LINGER) and their deadlines (its timer lists
 * close a connection whose deadline passed); this module only reads,
 * then tells the worker to close the connection or to go on.
 */
#ifndef CUNICORN_GTHREAD_DRAIN_H
#define CUNICORN_GTHREAD_DRAIN_H

struct http_conn;

struct drain_host {
	/* the descriptor back in the epoll set for EPOLLIN edges (after a
	 * relay or a write-behind it waited for EPOLLOUT) */
	void (*arm)(struct http_conn *c);
	void (*close_conn)(struct http_conn *c);	/* close and free it */
	/* a drain given up (malformed chunk framing, over the bound):
	 * linger, then close */
	void (*linger)(struct http_conn *c);
	/* the body's last byte is dropped: the next request (the bytes
	 * after it are still in the socket; the re-arm reports them) */
	void (*next_request)(struct http_conn *c);
};

void drain_setup(const struct drain_host *host);
/* c is in the drain state with its deadline, its buffer holds nothing
 * (c->len == 0; a chunked rest needs one: c->buf is set), c->drain is
 * active: read and drop the rest of the body as it arrives, then
 * host->next_request(c) with what followed it in c->buf.  The client
 * hanging up closes it. */
void drain_start(struct http_conn *c);
/* An edge while draining. */
void drain_readable(struct http_conn *c);
/* c is in the linger state with its deadline: shut our side, drop what
 * the client sends until it hangs up (or the deadline closes it). */
void linger_start(struct http_conn *c);
/* An edge while lingering. */
void linger_readable(struct http_conn *c);

#endif
