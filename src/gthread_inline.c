/*
 * gthread_inline.c — the gthread worker's loop role and inline requests
 * (contract: gthread_inline.h).
 *
 * A head that is ready while no pool thread is running or waking is run
 * by the main thread at the end of its loop turn, GIL taken uncontended:
 * no wake-up of a pool thread, no context switch, no GIL handoff (the
 * cost that dominated a keep-alive hello world).  The main thread lets go
 * of the loop role while it runs one, so that the loop never waits for
 * an app: when the request waits without the GIL in a place we know (a
 * socket wait in wsgi; a dirty call not answered within the client's
 * grace period, dirty_pyconn.c) or runs longer than WATCHDOG_MS (the
 * watchdog thread sees the same request twice), a pool thread is asked
 * to become the deputy: it takes the role, hands the rest of the inline
 * queue to the pool and runs loop turns until the main thread is back.
 * After such a request, heads go to the pool for INLINE_BACKOFF_MS.
 *
 * Owns: the role mutex, the inline queue, the main thread's saved
 * Python thread state, the watchdog thread (no Python).  Never touches a
 * connection beyond its queue link: the worker serves and takes back.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "gthread_inline.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include "dirty_pyext.h"
#include "http_conn.h"
#include "log.h"
#include "pythreads.h"
#include "util.h"

static struct inline_host H;

static struct {
	pthread_mutex_t role;		/* held by whoever runs loop turns */
	PyThreadState *loop_ts;		/* the main thread's, while it does not hold the GIL */
	struct http_conn *head, *tail;	/* role: heads to run inline */
	uint64_t off_until;		/* role: an inline request blocked: pool only */
	atomic_int busy;		/* the main thread is in an inline request */
	atomic_ulong seq;		/* inline requests started */
	atomic_int takeover_pending;	/* a deputy was asked for (job queued) */
	atomic_int main_wants_back;	/* the main thread waits for the role */
	atomic_ullong last_ms;		/* last inline request (watchdog ticking) */
	struct pythreads_job takeover_job;
	pthread_mutex_t wd_lock;
	pthread_cond_t wd_cond;
	int wd_ticking;			/* wd_lock */
} I;

static __thread int on_main;		/* the process's main thread */

#define WATCHDOG_MS		2
#define WATCHDOG_IDLE_MS	100	/* no inline request this long: stop ticking */
#define INLINE_BACKOFF_MS	1000

static void
request_takeover(void)
{
	if (atomic_exchange(&I.takeover_pending, 1) == 0)
		pythreads_submit_urgent(H.pool, &I.takeover_job);
}

/* A thread outside the pool is about to wait without the GIL (wsgi's
 * socket waits, the dirty client, through pythreads_blocking): when it
 * is the main thread in an inline request, a deputy takes the loop. */
static void
gthread_blocking(int waiting)
{
	if (waiting && on_main && atomic_load(&I.busy))
		request_takeover();
}

static void
deputy(void)
{
	pythreads_gil_drop();
	pythreads_blocking(1);	/* the jobs it queues are for other threads */
	/* The main thread holds the role only between two inline requests
	 * (then it clears takeover_pending once it has the role back) or
	 * when it is back from the one that needed a deputy: never wait for
	 * the role, that thread would be lost to the pool. */
	for (;;) {
		if (!atomic_load(&I.takeover_pending)) {
			pythreads_blocking(0);
			pythreads_gil_take();
			return;
		}
		if (pthread_mutex_trylock(&I.role) == 0)
			break;
		sched_yield();
	}
	if (atomic_load(&I.takeover_pending) && atomic_load(&I.busy)) {
		I.off_until = monotonic_ms() + INLINE_BACKOFF_MS;
		while (I.head != NULL) {		/* not for the main thread now */
			struct http_conn *c = I.head;
			I.head = c->qnext;
			c->qnext = NULL;
			pythreads_submit(H.pool, H.job_of(c));
		}
		I.tail = NULL;
		while (!atomic_load(&I.main_wants_back))
			H.loop_turn();
	}
	pthread_mutex_unlock(&I.role);
	pythreads_blocking(0);
	pythreads_gil_take();
}

static void
wake_loop(void)
{
	uint64_t one = 1;

	(void)!write(H.wakefd, &one, sizeof(one));
}

