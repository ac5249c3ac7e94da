/*
 * dirty_worker.c — the dirty worker process: loads the dirty apps (Python
 * classes named "module:Class") and serves the calls its dirty arbiter
 * sends over one socketpair.  This file is the role: start and stop,
 * signals, the heartbeat, the loop reading frames and writing replies;
 * dirty_serve.c loads the apps and serves each call.
 *
 * Owns: the worker's socketpair end, its apps, its heartbeat slot, its
 * pool of calling threads.  It never forks, never touches another
 * process's state and never calls the arbiter's code; the only Python it
 * runs is the apps', the dirty hooks and DirtyApp's dispatch.
 *
 * Threads:
 *   main      reads frames.  dirty_threads == 1: it also decodes, calls
 *             and writes the reply itself (no thread hop); it holds the GIL
 *             except while blocked in poll/read/write.  dirty_threads > 1:
 *             it only queues the raw frames and never holds the GIL.
 *   callers   (dirty_threads > 1 only) the pool of Python threads the
 *             gthread worker uses too (pythreads.h): each takes a queued
 *             frame, calls the app with the GIL and writes the reply
 *             under the write lock (one writer at a time, never awaited
 *             holding the GIL).
 *   watch     a pthread that never touches Python: it acts on signals
 *             (sigpipe.h: handlers only write a byte) and writes the heartbeat
 *             every 250 ms — also while a call runs — as long as no call
 *             has been running for longer than dirty_timeout and the main
 *             loop has come round in the last LOOP_STALL_MS.  A stuck
 *             worker so stops beating and the arbiter replaces it.
 *
 * Signals (sigpipe.h, as in the arbiter and the gthread and asgi
 * workers: handlers write the signal's number on a pipe; the watch thread
 * reads it and acts):
 * TERM and HUP: finish the calls already received, then exit cleanly
 * (apps' close(), dirty_worker_exit hook).  INT and QUIT: exit at once
 * (from the watch thread, _exit), even in the middle of a call.  USR1:
 * reopen the log files.
 * The arbiter's death (EOF on the socketpair, PR_SET_PDEATHSIG, getppid()
 * changing) ends the worker too.
 *
 * An app that fails to import, instantiate or init() is logged (one line,
 * traceback at debug level) and the worker stays up, answering calls to
 * it with DirtyAppError "Dirty app X failed to load: ...": a worker that
 * exited instead would be respawned by the arbiter into the same failure,
 * a crash loop.  Other apps of the worker keep working.
 *
 * Log lines: "Initialized dirty app: PATH" (info), "Failed to load dirty
 * app PATH: ..." (error), "Error executing PATH.ACTION: ..." (error; the
 * traceback at debug), "Dirty worker PID exiting" (info) — as gunicorn.
 */
#include "dirty_worker_int.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include "dirty.h"
#include "dirty_pyext.h"
#include "dirty_wire.h"
#include "log.h"
#include "python.h"
#include "pythreads.h"
#include "settings.h"
#include "sigpipe.h"
#include "util.h"

struct dirty_worker_state dirty_worker;

static void dirty_worker_exit(int status) __attribute__((noreturn));

/* ---- the watch thread: signals and heartbeat (never touches Python) ---- */

static void
wake_main(void)
{
	uint64_t one = 1;
	ssize_t r = write(dirty_worker.wakefd, &one, sizeof(one));
	(void)r;
}

static int
healthy(uint64_t now)
{
	for (int i = 0; i <= dirty_worker.nthreads && i <= MAX_THREADS; i++) {
		uint64_t since = atomic_load(&dirty_worker.busy_since[i]);
		if (since != 0 && dirty_worker.timeout_ms != 0 &&
		    ms_since(now, since) > dirty_worker.timeout_ms)
			return 0;
	}
	/* Slot 0 is the main thread's: busy loading the apps, or serving a
	 * call in single mode.  While it is, that slot speaks for it. */
	if (atomic_load(&dirty_worker.busy_since[0]) != 0)
		return 1;
	return ms_since(now, atomic_load(&dirty_worker.loop_tick)) <= LOOP_STALL_MS;
}

