/*
 * asgi_proto.c — the built-in module _cunicorn_asgi: HTTP/1.x for ASGI
 * 3.0 apps on an asyncio event loop, in C (the worker: asgi_worker.c;
 * the loop and lifespan: python/cunicorn/_asgi.py).
 *
 * Owns: one Protocol object per connection (asyncio's Protocol
 * interface: connection_made, data_received, eof_received,
 * connection_lost, pause_writing, resume_writing) with its read buffer
 * (http_conn.c's), head parsing (http_parser.c), the request limits and
 * the two deadlines (a whole head within limits.head_timeout_ms; an idle
 * keep-alive connection closes after `keepalive` s), the `http` scope,
 * the receive/send awaitables, response framing (Content-Length or
 * chunked, keep-alive, HEAD, Date/Server), gunicorn's error pages, and
 * the worker's stop/drain state that the glue polls with tick().
 *
 * One request at a time per connection: the app runs as a task; bytes of
 * pipelined requests wait in the buffer and the next request starts once
 * the response is complete (uvicorn does the same).  A connection closes
 * only between requests while the worker drains.  Everything here runs
 * on the loop's thread with the GIL held; nothing blocks.
 *
 * Errors as gunicorn: an exception before the response started is a 500
 * page and the connection closes; after, the connection just closes.
 * After the client went away, send() is a no-op and receive() returns
 * http.disconnect (uvicorn's contract, on which frameworks rely).
 *
 * Never: reads more than one buffer ahead of the app (reading pauses at
 * head_max + body_room bytes), allocates from a peer's length unchecked,
 * or writes to a socket itself (the transport does, with flow control).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>

#include "asgi.h"
#include "asgi_alog.h"
#include "http_conn.h"
#include "http_parser.h"
#include "http_worker.h"
#include "listen.h"
#include "log.h"
#include "python.h"
#include "settings.h"
#include "sigpipe.h"
#include "util.h"
#include "wsgi.h"
#include "ws_frame.h"

#define SERVER_HEADER	"cunicorn"
#define FIRST_BUF	(16 * 1024)
#define DRAIN_MAX	(1u << 20)	/* unread body skipped to keep a connection */

enum { PS_HEAD, PS_IDLE, PS_BUSY, PS_CLOSING };

/* response progress */
enum { R_NONE, R_STARTED, R_SENT, R_DONE };

typedef struct proto {
	PyObject_HEAD
	struct http_conn c;		/* buf/len/cap/headers/req; fd unused */
	PyObject *transport;		/* NULL once lost */
	PyObject *client;		/* (host, port) or None */
	int listener;			/* index in the worker's listeners */
	int state;			/* PS_* */
	int lost, client_eof, paused_reading, paused_writing, counted;
	uint64_t deadline_ms;
	struct proto *tprev, *tnext;	/* HEAD / IDLE timer lists */

	/* the current request (gen counts them; stale channels are refused) */
	uint64_t gen;
	PyObject *recv_waiter;		/* future of a waiting receive() */
	PyObject *drain_waiter;		/* future of a send() waiting for resume_writing */
	int body_kind;			/* enum http_body_kind */
	uint64_t body_left;		/* HTTP_BODY_LENGTH: bytes still to come */
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
	struct proto *wsprev, *wsnext;	/* open websockets (closed when draining) */
} Proto;

enum { WS_CONNECTING, WS_CONNECT_SENT, WS_OPEN, WS_CLOSED };
#define WS_MAX_MESSAGE	(16u * 1024 * 1024)	/* uvicorn's ws_max_size */
#define WS_MAX_QUEUE	64			/* messages held before reading pauses */

/* Receive, send and the task's done callback of one request. */
enum { CH_RECEIVE, CH_SEND, CH_DONE };
typedef struct {
	PyObject_HEAD
	Proto *p;
	uint64_t gen;
	int kind;
} Channel;

/* An awaitable that is already done: `await` gives value at once. */
typedef struct {
	PyObject_HEAD
	PyObject *value;
} Ready;

static PyTypeObject ProtoType, ChannelType, ReadyType;

static struct {
	struct http_worker_ctx *ctx;
	struct settings *cfg;
	struct http_conn_limits limits;
	int sigfd;
	PyObject *app;
	PyObject *loop_create_future, *loop_create_task;
	PyObject *tasks;		/* a set: running app tasks (asyncio keeps weak refs) */
	PyObject *lifespan_state;	/* dict or NULL */
	PyObject *wake;			/* glue's callable: something to look at */
	PyObject *stop_accepting;	/* glue's callable: close the servers now */
	PyObject **servers;		/* per listener: (host, port) or (path, None) */
	PyObject *root_path;
	PyObject *asgi_info, *v_http, *v_https, *v_11, *v_10, *v_http_scope;
	PyObject *k_type, *k_asgi, *k_http_version, *k_server, *k_client, *k_scheme,
	    *k_method, *k_root_path, *k_path, *k_raw_path, *k_query_string,
	    *k_headers, *k_state, *k_body, *k_more_body, *k_status, *k_code, *k_text,
	    *k_bytes, *k_subprotocol, *k_subprotocols, *k_reason, *v_websocket, *v_ws, *v_wss;
	PyObject *m_request, *m_disconnect_msg, *v_empty_bytes;
	PyObject *s_write, *s_close, *s_pause_reading, *s_resume_reading,
	    *s_set_result, *s_done, *s_result, *s_add_done_callback,
	    *s_get_extra_info, *s_peername, *s_discard, *s_add, *s_start,
	    *s_body_msg, *s_copy;
	PyObject *methods[9];
	int trust_all;
	struct { Proto *head, *tail; } timers[2];	/* PS_HEAD, PS_IDLE */
	size_t nconns;
	size_t max_conns;		/* worker_connections */
	int full;			/* at max_conns: the glue stops accepting */
	Proto *websockets;		/* list of open ones */
	int websockets_closed;		/* draining closed them */
	unsigned long served, limit;
	int stopping;
	uint64_t stop_deadline, keepalive_ms, next_look;
} A;

static const char *const method_names[9] = {
	"GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE",
};

/* ---- small helpers ---- */

static Ready *
ready_new(PyObject *value)
{
	Ready *r = PyObject_New(Ready, &ReadyType);

	if (r != NULL)
		r->value = Py_NewRef(value);
	return r;
}

static void
wake_glue(void)
{
	PyObject *r;

	if (A.wake == NULL)
		return;
	if ((r = PyObject_CallNoArgs(A.wake)) == NULL)
		PyErr_Clear();
	Py_XDECREF(r);
}

static void
timer_del(Proto *p)
{
	int l = p->state == PS_IDLE ? 1 : 0;

	if (p->state != PS_HEAD && p->state != PS_IDLE)
		return;
	if (p->tprev != NULL)
		p->tprev->tnext = p->tnext;
	else if (A.timers[l].head == p)
		A.timers[l].head = p->tnext;
	else
		return;
	if (p->tnext != NULL)
		p->tnext->tprev = p->tprev;
	else
		A.timers[l].tail = p->tprev;
	p->tprev = p->tnext = NULL;
}

/* Enter state st; HEAD and IDLE get a deadline ms from now (FIFO lists:
 * every deadline of a list is now + the same constant). */
static void
set_state(Proto *p, int st, uint64_t ms)
{
	timer_del(p);
	p->state = st;
	if (st != PS_HEAD && st != PS_IDLE)
		return;
	int l = st == PS_IDLE ? 1 : 0;
	p->deadline_ms = monotonic_ms() + ms;
	p->tprev = A.timers[l].tail;
	p->tnext = NULL;
	if (A.timers[l].tail != NULL)
		A.timers[l].tail->tnext = p;
	else
		A.timers[l].head = p;
	A.timers[l].tail = p;
}

static void
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

static int
transport_write(Proto *p, PyObject *bytes)
{
	PyObject *r;

	if (p->transport == NULL)
		return 0;
	r = PyObject_CallMethodOneArg(p->transport, A.s_write, bytes);
	if (r == NULL)
		return -1;
	Py_DECREF(r);
	return 0;
}

static void
proto_close(Proto *p)
{
	if (p->state == PS_CLOSING)
		return;
	set_state(p, PS_CLOSING, 0);
	transport_call(p, A.s_close);
}

/* Resolve a waiting future (if the app did not cancel it). */
static void
future_resolve(PyObject **fp, PyObject *value)
{
	PyObject *f = *fp, *r;

	*fp = NULL;
	if (f == NULL)
		return;
	r = PyObject_CallMethodNoArgs(f, A.s_done);
	if (r != NULL && r == Py_False) {
		Py_DECREF(r);
		r = PyObject_CallMethodOneArg(f, A.s_set_result, value);
	}
	if (r == NULL)
		PyErr_Clear();
	Py_XDECREF(r);
	Py_DECREF(f);
}

static PyObject *
new_future(void)
{
	return PyObject_CallNoArgs(A.loop_create_future);
}

/* The buffer: room for n more bytes.  Bounded by the caller (reading
 * pauses at cap), so growth is at most one transport read past it. */
static void
buf_reserve(Proto *p, size_t n)
{
	if (p->c.buf == NULL)
		http_conn_alloc(&p->c, &A.limits, FIRST_BUF);
	if (p->c.len + n <= p->c.cap)
		return;
	size_t want = p->c.cap * 2;
	if (want < p->c.len + n)
		want = p->c.len + n;
	p->c.buf = xrealloc(p->c.buf, want);
	p->c.cap = want;
}

static void
buf_consume(Proto *p, size_t n)
{
	if (n >= p->c.len) {
		p->c.len = 0;
		return;
	}
	memmove(p->c.buf, p->c.buf + n, p->c.len - n);
	p->c.len -= n;
}

/* gunicorn's error page as bytes. */
static PyObject *
error_page(int status, const char *mesg)
{
	const char *reason = http_reason_phrase(status);
	char esc[1024], body[2048];
	size_t e = 0;
	int blen;

	for (const char *s = mesg; *s && e + 7 < sizeof(esc); s++) {
		const char *r = *s == '<' ? "&lt;" : *s == '>' ? "&gt;" : *s == '&' ? "&amp;" :
		    *s == '"' ? "&quot;" : *s == '\'' ? "&#x27;" : NULL;
		if (r != NULL) {
			memcpy(esc + e, r, strlen(r));
			e += strlen(r);
		} else
			esc[e++] = *s;
	}
	esc[e] = '\0';
	blen = snprintf(body, sizeof(body), "<html>\n  <head>\n    <title>%s</title>\n"
	    "  </head>\n  <body>\n    <h1><p>%s</p></h1>\n    %s\n  </body>\n</html>\n",
	    reason, reason, esc);
	if (blen < 0 || (size_t)blen >= sizeof(body))
		blen = (int)strlen(body);
	return PyBytes_FromFormat("HTTP/1.1 %d %s\r\nConnection: close\r\n"
	    "Content-Type: text/html\r\nContent-Length: %d\r\n\r\n%s",
	    status, reason, blen, body);
}

