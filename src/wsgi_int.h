/*
 * wsgi_int.h — what the files of the WSGI glue share; nothing else
 * includes it (the glue's contract with the workers is wsgi.h).
 *
 *   wsgi.c           a request from start to end (wsgi_handle), setup,
 *                    hook objects, Python-level signal handlers
 *   wsgi_environ.c   the environ: keys, forwarded headers, gunicorn.socket
 *   wsgi_input.c     the request body and wsgi.input
 *   wsgi_response.c  start_response, write(), framing, sending the result
 *   access_log.c     the access log (its own header; knows none of this)
 *
 * Dependencies go one way: wsgi.c -> wsgi_environ.c -> {wsgi_input.c,
 * wsgi_response.c} -> buf.c, http_conn.c.  No file calls back up.
 *
 * Per-request state is per thread (the gthread worker runs the app from
 * several threads in turn): each file keeps its own `static __thread`
 * structs and hands wsgi.c a pointer to them once per request.  Whoever
 * owns a struct writes it; the fields another file may touch are marked.
 * Everything here is used with the GIL held.
 */
#ifndef CUNICORN_WSGI_INT_H
#define CUNICORN_WSGI_INT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>

#include "buf.h"
#include "http_conn.h"
#include "log.h"
#include "wsgi.h"

/*
 * A Python object handed to the app that belongs to one request:
 * wsgi.input, start_response, write, wsgi.early_hints.  It carries the
 * request's generation: wsgi.c hands out a new one to every request
 * (unique across threads), the file that owns the object keeps the
 * running request's in a per-thread variable and sets it to 0 when the
 * request ends, so an object is stale in every other thread, and in its
 * own once its request is over.
 */
typedef struct {
	PyObject_HEAD
	uint64_t gen;
} RequestBoundObject;

/* Reuse *obj for the request of generation gen if nobody else holds it,
 * else replace it with a new one of type.  0, or -1 with an exception. */
static inline int
wsgi_renew(PyObject **obj, PyTypeObject *type, uint64_t gen)
{
	if (*obj != NULL && Py_REFCNT(*obj) == 1) {
		((RequestBoundObject *)*obj)->gen = gen;
		return 0;
	}
	Py_XDECREF(*obj);
	if ((*obj = (PyObject *)PyObject_New(RequestBoundObject, type)) == NULL)
		return -1;
	((RequestBoundObject *)*obj)->gen = gen;
	return 0;
}

/* An interned str made once; aborts when Python cannot make it. */
static inline PyObject *
wsgi_intern(const char *s)
{
	PyObject *o = PyUnicode_InternFromString(s);
	if (o == NULL)
		fatalx("cannot intern %s", s);
	return o;
}

/* ---- wsgi_environ.c ---- */

/* Types, interned keys, the gunicorn.socket class: once, before fork
 * when the master calls wsgi_prepare().  0, or -1 with an exception. */
int wsgi_environ_prepare(void);
/* The worker's part: trusted proxies, SCRIPT_NAME, SERVER_NAME/PORT per
 * listener, the constant part of every environ.  0, or -1 with an
 * exception. */
int wsgi_environ_init(const struct wsgi_setup *setup);
/* A new environ for c->req (new reference), with wsgi.input and
 * wsgi.early_hints of the running request.  NULL with an exception; or
 * NULL with *bad_request set (a static or per-thread text) when the
 * request must be refused with a 400 (no exception worth logging). */
PyObject *wsgi_build_environ(struct http_conn *c, const char **bad_request);
/* The peer's address as text (per-thread buffer, valid until the next
 * call in this thread). */
const char *wsgi_peer_text(struct http_conn *c);
/* End of a request: a gunicorn.socket the app kept must not outlive the
 * fd. */
void wsgi_client_socket_release(void);

/* ---- wsgi_input.c ---- */

/* The request body, read lazily from the connection buffer and the
 * socket.  Owned by wsgi_input.c; after the app, wsgi.c reads io_error,
 * err_status, err_reason, continue_pending and pos. */
