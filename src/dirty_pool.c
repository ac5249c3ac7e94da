/*
 * dirty_pool.c — the dirty arbiter's table of dirty workers: spawning
 * them (fork, socketpair, shared heartbeat slot, privileges), reaping and
 * replacing them (with a brake on crash loops), heartbeats and graceful
 * retirement, which apps each one loads, scaling by TTIN/TTOU/MANAGE
 * (the MANAGE and STATUS replies themselves are dirty_control.c's), and
 * reading the workers' channels.  It owns arbiter.apps, arbiter.workers
 * and arbiter.respawns (dirty_arbiter_int.h).  The arbiter NEVER calls
 * Python: the workers it forks do (dirty_worker.c).
 *
 * Dirty workers: spawned (spawn.c) with a socketpair end, a MAP_SHARED
 * heartbeat slot and their app list; in the child every other descriptor
 * is closed, PR_SET_PDEATHSIG(SIGKILL) is set (with the getppid() race
 * check), the title set, the privileges dropped to the user/group
 * settings, then dirty_worker_main() runs.  The arbiter itself keeps the
 * master's user.
 *
 * Trust: a malformed frame from a worker gets the worker killed and
 * replaced (worker_misbehaved()); the arbiter carries on.
 *
 * Per-app allocation: "module:Class:N" in dirty_apps limits the app to N
 * workers; others go to every worker.  A class attribute `workers = N`
 * needs Python to read, so the worker reports it: once it has imported
 * its apps' classes, before it makes and init()s any, a dirty worker
 * sends a STATUS frame with id 0 and the payload {"app_workers":
 * {"module:Class": N, ...}} (empty when no class says).  For apps without
 * a config limit the arbiter adopts N.  Until a first report, while some
 * app has no config limit (limits_pending), the arbiter runs ONE worker:
 * the others are spawned once the limits are known, each with its share,
 * so an app whose class says `workers = 1` is never init()ed in more than
 * one worker — a model is loaded where gunicorn's arbiter, which reads
 * the class itself, would load it, never in every worker for a moment.
 * (A report that lowers a limit later, from a worker whose app changed
 * under --reload, still replaces the workers beyond N, newest first, by
 * workers without it.)
 */
#include "dirty.h"
#include "dirty_arbiter_int.h"
#include "dirty_wire.h"
#include "log.h"
#include "spawn.h"
#include "settings.h"
#include "util.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>

#define RESPAWN_DELAY_MS	1000	/* a worker that died younger than this */
/* Requests queued in the arbiter for one worker (not yet written to its
 * socket) are bounded: past this, a new request goes to another worker
 * having the app, or is answered DirtyNoWorkersAvailableError.  So one
 * client pipelining large requests to a busy worker cannot grow the
 * arbiter without bound (at most this plus one frame per worker). */
#define WORKER_MAX_OUT		(64u * 1024 * 1024)
/* Per worker, shared: [0] its heartbeat, [1..DIRTY_CANCEL_SLOTS] the ids
 * of its calls whose caller went away (dirty.h). */
#define SHARED_SIZE		((1 + DIRTY_CANCEL_SLOTS) * sizeof(uint64_t))

/* ---- apps ---- */

void
apps_parse(void)
{
	const struct strlist *l = &arbiter.s->dirty_apps;

	arbiter.apps = xcalloc(l->len ? l->len : 1, sizeof(*arbiter.apps));
	for (size_t i = 0; i < l->len; i++) {
		const char *spec = l->items[i];
		size_t path_len;
		int limit;

		/* malformed entries were refused by the settings check */
		(void)dirty_app_spec_split(spec, &path_len, &limit);
		char *path = xasprintf("%.*s", (int)path_len, spec);
		size_t j;
		for (j = 0; j < arbiter.napps; j++)
			if (strcmp(arbiter.apps[j].path, path) == 0)
				break;
		if (j < arbiter.napps) {	/* listed twice: the last one wins */
			free(path);
			arbiter.apps[j].limit = arbiter.apps[j].config_limit = limit;
			continue;
		}
		arbiter.apps[arbiter.napps].path = path;
		arbiter.apps[arbiter.napps].limit = limit;
		arbiter.apps[arbiter.napps].config_limit = limit;
		arbiter.napps++;
	}
	for (size_t i = 0; i < arbiter.napps; i++)
		if (arbiter.apps[i].config_limit == 0)
			arbiter.limits_pending = 1;
}