static void *
watch_thread(void *arg)
{
	struct pollfd pfd = { .fd = dirty_worker.sigfd, .events = POLLIN };
	int sig;

	(void)arg;
	for (;;) {
		poll(&pfd, 1, WATCH_PERIOD_MS);
		while ((sig = sigpipe_next()) != 0) {
			switch (sig) {
			case SIGINT:
			case SIGQUIT:
				log_info("Dirty worker %d exiting (quick)",
				    (int)getpid());
				_exit(0);
			case SIGTERM:
			case SIGHUP:
				atomic_store(&dirty_worker.stopping, 1);
				wake_main();
				break;
			case SIGUSR1:
				atomic_store(&dirty_worker.reopen, 1);
				wake_main();
				break;
			}
		}
		uint64_t now = monotonic_ms();
		if (dirty_worker.ctx->heartbeat != NULL && healthy(now))
			*dirty_worker.ctx->heartbeat = now;
		if (getppid() != dirty_worker.ctx->arbiter_pid) {
			log_info("Dirty worker %d: arbiter gone, exiting",
			    (int)getpid());
			_exit(0);
		}
	}
	return NULL;
}

/* ---- writing frames ---- */

/* Write the caller's out buffer and reset it.  Called with the GIL held;
 * releases it only if the write would block (single mode) or always
 * (threaded mode: the write lock must never be awaited holding the GIL).
 * Returns 0, or -1 when the arbiter's end is gone (the main loop's read
 * sees the EOF and ends the worker; a stream in progress stops). */
int
dirty_worker_flush_out(struct caller *c)
{
	struct dirty_buf *b = &c->out;
	int rc = 0, err = 0;

	if (b->len == 0)
		return 0;
	if (atomic_load(&dirty_worker.channel_broken)) {
		dirty_buf_reset(b);
		return -1;
	}
	if (dirty_worker.nthreads == 1) {
		ssize_t w = send(dirty_worker.fd, b->data, b->len,
		    MSG_NOSIGNAL | MSG_DONTWAIT);
		size_t done = w > 0 ? (size_t)w : 0;
		if (w == (ssize_t)b->len)
			rc = 0;
		else if (w == -1 && errno != EAGAIN && errno != EINTR) {
			rc = -1;
			err = errno;
		} else {
			Py_BEGIN_ALLOW_THREADS
			rc = send_full(dirty_worker.fd, b->data + done,
			    b->len - done);
			err = errno;
			Py_END_ALLOW_THREADS
		}
	} else {
		Py_BEGIN_ALLOW_THREADS
		pthread_mutex_lock(&dirty_worker.wlock);
		rc = send_full(dirty_worker.fd, b->data, b->len);
		err = errno;
		pthread_mutex_unlock(&dirty_worker.wlock);
		Py_END_ALLOW_THREADS
	}
	dirty_buf_reset(b);
	if (b->cap > BUF_KEEP)
		dirty_buf_free(b);	/* one huge reply: do not keep its memory */
	if (rc == -1) {
		atomic_store(&dirty_worker.channel_broken, 1);
		if (err != EPIPE && err != ECONNRESET) {
			errno = err;
			log_warn("dirty worker: write to arbiter");
		}
	}
	return rc;
}

/* ---- the caller threads (dirty_threads > 1) ---- */

/* A pool thread's job (GIL held): serve the frame on that thread's caller,
 * whose busy_since slot the watch thread reads. */
static void
serve_job(struct pythreads_job *link, int thread, void *arg)
{
	struct job *j = (struct job *)link;

	(void)arg;
	dirty_serve_frame(&dirty_worker.callers[thread + 1], j->type, j->id,
	    j->payload, j->len);
	free(j);
}

static void
enqueue(uint8_t type, uint64_t id, const uint8_t *payload, uint32_t len)
{
	struct job *j = xmalloc(sizeof(*j) + len);

	j->type = type;
	j->id = id;
	j->len = len;
	memcpy(j->payload, payload, len);
	pythreads_submit(dirty_worker.pool, &j->link);
}

/* ---- the main loop ---- */

/*
 * Serve (single mode, GIL held) or queue (threaded mode, no GIL) every
 * complete frame in dirty_worker.in.  Frames already read count as
 * received: they are served even after a TERM.
 */
static void
dispatch_input(struct caller *main_caller)
{
	struct dirty_header h;
	const uint8_t *frame;
	const char *why;
	int got;

	while ((got = dirty_reader_next(&dirty_worker.in, &h, &frame, &why)) != 0) {
		if (got == -1) {
			/* The arbiter is trusted: garbage from it is fatal,
			 * at once (the GIL may not be held here). */
			log_errorx("Dirty worker %d: bad frame from arbiter: %s",
			    (int)getpid(), why);
			_exit(1);
		}
		if (dirty_worker.nthreads == 1)
			dirty_serve_frame(main_caller, h.type, h.id,
			    frame + DIRTY_HEADER_SIZE, h.length);
		else
			enqueue(h.type, h.id, frame + DIRTY_HEADER_SIZE,
			    h.length);
	}
	dirty_reader_trim(&dirty_worker.in, BUF_KEEP);
}

