/*
 * dirty_arbiter.c — the dirty arbiter process: supervises the dirty
 * workers and routes calls from clients (HTTP workers, scripts, dirty
 * workers using the stash) to them over the dirty wire protocol.
 *
 * The arbiter is C only and NEVER calls Python: everything Python (apps,
 * hooks) happens in the dirty workers it forks (dirty_worker.c).
 *
 * One epoll loop; every event source is a descriptor:
 *   - the listening Unix socket and the client connections,
 *   - one socketpair per dirty worker,
 *   - a signalfd (TERM INT QUIT HUP USR1 USR2 TTIN TTOU CHLD),
 *   - a pidfd of the master (its death is readable at once; PDEATHSIG,
 *     delivered as SIGUSR2, and a periodic getppid() check back it up),
 *   - a timerfd ticking every TICK_MS for timeouts and heartbeats.
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
 * and that connection is closed; a malformed frame from a worker gets
 * the worker killed and replaced.  Either way the arbiter carries on.
 *
 * Per-app allocation: "module:Class:N" in dirty_apps limits the app to N
 * workers; others go to every worker.  A class attribute `workers = N`
 * needs Python to read, so the worker reports it: after loading its apps a
 * dirty worker MAY send a STATUS frame with id 0 and the payload
 * {"app_workers": {"module:Class": N, ...}}; for apps without a config
 * limit the arbiter then adopts N and replaces the workers that loaded the
 * app beyond N (newest first) by workers without it.
 *
 * Back-pressure: buffers are empty (unallocated) while a peer is idle;
 * input is read into one shared 64 KiB scratch buffer and only a partial
 * frame is kept per peer.  A client's input is never paused (a client
 * that pipelines before reading would deadlock); a client with more than
 * CLIENT_MAX_OUT of unread replies is dropped.  Requests waiting for a
 * worker's socket are bounded by WORKER_MAX_OUT per worker: past it a new
 * request goes to another worker having the app, or gets
 * DirtyNoWorkersAvailableError at once.
 *
 * Dirty workers: forked with a socketpair end, a MAP_SHARED heartbeat
 * slot and their app list; in the child every other descriptor is closed,
 * PR_SET_PDEATHSIG(SIGKILL) is set (with the getppid() race check), the
 * privileges are dropped to the user/group settings, then
 * dirty_worker_main() runs.  The arbiter itself keeps the master's user.
 *
 * Parent death: the arbiter logs "Parent changed, shutting down dirty
 * arbiter", SIGKILLs its workers and exits at once.  Decision: no grace
 * for the workers there — the master is gone, the callers (HTTP workers)
 * are going, nothing can receive a result, a frozen worker obeys only
 * SIGKILL, and the target is the whole tree gone well under a second.
 */
#include "dirty.h"
#include "dirty_runtime.h"
#include "dirty_stash.h"
#include "dirty_wire.h"
#include "log.h"
#include "proctitle.h"
#include "settings.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/wait.h>

#define TICK_MS			200
#define PPID_CHECK_MS		1000
#define READ_CHUNK		(64 * 1024)
/* A client whose unread replies exceed this is dropped.  Its input is
 * never paused instead: a client that writes all its requests before
 * reading (pipelining) would then deadlock against us. */
#define CLIENT_MAX_OUT		(256u * 1024 * 1024)
/* Requests queued in the arbiter for one worker (not yet written to its
 * socket) are bounded: past this, a new request goes to another worker
 * having the app, or is answered DirtyNoWorkersAvailableError.  So one
 * client pipelining large requests to a busy worker cannot grow the
 * arbiter without bound (at most this plus one frame per worker). */
#define WORKER_MAX_OUT		(64u * 1024 * 1024)
#define CLIENT_CLOSE_GRACE_MS	2000
#define RESPAWN_DELAY_MS	1000	/* a worker that died younger than this */
#define BUF_KEEP		(256 * 1024)	/* free idle buffers above this */
/* Per worker, shared: [0] its heartbeat, [1..DIRTY_CANCEL_SLOTS] the ids
 * of its calls whose caller went away (dirty.h). */
#define SHARED_SIZE		((1 + DIRTY_CANCEL_SLOTS) * sizeof(uint64_t))

enum ev_kind { EV_LISTEN = 1, EV_SIGNAL, EV_PIDFD, EV_TIMER, EV_CLIENT, EV_WORKER };

#define EV_KEY(kind, gen, idx) \
	(((uint64_t)(kind) << 56) | ((uint64_t)((gen) & 0xffffffu) << 32) | \
	 (uint32_t)(idx))
#define EV_KIND(k)	((int)((k) >> 56))
#define EV_GEN(k)	((uint32_t)(((k) >> 32) & 0xffffffu))
#define EV_IDX(k)	((uint32_t)(k))

/* Output queue: bytes [off, b.len) are still to be sent. */
struct outq {
	struct dirty_buf b;
	size_t off;
};

struct client {
	int fd;			/* -1: free slot */
	uint32_t gen;
	uint32_t events;	/* current epoll mask */
	struct dirty_buf in;	/* unconsumed input (partial frame) */
	struct outq out;
	uint32_t ncalls;	/* calls in flight */
	int closing;		/* close once out is flushed */
	uint64_t close_deadline;
	int flush_queued;
};

enum worker_state {
	W_FREE = 0,
	W_ALIVE,		/* routable */
	W_RETIRING,		/* not routable; TERM once idle */
	W_STOPPING,		/* TERM sent; KILL after the graceful timeout */
};

struct worker {
	int state;
	pid_t pid;		/* 0 once reaped */
	uint32_t gen;
	int fd;			/* -1 once the channel is closed */
	uint32_t events;
	struct dirty_buf in;
	struct outq out;
	unsigned char *apps;	/* napps flags: which apps it loads */
	volatile uint64_t *heartbeat;	/* SHARED_SIZE bytes, see above */
	uint32_t cancel_pos;		/* next cancel slot to write */
	int age;
	uint32_t inflight;
	uint64_t served;
	uint64_t spawned_ms;
	uint64_t retire_ms;
	uint64_t term_ms;
	int killed;		/* SIGKILL sent: timeout or misbehaviour */
	int reaped;		/* waited for: its pid may be reused, never signal */
	int flush_queued;
};

struct app {
	char *path;		/* "module:Class" */
	int limit;		/* workers that load it; 0 = all */
	int config_limit;	/* the ":N" of dirty_apps, wins over the class */
	uint32_t rr;		/* round-robin cursor */
};

struct call {
	uint32_t gen;		/* high half of the arbiter id */
	int in_use;
	uint32_t client, client_gen;
	uint64_t client_id;
	uint32_t worker, worker_gen;
	uint64_t start_ms;
};

struct respawn {
	unsigned char *apps;
	uint64_t due_ms;
};

static struct {
	struct settings *s;
	pid_t pid, master_pid;
	int epfd, listen_fd, signal_fd, pid_fd, timer_fd, lock_fd;

	struct app *apps;
	size_t napps;

	struct worker *workers;
	size_t nworkers_slots;
	int target;		/* how many routable workers we want */
	int age;

	struct client *clients;
	size_t nclient_slots;
	size_t nclients;

	struct call *calls;
	uint32_t ncall_slots;
	uint32_t *call_free;
	uint32_t ncall_free;
	uint64_t total_inflight;
	uint64_t total_served;	/* calls answered (RESPONSE, ERROR, END) */

	struct respawn *respawns;
	size_t nrespawns;

	/* flush list: EV keys of peers with output queued this round */
	uint64_t *flush;
	size_t nflush, flush_cap;

	int stopping;		/* graceful: TERM received */
	uint64_t stop_deadline;
	int workers_termed;
	uint64_t last_ppid_check;
	uint64_t last_young_death;	/* crash-loop brake, see worker_reaped */
	int manage_pending;	/* run workers_manage() at the end of the round */
} arb;