static uint64_t
realtime_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* One access log line for the request just answered with status. */
static void
access_log(Proto *p, int status)
{
	struct asgi_alog_entry e;
	const char *client = NULL;

	if (!asgi_alog_enabled() || p->alog_head_len == 0)
		return;
	if (p->client != NULL && PyTuple_Check(p->client) &&
	    PyUnicode_Check(PyTuple_GET_ITEM(p->client, 0)))
		client = PyUnicode_AsUTF8(PyTuple_GET_ITEM(p->client, 0));
	PyErr_Clear();
	e = (struct asgi_alog_entry){
		.head = p->alog_head,
		.head_len = p->alog_head_len,
		.client = client,
		.status = status,
		.sent = p->resp_sent,
		.resp_headers = p->rhead,
		.resp_headers_len = p->rhead_len,
		.elapsed_us = realtime_us() - p->alog_start_us,
	};
	asgi_alog_write(&e);
	p->alog_head_len = 0;
}

static void
refuse(Proto *p, int status, const char *why)
{
	PyObject *page = error_page(status, why);

	log_debug("Invalid request: %s", why);
	if (page == NULL || transport_write(p, page) == -1)
		PyErr_Clear();
	Py_XDECREF(page);
	p->c.len = 0;
	proto_close(p);
}

/* ---- the scope ---- */

static int
hexval(int c)
{
	if (c >= '0' && c <= '9') return c - '0';
	if (c >= 'a' && c <= 'f') return c - 'a' + 10;
	if (c >= 'A' && c <= 'F') return c - 'A' + 10;
	return -1;
}

/* urllib.parse.unquote(raw) as uvicorn: percent-decoded, UTF-8, errors
 * replaced. */
static PyObject *
decoded_path(const char *s, size_t n)
{
	char stackbuf[512], *out;
	size_t o = 0;
	PyObject *r;

	if (memchr(s, '%', n) == NULL)
		return PyUnicode_DecodeUTF8(s, (Py_ssize_t)n, "replace");
	out = n <= sizeof(stackbuf) ? stackbuf : xmalloc(n);
	for (size_t i = 0; i < n; i++) {
		int hi, lo;
		if (s[i] == '%' && i + 2 < n && (hi = hexval(s[i + 1])) >= 0 &&
		    (lo = hexval(s[i + 2])) >= 0) {
			out[o++] = (char)(hi * 16 + lo);
			i += 2;
		} else
			out[o++] = s[i];
	}
	r = PyUnicode_DecodeUTF8(out, (Py_ssize_t)o, "replace");
	if (out != stackbuf)
		free(out);
	return r;
}

static int
set_new(PyObject *d, PyObject *k, PyObject *v)
{
	int rc;

	if (v == NULL)
		return -1;
	rc = PyDict_SetItem(d, k, v);
	Py_DECREF(v);
	return rc;
}

static int
peer_trusted(Proto *p)
{
	PyObject *host;
	const char *h;

	if (A.trust_all || p->client == Py_None)
		return 1;
	host = PyTuple_GET_ITEM(p->client, 0);
	if (!PyUnicode_Check(host) || (h = PyUnicode_AsUTF8(host)) == NULL) {
		PyErr_Clear();
		return 0;
	}
	for (size_t i = 0; i < A.cfg->forwarded_allow_ips.len; i++)
		if (strcmp(A.cfg->forwarded_allow_ips.items[i], h) == 0)
			return 1;
	return 0;
}

/* The http scope of p->c.req; NULL with *bad set (400) or an exception. */
static PyObject *
build_scope(Proto *p, const char **bad)
{
	const struct http_request *q = &p->c.req;
	PyObject *s, *hl, *v;
	int scheme = -1, trusted = -1;
	char lname[256];

	*bad = NULL;
	if ((s = PyDict_New()) == NULL)
		return NULL;
	if (PyDict_SetItem(s, A.k_type, A.v_http_scope) == -1 ||
	    PyDict_SetItem(s, A.k_asgi, A.asgi_info) == -1 ||
	    PyDict_SetItem(s, A.k_http_version, p->http10 ? A.v_10 : A.v_11) == -1 ||
	    PyDict_SetItem(s, A.k_server, A.servers[p->listener]) == -1 ||
	    PyDict_SetItem(s, A.k_client, p->client) == -1 ||
	    PyDict_SetItem(s, A.k_root_path, A.root_path) == -1)
		goto fail;
	v = NULL;
	for (int i = 0; i < 9; i++)
		if (strlen(method_names[i]) == q->method_len &&
		    memcmp(method_names[i], q->method, q->method_len) == 0)
			v = Py_NewRef(A.methods[i]);
	if (v == NULL)
		v = PyUnicode_DecodeLatin1(q->method, (Py_ssize_t)q->method_len, NULL);
	if (set_new(s, A.k_method, v) == -1 ||
	    set_new(s, A.k_path, decoded_path(q->path, q->path_len)) == -1 ||
	    set_new(s, A.k_raw_path, PyBytes_FromStringAndSize(q->path,
	        (Py_ssize_t)q->path_len)) == -1 ||
	    set_new(s, A.k_query_string, PyBytes_FromStringAndSize(q->query,
	        (Py_ssize_t)q->query_len)) == -1)
		goto fail;
	if ((hl = PyList_New((Py_ssize_t)q->nheaders)) == NULL)
		goto fail;
	if (PyDict_SetItem(s, A.k_headers, hl) == -1) {
		Py_DECREF(hl);
		goto fail;
	}
	Py_DECREF(hl);
	for (size_t i = 0; i < q->nheaders; i++) {
		const struct http_header *h = &q->headers[i];
		PyObject *name, *val, *t;
		char *ln = h->name_len <= sizeof(lname) ? lname : xmalloc(h->name_len);
		for (size_t j = 0; j < h->name_len; j++) {
			unsigned char ch = (unsigned char)h->name[j];
			ln[j] = (char)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
		}
		for (size_t j = 0; j < A.cfg->secure_scheme_names.len; j++) {
			const char *sn = A.cfg->secure_scheme_names.items[j];
			if (strlen(sn) != h->name_len || strncasecmp(sn, h->name, h->name_len) != 0)
				continue;
			if (trusted == -1)
				trusted = peer_trusted(p);
			if (!trusted)
				break;
			const char *sv = A.cfg->secure_scheme_values.items[j];
			int https = strlen(sv) == h->value_len &&
			    memcmp(sv, h->value, h->value_len) == 0;
			if (scheme != -1 && scheme != https) {
				*bad = "Contradictory scheme headers";
				if (ln != lname)
					free(ln);
				goto fail;
			}
			scheme = https;
		}
		name = PyBytes_FromStringAndSize(ln, (Py_ssize_t)h->name_len);
		if (ln != lname)
			free(ln);
		val = PyBytes_FromStringAndSize(h->value, (Py_ssize_t)h->value_len);
		if (name == NULL || val == NULL || (t = PyTuple_New(2)) == NULL) {
			Py_XDECREF(name);
			Py_XDECREF(val);
			goto fail;
		}
		PyTuple_SET_ITEM(t, 0, name);
		PyTuple_SET_ITEM(t, 1, val);
		PyList_SET_ITEM(hl, (Py_ssize_t)i, t);
	}
	if (PyDict_SetItem(s, A.k_scheme, scheme == 1 ? A.v_https : A.v_http) == -1)
		goto fail;
	if (A.lifespan_state != NULL &&
	    set_new(s, A.k_state, PyDict_Copy(A.lifespan_state)) == -1)
		goto fail;
	return s;
fail:
	Py_DECREF(s);
	return NULL;
}

/* ---- requests ---- */

static PyObject *
channel_new(Proto *p, int kind)
{
	Channel *ch = PyObject_New(Channel, &ChannelType);

	if (ch == NULL)
		return NULL;
	ch->p = (Proto *)Py_NewRef(p);
	ch->gen = p->gen;
	ch->kind = kind;
	return (PyObject *)ch;
}

static void try_head(Proto *p);
static int ws_wanted(const struct http_request *q);
static void ws_start(Proto *p);

/* Call the app with scope (stolen) and this request's channels; run the
 * coroutine as a task.  A failure to even start is a 500. */
static void
run_app(Proto *p, PyObject *scope)
{
	PyObject *recv = NULL, *send = NULL, *done = NULL, *coro = NULL, *task = NULL, *r;

	if ((recv = channel_new(p, CH_RECEIVE)) == NULL ||
	    (send = channel_new(p, CH_SEND)) == NULL ||
	    (done = channel_new(p, CH_DONE)) == NULL)
		goto fail;
	if ((coro = PyObject_CallFunctionObjArgs(A.app, scope, recv, send, NULL)) == NULL)
		goto fail;
	if ((task = PyObject_CallOneArg(A.loop_create_task, coro)) == NULL)
		goto fail;
	if (PySet_Add(A.tasks, task) == -1)
		goto fail;
	if ((r = PyObject_CallMethodOneArg(task, A.s_add_done_callback, done)) == NULL)
		goto fail;
	Py_DECREF(r);
	Py_DECREF(scope);
	Py_DECREF(recv);
	Py_DECREF(send);
	Py_DECREF(done);
	Py_DECREF(coro);
	Py_DECREF(task);
	return;
fail:
	python_log_exception(LOG_ERROR, LOG_ERROR, "Exception in ASGI application");
	Py_XDECREF(scope);
	Py_XDECREF(recv);
	Py_XDECREF(send);
	Py_XDECREF(done);
	Py_XDECREF(coro);
	Py_XDECREF(task);
	if ((p->rstate == R_NONE || p->rstate == R_STARTED) &&
	    (!p->is_ws || p->ws_state < WS_OPEN)) {
		PyObject *page = error_page(500, "");
		if (page == NULL || transport_write(p, page) == -1)
			PyErr_Clear();
		Py_XDECREF(page);
	}
	p->rstate = R_DONE;
	proto_close(p);
}