/* Wait for input and read what is there.  Called WITHOUT the GIL.
 * Returns 1 data read, 0 nothing (timeout, wakeup), -1 EOF / error. */
static int
read_input(void)
{
	struct pollfd pfd[2] = {
		{ .fd = dirty_worker.fd, .events = POLLIN },
		{ .fd = dirty_worker.wakefd, .events = POLLIN },
	};
	int got = 0;

	if (poll(pfd, 2, LOOP_POLL_MS) == -1)
		return errno == EINTR ? 0 : -1;
	if (pfd[1].revents & POLLIN) {
		uint64_t v;
		ssize_t r = read(dirty_worker.wakefd, &v, sizeof(v));
		(void)r;
	}
	if (!(pfd[0].revents & (POLLIN | POLLHUP | POLLERR)))
		return 0;
	for (;;) {
		size_t room;
		uint8_t *at = dirty_reader_space(&dirty_worker.in,
		    CHANNEL_READ_CHUNK, &room);
		ssize_t r = recv(dirty_worker.fd, at, room, MSG_DONTWAIT);
		if (r > 0) {
			dirty_reader_commit(&dirty_worker.in, (size_t)r);
			got = 1;
			if ((size_t)r < room)
				break;		/* drained */
			continue;
		}
		if (r == 0)
			return got ? 1 : -1;	/* EOF: serve what came first */
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN)
			break;
		return got ? 1 : -1;
	}
	return got;
}

/* Each turn of either loop begins here: the tick the watch thread
 * checks, a log reopen asked for by USR1.  1 when the worker is stopping. */
static int
loop_turn(void)
{
	atomic_store(&dirty_worker.loop_tick, monotonic_ms());
	if (atomic_exchange(&dirty_worker.reopen, 0))
		log_reopen();
	return atomic_load(&dirty_worker.stopping);
}

/*
 * dirty_threads == 1: the GIL is held except while waiting for input, and
 * each frame is served right here.
 */
static void
main_loop_single(void)
{
	struct caller *mc = &dirty_worker.callers[0];
	int r;

	for (;;) {
		if (loop_turn())
			return;
		Py_BEGIN_ALLOW_THREADS
		r = read_input();
		Py_END_ALLOW_THREADS
		dispatch_input(mc);
		if (r == -1)
			return;		/* arbiter gone; what it sent is served */
	}
}

/*
 * dirty_threads > 1: this thread never holds the GIL in the loop (taking
 * it would only delay the callers); it queues frames for them.  On the
 * way out it waits for every received call to finish.
 */
static void
main_loop_threaded(void)
{
	PyThreadState *ts = PyEval_SaveThread();
	int r;

	for (;;) {
		if (loop_turn())
			break;
		r = read_input();
		dispatch_input(NULL);
		if (r == -1)
			break;
	}
	pythreads_drain(dirty_worker.pool);	/* the pool stays, idle, until _exit */
	PyEval_RestoreThread(ts);
}

/* ---- start and stop ---- */

static void
mark_not_alive(void)
{
	if (dirty_worker.worker_obj != NULL &&
	    PyObject_SetAttrString(dirty_worker.worker_obj, "alive", Py_False) == -1)
		PyErr_Clear();
}

/* Clean exit: apps' close(), the exit hook, the log line.  GIL held. */
static void
dirty_worker_exit(int status)
{
	mark_not_alive();
	for (size_t i = 0; i < dirty_worker.napps; i++) {
		struct dirty_app *a = &dirty_worker.apps[i];
		PyObject *r;
		if (a->obj == NULL || !PyObject_HasAttrString(a->obj, "close"))
			continue;
		if ((r = PyObject_CallMethod(a->obj, "close", NULL)) == NULL) {
			char *ctx = xasprintf("Error closing dirty app %s", a->path);
			python_log_exception(LOG_ERROR, LOG_DEBUG, ctx);
			free(ctx);
		} else {
			Py_DECREF(r);
			log_debug("Closed dirty app: %s", a->path);
		}
	}
	python_hook(dirty_worker.cfg, HOOK_DIRTY_WORKER_EXIT, 2,
	    dirty_worker.arbiter_obj != NULL ? dirty_worker.arbiter_obj : Py_None,
	    dirty_worker.worker_obj != NULL ? dirty_worker.worker_obj : Py_None);
	log_info("Dirty worker %d exiting", (int)getpid());
	fflush(stdout);
	fflush(stderr);
	_exit(status);
}