static uint8_t scratch[READ_CHUNK];

static void worker_close_channel(struct worker *w, const char *why);
static void client_close(struct client *c);
static void call_free(struct call *k);
static void call_cancel_worker(struct call *k);
static void arbiter_exit(int code, int parent_died) __attribute__((noreturn));

int
dirty_enabled(const struct settings *s)
{
	return s->dirty_workers > 0 && s->dirty_apps.len > 0;
}

/* ---- output queues and epoll ---- */

static size_t
outq_pending(const struct outq *q)
{
	return q->b.len - q->off;
}

/* Send what we can.  0 (maybe something left), -1 on a dead peer. */
static int
outq_send(int fd, struct outq *q)
{
	while (outq_pending(q) > 0) {
		ssize_t n = send(fd, q->b.data + q->off, outq_pending(q),
		    MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			return -1;
		}
		q->off += (size_t)n;
	}
	if (q->off == q->b.len) {
		q->off = 0;
		if (q->b.cap > BUF_KEEP)
			dirty_buf_free(&q->b);
		else
			dirty_buf_reset(&q->b);
	} else if (q->off > BUF_KEEP && q->off > q->b.len / 2) {
		dirty_buf_consume(&q->b, q->off);
		q->off = 0;
	}
	return 0;
}

static void
ep_set(int fd, uint32_t *cur, uint32_t want, uint64_t key)
{
	struct epoll_event ev = { .events = want, .data.u64 = key };

	if (*cur == want)
		return;
	if (epoll_ctl(arb.epfd, EPOLL_CTL_MOD, fd, &ev) == -1)
		log_warn("dirty: epoll_ctl MOD");
	*cur = want;
}

static int
ep_add(int fd, uint32_t events, uint64_t key)
{
	struct epoll_event ev = { .events = events, .data.u64 = key };

	if (epoll_ctl(arb.epfd, EPOLL_CTL_ADD, fd, &ev) == -1) {
		log_warn("dirty: epoll_ctl ADD");
		return -1;
	}
	return 0;
}

static void
flush_queue(uint64_t key, int *queued)
{
	if (*queued)
		return;
	if (arb.nflush == arb.flush_cap) {
		arb.flush_cap = arb.flush_cap ? arb.flush_cap * 2 : 64;
		arb.flush = xreallocarray(arb.flush, arb.flush_cap,
		    sizeof(*arb.flush));
	}
	arb.flush[arb.nflush++] = key;
	*queued = 1;
}

/* ---- clients ---- */

static uint64_t
client_key(const struct client *c)
{
	return EV_KEY(EV_CLIENT, c->gen, c - arb.clients);
}

static void
client_update_events(struct client *c)
{
	uint32_t want = 0;

	if (!c->closing)
		want |= EPOLLIN;
	if (outq_pending(&c->out) > 0)
		want |= EPOLLOUT;
	ep_set(c->fd, &c->events, want, client_key(c));
}

static void
client_queue_flush(struct client *c)
{
	flush_queue(client_key(c), &c->flush_queued);
}

static struct client *
client_lookup(uint32_t idx, uint32_t gen)
{
	if (idx >= arb.nclient_slots)
		return NULL;
	struct client *c = &arb.clients[idx];
	if (c->fd == -1 || (c->gen & 0xffffffu) != (gen & 0xffffffu))
		return NULL;
	return c;
}

static void
client_accept(void)
{
	for (;;) {
		int fd = accept4(arb.listen_fd, NULL, NULL,
		    SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				log_warn("dirty: accept");
			return;
		}
		size_t i;
		for (i = 0; i < arb.nclient_slots; i++)
			if (arb.clients[i].fd == -1)
				break;
		if (i == arb.nclient_slots) {
			size_t n = arb.nclient_slots ? arb.nclient_slots * 2 : 16;
			arb.clients = xreallocarray(arb.clients, n,
			    sizeof(*arb.clients));
			memset(arb.clients + arb.nclient_slots, 0,
			    (n - arb.nclient_slots) * sizeof(*arb.clients));
			for (size_t j = arb.nclient_slots; j < n; j++)
				arb.clients[j].fd = -1;
			arb.nclient_slots = n;
		}
		struct client *c = &arb.clients[i];
		uint32_t gen = c->gen + 1;
		memset(c, 0, sizeof(*c));
		c->fd = fd;
		c->gen = gen;
		c->events = EPOLLIN;
		if (ep_add(fd, EPOLLIN, client_key(c)) == -1) {
			close(fd);
			c->fd = -1;
			continue;
		}
		arb.nclients++;
	}
}

