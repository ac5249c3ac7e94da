/*
 * dirty_route.c — the dirty arbiter's routing: client connections
 * (HTTP workers, scripts, dirty workers using the stash), the table of
 * calls in flight, and the way a call goes to a worker and its replies
 * come back.  It owns arbiter.clients (dirty_arbiter_int.h); the calls are
 * dirty_calls.c's, the workers dirty_pool.c's.
 * Like the whole arbiter it NEVER calls Python.
 *
 * Routing: a client REQUEST is validated, its app_path looked up, and the
 * raw frame forwarded to a live worker that has the app (round robin),
 * with its id rewritten to an arbiter-unique id (slot | generation << 32
 * in the call table).  Replies (RESPONSE, ERROR, CHUNK, END) go back to
 * the client with the client's id; RESPONSE, ERROR and END end the call.
 *
 * Streams: a call's dirty_timeout restarts at each CHUNK (a stream making
 * progress never times out here; the client has total and idle timeouts).
 * A call whose client connection closes (the caller went away, closed its
 * stream, timed out) or that times out is forgotten, and its worker is
 * told to stop producing for it through the cancel ring shared with that
 * worker (dirty.h): nothing goes on the wire for it.
 *
 * Trust: a malformed frame from a client gets an ERROR DirtyProtocolError
 * and that connection is closed (client_protocol_error()); the arbiter
 * carries on.
 *
 * Back-pressure: buffers are empty (unallocated) while a peer is idle;
 * input is read into one shared 64 KiB scratch buffer and only a partial
 * frame is kept per peer.  A client's input is never paused (a client
 * that pipelines before reading would deadlock); a client with more than
 * arbiter.client_max_out of unread replies is dropped, and when all the
 * clients' unread replies together pass arbiter.clients_max_out, the
 * client holding the most is dropped (route_caps says how both are
 * chosen).  The caps are checked at each frame, never only once per
 * read: a worker's reply that would pass them is not queued, and a
 * client whose own request (a stash get) put them over is dropped before
 * its next frame is read, so sixteen GETs of a 40 MiB value in one write
 * cost at most the cap plus one reply.
 * Requests waiting for a worker's socket are bounded by WORKER_MAX_OUT
 * (dirty_pool.c) per worker: past it a new request goes to another worker having the app, or gets
 * DirtyNoWorkersAvailableError at once.
 */
#include "dirty.h"
#include "dirty_arbiter_int.h"
#include "dirty_calls.h"
#include "dirty_stash.h"
#include "dirty_wire.h"
#include "log.h"
#include "memory_limit.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/socket.h>

/* A client whose unread replies exceed this is dropped.  Its input is
 * never paused instead: a client that writes all its requests before
 * reading (pipelining) would then deadlock against us. */
#define CLIENT_MAX_OUT		((size_t)256 * 1024 * 1024)
/* All clients' unread replies together: at most this, and less on a
 * smaller machine (route_caps). */
#define CLIENTS_MAX_OUT		((size_t)1024 * 1024 * 1024)
#define CLIENTS_MAX_OUT_FLOOR	((size_t)16 * 1024 * 1024)
#define CLIENT_CLOSE_GRACE_MS	2000

static void call_forget(struct call *k, int answered);
static void call_cancel_worker(struct call *k);
static int client_on_frame(struct dirty_peer *, const struct dirty_header *,
    const uint8_t *);
static void client_flush(struct dirty_peer *);

static const struct dirty_peer_ops client_ops = {
	.kind = EV_CLIENT,
	.read_rounds = 8,
	.in_keep = 0,		/* an idle client holds no input buffer */
	.frame = client_on_frame,
	.flush = client_flush,
};

/* ---- clients ---- */

static struct client *
client_of(struct dirty_peer *p)
{
	return (struct client *)p;	/* the peer is its first member */
}

static void
client_update_events(struct client *c)
{
	dirty_peer_watch(&c->peer, !c->closing);
}

void
client_queue_flush(struct client *c)
{
	dirty_peer_queue_flush(&c->peer);
}

struct client *
client_lookup(uint32_t idx, uint32_t gen)
{
	if (idx >= arbiter.nclient_slots)
		return NULL;
	struct client *c = &arbiter.clients[idx];
	if (c->peer.fd == -1 ||
	    (c->peer.gen & 0xffffffu) != (gen & 0xffffffu))
		return NULL;
	return c;
}

struct dirty_peer *
client_peer(uint32_t idx, uint32_t gen)
{
	struct client *c = client_lookup(idx, gen);

	return c != NULL ? &c->peer : NULL;
}

