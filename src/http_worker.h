/*
 * http_worker.h — the HTTP worker role, and its worker types.
 *
 * Forked by the master; the child enters http_worker_main() and never
 * returns.  It runs the worker type settings.worker_class names (a table
 * in http_worker.c):
 *   sync     one connection at a time, parsed with http_conn/http_parser,
 *            the WSGI app called through wsgi.c, answered with
 *            "Connection: close" (gunicorn's sync worker);
 *   gthread  gthread_worker.c: an event loop owns every connection
 *            (keep-alive, pipelining, deadlines), a pool of `threads`
 *            Python threads runs the app.
 *   asgi     asgi_worker.c: an asyncio loop runs an ASGI 3.0 app, the
 *            HTTP of every connection is C (asgi_proto.c).
 * What follows describes the sync worker; gthread_worker.c says how the
 * threaded one differs.
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

#include "settings.h"

struct settings;
struct listener;

struct http_worker_ctx {
	struct settings *cfg;
	struct listener *listeners;
	size_t nlisteners;
	volatile uint64_t *heartbeat;	/* shared with the master (mmap) */
	/* Every HTTP worker's heartbeat and load (connections held), by slot:
	 * a gthread worker lets a less loaded live sibling accept first. */
	volatile const uint64_t *heartbeats;
	volatile uint64_t *loads;
	int slot, nslots;
	pid_t master_pid;		/* getppid() at fork time */
	int age;			/* gunicorn's worker.age: spawn counter */
	void *app;			/* PyObject*: the WSGI callable if preloaded, else NULL */
};

void http_worker_main(struct http_worker_ctx *ctx) __attribute__((noreturn));

/* ---- for the worker types ---- */

/* Load the app (honouring --reload's SyntaxError page), set up wsgi.c
 * for `threads` app threads; urgent: see wsgi_setup.  Exits the worker
 * (boot error) on failure.  Returns the app (borrowed: wsgi.c holds it
 * for the worker's life).  GIL held. */
void *http_worker_boot(struct http_worker_ctx *ctx, int threads, void (*urgent)(void),
    const _Atomic int *keepalive_gate, int relay_streams);
/* --reload: 1 when a watched file changed (logged; the worker should
 * stop as on max_requests).  Looks at most once a second; 0 when reload
 * is off.  GIL held. */
int http_worker_reload_due(void);
/* The one way out: worker_exit hook, "Worker exiting", _exit.  GIL held. */
void http_worker_exit(int code) __attribute__((noreturn));
/* gunicorn's meaning of one signal to a loop worker (gthread, asgi), in
 * one place: TERM, HUP: stop() (graceful); INT, QUIT: quit(worker_int
 * hook, 0); ABRT: quit(worker_abort hook, 1); USR1: reopen the logs.
 * quit must not return. */
void http_worker_loop_signal(int sig, void (*stop)(void),
    void (*quit)(enum hook_id hook, int code));

/* gthread_worker.c */
void gthread_worker_main(struct http_worker_ctx *ctx) __attribute__((noreturn));
/* asgi_worker.c */
void asgi_worker_main(struct http_worker_ctx *ctx) __attribute__((noreturn));

#endif