int
app_find(const char *name, size_t n)
{
	for (size_t i = 0; i < arbiter.napps; i++)
		if (strlen(arbiter.apps[i].path) == n &&
		    memcmp(arbiter.apps[i].path, name, n) == 0)
			return (int)i;
	return -1;
}

/* Fewest workers TTOU/MANAGE may leave: the largest per-app limit. */
int
workers_required(void)
{
	int req = 1;

	for (size_t i = 0; i < arbiter.napps; i++)
		if (arbiter.apps[i].limit > req)
			req = arbiter.apps[i].limit;
	return req;
}

/* Most dirty workers MANAGE add and TTIN may ask for: 16 per configured
 * worker, at most 1024 -- but never fewer than the configuration itself
 * asks for (dirty_workers, the largest per-app limit).  Each is a Python
 * process; without a ceiling a client of the socket could fork the
 * machine to death, 1024 at a time. */
int
workers_ceiling(void)
{
	int configured = arbiter.s->dirty_workers;
	int c = configured > 1024 / 16 ? 1024 : configured * 16;

	if (c < configured)
		c = configured;
	if (c < workers_required())
		c = workers_required();
	return c;
}

/* ---- workers ---- */

static int worker_on_frame(struct dirty_peer *, const struct dirty_header *,
    const uint8_t *);

static const struct dirty_peer_ops worker_ops = {
	.kind = EV_WORKER,
	.read_rounds = 16,
	.in_keep = 256 * 1024,
	.frame = worker_on_frame,
	.flush = worker_flush,
};

static struct worker *
worker_of(struct dirty_peer *p)
{
	return &arbiter.workers[p->idx];
}

/* The worker peer an event key names (a closed channel included: its
 * flush is then a no-op), or NULL. */
struct dirty_peer *
worker_peer(uint32_t idx, uint32_t gen)
{
	if (idx >= arbiter.nworkers_slots)
		return NULL;
	struct worker *w = &arbiter.workers[idx];
	if (w->state == W_FREE || (w->peer.gen & 0xffffffu) != (gen & 0xffffffu))
		return NULL;
	return &w->peer;
}

static void
worker_update_events(struct worker *w)
{
	if (w->peer.fd != -1)
		dirty_peer_watch(&w->peer, 1);
}

/* ---- the router's side: hooks, picking, forwarding, call counts ---- */

static const struct pool_hooks *hooks;

void
pool_set_hooks(const struct pool_hooks *h)
{
	hooks = h;
}

/* The next live worker having the app whose queue has room (round
 * robin); NULL if none, with *full set when some had the app but a full
 * queue (WORKER_MAX_OUT). */
struct worker *
pool_pick(size_t app, int *full)
{
	size_t n = arbiter.nworkers_slots;

	*full = 0;
	for (size_t k = 0; k < n; k++) {
		size_t i = (arbiter.apps[app].rr + k) % n;
		struct worker *w = &arbiter.workers[i];
		if (w->state == W_ALIVE && w->peer.fd != -1 && w->apps[app]) {
			if (dirty_peer_pending(&w->peer) >= WORKER_MAX_OUT) {
				*full = 1;
				continue;
			}
			arbiter.apps[app].rr = (uint32_t)(i + 1);
			return w;
		}
	}
	return NULL;
}

/* Queue a request frame for w with the arbiter's id in place of the
 * client's; one more call in flight on w.  Returns the frame's offset
 * in w's stream. */
uint64_t
worker_forward(struct worker *w, const uint8_t *frame, size_t len,
    uint64_t id)
{
	size_t at = w->peer.out.len;
	uint64_t wire_at = dirty_peer_out_end(&w->peer);

	dirty_buf_append(&w->peer.out, frame, len);
	dirty_header_set_id(w->peer.out.data + at, id);
	dirty_peer_queue_flush(&w->peer);
	w->inflight++;
	return wire_at;
}

/* The worker of a call, if it is still the same one. */
static struct worker *
worker_of_call(uint32_t idx, uint32_t gen)
{
	if (idx >= arbiter.nworkers_slots)
		return NULL;
	struct worker *w = &arbiter.workers[idx];
	if (w->state == W_FREE || w->peer.gen != gen)
		return NULL;
	return w;
}

