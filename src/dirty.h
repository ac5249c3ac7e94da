/*
 * dirty.h — the dirty arbiter seen from the outside.
 *
 * Master side (master.c calls these):
 *   dirty_enabled()        dirty_workers > 0 and dirty_apps non-empty
 *   dirty_prepare()        before the first spawn: remove a predecessor's
 *                          orphan (proven lock holder only) and leftovers,
 *                          create the private runtime directory, choose the
 *                          socket path, export GUNICORN_DIRTY_SOCKET
 *   dirty_arbiter_spawn()  fork the dirty arbiter; logs "Spawning dirty
 *                          arbiter" / "Spawned dirty arbiter (pid: N) at PATH"
 *   dirty_master_cleanup() at master exit: remove the runtime directory
 *
 * The arbiter (dirty_arbiter.c) is C only and never calls Python.  It forks
 * dirty workers, which enter dirty_worker_main() (dirty_worker.c) and run
 * the apps' Python code.
 */
#ifndef CUNICORN_DIRTY_H
#define CUNICORN_DIRTY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct settings;

int dirty_enabled(const struct settings *s);
int dirty_prepare(struct settings *s);		/* 0, or -1 after logging */
const char *dirty_socket_path(void);
/* Fork the arbiter.  Parent: returns its pid (or -1).  Child: never returns. */
pid_t dirty_arbiter_spawn(struct settings *s, pid_t master_pid);
void dirty_master_cleanup(void);

/*
 * Cancelled calls: a ring of DIRTY_CANCEL_SLOTS call ids in memory shared
 * with the arbiter (MAP_SHARED, beside the heartbeat slot).  When a call's
 * caller goes away (its connection closes) or the call times out, the
 * arbiter writes the call's id (as the worker sees it: never 0) into the
 * next slot; the worker checks the ring after each chunk it streams and
 * before it starts a call, and stops producing for that id (the generator
 * is closed, nothing more is sent).  Nothing goes over the wire for this,
 * so the wire protocol is unchanged.
 */
#define DIRTY_CANCEL_SLOTS	64

/* What the arbiter hands a dirty worker it forks. */
struct dirty_worker_ctx {
	struct settings *cfg;
	int fd;				/* socketpair end: wire frames to/from the arbiter */
	char **apps;			/* "module:Class" import paths this worker loads */
	size_t napps;
	volatile uint64_t *heartbeat;	/* shared slot, monotonic ms, written by the worker */
	volatile uint64_t *cancel;	/* DIRTY_CANCEL_SLOTS ids, written by the arbiter
					 * (NULL: no cancellation) */
	pid_t arbiter_pid;
	int age;
};

/* The dirty worker process: never returns. */
void dirty_worker_main(struct dirty_worker_ctx *ctx) __attribute__((noreturn));

#endif
