/*
 * asgi_int.h — what the files of _cunicorn_asgi share (not for the rest
 * of the tree: asgi.h is the worker's interface).
 *
 *   asgi_proto.c   the module: the Protocol type (one object per
 *                  connection, asyncio's transport callbacks), the app's
 *                  call and its channels (receive/send/done), the timers,
 *                  the worker's stop/drain state the glue polls, setup
 *   asgi_task.c    the app's coroutine as a Task, first step run eagerly
 *   asgi_ws.c      websockets (RFC 6455) over ws_frame.c
 *   asgi_http.c    the `http` scope, the request body (receive), the
 *                  response's framing (send), http.response.pathsend's
 *                  head and end
 *   asgi_file.c    a pathsend's file: opened and checked, then sent with
 *                  sendfile(2) as the socket takes it (the worker's epoll
 *                  set of waiting sockets, one descriptor the loop reads);
 *                  under TLS read in pieces and written through the
 *                  transport as its flow control allows
 *   asgi_state.c   the shared state's definition, error pages, the
 *                  Ready awaitable
 *   asgi_alog.c    access log lines (the facts for access_log.c)
 *   asgi_hooks.c   pre_request/post_request, asgi_disconnect_grace_period
 *
 * Calls go one way: proto -> task, proto -> ws -> http -> state,
 * http -> file, proto -> file (and everything uses the inline helpers
 * below, of which proto_close stops a file under way); nothing lower
 * calls up.  A file
 * that waited for its socket ends in asgi_proto.c (the loop's callback:
 * on_files; under TLS on_file_soon, scheduled by asgi_file.c when the
 * transport resumes writing), which hands the end to asgi_http.c.
 * When a response ends with a pipelined head in the buffer,
 * asgi_response_body() says so and asgi_proto.c parses it; so does
 * asgi_drain_next() when the rest of a body the app left unread has come
 * and been dropped (PS_DRAIN).
 *
 * Who writes which field of a Proto:
 *   connection (transport .. tprev/tnext)   asgi_proto.c; the inline
 *       helpers set_state/timer_del/proto_close keep state and timers
 *   the request and the response (gen .. rhead, alog_*)   asgi_http.c
 *       (task: asgi_proto.c; hook_req: asgi_hooks.c)
 *       (asgi_ws.c sets gen and rstate for a websocket and its accept;
 *       asgi_proto.c's channels read them, and end rstate on errors)
 *   the websocket (is_ws .. wsprev/wsnext)   asgi_ws.c
 *   the file (file_fd .. file_soon)   asgi_file.c (sock_fd too); it
 *       adds what it sends to resp_sent; asgi_proto.c resolves
 *       file_waiter when the file ended
 *   the read buffer p->c   asgi_proto.c appends, the others consume
 * Who writes which field of `asgi` (the worker's state, one per process):
 *   everything set up once (ctx .. methods, forwarded_allow .. on_file_soon,
 *       tls)   asgi_proto.c
 *       (asgi_proto_setup and configure(); enter_task/leave_task:
 *       asgi_task.c; scope_tmpl: asgi_http.c, on the first request)
 *   in_app   asgi_proto.c's channels count the app's send/receive calls
 *   timers, nconns, full, stopping, stop_deadline, next_look   asgi_proto.c
 *       (asgi_http.c sets stopping at max_requests)
 *   served   asgi_http.c and asgi_ws.c count requests
 *   websockets (the list), websockets_closed   asgi_ws.c links and
 *       unlinks; asgi_proto.c closes them all when draining
 *   file_ep   asgi_file.c (made on the first wait)
 *
 * Everything runs on the loop's thread with the GIL held.
 */
#ifndef CUNICORN_ASGI_INT_H
#define CUNICORN_ASGI_INT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

#include "http_conn.h"
#include "http_parser.h"
#include "log.h"
#include "pyutil.h"
#include "util.h"

struct http_worker_ctx;
struct settings;
struct ws_deflate;

#define SERVER_HEADER	"cunicorn"
#define FIRST_BUF	(16 * 1024)
#define ASGI_SPARE	64		/* idle buffers kept (1 MB at most) */