/* A parsed head in p->c.req: build the scope, run the app as a task. */
static void
start_request(Proto *p)
{
	const struct http_request *q = &p->c.req;
	PyObject *scope;
	const char *bad;

	if (q->version_major != 1 || q->version_minor > 1) {
		refuse(p, 505, "Unsupported HTTP version");
		return;
	}
	if (ws_wanted(q)) {
		ws_start(p);
		return;
	}
	p->gen++;
	p->http10 = q->version_minor == 0;
	p->head_only = q->method_len == 4 && memcmp(q->method, "HEAD", 4) == 0;
	p->want_keepalive = q->keep_alive && A.keepalive_ms > 0;
	p->body_kind = q->body;
	p->body_left = q->body == HTTP_BODY_LENGTH ? q->content_length : 0;
	p->body_done = q->body == HTTP_BODY_NONE;
	p->body_sent = 0;
	http_chunked_init(&p->chunked);
	p->rstate = R_NONE;
	p->status = 0;
	p->resp_chunked = p->resp_keepalive = p->app_server = p->app_date = p->app_close = 0;
	p->resp_length = -1;
	p->resp_sent = 0;
	p->rhead_len = 0;

	if ((scope = build_scope(p, &bad)) == NULL) {
		if (bad != NULL) {
			PyErr_Clear();
			refuse(p, 400, bad);
		} else {
			python_log_exception(LOG_ERROR, LOG_ERROR, "asgi scope");
			refuse(p, 500, "");
		}
		return;
	}
	if (asgi_alog_enabled()) {
		if (q->head_len > p->alog_head_cap) {
			p->alog_head = xrealloc(p->alog_head, q->head_len);
			p->alog_head_cap = q->head_len;
		}
		memcpy(p->alog_head, p->c.buf, q->head_len);
		p->alog_head_len = q->head_len;
		p->alog_start_us = realtime_us();
	}
	/* the head is in the scope now: keep only the body and what follows */
	int expect_continue = q->expect_continue;
	buf_consume(p, q->head_len);
	memset(&p->c.req, 0, sizeof(p->c.req));
	set_state(p, PS_BUSY, 0);
	if (expect_continue && !p->body_done) {
		PyObject *cont = PyBytes_FromString("HTTP/1.1 100 Continue\r\n\r\n");
		if (cont == NULL || transport_write(p, cont) == -1)
			PyErr_Clear();
		Py_XDECREF(cont);
	}
	A.served++;
	if (A.limit > 0 && A.served >= A.limit && !A.stopping) {
		log_info("Autorestarting worker after current request.");
		A.stopping = 1;
		A.stop_deadline = monotonic_ms() + (uint64_t)(A.cfg->graceful_timeout > 0 ?
		    A.cfg->graceful_timeout : 0) * 1000u;
		wake_glue();
	}

	run_app(p, scope);
}

/* Bytes of the request body now in the buffer: the next http.request
 * message, or NULL without exception when none is ready yet (or with
 * one).  Consumes what it returns. */
static PyObject *
body_message(Proto *p, int *bad)
{
	PyObject *body, *m;
	size_t n = 0;

	*bad = 0;
	if (p->body_kind == HTTP_BODY_LENGTH) {
		n = p->c.len < p->body_left ? p->c.len : (size_t)p->body_left;
		if (n == 0 && p->body_left > 0)
			return NULL;
		body = PyBytes_FromStringAndSize(p->c.buf, (Py_ssize_t)n);
		if (body == NULL)
			return NULL;
		buf_consume(p, n);
		p->body_left -= n;
		p->body_done = p->body_left == 0;
	} else if (p->body_kind == HTTP_BODY_CHUNKED) {
		size_t in = 0, out = 0;
		while (!p->chunked.done && in < p->c.len) {
			size_t used;
			const char *data;
			size_t dlen;
			struct http_error err;
			int r = http_chunked_next(&p->chunked, p->c.buf + in, p->c.len - in,
			    &used, &data, &dlen, &err);
			if (r == HTTP_PARSE_ERROR) {
				log_debug("Invalid chunked body: %s", err.reason);
				*bad = 1;
				return NULL;
			}
			if (r == HTTP_PARSE_OK && dlen > 0) {
				memmove(p->c.buf + out, data, dlen);	/* out <= data */
				out += dlen;
			}
			in += used;
			if (r == HTTP_PARSE_INCOMPLETE)
				break;
		}
		p->body_done = p->chunked.done;
		if (out == 0 && !p->body_done) {
			buf_consume(p, in);
			return NULL;
		}
		body = PyBytes_FromStringAndSize(p->c.buf, (Py_ssize_t)out);
		if (body == NULL)
			return NULL;
		buf_consume(p, in);
	} else {
		p->body_done = 1;
		body = Py_NewRef(A.v_empty_bytes);
	}
	if ((m = PyDict_New()) == NULL ||
	    PyDict_SetItem(m, A.k_type, A.m_request) == -1 ||
	    PyDict_SetItem(m, A.k_body, body) == -1 ||
	    PyDict_SetItem(m, A.k_more_body, p->body_done ? Py_False : Py_True) == -1) {
		Py_XDECREF(m);
		Py_DECREF(body);
		return NULL;
	}
	Py_DECREF(body);
	if (p->body_done)
		p->body_sent = 1;
	if (p->paused_reading && p->c.len < p->c.cap / 2 && !p->lost) {
		p->paused_reading = 0;
		transport_call(p, A.s_resume_reading);
	}
	return m;
}

static PyObject *
disconnect_message(void)
{
	PyObject *m = PyDict_New();

	if (m != NULL && PyDict_SetItem(m, A.k_type, A.m_disconnect_msg) == -1)
		Py_CLEAR(m);
	return m;
}

/* A receive() is waiting and bytes came (or the client went). */
static void
feed_receiver(Proto *p)
{
	PyObject *m;
	int bad;

	if (p->recv_waiter == NULL)
		return;
	if (p->lost || p->rstate == R_DONE || (p->client_eof && (p->body_sent ||
	    p->c.len == 0))) {
		if ((m = disconnect_message()) != NULL)
			future_resolve(&p->recv_waiter, m);
		Py_XDECREF(m);
		PyErr_Clear();
		return;
	}
	if (p->body_sent)
		return;		/* waits for the disconnect */
	m = body_message(p, &bad);
	if (m != NULL) {
		future_resolve(&p->recv_waiter, m);
		Py_DECREF(m);
	} else if (bad) {
		refuse(p, 400, "Invalid chunked body");
	}
	PyErr_Clear();
}

/* The response is complete: the connection lives on or closes. */
static void
response_done(Proto *p)
{
	p->rstate = R_DONE;
	access_log(p, p->status);
	feed_receiver(p);	/* a pending receive() gets http.disconnect */
	if (!p->resp_keepalive || p->lost || p->client_eof) {
		proto_close(p);
		return;
	}
	/* drop what the app did not read of the body, if it is here */
	if (!p->body_done) {
		if (p->body_kind == HTTP_BODY_LENGTH && p->c.len >= p->body_left) {
			buf_consume(p, (size_t)p->body_left);
			p->body_left = 0;
			p->body_done = 1;
		} else if (p->body_kind == HTTP_BODY_CHUNKED) {
			int bad;
			PyObject *m;
			while (!p->body_done && (m = body_message(p, &bad)) != NULL)
				Py_DECREF(m);
			PyErr_Clear();
		}
		if (!p->body_done) {
			proto_close(p);
			return;
		}
	}
	if (A.stopping) {
		proto_close(p);
		return;
	}
	if (p->c.len > 0) {
		set_state(p, PS_HEAD, (uint64_t)A.limits.head_timeout_ms);
		try_head(p);
		return;
	}
	http_conn_free_buffers(&p->c);	/* idle: no buffer */
	set_state(p, PS_IDLE, A.keepalive_ms);
	if (p->paused_reading) {
		p->paused_reading = 0;
		transport_call(p, A.s_resume_reading);
	}
}

static void
try_head(Proto *p)
{
	struct http_error err;

	switch (http_conn_parse(&p->c, &A.limits, &err)) {
	case HTTP_HEAD_READY:
		start_request(p);
		break;
	case HTTP_HEAD_BAD:
		refuse(p, err.status, err.reason);
		break;
	default:
		break;
	}
}

/* ---- send ---- */