/* A connection the arbiter accepted (fd nonblocking): a new client. */
void
client_open(int fd)
{
	size_t i;

	for (i = 0; i < arbiter.nclient_slots; i++)
		if (arbiter.clients[i].peer.fd == -1)
			break;
	if (i == arbiter.nclient_slots) {
		size_t n = arbiter.nclient_slots ? arbiter.nclient_slots * 2 : 16;
		arbiter.clients = xreallocarray(arbiter.clients, n,
		    sizeof(*arbiter.clients));
		memset(arbiter.clients + arbiter.nclient_slots, 0,
		    (n - arbiter.nclient_slots) * sizeof(*arbiter.clients));
		for (size_t j = arbiter.nclient_slots; j < n; j++)
			dirty_peer_init(&arbiter.clients[j].peer,
			    &client_ops, (uint32_t)j);
		arbiter.nclient_slots = n;
	}
	struct client *c = &arbiter.clients[i];
	c->ncalls = 0;
	c->closing = 0;
	c->close_deadline = 0;
	c->counted = 0;
	c->peer.gen++;
	if (dirty_peer_open(&c->peer, fd) == -1)
		return;
	arbiter.nclients++;
}

void
client_close(struct client *c)
{
	if (c->peer.fd == -1)
		return;
	if (c->ncalls > 0) {
		/* Its calls are forgotten, and their workers told to stop
		 * producing for them (a stream stops at its next chunk). */
		uint32_t cursor = 0;
		struct call *k;
		while (c->ncalls > 0 && (k = calls_next(&cursor)) != NULL) {
			if (k->client == c->peer.idx &&
			    k->client_gen == c->peer.gen) {
				call_cancel_worker(k);
				call_forget(k, 0);
			}
		}
	}
	arbiter.clients_out -= c->counted;
	c->counted = 0;
	dirty_peer_close(&c->peer);
	c->peer.gen++;	/* its calls in flight are forgotten: replies dropped */
	arbiter.nclients--;
}

void
client_send_error(struct client *c, uint64_t id, const char *type,
    const char *message)
{
	dirty_put_error_frame(&c->peer.out, id, type, message);
	client_queue_flush(c);
}

/* Bring arbiter.clients_out up to date with c's unread output.  Every
 * change to it is followed by a call here for c: an append by a flush
 * (client_flush) or by the caps' check; a send happens in one of them. */
static void
client_account(struct client *c)
{
	size_t now = dirty_peer_pending(&c->peer);

	arbiter.clients_out = arbiter.clients_out - c->counted + now;
	c->counted = now;
}

/* The client holding the most unread output, c counting the `more`
 * bytes it is about to get. */
static struct client *
clients_biggest(struct client *c, size_t more)
{
	struct client *big = c;
	size_t most = c->counted + more;

	for (size_t i = 0; i < arbiter.nclient_slots; i++) {
		struct client *o = &arbiter.clients[i];
		if (o->peer.fd != -1 && o != c && o->counted > most) {
			big = o;
			most = o->counted;
		}
	}
	return big;
}

/* Whether c's unread replies plus `more` bytes stay within the caps.
 * Past c's own, try to send first (a client that reads keeps up); still
 * past it: c is dropped and 0 returned (c is closed, its calls
 * forgotten).  Past the total of all clients: the client holding the
 * most is dropped, until under it; 0 when that was c.  The biggest, not
 * c: a client that reads holds little (a stream's chunks leave as they
 * come), so the one holding the most is the one not reading, and
 * dropping it frees the most at once; every other client, c included,
 * is served as before. */
static int
client_within_cap(struct client *c, size_t more)
{
	if (dirty_peer_pending(&c->peer) + more > arbiter.client_max_out) {
		if (dirty_peer_send(&c->peer) == -1) {
			client_close(c);	/* gone */
			return 0;
		}
		if (dirty_peer_pending(&c->peer) + more > arbiter.client_max_out) {
			log_warnx("dirty: dropping a client that does not read "
			    "its replies (over %zu MiB unread)",
			    arbiter.client_max_out >> 20);
			client_close(c);
			return 0;
		}
	}
	client_account(c);
	while (arbiter.clients_out + more > arbiter.clients_max_out) {
		struct client *big = clients_biggest(c, more);
		log_warnx("dirty: dropping the client holding the most unread "
		    "replies (%zu MiB; all clients together: over %zu MiB)",
		    (big->counted + (big == c ? more : 0)) >> 20,
		    arbiter.clients_max_out >> 20);
		client_close(big);
		if (big == c)
			return 0;
	}
	return 1;
}