/* A connection's state.  The first PS_TIMED have a deadline (a timer
 * list each, asgi.timers[state], in deadline order; tick() closes a
 * connection whose deadline passed):
 *   HEAD     reading a head: a whole head within limits.head_timeout_ms
 *   IDLE     kept alive between requests, no byte yet: `keepalive` s
 *   FILE     a pathsend's file (asgi_file.c) waits for its socket: the
 *            client must take a byte within the I/O timeout
 *            (http_io_timeout_ms: 3/4 of `timeout`), or it is closed
 *   DRAIN    the response is complete and kept alive, but the app left
 *            the rest of the body unread and the client is still
 *            sending it: c.drain (http_drain.h: a Content-Length count
 *            within HTTP_DRAIN_MAX, or a chunked body's decoder) says
 *            what of the bytes arriving is the body's; those are dropped,
 *            never buffered, then the connection goes on as after any
 *            kept response (asgi_http.c's drain); deadline: http_drain_ms
 *   BUSY     a request runs (its app, its body, its response; a
 *            websocket's whole life)
 *   CLOSING  closed or closing: nothing more is read */
enum { PS_HEAD, PS_IDLE, PS_DRAIN, PS_FILE, PS_TIMED, PS_BUSY = PS_TIMED, PS_CLOSING };

/* response progress (R_FILE: the head is sent, a pathsend's file goes
 * on; the response ends with it) */
enum { R_NONE, R_STARTED, R_SENT, R_FILE, R_DONE };

typedef struct proto {
	PyObject_HEAD
	struct http_conn c;		/* buf/len/cap/headers/req; fd unused */
	PyObject *transport;		/* NULL once lost */
	PyObject *client;		/* (host, port) or None; after a PROXY
					   preamble, the client it named */
	int listener;			/* index in the worker's listeners */
	int state;			/* PS_* */
	int lost, client_eof, paused_reading, paused_writing, counted;
	int proxied;			/* client was settled by client_sync() */
	uint64_t deadline_ms;
	struct proto *tprev, *tnext;	/* HEAD / IDLE / DRAIN timer lists */

	/* the current request (gen counts them; stale channels are refused) */
	uint64_t gen;
	PyObject *recv_waiter;		/* future of a waiting receive() */
	PyObject *drain_waiter;		/* future of a send() waiting for resume_writing */
	int body_kind;			/* enum http_body_kind */
	uint64_t body_left;		/* HTTP_BODY_LENGTH: bytes still to come
					   (PS_DRAIN: c.drain has them) */
	struct http_chunked chunked;
	int body_done, body_sent;	/* all read; the last http.request given */
	int want_keepalive;		/* the request allows it */
	int head_only, http10;

	/* the response */
	int rstate;			/* R_* */
	int status;
	int resp_chunked, resp_keepalive, app_server, app_date, app_close;
	int64_t resp_length;		/* -1: none given */
	uint64_t resp_sent;
	char *rhead;			/* the app's headers, serialized */
	size_t rhead_len, rhead_cap;

	PyObject *task;			/* the app's task of the current request */
	PyObject *hook_req;		/* (req, environ) from pre_ to post_request */

	/* the access log's copy of the request head (only when it is on) */
	char *alog_head;
	size_t alog_head_len, alog_head_cap;
	uint64_t alog_start_us;

	/* a websocket (RFC 6455) once the head asked for one */
	int is_ws;
	int ws_state;			/* WS_* */
	int ws_close_code;		/* for websocket.disconnect */
	PyObject *ws_queue;		/* list: messages no receive() took yet */
	PyObject *ws_accept;		/* bytes: Sec-WebSocket-Accept's value */
	char *ws_msg;			/* a fragmented message so far */
	size_t ws_msg_len, ws_msg_cap;
	int ws_msg_opcode;		/* 0: none in progress */
	int ws_msg_deflated;		/* it came with RSV1: inflated as it arrives */
	struct ws_deflate *ws_pmd;	/* permessage-deflate, once agreed */
	char *ws_ext;			/* its Sec-WebSocket-Extensions answer */
	struct proto *wsprev, *wsnext;	/* open websockets (closed when draining) */

	/* a pathsend's file under way (R_FILE) */
	int file_fd;			/* -1: none */
	int file_sock;			/* our dup of the socket while a file waits; -1 */
	int sock_fd;			/* the transport's socket: -1 until first asked */
	off_t file_pos;
	uint64_t file_left;
	size_t file_behind;		/* the transport's bytes ahead of it, last seen */
	char *file_path;		/* for the log */
	PyObject *file_waiter;		/* the app's send() waits for the file's end */
	int file_soon;			/* TLS: on_file_soon is scheduled for it */
} Proto;