static void
client_close(struct client *c)
{
	if (c->fd == -1)
		return;
	if (c->ncalls > 0) {
		/* Its calls are forgotten, and their workers told to stop
		 * producing for them (a stream stops at its next chunk). */
		uint32_t idx = (uint32_t)(c - arb.clients);
		for (uint32_t i = 0; i < arb.ncall_slots && c->ncalls > 0; i++) {
			struct call *k = &arb.calls[i];
			if (k->in_use && k->client == idx &&
			    k->client_gen == c->gen) {
				call_cancel_worker(k);
				call_free(k);
			}
		}
	}
	epoll_ctl(arb.epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	c->fd = -1;
	c->gen++;	/* its calls in flight are forgotten: replies dropped */
	dirty_buf_free(&c->in);
	dirty_buf_free(&c->out.b);
	c->out.off = 0;
	arb.nclients--;
}

static void
client_send_error(struct client *c, uint64_t id, const char *type,
    const char *message)
{
	dirty_put_error_frame(&c->out.b, id, type, message);
	client_queue_flush(c);
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
static void
client_protocol_error(struct client *c, uint64_t id, const char *why)
{
	char msg[160];

	log_debug("dirty: closing client connection: malformed message (%s)",
	    why);
	snprintf(msg, sizeof(msg), "Malformed message: %s", why);
	client_send_error(c, id, DIRTY_E_PROTOCOL, msg);
	c->closing = 1;
	c->close_deadline = monotonic_ms() + CLIENT_CLOSE_GRACE_MS;
	dirty_buf_free(&c->in);
}

/* ---- apps ---- */

static void
apps_parse(void)
{
	const struct strlist *l = &arb.s->dirty_apps;

	arb.apps = xcalloc(l->len ? l->len : 1, sizeof(*arb.apps));
	for (size_t i = 0; i < l->len; i++) {
		const char *spec = l->items[i];
		size_t path_len;
		int limit;

		/* malformed entries were refused by the settings check */
		(void)dirty_app_spec_split(spec, &path_len, &limit);
		char *path = xasprintf("%.*s", (int)path_len, spec);
		size_t j;
		for (j = 0; j < arb.napps; j++)
			if (strcmp(arb.apps[j].path, path) == 0)
				break;
		if (j < arb.napps) {	/* listed twice: the last one wins */
			free(path);
			arb.apps[j].limit = arb.apps[j].config_limit = limit;
			continue;
		}
		arb.apps[arb.napps].path = path;
		arb.apps[arb.napps].limit = limit;
		arb.apps[arb.napps].config_limit = limit;
		arb.napps++;
	}
}

static int
app_find(const char *name, size_t n)
{
	for (size_t i = 0; i < arb.napps; i++)
		if (strlen(arb.apps[i].path) == n &&
		    memcmp(arb.apps[i].path, name, n) == 0)
			return (int)i;
	return -1;
}

/* Fewest workers TTOU/MANAGE may leave: the largest per-app limit. */
static int
workers_required(void)
{
	int req = 1;

	for (size_t i = 0; i < arb.napps; i++)
		if (arb.apps[i].limit > req)
			req = arb.apps[i].limit;
	return req;
}

/* ---- calls ---- */

static struct call *
call_alloc(uint32_t *slot)
{
	if (arb.ncall_free == 0) {
		uint32_t n = arb.ncall_slots ? arb.ncall_slots * 2 : 64;
		arb.calls = xreallocarray(arb.calls, n, sizeof(*arb.calls));
		memset(arb.calls + arb.ncall_slots, 0,
		    (n - arb.ncall_slots) * sizeof(*arb.calls));
		arb.call_free = xreallocarray(arb.call_free, n,
		    sizeof(*arb.call_free));
		for (uint32_t i = n; i > arb.ncall_slots; i--)
			arb.call_free[arb.ncall_free++] = i - 1;
		arb.ncall_slots = n;
	}
	*slot = arb.call_free[--arb.ncall_free];
	struct call *k = &arb.calls[*slot];
	k->gen++;
	if (k->gen == 0)
		k->gen = 1;
	k->in_use = 1;
	arb.total_inflight++;
	return k;
}

static uint64_t
call_id(uint32_t slot)
{
	return ((uint64_t)arb.calls[slot].gen << 32) | slot;
}

static struct call *
call_lookup(uint64_t id)
{
	uint32_t slot = (uint32_t)id;

	if (slot >= arb.ncall_slots)
		return NULL;
	struct call *k = &arb.calls[slot];
	if (!k->in_use || k->gen != (uint32_t)(id >> 32))
		return NULL;
	return k;
}

/* Forget a call: the client's and the worker's counts go down. */
static void
call_free(struct call *k)
{
	struct client *c = client_lookup(k->client, k->client_gen);
	if (c != NULL && c->ncalls > 0)
		c->ncalls--;
	if (k->worker < arb.nworkers_slots) {
		struct worker *w = &arb.workers[k->worker];
		if (w->state != W_FREE && w->gen == k->worker_gen &&
		    w->inflight > 0)
			w->inflight--;
	}
	k->in_use = 0;
	arb.call_free[arb.ncall_free++] = (uint32_t)(k - arb.calls);
	arb.total_inflight--;
}

/* Tell the call's worker to stop producing for it (dirty.h: the cancel
 * ring); the call itself is not freed here. */
static void
call_cancel_worker(struct call *k)
{
	if (k->worker >= arb.nworkers_slots)
		return;
	struct worker *w = &arb.workers[k->worker];
	if (w->state == W_FREE || w->gen != k->worker_gen ||
	    w->heartbeat == NULL)
		return;
	uint64_t id = call_id((uint32_t)(k - arb.calls));
	__atomic_store_n(&w->heartbeat[1 + w->cancel_pos % DIRTY_CANCEL_SLOTS],
	    id, __ATOMIC_RELEASE);
	w->cancel_pos++;
}

/* Answer a call with an error (if its client is still there), forget it. */
static void
call_fail(struct call *k, const char *type, const char *message)
{
	struct client *c = client_lookup(k->client, k->client_gen);

	if (c != NULL && !c->closing)
		client_send_error(c, k->client_id, type, message);
	call_free(k);
}

/* ---- workers ---- */

static uint64_t
worker_key(const struct worker *w)
{
	return EV_KEY(EV_WORKER, w->gen, w - arb.workers);
}

static void
worker_update_events(struct worker *w)
{
	uint32_t want = EPOLLIN;

	if (w->fd == -1)
		return;
	if (outq_pending(&w->out) > 0)
		want |= EPOLLOUT;
	ep_set(w->fd, &w->events, want, worker_key(w));
}

static struct worker *
worker_slot(void)
{
	size_t i;

	for (i = 0; i < arb.nworkers_slots; i++)
		if (arb.workers[i].state == W_FREE)
			return &arb.workers[i];
	size_t n = arb.nworkers_slots ? arb.nworkers_slots * 2 : 8;
	arb.workers = xreallocarray(arb.workers, n, sizeof(*arb.workers));
	memset(arb.workers + arb.nworkers_slots, 0,
	    (n - arb.nworkers_slots) * sizeof(*arb.workers));
	for (size_t j = arb.nworkers_slots; j < n; j++)
		arb.workers[j].fd = -1;
	arb.nworkers_slots = n;
	return &arb.workers[i];
}

/* Apps a brand-new worker loads: every unlimited app, and each limited
 * app that fewer than `limit` routable (or about to respawn) workers
 * have. */
static void
worker_allocate(unsigned char *apps)
{
	for (size_t i = 0; i < arb.napps; i++) {
		int have = 0;
		if (arb.apps[i].limit == 0) {
			apps[i] = 1;
			continue;
		}
		for (size_t j = 0; j < arb.nworkers_slots; j++)
			if (arb.workers[j].state == W_ALIVE &&
			    arb.workers[j].apps[i])
				have++;
		for (size_t j = 0; j < arb.nrespawns; j++)
			if (arb.respawns[j].apps[i])
				have++;
		apps[i] = have < arb.apps[i].limit;
	}
}

static void __attribute__((noreturn))
worker_child(int fd, volatile uint64_t *heartbeat, const unsigned char *apps,
    int age)
{
	int keep[2] = { fd, log_error_fd() };
	struct dirty_worker_ctx ctx;

	close_fds_except(keep, 2);
	log_reopen();
	/* Die with the arbiter, even when frozen; close the race with an
	 * arbiter that died before the prctl. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != arb.pid)
		_exit(0);
	/* Blocked until dirty_worker_main() has its handlers: the USR1 we
	 * forward to all workers (log reopen) would kill a fresh one. */
	signals_reset_child_blocked();
	/* Drop privileges like an HTTP worker (user / group settings). */
	if (getegid() != arb.s->gid) {
		struct passwd *pw = getpwuid(arb.s->uid);
		if (setgid(arb.s->gid) == -1) {
			log_error("dirty worker: setgid(%d)", (int)arb.s->gid);
			_exit(1);
		}
		if (pw != NULL && initgroups(pw->pw_name, arb.s->gid) == -1)
			log_warn("dirty worker: initgroups(%s)", pw->pw_name);
	}
	if (geteuid() != arb.s->uid && setuid(arb.s->uid) == -1) {
		log_error("dirty worker: setuid(%d)", (int)arb.s->uid);
		_exit(1);
	}

	memset(&ctx, 0, sizeof(ctx));
	ctx.cfg = arb.s;
	ctx.fd = fd;
	ctx.apps = xcalloc(arb.napps + 1, sizeof(char *));
	for (size_t i = 0; i < arb.napps; i++)
		if (apps[i])
			ctx.apps[ctx.napps++] = arb.apps[i].path;
	ctx.heartbeat = heartbeat;
	ctx.cancel = heartbeat + 1;
	ctx.arbiter_pid = arb.pid;
	ctx.age = age;
	dirty_worker_main(&ctx);
}

/* Fork a dirty worker loading `apps` (napps flags, copied). */
static int
worker_spawn(const unsigned char *apps)
{
	int sv[2];
	volatile uint64_t *hb;
	struct worker *w;
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1) {
		log_warn("dirty: socketpair");
		return -1;
	}
	hb = mmap(NULL, SHARED_SIZE, PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (hb == MAP_FAILED) {
		log_warn("dirty: mmap");
		close(sv[0]);
		close(sv[1]);
		return -1;
	}
	*hb = monotonic_ms();
	arb.age++;
	pid = fork();
	if (pid == -1) {
		log_warn("dirty: fork");
		close(sv[0]);
		close(sv[1]);
		munmap((void *)hb, SHARED_SIZE);
		return -1;
	}
	if (pid == 0) {
		close(sv[0]);
		worker_child(sv[1], hb, apps, arb.age);
	}
	close(sv[1]);
	fd_set_nonblock(sv[0], 1);

	w = worker_slot();
	uint32_t gen = w->gen + 1;
	memset(w, 0, sizeof(*w));
	w->gen = gen;
	w->state = W_ALIVE;
	w->pid = pid;
	w->fd = sv[0];
	w->events = EPOLLIN;
	w->apps = xmalloc(arb.napps ? arb.napps : 1);
	memcpy(w->apps, apps, arb.napps);
	w->heartbeat = hb;
	w->age = arb.age;
	w->spawned_ms = monotonic_ms();
	if (ep_add(w->fd, EPOLLIN, worker_key(w)) == -1) {
		kill(pid, SIGKILL);
		close(w->fd);
		w->fd = -1;
	}
	if (log_get_level() <= LOG_DEBUG) {
		for (size_t i = 0; i < arb.napps; i++)
			if (apps[i])
				log_debug("dirty worker %d loads %s", (int)pid,
				    arb.apps[i].path);
	}
	log_info("Spawned dirty worker (pid: %d)", (int)pid);
	return 0;
}

static int
workers_routable(void)
{
	int n = 0;

	for (size_t i = 0; i < arb.nworkers_slots; i++)
		if (arb.workers[i].state == W_ALIVE)
			n++;
	return n;
}

/* Start workers until routable + pending respawns reach the target. */
static void
workers_manage(void)
{
	uint64_t now = monotonic_ms();

	if (arb.stopping)
		return;
	for (size_t i = 0; i < arb.nrespawns;) {
		if (arb.respawns[i].due_ms <= now) {
			unsigned char *apps = arb.respawns[i].apps;
			arb.respawns[i] = arb.respawns[--arb.nrespawns];
			worker_spawn(apps);
			free(apps);
		} else
			i++;
	}
	int have = workers_routable() + (int)arb.nrespawns;
	unsigned char *apps = xmalloc(arb.napps ? arb.napps : 1);
	for (; have < arb.target; have++) {
		worker_allocate(apps);
		if (worker_spawn(apps) == -1)
			break;
	}
	free(apps);
}

/* Stop routing to w; TERM it once its calls are done. */
static void
worker_retire(struct worker *w)
{
	if (w->state != W_ALIVE)
		return;
	w->state = W_RETIRING;
	w->retire_ms = monotonic_ms();
}

static void
worker_term(struct worker *w)
{
	if (w->pid > 0 && w->state != W_STOPPING) {
		kill(w->pid, SIGTERM);
		w->state = W_STOPPING;
		w->term_ms = monotonic_ms();
	}
}

/* The routable worker to retire on TTOU/MANAGE remove: the one with the
 * fewest limited apps, the newest among equals. */
static struct worker *
worker_pick_victim(void)
{
	struct worker *best = NULL;
	int best_limited = 0;

	for (size_t i = 0; i < arb.nworkers_slots; i++) {
		struct worker *w = &arb.workers[i];
		int limited = 0;
		if (w->state != W_ALIVE)
			continue;
		for (size_t j = 0; j < arb.napps; j++)
			if (w->apps[j] && arb.apps[j].limit > 0)
				limited++;
		if (best == NULL || limited < best_limited ||
		    (limited == best_limited && w->age > best->age)) {
			best = w;
			best_limited = limited;
		}
	}
	return best;
}

/* Decrease the target by up to n, never below what the apps require.
 * Returns how many were removed. */
static int
workers_decrease(int n)
{
	int removed = 0;

	while (removed < n && arb.target > workers_required()) {
		arb.target--;
		removed++;
		struct worker *w = worker_pick_victim();
		if (w != NULL && workers_routable() > arb.target)
			worker_retire(w);
	}
	return removed;
}

/* The worker's channel is gone (EOF, error, misbehaviour, timeout): fail
 * every call it had at once, make sure the process dies. */
static void
worker_close_channel(struct worker *w, const char *why)
{
	char msg[128];

	if (w->fd != -1) {
		epoll_ctl(arb.epfd, EPOLL_CTL_DEL, w->fd, NULL);
		close(w->fd);
		w->fd = -1;
	}
	dirty_buf_free(&w->in);
	dirty_buf_free(&w->out.b);
	w->out.off = 0;
	if (w->pid > 0 && !w->reaped)	/* unreaped: the pid is still its own */
		kill(w->pid, SIGKILL);
	if (w->inflight == 0)
		return;
	snprintf(msg, sizeof(msg), "Dirty worker (pid: %d) %s", (int)w->pid,
	    why);
	uint32_t idx = (uint32_t)(w - arb.workers);
	for (uint32_t i = 0; i < arb.ncall_slots; i++) {
		struct call *k = &arb.calls[i];
		if (k->in_use && k->worker == idx && k->worker_gen == w->gen)
			call_fail(k, DIRTY_E_WORKER, msg);
	}
}

static void
worker_misbehaved(struct worker *w, const char *why)
{
	log_errorx("Dirty worker (pid: %d) sent a malformed message (%s), "
	    "killing it", (int)w->pid, why);
	w->killed = 1;
	worker_close_channel(w, "was killed: malformed message");
}

static struct worker *
worker_by_pid(pid_t pid)
{
	for (size_t i = 0; i < arb.nworkers_slots; i++)
		if (arb.workers[i].state != W_FREE && arb.workers[i].pid == pid)
			return &arb.workers[i];
	return NULL;
}

static void
status_text(int status, char *buf, size_t len)
{
	if (WIFSIGNALED(status))
		snprintf(buf, len, "killed by signal %d", WTERMSIG(status));
	else
		snprintf(buf, len, "exit code %d", WEXITSTATUS(status));
}

static void
worker_reaped(struct worker *w, int status)
{
	char how[64], why[96];
	uint64_t now = monotonic_ms();

	status_text(status, how, sizeof(how));
	snprintf(why, sizeof(why), "died (%s)", how);
	w->reaped = 1;
	if (w->fd != -1 || w->inflight > 0)
		worker_close_channel(w, why);
	if (w->state == W_ALIVE && !arb.stopping) {
		log_warnx("Dirty worker (pid: %d) %s, spawning a replacement "
		    "with the same apps", (int)w->pid, why);
		if (arb.nrespawns % 8 == 0)
			arb.respawns = xreallocarray(arb.respawns,
			    arb.nrespawns + 8, sizeof(*arb.respawns));
		struct respawn *r = &arb.respawns[arb.nrespawns++];
		r->apps = w->apps;
		w->apps = NULL;
		/* Workers dying right after their start one after another
		 * (import error, crash at boot) are not restarted in a tight
		 * loop: the second young death within 5 s waits a second. */
		r->due_ms = now;
		if (now - w->spawned_ms < RESPAWN_DELAY_MS) {
			if (arb.last_young_death != 0 &&
			    now - arb.last_young_death < 5 * RESPAWN_DELAY_MS)
				r->due_ms = now + RESPAWN_DELAY_MS;
			arb.last_young_death = now;
		}
	} else
		log_info("Dirty worker (pid: %d) exited (%s)", (int)w->pid, how);
	munmap((void *)w->heartbeat, SHARED_SIZE);
	free(w->apps);
	w->apps = NULL;
	w->heartbeat = NULL;
	w->pid = 0;
	w->state = W_FREE;
}

static void
workers_reap(void)
{
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		struct worker *w = worker_by_pid(pid);
		if (w != NULL)
			worker_reaped(w, status);
	}
}

static int
workers_count(void)
{
	int n = 0;

	for (size_t i = 0; i < arb.nworkers_slots; i++)
		if (arb.workers[i].state != W_FREE)
			n++;
	return n;
}

static void
workers_signal(int sig)
{
	for (size_t i = 0; i < arb.nworkers_slots; i++)
		if (arb.workers[i].state != W_FREE && arb.workers[i].pid > 0)
			kill(arb.workers[i].pid, sig);
}

/* ---- class-level `workers = N` reported by a worker ---- */

static void
apply_class_limit(size_t app, int limit)
{
	int have = 0;

	if (arb.apps[app].config_limit > 0 || limit <= 0 ||
	    arb.apps[app].limit == limit)
		return;
	arb.apps[app].limit = limit;
	log_info("dirty app %s: class attribute workers = %d",
	    arb.apps[app].path, limit);
	for (size_t i = 0; i < arb.nworkers_slots; i++)
		if (arb.workers[i].state == W_ALIVE && arb.workers[i].apps[app])
			have++;
	/* Replace the extra ones, newest first, by workers without it. */
	while (have > limit) {
		struct worker *newest = NULL;
		for (size_t i = 0; i < arb.nworkers_slots; i++) {
			struct worker *w = &arb.workers[i];
			if (w->state == W_ALIVE && w->apps[app] &&
			    (newest == NULL || w->age > newest->age))
				newest = w;
		}
		worker_retire(newest);
		have--;
	}
	/* Not workers_manage() here: spawning may move arb.workers while
	 * our caller still holds a pointer into it. */
	arb.manage_pending = 1;
}

static void
worker_app_report(struct worker *w, const uint8_t *p, size_t len)
{
	struct dirty_cursor c;
	const char *why;
	uint32_t n;

	if (dirty_dict_lookup(p, len, "app_workers", &c, &why) != 0 ||
	    dirty_get_dict(&c, &n) == -1)
		return;
	for (uint32_t i = 0; i < n; i++) {
		const char *name;
		uint32_t nlen;
		int64_t v;
		if (dirty_get_string(&c, &name, &nlen) == -1)
			return;
		if (dirty_peek_type(&c) != DIRTY_TLV_INT64) {
			if (dirty_skip(&c) == -1)
				return;
			continue;
		}
		if (dirty_get_int64(&c, &v) == -1)
			return;
		int app = app_find(name, nlen);
		if (app >= 0 && v > 0 && v < 1000000)
			apply_class_limit((size_t)app, (int)v);
	}
	(void)w;
}

/* ---- routing ---- */

/* The next live worker having the app whose queue has room (round
 * robin); NULL if none, with *full set when some had the app but a full
 * queue (WORKER_MAX_OUT). */
static struct worker *
route_pick(size_t app, int *full)
{
	size_t n = arb.nworkers_slots;

	*full = 0;
	for (size_t k = 0; k < n; k++) {
		size_t i = (arb.apps[app].rr + k) % n;
		struct worker *w = &arb.workers[i];
		if (w->state == W_ALIVE && w->fd != -1 && w->apps[app]) {
			if (outq_pending(&w->out) >= WORKER_MAX_OUT) {
				*full = 1;
				continue;
			}
			arb.apps[app].rr = (uint32_t)(i + 1);
			return w;
		}
	}
	return NULL;
}

static void
route_request(struct client *c, const uint8_t *frame,
    const struct dirty_header *h)
{
	const uint8_t *payload = frame + DIRTY_HEADER_SIZE;
	struct dirty_cursor v;
	const char *why, *name;
	uint32_t nlen, slot;
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
	struct worker *w = route_pick((size_t)app, &full);
	if (w == NULL) {
		snprintf(msg, sizeof(msg),
		    "No dirty workers available for app %s%s",
		    arb.apps[app].path, full ?
		    " (every worker's queue of requests is full)" : "");
		client_send_error(c, h->id, DIRTY_E_NO_WORKERS, msg);
		return;
	}
	struct call *k = call_alloc(&slot);
	k->client = (uint32_t)(c - arb.clients);
	k->client_gen = c->gen;
	k->client_id = h->id;
	k->worker = (uint32_t)(w - arb.workers);
	k->worker_gen = w->gen;
	k->start_ms = monotonic_ms();
	c->ncalls++;
	w->inflight++;

	size_t at = w->out.b.len;
	dirty_buf_append(&w->out.b, frame, DIRTY_HEADER_SIZE + h->length);
	dirty_header_set_id(w->out.b.data + at, call_id(slot));
	flush_queue(worker_key(w), &w->flush_queued);
}

/* ---- STATUS and MANAGE from clients ---- */

static void
put_key(struct dirty_buf *b, const char *k)
{
	dirty_put_cstring(b, k);
}

static void
status_reply(struct client *c, uint64_t id)
{
	struct dirty_buf *b = &c->out.b;
	uint32_t n = 0;

	for (size_t i = 0; i < arb.nworkers_slots; i++)
		if (arb.workers[i].state != W_FREE && arb.workers[i].pid > 0)
			n++;
	size_t f = dirty_frame_begin(b, DIRTY_MSG_RESPONSE, id);
	dirty_put_dict(b, 1);
	put_key(b, "result");
	dirty_put_dict(b, 7);
	put_key(b, "arbiter_pid");
	dirty_put_int64(b, arb.pid);
	put_key(b, "num_workers");
	dirty_put_int64(b, arb.target);
	put_key(b, "min_workers");
	dirty_put_int64(b, workers_required());
	put_key(b, "in_flight");
	dirty_put_int64(b, (int64_t)arb.total_inflight);
	put_key(b, "served");
	dirty_put_int64(b, (int64_t)arb.total_served);
	put_key(b, "apps");
	dirty_put_list(b, (uint32_t)arb.napps);
	for (size_t i = 0; i < arb.napps; i++) {
		uint32_t have = 0;
		for (size_t j = 0; j < arb.nworkers_slots; j++)
			if (arb.workers[j].state == W_ALIVE &&
			    arb.workers[j].apps[i])
				have++;
		dirty_put_dict(b, 3);
		put_key(b, "app_path");
		dirty_put_cstring(b, arb.apps[i].path);
		put_key(b, "worker_count");
		if (arb.apps[i].limit > 0)
			dirty_put_int64(b, arb.apps[i].limit);
		else
			dirty_put_none(b);
		put_key(b, "workers");
		dirty_put_int64(b, have);
	}
	put_key(b, "workers");
	dirty_put_list(b, n);
	for (size_t i = 0; i < arb.nworkers_slots; i++) {
		static const char *states[] = { "free", "alive", "retiring",
		    "stopping" };
		struct worker *w = &arb.workers[i];
		uint32_t na = 0;
		if (w->state == W_FREE || w->pid <= 0)
			continue;
		for (size_t j = 0; j < arb.napps; j++)
			na += w->apps[j] ? 1 : 0;
		dirty_put_dict(b, 7);
		put_key(b, "pid");
		dirty_put_int64(b, w->pid);
		put_key(b, "age");
		dirty_put_int64(b, w->age);
		put_key(b, "state");
		dirty_put_cstring(b, states[w->state]);
		put_key(b, "apps");
		dirty_put_list(b, na);
		for (size_t j = 0; j < arb.napps; j++)
			if (w->apps[j])
				dirty_put_cstring(b, arb.apps[j].path);
		put_key(b, "in_flight");
		dirty_put_int64(b, w->inflight);
		put_key(b, "served");
		dirty_put_int64(b, (int64_t)w->served);
		put_key(b, "last_heartbeat_ms_ago");
		dirty_put_int64(b, (int64_t)(monotonic_ms() - *w->heartbeat));
	}
	dirty_frame_end(b, f);
	client_queue_flush(c);
}

static void
manage_request(struct client *c, const uint8_t *payload,
    const struct dirty_header *h)
{
	struct dirty_cursor v;
	const char *why;
	int64_t op = 0, count = 1;
	int done = 0;

	if (dirty_validate(payload, h->length, 0, &why) == -1) {
		client_protocol_error(c, h->id, why);
		return;
	}
	if (dirty_dict_lookup(payload, h->length, "op", &v, &why) != 0 ||
	    dirty_get_int64(&v, &op) == -1 ||
	    (op != DIRTY_MANAGE_ADD && op != DIRTY_MANAGE_REMOVE)) {
		client_send_error(c, h->id, DIRTY_E_ERROR,
		    "MANAGE needs op 1 (add) or 2 (remove)");
		return;
	}
	if (dirty_dict_lookup(payload, h->length, "count", &v, &why) == 0 &&
	    dirty_get_int64(&v, &count) == -1)
		count = -1;
	if (count < 1 || count > 1024) {
		client_send_error(c, h->id, DIRTY_E_ERROR,
		    "MANAGE count must be between 1 and 1024");
		return;
	}
	if (arb.stopping) {
		client_send_error(c, h->id, DIRTY_E_ERROR,
		    "dirty arbiter is shutting down");
		return;
	}
	if (op == DIRTY_MANAGE_ADD) {
		arb.target += (int)count;
		done = (int)count;
		log_info("MANAGE: increasing dirty workers to %d", arb.target);
		workers_manage();
	} else {
		done = workers_decrease((int)count);
		log_info("MANAGE: decreasing dirty workers to %d", arb.target);
	}
	struct dirty_buf *b = &c->out.b;
	size_t f = dirty_frame_begin(b, DIRTY_MSG_RESPONSE, h->id);
	dirty_put_dict(b, 1);
	put_key(b, "result");
	dirty_put_dict(b, 3);
	put_key(b, "success");
	dirty_put_bool(b, done == (int)count);
	put_key(b, op == DIRTY_MANAGE_ADD ? "added" : "removed");
	dirty_put_int64(b, done);
	put_key(b, "num_workers");
	dirty_put_int64(b, arb.target);
	dirty_frame_end(b, f);
	client_queue_flush(c);
}

/* ---- client input ---- */

static void
client_frame(struct client *c, const uint8_t *frame,
    const struct dirty_header *h)
{
	const uint8_t *payload = frame + DIRTY_HEADER_SIZE;
	const char *why;

	switch (h->type) {
	case DIRTY_MSG_REQUEST:
		route_request(c, frame, h);
		break;
	case DIRTY_MSG_STATUS:
		if (dirty_validate(payload, h->length, 1, &why) == -1)
			client_protocol_error(c, h->id, why);
		else
			status_reply(c, h->id);
		break;
	case DIRTY_MSG_MANAGE:
		manage_request(c, payload, h);
		break;
	case DIRTY_MSG_STASH:
		if (dirty_validate(payload, h->length, 0, &why) == -1)
			client_protocol_error(c, h->id, why);
		else {
			dirty_stash_handle(payload, h->length, h->id,
			    &c->out.b);
			client_queue_flush(c);
		}
		break;
	default:
		client_protocol_error(c, h->id,
		    "unexpected message type from a client");
		break;
	}
}

/* Handle every complete frame in p[0..len); returns bytes consumed. */
static size_t
client_frames(struct client *c, const uint8_t *p, size_t len)
{
	size_t off = 0;
	struct dirty_header h;
	const char *why;

	while (!c->closing && len - off >= DIRTY_HEADER_SIZE) {
		if (dirty_header_decode(p + off, &h, &why) == -1) {
			client_protocol_error(c,
			    header_readable_id(p + off, len - off), why);
			return len;
		}
		if (len - off - DIRTY_HEADER_SIZE < h.length)
			break;
		client_frame(c, p + off, &h);
		off += DIRTY_HEADER_SIZE + h.length;
	}
	return c->closing ? len : off;
}

static void
client_read(struct client *c)
{
	for (int round = 0; round < 8 && c->fd != -1 && !c->closing; round++) {
		ssize_t n = recv(c->fd, scratch, sizeof(scratch), MSG_DONTWAIT);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			client_close(c);
			return;
		}
		if (n == 0) {
			if (c->in.len > 0) {	/* EOF inside a frame */
				client_protocol_error(c,
				    header_readable_id(c->in.data, c->in.len),
				    "truncated message");
				shutdown(c->fd, SHUT_RD);
				break;
			}
			client_close(c);
			return;
		}
		if (c->in.len == 0) {
			/* the common case: whole frames, no copy */
			size_t used = client_frames(c, scratch, (size_t)n);
			if (!c->closing && used < (size_t)n)
				dirty_buf_append(&c->in, scratch + used,
				    (size_t)n - used);
		} else {
			dirty_buf_append(&c->in, scratch, (size_t)n);
			size_t used = client_frames(c, c->in.data, c->in.len);
			if (!c->closing)
				dirty_buf_consume(&c->in, used);
		}
		if (c->in.len == 0 && c->in.cap > 0)
			dirty_buf_free(&c->in);
		if ((size_t)n < sizeof(scratch))
			break;
	}
	if (c->fd != -1) {
		client_queue_flush(c);
		client_update_events(c);
	}
}

