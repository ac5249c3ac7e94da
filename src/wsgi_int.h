/*
 * wsgi_int.h — what the files of the WSGI glue share; nothing else
 * includes it (the glue's contract with the workers is wsgi.h).
 *
 *   wsgi.c           a request from start to end (wsgi_handle), the
 *                    request slots (struct wsgi_req, below), setup,
 *                    hook objects, Python-level signal handlers
 *   wsgi_environ.c   the environ: keys, forwarded headers, gunicorn.socket
 *   wsgi_input.c     the request body and wsgi.input
 *   wsgi_response.c  start_response, write(), framing, sending the result
 *   access_log.c     the access log (its own header; knows none of this)
 *
 * Dependencies go one way: wsgi.c -> wsgi_environ.c -> {wsgi_input.c,
 * wsgi_response.c} -> buf.c, http_conn.c.  No file calls back up.
 *
 * Per-request state lives in a struct wsgi_req (below) that the worker
 * owns and passes to wsgi_handle(): one per place a request can run (the
 * sync worker's one; one per gthread pool thread and one for its loop
 * thread's inline requests).  The parts take it as a parameter; nothing
 * of a request is kept in file statics or thread-locals.  Pure scratch
 * buffers whose content never outlives one call (wsgi_environ.c's key
 * buffer, access_log.c's line, hook_objects.c's header names) stay per
 * thread: they are caches, not state, and a per-thread one costs no
 * parameter through the hot path.  Everything here is used with the GIL
 * held.
 */
#ifndef CUNICORN_WSGI_INT_H
#define CUNICORN_WSGI_INT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <netinet/in.h>
#include <stdint.h>

#include "buf.h"
#include "http_conn.h"
#include "log.h"
#include "pyutil.h"
#include "wsgi.h"

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
/* A new environ for c->req, the request running in q (new reference),
 * with its wsgi.input and wsgi.early_hints.  NULL with an exception; or
 * NULL with *bad_request set (a static text or q->bad_request) when the
 * request must be refused with a 400 (no exception worth logging). */
PyObject *wsgi_build_environ(struct wsgi_req *q, struct http_conn *c,
    const char **bad_request);
/* The peer's address as text (q->peer_text). */
const char *wsgi_peer_text(struct wsgi_req *q, struct http_conn *c);
/* End of q's request: a gunicorn.socket the app kept must not outlive
 * the fd. */
void wsgi_client_socket_release(struct wsgi_req *q);

/* ---- wsgi_input.c ---- */

/* The request body, read lazily from the connection buffer and the
 * socket.  Owned by wsgi_input.c (in struct wsgi_req); after the app,
 * wsgi.c reads io_error, err_status, err_reason, continue_pending and
 * pos. */
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
	int nowait;		/* body_more() does not wait for bytes (drain) */
	int err_status;		/* bad chunked framing: answer this (400) */
	const char *err_reason;
	uint64_t start_ms;	/* the body's deadline: start + base + received / rate */
	uint64_t received;	/* bytes read from the socket for the body */
};

int wsgi_input_prepare(void);		/* as wsgi_environ_prepare */
/* base_ms: what the body's deadline starts with (the head's timeout). */
void wsgi_input_init(int base_ms);
/* q's body, set up for c->req. */
struct body *wsgi_body_begin(struct wsgi_req *q, struct http_conn *c);
/* wsgi.input for q's running request (borrowed), or NULL with an
 * exception. */
PyObject *wsgi_input_object(struct wsgi_req *q);
/* Whether request bytes may still be unread on the socket. */
int wsgi_body_unread(const struct body *b);
/* Read and drop what is left of the body, within a bound and without
 * waiting for bytes that are not here yet: 0 when the body ended; 1 when
 * the client is still sending it: nothing of it is left in the buffer,
 * *rest says what is yet to come on the socket (a Content-Length count
 * within the bound, or a chunked body's decoder state) and the worker's
 * loop may read and drop it (its thread is not held for it); -1 when
 * the connection cannot be reused (too much left, or an error). */
int wsgi_body_drain(struct body *b, struct http_drain *rest);
/* Whether wsgi_body_drain() could still keep the connection: what is
 * left of the body is within its bound (a chunked one: maybe). */
int wsgi_body_drainable(const struct body *b);

/* ---- wsgi_response.c ---- */