static int
is_tchar(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	    (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static void
rhead_add(Proto *p, const char *s, size_t n)
{
	if (p->rhead_len + n > p->rhead_cap) {
		size_t want = p->rhead_cap ? p->rhead_cap * 2 : 512;
		while (want < p->rhead_len + n)
			want *= 2;
		p->rhead = xrealloc(p->rhead, want);
		p->rhead_cap = want;
	}
	memcpy(p->rhead + p->rhead_len, s, n);
	p->rhead_len += n;
}

static int
bytes_of(PyObject *o, const char **s, Py_ssize_t *n)
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

static int
has_close_token(const char *v, size_t n)
{
	for (size_t i = 0; i + 5 <= n; i++)
		if (strncasecmp(v + i, "close", 5) == 0 &&
		    (i == 0 || v[i - 1] == ',' || v[i - 1] == ' ') &&
		    (i + 5 == n || v[i + 5] == ',' || v[i + 5] == ' '))
			return 1;
	return 0;
}

static int
response_start(Proto *p, PyObject *msg)
{
	PyObject *st, *hdrs, *it, *item;

	if (p->rstate != R_NONE) {
		PyErr_SetString(PyExc_RuntimeError, "Unexpected ASGI message 'http.response.start' "
		    "sent, after response already started.");
		return -1;
	}
	if ((st = PyDict_GetItemWithError(msg, A.k_status)) == NULL) {
		if (!PyErr_Occurred())
			PyErr_SetString(PyExc_KeyError, "status");
		return -1;
	}
	long status = PyLong_AsLong(st);
	if (status == -1 && PyErr_Occurred())
		return -1;
	if (status < 100 || status > 999) {
		PyErr_Format(PyExc_ValueError, "invalid status %ld", status);
		return -1;
	}
	p->status = (int)status;
	p->rhead_len = 0;
	hdrs = PyDict_GetItemWithError(msg, A.k_headers);
	if (hdrs == NULL && PyErr_Occurred())
		return -1;
	if (hdrs != NULL && hdrs != Py_None) {
		if ((it = PyObject_GetIter(hdrs)) == NULL)
			return -1;
		while ((item = PyIter_Next(it)) != NULL) {
			PyObject *seq = PySequence_Fast(item, "a header must be a [name, value] pair");
			const char *n, *v;
			Py_ssize_t nl, vl;
			Py_DECREF(item);
			if (seq == NULL)
				goto bad;
			if (PySequence_Fast_GET_SIZE(seq) != 2) {
				PyErr_SetString(PyExc_ValueError, "a header must be a [name, value] pair");
				Py_DECREF(seq);
				goto bad;
			}
			if (bytes_of(PySequence_Fast_GET_ITEM(seq, 0), &n, &nl) == -1 ||
			    bytes_of(PySequence_Fast_GET_ITEM(seq, 1), &v, &vl) == -1) {
				Py_DECREF(seq);
				goto bad;
			}
			int ok = nl > 0;
			for (Py_ssize_t i = 0; ok && i < nl; i++)
				ok = is_tchar((unsigned char)n[i]);
			for (Py_ssize_t i = 0; ok && i < vl; i++)
				ok = v[i] != '\r' && v[i] != '\n' && v[i] != '\0';
			if (!ok) {
				PyErr_Format(PyExc_ValueError, "invalid header %R",
				    PySequence_Fast_GET_ITEM(seq, 0));
				Py_DECREF(seq);
				goto bad;
			}
			if (nl == 17 && strncasecmp(n, "transfer-encoding", 17) == 0) {
				Py_DECREF(seq);
				continue;	/* framing is ours */
			}
			if (nl == 10 && strncasecmp(n, "connection", 10) == 0) {
				p->app_close |= has_close_token(v, (size_t)vl);
				Py_DECREF(seq);
				continue;
			}
			if (nl == 14 && strncasecmp(n, "content-length", 14) == 0) {
				long long cl = 0;
				int digits = vl > 0 && vl <= 18;
				for (Py_ssize_t i = 0; digits && i < vl; i++) {
					digits = v[i] >= '0' && v[i] <= '9';
					cl = cl * 10 + (v[i] - '0');
				}
				if (!digits) {
					PyErr_SetString(PyExc_ValueError, "invalid content-length");
					Py_DECREF(seq);
					goto bad;
				}
				p->resp_length = cl;
			}
			if (nl == 6 && strncasecmp(n, "server", 6) == 0)
				p->app_server = 1;
			if (nl == 4 && strncasecmp(n, "date", 4) == 0)
				p->app_date = 1;
			rhead_add(p, n, (size_t)nl);
			rhead_add(p, ": ", 2);
			rhead_add(p, v, (size_t)vl);
			rhead_add(p, "\r\n", 2);
			Py_DECREF(seq);
		}
		Py_DECREF(it);
		if (PyErr_Occurred())
			return -1;
	}
	p->rstate = R_STARTED;
	return 0;
bad:
	Py_DECREF(it);
	return -1;
}

/* Room for our part of the head. */
static size_t
head_size(Proto *p)
{
	return p->rhead_len + 256;
}

/* Our part of the head (status line, Server, Date, Connection, framing)
 * into out; decides keep-alive.  The caller adds Content-Length when the
 * app gave none, then the app's headers. */
static size_t
head_write(Proto *p, char *out, size_t room, int more)
{
	int nobody = p->status < 200 || p->status == 204 || p->status == 304;
	int n;

	if (!nobody && p->resp_length < 0 && more && !p->http10)
		p->resp_chunked = 1;
	p->resp_keepalive = p->want_keepalive && !A.stopping && !p->app_close &&
	    !p->client_eof &&
	    (nobody || p->head_only || p->resp_chunked || p->resp_length >= 0) &&
	    (p->body_done || (p->body_kind == HTTP_BODY_LENGTH && p->c.len >= p->body_left));
	n = snprintf(out, room, "HTTP/1.%d %d %s\r\n%s%s%s%s%sConnection: %s\r\n",
	    p->http10 ? 0 : 1, p->status, http_reason_phrase(p->status),
	    p->app_server ? "" : "Server: " SERVER_HEADER "\r\n",
	    p->app_date ? "" : "Date: ", p->app_date ? "" : http_date(),
	    p->app_date ? "" : "\r\n",
	    p->resp_chunked ? "Transfer-Encoding: chunked\r\n" : "",
	    p->resp_keepalive ? "keep-alive" : "close");
	return n > 0 && (size_t)n < room ? (size_t)n : 0;
}

static int
response_body(Proto *p, PyObject *msg)
{
	PyObject *b, *mb, *out;
	const char *data = "";
	Py_ssize_t dlen = 0;
	Py_buffer view = { 0 };
	int more = 0, had_length, send_head;
	size_t room, o = 0;
	char *w;

	if (p->rstate == R_NONE) {
		PyErr_SetString(PyExc_RuntimeError, "Unexpected ASGI message 'http.response.body' "
		    "sent, before 'http.response.start'.");
		return -1;
	}
	if (p->rstate == R_DONE) {
		PyErr_SetString(PyExc_RuntimeError, "Unexpected ASGI message 'http.response.body' "
		    "sent, after response already completed.");
		return -1;
	}
	b = PyDict_GetItemWithError(msg, A.k_body);
	if (b == NULL && PyErr_Occurred())
		return -1;
	if (b != NULL && b != Py_None) {
		if (PyObject_GetBuffer(b, &view, PyBUF_SIMPLE) == -1)
			return -1;
		data = view.buf;
		dlen = view.len;
	}
	mb = PyDict_GetItemWithError(msg, A.k_more_body);
	if (mb == NULL && PyErr_Occurred())
		goto fail;
	if (mb != NULL && (more = PyObject_IsTrue(mb)) == -1)
		goto fail;

	send_head = p->rstate == R_STARTED;
	had_length = p->resp_length >= 0;
	if (send_head && !had_length && !more && !(p->status < 200 || p->status == 204 ||
	    p->status == 304))
		p->resp_length = (int64_t)dlen;
	/* a body longer than its Content-Length is cut there */
	if (p->resp_length >= 0) {
		uint64_t left = (uint64_t)p->resp_length > p->resp_sent ?
		    (uint64_t)p->resp_length - p->resp_sent : 0;
		if ((uint64_t)dlen > left)
			dlen = (Py_ssize_t)left;
	}
	if (p->head_only || p->status < 200 || p->status == 204 || p->status == 304)
		dlen = 0;
	room = (send_head ? head_size(p) + 48 : 0) + (size_t)dlen + 32;
	if ((out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)room)) == NULL)
		goto fail;
	w = PyBytes_AS_STRING(out);
	if (send_head) {
		o = head_write(p, w, room, more);
		if (!had_length && p->resp_length >= 0)
			o += (size_t)snprintf(w + o, room - o, "Content-Length: %lld\r\n",
			    (long long)p->resp_length);
		if (p->rhead_len > 0)
			memcpy(w + o, p->rhead, p->rhead_len);
		o += p->rhead_len;
		memcpy(w + o, "\r\n", 2);
		o += 2;
		p->rstate = R_SENT;
	}
	if (dlen > 0) {
		if (p->resp_chunked)
			o += (size_t)snprintf(w + o, room - o, "%zx\r\n", (size_t)dlen);
		memcpy(w + o, data, (size_t)dlen);
		o += (size_t)dlen;
		if (p->resp_chunked) {
			memcpy(w + o, "\r\n", 2);
			o += 2;
		}
		p->resp_sent += (uint64_t)dlen;
	}
	if (!more && p->resp_chunked && !p->head_only) {
		memcpy(w + o, "0\r\n\r\n", 5);
		o += 5;
	}
	if (view.obj != NULL)
		PyBuffer_Release(&view);
	if (o > 0) {
		if (_PyBytes_Resize(&out, (Py_ssize_t)o) == -1)
			return -1;
		if (transport_write(p, out) == -1) {
			Py_DECREF(out);
			return -1;
		}
	}
	Py_DECREF(out);
	if (!more) {
		/* a Content-Length the body did not fill: the client cannot
		 * reuse the connection */
		if (p->resp_length >= 0 && p->resp_sent < (uint64_t)p->resp_length &&
		    !p->head_only && !(p->status < 200 || p->status == 204 || p->status == 304))
			p->resp_keepalive = 0;
		if (!p->resp_chunked && p->resp_length < 0)
			p->resp_keepalive = 0;
		response_done(p);
	}
	return 0;
fail:
	if (view.obj != NULL)
		PyBuffer_Release(&view);
	return -1;
}

/* ---- websockets (RFC 6455) ----
 *
 * A GET with "Upgrade: websocket" becomes a websocket scope; the app's
 * websocket.accept answers 101, websocket.close before it answers 403
 * (uvicorn).  Frames are decoded here from the connection's buffer:
 * client frames must be masked, control frames short and whole, no
 * extension bits; a message (fragments joined) is at most WS_MAX_MESSAGE
 * bytes, its length checked before anything is buffered for it.  A
 * malformed frame closes with 1002, bad UTF-8 in text with 1007, a
 * message too big with 1009; the app then sees websocket.disconnect
 * with that code.  Pings are answered with pongs.
 */

static int
token_in(const char *v, size_t n, const char *tok)
{
	size_t tl = strlen(tok);

	for (size_t i = 0; i + tl <= n; i++)
		if (strncasecmp(v + i, tok, tl) == 0 &&
		    (i == 0 || v[i - 1] == ',' || v[i - 1] == ' ' || v[i - 1] == '\t') &&
		    (i + tl == n || v[i + tl] == ',' || v[i + tl] == ' ' || v[i + tl] == '\t'))
			return 1;
	return 0;
}

static int
ws_wanted(const struct http_request *q)
{
	const struct http_header *up = http_header_find(q, "upgrade");

	return up != NULL && token_in(up->value, up->value_len, "websocket");
}

static void
ws_unlink(Proto *p)
{
	if (p->wsprev != NULL)
		p->wsprev->wsnext = p->wsnext;
	else if (A.websockets == p)
		A.websockets = p->wsnext;
	else
		return;
	if (p->wsnext != NULL)
		p->wsnext->wsprev = p->wsprev;
	p->wsprev = p->wsnext = NULL;
}

static PyObject *
ws_message(const char *type)
{
	PyObject *m = PyDict_New(), *t;

	if (m == NULL)
		return NULL;
	if ((t = PyUnicode_FromString(type)) == NULL || PyDict_SetItem(m, A.k_type, t) == -1) {
		Py_XDECREF(t);
		Py_DECREF(m);
		return NULL;
	}
	Py_DECREF(t);
	return m;
}

static PyObject *
ws_disconnect_message(int code)
{
	PyObject *m = ws_message("websocket.disconnect");

	if (m != NULL && set_new(m, A.k_code, PyLong_FromLong(code)) == -1)
		Py_CLEAR(m);
	return m;
}

/* One message for the app: to a waiting receive(), else queued. */
static void
ws_deliver(Proto *p, PyObject *m)
{
	if (m == NULL) {
		PyErr_Clear();
		return;
	}
	if (p->recv_waiter != NULL && PyList_GET_SIZE(p->ws_queue) == 0)
		future_resolve(&p->recv_waiter, m);
	else if (PyList_Append(p->ws_queue, m) == -1)
		PyErr_Clear();
	Py_DECREF(m);
	PyErr_Clear();
}

