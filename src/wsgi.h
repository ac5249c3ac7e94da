/*
 * wsgi.h — the WSGI glue (PEP 3333) between the sync HTTP worker and the
 * Python application: environ, wsgi.input, start_response/write, the
 * response writer (writev, chunked, sendfile), the 500 page, hooks around
 * a request and the access log.
 *
 * Used only by http_worker.c.  Everything here runs in the worker's one
 * thread with the GIL held; the GIL is released only while waiting in
 * poll(2) for a socket.  Client sockets are non-blocking: every wait goes
 * through wsgi_wait(), which bounds the stall by the worker timeout and
 * reacts to the worker's urgent signals.
 */
#ifndef CUNICORN_WSGI_H
#define CUNICORN_WSGI_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "http_parser.h"

struct http_worker_ctx;
struct listener;

/* One accepted connection and its parsed request head.  buf belongs to
 * the worker (reused for every connection); req points into buf[0..
 * head_len), and the body bytes already read follow at buf[head_len..len).
 * The body reader may use buf[head_len..cap) but never touches the head. */
struct wsgi_conn {
	int fd;
	const struct listener *listener;
	struct sockaddr_storage peer;
	socklen_t peerlen;
	char *buf;
	size_t len;
	size_t cap;
	struct http_request req;
	int body_unread;		/* out: request body bytes may remain on the wire */
};

/*
 * Prepare the glue: intern the environ keys, build the constant part of
 * the environ, the worker hook object when a worker hook is set.
 * app: new reference to the WSGI callable (stolen).  Returns 0, or -1
 * after logging.
 */
int wsgi_init(struct http_worker_ctx *ctx, void *app);
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
 * Run the application for c->req and write the whole response.
 * Returns 0 when the response was sent completely, -1 when the connection
 * must be dropped without more (socket error, error after headers).
 */
int wsgi_handle(struct wsgi_conn *c);

/* gunicorn's error page: status line, Connection: close, text/html body
 * with reason and the (HTML-escaped) message. */
void wsgi_write_error(int fd, int status, const char *reason, const char *mesg);

/* Socket I/O on non-blocking fds, waiting with poll (GIL released).
 * wsgi_recv: >0 bytes, 0 EOF, -1 error or stall (errno ETIMEDOUT). */
ssize_t wsgi_recv(int fd, void *buf, size_t n);
/* Write every iov; 0 or -1 (errno set).  The iov array is modified. */
int wsgi_send_iov(int fd, struct iovec *iov, int iovcnt);
int wsgi_wait(int fd, short events);
/* Shut the connection down gently: when request bytes may be left
 * unread, half-close and drain a little first so that the client gets the
 * response instead of a reset; then close. */
void wsgi_close(int fd, int linger);

/* From a signal handler (async-signal-safe): make the Python-level
 * handler wsgi_init() registered for sig run at the next bytecode. */
void wsgi_signal_trip(int sig);

/* Flush Python's sys.stdout / sys.stderr (exit paths). */
void wsgi_flush_stdio(void);

/*
 * Provided by http_worker.c for wsgi.c: act on urgent signal flags
 * (INT/QUIT/ABRT: hooks and exit now; USR1: reopen logs).  Called after
 * EINTR and from the Python-level handlers wsgi.c registers, which let
 * those signals interrupt a running app as they do under gunicorn.
 */
void http_worker_urgent_signals(void);

#endif
