/*
 * dirty_arbiter_int.h — state shared by the files of the dirty arbiter
 * process; internal to them, included by nothing else.  Who calls whom
 * (one way only):
 *
 *   dirty_arbiter.c  the role: fork, signals, parent death, the epoll
 *                    loop and its timer, graceful and quick shutdown.
 *    -> dirty_route.c  client connections and their requests: routing
 *                    (id rewriting), stash, STATUS and MANAGE passed on,
 *                    call timeouts, replies back to clients, client
 *                    protocol errors.
 *        -> dirty_calls.c  the table of calls in flight (client <-> worker).
 *        -> dirty_control.c  the STATUS and MANAGE replies (reads the
 *                    pool, scales it through dirty_pool.c).
 *        -> dirty_pool.c   the table of dirty workers: spawn, reap,
 *                    respawn throttle, heartbeats, per-app allocation,
 *                    picking one for a call, TTIN/TTOU/MANAGE scaling,
 *                    worker input.  It
 *                    hands replies and lost channels to the router
 *                    through the hooks the router sets (pool_hooks), and
 *                    never calls it otherwise.
 *        -> dirty_stash.c  the stash requests (-> dirty_stash_table.c,
 *                    its tables).
 *            -> dirty_peer.c  clients' and workers' sockets: reading
 *                    frames, output queues, epoll, the flush list.
 *                -> dirty_wire.c  the codec.
 *
 * There is one arbiter per process and one thread, so the state is one
 * struct, `arbiter`, defined in dirty_arbiter.c; its fields are grouped below
 * by the file that owns (allocates, frees, changes) them.  The others
 * only read them; a change goes through the owner's functions.
 *
 * Nothing here, nor in the three files, ever calls Python: the dirty
 * workers forked by dirty_pool.c do (dirty_worker.c).
 */
#ifndef DIRTY_ARBITER_INT_H
#define DIRTY_ARBITER_INT_H

#include "dirty.h"
#include "dirty_peer.h"
#include "dirty_wire.h"
#include "settings.h"

#include <stdint.h>
#include <sys/types.h>

/* These names are the arbiter's own: never in the dynamic symbol table
 * (the binary is linked --export-dynamic for extension modules). */
#pragma GCC visibility push(hidden)

struct client {
	struct dirty_peer peer;	/* first: a client is its peer */
	uint32_t ncalls;	/* calls in flight */
	int closing;		/* close once out is flushed */
	uint64_t close_deadline;
	size_t counted;		/* its unread output in arbiter.clients_out */
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
	struct dirty_peer peer;	/* its socketpair end; fd -1 once closed */
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
};

struct app {
	char *path;		/* "module:Class" */
	int limit;		/* workers that load it; 0 = all */
	int config_limit;	/* the ":N" of dirty_apps, wins over the class */
	uint32_t rr;		/* round-robin cursor */
};

struct respawn {
	unsigned char *apps;
	uint64_t due_ms;
};

/*
 * The arbiter's state.  Owners: dirty_arbiter.c sets it up in
 * arbiter_main() and owns the descriptors and the
 * shutdown fields; dirty_pool.c owns the apps, the worker table and the
 * respawns; dirty_route.c owns the clients (the calls are
 * dirty_calls.c's own).
 */
struct arbiter_state {
	/* dirty_arbiter.c */
	struct settings *s;
	pid_t pid, master_pid;
	int epfd, listen_fd, signal_fd, pid_fd, timer_fd, lock_fd;

	/* dirty_pool.c */
	struct app *apps;
	size_t napps;

	/* dirty_pool.c (a worker's inflight and served change through
	 * worker_forward() and worker_call_ended()) */
	struct worker *workers;
	size_t nworkers_slots;
	int target;		/* how many routable workers we want */
	int age;

	/* dirty_route.c */
	struct client *clients;
	size_t nclient_slots;
	size_t nclients;
	size_t clients_out;	/* every client's unread output (their counted) */
	size_t client_max_out, clients_max_out;	/* the caps, see route_setup */