void
dirty_worker_main(struct dirty_worker_ctx *ctx)
{
	static const int sigs[] = { SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1 };
	pthread_t watch;
	int nthreads;

	/* spawn_process() did PyOS_AfterFork_Child, PR_SET_PDEATHSIG and the
	 * title. */
	memset(&dirty_worker, 0, sizeof(dirty_worker));
	/* Signals as bytes on a pipe the watch thread reads (sigpipe.h), not
	 * a blocked mask read with sigwait or a signalfd: a blocked mask
	 * would be inherited by every process an app spawns (subprocess
	 * keeps the mask across exec), which would then ignore SIGTERM.
	 * The arbiter forked us with every signal blocked (a USR1 or HUP
	 * sent before this stays pending); sigpipe_open() unblocks them,
	 * before any app code runs. */
	dirty_worker.sigfd = sigpipe_open(sigs, sizeof(sigs) / sizeof(sigs[0]));

	dirty_worker.ctx = ctx;
	dirty_worker.cfg = ctx->cfg;
	dirty_worker.fd = ctx->fd;
	nthreads = dirty_worker.cfg->dirty_threads;
	dirty_worker.nthreads = nthreads < 1 ? 1 : nthreads > MAX_THREADS ?
	    MAX_THREADS : nthreads;
	dirty_worker.timeout_ms = dirty_worker.cfg->dirty_timeout > 0 ?
	    (uint64_t)dirty_worker.cfg->dirty_timeout * 1000u : 0;
	dirty_reader_init(&dirty_worker.in);
	pthread_mutex_init(&dirty_worker.wlock, NULL);
	fd_set_nonblock(dirty_worker.fd, 0);
	fd_set_cloexec(dirty_worker.fd, 1);

	if ((dirty_worker.wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) == -1)
		fatal("dirty worker: eventfd");
	/* Loading the apps counts as a call: the heartbeat goes on for up to
	 * dirty_timeout while a model loads. */
	atomic_store(&dirty_worker.loop_tick, monotonic_ms());
	atomic_store(&dirty_worker.busy_since[0], monotonic_ms());
	if (ctx->heartbeat != NULL)
		*ctx->heartbeat = monotonic_ms();
	if (pthread_create(&watch, NULL, watch_thread, NULL) != 0)
		fatalx("dirty worker: cannot start the watch thread");

	dirty_worker.arbiter_obj = python_server_object(dirty_worker.cfg,
	    ctx->arbiter_pid);
	dirty_worker.worker_obj = python_worker_object(dirty_worker.cfg,
	    getpid(), ctx->age);
	PyErr_Clear();
	python_hook(dirty_worker.cfg, HOOK_DIRTY_POST_FORK, 2,
	    dirty_worker.arbiter_obj != NULL ? dirty_worker.arbiter_obj : Py_None,
	    dirty_worker.worker_obj != NULL ? dirty_worker.worker_obj : Py_None);

	dirty_apps_load();
	dirty_apps_ensure_stashes();
	dirty_apps_decorate_worker();
	python_hook(dirty_worker.cfg, HOOK_DIRTY_WORKER_INIT, 1,
	    dirty_worker.worker_obj != NULL ? dirty_worker.worker_obj : Py_None);

	dirty_worker.callers = xcalloc((size_t)dirty_worker.nthreads + 1,
	    sizeof(*dirty_worker.callers));
	for (int i = 0; i <= dirty_worker.nthreads; i++) {
		dirty_worker.callers[i].slot = i;
		dirty_buf_init(&dirty_worker.callers[i].out);
	}
	if (dirty_worker.nthreads > 1)
		dirty_worker.pool = pythreads_start(dirty_worker.nthreads, serve_job, NULL);
	atomic_store(&dirty_worker.busy_since[0], 0);
	atomic_store(&dirty_worker.loop_tick, monotonic_ms());

	if (dirty_worker.nthreads == 1)
		main_loop_single();
	else
		main_loop_threaded();
	dirty_worker_exit(0);
}
