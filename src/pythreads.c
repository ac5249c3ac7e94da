/*
 * pythreads.c — a pool of Python-running threads (contract: pythreads.h).
 *
 * Owns: the threads, their Python thread states, the job queue.  Never:
 * holds the GIL while waiting for a job, or touches a job after run()
 * returned.  A thread counts as running from taking a job until it comes
 * back for the next one (then under the lock it takes anyway), so
 * pythreads_drain() costs the jobs no extra locking.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "pythreads.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "log.h"
#include "util.h"

struct pythreads {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	pthread_cond_t drained;		/* nothing queued, nothing running */
	struct pythreads_job *head, *tail;
	int queued;
	int running;			/* jobs taken, run() not yet over */
	int draining;			/* someone waits on `drained` */
	int started;			/* threads given an index so far */
	int sleeping;			/* threads waiting on cond */
	int waking;			/* of them, signalled, not yet up */
	int lazy;			/* a running thread takes what is queued */
	int blocked;			/* lazy: running threads in a wait without the GIL */
	uint64_t progress_ms;		/* lazy: a job was queued or taken */
	void (*run)(struct pythreads_job *, int, void *);
	void *arg;
};

static __thread PyThreadState *thread_state;
static __thread struct pythreads *thread_pool;	/* the pool of this thread */

void
pythreads_gil_take(void)
{
	PyEval_RestoreThread(thread_state);
}

void
pythreads_gil_drop(void)
{
	thread_state = PyEval_SaveThread();
}

static void *
thread_main(void *arg)
{
	struct pythreads *p = arg;
	PyGILState_STATE st;
	int holding = 1, ran = 0, index;

	st = PyGILState_Ensure();	/* a thread state of our own */
	(void)st;
	thread_pool = p;
	pthread_mutex_lock(&p->lock);
	index = p->started++;
	pthread_mutex_unlock(&p->lock);
	for (;;) {
		struct pythreads_job *job;

		pthread_mutex_lock(&p->lock);
		if (ran) {
			ran = 0;
			if (--p->running == 0 && p->head == NULL && p->draining)
				pthread_cond_broadcast(&p->drained);
		}
		if (p->head == NULL && holding) {
			/* nothing queued: give the GIL back before sleeping (a
			 * thread that finds work right away keeps it: no handoff
			 * between two requests) */
			pthread_mutex_unlock(&p->lock);
			pythreads_gil_drop();
			holding = 0;
			pthread_mutex_lock(&p->lock);
		}
		while (p->head == NULL) {
			p->sleeping++;
			pthread_cond_wait(&p->cond, &p->lock);
			p->sleeping--;
			if (p->waking > 0)
				p->waking--;
		}
		job = p->head;
		p->head = job->next;
		if (p->head == NULL)
			p->tail = NULL;
		__atomic_fetch_sub(&p->queued, 1, __ATOMIC_RELAXED);
		p->running++;
		if (p->lazy && p->head != NULL)
			p->progress_ms = monotonic_ms();
		pthread_mutex_unlock(&p->lock);
		job->next = NULL;
		if (!holding) {
			pythreads_gil_take();
			holding = 1;
		}
		p->run(job, index, p->arg);
		ran = 1;
	}
	return NULL;
}

struct pythreads *
pythreads_start(int n, void (*run)(struct pythreads_job *, int, void *),
    void *arg)
{
	struct pythreads *p = xcalloc(1, sizeof(*p));
	pthread_attr_t attr;
	PyThreadState *ts;

	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	pthread_cond_init(&p->drained, NULL);
	p->run = run;
	p->arg = arg;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	/* the new threads take the GIL to make their thread states */
	ts = PyEval_SaveThread();
	for (int i = 0; i < n; i++) {
		pthread_t t;
		int rc = pthread_create(&t, &attr, thread_main, p);
		if (rc != 0) {
			errno = rc;
			fatal("pthread_create");
		}
	}
	PyEval_RestoreThread(ts);
	pthread_attr_destroy(&attr);
	return p;
}

/* p->lock held: wake a sleeping thread not already woken. */
static void
wake_one(struct pythreads *p)
{
	if (p->sleeping > p->waking) {
		p->waking++;
		pthread_cond_signal(&p->cond);
	}
}

void
pythreads_submit(struct pythreads *p, struct pythreads_job *job)
{
	job->next = NULL;
	pthread_mutex_lock(&p->lock);
	if (p->tail != NULL)
		p->tail->next = job;
	else
		p->head = job;
	p->tail = job;
	__atomic_fetch_add(&p->queued, 1, __ATOMIC_RELAXED);
	if (!p->lazy || (p->running == p->blocked && p->waking == 0))
		wake_one(p);
	else if (p->queued == 1)
		p->progress_ms = monotonic_ms();
	pthread_mutex_unlock(&p->lock);
}

void
pythreads_submit_urgent(struct pythreads *p, struct pythreads_job *job)
{
	pthread_mutex_lock(&p->lock);
	job->next = p->head;
	p->head = job;
	if (p->tail == NULL)
		p->tail = job;
	__atomic_fetch_add(&p->queued, 1, __ATOMIC_RELAXED);
	wake_one(p);
	pthread_mutex_unlock(&p->lock);
}

int
pythreads_idle(struct pythreads *p)
{
	int idle;

	pthread_mutex_lock(&p->lock);
	idle = p->head == NULL && p->running == 0 && p->waking == 0;
	pthread_mutex_unlock(&p->lock);
	return idle;
}

void
pythreads_set_lazy(struct pythreads *p, int on)
{
	pthread_mutex_lock(&p->lock);
	p->lazy = on;
	pthread_mutex_unlock(&p->lock);
}

void (*pythreads_outside_blocking)(int waiting);

void
pythreads_blocking(int waiting)
{
	struct pythreads *p = thread_pool;

	if (p == NULL) {
		if (pythreads_outside_blocking != NULL)
			pythreads_outside_blocking(waiting);
		return;
	}
	if (!p->lazy)
		return;
	pthread_mutex_lock(&p->lock);
	if (waiting) {
		p->blocked++;
		if (p->head != NULL)
			wake_one(p);
	} else
		p->blocked--;
	pthread_mutex_unlock(&p->lock);
}

int
pythreads_kick(struct pythreads *p, uint64_t now_ms, unsigned stall_ms)
{
	int left = -1;

	pthread_mutex_lock(&p->lock);
	if (p->head != NULL) {
		if (now_ms >= p->progress_ms + stall_ms) {
			/* no job taken for stall_ms: the running threads are
			 * waiting on something (a sleep, a socket, a lock) */
			wake_one(p);
			p->progress_ms = now_ms;
		}
		left = (int)(p->progress_ms + stall_ms - now_ms);
	}
	pthread_mutex_unlock(&p->lock);
	return left;
}

int
pythreads_queued(struct pythreads *p)
{
	int n;

	pthread_mutex_lock(&p->lock);
	n = p->queued;
	pthread_mutex_unlock(&p->lock);
	return n;
}

void
pythreads_drain(struct pythreads *p)
{
	pthread_mutex_lock(&p->lock);
	p->draining++;
	while (p->head != NULL || p->running > 0)
		pthread_cond_wait(&p->drained, &p->lock);
	p->draining--;
	pthread_mutex_unlock(&p->lock);
}