/* One response being written.  Owned by wsgi_response.c (in struct
 * wsgi_req); wsgi.c reads it after the app returned, on an error page
 * sets keepalive, status_set, status_code, status, headers and sent to
 * what the log and the post_request hook must see, and clears in_flight
 * when the request is over. */
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
	const struct body *body;	/* the request's (wsgi_input.c) */
	int upgrade;		/* the app said "Connection: upgrade" */
	int in_flight;		/* between resp_begin and the request's end */
	int writing;		/* bytes of a head may be half on the wire */
	uint64_t sent;		/* body bytes sent */
	struct buf status;	/* as given by the app */
	struct buf headers;	/* "Name: value\r\n" ... (app's, filtered) */
	struct buf head;	/* the serialized head, built right before it is sent */
};

/* ---- the request slot ---- */

/*
 * Where one request runs: its body, its response, its generation and the
 * Python objects handed to the app for it.  Made by wsgi_req_new() (the
 * worker owns it and passes it to wsgi_handle(); a slot runs one request
 * at a time) and never freed: the objects an app may keep point to it.
 * wsgi.c owns gen and thread; each part owns its own fields.
 */
struct wsgi_req {
	/* The running request's generation, 0 between requests: wsgi.c
	 * hands out a new one to every request (unique across slots). */
	uint64_t gen;
	/* The thread running it: the objects answer only there (another
	 * thread could race the owner's socket waits). */
	PyThreadState *thread;
	struct body body;		/* wsgi_input.c */
	struct response resp;		/* wsgi_response.c */
	/* Reused from request to request while nobody else holds them
	 * (wsgi_renew): wsgi.input; start_response, write; early_hints. */
	PyObject *input_obj;		/* wsgi_input.c */
	PyObject *sr_obj, *write_obj, *hints_obj;	/* wsgi_response.c */
	/* wsgi_environ.c: the peer's printed address, the fd whose
	 * gunicorn.socket this request uses (-1: none), why it was refused */
	char peer_text[INET6_ADDRSTRLEN + 8];
	int peer_port;
	int sock_fd;
	char bad_request[512];
	struct wsgi_req *next;		/* every slot, for wsgi_abort_responses() */
};

/*
 * A Python object handed to the app that belongs to one request:
 * wsgi.input, start_response, write, wsgi.early_hints.  It carries its
 * slot and the generation of the request it was handed out for; it is
 * stale once that request is over (the slot's gen moved on) and in any
 * other thread than the slot's.
 */
typedef struct {
	PyObject_HEAD
	struct wsgi_req *req;
	uint64_t gen;
} RequestBoundObject;

/* The slot of a request-bound object, or NULL when it is stale. */
static inline struct wsgi_req *
wsgi_req_of(PyObject *obj)
{
	RequestBoundObject *o = (RequestBoundObject *)obj;

	if (o->gen != o->req->gen || o->req->thread != PyThreadState_Get())
		return NULL;
	return o->req;
}

/* Make *obj (a field of q) the object of q's running request: reused if
 * nobody else holds it, else replaced with a new one of type.  0, or -1
 * with an exception. */
static inline int
wsgi_renew(struct wsgi_req *q, PyObject **obj, PyTypeObject *type)
{
	if (*obj != NULL && Py_REFCNT(*obj) == 1) {
		((RequestBoundObject *)*obj)->gen = q->gen;
		return 0;
	}
	Py_XDECREF(*obj);
	if ((*obj = (PyObject *)PyObject_New(RequestBoundObject, type)) == NULL)
		return -1;
	((RequestBoundObject *)*obj)->req = q;
	((RequestBoundObject *)*obj)->gen = q->gen;
	return 0;
}

int wsgi_response_prepare(void);	/* as wsgi_environ_prepare */
void wsgi_response_init(const struct wsgi_setup *setup);
/* wsgi.file_wrapper (borrowed). */
PyObject *wsgi_file_wrapper_type(void);
/* q's response, set up for c->req; c->relay cleared.  (wsgi.c clears
 * r->in_flight when the request is over, once its references are
 * dropped.) */
struct response *wsgi_resp_begin(struct wsgi_req *q, struct http_conn *c);
/* start_response for q's running request (borrowed; its write() renewed
 * too), or NULL with an exception. */
PyObject *wsgi_start_response_object(struct wsgi_req *q);
/* wsgi.early_hints for q's running request (borrowed), or NULL with an
 * exception. */
PyObject *wsgi_early_hints_object(struct wsgi_req *q);
/* Make q known to wsgi_abort_responses(). */
void wsgi_response_register(struct wsgi_req *q);
/* Send the app's result (fast paths: a list of bytes in one writev, a
 * file_wrapper with sendfile, a dirty stream handed to the loop).  0, or
 * -1 with an exception. */
int wsgi_send_result(struct response *r, PyObject *result);
/* End of the response: the head if still unsent, the last chunk.  0, or
 * -1 with an exception. */
int wsgi_resp_finish(struct response *r);

#endif