static void
ws_write_frame(Proto *p, int opcode, const char *data, size_t len)
{
	unsigned char head[10];
	size_t h = ws_frame_header(head, opcode, len);
	PyObject *out;

	if ((out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(h + len))) == NULL) {
		PyErr_Clear();
		return;
	}
	memcpy(PyBytes_AS_STRING(out), head, h);
	if (len > 0)
		memcpy(PyBytes_AS_STRING(out) + h, data, len);
	if (transport_write(p, out) == -1)
		PyErr_Clear();
	Py_DECREF(out);
}

/* Close with code (we start it, or we answer the client's close):
 * the close frame, the app's disconnect, then the TCP close. */
static void
ws_fail(Proto *p, int code, const char *why)
{
	char b[2] = { (char)(code >> 8), (char)code };

	if (p->ws_state == WS_CLOSED) {
		ws_unlink(p);
		return;
	}
	if (why != NULL)
		log_debug("websocket closed with %d: %s", code, why);
	ws_write_frame(p, 0x8, b, 2);
	ws_unlink(p);
	p->ws_state = WS_CLOSED;
	p->ws_close_code = code;
	ws_deliver(p, ws_disconnect_message(code));
	p->c.len = 0;
	proto_close(p);
}

static void
ws_message_done(Proto *p, int opcode, const char *data, size_t len)
{
	PyObject *m, *v;

	if (opcode == 0x1) {
		if ((v = PyUnicode_DecodeUTF8(data, (Py_ssize_t)len, "strict")) == NULL) {
			PyErr_Clear();
			ws_fail(p, 1007, "invalid UTF-8 in a text message");
			return;
		}
	} else if ((v = PyBytes_FromStringAndSize(data, (Py_ssize_t)len)) == NULL) {
		PyErr_Clear();
		return;
	}
	if ((m = ws_message("websocket.receive")) == NULL ||
	    PyDict_SetItem(m, opcode == 0x1 ? A.k_text : A.k_bytes, v) == -1) {
		Py_XDECREF(m);
		Py_DECREF(v);
		PyErr_Clear();
		return;
	}
	Py_DECREF(v);
	ws_deliver(p, m);
}

/* Decode every whole frame in the buffer (ws_frame.c checks them). */
static void
ws_feed(Proto *p)
{
	while (p->ws_state == WS_OPEN) {
		unsigned char *b = (unsigned char *)p->c.buf;
		struct ws_frame f;
		const char *why;
		int code;

		switch (ws_frame_parse(b, p->c.len, p->ws_msg_opcode, p->ws_msg_len,
		    WS_MAX_MESSAGE, &f, &code, &why)) {
		case WS_FRAME_BAD:
			ws_fail(p, code, why);
			return;
		case WS_FRAME_MORE:
			goto out;
		}
		if (p->c.len < f.head_len + f.len) {
			if (p->paused_reading) {
				p->paused_reading = 0;	/* a big frame: let it come */
				transport_call(p, A.s_resume_reading);
			}
			goto out;
		}
		unsigned char *data = b + f.head_len;
		size_t len = (size_t)f.len, total = f.head_len + len;
		ws_unmask(data, f.len, f.mask);

		if (f.opcode == 0x8) {
			int c = ws_close_code(data, len);
			if (c == -1) {
				ws_fail(p, 1002, "bad close frame");
				return;
			}
			ws_fail(p, c == 1005 ? 1000 : c, NULL);
			p->ws_close_code = c;
			return;
		} else if (f.opcode == 0x9) {
			ws_write_frame(p, 0xa, (const char *)data, len);
		} else if (f.opcode == 0xa) {
			/* unsolicited pong: ignored */
		} else if (f.fin && f.opcode != 0x0) {
			ws_message_done(p, f.opcode, (const char *)data, len);
		} else {
			if (f.opcode != 0x0)
				p->ws_msg_opcode = f.opcode;
			if (p->ws_msg_len + len > p->ws_msg_cap) {
				size_t want = p->ws_msg_cap ? p->ws_msg_cap : 4096;
				while (want < p->ws_msg_len + len)
					want *= 2;
				p->ws_msg = xrealloc(p->ws_msg, want);
				p->ws_msg_cap = want;
			}
			if (len > 0)
				memcpy(p->ws_msg + p->ws_msg_len, data, len);
			p->ws_msg_len += len;
			if (f.fin) {
				int op = p->ws_msg_opcode;
				p->ws_msg_opcode = 0;
				ws_message_done(p, op, p->ws_msg, p->ws_msg_len);
				p->ws_msg_len = 0;
			}
		}
		if (p->ws_state != WS_OPEN)
			return;
		buf_consume(p, total);
	}
out:
	if (p->ws_queue != NULL && PyList_GET_SIZE(p->ws_queue) >= WS_MAX_QUEUE &&
	    !p->paused_reading && !p->lost) {
		p->paused_reading = 1;	/* the app reads first */
		transport_call(p, A.s_pause_reading);
	}
}

/* "Sec-WebSocket-Accept": base64(sha1(key + GUID)) (hashlib, once per
 * handshake). */
static PyObject *
ws_accept_value(const struct http_header *key)
{
	static PyObject *sha1, *b64;
	PyObject *in, *d, *r;

	if (sha1 == NULL) {
		PyObject *h = PyImport_ImportModule("hashlib");
		PyObject *b = PyImport_ImportModule("binascii");
		if (h != NULL)
			sha1 = PyObject_GetAttrString(h, "sha1");
		if (b != NULL)
			b64 = PyObject_GetAttrString(b, "b2a_base64");
		Py_XDECREF(h);
		Py_XDECREF(b);
		if (sha1 == NULL || b64 == NULL)
			return NULL;
	}
	static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
	if ((in = PyBytes_FromStringAndSize(NULL,
	    (Py_ssize_t)(key->value_len + sizeof(guid) - 1))) == NULL)
		return NULL;
	memcpy(PyBytes_AS_STRING(in), key->value, key->value_len);
	memcpy(PyBytes_AS_STRING(in) + key->value_len, guid, sizeof(guid) - 1);
	d = PyObject_CallOneArg(sha1, in);
	Py_DECREF(in);
	if (d == NULL)
		return NULL;
	r = PyObject_CallMethod(d, "digest", NULL);
	Py_DECREF(d);
	if (r == NULL)
		return NULL;
	d = PyObject_CallOneArg(b64, r);	/* 28 characters and a newline */
	Py_DECREF(r);
	if (d == NULL)
		return NULL;
	r = PyBytes_FromStringAndSize(PyBytes_AS_STRING(d), PyBytes_GET_SIZE(d) - 1);
	Py_DECREF(d);
	return r;
}

