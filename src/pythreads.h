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
/* Jobs queued, not yet taken. */
int pythreads_queued(struct pythreads *p);
/* Wait until no job is queued or running (WITHOUT the GIL: the jobs need
 * it).  Jobs submitted meanwhile are waited for too. */
void pythreads_drain(struct pythreads *p);

/* Take and give back the calling pool thread's GIL. */
void pythreads_gil_take(void);
void pythreads_gil_drop(void);

#endif
