/*
 * wsgi.h — the WSGI glue (PEP 3333) between a worker and the Python
 * application: environ, wsgi.input, start_response/write, the response
 * writer (writev, chunked, sendfile), the 500 page, hooks around a request
 * and the access log.
 *
 * Every worker type calls it with the GIL held, from one thread (sync) or
 * from several in turn (gthread).  The state of a running request lives
 * in a request slot (struct wsgi_req) that the worker owns and passes to
 * wsgi_handle(): one per thread that runs requests.  The Python objects
 * handed to the app belong to their request (stale after it, and in any
 * other thread).  The GIL is released
 * only while waiting for a socket (http_conn.c's waits).  Client sockets
 * are non-blocking; every wait is bounded by the worker timeout.
 */
#ifndef CUNICORN_WSGI_H
#define CUNICORN_WSGI_H

#include <stddef.h>

struct http_conn;
struct listener;
struct settings;
struct wsgi_req;

struct wsgi_setup {
	struct settings *cfg;
	const struct listener *listeners;	/* SERVER_NAME / SERVER_PORT */
	size_t nlisteners;
	int age;				/* the worker's spawn counter */
	int threads;				/* > 1: wsgi.multithread */
	/* Sync worker: run on EINTR and from Python-level INT/QUIT/ABRT
	 * handlers so that those signals interrupt a running app.  NULL
	 * (gthread): the event loop takes signals, no Python handler. */
	void (*urgent_signals)(void);
	/* gthread: the worker's keep-alive switch, read when a response head
	 * is built; 0 once the worker stops, so that every response from
	 * then on says "Connection: close".  NULL: always on. */
	const _Atomic int *keepalive_gate;
	/* gthread: a dirty stream returned as the body (it has a
	 * _cunicorn_relay method) is handed to the worker's loop in
	 * c->relay after the head is sent, instead of being iterated. */
	int relay_streams;
};

/*
 * Prepare the glue: intern the environ keys, build the constant part of
 * the environ, the worker hook object when a worker hook is set.
 * app: new reference to the WSGI callable (stolen).  Returns 0, or -1
 * after logging.
 */
int wsgi_init(const struct wsgi_setup *setup, void *app);
/*
 * Optional, in the master before forking (before gc.freeze()): make the
 * worker-independent part (types, interned keys, modules the glue uses)
 * once, so that workers share it instead of each copying the master's
 * pages.  wsgi_init() does it when it was not done.  0, or -1 with a
 * Python exception set.
 */
int wsgi_prepare(void);
/* The `worker` hook argument (borrowed PyObject *), made on first use
 * (at wsgi_init when a worker hook is configured).  NULL before
 * wsgi_init. */
void *wsgi_worker_object(void);

/*
 * A request slot: runs one request at a time (its body, its response, the
 * start_response / write / wsgi.input / early_hints objects reused from
 * request to request).  The worker makes one per thread that will call
 * wsgi_handle() and owns it; it is never freed (an object the app kept
 * points to it and must find it stale, not freed).  After wsgi_init(),
 * GIL held; aborts when out of memory.
 */
struct wsgi_req *wsgi_req_new(void);

/*
 * Run the application for c->req (a parsed head) in slot q (idle: no
 * other request running in it) and write the whole response.  c->keepalive in: the worker lets this connection live on;
 * out: it may serve another request, which begins at c->buf[c->next]
 * (the unread rest of the body was read and dropped) — or, when
 * c->drain is active, once the worker has read and dropped the rest of
 * the body still to come (http_drain.h; only a worker that passes
 * keepalive in, gthread, gets this).  Returns 0 when
 * the response was sent completely — or, with c->out_cap set (gthread),
 * when its end the socket refused waits in c->out for the worker to
 * write ("write-behind"; what comes next is the same) — -1 when the
 * connection must be
 * dropped without more (socket error, error after headers); with 0 and
 * no keep-alive, c->body_unread says whether to linger on close.
 */
int wsgi_handle(struct wsgi_req *q, struct http_conn *c);

/* From a signal handler (async-signal-safe): make the Python-level
 * handler wsgi_init() registered for sig run at the next bytecode. */
void wsgi_signal_trip(int sig);

/* A worker stopping at once (INT, QUIT, ABRT) with requests in flight:
 * to each whose response has not begun (not a byte out, none being
 * written), send gunicorn's 500 page, as gunicorn 26 does, and make the
 * app's own response fail.  Returns how many.  Call with the GIL held
 * (the other threads' responses then stand still: a thread writes or
 * starts a write only holding it), or from the worker's only thread. */
int wsgi_abort_responses(void);

/* Flush Python's sys.stdout / sys.stderr (exit paths). */
void wsgi_flush_stdio(void);

#endif