	/* dirty_pool.c; stop_graceful() drops them through
	 * workers_stop_respawns() */
	struct respawn *respawns;
	size_t nrespawns;

	/* dirty_arbiter.c: accepts paused after an accept error (EMFILE,
	 * ENFILE, ENOBUFS...): the listener is out of the epoll set until
	 * accept_resume_ms; one log line per episode (until an accept
	 * succeeds), the pause doubling from 100 ms to 1 s */
	int listen_paused;
	int accept_episode;
	uint64_t accept_resume_ms;
	uint64_t accept_pause_ms;
	uint64_t accept_failures;

	/* dirty_arbiter.c, read by the others */
	int stopping;		/* graceful: TERM received */
	uint64_t stop_deadline;
	int workers_termed;
	uint64_t last_ppid_check;
	/* dirty_pool.c */
	uint64_t last_young_death;	/* crash-loop brake, see worker_reaped */
	int manage_pending;	/* run workers_manage() at the end of the round */
	int limits_pending;	/* an app's class `workers = N` is not known
				 * yet: one worker at a time until a worker
				 * reports (dirty_pool.c) */
};

extern struct arbiter_state arbiter;

/* dirty_route.c: clients, routing, replies */
void	 route_setup(void);
struct client	*client_lookup(uint32_t, uint32_t);
void	 client_queue_flush(struct client *);
void	 client_open(int);
void	 client_close(struct client *);
void	 client_send_error(struct client *, uint64_t, const char *,
	    const char *);
void	 client_protocol_error(struct client *, uint64_t, const char *);
void	 client_read(struct client *);
struct dirty_peer *client_peer(uint32_t, uint32_t);
void	 calls_expire(uint64_t, uint64_t);
void	 clients_expire(uint64_t);

/* dirty_pool.c: what the router hands it (set once, at start) */
struct pool_hooks {
	/* a RESPONSE, ERROR, CHUNK or END frame from w, validated */
	void (*reply)(struct worker *w, const uint8_t *frame,
	    const struct dirty_header *h);
	/* w's channel is gone with calls in flight: fail them (msg), or
	 * route again those whose request w never had whole: the bytes
	 * never handed to the kernel, [0, unsent_len) at stream offset
	 * unsent_at (dirty_peer.out_sent) */
	void (*lost)(struct worker *w, const char *msg,
	    const uint8_t *unsent, size_t unsent_len, uint64_t unsent_at);
};

/* dirty_pool.c: apps, the worker table, scaling */
void	 pool_set_hooks(const struct pool_hooks *);
struct worker *pool_pick(size_t, int *);
uint64_t worker_forward(struct worker *, const uint8_t *, size_t, uint64_t);
void	 worker_call_ended(uint32_t, uint32_t, int);
void	 worker_cancel_call(uint32_t, uint32_t, uint64_t);
void	 workers_stop_respawns(void);
int	 workers_increase(int);
void	 workers_retire_all(void);
void	 workers_stop(int);
void	 workers_kill(void);
void	 workers_wait(void);
void	 workers_manage_pending(void);
void	 apps_parse(void);
int	 app_find(const char *, size_t);
int	 workers_required(void);
int	 workers_ceiling(void);
void	 workers_manage(void);
void	 worker_retire(struct worker *);
void	 worker_term(struct worker *);
int	 workers_decrease(int);
void	 workers_reap(void);
int	 workers_count(void);
void	 workers_signal(int);
void	 workers_tick(uint64_t, uint64_t, uint64_t);
void	 worker_read(struct worker *);
void	 worker_flush(struct dirty_peer *);
struct dirty_peer *worker_peer(uint32_t, uint32_t);

/* dirty_control.c: the STATUS and MANAGE replies (appended to a buffer) */
void	 control_status_reply(struct dirty_buf *, uint64_t, uint64_t, uint64_t);
void	 control_manage_reply(struct dirty_buf *, const uint8_t *,
	    const struct dirty_header *);

#pragma GCC visibility pop

#endif /* DIRTY_ARBITER_INT_H */
