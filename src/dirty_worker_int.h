/*
 * dirty_worker_int.h — the dirty worker process's state, shared by its
 * two files; included by them only:
 *
 *   dirty_worker.c  the role: start and stop, signals, the watch thread
 *                   and heartbeat, the main loop reading frames from the
 *                   arbiter, the caller threads, writing replies.
 *   dirty_serve.c   the Python side: loading the dirty apps, serving one
 *                   request (a call, a stream, an error reply).
 *
 * One worker per process, so the state is one struct, dirty_worker, defined in
 * dirty_worker.c; dirty_worker.c sets it up before any call is served,
 * dirty_serve.c owns the apps (apps, napps) and the lazily imported
 * Python functions.  Threads: see dirty_worker.c.
 */
#ifndef CUNICORN_DIRTY_WORKER_INT_H
#define CUNICORN_DIRTY_WORKER_INT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "dirty.h"
#include "dirty_wire.h"
#include "pythreads.h"
#include "settings.h"

#pragma GCC visibility push(hidden)

#define WATCH_PERIOD_MS		250
#define LOOP_POLL_MS		1000
#define LOOP_STALL_MS		10000	/* main loop silent that long: unhealthy */
#define CHANNEL_READ_CHUNK	65536	/* reads from the arbiter */
#define MAX_THREADS		256
#define ARGS_ON_STACK		16
#define BUF_KEEP		(4u * 1024 * 1024)	/* larger buffers are freed */

struct dirty_app {
	char *path;		/* "module:Class", as the requests name it */
	size_t pathlen;
	PyObject *obj;		/* the instance, or NULL when it failed to load */
	int fast_dispatch;	/* type(obj).__call__ is DirtyApp.__call__ */
	char *load_error;	/* why it failed to load, or NULL */
};

/* One calling context: the main thread (single mode) or a pool thread. */
struct caller {
	int slot;		/* index into busy_since[] */
	PyObject *aloop;	/* this thread's asyncio loop, lazily created */
	struct dirty_buf out;	/* reply being encoded */
};

/* A frame received and not yet served (threaded mode); freed once served. */
struct job {
	struct pythreads_job link;	/* first: a job is its link */
	uint64_t id;
	uint8_t type;
	uint32_t len;
	uint8_t payload[];
};

struct dirty_worker_state {
	struct dirty_worker_ctx *ctx;
	struct settings *cfg;
	int fd;
	int wakefd;			/* eventfd: watch thread -> main loop */
	int nthreads;			/* dirty_threads */
	uint64_t timeout_ms;		/* dirty_timeout, 0 = none */
	int sigfd;			/* sigpipe.h: signals -> watch thread */

	struct dirty_app *apps;
	size_t napps;

	PyObject *arbiter_obj;		/* hook arguments */
	PyObject *worker_obj;
	PyObject *dirtyapp_call;	/* DirtyApp.__call__, or NULL */
	PyObject *format_exception;	/* traceback.format_exception */
	PyObject *asyncio_new_loop;	/* asyncio.new_event_loop */

	atomic_int stopping;		/* TERM / HUP seen */
	atomic_int reopen;		/* USR1 seen */
	atomic_int channel_broken;	/* a write to the arbiter failed */
	_Atomic uint64_t loop_tick;	/* main loop came round (ms) */
	_Atomic uint64_t busy_since[MAX_THREADS + 1];	/* 0 = idle */

	struct dirty_reader in;		/* frames read from the arbiter */

	struct caller *callers;		/* [0] main; [1..n] pool thread n-1 */

	struct pythreads *pool;		/* threaded mode: the callers */
	pthread_mutex_t wlock;		/* one writer on fd at a time */
};

extern struct dirty_worker_state dirty_worker;

/* dirty_worker.c: writing to the arbiter */
int	 dirty_worker_flush_out(struct caller *);

/* dirty_serve.c: the apps, and serving one frame (GIL held) */
void	 dirty_apps_load(void);
void	 dirty_apps_ensure_stashes(void);
void	 dirty_apps_decorate_worker(void);
void	 dirty_serve_frame(struct caller *, uint8_t, uint64_t,
	    const uint8_t *, uint32_t);

#pragma GCC visibility pop

#endif /* CUNICORN_DIRTY_WORKER_INT_H */