static void
client_flush(struct client *c)
{
	if (c->fd == -1)
		return;
	if (outq_send(c->fd, &c->out) == -1) {
		client_close(c);
		return;
	}
	if (outq_pending(&c->out) > CLIENT_MAX_OUT) {
		log_warnx("dirty: dropping a client that does not read its "
		    "replies");
		client_close(c);
		return;
	}
	if (c->closing && outq_pending(&c->out) == 0) {
		client_close(c);
		return;
	}
	client_update_events(c);
}

/* ---- worker input ---- */

static void
worker_reply(struct worker *w, const uint8_t *frame,
    const struct dirty_header *h)
{
	int final = h->type != DIRTY_MSG_CHUNK;
	struct call *k = call_lookup(h->id);

	if (k == NULL || k->worker != (uint32_t)(w - arb.workers) ||
	    k->worker_gen != w->gen)
		return;		/* timed out or forgotten: drop */
	struct client *c = client_lookup(k->client, k->client_gen);
	if (c != NULL && !c->closing) {
		size_t at = c->out.b.len;
		dirty_buf_append(&c->out.b, frame,
		    DIRTY_HEADER_SIZE + h->length);
		dirty_header_set_id(c->out.b.data + at, k->client_id);
		client_queue_flush(c);
	}
	if (final) {
		w->served++;
		arb.total_served++;
		call_free(k);
	} else
		k->start_ms = monotonic_ms();	/* a stream making progress */
}

