/*
 * pythreads.h — a pool of threads that run Python in turn.
 *
 * Jobs are intrusive (a struct pythreads_job inside the caller's own
 * object), queued FIFO under one mutex; each thread takes one, runs it
 * and takes the next.  run() is called with the GIL held and returns with
 * it held; it releases it around anything that blocks (socket waits).  A
 * thread that finds the next job queued keeps the GIL for it, so under
 * load the GIL does not change hands between every two jobs.  Threads
 * start with the signal mask of the thread that started them (a process
 * whose loop takes its signals blocks them first; one whose handlers only
 * set flags leaves them open, so processes its apps spawn do not inherit a
 * blocked mask) and live as long as the process.
 */
#ifndef CUNICORN_PYTHREADS_H
#define CUNICORN_PYTHREADS_H

#include <stdint.h>

struct pythreads_job {
	struct pythreads_job *next;
};

struct pythreads;

/* Start n threads (GIL held by the caller, who keeps it).  run(job,
 * thread, arg) runs each job; thread is the index (0 .. n-1) of the pool
 * thread running it, for per-thread state the caller keeps.  Never fails:
 * an error is fatal. */
struct pythreads *pythreads_start(int n,
    void (*run)(struct pythreads_job *, int, void *), void *arg);
/* Queue a job (any thread, no GIL needed). */
void pythreads_submit(struct pythreads *p, struct pythreads_job *job);
/* Lazy wake-ups (the gthread worker's): a job queued while a thread is
 * running one is left for that thread, which takes it with the GIL it
 * already holds, instead of waking another that would only wait for the
 * GIL (two context switches and a GIL handoff per request).  The owner
 * calls pythreads_kick() whenever it looks: when no job was taken for
 * stall_ms while some are queued, the running threads are blocked
 * (sleep, socket, lock) and one more thread is woken.  Returns the ms
 * until the next look is due, or -1 when nothing is queued. */
void pythreads_set_lazy(struct pythreads *p, int on);
int pythreads_kick(struct pythreads *p, uint64_t now_ms, unsigned stall_ms);
/* A thread about to wait without the GIL (a socket, a dirty call;
 * waiting 1) and back from it with the GIL (0): in a lazy pool, a job
 * queued while every running thread waits wakes another thread; any
 * other thread calls pythreads_outside_blocking, when set. */
void pythreads_blocking(int waiting);
extern void (*pythreads_outside_blocking)(int waiting);
/* Queue a job first in line and wake a thread for it, lazy or not. */
void pythreads_submit_urgent(struct pythreads *p, struct pythreads_job *job);
/* Nothing queued, running, or about to run. */
int pythreads_idle(struct pythreads *p);
/* Jobs queued, not yet taken. */
int pythreads_queued(struct pythreads *p);
/* Wait until no job is queued or running (WITHOUT the GIL: the jobs need
 * it).  Jobs submitted meanwhile are waited for too. */
void pythreads_drain(struct pythreads *p);

/* Take and give back the calling pool thread's GIL. */
void pythreads_gil_take(void);
void pythreads_gil_drop(void);

#endif
