/*
 * gthread_worker.c — the threaded HTTP worker (-k gthread, --threads N):
 * gunicorn's gthread, with its event loop in C.
 *
 * Threads:
 *   loop     the process's main thread.  One epoll set owns the
 *            listeners, every connection, the signals (a self-pipe) and
 *            the completion eventfd.  It accepts, reads and parses request
 *            heads (C, http_conn.c), keeps idle keep-alive connections,
 *            enforces every deadline, and hands a connection with a
 *            complete head to the pool — or, when no pool thread is busy,
 *            runs it itself at the end of the turn ("inline",
 *            gthread_inline.c): one thread, no wake-up, no GIL handoff,
 *            as a single-threaded server would.  Whoever runs loop turns
 *            holds the loop role: the main thread, or a pool thread
 *            standing in (the deputy) while the main thread is inside an
 *            inline request that waits.
 *   pool     `threads` pythreads that take a connection, run the app
 *            through wsgi.c (GIL held, released while waiting for the
 *            socket), write the response, answer the requests already
 *            pipelined behind it, and give the connection back.  Lazy
 *            wake-ups (pythreads.h): a request queued while a thread runs
 *            Python waits for that thread.
 *   watchdog no Python: while inline requests run, looks every
 *            WATCHDOG_MS for one that has not ended and calls a deputy
 *            (gthread_inline.c).
 *
 * Connection states (one timer list each, in deadline order: every
 * deadline of a list is now + one constant, so a connection enters at
 * the tail — but DRAIN's, which depend on the bytes left: one enters
 * before those whose deadline is later):
 *   HEAD    reading a head: one total deadline (limits.head_timeout_ms)
 *           from the accept or from the first byte after an idle wait;
 *           a client's pace never extends it
 *   IDLE    keep-alive, waiting for the next request: `keepalive` s
 *   BUSY    in the pool (no timer: the app and the socket waits of wsgi.c
 *           are bounded there)
 *   LINGER  a refused request was answered; reading what the client still
 *           sends for a moment so that it sees the answer, not a reset
 *   DRAIN   a kept response is complete, the app left the request's body
 *           unread and its client is still sending it: the loop drops
 *           the bytes left as they come, within the body's own deadline,
 *           then goes on to the next request (gthread_drain.c)
 *   RELAY   the app returned a dirty stream: its thread is back in the
 *           pool and the loop relays the chunks (gthread_relay.c; no
 *           timer here: the stream's timeouts, and the I/O timeout between
 *           two bytes the client takes, are looked at there)
 *   BEHIND  the response is complete but the client has not read its
 *           end: its thread is back in the pool and the loop writes the
 *           rest as the socket drains (gthread_behind.c; no timer here:
 *           the I/O timeout between two bytes taken is looked at there)
 * An idle connection holds no buffer: it costs its struct and its fd.
 * A pool thread that kept a connection with nothing pipelined puts it
 * back in the IDLE state and the epoll set itself (timer_lock).
 * Past worker_connections the listeners leave the epoll set and new
 * connections wait in the kernel's backlog; a worker that holds more
 * than a live sibling lets it accept first (gthread_share.c).
 *
 * Stopping (TERM, HUP, max_requests, --reload, the master gone): stop
 * accepting; from then on every response says "Connection: close"; a
 * connection closes only between requests — after its response, or when
 * its head or keep-alive deadline passes, never while the client may be
 * sending a request it was told it could send; exit when none is left or
 * after graceful_timeout.  INT/QUIT: worker_int hook, exit now.
 * ABRT (the master's timeout): worker_abort hook, exit.  Either way a
 * request in the pool whose response has not begun is answered 500.
 * USR1: reopen logs.  The heartbeat is the loop's: it beats while the loop turns, as
 * gunicorn's gthread notifies from its main loop.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include "gthread_behind.h"
#include "gthread_drain.h"
#include "gthread_inline.h"
#include "gthread_relay.h"
#include "gthread_share.h"
#include "http_conn.h"
#include "http_worker.h"
#include "listen.h"
#include "log.h"
#include "python.h"
#include "pythreads.h"
#include "settings.h"
#include "sigpipe.h"
#include "tls.h"
#include "util.h"
#include "wsgi.h"

#define FIRST_BUF	(16 * 1024)	/* a connection's buffer; grows for long heads */
#define LINGER_MS	500
#define MAX_EVENTS	256
#define MAX_THREADS	1024
#define STALL_MS	1		/* queued, none taken this long: wake a thread */
#define TAG_RELAY_BIT	1		/* epoll data.ptr | 1: a relay's arbiter side */
/* epoll tags below this are not connections */
#define TAG_SIGNAL	1
#define TAG_WAKE	2
#define TAG_LISTENER	16

