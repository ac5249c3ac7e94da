/*
 * gthread_relay.c — the gthread worker's relay of dirty streams
 * (contract: gthread_relay.h).
 *
 * The app returned client.stream(...) and its thread went back to the
 * pool (wsgi.c sent the head and handed over the arbiter connection):
 * the loop reads the call's frames (dirty_reader, the one reassembler
 * of dirty_wire.c), writes each CHUNK's bytes to the
 * client as an HTTP chunk, and ends the response at END.  The chunks go
 * through the connection's output buffer (c->out, conn_out.h), after
 * whatever of the head the socket had not taken yet.  Backpressure:
 * with RELAY_OUT_MAX bytes waiting for the client, or the worker's
 * buffers at their total (conn_out.h: the same total as write-behind),
 * no more chunks are converted and the arbiter side is not read.  The
 * total stops a relay from getting ahead of its client, never from
 * keeping pace with it: a relay that holds nothing still takes its next
 * chunk, so a client that reads is never starved by others that do not
 * (they hold the total until they read or are cut at the I/O timeout).
 * A relay paused by the total holds bytes for its client, so its
 * client's next read wakes it (EPOLLOUT) and it takes whatever room
 * others freed meanwhile: no relay waits on another, and no list of
 * waiters is needed.  Unsent output is so bounded by the total plus the
 * chunk each relay keeping pace holds (as its reader holds one).  The
 * client going away, an ERROR, a malformed frame or a
 * timeout (the stream's idle and total ones, as its iterator has; the
 * I/O timeout for a client that takes nothing of what waits for it, as
 * write-behind and a writing thread have) close both sides; closing the
 * arbiter side cancels the call in the dirty worker.  The headers are
 * out, so an error can only cut the response (after what came before
 * it).
 *
 * Owns: each relay's reader and the arbiter-side descriptor, the list of
 * active relays (the client's output buffer is the connection's).  Never: calls Python, blocks, or frees a connection
 * itself (the worker's close_conn does, deferred past the loop turn).
 */
#include "gthread_relay.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "http_conn.h"
#include "log.h"
#include "util.h"

#define RELAY_OUT_MAX	(256 * 1024)	/* client output held per relay */
#define RELAY_READ	(64 * 1024)

static struct relay_host H;
static struct relay *relays;
static size_t nrelays;

void
relay_setup(const struct relay_host *host)
{
	H = *host;
}

size_t
relay_count(void)
{
	return nrelays;
}

static void
relay_arm_client(struct relay *rl)
{
	struct epoll_event ev = { .events = EPOLLRDHUP | EPOLLONESHOT, .data.ptr = rl->conn };

	if (conn_out_pending(&rl->conn->out) > 0)
		ev.events |= EPOLLOUT;
	if (epoll_ctl(H.epfd, EPOLL_CTL_MOD, rl->conn->fd, &ev) == -1)
		log_warn("epoll_ctl (relay client)");
}

static void
relay_arm_source(struct relay *rl, int op)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLONESHOT,
	    .data.ptr = rl->tag };

	if (epoll_ctl(H.epfd, op, rl->r->fd, &ev) == -1)
		log_warn("epoll_ctl (relay)");
}

void
relay_free(struct relay *rl)
{
	
	if (rl->r == NULL)
		return;
	close(rl->r->fd);	/* unfinished: the arbiter cancels the call */
	free(rl->r->pending);
	free(rl->r);
	rl->r = NULL;
	dirty_reader_free(&rl->in);
	if (rl->prev != NULL)
		rl->prev->next = rl->next;
	else
		relays = rl->next;
	if (rl->next != NULL)
		rl->next->prev = rl->prev;
	rl->next = rl->prev = NULL;
	nrelays--;
}

static int
relay_abort(struct relay *rl, const char *why)
{
	log_debug("Relayed stream cut after %lu chunks: %s", rl->chunks, why);
	H.close_conn(rl->conn);
	return -1;
}

/* The stream ended and its last chunk is out: the connection goes on. */
static int
relay_finish(struct relay *rl)
{
	struct http_conn *c = rl->conn;

	relay_free(rl);
	conn_out_free(&c->out);
	if (!c->keepalive) {
		H.close_conn(c);
		return -1;
	}
	http_conn_shift(c);
	H.next_request(c);
	return -1;	/* no longer relaying */
}