/* The id of a header whose magic and version are right, else 0. */
static uint64_t
header_readable_id(const uint8_t *h, size_t avail)
{
	uint64_t id = 0;

	if (avail < DIRTY_HEADER_SIZE || h[0] != DIRTY_MAGIC0 ||
	    h[1] != DIRTY_MAGIC1 || h[2] != DIRTY_VERSION)
		return 0;
	for (int i = 8; i < 16; i++)
		id = (id << 8) | h[i];
	return id;
}

/* One function for every client protocol error: log a sanitized line,
 * answer DirtyProtocolError, close once flushed. */
void
client_protocol_error(struct client *c, uint64_t id, const char *why)
{
	char msg[160];

	log_debug("dirty: closing client connection: malformed message (%s)",
	    why);
	snprintf(msg, sizeof(msg), "Malformed message: %s", why);
	client_send_error(c, id, DIRTY_E_PROTOCOL, msg);
	c->closing = 1;
	c->close_deadline = monotonic_ms() + CLIENT_CLOSE_GRACE_MS;
	dirty_peer_drop_input(&c->peer);
}

/* ---- calls ---- */

/* Forget a call (answered: it got its final reply): the client's and
 * the worker's counts go down. */
static void
call_forget(struct call *k, int answered)
{
	struct client *c = client_lookup(k->client, k->client_gen);

	if (c != NULL && c->ncalls > 0)
		c->ncalls--;
	worker_call_ended(k->worker, k->worker_gen, answered);
	calls_free(k, answered);
}

/* Tell the call's worker to stop producing for it; the call itself is
 * not forgotten here. */
static void
call_cancel_worker(struct call *k)
{
	worker_cancel_call(k->worker, k->worker_gen, calls_id(k));
}

/* Answer a call with an error (if its client is still there), forget it. */
static void
call_fail(struct call *k, const char *type, const char *message)
{
	struct client *c = client_lookup(k->client, k->client_gen);

	if (c != NULL && !c->closing)
		client_send_error(c, k->client_id, type, message);
	call_forget(k, 0);
}

/* ---- routing ---- */

static void
route_request(struct client *c, const uint8_t *frame,
    const struct dirty_header *h)
{
	const uint8_t *payload = frame + DIRTY_HEADER_SIZE;
	struct dirty_cursor v;
	const char *why, *name;
	uint32_t nlen;
	uint64_t id;
	char msg[256];

	if (dirty_validate(payload, h->length, 0, &why) == -1) {
		client_protocol_error(c, h->id, why);
		return;
	}
	int r = dirty_dict_lookup(payload, h->length, "app_path", &v, &why);
	if (r == 1)
		why = "REQUEST without app_path";
	if (r != 0 || dirty_get_string(&v, &name, &nlen) == -1) {
		client_protocol_error(c, h->id,
		    r == 0 ? "app_path is not a string" : why);
		return;
	}
	int app = app_find(name, nlen);
	if (app < 0) {
		snprintf(msg, sizeof(msg), "Dirty app not found: %.*s",
		    (int)(nlen > 200 ? 200 : nlen), name);
		client_send_error(c, h->id, DIRTY_E_APP_NOT_FOUND, msg);
		return;
	}
	int full;
	struct worker *w = pool_pick((size_t)app, &full);
	if (w == NULL) {
		snprintf(msg, sizeof(msg),
		    "No dirty workers available for app %s%s",
		    arbiter.apps[app].path, full ?
		    " (every worker's queue of requests is full)" : "");
		client_send_error(c, h->id, DIRTY_E_NO_WORKERS, msg);
		return;
	}
	struct call *k = calls_alloc(&id);
	k->client = c->peer.idx;
	k->client_gen = c->peer.gen;
	k->client_id = h->id;
	k->worker = w->peer.idx;
	k->worker_gen = w->peer.gen;
	k->app = (uint32_t)app;
	k->start_ms = monotonic_ms();
	c->ncalls++;
	k->wire_at = worker_forward(w, frame, DIRTY_HEADER_SIZE + h->length,
	    id);
}

/* ---- client input ---- */

static void
client_frame(struct client *c, const uint8_t *frame,
    const struct dirty_header *h)
{
	const uint8_t *payload = frame + DIRTY_HEADER_SIZE;
	const char *why;

	if (h->type == DIRTY_MSG_REQUEST) {
		route_request(c, frame, h);
		return;
	}
	if (h->type != DIRTY_MSG_STATUS && h->type != DIRTY_MSG_MANAGE &&
	    h->type != DIRTY_MSG_STASH) {
		client_protocol_error(c, h->id,
		    "unexpected message type from a client");
		return;
	}
	/* answered here, the reply appended to c's output */
	if (dirty_validate(payload, h->length, h->type == DIRTY_MSG_STATUS,
	    &why) == -1) {
		client_protocol_error(c, h->id, why);
		return;
	}
	if (h->type == DIRTY_MSG_STATUS)
		control_status_reply(&c->peer.out, h->id, calls_inflight(),
		    calls_answered());
	else if (h->type == DIRTY_MSG_MANAGE)
		control_manage_reply(&c->peer.out, payload, h);
	else
		dirty_stash_handle(payload, h->length, h->id, &c->peer.out);
	client_queue_flush(c);
}