/* A call on worker (idx, gen) ended; answered: with its final reply. */
void
worker_call_ended(uint32_t idx, uint32_t gen, int answered)
{
	struct worker *w = worker_of_call(idx, gen);

	if (w == NULL)
		return;
	if (w->inflight > 0)
		w->inflight--;
	if (answered)
		w->served++;
}

/* Tell worker (idx, gen) to stop producing for call id (dirty.h: the
 * cancel ring it reads). */
void
worker_cancel_call(uint32_t idx, uint32_t gen, uint64_t id)
{
	struct worker *w = worker_of_call(idx, gen);

	if (w == NULL || w->heartbeat == NULL)
		return;
	__atomic_store_n(&w->heartbeat[1 + w->cancel_pos % DIRTY_CANCEL_SLOTS],
	    id, __ATOMIC_RELEASE);
	w->cancel_pos++;
}

static struct worker *
worker_slot(void)
{
	size_t i;

	for (i = 0; i < arbiter.nworkers_slots; i++)
		if (arbiter.workers[i].state == W_FREE)
			return &arbiter.workers[i];
	size_t n = arbiter.nworkers_slots ? arbiter.nworkers_slots * 2 : 8;
	arbiter.workers = xreallocarray(arbiter.workers, n, sizeof(*arbiter.workers));
	memset(arbiter.workers + arbiter.nworkers_slots, 0,
	    (n - arbiter.nworkers_slots) * sizeof(*arbiter.workers));
	for (size_t j = arbiter.nworkers_slots; j < n; j++)
		dirty_peer_init(&arbiter.workers[j].peer, &worker_ops, (uint32_t)j);
	arbiter.nworkers_slots = n;
	return &arbiter.workers[i];
}

/* Apps a brand-new worker loads: every unlimited app, and each limited
 * app that fewer than `limit` routable (or about to respawn) workers
 * have. */
static void
worker_allocate(unsigned char *apps)
{
	for (size_t i = 0; i < arbiter.napps; i++) {
		int have = 0;
		if (arbiter.apps[i].limit == 0) {
			apps[i] = 1;
			continue;
		}
		for (size_t j = 0; j < arbiter.nworkers_slots; j++)
			if (arbiter.workers[j].state == W_ALIVE &&
			    arbiter.workers[j].apps[i])
				have++;
		for (size_t j = 0; j < arbiter.nrespawns; j++)
			if (arbiter.respawns[j].apps[i])
				have++;
		apps[i] = have < arbiter.apps[i].limit;
	}
}

/* What a dirty worker child needs from the arbiter (on the arbiter's
 * stack: the child has its copy). */
struct worker_boot {
	int fd;				/* its socketpair end */
	volatile uint64_t *heartbeat;
	const unsigned char *apps;	/* arbiter.napps flags */
	int age;
};

/* The dirty worker child, once spawn_process() made it one (only its
 * socketpair end and the error log held, PR_SET_PDEATHSIG(SIGKILL): it
 * dies with the arbiter even when frozen, privileges dropped like an HTTP
 * worker's). */
static void __attribute__((noreturn))
worker_child(void *arg)
{
	struct worker_boot *b = arg;
	struct dirty_worker_ctx ctx;

	memset(&ctx, 0, sizeof(ctx));
	ctx.cfg = arbiter.s;
	ctx.fd = b->fd;
	ctx.apps = xcalloc(arbiter.napps + 1, sizeof(char *));
	for (size_t i = 0; i < arbiter.napps; i++)
		if (b->apps[i])
			ctx.apps[ctx.napps++] = arbiter.apps[i].path;
	ctx.heartbeat = b->heartbeat;
	ctx.cancel = b->heartbeat + 1;
	ctx.arbiter_pid = arbiter.pid;
	ctx.age = b->age;
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
	arbiter.age++;
	struct worker_boot boot = {
		.fd = sv[1], .heartbeat = hb, .apps = apps, .age = arbiter.age,
	};
	pid = spawn_process(&(struct spawn_spec){
		.role = "dirty-worker",
		.cfg = arbiter.s,
		.parent = arbiter.pid,
		.close_all = 1,
		.keep_fds = &boot.fd,
		.nkeep_fds = 1,
		.python = 1,
		.parent_death_signal = SIGKILL,
		.drop_privileges = 1,
		.boot_error = 1,
		.main = worker_child,
		.arg = &boot,
	});
	if (pid == -1) {
		log_warn("dirty: fork");
		close(sv[0]);
		close(sv[1]);
		munmap((void *)hb, SHARED_SIZE);
		return -1;
	}
	close(sv[1]);
	fd_set_nonblock(sv[0], 1);

	w = worker_slot();
	struct dirty_peer peer = w->peer;
	memset(w, 0, sizeof(*w));
	w->peer = peer;
	w->peer.gen++;
	w->state = W_ALIVE;
	w->pid = pid;
	w->apps = xmalloc(arbiter.napps ? arbiter.napps : 1);
	memcpy(w->apps, apps, arbiter.napps);
	w->heartbeat = hb;
	w->age = arbiter.age;
	w->spawned_ms = monotonic_ms();
	if (dirty_peer_open(&w->peer, sv[0]) == -1)
		kill(pid, SIGKILL);
	if (log_get_level() <= LOG_DEBUG) {
		for (size_t i = 0; i < arbiter.napps; i++)
			if (apps[i])
				log_debug("dirty worker %d loads %s", (int)pid,
				    arbiter.apps[i].path);
	}
	log_info("Spawned dirty worker (pid: %d)", (int)pid);
	return 0;
}