enum { CS_HEAD, CS_IDLE, CS_BUSY, CS_LINGER, CS_RELAY, CS_BEHIND, CS_DRAIN };
#define NSTATES		7


struct gconn {
	struct http_conn c;
	struct pythreads_job job;	/* while BUSY */
	int closed;			/* set by the pool: fd closed, free me */
	int rd_pending;			/* timer_lock: readable while BUSY (or more
					   than the buffer held): look again after */
	int dead;			/* freed at the end of this loop turn */
	struct relay rl;		/* while RELAY (gthread_relay.c) */
	struct behind bh;		/* while BEHIND (gthread_behind.c) */
	struct gconn *rnext;		/* the graveyard */
};

struct tlist {
	struct http_conn *head, *tail;
};

static struct {
	struct http_worker_ctx *ctx;
	struct settings *cfg;
	struct http_conn_limits limits;
	int epfd, wakefd;
	struct pythreads *pool;
	/* WSGI request slots, one per thread that runs requests (one
	 * request at a time): pool thread i's, the main thread's (inline) */
	struct wsgi_req **slots, *inline_slot;

	/* pool -> loop */
	pthread_mutex_t done_lock;
	struct http_conn *done_head;

	/* loop only */
	struct tlist timers[NSTATES];	/* by state; BUSY's, RELAY's, BEHIND's stay empty */
	uint64_t relay_look_ms, behind_look_ms;
	struct gconn *graveyard;	/* dead connections, freed after the turn */
	size_t nconns;
	size_t max_conns;
	int listening;
	uint64_t accept_pause_until;	/* listeners off until then (EMFILE, deferring) */
	int emfile_episode;		/* logged once per episode */
	int stopping;
	uint64_t stop_deadline;
	unsigned long limit;		/* max_requests + jitter; 0 = none */
	uint64_t keepalive_ms;

	uint64_t next_look;		/* heartbeat, parent, reload: once a second */

	/* both */
	atomic_ulong served;		/* requests handed to the app */
	atomic_int keepalive_on;	/* 0 once stopping: responses close */
} G;

static struct gconn *
gconn_of(struct http_conn *c)
{
	return (struct gconn *)c;
}

/* ---- timer lists ----
 * Loop-owned but for one move: a pool thread that kept a connection with
 * nothing pipelined puts it on the IDLE list and back in the epoll set
 * itself (no hand-back to the loop, no wake-up).  timer_lock guards the
 * lists, each connection's state and deadline. */

static pthread_mutex_t timer_lock = PTHREAD_MUTEX_INITIALIZER;

static void
timer_del_locked(struct http_conn *c)
{
	struct tlist *l = &G.timers[c->state];

	if (c->tprev != NULL)
		c->tprev->tnext = c->tnext;
	else if (l->head == c)
		l->head = c->tnext;
	else
		return;		/* not on the list */
	if (c->tnext != NULL)
		c->tnext->tprev = c->tprev;
	else
		l->tail = c->tprev;
	c->tprev = c->tnext = NULL;
}

static void
set_state_locked(struct http_conn *c, int st, uint64_t ms)
{
	timer_del_locked(c);
	c->state = st;
	if (st == CS_BUSY || st == CS_RELAY || st == CS_BEHIND)
		return;
	struct tlist *l = &G.timers[st];
	struct http_conn *prev = l->tail;
	c->deadline_ms = monotonic_ms() + ms;
	while (prev != NULL && prev->deadline_ms > c->deadline_ms)
		prev = prev->tprev;	/* DRAIN's deadlines differ */
	c->tprev = prev;
	c->tnext = prev != NULL ? prev->tnext : l->head;
	if (c->tnext != NULL)
		c->tnext->tprev = c;
	else
		l->tail = c;
	if (prev != NULL)
		prev->tnext = c;
	else
		l->head = c;
}

static void
timer_del(struct http_conn *c)
{
	pthread_mutex_lock(&timer_lock);
	timer_del_locked(c);
	pthread_mutex_unlock(&timer_lock);
}