static void
ws_start(Proto *p)
{
	const struct http_request *q = &p->c.req;
	const struct http_header *key = http_header_find(q, "sec-websocket-key");
	const struct http_header *ver = http_header_find(q, "sec-websocket-version");
	const struct http_header *conn = http_header_find(q, "connection");
	const struct http_header *proto = http_header_find(q, "sec-websocket-protocol");
	PyObject *scope, *subs, *v;
	const char *bad;

	if (q->method_len != 3 || memcmp(q->method, "GET", 3) != 0 || q->version_minor != 1 ||
	    conn == NULL || !token_in(conn->value, conn->value_len, "upgrade") ||
	    key == NULL || key->value_len != 24) {
		refuse(p, 400, "Invalid websocket handshake");
		return;
	}
	if (ver == NULL || ver->value_len != 2 || memcmp(ver->value, "13", 2) != 0) {
		PyObject *r = PyBytes_FromString("HTTP/1.1 426 Upgrade Required\r\n"
		    "Sec-WebSocket-Version: 13\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
		if (r == NULL || transport_write(p, r) == -1)
			PyErr_Clear();
		Py_XDECREF(r);
		p->c.len = 0;
		proto_close(p);
		return;
	}
	p->gen++;
	p->is_ws = 1;
	p->ws_state = WS_CONNECTING;
	p->ws_close_code = 1006;
	p->rstate = R_NONE;
	p->http10 = 0;
	p->body_done = p->body_sent = 1;
	p->body_kind = HTTP_BODY_NONE;
	if ((p->ws_queue = PyList_New(0)) == NULL ||
	    (p->ws_accept = ws_accept_value(key)) == NULL) {
		python_log_exception(LOG_ERROR, LOG_ERROR, "websocket handshake");
		refuse(p, 500, "");
		return;
	}
	if ((scope = build_scope(p, &bad)) == NULL) {
		PyErr_Clear();
		refuse(p, 400, bad ? bad : "Bad request");
		return;
	}
	if ((subs = PyList_New(0)) == NULL)
		goto fail;
	for (const char *s = proto ? proto->value : NULL, *e = s ? s + proto->value_len : NULL;
	    s != NULL && s < e;) {
		const char *c = memchr(s, ',', (size_t)(e - s));
		const char *end = c ? c : e;
		while (s < end && (*s == ' ' || *s == '\t'))
			s++;
		const char *t = end;
		while (t > s && (t[-1] == ' ' || t[-1] == '\t'))
			t--;
		if (t > s) {
			if ((v = PyUnicode_DecodeLatin1(s, t - s, NULL)) == NULL ||
			    PyList_Append(subs, v) == -1) {
				Py_XDECREF(v);
				Py_DECREF(subs);
				goto fail;
			}
			Py_DECREF(v);
		}
		s = c ? c + 1 : e;
	}
	if (set_new(scope, A.k_subprotocols, subs) == -1 ||
	    PyDict_SetItem(scope, A.k_type, A.v_websocket) == -1 ||
	    PyDict_SetItem(scope, A.k_scheme,
	        PyUnicode_CompareWithASCIIString(PyDict_GetItem(scope, A.k_scheme), "https") == 0 ?
	        A.v_wss : A.v_ws) == -1 ||
	    PyDict_DelItem(scope, A.k_method) == -1)
		goto fail;
	buf_consume(p, q->head_len);
	memset(&p->c.req, 0, sizeof(p->c.req));
	set_state(p, PS_BUSY, 0);
	A.served++;
	run_app(p, scope);
	return;
fail:
	Py_DECREF(scope);
	python_log_exception(LOG_ERROR, LOG_ERROR, "websocket scope");
	refuse(p, 500, "");
}

static PyObject *
ws_receive(Proto *p)
{
	PyObject *m;

	if (p->ws_state == WS_CONNECTING) {
		p->ws_state = WS_CONNECT_SENT;
		m = ws_message("websocket.connect");
	} else if (PyList_GET_SIZE(p->ws_queue) > 0) {
		m = Py_NewRef(PyList_GET_ITEM(p->ws_queue, 0));
		if (PySequence_DelItem(p->ws_queue, 0) == -1) {
			Py_DECREF(m);
			return NULL;
		}
		if (p->paused_reading && PyList_GET_SIZE(p->ws_queue) < WS_MAX_QUEUE / 2 &&
		    !p->lost) {
			p->paused_reading = 0;
			transport_call(p, A.s_resume_reading);
		}
	} else if (p->ws_state == WS_CLOSED || p->lost) {
		m = ws_disconnect_message(p->ws_close_code);
	} else {
		if (p->recv_waiter != NULL) {
			PyErr_SetString(PyExc_RuntimeError, "receive() while another receive() waits");
			return NULL;
		}
		if ((p->recv_waiter = new_future()) == NULL)
			return NULL;
		return Py_NewRef(p->recv_waiter);
	}
	if (m == NULL)
		return NULL;
	PyObject *r = (PyObject *)ready_new(m);
	Py_DECREF(m);
	return r;
}

static int
ws_send(Proto *p, PyObject *msg, PyObject *type)
{
	const char *t = PyUnicode_Check(type) ? PyUnicode_AsUTF8(type) : NULL;

	if (t == NULL) {
		PyErr_SetString(PyExc_TypeError, "message type must be a str");
		return -1;
	}
	if (p->ws_state == WS_CLOSED || p->lost) {
		PyErr_SetString(PyExc_ConnectionResetError, "the websocket is closed");
		return -1;
	}
	if (strcmp(t, "websocket.accept") == 0) {
		PyObject *sub, *hdrs, *out;
		const char *sv = NULL;
		Py_ssize_t sl = 0;
		if (p->ws_state == WS_OPEN) {
			PyErr_SetString(PyExc_RuntimeError, "websocket.accept sent twice");
			return -1;
		}
		p->rhead_len = 0;
		sub = PyDict_GetItemWithError(msg, A.k_subprotocol);
		if (sub != NULL && sub != Py_None && bytes_of(sub, &sv, &sl) == -1)
			return -1;
		hdrs = PyDict_GetItemWithError(msg, A.k_headers);
		if (PyErr_Occurred())
			return -1;
		if (hdrs != NULL && hdrs != Py_None) {
			/* reuse the response header checks */
			PyObject *fake = Py_BuildValue("{sisO}", "status", 101, "headers", hdrs);
			int rc = fake ? response_start(p, fake) : -1;
			Py_XDECREF(fake);
			if (rc == -1)
				return -1;
		}
		for (size_t i = 0; i < (size_t)sl; i++)
			if (sv[i] == '\r' || sv[i] == '\n' || sv[i] == '\0') {
				PyErr_SetString(PyExc_ValueError, "invalid subprotocol");
				return -1;
			}
		{
			static const char h1[] = "HTTP/1.1 101 Switching Protocols\r\n"
			    "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ";
			static const char h2[] = "\r\nSec-WebSocket-Protocol: ";
			size_t al = (size_t)PyBytes_GET_SIZE(p->ws_accept);
			size_t n = sizeof(h1) - 1 + al + (sl ? sizeof(h2) - 1 + (size_t)sl : 0) +
			    2 + p->rhead_len + 2;
			char *w;
			if ((out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)n)) == NULL)
				return -1;
			w = PyBytes_AS_STRING(out);
			memcpy(w, h1, sizeof(h1) - 1);
			w += sizeof(h1) - 1;
			memcpy(w, PyBytes_AS_STRING(p->ws_accept), al);
			w += al;
			if (sl) {
				memcpy(w, h2, sizeof(h2) - 1);
				w += sizeof(h2) - 1;
				memcpy(w, sv, (size_t)sl);
				w += sl;
			}
			memcpy(w, "\r\n", 2);
			w += 2;
			if (p->rhead_len)
				memcpy(w, p->rhead, p->rhead_len);
			w += p->rhead_len;
			memcpy(w, "\r\n", 2);
		}
		int rc = transport_write(p, out);
		Py_DECREF(out);
		if (rc == -1)
			return -1;
		p->ws_state = WS_OPEN;
		p->rstate = R_SENT;
		if (A.stopping) {
			ws_fail(p, 1001, "the worker is stopping");
			return 0;
		}
		p->wsnext = A.websockets;
		if (A.websockets != NULL)
			A.websockets->wsprev = p;
		A.websockets = p;
		ws_feed(p);		/* frames that came with the handshake */
		return 0;
	}
	if (strcmp(t, "websocket.close") == 0) {
		PyObject *c = PyDict_GetItemWithError(msg, A.k_code);
		long code = 1000;
		if (PyErr_Occurred())
			return -1;
		if (c != NULL && c != Py_None && (code = PyLong_AsLong(c)) == -1 && PyErr_Occurred())
			return -1;
		if (p->ws_state != WS_OPEN) {	/* refused before the handshake: 403 */
			PyObject *r = error_page(403, "");
			if (r == NULL || transport_write(p, r) == -1)
				PyErr_Clear();
			Py_XDECREF(r);
			p->ws_state = WS_CLOSED;
			p->rstate = R_DONE;
			proto_close(p);
			return 0;
		}
		PyObject *reason = PyDict_GetItemWithError(msg, A.k_reason);
		const char *rs = "";
		Py_ssize_t rl = 0;
		char frame[125];
		if (reason != NULL && reason != Py_None && bytes_of(reason, &rs, &rl) == -1)
			return -1;
		if (rl > 123)
			rl = 123;
		frame[0] = (char)(code >> 8);
		frame[1] = (char)code;
		if (rl > 0)
			memcpy(frame + 2, rs, (size_t)rl);
		ws_write_frame(p, 0x8, frame, (size_t)rl + 2);
		ws_unlink(p);
		p->ws_state = WS_CLOSED;
		p->ws_close_code = (int)code;
		p->rstate = R_DONE;
		proto_close(p);
		return 0;
	}
	if (strcmp(t, "websocket.send") == 0) {
		PyObject *b, *tx;
		const char *d;
		Py_ssize_t n;
		if (p->ws_state != WS_OPEN) {
			PyErr_SetString(PyExc_RuntimeError, "websocket.send before websocket.accept");
			return -1;
		}
		b = PyDict_GetItemWithError(msg, A.k_bytes);
		if (b == NULL && PyErr_Occurred())
			return -1;
		tx = PyDict_GetItemWithError(msg, A.k_text);
		if (tx == NULL && PyErr_Occurred())
			return -1;
		if (b != NULL && b != Py_None) {
			if (bytes_of(b, &d, &n) == -1)
				return -1;
			ws_write_frame(p, 0x2, d, (size_t)n);
		} else if (tx != NULL && tx != Py_None && PyUnicode_Check(tx)) {
			if ((d = PyUnicode_AsUTF8AndSize(tx, &n)) == NULL)
				return -1;
			ws_write_frame(p, 0x1, d, (size_t)n);
		} else {
			PyErr_SetString(PyExc_ValueError, "websocket.send needs bytes or text");
			return -1;
		}
		return 0;
	}
	PyErr_Format(PyExc_RuntimeError, "Unexpected ASGI message '%s' sent to a websocket", t);
	return -1;
}

/* send(message) */
static PyObject *
channel_send(Channel *ch, PyObject *msg)
{
	Proto *p = ch->p;
	PyObject *type;

	if (!PyDict_Check(msg)) {
		PyErr_SetString(PyExc_TypeError, "an ASGI message is a dict");
		return NULL;
	}
	if (ch->gen != p->gen) {
		PyErr_SetString(PyExc_RuntimeError, "send() of a request that is over");
		return NULL;
	}
	if (p->lost && !p->is_ws)
		return (PyObject *)ready_new(Py_None);	/* uvicorn: a no-op */
	if ((type = PyDict_GetItemWithError(msg, A.k_type)) == NULL) {
		if (!PyErr_Occurred())
			PyErr_SetString(PyExc_KeyError, "type");
		return NULL;
	}
	if (p->is_ws) {
		if (ws_send(p, msg, type) == -1)
			return NULL;
	} else if (PyUnicode_Check(type) && PyUnicode_Compare(type, A.s_body_msg) == 0) {
		if (response_body(p, msg) == -1)
			return NULL;
	} else if (PyUnicode_Check(type) && PyUnicode_Compare(type, A.s_start) == 0) {
		if (response_start(p, msg) == -1)
			return NULL;
	} else {
		if (!PyErr_Occurred())
			PyErr_Format(PyExc_RuntimeError, "Unexpected ASGI message %R sent", type);
		return NULL;
	}
	if (p->paused_writing && !p->lost) {
		if (p->drain_waiter == NULL && (p->drain_waiter = new_future()) == NULL)
			return NULL;
		return Py_NewRef(p->drain_waiter);
	}
	return (PyObject *)ready_new(Py_None);
}

/* receive() */
static PyObject *
channel_receive(Channel *ch)
{
	Proto *p = ch->p;
	PyObject *m;
	int bad;

	if (p->is_ws && ch->gen == p->gen)
		return ws_receive(p);
	if (ch->gen != p->gen || p->lost || p->rstate == R_DONE ||
	    (p->client_eof && (p->body_sent || (p->c.len == 0 && !p->body_done)))) {
		if ((m = disconnect_message()) == NULL)
			return NULL;
		PyObject *r = (PyObject *)ready_new(m);
		Py_DECREF(m);
		return r;
	}
	if (p->recv_waiter != NULL) {
		PyErr_SetString(PyExc_RuntimeError, "receive() while another receive() waits");
		return NULL;
	}
	if (!p->body_sent) {
		m = body_message(p, &bad);
		if (m != NULL) {
			PyObject *r = (PyObject *)ready_new(m);
			Py_DECREF(m);
			return r;
		}
		if (PyErr_Occurred())
			return NULL;
		if (bad) {
			refuse(p, 400, "Invalid chunked body");
			return channel_receive(ch);
		}
	}
	if ((p->recv_waiter = new_future()) == NULL)
		return NULL;
	return Py_NewRef(p->recv_waiter);
}