static int
workers_routable(void)
{
	int n = 0;

	for (size_t i = 0; i < arbiter.nworkers_slots; i++)
		if (arbiter.workers[i].state == W_ALIVE)
			n++;
	return n;
}

/* Start workers until routable + pending respawns reach the target. */
void
workers_manage(void)
{
	uint64_t now = monotonic_ms();

	if (arbiter.stopping)
		return;
	for (size_t i = 0; i < arbiter.nrespawns;) {
		if (arbiter.respawns[i].due_ms <= now) {
			unsigned char *apps = arbiter.respawns[i].apps;
			arbiter.respawns[i] = arbiter.respawns[--arbiter.nrespawns];
			worker_spawn(apps);
			free(apps);
		} else
			i++;
	}
	int have = workers_routable() + (int)arbiter.nrespawns;
	/* the class limits unknown: the first worker alone reports them */
	int target = arbiter.limits_pending && arbiter.target > 1 ? 1 :
	    arbiter.target;
	unsigned char *apps = xmalloc(arbiter.napps ? arbiter.napps : 1);
	for (; have < target; have++) {
		worker_allocate(apps);
		if (worker_spawn(apps) == -1)
			break;
	}
	free(apps);
}

/* Up the target by up to n, never above the ceiling; how many. */
int
workers_increase(int n)
{
	int room = workers_ceiling() - arbiter.target;
	int done = room <= 0 ? 0 : n < room ? n : room;

	arbiter.target += done;
	return done;
}

/* SIGHUP: replace every worker. */
void
workers_retire_all(void)
{
	for (size_t i = 0; i < arbiter.nworkers_slots; i++)
		worker_retire(&arbiter.workers[i]);
}

/* Graceful stop: TERM the retiring workers (only_retiring), or all. */
void
workers_stop(int only_retiring)
{
	for (size_t i = 0; i < arbiter.nworkers_slots; i++) {
		struct worker *w = &arbiter.workers[i];
		if (w->state == W_FREE ||
		    (only_retiring && w->state != W_RETIRING))
			continue;
		worker_term(w);
	}
}

/* The graceful stop's deadline: KILL every worker still there. */
void
workers_kill(void)
{
	for (size_t i = 0; i < arbiter.nworkers_slots; i++) {
		struct worker *w = &arbiter.workers[i];
		if (w->state != W_FREE && w->pid > 0 && !w->killed) {
			w->killed = 1;
			kill(w->pid, SIGKILL);
		}
	}
}

/* The arbiter's exit: wait for every worker (signalled already). */
void
workers_wait(void)
{
	for (size_t i = 0; i < arbiter.nworkers_slots; i++) {
		struct worker *w = &arbiter.workers[i];
		if (w->state != W_FREE && w->pid > 0) {
			while (waitpid(w->pid, NULL, 0) == -1 && errno == EINTR)
				;
			w->pid = 0;
		}
	}
}

/* End of a round: the workers_manage() a worker's report asked for. */
void
workers_manage_pending(void)
{
	if (arbiter.manage_pending) {
		arbiter.manage_pending = 0;
		workers_manage();
	}
}

/* Graceful stop: no more respawns. */
void
workers_stop_respawns(void)
{
	for (size_t i = 0; i < arbiter.nrespawns; i++)
		free(arbiter.respawns[i].apps);
	arbiter.nrespawns = 0;
}