/* Handle complete frames from a worker; returns bytes consumed, or
 * (size_t)-1 if the worker misbehaved (and was killed). */
static size_t
worker_frames(struct worker *w, const uint8_t *p, size_t len)
{
	size_t off = 0;
	struct dirty_header h;
	const char *why;

	while (len - off >= DIRTY_HEADER_SIZE) {
		if (dirty_header_decode(p + off, &h, &why) == -1) {
			worker_misbehaved(w, why);
			return (size_t)-1;
		}
		if (len - off - DIRTY_HEADER_SIZE < h.length)
			break;
		const uint8_t *payload = p + off + DIRTY_HEADER_SIZE;
		switch (h.type) {
		case DIRTY_MSG_RESPONSE:
		case DIRTY_MSG_ERROR:
		case DIRTY_MSG_CHUNK:
		case DIRTY_MSG_END:
			if (dirty_validate(payload, h.length,
			    h.type == DIRTY_MSG_END, &why) == -1) {
				worker_misbehaved(w, why);
				return (size_t)-1;
			}
			worker_reply(w, p + off, &h);
			break;
		case DIRTY_MSG_STATUS:
			if (dirty_validate(payload, h.length, 1, &why) == -1) {
				worker_misbehaved(w, why);
				return (size_t)-1;
			}
			if (h.length > 0)
				worker_app_report(w, payload, h.length);
			break;
		default:
			worker_misbehaved(w, "unexpected message type from a "
			    "worker");
			return (size_t)-1;
		}
		off += DIRTY_HEADER_SIZE + h.length;
		if (w->fd == -1)
			return (size_t)-1;
	}
	return off;
}