static void
relay_put_chunk(struct relay *rl, const void *p, uint32_t n)
{
	char hex[16];
	int k = snprintf(hex, sizeof(hex), "%x\r\n", n);
	size_t len = (size_t)k + n + 2;
	/* allocated to at most max(RELAY_OUT_MAX, what it holds) */
	char *at = conn_out_space(&rl->conn->out, len, RELAY_OUT_MAX);

	memcpy(at, hex, (size_t)k);
	memcpy(at + k, p, n);
	memcpy(at + k + n, "\r\n", 2);
	conn_out_commit(&rl->conn->out, len);
}

static void
relay_log_error(const uint8_t *p, size_t len)
{
	struct dirty_cursor v, m;
	const char *why, *msg = "?";
	uint32_t n = 1;

	if (dirty_dict_lookup(p, len, "error", &v, &why) == 0 &&
	    dirty_dict_lookup(v.p, (size_t)(v.end - v.p), "message", &m, &why) == 0 &&
	    dirty_get_string(&m, &msg, &n) == 0)
		;
	else
		msg = "?", n = 1;
	log_error("Error in a relayed dirty stream: %.*s", (int)(n > 2000 ? 2000 : n), msg);
}

/* May the relay convert its next frame?  While it holds less than
 * RELAY_OUT_MAX for its client, and the worker is under its total — or
 * it holds nothing: the total stops a relay from getting ahead of its
 * client, never from keeping pace with it. */
static int
relay_may_take(const struct relay *rl)
{
	size_t pending = conn_out_pending(&rl->conn->out);

	return !rl->ended && pending < RELAY_OUT_MAX &&
	    (pending == 0 || !conn_out_over_total());
}

/* Turn the whole frames read into chunks while the relay may take them.
 * 1: the reader holds no whole frame (more must be read), 0: it may not
 * take more (or the stream ended), -1: the relay is over. */
static int
relay_convert(struct relay *rl)
{
	struct conn_out *out = &rl->conn->out;

	while (relay_may_take(rl)) {
		struct dirty_header h;
		struct dirty_cursor v;
		const uint8_t *frame, *p, *b;
		const char *why;
		uint32_t n;
		int got = dirty_reader_next(&rl->in, &h, &frame, &why);

		if (got == -1)
			return relay_abort(rl, why);
		if (got == 0) {
			/* nothing unread: a buffer a large frame grew goes */
			dirty_reader_trim(&rl->in, RELAY_READ);
			return 1;
		}
		p = frame + DIRTY_HEADER_SIZE;
		if (h.id != rl->r->id)
			return relay_abort(rl, "a frame of another call");
		switch (h.type) {
		case DIRTY_MSG_CHUNK:
		case DIRTY_MSG_RESPONSE:
			if (dirty_dict_lookup(p, h.length, h.type == DIRTY_MSG_CHUNK ?
			    "data" : "result", &v, &why) != 0 ||
			    dirty_get_bytes(&v, &b, &n) == -1) {
				log_error("Error in a relayed dirty stream: a chunk is not bytes");
				rl->failed = "a chunk that is not bytes";
				rl->ended = 1;
				break;
			}
			if (n > 0)
				relay_put_chunk(rl, b, n);
			rl->chunks++;
			rl->last_ms = monotonic_ms();
			if (h.type == DIRTY_MSG_CHUNK)
				break;
			/* a plain result is the stream's one item */
			__attribute__((fallthrough));
		case DIRTY_MSG_END:
			conn_out_append(out, "0\r\n\r\n", 5);
			rl->ended = 1;
			break;
		case DIRTY_MSG_ERROR:
			/* what came before still goes out, then the cut */
			relay_log_error(p, h.length);
			rl->failed = "the stream raised";
			rl->ended = 1;
			break;
		default:
			return relay_abort(rl, "an unexpected frame");
		}
	}
	return 0;
}

/* Turn the frames read into chunks, write what the client takes, until
 * the reader needs more from the arbiter or the client must read first.
 * 0: still relaying; -1: the relay is over (the connection may be gone). */