/* Main thread, role held, GIL not held: run the inline queue. */
static void
run_inline(void)
{
	int have_gil = 0;

	while (I.head != NULL) {
		struct http_conn *c = I.head;
		int back;

		I.head = c->qnext;
		if (I.head == NULL)
			I.tail = NULL;
		c->qnext = NULL;
		atomic_fetch_add(&I.seq, 1);
		atomic_store(&I.busy, 1);
		pthread_mutex_unlock(&I.role);
		if (!have_gil) {
			PyEval_RestoreThread(I.loop_ts);
			have_gil = 1;
		}
		back = H.serve(c);
		atomic_store(&I.busy, 0);
		atomic_store(&I.main_wants_back, 1);
		if (pthread_mutex_trylock(&I.role) != 0) {
			/* a deputy runs the loop: it may need the GIL */
			I.loop_ts = PyEval_SaveThread();
			have_gil = 0;
			wake_loop();
			pthread_mutex_lock(&I.role);
		}
		atomic_store(&I.main_wants_back, 0);
		atomic_store(&I.takeover_pending, 0);
		if (back)
			H.done(c);
	}
	if (have_gil)
		I.loop_ts = PyEval_SaveThread();
	atomic_store(&I.last_ms, monotonic_ms());
}

static void *
watchdog_main(void *arg)
{
	unsigned long seen = 0;

	pthread_mutex_lock(&I.wd_lock);
	for (;;) {
		struct timespec ts;
		unsigned long seq;

		if (!I.wd_ticking) {
			pthread_cond_wait(&I.wd_cond, &I.wd_lock);
			continue;
		}
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_nsec += WATCHDOG_MS * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&I.wd_cond, &I.wd_lock, &ts);
		seq = atomic_load(&I.seq);
		if (atomic_load(&I.busy)) {
			if (seq == seen)	/* the same request, WATCHDOG_MS or more */
				request_takeover();
		} else if (monotonic_ms() > atomic_load(&I.last_ms) + WATCHDOG_IDLE_MS)
			I.wd_ticking = 0;
		seen = seq;
	}
	return NULL;
}

static void
watchdog_start(void)
{
	pthread_condattr_t ca;
	pthread_attr_t attr;
	pthread_t t;
	int rc;

	pthread_mutex_init(&I.wd_lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&I.wd_cond, &ca);
	pthread_condattr_destroy(&ca);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 64 * 1024);
	if ((rc = pthread_create(&t, &attr, watchdog_main, NULL)) != 0) {
		errno = rc;
		fatal("pthread_create");
	}
	pthread_attr_destroy(&attr);
}

static void
watchdog_arm(void)
{
	pthread_mutex_lock(&I.wd_lock);
	if (!I.wd_ticking) {
		I.wd_ticking = 1;
		pthread_cond_signal(&I.wd_cond);
	}
	pthread_mutex_unlock(&I.wd_lock);
}

void
inline_setup(const struct inline_host *host)
{
	H = *host;
	on_main = 1;
	dirty_client_wait_hook = pythreads_blocking;
	pythreads_outside_blocking = gthread_blocking;
	pthread_mutex_init(&I.role, NULL);
	watchdog_start();
	I.loop_ts = PyEval_SaveThread();
}

int
inline_take(struct http_conn *c)
{
	if (!on_main || monotonic_ms() < I.off_until ||
	    (I.head == NULL && !pythreads_idle(H.pool)))
		return 0;
	c->qnext = NULL;	/* run by this thread at the end of the turn */
	if (I.tail != NULL)
		I.tail->qnext = c;
	else
		I.head = c;
	I.tail = c;
	return 1;
}

int
inline_job(struct pythreads_job *job)
{
	if (job != &I.takeover_job)
		return 0;
	deputy();
	return 1;
}

/* The GIL for loop code: the main thread's state, or a deputy's own. */
void
inline_gil_take(void)
{
	if (on_main)
		PyEval_RestoreThread(I.loop_ts);
	else
		pythreads_gil_take();
}

void
inline_gil_drop(void)
{
	if (on_main)
		I.loop_ts = PyEval_SaveThread();
	else
		pythreads_gil_drop();
}

void
inline_main(void)
{
	pthread_mutex_lock(&I.role);
	for (;;) {
		H.loop_turn();
		if (I.head != NULL) {
			if (monotonic_ms() > atomic_load(&I.last_ms) + WATCHDOG_IDLE_MS / 2)
				watchdog_arm();
			run_inline();
		}
	}
}