/* One whole frame from c (its peer's on-frame callback): -1 once c is
 * closing or was dropped, which stops reading. */
static int
client_on_frame(struct dirty_peer *p, const struct dirty_header *h,
    const uint8_t *frame)
{
	struct client *c = client_of(p);

	client_frame(c, frame, h);
	if (c->closing)
		return -1;
	/* its reply is queued: over the cap, stop here (c was closed) */
	if (!client_within_cap(c, 0))
		return -1;
	return 0;
}

void
client_read(struct client *c)
{
	const char *why = NULL;
	const uint8_t *unread;
	size_t n;

	switch (dirty_peer_read(&c->peer, &why)) {
	case PEER_READ_DONE:
	case PEER_READ_STOPPED:
		break;
	case PEER_READ_BAD:
		unread = dirty_peer_unread(&c->peer, &n);
		client_protocol_error(c, header_readable_id(unread, n), why);
		break;
	case PEER_READ_EOF:
		unread = dirty_peer_unread(&c->peer, &n);
		if (n > 0) {		/* EOF inside a frame */
			client_protocol_error(c, header_readable_id(unread, n),
			    "truncated message");
			shutdown(c->peer.fd, SHUT_RD);
			break;
		}
		client_close(c);
		return;
	case PEER_READ_LOST:
		client_close(c);
		return;
	}
	if (c->peer.fd != -1) {
		client_queue_flush(c);
		client_update_events(c);
	}
}

static void
client_flush(struct dirty_peer *p)
{
	struct client *c = client_of(p);

	if (c->peer.fd == -1)
		return;
	if (dirty_peer_send(&c->peer) == -1) {
		client_close(c);
		return;
	}
	if (!client_within_cap(c, 0))
		return;
	if (c->closing && dirty_peer_pending(&c->peer) == 0) {
		client_close(c);
		return;
	}
	client_update_events(c);
}

/* ---- replies from workers ---- */

/* A reply from worker w (the pool's reply hook). */
static void
worker_reply(struct worker *w, const uint8_t *frame,
    const struct dirty_header *h)
{
	int final = h->type != DIRTY_MSG_CHUNK;
	struct call *k = calls_lookup(h->id);

	if (k == NULL || k->worker != w->peer.idx ||
	    k->worker_gen != w->peer.gen)
		return;		/* timed out or forgotten: drop */
	struct client *c = client_lookup(k->client, k->client_gen);
	if (c != NULL && !c->closing) {
		/* the cap before queueing: dropping c forgets its calls,
		 * this one included */
		if (!client_within_cap(c, DIRTY_HEADER_SIZE + h->length))
			return;
		size_t at = c->peer.out.len;
		dirty_buf_append(&c->peer.out, frame,
		    DIRTY_HEADER_SIZE + h->length);
		dirty_header_set_id(c->peer.out.data + at, k->client_id);
		client_queue_flush(c);
	}
	if (final)
		call_forget(k, 1);
	else
		k->start_ms = monotonic_ms();	/* a stream making progress */
}

/* ---- timeouts ---- */

/* Calls without progress for the dirty_timeout (ms; 0: none) fail with
 * DirtyTimeoutError; their worker is told to stop producing for them. */
void
calls_expire(uint64_t now, uint64_t timeout)
{
	char msg[128];

	if (timeout > 0) {
		snprintf(msg, sizeof(msg), "Request timed out after %d seconds",
		    arbiter.s->dirty_timeout);
		uint32_t cursor = 0;
		struct call *k;
		while ((k = calls_next(&cursor)) != NULL) {
			if (ms_since(now, k->start_ms) >= timeout) {
				call_cancel_worker(k);
				call_fail(k, DIRTY_E_TIMEOUT, msg);
			}
		}
	}
}

/* Connections closing after a protocol error are closed at their
 * deadline, flushed or not. */
void
clients_expire(uint64_t now)
{
	for (size_t i = 0; i < arbiter.nclient_slots; i++) {
		struct client *c = &arbiter.clients[i];
		if (c->peer.fd != -1 && c->closing &&
		    now >= c->close_deadline)
			client_close(c);
	}
}