static int
relay_pump(struct relay *rl)
{
	struct conn_out *out = &rl->conn->out;
	int starved;

	/* the stall clock runs only while the client has bytes to take */
	if (conn_out_pending(out) == 0)
		rl->out_ms = monotonic_ms();
	for (;;) {
		size_t before;

		if ((starved = relay_convert(rl)) == -1)
			return -1;
		before = conn_out_pending(out);
		if (conn_out_flush(out, rl->conn->fd) == -1)
			return relay_abort(rl, "the client went away");
		if (conn_out_pending(out) < before)
			rl->out_ms = monotonic_ms();
		if (rl->ended && conn_out_pending(out) == 0)
			return rl->failed ? relay_abort(rl, rl->failed) :
			    relay_finish(rl);
		/* the socket took enough to take more: the frames the reader
		 * already holds go now (no event would bring them later) */
		if (starved || !relay_may_take(rl))
			break;
	}
	if (conn_out_pending(out) == 0)
		conn_out_trim(out);
	relay_arm_client(rl);
	if (starved) {
		/* the stream's idle timeout is the wait for its next chunk,
		 * as its iterator has it: the time the client took is not */
		if (rl->paused)
			rl->last_ms = monotonic_ms();
		rl->paused = 0;
		relay_arm_source(rl, EPOLL_CTL_MOD);
	} else
		rl->paused = 1;
	return 0;
}

void
relay_start(struct relay *rl, struct http_conn *c, void *tag)
{
	uint64_t now = monotonic_ms();

	memset(rl, 0, sizeof(*rl));
	rl->conn = c;
	rl->tag = tag;
	rl->r = c->relay;
	c->relay = NULL;
	dirty_reader_init(&rl->in);
	if (rl->r->pending_len > 0) {
		size_t room;
		uint8_t *at = dirty_reader_space(&rl->in, rl->r->pending_len,
		    &room);
		memcpy(at, rl->r->pending, rl->r->pending_len);
		dirty_reader_commit(&rl->in, rl->r->pending_len);
	}
	rl->last_ms = rl->out_ms = now;
	rl->end_ms = rl->r->total_ms ? now + rl->r->total_ms : 0;
	rl->prev = NULL;
	rl->next = relays;
	if (relays != NULL)
		relays->prev = rl;
	relays = rl;
	nrelays++;
	(void)fd_set_nonblock(rl->r->fd, 1);
	relay_arm_source(rl, EPOLL_CTL_ADD);
	(void)relay_pump(rl);
}

void
relay_readable(struct relay *rl)
{
	size_t room, unread;
	uint8_t *at;
	ssize_t n;

	/* a buffer of RELAY_READ bytes in all (a frame begun included), or
	 * the whole of a larger frame: never more per relay */
	(void)dirty_reader_peek(&rl->in, &unread);
	at = dirty_reader_space(&rl->in, unread < RELAY_READ ?
	    RELAY_READ - unread : 1, &room);

	do
		n = read(rl->r->fd, at, room);
	while (n == -1 && errno == EINTR);
	if (n > 0) {
		dirty_reader_commit(&rl->in, (size_t)n);
		(void)relay_pump(rl);
		return;
	}
	if (n == -1 && errno == EAGAIN) {
		relay_arm_source(rl, EPOLL_CTL_MOD);
		return;
	}
	log_error("Error in a relayed dirty stream: the dirty arbiter closed the call");
	(void)relay_abort(rl, "the arbiter closed the connection");
}

void
relay_client_event(struct relay *rl, uint32_t events)
{
	if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
		(void)relay_abort(rl, "the client went away");
		return;
	}
	(void)relay_pump(rl);	/* writable again */
}

void
relay_timeouts(uint64_t now)
{
	for (struct relay *rl = relays, *n; rl != NULL; rl = n) {
		n = rl->next;
		if (H.stall_ms >= 0 && conn_out_pending(&rl->conn->out) > 0 &&
		    now - rl->out_ms > (uint64_t)H.stall_ms) {
			log_debug("Relayed stream: the client took nothing for %d ms, "
			    "%zu bytes unsent", H.stall_ms, conn_out_pending(&rl->conn->out));
			(void)relay_abort(rl, "the client stalled");
		} else if (rl->r->idle_ms && !rl->paused && !rl->ended &&
		    now - rl->last_ms > rl->r->idle_ms) {
			log_error("Error in a relayed dirty stream: no chunk for %u ms",
			    rl->r->idle_ms);
			(void)relay_abort(rl, "idle timeout");
		} else if (rl->end_ms && now > rl->end_ms) {
			log_error("Error in a relayed dirty stream: longer than %u ms",
			    rl->r->total_ms);
			(void)relay_abort(rl, "total timeout");
		}
	}
}