static void
worker_read(struct worker *w)
{
	for (int round = 0; round < 16 && w->fd != -1; round++) {
		ssize_t n = recv(w->fd, scratch, sizeof(scratch), MSG_DONTWAIT);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			worker_close_channel(w, "connection lost");
			return;
		}
		if (n == 0) {
			worker_close_channel(w, "closed its connection");
			return;
		}
		size_t used;
		if (w->in.len == 0) {
			used = worker_frames(w, scratch, (size_t)n);
			if (used == (size_t)-1)
				return;
			if (used < (size_t)n)
				dirty_buf_append(&w->in, scratch + used,
				    (size_t)n - used);
		} else {
			dirty_buf_append(&w->in, scratch, (size_t)n);
			used = worker_frames(w, w->in.data, w->in.len);
			if (used == (size_t)-1)
				return;
			dirty_buf_consume(&w->in, used);
		}
		if (w->in.len == 0 && w->in.cap > BUF_KEEP)
			dirty_buf_free(&w->in);
		if ((size_t)n < sizeof(scratch))
			return;
	}
}

static void
worker_flush(struct worker *w)
{
	if (w->fd == -1)
		return;
	if (outq_send(w->fd, &w->out) == -1) {
		worker_close_channel(w, "connection lost");
		return;
	}
	worker_update_events(w);
}