struct body {
	int fd;
	char *buf;		/* the connection buffer */
	size_t base;		/* buf[base..cap) is ours */
	size_t pos, len, cap;	/* raw bytes not yet decoded: buf[pos..len) */
	enum http_body_kind kind;
	uint64_t remaining;	/* LENGTH: body bytes not yet decoded */
	struct http_chunked ch;
	const char *pend;	/* decoded, not yet handed out */
	size_t pend_len;
	int eof, failed, continue_pending;
	int io_error;		/* the client went away or stalled */
	int err_status;		/* bad chunked framing: answer this (400) */
	const char *err_reason;
	uint64_t start_ms;	/* the body's deadline: start + base + received / rate */
	uint64_t received;	/* bytes read from the socket for the body */
};

int wsgi_input_prepare(void);		/* as wsgi_environ_prepare */
/* base_ms: what the body's deadline starts with (the head's timeout). */
void wsgi_input_init(int base_ms);
/* This thread's body, set up for c->req, the request of generation gen. */
struct body *wsgi_body_begin(struct http_conn *c, uint64_t gen);
/* The request is over: its wsgi.input goes stale. */
void wsgi_body_end(void);
/* This thread's wsgi.input for the running request (borrowed), or NULL
 * with an exception. */
PyObject *wsgi_input_object(void);
/* Whether request bytes may still be unread on the socket. */
int wsgi_body_unread(const struct body *b);
/* Read and drop what is left of the body, within a bound: 0 when the
 * body ended, -1 when the connection cannot be reused. */
int wsgi_body_drain(struct body *b);

/* ---- wsgi_response.c ---- */

/* One response being written.  Owned by wsgi_response.c; wsgi.c reads it
 * after the app returned, on an error page sets keepalive, status_set,
 * status_code, status, headers and sent to what the log and the
 * post_request hook must see, and clears in_flight when the request is
 * over. */
struct response {
	int fd;
	int status_set;
	int headers_sent;
	int failed;		/* socket error: drop the connection */
	int head_only;		/* HEAD: no body bytes */
	int http10;
	int status_code;
	int chunked;
	int auto_length;	/* we add Content-Length ourselves */
	int64_t content_length;	/* -1: none given */
	int keepalive;		/* the connection may stay open after this response */
	int app_server;		/* the app set its own Server header */
	int app_date;		/* ... its own Date header */
	int relayed;		/* the body goes on in the worker's loop */
	struct http_conn *conn;
	int upgrade;		/* the app said "Connection: upgrade" */
	int in_flight;		/* between resp_begin and the request's end */
	int writing;		/* bytes of a head may be half on the wire */
	uint64_t sent;		/* body bytes sent */
	struct buf status;	/* as given by the app */
	struct buf headers;	/* "Name: value\r\n" ... (app's, filtered) */
};

int wsgi_response_prepare(void);	/* as wsgi_environ_prepare */
void wsgi_response_init(const struct wsgi_setup *setup);
/* wsgi.file_wrapper (borrowed). */
PyObject *wsgi_file_wrapper_type(void);
/* This thread's response, set up for c->req, the request of generation
 * gen; c->relay cleared. */
struct response *wsgi_resp_begin(struct http_conn *c, uint64_t gen);
/* The request is over: its start_response, write and early_hints go
 * stale.  (wsgi.c clears r->in_flight last, once its references are
 * dropped.) */
void wsgi_resp_end(struct response *r);
/* This thread's start_response for the running request (borrowed; its
 * write() renewed too), or NULL with an exception. */
PyObject *wsgi_start_response_object(void);
/* This thread's wsgi.early_hints for the running request (borrowed), or
 * NULL with an exception. */
PyObject *wsgi_early_hints_object(void);
/* Send the app's result (fast paths: a list of bytes in one writev, a
 * file_wrapper with sendfile, a dirty stream handed to the loop).  0, or
 * -1 with an exception. */
int wsgi_send_result(struct response *r, PyObject *result);
/* End of the response: the head if still unsent, the last chunk.  0, or
 * -1 with an exception. */
int wsgi_resp_finish(struct response *r);

#endif