/* The app's task ended. */
static void
channel_done(Channel *ch, PyObject *task)
{
	Proto *p = ch->p;
	PyObject *r;

	r = PyObject_CallMethodNoArgs(task, A.s_result);
	if (PySet_Discard(A.tasks, task) == -1)
		PyErr_Clear();
	if (r == NULL) {
		if (PyErr_ExceptionMatches(PyExc_BaseException) &&
		    !(p->lost && PyErr_ExceptionMatches(PyExc_OSError)))
			python_log_exception(LOG_ERROR, LOG_ERROR, "Exception in ASGI application");
		PyErr_Clear();
	}
	Py_XDECREF(r);
	if (ch->gen != p->gen || p->rstate == R_DONE || p->lost)
		return;
	if (p->is_ws) {
		if (p->ws_state == WS_OPEN) {		/* the app ended: close */
			ws_fail(p, r != NULL ? 1000 : 1011, NULL);
			return;
		}
		if (r != NULL)
			log_errorx("ASGI callable returned without sending handshake.");
		p->rstate = R_NONE;	/* not accepted: a 500 page below */
	}
	if (r != NULL && !p->client_eof && !p->is_ws)
		log_errorx(p->rstate == R_SENT ?
		    "ASGI callable returned without completing response." :
		    "ASGI callable returned without starting response.");
	if (p->rstate != R_SENT) {
		PyObject *page = error_page(500, "");
		if (page == NULL || transport_write(p, page) == -1)
			PyErr_Clear();
		Py_XDECREF(page);
		p->resp_sent = 0;
		p->rhead_len = 0;
		access_log(p, 500);
	} else
		access_log(p, p->status);
	p->rstate = R_DONE;
	feed_receiver(p);
	proto_close(p);
}

static PyObject *
channel_call(Channel *ch, PyObject *args, PyObject *kw)
{
	PyObject *arg = NULL;

	if (!PyArg_UnpackTuple(args, "channel", ch->kind == CH_RECEIVE ? 0 : 1, 1, &arg))
		return NULL;
	switch (ch->kind) {
	case CH_RECEIVE:
		return channel_receive(ch);
	case CH_SEND:
		return channel_send(ch, arg);
	default:
		channel_done(ch, arg);
		Py_RETURN_NONE;
	}
}

static void
channel_dealloc(Channel *ch)
{
	Py_DECREF(ch->p);
	PyObject_Free(ch);
}

static PyTypeObject ChannelType = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "_cunicorn_asgi.Channel",
	.tp_basicsize = sizeof(Channel),
	.tp_dealloc = (destructor)channel_dealloc,
	.tp_call = (ternaryfunc)channel_call,
	.tp_flags = Py_TPFLAGS_DEFAULT,
};

/* ---- Ready ---- */

static PyObject *
ready_await(Ready *r)
{
	return Py_NewRef(r);
}

static PyObject *
ready_next(Ready *r)
{
	if (r->value == Py_None) {
		PyErr_SetNone(PyExc_StopIteration);
		return NULL;
	}
	PyObject *e = PyObject_CallOneArg(PyExc_StopIteration, r->value);
	if (e != NULL) {
		PyErr_SetObject(PyExc_StopIteration, e);
		Py_DECREF(e);
	}
	return NULL;
}

static PyObject *
ready_send(Ready *r, PyObject *arg)
{
	return ready_next(r);
}

static void
ready_dealloc(Ready *r)
{
	Py_DECREF(r->value);
	PyObject_Free(r);
}

static PyMethodDef ready_methods[] = {
	{ "send", (PyCFunction)ready_send, METH_O, NULL },
	{ NULL, NULL, 0, NULL },
};

static PyAsyncMethods ready_async = { .am_await = (unaryfunc)ready_await };

static PyTypeObject ReadyType = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "_cunicorn_asgi.Ready",
	.tp_basicsize = sizeof(Ready),
	.tp_dealloc = (destructor)ready_dealloc,
	.tp_as_async = &ready_async,
	.tp_iter = PyObject_SelfIter,
	.tp_iternext = (iternextfunc)ready_next,
	.tp_methods = ready_methods,
	.tp_flags = Py_TPFLAGS_DEFAULT,
};

/* ---- the protocol ---- */

static PyObject *
proto_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
	int listener;
	Proto *p;

	if (!PyArg_ParseTuple(args, "i", &listener))
		return NULL;
	if (listener < 0 || (size_t)listener >= A.ctx->nlisteners) {
		PyErr_SetString(PyExc_ValueError, "no such listener");
		return NULL;
	}
	if ((p = (Proto *)type->tp_alloc(type, 0)) == NULL)
		return NULL;
	p->listener = listener;
	p->client = Py_NewRef(Py_None);
	p->state = PS_CLOSING;		/* until connection_made */
	return (PyObject *)p;
}

static PyObject *
proto_connection_made(Proto *p, PyObject *transport)
{
	PyObject *peer;

	Py_XSETREF(p->transport, Py_NewRef(transport));
	peer = PyObject_CallMethodOneArg(transport, A.s_get_extra_info, A.s_peername);
	if (peer == NULL)
		PyErr_Clear();
	else if (PyTuple_Check(peer) && PyTuple_GET_SIZE(peer) >= 2) {
		PyObject *t = PyTuple_GetSlice(peer, 0, 2);
		if (t != NULL)
			Py_SETREF(p->client, t);
		PyErr_Clear();
	}
	Py_XDECREF(peer);
	A.nconns++;
	p->counted = 1;
	if (A.nconns >= A.max_conns && !A.full) {
		PyObject *r;
		A.full = 1;		/* the rest wait in the kernel's backlog */
		if (A.stop_accepting != NULL &&
		    (r = PyObject_CallNoArgs(A.stop_accepting)) != NULL)
			Py_DECREF(r);
		PyErr_Clear();
	}
	set_state(p, PS_HEAD, (uint64_t)A.limits.head_timeout_ms);
	Py_RETURN_NONE;
}

static PyObject *
proto_data_received(Proto *p, PyObject *data)
{
	const char *s;
	Py_ssize_t n;

	if (bytes_of(data, &s, &n) == -1)
		return NULL;
	if (p->state == PS_CLOSING || p->lost || n == 0)
		Py_RETURN_NONE;
	buf_reserve(p, (size_t)n);
	memcpy(p->c.buf + p->c.len, s, (size_t)n);
	p->c.len += (size_t)n;
	if (!p->is_ws && p->c.len >= A.limits.head_max + A.limits.body_room &&
	    !p->paused_reading) {
		p->paused_reading = 1;	/* the app reads first */
		transport_call(p, A.s_pause_reading);
	}
	switch (p->state) {
	case PS_IDLE:
		set_state(p, PS_HEAD, (uint64_t)A.limits.head_timeout_ms);
		/* fall through */
	case PS_HEAD:
		try_head(p);
		break;
	case PS_BUSY:
		if (p->is_ws) {
			if (p->ws_state == WS_OPEN)
				ws_feed(p);
		} else
			feed_receiver(p);
		break;
	}
	Py_RETURN_NONE;
}

static PyObject *
proto_eof_received(Proto *p, PyObject *unused)
{
	p->client_eof = 1;
	if (p->is_ws)
		Py_RETURN_FALSE;	/* no close frame: an abnormal end (1006) */
	/* A request in flight still gets its response (a half-close), but
	 * the client will send nothing more: a receive() waiting for more
	 * body or for the end learns at once that the client is gone (an
	 * SSE stream stops).  A real close shows later as connection_lost. */
	if (p->state == PS_BUSY && p->rstate != R_DONE) {
		feed_receiver(p);
		Py_RETURN_TRUE;
	}
	Py_RETURN_FALSE;
}

static PyObject *
proto_connection_lost(Proto *p, PyObject *exc)
{
	PyObject *m;

	p->lost = 1;
	timer_del(p);
	p->state = PS_CLOSING;
	if (p->is_ws) {
		ws_unlink(p);
		if (p->ws_state != WS_CLOSED) {
			p->ws_state = WS_CLOSED;
			ws_deliver(p, ws_disconnect_message(p->ws_close_code));
		}
		if (p->recv_waiter != NULL)
			ws_deliver(p, ws_disconnect_message(p->ws_close_code));
	} else if (p->recv_waiter != NULL && (m = disconnect_message()) != NULL) {
		future_resolve(&p->recv_waiter, m);
		Py_DECREF(m);
	}
	future_resolve(&p->drain_waiter, Py_None);
	PyErr_Clear();
	Py_CLEAR(p->transport);
	http_conn_free_buffers(&p->c);
	if (p->counted) {
		p->counted = 0;
		A.nconns--;
		if ((A.stopping && A.nconns == 0) || (A.full && A.nconns < A.max_conns)) {
			A.full = A.nconns >= A.max_conns;
			wake_glue();
		}
	}
	Py_RETURN_NONE;
}

static PyObject *
proto_pause_writing(Proto *p, PyObject *unused)
{
	p->paused_writing = 1;
	Py_RETURN_NONE;
}

static PyObject *
proto_resume_writing(Proto *p, PyObject *unused)
{
	p->paused_writing = 0;
	future_resolve(&p->drain_waiter, Py_None);
	PyErr_Clear();
	Py_RETURN_NONE;
}

static int
proto_traverse(Proto *p, visitproc visit, void *arg)
{
	Py_VISIT(p->transport);
	Py_VISIT(p->client);
	Py_VISIT(p->recv_waiter);
	Py_VISIT(p->drain_waiter);
	Py_VISIT(p->ws_queue);
	Py_VISIT(p->ws_accept);
	return 0;
}

static int
proto_clear(Proto *p)
{
	Py_CLEAR(p->transport);
	Py_CLEAR(p->client);
	Py_CLEAR(p->recv_waiter);
	Py_CLEAR(p->drain_waiter);
	Py_CLEAR(p->ws_queue);
	Py_CLEAR(p->ws_accept);
	return 0;
}

static void
proto_dealloc(Proto *p)
{
	PyObject_GC_UnTrack(p);
	timer_del(p);
	ws_unlink(p);
	if (p->counted) {
		p->counted = 0;
		A.nconns--;
	}
	proto_clear(p);
	http_conn_free_buffers(&p->c);
	free(p->rhead);
	free(p->ws_msg);
	free(p->alog_head);
	Py_TYPE(p)->tp_free((PyObject *)p);
}

static PyMethodDef proto_methods[] = {
	{ "connection_made", (PyCFunction)proto_connection_made, METH_O, NULL },
	{ "data_received", (PyCFunction)proto_data_received, METH_O, NULL },
	{ "eof_received", (PyCFunction)proto_eof_received, METH_NOARGS, NULL },
	{ "connection_lost", (PyCFunction)proto_connection_lost, METH_O, NULL },
	{ "pause_writing", (PyCFunction)proto_pause_writing, METH_NOARGS, NULL },
	{ "resume_writing", (PyCFunction)proto_resume_writing, METH_NOARGS, NULL },
	{ NULL, NULL, 0, NULL },
};

static PyTypeObject ProtoType = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "_cunicorn_asgi.Protocol",
	.tp_doc = "HTTP/1.x for an ASGI app: one per connection",
	.tp_basicsize = sizeof(Proto),
	.tp_new = proto_new,
	.tp_dealloc = (destructor)proto_dealloc,
	.tp_traverse = (traverseproc)proto_traverse,
	.tp_clear = (inquiry)proto_clear,
	.tp_methods = proto_methods,
	.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
};