static void
flush_all(void)
{
	/* the list may grow while we flush (a closed worker fails calls) */
	for (size_t i = 0; i < arb.nflush; i++) {
		uint64_t key = arb.flush[i];
		uint32_t idx = EV_IDX(key);
		if (EV_KIND(key) == EV_CLIENT) {
			struct client *c = client_lookup(idx, EV_GEN(key));
			if (c != NULL) {
				c->flush_queued = 0;
				client_flush(c);
			}
		} else if (idx < arb.nworkers_slots) {
			struct worker *w = &arb.workers[idx];
			if ((w->gen & 0xffffffu) == EV_GEN(key)) {
				w->flush_queued = 0;
				worker_flush(w);
			}
		}
	}
	arb.nflush = 0;
}

/* ---- timers: timeouts, heartbeats, retirement, shutdown ---- */

static void
parent_died(void)
{
	log_warnx("Parent changed, shutting down dirty arbiter");
	arbiter_exit(0, 1);
}

static void
check_parent(void)
{
	if (getppid() != arb.master_pid)
		parent_died();
}

static void
tick(void)
{
	uint64_t now = monotonic_ms();
	uint64_t timeout = (uint64_t)arb.s->dirty_timeout * 1000u;
	uint64_t grace = (uint64_t)arb.s->dirty_graceful_timeout * 1000u;
	char msg[128];

	if (now - arb.last_ppid_check >= PPID_CHECK_MS) {
		arb.last_ppid_check = now;
		check_parent();
	}
	if (timeout > 0) {
		snprintf(msg, sizeof(msg), "Request timed out after %d seconds",
		    arb.s->dirty_timeout);
		for (uint32_t i = 0; i < arb.ncall_slots; i++) {
			struct call *k = &arb.calls[i];
			if (k->in_use && now - k->start_ms >= timeout) {
				call_cancel_worker(k);
				call_fail(k, DIRTY_E_TIMEOUT, msg);
			}
		}
	}
	for (size_t i = 0; i < arb.nworkers_slots; i++) {
		struct worker *w = &arb.workers[i];
		if (w->state == W_FREE || w->pid <= 0)
			continue;
		if (timeout > 0 && !w->killed && now > *w->heartbeat &&
		    now - *w->heartbeat > timeout) {
			log_errorx("DIRTY WORKER TIMEOUT (pid:%d)", (int)w->pid);
			w->killed = 1;
			worker_close_channel(w, "timed out (no heartbeat)");
			continue;
		}
		if (w->state == W_RETIRING &&
		    (w->inflight == 0 || now - w->retire_ms >= grace))
			worker_term(w);
		if (w->state == W_STOPPING && !w->killed &&
		    now - w->term_ms >= grace) {
			w->killed = 1;
			kill(w->pid, SIGKILL);
		}
	}
	for (size_t i = 0; i < arb.nclient_slots; i++) {
		struct client *c = &arb.clients[i];
		if (c->fd != -1 && c->closing && now >= c->close_deadline)
			client_close(c);
	}
	workers_manage();
}

/* Graceful stop progress: TERM the workers once no call is in flight (or
 * at the deadline), KILL them at the deadline. */
static void
stop_progress(void)
{
	uint64_t now = monotonic_ms();

	if (!arb.stopping)
		return;
	if (!arb.workers_termed &&
	    (arb.total_inflight == 0 || now >= arb.stop_deadline)) {
		arb.workers_termed = 1;
		for (size_t i = 0; i < arb.nworkers_slots; i++)
			if (arb.workers[i].state != W_FREE)
				worker_term(&arb.workers[i]);
	}
	if (now >= arb.stop_deadline) {
		for (size_t i = 0; i < arb.nworkers_slots; i++) {
			struct worker *w = &arb.workers[i];
			if (w->state != W_FREE && w->pid > 0 && !w->killed) {
				w->killed = 1;
				kill(w->pid, SIGKILL);
			}
		}
	}
	if (workers_count() == 0)
		arbiter_exit(0, 0);
}

static void
stop_graceful(void)
{
	if (arb.stopping)
		return;
	log_info("Dirty arbiter shutting down gracefully (pid: %d)", arb.pid);
	arb.stopping = 1;
	arb.stop_deadline = monotonic_ms() +
	    (uint64_t)arb.s->dirty_graceful_timeout * 1000u;
	if (arb.listen_fd != -1) {
		epoll_ctl(arb.epfd, EPOLL_CTL_DEL, arb.listen_fd, NULL);
		close(arb.listen_fd);
		arb.listen_fd = -1;
	}
	for (size_t i = 0; i < arb.nrespawns; i++)
		free(arb.respawns[i].apps);
	arb.nrespawns = 0;
	/* Workers not yet routable-to stop now; the others after their calls. */
	for (size_t i = 0; i < arb.nworkers_slots; i++)
		if (arb.workers[i].state == W_RETIRING)
			worker_term(&arb.workers[i]);
}

/* Exit now: workers are killed and reaped first (never left behind). */
static void
arbiter_exit(int code, int parent_died_)
{
	workers_signal(SIGKILL);
	for (size_t i = 0; i < arb.nworkers_slots; i++) {
		struct worker *w = &arb.workers[i];
		if (w->state != W_FREE && w->pid > 0) {
			while (waitpid(w->pid, NULL, 0) == -1 && errno == EINTR)
				;
			w->pid = 0;
		}
	}
	for (size_t i = 0; i < arb.nclient_slots; i++)
		if (arb.clients[i].fd != -1)
			client_close(&arb.clients[i]);
	dirty_runtime_arbiter_cleanup();
	if (parent_died_)
		dirty_runtime_remove_dirs();
	log_info("Dirty arbiter exiting (pid: %d)", arb.pid);
	/* _exit: never run the master's atexit handlers in this process. */
	_exit(code);
}

/* ---- signals ---- */