/* Stop routing to w; TERM it once its calls are done. */
void
worker_retire(struct worker *w)
{
	if (w->state != W_ALIVE)
		return;
	w->state = W_RETIRING;
	w->retire_ms = monotonic_ms();
}

void
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

	for (size_t i = 0; i < arbiter.nworkers_slots; i++) {
		struct worker *w = &arbiter.workers[i];
		int limited = 0;
		if (w->state != W_ALIVE)
			continue;
		for (size_t j = 0; j < arbiter.napps; j++)
			if (w->apps[j] && arbiter.apps[j].limit > 0)
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
int
workers_decrease(int n)
{
	int removed = 0;

	while (removed < n && arbiter.target > workers_required()) {
		arbiter.target--;
		removed++;
		struct worker *w = worker_pick_victim();
		if (w != NULL && workers_routable() > arbiter.target)
			worker_retire(w);
	}
	return removed;
}

/* The worker's channel is gone (EOF, error, misbehaviour, timeout): its
 * calls are failed at once, or routed again when it never had their
 * request whole (the router decides, from the output never sent, taken
 * before the peer is closed); make sure the process dies. */
static void
worker_close_channel(struct worker *w, const char *why)
{
	char msg[128];
	struct buf unsent = w->peer.out;
	size_t off = w->peer.out_off;
	uint64_t at = w->peer.out_sent;

	buf_init(&w->peer.out);
	dirty_peer_close(&w->peer);
	if (w->pid > 0 && !w->reaped)	/* unreaped: the pid is still its own */
		kill(w->pid, SIGKILL);
	if (w->inflight > 0) {
		snprintf(msg, sizeof(msg), "Dirty worker (pid: %d) %s",
		    (int)w->pid, why);
		hooks->lost(w, msg, unsent.data != NULL ? unsent.data + off :
		    NULL, unsent.len - off, at);
	}
	buf_free(&unsent);
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
	for (size_t i = 0; i < arbiter.nworkers_slots; i++)
		if (arbiter.workers[i].state != W_FREE && arbiter.workers[i].pid == pid)
			return &arbiter.workers[i];
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
	if (w->peer.fd != -1 || w->inflight > 0)
		worker_close_channel(w, why);
	if (w->state == W_ALIVE && !arbiter.stopping) {
		log_warnx("Dirty worker (pid: %d) %s, spawning a replacement "
		    "with the same apps", (int)w->pid, why);
		if (arbiter.nrespawns % 8 == 0)
			arbiter.respawns = xreallocarray(arbiter.respawns,
			    arbiter.nrespawns + 8, sizeof(*arbiter.respawns));
		struct respawn *r = &arbiter.respawns[arbiter.nrespawns++];
		r->apps = w->apps;
		w->apps = NULL;
		/* Workers dying right after their start one after another
		 * (import error, crash at boot) are not restarted in a tight
		 * loop: the second young death within 5 s waits a second. */
		r->due_ms = now;
		if (now - w->spawned_ms < RESPAWN_DELAY_MS) {
			if (arbiter.last_young_death != 0 &&
			    now - arbiter.last_young_death < 5 * RESPAWN_DELAY_MS)
				r->due_ms = now + RESPAWN_DELAY_MS;
			arbiter.last_young_death = now;
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

void
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

int
workers_count(void)
{
	int n = 0;

	for (size_t i = 0; i < arbiter.nworkers_slots; i++)
		if (arbiter.workers[i].state != W_FREE)
			n++;
	return n;
}

void
workers_signal(int sig)
{
	for (size_t i = 0; i < arbiter.nworkers_slots; i++)
		if (arbiter.workers[i].state != W_FREE && arbiter.workers[i].pid > 0)
			kill(arbiter.workers[i].pid, sig);
}

/* ---- class-level `workers = N` reported by a worker ---- */

static void
apply_class_limit(size_t app, int limit)
{
	int have = 0;

	if (arbiter.apps[app].config_limit > 0 || limit <= 0 ||
	    arbiter.apps[app].limit == limit)
		return;
	arbiter.apps[app].limit = limit;
	log_info("dirty app %s: class attribute workers = %d",
	    arbiter.apps[app].path, limit);
	for (size_t i = 0; i < arbiter.nworkers_slots; i++)
		if (arbiter.workers[i].state == W_ALIVE && arbiter.workers[i].apps[app])
			have++;
	/* Replace the extra ones, newest first, by workers without it. */
	while (have > limit) {
		struct worker *newest = NULL;
		for (size_t i = 0; i < arbiter.nworkers_slots; i++) {
			struct worker *w = &arbiter.workers[i];
			if (w->state == W_ALIVE && w->apps[app] &&
			    (newest == NULL || w->age > newest->age))
				newest = w;
		}
		worker_retire(newest);
		have--;
	}
	/* Not workers_manage() here: spawning may move arbiter.workers while
	 * our caller still holds a pointer into it. */
	arbiter.manage_pending = 1;
}

static void
worker_app_report(struct worker *w, const uint8_t *p, size_t len)
{
	struct dirty_cursor c;
	const char *why;
	uint32_t n;

	if (arbiter.limits_pending) {	/* its report came: the others may */
		arbiter.limits_pending = 0;
		arbiter.manage_pending = 1;
	}
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

/* ---- worker input ---- */

/* One whole frame from w (its peer's on-frame callback): -1 if the
 * worker misbehaved (and was killed) or its channel closed. */
static int
worker_on_frame(struct dirty_peer *p, const struct dirty_header *h,
    const uint8_t *frame)
{
	struct worker *w = worker_of(p);
	const uint8_t *payload = frame + DIRTY_HEADER_SIZE;
	const char *why;

	switch (h->type) {
	case DIRTY_MSG_RESPONSE:
	case DIRTY_MSG_ERROR:
	case DIRTY_MSG_CHUNK:
	case DIRTY_MSG_END:
		if (dirty_validate(payload, h->length,
		    h->type == DIRTY_MSG_END, &why) == -1) {
			worker_misbehaved(w, why);
			return -1;
		}
		hooks->reply(w, frame, h);
		break;
	case DIRTY_MSG_STATUS:
		if (dirty_validate(payload, h->length, 1, &why) == -1) {
			worker_misbehaved(w, why);
			return -1;
		}
		if (h->length > 0)
			worker_app_report(w, payload, h->length);
		break;
	default:
		worker_misbehaved(w, "unexpected message type from a worker");
		return -1;
	}
	return w->peer.fd == -1 ? -1 : 0;
}

void
worker_read(struct worker *w)
{
	const char *why = NULL;

	switch (dirty_peer_read(&w->peer, &why)) {
	case PEER_READ_DONE:
	case PEER_READ_STOPPED:
		break;
	case PEER_READ_BAD:
		worker_misbehaved(w, why);
		break;
	case PEER_READ_EOF:
		worker_close_channel(w, "closed its connection");
		break;
	case PEER_READ_LOST:
		worker_close_channel(w, "connection lost");
		break;
	}
}

void
worker_flush(struct dirty_peer *p)
{
	struct worker *w = worker_of(p);

	if (w->peer.fd == -1)
		return;
	if (dirty_peer_send(&w->peer) == -1) {
		worker_close_channel(w, "connection lost");
		return;
	}
	worker_update_events(w);
}

/* ---- heartbeats and retirement ---- */

/* Every tick: kill a worker whose heartbeat is older than the
 * dirty_timeout (ms; 0: none), TERM a retiring one once idle or after
 * the graceful timeout, KILL a stopping one after it.  Ages are
 * ms_since(): worker_term() stamps term_ms with a fresh clock, a hair
 * after `now`, and a wrapped difference KILLed a worker TERMed that very
 * tick, before its apps' close() and the dirty_worker_exit hook ran. */
void
workers_tick(uint64_t now, uint64_t timeout, uint64_t grace)
{
	for (size_t i = 0; i < arbiter.nworkers_slots; i++) {
		struct worker *w = &arbiter.workers[i];
		if (w->state == W_FREE || w->pid <= 0)
			continue;
		if (timeout > 0 && !w->killed &&
		    ms_since(now, *w->heartbeat) > timeout) {
			log_errorx("DIRTY WORKER TIMEOUT (pid:%d)", (int)w->pid);
			w->killed = 1;
			worker_close_channel(w, "timed out (no heartbeat)");
			continue;
		}
		if (w->state == W_RETIRING &&
		    (w->inflight == 0 || ms_since(now, w->retire_ms) >= grace))
			worker_term(w);
		if (w->state == W_STOPPING && !w->killed &&
		    ms_since(now, w->term_ms) >= grace) {
			w->killed = 1;
			kill(w->pid, SIGKILL);
		}
	}
}
