/*
 * http_worker.h — the sync HTTP worker role.
 *
 * Forked by the master; the child enters http_worker_main() and never
 * returns.  It accepts on the inherited listeners, one connection at a
 * time, parses with http_parser, calls the WSGI app through wsgi.c,
 * answers and closes the connection (the sync worker's behaviour).
 *
 * Signals (the master leaves them blocked across fork; the worker installs
 * flag-only handlers and unblocks):
 *   TERM  finish the current request, exit          QUIT, INT  exit now
 *   USR1  reopen logs                               ABRT  (timeout) worker_abort hook, exit
 *   HUP   exit (the master starts a fresh worker)
 * It exits by itself when its master is gone (getppid() changes, or
 * PR_SET_PDEATHSIG), when max_requests is reached, with --reload when a
 * watched file changed (polled about once a second), or on any fatal
 * error.
 * It touches *heartbeat (monotonic ms) at least every timeout/2 seconds
 * while idle and before each request; the master kills a worker whose
 * heartbeat is older than `timeout`.
 */
#ifndef CUNICORN_HTTP_WORKER_H
#define CUNICORN_HTTP_WORKER_H

#include <stdint.h>
#include <sys/types.h>

struct settings;
struct listener;

struct http_worker_ctx {
	struct settings *cfg;
	struct listener *listeners;
	size_t nlisteners;
	volatile uint64_t *heartbeat;	/* shared with the master (mmap) */
	pid_t master_pid;		/* getppid() at fork time */
	int age;			/* gunicorn's worker.age: spawn counter */
	void *app;			/* PyObject*: the WSGI callable if preloaded, else NULL */
};

void http_worker_main(struct http_worker_ctx *ctx) __attribute__((noreturn));

#endif