static void
on_signal(void)
{
	struct signalfd_siginfo si;

	while (read(arb.signal_fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGCHLD:
			workers_reap();
			if (!arb.stopping)
				workers_manage();
			break;
		case SIGTERM:
			stop_graceful();
			break;
		case SIGINT:
		case SIGQUIT:
			log_info("Dirty arbiter quick shutdown (signal %d)",
			    (int)si.ssi_signo);
			arbiter_exit(0, 0);
			break;
		case SIGHUP:
			if (arb.stopping)
				break;
			log_info("SIGHUP: replacing all dirty workers");
			for (size_t i = 0; i < arb.nworkers_slots; i++)
				worker_retire(&arb.workers[i]);
			workers_manage();
			break;
		case SIGUSR1:
			log_reopen();
			workers_signal(SIGUSR1);
			break;
		case SIGUSR2:	/* PR_SET_PDEATHSIG */
			check_parent();
			break;
		case SIGTTIN:
			if (arb.stopping)
				break;
			arb.target++;
			log_info("SIGTTIN: Increasing dirty workers to %d",
			    arb.target);
			workers_manage();
			break;
		case SIGTTOU:
			if (arb.stopping)
				break;
			if (workers_decrease(1) == 0)
				log_warnx("SIGTTOU: Cannot decrease below %d "
				    "workers (required by app specs)",
				    workers_required());
			else
				log_info("SIGTTOU: Decreasing dirty workers "
				    "to %d", arb.target);
			break;
		}
	}
}

static int
signals_setup(void)
{
	static const int handled[] = { SIGTERM, SIGINT, SIGQUIT, SIGHUP,
	    SIGUSR1, SIGUSR2, SIGTTIN, SIGTTOU, SIGCHLD };
	struct sigaction sa = { .sa_handler = SIG_DFL };
	sigset_t set, all;

	/* Everything stays blocked while dispositions are reset (the master
	 * forked us with all signals blocked). */
	sigfillset(&all);
	sigprocmask(SIG_SETMASK, &all, NULL);
	sigemptyset(&sa.sa_mask);
	for (int sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			sigaction(sig, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);

	sigemptyset(&set);
	for (size_t i = 0; i < sizeof(handled) / sizeof(handled[0]); i++)
		sigaddset(&set, handled[i]);
	arb.signal_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (arb.signal_fd == -1) {
		log_warn("dirty: signalfd");
		return -1;
	}
	sigprocmask(SIG_SETMASK, &set, NULL);
	return 0;
}

/* ---- the arbiter process ---- */

static void __attribute__((noreturn))
arbiter_main(struct settings *s, pid_t master_pid)
{
	int keep[1] = { log_error_fd() };
	struct epoll_event evs[64];

	close_fds_except(keep, 1);
	log_reopen();

	memset(&arb, 0, sizeof(arb));
	arb.s = s;
	arb.pid = getpid();
	arb.master_pid = master_pid;
	arb.listen_fd = arb.signal_fd = arb.pid_fd = arb.timer_fd = -1;
	arb.target = s->dirty_workers;

	if (signals_setup() == -1)
		_exit(1);
	prctl(PR_SET_PDEATHSIG, SIGUSR2);
	proctitle_set("%s: dirty-arbiter [%s]", proctitle_prog(),
	    settings_proc_name(s));
	log_info("Dirty arbiter starting (pid: %d)", (int)arb.pid);

	arb.pid_fd = (int)syscall(SYS_pidfd_open, master_pid, 0);
	if (arb.pid_fd == -1)
		log_debug("dirty: pidfd_open: %s (using getppid() checks)",
		    strerror(errno));
	else
		fd_set_cloexec(arb.pid_fd, 1);
	if (getppid() != master_pid) {	/* died before pidfd/prctl */
		log_warnx("Parent changed, shutting down dirty arbiter");
		dirty_runtime_remove_dirs();
		_exit(0);
	}

	if ((arb.lock_fd = dirty_runtime_lock_pidfile()) == -1)
		_exit(1);
	/* From here on the pid file and the socket are ours: every exit
	 * goes through arbiter_exit(), which removes them (and reaps). */
	if ((arb.listen_fd = dirty_runtime_listen(s)) == -1)
		arbiter_exit(1, 0);
	if ((arb.epfd = epoll_create1(EPOLL_CLOEXEC)) == -1) {
		log_warn("dirty: epoll_create1");
		arbiter_exit(1, 0);
	}
	arb.timer_fd = timerfd_create(CLOCK_MONOTONIC,
	    TFD_NONBLOCK | TFD_CLOEXEC);
	if (arb.timer_fd == -1) {
		log_warn("dirty: timerfd_create");
		arbiter_exit(1, 0);
	}
	struct itimerspec its = {
		.it_interval = { 0, TICK_MS * 1000000L },
		.it_value = { 0, TICK_MS * 1000000L },
	};
	timerfd_settime(arb.timer_fd, 0, &its, NULL);
	if (ep_add(arb.listen_fd, EPOLLIN, EV_KEY(EV_LISTEN, 0, 0)) == -1 ||
	    ep_add(arb.signal_fd, EPOLLIN, EV_KEY(EV_SIGNAL, 0, 0)) == -1 ||
	    ep_add(arb.timer_fd, EPOLLIN, EV_KEY(EV_TIMER, 0, 0)) == -1 ||
	    (arb.pid_fd != -1 &&
	    ep_add(arb.pid_fd, EPOLLIN, EV_KEY(EV_PIDFD, 0, 0)) == -1))
		arbiter_exit(1, 0);
	arb.last_ppid_check = monotonic_ms();

	apps_parse();
	dirty_stash_init();
	dirty_stash_set_max_bytes((uint64_t)s->dirty_stash_max_bytes);
	workers_manage();

	for (;;) {
		int n = epoll_wait(arb.epfd, evs, 64, -1);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			log_warn("dirty: epoll_wait");
			arbiter_exit(1, 0);
		}
		for (int i = 0; i < n; i++) {
			uint64_t key = evs[i].data.u64;
			uint32_t idx = EV_IDX(key);
			switch (EV_KIND(key)) {
			case EV_LISTEN:
				if (arb.listen_fd != -1)
					client_accept();
				break;
			case EV_SIGNAL:
				on_signal();
				break;
			case EV_PIDFD:
				parent_died();
				break;
			case EV_TIMER: {
				uint64_t ticks;
				while (read(arb.timer_fd, &ticks,
				    sizeof(ticks)) > 0)
					;
				tick();
				break;
			}
			case EV_CLIENT: {
				struct client *c = client_lookup(idx,
				    EV_GEN(key));
				if (c == NULL)
					break;
				if ((evs[i].events & EPOLLERR) ||
				    (c->closing && (evs[i].events & EPOLLHUP))) {
					client_close(c);
					break;
				}
				if (evs[i].events & EPOLLOUT)
					client_flush(c);
				if (c->fd != -1 && (evs[i].events &
				    (EPOLLIN | EPOLLHUP | EPOLLERR)))
					client_read(c);
				break;
			}
			case EV_WORKER: {
				if (idx >= arb.nworkers_slots)
					break;
				struct worker *w = &arb.workers[idx];
				if (w->state == W_FREE || w->fd == -1 ||
				    (w->gen & 0xffffffu) != EV_GEN(key))
					break;
				if (evs[i].events & EPOLLOUT)
					worker_flush(w);
				if (w->fd != -1 && (evs[i].events &
				    (EPOLLIN | EPOLLHUP | EPOLLERR)))
					worker_read(w);
				break;
			}
			}
		}
		flush_all();
		if (arb.manage_pending) {
			arb.manage_pending = 0;
			workers_manage();
		}
		stop_progress();
	}
}

pid_t
dirty_arbiter_spawn(struct settings *s, pid_t master_pid)
{
	pid_t pid;

	log_info("Spawning dirty arbiter");
	pid = fork();
	if (pid == -1) {
		log_warn("cannot fork the dirty arbiter");
		return -1;
	}
	if (pid == 0)
		arbiter_main(s, master_pid);
	log_info("Spawned dirty arbiter (pid: %d) at %s", (int)pid,
	    dirty_socket_path() != NULL ? dirty_socket_path() : "?");
	return pid;
}
