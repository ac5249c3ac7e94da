/*
 * gthread_inline.h — who runs the gthread worker's loop, and where a
 * request runs: inline in the loop's own thread when the pool is idle,
 * with a pool thread standing in as the loop (the deputy) while an inline
 * request waits (gthread_inline.c says how).
 *
 * Used by gthread_worker.c only.  The worker keeps the loop itself (the
 * epoll set, the connections, the timers) and tells this module how to
 * run one loop turn, serve a connection and take one back.
 */
#ifndef CUNICORN_GTHREAD_INLINE_H
#define CUNICORN_GTHREAD_INLINE_H

struct http_conn;
struct pythreads;
struct pythreads_job;

struct inline_host {
	struct pythreads *pool;
	int wakefd;					/* an eventfd in the loop's epoll set */
	void (*loop_turn)(void);			/* role held */
	int (*serve)(struct http_conn *c);		/* GIL held; 1: back to the loop */
	void (*done)(struct http_conn *c);		/* role held: the loop takes it back */
	struct pythreads_job *(*job_of)(struct http_conn *c);	/* its pool job */
};

/* The calling (main) thread becomes the loop thread, holding the GIL;
 * it lets go of the GIL on return (the loop holds it only through
 * inline_gil_take).  Sets the dirty client's and pythreads' wait hooks. */
void inline_setup(const struct inline_host *host);
/* Role held: queue c (BUSY, a complete head) to run in the main thread
 * at the end of this turn: 1; 0 when it must go to the pool instead (not
 * the main thread, the pool busy, or a recent inline request blocked). */
int inline_take(struct http_conn *c);
/* A pool thread's job: 1 when it was the call for a deputy (now done). */
int inline_job(struct pythreads_job *job);
/* The GIL for loop code, in whichever thread holds the role. */
void inline_gil_take(void);
void inline_gil_drop(void);
/* The main thread, from then on: loop turns and inline requests. */
void inline_main(void) __attribute__((noreturn));

#endif