/* Enter state st with a deadline `ms` from now (no timer for BUSY). */
static void
set_state(struct http_conn *c, int st, uint64_t ms)
{
	pthread_mutex_lock(&timer_lock);
	set_state_locked(c, st, ms);
	pthread_mutex_unlock(&timer_lock);
}

/* ---- connections ---- */

/* Connections are edge-triggered: registered once, never re-armed after
 * a request (one epoll_ctl less per request).  The loop reads until
 * EAGAIN; an edge that comes while the connection is BUSY sets
 * rd_pending, and the connection then goes back to the loop, which
 * re-arms it (EPOLL_CTL_MOD reports what is already there). */
static void
epoll_arm(struct http_conn *c, int op)
{
	/* a TLS read that must write first (rare) waits for POLLOUT too */
	struct epoll_event ev = { .events = EPOLLIN | EPOLLET |
	    (tls_io_events(c->fd, POLLIN) == POLLOUT ? EPOLLOUT : 0),
	    .data.ptr = c };

	if (epoll_ctl(G.epfd, op, c->fd, &ev) == -1)
		log_warn("epoll_ctl");
}

static void
conn_give_buffers(struct http_conn *c)
{
	if (c->buf == NULL)
		http_conn_alloc(c, &G.limits, FIRST_BUF);
}


/* Events of this loop turn may still name the connection: it is marked
 * dead (its events are skipped) and freed once the turn is over. */
static void
conn_free(struct http_conn *c)
{
	struct gconn *g = gconn_of(c);

	timer_del(c);
	relay_free(&g->rl);
	behind_free(&g->bh);
	http_conn_free_buffers(c);
	g->dead = 1;
	g->rnext = G.graveyard;
	G.graveyard = g;
	G.nconns--;
	share_publish(G.ctx, G.nconns);
}

static void
bury_the_dead(void)
{
	while (G.graveyard != NULL) {
		struct gconn *g = G.graveyard;
		G.graveyard = g->rnext;
		free(g);
	}
}

static void
conn_close(struct http_conn *c)
{
	tls_close(c->fd);	/* leaves the epoll set with it */
	conn_free(c);
}

static void listeners_watch(int on);