enum { WS_CONNECTING, WS_CONNECT_SENT, WS_OPEN, WS_CLOSED };
#define WS_MAX_MESSAGE	(16u * 1024 * 1024)	/* uvicorn's ws_max_size */
#define WS_MAX_QUEUE	64			/* messages held before reading pauses */

/* Receive, send and the task's done callback of one request. */
enum { CH_RECEIVE, CH_SEND, CH_DONE };
typedef struct {
	PyObject_HEAD
	vectorcallfunc vectorcall;	/* called without an argument tuple */
	Proto *p;
	uint64_t gen;
	int kind;
} Channel;

/* An awaitable that is already done: `await` gives value at once. */
typedef struct {
	PyObject_HEAD
	PyObject *value;
} Ready;

struct asgi_state {
	struct http_worker_ctx *ctx;
	struct settings *cfg;
	struct http_conn_limits limits;
	int sigfd;
	PyObject *app;
	PyObject *loop, *loop_create_future, *loop_create_task;
	PyObject *enter_task, *leave_task;	/* asyncio's; NULL: no eager step */
	PyObject *kw_context;		/* ("context",): create_task's keyword */
	PyObject *base_ctx;		/* every request runs in a copy of it */
	PyObject *tasks;		/* a set: running app tasks (asyncio keeps weak refs) */
	PyObject *lifespan_state;	/* dict or NULL */
	PyObject *scope_tmpl;		/* an http scope's keys, copied per request */
	PyObject *wake;			/* glue's callable: something to look at */
	PyObject *stop_accepting;	/* glue's callable: close the servers now */
	PyObject **servers;		/* per listener: (host, port) or (path, None) */
	PyObject *root_path;
	PyObject *asgi_info, *v_http, *v_https, *v_11, *v_10, *v_http_scope;
	PyObject *schemes[3];		/* by a scope's scheme + 1: none said (the
					   listener's: https under TLS), http, https */
	PyObject *k_type, *k_asgi, *k_http_version, *k_server, *k_client, *k_scheme,
	    *k_method, *k_root_path, *k_path, *k_raw_path, *k_query_string,
	    *k_headers, *k_state, *k_body, *k_more_body, *k_status, *k_code, *k_text,
	    *k_bytes, *k_subprotocol, *k_subprotocols, *k_reason, *v_websocket, *v_ws, *v_wss;
	PyObject *m_request, *m_disconnect_msg, *v_empty_bytes;
	PyObject *s_write, *s_close, *s_pause_reading, *s_resume_reading,
	    *s_set_result, *s_done, *s_result, *s_add_done_callback,
	    *s_get_extra_info, *s_peername, *s_discard, *s_add, *s_start,
	    *s_body_msg, *s_copy, *s_throw;
	PyObject *methods[9];
	struct ip_allow forwarded_allow;	/* forwarded_allow_ips */
	PyObject *ext_http, *ext_ws;	/* scope["extensions"] (copied per request) */
	PyObject *k_extensions, *s_pathsend_msg, *s_get_write_buffer_size, *s_abort;
	PyObject *s_call_soon;
	PyObject *on_files;		/* asgi_proto.c's callback for file_ep */
	PyObject *on_file_soon;		/* asgi_proto.c's callback: a TLS file goes on */
	int file_ep;			/* epoll: sockets a file waits for; -1 until used */
	int tls;			/* the listeners speak TLS (certfile): the transports
					   are the loop's SSL ones; no raw socket is written */
	int in_app;			/* > 0: inside the app's send/receive: no eager step */
	struct { Proto *head, *tail; } timers[PS_TIMED];	/* by state */
	size_t nconns;
	size_t max_conns;		/* worker_connections */
	int full;			/* at max_conns: the glue stops accepting */
	Proto *websockets;		/* list of open ones */
	int websockets_closed;		/* draining closed them */
	unsigned long served, limit;
	struct { char *buf; struct http_header *headers; } spare[ASGI_SPARE];
	int nspare;			/* buf_release() keeps them */
	int stopping;
	uint64_t stop_deadline, keepalive_ms, next_look;
};
extern struct asgi_state asgi;


/* asgi_state.c */
extern PyTypeObject asgi_ready_type;
PyObject *asgi_error_page(int status, const char *mesg);
uint64_t asgi_realtime_us(void);
void asgi_refuse(Proto *p, int status, const char *why);

/* asgi_hooks.c */
void asgi_hook_pre_request(Proto *p);
void asgi_hook_post_request(Proto *p, int status);
void asgi_disconnect_grace(Proto *p);
int asgi_cancelled_after_disconnect(Proto *p);

