/*
 * pythreads.h — a pool of threads that run Python in turn.
 *
 * Jobs are intrusive (a struct pythreads_job inside the caller's own
 * object), queued FIFO under one mutex; each thread takes one, runs it
 * and takes the next.  run() is called with the GIL held and returns with
 * it held; it releases it around anything that blocks (socket waits).  A
 * thread that finds the next job queued keeps the GIL for it, so under
 * load the GIL does not change hands between every two jobs.  Threads
 * block every signal (the process's loop takes them) and live as long as
 * the process.
 */
#ifndef CUNICORN_PYTHREADS_H
#define CUNICORN_PYTHREADS_H

struct pythreads_job {
	struct pythreads_job *next;
};

struct pythreads;

/* Start n threads (GIL held by the caller, who keeps it).  run(job, arg)
 * runs each job.  Never fails: an error is fatal. */
struct pythreads *pythreads_start(int n, void (*run)(struct pythreads_job *, void *),
    void *arg);
/* Queue a job (any thread, no GIL needed). */
void pythreads_submit(struct pythreads *p, struct pythreads_job *job);
/* Jobs queued, not yet taken. */
int pythreads_queued(struct pythreads *p);

/* Take and give back the calling pool thread's GIL. */
void pythreads_gil_take(void);
void pythreads_gil_drop(void);

#endif