/* The whole request of call k if it lies in a lost worker's unsent
 * output (unsent: its bytes from stream offset at), else NULL. */
static const uint8_t *
unsent_request(const struct call *k, const uint8_t *unsent, size_t len,
    uint64_t at, size_t *flen)
{
	struct dirty_header h;
	const char *why;

	if (unsent == NULL || k->wire_at < at || k->wire_at - at >= len)
		return NULL;
	size_t off = (size_t)(k->wire_at - at);
	if (len - off < DIRTY_HEADER_SIZE ||
	    dirty_header_decode(unsent + off, &h, &why) == -1 ||
	    h.type != DIRTY_MSG_REQUEST ||
	    h.length > len - off - DIRTY_HEADER_SIZE)
		return NULL;
	*flen = DIRTY_HEADER_SIZE + h.length;
	return unsent + off;
}

/*
 * A worker's channel is gone (the pool's lost hook): its calls fail with
 * msg, except those whose request it never had whole — still in our
 * output, or cut short by the failed send — which go to another worker
 * having the app, as if routed there first.  That is the only case
 * where a call is known not to have started: a request handed whole to
 * the kernel may have been read and run, and running it twice could do
 * twice what it does.  The case it covers is a worker dying an instant
 * before we routed to it (its death not yet seen): the send fails, and
 * the caller would otherwise get "connection lost" for a call no worker
 * ever saw.
 */
static void
worker_lost(struct worker *w, const char *msg, const uint8_t *unsent,
    size_t unsent_len, uint64_t unsent_at)
{
	uint32_t cursor = 0;
	struct call *k;
	const uint8_t *frame;
	size_t flen;
	int full;

	while ((k = calls_next(&cursor)) != NULL) {
		if (k->worker != w->peer.idx || k->worker_gen != w->peer.gen)
			continue;
		struct worker *to = NULL;
		frame = unsent_request(k, unsent, unsent_len, unsent_at, &flen);
		if (frame != NULL && k->app < arbiter.napps)
			to = pool_pick(k->app, &full);
		if (to == NULL) {
			call_fail(k, DIRTY_E_WORKER, msg);
			continue;
		}
		log_debug("dirty: a request worker %d never got goes to "
		    "worker %d", (int)w->pid, (int)to->pid);
		worker_call_ended(k->worker, k->worker_gen, 0);
		k->worker = to->peer.idx;
		k->worker_gen = to->peer.gen;
		k->wire_at = worker_forward(to, frame, flen, calls_id(k));
	}
}

static const struct pool_hooks route_hooks = {
	.reply = worker_reply,
	.lost = worker_lost,
};

/*
 * The caps on unread replies.  The total bounds the arbiter's memory
 * with many clients (every HTTP worker thread has a connection, scripts
 * may connect too): at most CLIENTS_MAX_OUT (1 GiB: four clients at
 * their own cap at once), and no more than a quarter of memory_limit()
 * (memory_limit.h): the machine's memory, the memory limit of the arbiter's
 * cgroup (a container's --memory, systemd's MemoryMax=: the whole server
 * shares it, and the kernel's OOM killer acts on it, not on the
 * machine's RAM) or the data limit the arbiter was started under (ulimit
 * -d, systemd's LimitDATA=), the least — a quarter: an output buffer
 * grows by doubling,
 * so it may reserve twice what it holds, and the stash lives beside it —
 * so that the arbiter drops a client rather than abort on a failed
 * allocation of its own (every call of every client lost) or be the OOM
 * killer's pick; never under CLIENTS_MAX_OUT_FLOOR.  A client's own cap
 * is never above the total.  Computed once, at start: tests lower them
 * with a data limit (prlimit) or a memory cgroup, no setting or variable
 * of their own.
 */
static void
route_caps(void)
{
	size_t cap = CLIENTS_MAX_OUT;
	uint64_t quarter = memory_limit() / 4;

	if (quarter < cap)
		cap = (size_t)quarter;
	if (cap < CLIENTS_MAX_OUT_FLOOR)
		cap = CLIENTS_MAX_OUT_FLOOR;
	arbiter.clients_max_out = cap;
	arbiter.client_max_out = CLIENT_MAX_OUT < cap ? CLIENT_MAX_OUT : cap;
	if (cap < CLIENTS_MAX_OUT)
		log_debug("dirty: unread replies capped at %zu MiB in all, %zu "
		    "MiB per client", cap >> 20, arbiter.client_max_out >> 20);
}

void
route_setup(void)
{
	route_caps();
	pool_set_hooks(&route_hooks);
}