/* asgi_alog.c (and asgi_alog.h) */
void asgi_alog_keep_head(Proto *p);
void asgi_access_log(Proto *p, int status);

/* asgi_file.c */
enum { ASGI_FILE_DONE, ASGI_FILE_WAITS, ASGI_FILE_FAILED };
int asgi_file_open(PyObject *path, int *fd, uint64_t *size, PyObject **fspath);
int asgi_file_start(Proto *p, PyObject *head, int fd, uint64_t count, const char *path);
int asgi_file_step(Proto *p);
int asgi_file_ready(Proto **out, int max);
int asgi_file_resumed(Proto *p);
int asgi_file_soon_due(Proto *p);
void asgi_file_abort(Proto *p);

/* asgi_task.c */
enum { ASGI_TASK_FAILED = -1, ASGI_TASK_DONE, ASGI_TASK_WAITS };
int asgi_task_start(PyObject *coro, PyObject **out);
int asgi_task_configure(void);
int asgi_task_types_ready(void);

/* asgi_http.c */
extern const char *const asgi_method_names[9];
PyObject *asgi_build_scope(Proto *p, const char **bad);
PyObject *asgi_http_begin(Proto *p);
PyObject *asgi_body_message(Proto *p, int *bad);
PyObject *asgi_disconnect_message(void);
void asgi_feed_receiver(Proto *p);
int asgi_response_start(Proto *p, PyObject *msg);
int asgi_response_body(Proto *p, PyObject *msg);
int asgi_response_pathsend(Proto *p, PyObject *msg);
int asgi_response_file_end(Proto *p);
void asgi_response_file_failed(Proto *p);
int asgi_drain_take(Proto *p, const char *s, size_t n, size_t *used);
int asgi_drain_next(Proto *p);

/* asgi_ws.c */
int asgi_ws_wanted(const struct http_request *q);
PyObject *asgi_ws_start(Proto *p);
void asgi_ws_feed(Proto *p);
void asgi_ws_fail(Proto *p, int code, const char *why);
void asgi_ws_unlink(Proto *p);
void asgi_ws_ended(Proto *p);
void asgi_ws_free(Proto *p);
PyObject *asgi_ws_disconnect_message(int code);
void asgi_ws_deliver(Proto *p, PyObject *m);
PyObject *asgi_ws_receive(Proto *p);
int asgi_ws_send(Proto *p, PyObject *msg, PyObject *type);


/* ---- small helpers (inline: they are on every request's path) ---- */

static inline Ready *
ready_new(PyObject *value)
{
	Ready *r = PyObject_New(Ready, &asgi_ready_type);

	if (r != NULL)
		r->value = Py_NewRef(value);
	return r;
}

static inline void
wake_glue(void)
{
	PyObject *r;

	if (asgi.wake == NULL)
		return;
	if ((r = PyObject_CallNoArgs(asgi.wake)) == NULL)
		PyErr_Clear();
	Py_XDECREF(r);
}

static inline void
timer_del(Proto *p)
{
	int l = p->state;

	if (l >= PS_TIMED)
		return;
	if (p->tprev != NULL)
		p->tprev->tnext = p->tnext;
	else if (asgi.timers[l].head == p)
		asgi.timers[l].head = p->tnext;
	else
		return;
	if (p->tnext != NULL)
		p->tnext->tprev = p->tprev;
	else
		asgi.timers[l].tail = p->tprev;
	p->tprev = p->tnext = NULL;
}

/* Enter state st; a timed one (HEAD, IDLE, DRAIN) gets a deadline ms
 * from now, inserted in order from its list's tail: O(1) for HEAD and
 * IDLE, whose deadlines are all now + the same constant; DRAIN's depend
 * on the bytes left. */
static inline void
set_state(Proto *p, int st, uint64_t ms)
{
	timer_del(p);
	p->state = st;
	if (st >= PS_TIMED)
		return;
	Proto *prev = asgi.timers[st].tail;
	p->deadline_ms = monotonic_ms() + ms;
	while (prev != NULL && prev->deadline_ms > p->deadline_ms)
		prev = prev->tprev;
	p->tprev = prev;
	p->tnext = prev != NULL ? prev->tnext : asgi.timers[st].head;
	if (p->tnext != NULL)
		p->tnext->tprev = p;
	else
		asgi.timers[st].tail = p;
	if (prev != NULL)
		prev->tnext = p;
	else
		asgi.timers[st].head = p;
}