/* ---- the worker's state, for the glue ---- */

static void
start_stopping(void)
{
	if (A.stopping)
		return;
	A.stopping = 1;
	A.stop_deadline = monotonic_ms() + (uint64_t)(A.cfg->graceful_timeout > 0 ?
	    A.cfg->graceful_timeout : 0) * 1000u;
	/* idle keep-alive connections: nothing is closed here; each closes
	 * at its own deadline or after its next response (gunicorn's #3038) */
}

static void __attribute__((noreturn))
exit_with_hook(enum hook_id id, int code)
{
	if (A.cfg->hooks[id] != NULL)
		python_hook(A.cfg, id, 1, wsgi_worker_object());
	http_worker_exit(code);
}

/* on_signals(): read the signal pipe; exits for INT/QUIT/ABRT. */
static PyObject *
mod_on_signals(PyObject *self, PyObject *unused)
{
	int sig;

	while ((sig = sigpipe_next()) != 0) {
		switch (sig) {
		case SIGTERM:
		case SIGHUP:
			start_stopping();
			break;
		case SIGINT:
		case SIGQUIT:
			exit_with_hook(HOOK_WORKER_INT, 0);
		case SIGABRT:
			exit_with_hook(HOOK_WORKER_ABORT, 1);
		case SIGUSR1:
			log_reopen();
			break;
		}
	}
	return PyBool_FromLong(A.stopping);
}

/* tick() -> (seconds to the next tick, stopping, done, full): deadlines,
 * heartbeat, the master's death, --reload; full: worker_connections
 * reached, the glue stops accepting until a connection ends. */
static PyObject *
mod_tick(PyObject *self, PyObject *unused)
{
	uint64_t now = monotonic_ms(), next = now + 1000;

	for (int l = 0; l < 2; l++) {
		while (A.timers[l].head != NULL && A.timers[l].head->deadline_ms <= now) {
			Proto *p = A.timers[l].head;
			if (l == 0 && p->c.len > 0)
				log_debug("Closing connection: no complete request head in time");
			proto_close(p);		/* leaves the list */
		}
		if (A.timers[l].head != NULL && A.timers[l].head->deadline_ms < next)
			next = A.timers[l].head->deadline_ms;
	}
	if (now >= A.next_look) {
		A.next_look = now + 1000;
		if (A.ctx->heartbeat != NULL)
			*A.ctx->heartbeat = now;
		if (getppid() != A.ctx->master_pid && !A.stopping) {
			log_info("Parent changed, shutting down: <Worker %ld>", (long)getpid());
			start_stopping();
		}
		if (A.cfg->reload && !A.stopping && http_worker_reload_due())
			start_stopping();
	}
	if (A.stopping && !A.websockets_closed) {
		/* a websocket has no "between requests": going away (1001) */
		A.websockets_closed = 1;
		while (A.websockets != NULL)
			ws_fail(A.websockets, 1001, "the worker is stopping");
	}
	if (A.stopping && A.stop_deadline < next)
		next = A.stop_deadline;
	int done = A.stopping && (A.nconns == 0 || now >= A.stop_deadline);
	A.full = A.nconns >= A.max_conns;
	return Py_BuildValue("(dOOO)", next > now ? (double)(next - now) / 1000.0 : 0.0,
	    A.stopping ? Py_True : Py_False, done ? Py_True : Py_False,
	    A.full ? Py_True : Py_False);
}

/* configure(loop, app, tasks, state_or_None, wake, stop_accepting) once
 * the loop runs. */
static PyObject *
mod_configure(PyObject *self, PyObject *args)
{
	PyObject *loop, *app, *tasks, *state, *wake, *stop;

	if (!PyArg_ParseTuple(args, "OOO!OOO", &loop, &app, &PySet_Type, &tasks, &state, &wake,
	    &stop))
		return NULL;
	Py_XSETREF(A.stop_accepting, Py_NewRef(stop));
	Py_XSETREF(A.app, Py_NewRef(app));
	Py_XSETREF(A.tasks, Py_NewRef(tasks));
	Py_XSETREF(A.wake, Py_NewRef(wake));
	Py_XSETREF(A.lifespan_state, state == Py_None ? NULL : Py_NewRef(state));
	Py_XSETREF(A.loop_create_future, PyObject_GetAttrString(loop, "create_future"));
	Py_XSETREF(A.loop_create_task, PyObject_GetAttrString(loop, "create_task"));
	if (A.loop_create_future == NULL || A.loop_create_task == NULL)
		return NULL;
	Py_RETURN_NONE;
}

static PyObject *
mod_stop(PyObject *self, PyObject *unused)
{
	start_stopping();
	Py_RETURN_NONE;
}

static PyObject *
mod_post_worker_init(PyObject *self, PyObject *unused)
{
	if (A.cfg->hooks[HOOK_POST_WORKER_INIT] != NULL)
		python_hook(A.cfg, HOOK_POST_WORKER_INIT, 1, wsgi_worker_object());
	Py_RETURN_NONE;
}

static PyMethodDef asgi_methods[] = {
	{ "configure", mod_configure, METH_VARARGS, NULL },
	{ "on_signals", mod_on_signals, METH_NOARGS, NULL },
	{ "tick", mod_tick, METH_NOARGS, NULL },
	{ "stop", mod_stop, METH_NOARGS, NULL },
	{ "post_worker_init", mod_post_worker_init, METH_NOARGS, NULL },
	{ NULL, NULL, 0, NULL },
};

static struct PyModuleDef asgi_module = {
	PyModuleDef_HEAD_INIT, "_cunicorn_asgi", "cunicorn's ASGI HTTP protocol", -1,
	asgi_methods, NULL, NULL, NULL, NULL,
};

static PyObject *
intern(const char *s)
{
	PyObject *o = PyUnicode_InternFromString(s);

	if (o == NULL)
		fatalx("out of memory");
	return o;
}

PyObject *PyInit__cunicorn_asgi(void);

PyObject *
PyInit__cunicorn_asgi(void)
{
	PyObject *m;

	if (PyType_Ready(&ProtoType) < 0 || PyType_Ready(&ChannelType) < 0 ||
	    PyType_Ready(&ReadyType) < 0)
		return NULL;
	if ((m = PyModule_Create(&asgi_module)) == NULL)
		return NULL;
	if (PyModule_AddObjectRef(m, "Protocol", (PyObject *)&ProtoType) == -1) {
		Py_DECREF(m);
		return NULL;
	}
	return m;
}

void
asgi_proto_setup(struct http_worker_ctx *ctx, int sigfd)
{
	struct settings *cfg = ctx->cfg;

	A.ctx = ctx;
	A.cfg = cfg;
	A.sigfd = sigfd;
	http_conn_limits_init(&A.limits, cfg);
	asgi_alog_init(cfg->access_log_format, &A.limits);
	A.keepalive_ms = (uint64_t)(cfg->keepalive > 0 ? cfg->keepalive : 0) * 1000u;
	A.max_conns = cfg->worker_connections > 0 ? (size_t)cfg->worker_connections : 1;
	if (cfg->max_requests > 0) {
		unsigned long jitter = 0;
		if (cfg->max_requests_jitter > 0) {
			srandom((unsigned)(getpid() ^ monotonic_ms()));
			jitter = (unsigned long)random() % ((unsigned long)cfg->max_requests_jitter + 1);
		}
		A.limit = (unsigned long)cfg->max_requests + jitter;
	}
	for (size_t i = 0; i < cfg->forwarded_allow_ips.len; i++)
		if (strcmp(cfg->forwarded_allow_ips.items[i], "*") == 0)
			A.trust_all = 1;

	A.k_type = intern("type");
	A.k_asgi = intern("asgi");
	A.k_http_version = intern("http_version");
	A.k_server = intern("server");
	A.k_client = intern("client");
	A.k_scheme = intern("scheme");
	A.k_method = intern("method");
	A.k_root_path = intern("root_path");
	A.k_path = intern("path");
	A.k_raw_path = intern("raw_path");
	A.k_query_string = intern("query_string");
	A.k_headers = intern("headers");
	A.k_state = intern("state");
	A.k_body = intern("body");
	A.k_more_body = intern("more_body");
	A.k_status = intern("status");
	A.k_code = intern("code");
	A.k_text = intern("text");
	A.k_bytes = intern("bytes");
	A.k_subprotocol = intern("subprotocol");
	A.k_subprotocols = intern("subprotocols");
	A.k_reason = intern("reason");
	A.v_websocket = intern("websocket");
	A.v_ws = intern("ws");
	A.v_wss = intern("wss");
	A.v_http_scope = intern("http");
	A.v_http = intern("http");
	A.v_https = intern("https");
	A.v_11 = intern("1.1");
	A.v_10 = intern("1.0");
	A.m_request = intern("http.request");
	A.m_disconnect_msg = intern("http.disconnect");
	A.s_start = intern("http.response.start");
	A.s_body_msg = intern("http.response.body");
	A.s_write = intern("write");
	A.s_close = intern("close");
	A.s_pause_reading = intern("pause_reading");
	A.s_resume_reading = intern("resume_reading");
	A.s_set_result = intern("set_result");
	A.s_done = intern("done");
	A.s_result = intern("result");
	A.s_add_done_callback = intern("add_done_callback");
	A.s_get_extra_info = intern("get_extra_info");
	A.s_peername = intern("peername");
	for (int i = 0; i < 9; i++)
		A.methods[i] = intern(method_names[i]);
	A.v_empty_bytes = PyBytes_FromStringAndSize("", 0);
	A.root_path = PyUnicode_DecodeUTF8(cfg->root_path ? cfg->root_path : "",
	    (Py_ssize_t)strlen(cfg->root_path ? cfg->root_path : ""), "replace");
	A.asgi_info = Py_BuildValue("{ssss}", "version", "3.0", "spec_version", "2.3");
	A.servers = xcalloc(ctx->nlisteners + 1, sizeof(*A.servers));
	for (size_t i = 0; i < ctx->nlisteners; i++) {
		const struct listener *l = &ctx->listeners[i];
		if (l->family == AF_UNIX)
			A.servers[i] = Py_BuildValue("(sO)", l->host ? l->host : "", Py_None);
		else
			A.servers[i] = Py_BuildValue("(si)", l->host ? l->host : "", l->port);
		if (A.servers[i] == NULL)
			fatalx("cannot build the ASGI server tuple");
	}
	if (A.v_empty_bytes == NULL || A.root_path == NULL || A.asgi_info == NULL)
		fatalx("cannot set up the ASGI worker");
}