static void
accept_one(const struct listener *l)
{
	struct sockaddr_storage peer;
	socklen_t plen = sizeof(peer);
	struct gconn *g;
	int fd, one = 1;

	fd = accept4(l->fd, (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd == -1) {
		if (errno == EMFILE || errno == ENFILE) {
			/* out of descriptors: stop accepting for a while (the
			 * connections wait in the backlog), log once per episode */
			if (!G.emfile_episode)
				log_warn("accept on %s", l->name ? l->name : "listener");
			G.emfile_episode = 1;
			G.accept_pause_until = monotonic_ms() + 100;
			listeners_watch(0);
		}
		return;
	}
	if (tls_conn_begin(fd) == -1) {
		close(fd);
		return;
	}
	if (l->family != AF_UNIX)
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	g = xcalloc(1, sizeof(*g));
	g->c.fd = fd;
	g->c.listener = l;
	memcpy(&g->c.peer, &peer, sizeof(peer));
	g->c.peerlen = plen;
	http_conn_begin(&g->c, &G.limits);
	g->c.out_cap = BEHIND_CONN_MAX;
	G.nconns++;
	G.emfile_episode = 0;
	share_publish(G.ctx, G.nconns);
	set_state(&g->c, CS_HEAD, (uint64_t)G.limits.head_timeout_ms);
	epoll_arm(&g->c, EPOLL_CTL_ADD);
	if (G.nconns >= G.max_conns)
		listeners_watch(0);
}

/* The listeners in the epoll set (on) or not: past worker_connections,
 * out of fds, or stopping. */
static void
listeners_watch(int on)
{
	if (on == G.listening || (on && G.stopping))
		return;
	for (size_t i = 0; i < G.ctx->nlisteners; i++) {
		struct epoll_event ev = {
			.events = EPOLLIN,
			.data.u64 = TAG_LISTENER + i,
		};
		if (epoll_ctl(G.epfd, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL,
		    G.ctx->listeners[i].fd, &ev) == -1)
			log_warn("epoll_ctl (listener)");
	}
	G.listening = on;
}

static void
start_stopping(void)
{
	if (G.stopping)
		return;
	G.stopping = 1;
	atomic_store(&G.keepalive_on, 0);
	G.stop_deadline = monotonic_ms() + (uint64_t)(G.cfg->graceful_timeout > 0 ?
	    G.cfg->graceful_timeout : 0) * 1000u;
	listeners_watch(0);
	/* Nothing is closed here.  A connection accepted or left idle after a
	 * "keep-alive" response may carry a request the client is sending
	 * right now (gunicorn's #3038): it is served with "Connection: close",
	 * or closed when its own head or keep-alive deadline passes. */
}

/* Closing with request bytes maybe unread (a refused request, a body
 * not drained): a short linger in the loop, so that the client reads the
 * response rather than a reset. */
static void
conn_linger(struct http_conn *c)
{
	set_state(c, CS_LINGER, LINGER_MS);
	linger_start(c);
}

/* A refused request: the error page, then a short linger in the loop. */
static void
refuse(struct http_conn *c, const struct http_error *err)
{
	char ip[64];

	http_peer_format(http_conn_client(c), ip, sizeof(ip));
	log_warnx("Invalid request from ip=%s: %s", ip, err->reason);
	http_write_error(c->fd, err->status, http_reason_phrase(err->status), err->reason);
	conn_linger(c);
}

static void
dispatch(struct http_conn *c)
{
	unsigned long n = atomic_fetch_add(&G.served, 1) + 1;

	set_state(c, CS_BUSY, 0);
	if (!inline_take(c))
		pythreads_submit(G.pool, &gconn_of(c)->job);
	if (G.limit > 0 && n >= G.limit && !G.stopping) {
		log_info("Autorestarting worker after current request.");
		start_stopping();
	}
}

static void on_readable(struct http_conn *c);

/* Bytes are in c->buf: a request to run, more to wait for, or a refusal. */
static void
try_head(struct http_conn *c)
{
	struct http_error err;

	switch (http_conn_parse(c, &G.limits, &err)) {
	case HTTP_HEAD_READY:
		dispatch(c);
		break;
	case HTTP_HEAD_BAD:
		refuse(c, &err);
		break;
	default:
		if (c->state != CS_HEAD)
			set_state(c, CS_HEAD, (uint64_t)G.limits.head_timeout_ms);
		gconn_of(c)->rd_pending = 0;
		epoll_arm(c, EPOLL_CTL_MOD);
		if (tls_io_pending(c->fd))	/* no edge says so */
			on_readable(c);
	}
}

/* An edge on a HEAD or IDLE connection: read until EAGAIN (the next
 * edge brings more), a complete head, or a refusal. */
static void
on_readable(struct http_conn *c)
{
	struct http_error err;
	ssize_t n;

	conn_give_buffers(c);
	for (;;) {
		n = http_conn_read_some(c, &G.limits);
		if (n <= 0)
			break;
		switch (http_conn_parse(c, &G.limits, &err)) {
		case HTTP_HEAD_READY:
			/* a read that filled the buffer may have left bytes in
			 * the socket (c->len no longer says: a PROXY preamble or a
			 * uWSGI packet was taken out of it) */
			if (c->read_full)
				gconn_of(c)->rd_pending = 1;
			dispatch(c);
			return;
		case HTTP_HEAD_BAD:
			refuse(c, &err);
			return;
		default:
			if (c->state != CS_HEAD)
				set_state(c, CS_HEAD, (uint64_t)G.limits.head_timeout_ms);
		}
	}
	if (n == -1 && errno == EAGAIN) {
		if (tls_io_events(c->fd, POLLIN) == POLLOUT)
			epoll_arm(c, EPOLL_CTL_MOD);
		return;
	}
	if (n == 0 && c->len > 0)
		log_debug("Ignored premature client disconnection.");
	conn_close(c);
}


/* After a complete response on a kept connection: the next request. */
static void
conn_next_request(struct http_conn *c)
{
	if (c->len > 0) {	/* the start of a pipelined request */
		set_state(c, CS_HEAD, (uint64_t)G.limits.head_timeout_ms);
		/* after a relay or a write-behind the descriptor waited for
		 * EPOLLOUT: edges of what the client sends next must come */
		epoll_arm(c, EPOLL_CTL_MOD);
		try_head(c);
		return;
	}
	http_conn_free_buffers(c);	/* idle: no buffer */
	set_state(c, CS_IDLE, G.keepalive_ms);
	gconn_of(c)->rd_pending = 0;
	epoll_arm(c, EPOLL_CTL_MOD);	/* reports bytes that came meanwhile */
	if (tls_io_pending(c->fd))	/* but not those OpenSSL holds */
		on_readable(c);
}

static void
conn_arm(struct http_conn *c)
{
	epoll_arm(c, EPOLL_CTL_MOD);
}

/* After a complete kept response, its request's bytes shifted out: the
 * rest of a body the client is still sending is dropped first (DRAIN;
 * its buffer holds nothing then), then the next request. */
static void
conn_kept(struct http_conn *c)
{
	if (!http_drain_active(&c->drain)) {
		conn_next_request(c);
		return;
	}
	/* a Content-Length rest is read into a sink, no buffer meanwhile; a
	 * chunked one into the buffer, which keeps what follows its end */
	if (c->drain.kind == HTTP_BODY_CHUNKED)
		conn_give_buffers(c);
	else
		http_conn_free_buffers(c);
	gconn_of(c)->rd_pending = 0;
	set_state(c, CS_DRAIN, http_drain_ms(&c->drain, G.limits.head_timeout_ms));
	drain_start(c);
}

/* After the last byte of a response the loop wrote (write-behind): as
 * serve_conn() goes on after one its thread wrote whole. */
static void
conn_finished(struct http_conn *c)
{
	if (c->keepalive) {
		http_conn_shift(c);
		conn_kept(c);
	} else if (c->body_unread)
		conn_linger(c);
	else
		conn_close(c);
}

/* A connection back from the pool. */
static void
on_done(struct http_conn *c)
{
	if (gconn_of(c)->closed) {
		conn_free(c);
		return;
	}
	if (c->relay != NULL) {
		struct gconn *g = gconn_of(c);
		set_state(c, CS_RELAY, 0);
		relay_start(&g->rl, c, (void *)((uintptr_t)g | TAG_RELAY_BIT));
		return;
	}
	if (conn_out_pending(&c->out) > 0) {
		set_state(c, CS_BEHIND, 0);
		behind_start(&gconn_of(c)->bh, c);
		return;
	}
	if (!c->keepalive) {	/* request bytes may be unread: linger */
		conn_finished(c);
		return;
	}
	http_conn_shift(c);	/* done already unless a drain follows */
	conn_kept(c);
}


static void
drain_done(void)
{
	struct http_conn *list, *rev = NULL;
	uint64_t v;

	(void)!read(G.wakefd, &v, sizeof(v));
	pthread_mutex_lock(&G.done_lock);
	list = G.done_head;
	G.done_head = NULL;
	pthread_mutex_unlock(&G.done_lock);
	while (list != NULL) {		/* oldest first */
		struct http_conn *n = list->qnext;
		list->qnext = rev;
		rev = list;
		list = n;
	}
	while (rev != NULL) {
		struct http_conn *n = rev->qnext;
		on_done(rev);
		rev = n;
	}
}

static void
expire_timers(uint64_t now)
{
	struct http_conn *expired = NULL;

	pthread_mutex_lock(&timer_lock);
	for (int st = 0; st < NSTATES; st++) {
		struct tlist *l = &G.timers[st];
		while (l->head != NULL && l->head->deadline_ms <= now) {
			struct http_conn *c = l->head;
			timer_del_locked(c);
			c->qnext = expired;
			expired = c;
		}
	}
	pthread_mutex_unlock(&timer_lock);
	while (expired != NULL) {
		struct http_conn *c = expired;
		expired = c->qnext;
		if (c->state == CS_HEAD && c->len > 0)
			log_debug("Closing connection: no complete request head in time");
		if (c->state == CS_DRAIN)
			http_drain_log_timeout(&c->drain);
		conn_close(c);
	}
}

static int
next_timeout(uint64_t now)
{
	uint64_t t = now + 1000;	/* the master's death and the heartbeat: 1 s */

	if (relay_count() > 0 && now + RELAY_TICK_MS < t)
		t = now + RELAY_TICK_MS;
	if (behind_count() > 0 && now + BEHIND_TICK_MS < t)
		t = now + BEHIND_TICK_MS;
	pthread_mutex_lock(&timer_lock);
	for (int st = 0; st < NSTATES; st++)
		if (G.timers[st].head != NULL && G.timers[st].head->deadline_ms < t)
			t = G.timers[st].head->deadline_ms;
	pthread_mutex_unlock(&timer_lock);
	{
		int k = pythreads_kick(G.pool, now, STALL_MS);
		if (k >= 0 && now + (uint64_t)k < t)
			t = now + (uint64_t)k;
	}
	if (G.stopping && G.stop_deadline < t)
		t = G.stop_deadline;
	if (!G.listening && G.accept_pause_until > now && G.accept_pause_until < t)
		t = G.accept_pause_until;
	return t > now ? (int)(t - now) : 0;
}

/* ---- the pool's side ---- */

static void
give_back(struct http_conn *c)
{
	uint64_t one = 1;
	int first;

	pthread_mutex_lock(&G.done_lock);
	first = G.done_head == NULL;
	c->qnext = G.done_head;
	G.done_head = c;
	pthread_mutex_unlock(&G.done_lock);
	if (first)
		(void)!write(G.wakefd, &one, sizeof(one));
}

/* GIL held (a pool thread, or the main thread inline): answer the
 * request, and those already pipelined behind it, in order.  1: the
 * connection goes back to the loop (on_done); 0: it is idle in the epoll
 * set again. */
static int
serve_conn(struct gconn *g, struct wsgi_req *slot)
{
	struct http_conn *c = &g->c;
	struct http_error err;
	int rc;

	for (;;) {
		c->keepalive = atomic_load(&G.keepalive_on);
		c->body_unread = 0;
		c->next = 0;
		rc = wsgi_handle(slot, c);
		if (rc != 0 || !c->keepalive || c->relay != NULL ||
		    conn_out_pending(&c->out) > 0 || http_drain_active(&c->drain))
			break;
		http_conn_shift(c);
		if (c->len == 0 || !atomic_load(&G.keepalive_on) ||
		    http_conn_parse(c, &G.limits, &err) != HTTP_HEAD_READY)
			break;
		atomic_fetch_add(&G.served, 1);
	}
	if (c->relay != NULL && rc != 0) {	/* failed after the handover */
		close(c->relay->fd);
		free(c->relay->pending);
		free(c->relay);
		c->relay = NULL;
	}
	if (c->relay != NULL)
		;	/* the loop relays the body; keepalive says what comes after */
	else if (rc == 0 && conn_out_pending(&c->out) > 0)
		;	/* the loop writes the rest (write-behind), then the same */
	else if (rc == 0 && c->keepalive && http_drain_active(&c->drain))
		;	/* the loop drops the rest of the body (DRAIN), then the same */
	else if (rc == 0 && c->keepalive && c->len == 0 && atomic_load(&G.keepalive_on)) {
		/* kept, nothing pipelined: idle from here, without waking the
		 * loop, unless bytes came meanwhile (then the loop re-arms).
		 * The state change is the last touch: the loop may take the
		 * connection the moment it is IDLE. */
		int idle;
		http_conn_free_buffers(c);
		pthread_mutex_lock(&timer_lock);
		/* bytes OpenSSL holds raise no edge: the loop reads them */
		if ((idle = !g->rd_pending && !tls_io_pending(c->fd)))
			set_state_locked(c, CS_IDLE, G.keepalive_ms);
		pthread_mutex_unlock(&timer_lock);
		return !idle;
	} else if (rc == 0 && !c->keepalive && c->body_unread)
		;	/* the loop lingers (conn_finished): no thread waits on it */
	else if (rc != 0 || !c->keepalive) {
		tls_close(c->fd);
		g->closed = 1;
	}
	return 1;
}

/* A pool thread's job: a connection, or the loop role (deputy). */
static void
serve(struct pythreads_job *job, int thread, void *arg)
{
	struct gconn *g;

	if (inline_job(job))
		return;
	g = (struct gconn *)((char *)job - offsetof(struct gconn, job));
	if (serve_conn(g, G.slots[thread]))
		give_back(&g->c);
}

/* The inline runner's view of a connection (gthread_inline.h). */
static int
serve_inline(struct http_conn *c)
{
	return serve_conn(gconn_of(c), G.inline_slot);
}

static struct pythreads_job *
job_of(struct http_conn *c)
{
	return &gconn_of(c)->job;
}

/* ---- signals and the way out ---- */

static void __attribute__((noreturn))
loop_exit(int code)
{
	inline_gil_take();
	http_worker_exit(code);
}

static void
loop_hook(enum hook_id id)
{
	if (G.cfg->hooks[id] == NULL)
		return;
	inline_gil_take();
	python_hook(G.cfg, id, 1, wsgi_worker_object());
	inline_gil_drop();
}

/* INT/QUIT/ABRT: the requests in the pool whose answer has not begun get
 * gunicorn 26's 500 (wsgi.c decides, under the GIL). */
static void
loop_abort_requests(void)
{
	inline_gil_take();
	(void)wsgi_abort_responses();
	inline_gil_drop();
}

/* INT/QUIT/ABRT (http_worker_loop_signal says which hook and status). */
static void __attribute__((noreturn))
loop_quit(enum hook_id hook, int code)
{
	loop_abort_requests();
	loop_hook(hook);
	loop_exit(code);
}

static void
on_signals(void)
{
	int sig;

	while ((sig = sigpipe_next()) != 0)
		http_worker_loop_signal(sig, start_stopping, loop_quit);
}

/* ---- setup and the loop ---- */

static void loop_turn(void);

/* The worker's total of unsent client output (gthread_behind.h). */
static size_t
output_total_max(void)
{
	uint64_t quarter = memory_limit() / 4;
	size_t max = BEHIND_WORKER_MAX;

	if (quarter < max)
		max = quarter < BEHIND_WORKER_MIN ? BEHIND_WORKER_MIN : (size_t)quarter;
	if (max < BEHIND_WORKER_MAX)
		log_debug("gthread: unsent output capped at %zu KiB in all", max >> 10);
	return max;
}

static void
setup(struct http_worker_ctx *ctx)
{
	static const int sigs[] = { SIGTERM, SIGHUP, SIGINT, SIGQUIT, SIGABRT, SIGUSR1 };
	struct settings *cfg = ctx->cfg;
	struct epoll_event ev;
	int sigfd;
	int threads = cfg->threads < 1 ? 1 : cfg->threads > MAX_THREADS ? MAX_THREADS : cfg->threads;

	G.ctx = ctx;
	G.cfg = cfg;
	http_conn_limits_init(&G.limits, cfg);
	G.max_conns = cfg->worker_connections > 0 ? (size_t)cfg->worker_connections : 1;
	G.keepalive_ms = (uint64_t)(cfg->keepalive > 0 ? cfg->keepalive : 0) * 1000u;
	atomic_store(&G.keepalive_on, cfg->keepalive > 0);
	pthread_mutex_init(&G.done_lock, NULL);
	if (cfg->max_requests > 0) {
		unsigned long jitter = 0;
		if (cfg->max_requests_jitter > 0) {
			srandom((unsigned)(getpid() ^ monotonic_ms()));
			jitter = (unsigned long)random() % ((unsigned long)cfg->max_requests_jitter + 1);
		}
		G.limit = (unsigned long)cfg->max_requests + jitter;
	}

	/* signals: flag-only handlers and a pipe the loop reads (sigpipe.h
	 * says why not signalfd) */
	sigfd = sigpipe_open(sigs, sizeof(sigs) / sizeof(sigs[0]));

	if ((G.epfd = epoll_create1(EPOLL_CLOEXEC)) == -1)
		fatal("epoll_create1");
	if ((G.wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) == -1)
		fatal("eventfd");
	drain_setup(&(struct drain_host){
		.arm = conn_arm,
		.close_conn = conn_close,
		.linger = conn_linger,
		.next_request = conn_next_request,
	});
	ev = (struct epoll_event){ .events = EPOLLIN, .data.u64 = TAG_SIGNAL };
	if (epoll_ctl(G.epfd, EPOLL_CTL_ADD, sigfd, &ev) == -1)
		fatal("epoll_ctl");
	ev = (struct epoll_event){ .events = EPOLLIN, .data.u64 = TAG_WAKE };
	if (epoll_ctl(G.epfd, EPOLL_CTL_ADD, G.wakefd, &ev) == -1)
		fatal("epoll_ctl");
	for (size_t i = 0; i < ctx->nlisteners; i++)
		if (fd_set_nonblock(ctx->listeners[i].fd, 1) == -1)
			log_warn("listener: O_NONBLOCK");

	http_worker_boot(ctx, threads, NULL, &G.keepalive_on, 1);
	tls_worker_init();
	behind_setup(&(struct behind_host){
		.epfd = G.epfd,
		.stall_ms = http_io_timeout_ms(),
		.close_conn = conn_close,
		.finished = conn_finished,
	});
	relay_setup(&(struct relay_host){
		.epfd = G.epfd,
		.stall_ms = http_io_timeout_ms(),
		.close_conn = conn_close,
		.next_request = conn_kept,
	});
	conn_out_set_total_max(output_total_max());
	G.slots = xcalloc((size_t)threads, sizeof(*G.slots));
	for (int i = 0; i < threads; i++)
		G.slots[i] = wsgi_req_new();
	G.inline_slot = wsgi_req_new();
	if (cfg->hooks[HOOK_POST_WORKER_INIT] != NULL)
		python_hook(cfg, HOOK_POST_WORKER_INIT, 1, wsgi_worker_object());
	G.pool = pythreads_start(threads, serve, NULL);
	pythreads_set_lazy(G.pool, 1);
	inline_setup(&(struct inline_host){
		.pool = G.pool,
		.wakefd = G.wakefd,
		.loop_turn = loop_turn,
		.serve = serve_inline,
		.done = on_done,
		.job_of = job_of,
	});
	listeners_watch(1);
}

/* One turn of the loop: wait, handle the events, timers, the once-a-second
 * checks.  Whoever holds the loop role runs it. */
static void
loop_turn(void)
{
	struct http_worker_ctx *ctx = G.ctx;
	struct epoll_event evs[MAX_EVENTS];
	uint64_t now = monotonic_ms();
	int n;

	/* the last connections may have closed in inline requests, after
	 * the previous turn's look */
	if (G.stopping && G.nconns == 0)
		loop_exit(0);
	n = epoll_wait(G.epfd, evs, MAX_EVENTS, next_timeout(now));

	if (n == -1 && errno != EINTR)
		fatal("epoll_wait");
	now = monotonic_ms();
	for (int i = 0; i < n; i++) {
		uint64_t tag = evs[i].data.u64;
		if (tag == TAG_SIGNAL)
			on_signals();
		else if (tag == TAG_WAKE)
			drain_done();
		else if (tag >= TAG_LISTENER && tag < TAG_LISTENER + ctx->nlisteners) {
			if (!G.listening)
				continue;
			if (share_defer(ctx, G.cfg->workers, G.nconns, now)) {
				G.accept_pause_until = now + SHARE_DEFER_MS;
				listeners_watch(0);
				continue;
			}
			accept_one(&ctx->listeners[tag - TAG_LISTENER]);
		} else if ((uintptr_t)evs[i].data.ptr & TAG_RELAY_BIT) {
			struct gconn *g = (struct gconn *)((uintptr_t)evs[i].data.ptr &
			    ~(uintptr_t)TAG_RELAY_BIT);
			if (!g->dead)
				relay_readable(&g->rl);
		} else {
			struct gconn *g = gconn_of(evs[i].data.ptr);
			int st;
			if (g->dead)
				continue;
			pthread_mutex_lock(&timer_lock);
			if ((st = g->c.state) == CS_BUSY)
				g->rd_pending = 1;	/* its thread hands it back */
			pthread_mutex_unlock(&timer_lock);
			if (st == CS_RELAY)
				relay_client_event(&g->rl, evs[i].events);
			else if (st == CS_BEHIND)
				behind_client_event(&g->bh, evs[i].events);
			else if (st == CS_DRAIN)
				drain_readable(&g->c);
			else if (st == CS_LINGER)
				linger_readable(&g->c);
			else if (st != CS_BUSY)
				on_readable(&g->c);
		}
	}
	now = monotonic_ms();
	expire_timers(now);
	if (relay_count() > 0 && now >= G.relay_look_ms) {
		G.relay_look_ms = now + RELAY_TICK_MS;
		relay_timeouts(now);
	}
	if (behind_count() > 0 && now >= G.behind_look_ms) {
		G.behind_look_ms = now + BEHIND_TICK_MS;
		behind_timeouts(now);
	}
	bury_the_dead();
	if (!G.stopping && !G.listening && G.nconns < G.max_conns &&
	    now >= G.accept_pause_until)
		listeners_watch(1);	/* after EMFILE or a full house */
	if (now >= G.next_look) {
		G.next_look = now + 1000;
		if (ctx->heartbeat != NULL)
			*ctx->heartbeat = now;
		if (getppid() != ctx->master_pid && !G.stopping) {
			log_info("Parent changed, shutting down: <Worker %ld>",
			    (long)getpid());
			start_stopping();
		}
		if (G.cfg->reload && !G.stopping) {
			int due;
			inline_gil_take();
			due = http_worker_reload_due();
			inline_gil_drop();
			if (due)
				start_stopping();
		}
	}
	if (G.stopping && (G.nconns == 0 || now >= G.stop_deadline))
		loop_exit(0);
}

void
gthread_worker_main(struct http_worker_ctx *ctx)
{
	setup(ctx);
	inline_main();
}