static inline void
transport_call(Proto *p, PyObject *name)
{
	PyObject *r;

	if (p->transport == NULL)
		return;
	r = PyObject_CallMethodNoArgs(p->transport, name);
	if (r == NULL)
		PyErr_Clear();
	Py_XDECREF(r);
}

static inline int
transport_write(Proto *p, PyObject *bytes)
{
	PyObject *r;

	if (p->transport == NULL)
		return 0;
	r = PyObject_CallMethodOneArg(p->transport, asgi.s_write, bytes);
	if (r == NULL)
		return -1;
	Py_DECREF(r);
	return 0;
}

static inline void
proto_close(Proto *p)
{
	if (p->state == PS_CLOSING)
		return;
	set_state(p, PS_CLOSING, 0);
	if (p->file_fd >= 0)
		asgi_file_abort(p);	/* before the transport closes its socket */
	transport_call(p, asgi.s_close);
}

/* Resolve a waiting future (if the app did not cancel it). */
static inline void
future_resolve(PyObject **fp, PyObject *value)
{
	PyObject *f = *fp, *r;

	*fp = NULL;
	if (f == NULL)
		return;
	r = PyObject_CallMethodNoArgs(f, asgi.s_done);
	if (r != NULL && r == Py_False) {
		Py_DECREF(r);
		r = PyObject_CallMethodOneArg(f, asgi.s_set_result, value);
	}
	if (r == NULL)
		PyErr_Clear();
	Py_XDECREF(r);
	Py_DECREF(f);
}

static inline PyObject *
new_future(void)
{
	return PyObject_CallNoArgs(asgi.loop_create_future);
}

/* The buffer: room for n more bytes.  Bounded by the caller (reading
 * pauses at cap), so growth is at most one transport read past it. */
static inline void
buf_reserve(Proto *p, size_t n)
{
	if (p->c.buf == NULL) {
		if (asgi.nspare > 0) {	/* a buffer of a connection gone idle */
			asgi.nspare--;
			p->c.buf = asgi.spare[asgi.nspare].buf;
			p->c.headers = asgi.spare[asgi.nspare].headers;
			p->c.cap = FIRST_BUF;
			p->c.len = 0;
		} else
			http_conn_alloc(&p->c, &asgi.limits, FIRST_BUF);
	}
	if (p->c.len + n <= p->c.cap)
		return;
	size_t want = p->c.cap * 2;
	if (want < p->c.len + n)
		want = p->c.len + n;
	p->c.buf = xrealloc(p->c.buf, want);
	p->c.cap = want;
}

/* The connection needs no buffer for now (idle or gone): a first-size
 * one is kept for the next connection that needs one (malloc and the
 * header array's calloc per keep-alive request cost more than the rest
 * of a hello world's C). */
static inline void
buf_release(Proto *p)
{
	if (p->c.buf != NULL && p->c.cap == FIRST_BUF && asgi.nspare < ASGI_SPARE) {
		asgi.spare[asgi.nspare].buf = p->c.buf;
		asgi.spare[asgi.nspare].headers = p->c.headers;
		asgi.nspare++;
		p->c.buf = NULL;
		p->c.headers = NULL;
		p->c.len = p->c.cap = 0;
		return;
	}
	http_conn_free_buffers(&p->c);
}

static inline void
buf_consume(Proto *p, size_t n)
{
	if (n >= p->c.len) {
		p->c.len = 0;
		return;
	}
	memmove(p->c.buf, p->c.buf + n, p->c.len - n);
	p->c.len -= n;
}

static inline int
asgi_bytes_of(PyObject *o, const char **s, Py_ssize_t *n)
{
	if (PyBytes_Check(o)) {
		*s = PyBytes_AS_STRING(o);
		*n = PyBytes_GET_SIZE(o);
		return 0;
	}
	if (PyByteArray_Check(o)) {
		*s = PyByteArray_AS_STRING(o);
		*n = PyByteArray_GET_SIZE(o);
		return 0;
	}
	if (PyUnicode_Check(o)) {	/* lenient: latin-1 text */
		if ((*s = PyUnicode_AsUTF8AndSize(o, n)) == NULL)
			return -1;
		return 0;
	}
	PyErr_Format(PyExc_TypeError, "expected bytes, got %.100s", Py_TYPE(o)->tp_name);
	return -1;
}

#endif
