/*
 * asgi_proto.c — the built-in module _cunicorn_asgi: HTTP/1.x and
 * websockets for ASGI 3.0 apps on an asyncio event loop, in C (the
 * worker: asgi_worker.c; the loop and lifespan: python/cunicorn/_asgi.py;
 * the other files of the module: asgi_int.h).
 *
 * Owns: one Protocol object per connection (asyncio's Protocol
 * interface: connection_made, data_received, eof_received,
 * connection_lost, pause_writing, resume_writing) with its read buffer
 * (http_conn.c's), head parsing (http_parser.c), the request limits and
 * the deadlines of the timed states (asgi_int.h: a whole head within
 * limits.head_timeout_ms; an idle keep-alive connection closes after
 * `keepalive` s; the rest of a body the app left unread must come within
 * the body's deadline); the app's call, the task that follows it when it
 * waits (started by asgi_task.c), and its channels (receive, send,
 * done), which hand a message to asgi_http.c or asgi_ws.c; and the
 * worker's stop/drain state that the glue polls with tick().
 *
 * One request at a time per connection: the app runs as a task; bytes of
 * pipelined requests wait in the buffer and the next request starts once
 * the response is complete (uvicorn does the same) — and once the rest
 * of a body the app left unread has come and been dropped (PS_DRAIN:
 * dropped as it arrives, never buffered).  A connection closes only
 * between requests while the worker drains.  Everything here runs on the
 * loop's thread with the GIL held; nothing blocks.
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
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "asgi.h"
#include "asgi_alog.h"
#include "asgi_int.h"
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

static PyTypeObject ProtoType, ChannelType;

/* ---- requests: heads, the app, its channels ---- */

static PyObject *channel_vectorcall(Channel *ch, PyObject *const *args, size_t nargsf,
    PyObject *kwnames);

static PyObject *
channel_new(Proto *p, int kind)
{
	Channel *ch = PyObject_New(Channel, &ChannelType);

	if (ch == NULL)
		return NULL;
	ch->vectorcall = (vectorcallfunc)channel_vectorcall;
	ch->p = (Proto *)Py_NewRef(p);
	ch->gen = p->gen;
	ch->kind = kind;
	return (PyObject *)ch;
}

static void app_finished(Proto *p, uint64_t gen, PyObject *r);

/* A failure to even start the app: a 500 (exception set). */
static void
start_failed(Proto *p)
{
	python_log_exception(LOG_ERROR, LOG_ERROR, "Exception in ASGI application");
	if ((p->rstate == R_NONE || p->rstate == R_STARTED) &&
	    (!p->is_ws || p->ws_state < WS_OPEN)) {
		PyObject *page = asgi_error_page(500, "");
		if (page == NULL || transport_write(p, page) == -1)
			PyErr_Clear();
		Py_XDECREF(page);
	}
	p->rstate = R_DONE;
	proto_close(p);
}

/* Call the app with scope (stolen) and this request's channels; its
 * first step runs now (asgi_task.c).  A task that waits is kept until
 * its done callback, and is what asgi_disconnect_grace() cancels. */
static void
run_app(Proto *p, PyObject *scope)
{
	PyObject *recv, *send = NULL, *coro, *out, *done, *r = NULL;
	uint64_t gen = p->gen;

	if ((recv = channel_new(p, CH_RECEIVE)) == NULL ||
	    (send = channel_new(p, CH_SEND)) == NULL) {
		Py_XDECREF(recv);
		Py_DECREF(scope);
		start_failed(p);
		return;
	}
	coro = PyObject_Vectorcall(asgi.app, (PyObject *[]){ scope, recv, send }, 3, NULL);
	Py_DECREF(scope);
	Py_DECREF(recv);
	Py_DECREF(send);
	if (coro == NULL) {
		start_failed(p);
		return;
	}
	switch (asgi_task_start(coro, &out)) {
	case ASGI_TASK_DONE:
		app_finished(p, gen, out);
		Py_XDECREF(out);
		break;
	case ASGI_TASK_WAITS:
		if ((done = channel_new(p, CH_DONE)) != NULL && PySet_Add(asgi.tasks, out) == 0)
			r = PyObject_CallMethodOneArg(out, asgi.s_add_done_callback, done);
		Py_XDECREF(done);
		if (r == NULL) {
			/* cannot follow the task: the request fails */
			python_log_exception(LOG_ERROR, LOG_ERROR, "Exception in ASGI application");
			if (p->gen == gen)
				start_failed(p);
		} else {
			Py_DECREF(r);
			if (p->gen == gen)	/* what asgi_disconnect_grace() cancels */
				Py_XSETREF(p->task, Py_NewRef(out));
		}
		Py_DECREF(out);
		break;
	default:
		start_failed(p);
		break;
	}
	Py_DECREF(coro);
}

/* A parsed head in p->c.req: a websocket's or an HTTP request's scope,
 * then the app as a task. */
static void
start_request(Proto *p)
{
	const struct http_request *q = &p->c.req;
	PyObject *scope;

	if (q->version_major != 1 || q->version_minor > 1) {
		asgi_refuse(p, 505, "Unsupported HTTP version");
		return;
	}
	scope = asgi_ws_wanted(q) ? asgi_ws_start(p) : asgi_http_begin(p);
	if (scope != NULL)
		run_app(p, scope);
}

/* The scope's client (and the access log's) after a PROXY preamble
 * (once per connection) or a uWSGI request (each one, REMOTE_ADDR):
 * the client the connection layer settled on. */
static void
client_sync(Proto *p)
{
	const struct sockaddr_storage *a = http_conn_client(&p->c);
	char text[INET6_ADDRSTRLEN];
	PyObject *t;
	int port;

	p->proxied = 1;
	if (a->ss_family != AF_INET && a->ss_family != AF_INET6) {
		Py_SETREF(p->client, Py_NewRef(Py_None));
		return;
	}
	port = http_peer_format(a, text, sizeof(text));
	if ((t = Py_BuildValue("(si)", text, port)) == NULL) {
		PyErr_Clear();
		return;
	}
	Py_SETREF(p->client, t);
}

static void
try_head(Proto *p)
{
	struct http_error err;

	switch (http_conn_parse(&p->c, &asgi.limits, &err)) {
	case HTTP_HEAD_READY:
		if (asgi.limits.uwsgi || (p->c.proxy.kind != PROXY_NONE && !p->proxied))
			client_sync(p);
		start_request(p);
		break;
	case HTTP_HEAD_BAD:
		asgi_refuse(p, err.status, err.reason);
		break;
	default:
		break;
	}
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
	if ((type = PyDict_GetItemWithError(msg, asgi.k_type)) == NULL) {
		if (!PyErr_Occurred())
			PyErr_SetString(PyExc_KeyError, "type");
		return NULL;
	}
	if (p->is_ws) {
		if (asgi_ws_send(p, msg, type) == -1)
			return NULL;
	} else if (PyUnicode_Check(type) && PyUnicode_Compare(type, asgi.s_body_msg) == 0) {
		int done = asgi_response_body(p, msg);
		if (done == -1)
			return NULL;
		if (done == 1)
			try_head(p);	/* a pipelined request */
	} else if (PyUnicode_Check(type) && PyUnicode_Compare(type, asgi.s_start) == 0) {
		if (asgi_response_start(p, msg) == -1)
			return NULL;
	} else if (PyUnicode_Check(type) && PyUnicode_Compare(type, asgi.s_pathsend_msg) == 0) {
		switch (asgi_response_pathsend(p, msg)) {
		case -1:
			return NULL;
		case 1:
			try_head(p);	/* a pipelined request */
			break;
		case 2:		/* the file goes on: send() returns at its end */
			if (p->file_waiter == NULL && (p->file_waiter = new_future()) == NULL)
				return NULL;
			return Py_NewRef(p->file_waiter);
		}
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
		return asgi_ws_receive(p);
	if (ch->gen != p->gen || p->lost || p->rstate == R_DONE ||
	    (p->client_eof && (p->body_sent || (p->c.len == 0 && !p->body_done)))) {
		if ((m = asgi_disconnect_message()) == NULL)
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
		m = asgi_body_message(p, &bad);
		if (m != NULL) {
			PyObject *r = (PyObject *)ready_new(m);
			Py_DECREF(m);
			return r;
		}
		if (PyErr_Occurred())
			return NULL;
		if (bad) {
			asgi_refuse(p, 400, "Invalid chunked body");
			return channel_receive(ch);
		}
	}
	if ((p->recv_waiter = new_future()) == NULL)
		return NULL;
	return Py_NewRef(p->recv_waiter);
}

/* The app's coroutine of request gen ended: r is what it returned, or
 * NULL with its exception set. */
static void
app_finished(Proto *p, uint64_t gen, PyObject *r)
{
	if (r == NULL) {
		if (PyErr_ExceptionMatches(PyExc_BaseException) &&
		    !(p->lost && PyErr_ExceptionMatches(PyExc_OSError)) &&
		    !asgi_cancelled_after_disconnect(p))
			python_log_exception(LOG_ERROR, LOG_ERROR, "Exception in ASGI application");
		PyErr_Clear();
	}
	if (gen == p->gen && p->lost)	/* no response to log: the hook still runs */
		asgi_hook_post_request(p, p->rstate == R_NONE ? 500 : p->status);
	if (gen != p->gen || p->rstate == R_DONE || p->lost)
		return;
	if (p->rstate == R_FILE)
		return;		/* its file goes on: its end completes the response */
	if (p->is_ws) {
		/* accepted, then closed: complete; connection_lost ends it (a
		 * TLS transport's comes only after the client's close_notify,
		 * or the shutdown timeout, so often after the app's end) */
		if (p->ws_state == WS_CLOSED && p->status == 101)
			return;
		if (p->ws_state == WS_OPEN) {		/* the app ended: close */
			asgi_ws_fail(p, r != NULL ? 1000 : 1011, NULL);
			return;
		}
		if (p->rstate != R_SENT) {	/* not a denial response under way */
			if (r != NULL)
				log_errorx("ASGI callable returned without sending handshake.");
			p->rstate = R_NONE;	/* not accepted: a 500 page below */
		}
	}
	if (r != NULL && !p->client_eof && (!p->is_ws || p->rstate == R_SENT))
		log_errorx(p->rstate == R_SENT ?
		    "ASGI callable returned without completing response." :
		    "ASGI callable returned without starting response.");
	if (p->rstate != R_SENT) {
		PyObject *page = asgi_error_page(500, "");
		if (page == NULL || transport_write(p, page) == -1)
			PyErr_Clear();
		Py_XDECREF(page);
		p->resp_sent = 0;
		p->rhead_len = 0;
		asgi_access_log(p, 500);
	} else
		asgi_access_log(p, p->status);
	p->rstate = R_DONE;
	asgi_feed_receiver(p);
	proto_close(p);
}

/* The app's task (one that waited) ended. */
static void
channel_done(Channel *ch, PyObject *task)
{
	PyObject *r = PyObject_CallMethodNoArgs(task, asgi.s_result);

	if (r == NULL) {
		PyObject *et, *ev, *etb;
		PyErr_Fetch(&et, &ev, &etb);
		if (PySet_Discard(asgi.tasks, task) == -1)
			PyErr_Clear();
		PyErr_Restore(et, ev, etb);
	} else if (PySet_Discard(asgi.tasks, task) == -1)
		PyErr_Clear();
	if (ch->p->task == task)
		Py_CLEAR(ch->p->task);
	app_finished(ch->p, ch->gen, r);
	Py_XDECREF(r);
}

/* A pathsend's file waited for its socket, which can take more now
 * (asgi_file.c's set): send on; at its end the response is complete and
 * the app's send() returns. */
static void
file_progress(Proto *p)
{
	switch (asgi_file_step(p)) {
	case ASGI_FILE_WAITS:
		return;
	case ASGI_FILE_DONE:
		future_resolve(&p->file_waiter, Py_None);
		if (asgi_response_file_end(p) == 1)
			try_head(p);	/* a pipelined request */
		break;
	default:
		asgi_response_file_failed(p);
		future_resolve(&p->file_waiter, Py_None);
		break;
	}
	PyErr_Clear();
}

/* on_files(): the loop's callback for asgi_file.c's epoll set. */
static PyObject *
mod_on_files(PyObject *self, PyObject *unused)
{
	Proto *ready[64];
	int n = asgi_file_ready(ready, 64);

	for (int i = 0; i < n; i++) {
		if (ready[i]->file_fd >= 0)
			file_progress(ready[i]);
		Py_DECREF(ready[i]);
	}
	Py_RETURN_NONE;
}

static PyMethodDef on_files_def = { "on_files", mod_on_files, METH_NOARGS, NULL };

/* on_file_soon(protocol): under TLS, the next step of a file, scheduled
 * by asgi_file.c (the transport resumed writing, or a step's cap). */
static PyObject *
mod_on_file_soon(PyObject *self, PyObject *arg)
{
	if (!PyObject_TypeCheck(arg, &ProtoType)) {
		PyErr_SetString(PyExc_TypeError, "on_file_soon needs a Protocol");
		return NULL;
	}
	if (asgi_file_soon_due((Proto *)arg))
		file_progress((Proto *)arg);
	Py_RETURN_NONE;
}

static PyMethodDef on_file_soon_def = { "on_file_soon", mod_on_file_soon, METH_O, NULL };

/* receive(), send(message), the done callback(task): called the
 * vectorcall way (no argument tuple per call); keywords are ignored, as
 * they always were. */
static PyObject *
channel_vectorcall(Channel *ch, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
	Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
	PyObject *arg = nargs > 0 ? args[0] : NULL, *r;

	if (!_PyArg_CheckPositional("channel", nargs, ch->kind == CH_RECEIVE ? 0 : 1, 1))
		return NULL;
	switch (ch->kind) {
	case CH_RECEIVE:
		asgi.in_app++;
		r = channel_receive(ch);
		asgi.in_app--;
		return r;
	case CH_SEND:
		asgi.in_app++;
		r = channel_send(ch, arg);
		asgi.in_app--;
		return r;
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
	.tp_vectorcall_offset = offsetof(Channel, vectorcall),
	.tp_call = PyVectorcall_Call,
	.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL,
};

/* ---- the protocol ---- */

static PyObject *
proto_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
	int listener;
	Proto *p;

	if (!PyArg_ParseTuple(args, "i", &listener))
		return NULL;
	if (listener < 0 || (size_t)listener >= asgi.ctx->nlisteners) {
		PyErr_SetString(PyExc_ValueError, "no such listener");
		return NULL;
	}
	if ((p = (Proto *)type->tp_alloc(type, 0)) == NULL)
		return NULL;
	p->listener = listener;
	p->client = Py_NewRef(Py_None);
	p->state = PS_CLOSING;		/* until connection_made */
	p->file_fd = p->file_sock = p->sock_fd = -1;
	return (PyObject *)p;
}

/* p->c.peer from the transport's (host, port[, flow, scope]): what the
 * connection layer checks proxy_allow_ips against and the scope's
 * forwarded_allow_ips trust.  A unix listener's peer is AF_UNIX (no
 * address: trusted, as in gunicorn); one that does not parse AF_UNSPEC
 * (trusted by no list but '*'). */
static void
peer_sockaddr(Proto *p)
{
	const char *host;
	long port;

	memset(&p->c.peer, 0, sizeof(p->c.peer));
	p->c.peer.ss_family = asgi.ctx->listeners[p->listener].family == AF_UNIX ?
	    AF_UNIX : AF_UNSPEC;
	if (p->client == Py_None ||
	    !PyUnicode_Check(PyTuple_GET_ITEM(p->client, 0)) ||
	    (host = PyUnicode_AsUTF8(PyTuple_GET_ITEM(p->client, 0))) == NULL ||
	    (port = PyLong_AsLong(PyTuple_GET_ITEM(p->client, 1))) < 0 || port > 65535) {
		PyErr_Clear();
		return;
	}
	struct sockaddr_in *in = (struct sockaddr_in *)&p->c.peer;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&p->c.peer;
	if (inet_pton(AF_INET, host, &in->sin_addr) == 1) {
		in->sin_family = AF_INET;
		in->sin_port = htons((unsigned short)port);
	} else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((unsigned short)port);
	}
}

static PyObject *
proto_connection_made(Proto *p, PyObject *transport)
{
	PyObject *peer;

	Py_XSETREF(p->transport, Py_NewRef(transport));
	peer = PyObject_CallMethodOneArg(transport, asgi.s_get_extra_info, asgi.s_peername);
	if (peer == NULL)
		PyErr_Clear();
	else if (PyTuple_Check(peer) && PyTuple_GET_SIZE(peer) >= 2) {
		PyObject *t = PyTuple_GetSlice(peer, 0, 2);
		if (t != NULL)
			Py_SETREF(p->client, t);
		PyErr_Clear();
	}
	Py_XDECREF(peer);
	peer_sockaddr(p);
	http_conn_begin(&p->c, &asgi.limits);
	asgi.nconns++;
	p->counted = 1;
	if (asgi.nconns >= asgi.max_conns && !asgi.full) {
		PyObject *r;
		asgi.full = 1;		/* the rest wait in the kernel's backlog */
		if (asgi.stop_accepting != NULL &&
		    (r = PyObject_CallNoArgs(asgi.stop_accepting)) != NULL)
			Py_DECREF(r);
		PyErr_Clear();
	}
	set_state(p, PS_HEAD, (uint64_t)asgi.limits.head_timeout_ms);
	Py_RETURN_NONE;
}

static PyObject *
proto_data_received(Proto *p, PyObject *data)
{
	const char *s;
	Py_ssize_t n;

	if (asgi_bytes_of(data, &s, &n) == -1)
		return NULL;
	if (p->state == PS_CLOSING || p->lost || n == 0)
		Py_RETURN_NONE;
	if (p->state == PS_DRAIN) {	/* the rest of an unread body: dropped */
		size_t k;
		if (asgi_drain_take(p, s, (size_t)n, &k) == -1)
			Py_RETURN_NONE;
		s += k;
		n -= (Py_ssize_t)k;
	}
	if (n > 0) {
		buf_reserve(p, (size_t)n);
		memcpy(p->c.buf + p->c.len, s, (size_t)n);
		p->c.len += (size_t)n;
	}
	if (!p->is_ws && p->c.len >= asgi.limits.head_max + asgi.limits.body_room &&
	    !p->paused_reading) {
		p->paused_reading = 1;	/* the app reads first */
		transport_call(p, asgi.s_pause_reading);
	}
	switch (p->state) {
	case PS_DRAIN:
		if (asgi_drain_next(p) == 1)
			try_head(p);	/* a request right after the body */
		break;
	case PS_IDLE:
		set_state(p, PS_HEAD, (uint64_t)asgi.limits.head_timeout_ms);
		/* fall through */
	case PS_HEAD:
		try_head(p);
		break;
	case PS_BUSY:
		if (p->is_ws) {
			if (p->ws_state == WS_OPEN)
				asgi_ws_feed(p);
		} else
			asgi_feed_receiver(p);
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
	if ((p->state == PS_BUSY || p->state == PS_FILE) && p->rstate != R_DONE) {
		asgi_feed_receiver(p);
		asgi_disconnect_grace(p);
		if (!asgi.tls)
			Py_RETURN_TRUE;
		/* TLS has no half-close: asyncio's and uvloop's SSL transports
		 * close after an EOF whatever this returns (asyncio warns when
		 * it is true) and drop what is written meanwhile: the
		 * response cannot be sent; the client is as gone */
		p->lost = 1;
		if (p->file_fd >= 0) {
			asgi_file_abort(p);
			asgi_response_file_failed(p);
		}
		Py_RETURN_FALSE;
	}
	if (p->state == PS_DRAIN) {
		http_drain_log_eof(&p->c.drain);
		proto_close(p);
	}
	Py_RETURN_FALSE;
}

/* The connection no longer counts in worker_connections nor holds a
 * stopping worker (once). */
static void
uncount(Proto *p)
{
	if (!p->counted)
		return;
	p->counted = 0;
	asgi.nconns--;
	if ((asgi.stopping && asgi.nconns == 0) || (asgi.full && asgi.nconns < asgi.max_conns)) {
		asgi.full = asgi.nconns >= asgi.max_conns;
		wake_glue();
	}
}

static PyObject *
proto_connection_lost(Proto *p, PyObject *exc)
{
	PyObject *m;

	p->lost = 1;
	timer_del(p);
	p->state = PS_CLOSING;
	if (p->is_ws) {
		asgi_ws_ended(p);
		if (p->ws_state != WS_CLOSED) {
			p->ws_state = WS_CLOSED;
			asgi_ws_deliver(p, asgi_ws_disconnect_message(p->ws_close_code));
		}
		if (p->recv_waiter != NULL)
			asgi_ws_deliver(p, asgi_ws_disconnect_message(p->ws_close_code));
	} else if (p->recv_waiter != NULL && (m = asgi_disconnect_message()) != NULL) {
		future_resolve(&p->recv_waiter, m);
		Py_DECREF(m);
	}
	future_resolve(&p->drain_waiter, Py_None);
	asgi_file_abort(p);		/* the file cut (its waiter resolved) */
	asgi_response_file_failed(p);
	PyErr_Clear();
	asgi_disconnect_grace(p);
	Py_CLEAR(p->transport);
	buf_release(p);
	uncount(p);
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
	if (p->file_fd >= 0 && asgi_file_resumed(p) == ASGI_FILE_FAILED) {
		asgi_response_file_failed(p);
		future_resolve(&p->file_waiter, Py_None);
	}
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
	Py_VISIT(p->file_waiter);
	Py_VISIT(p->ws_queue);
	Py_VISIT(p->ws_accept);
	Py_VISIT(p->task);
	Py_VISIT(p->hook_req);
	return 0;
}

static int
proto_clear(Proto *p)
{
	Py_CLEAR(p->transport);
	Py_CLEAR(p->client);
	Py_CLEAR(p->recv_waiter);
	Py_CLEAR(p->drain_waiter);
	Py_CLEAR(p->file_waiter);
	Py_CLEAR(p->ws_queue);
	Py_CLEAR(p->ws_accept);
	Py_CLEAR(p->task);
	Py_CLEAR(p->hook_req);
	return 0;
}

static void
proto_dealloc(Proto *p)
{
	PyObject_GC_UnTrack(p);
	timer_del(p);
	asgi_ws_unlink(p);
	if (p->counted) {
		p->counted = 0;
		asgi.nconns--;
	}
	if (p->file_fd >= 0)
		asgi_file_abort(p);	/* never watched here: the set holds a reference */
	proto_clear(p);
	buf_release(p);
	free(p->rhead);
	asgi_ws_free(p);
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
	if (asgi.stopping)
		return;
	asgi.stopping = 1;
	asgi.stop_deadline = monotonic_ms() + (uint64_t)(asgi.cfg->graceful_timeout > 0 ?
	    asgi.cfg->graceful_timeout : 0) * 1000u;
	/* idle keep-alive connections: nothing is closed here; each closes
	 * at its own deadline or after its next response (gunicorn's #3038);
	 * one dropping the rest of a body goes idle once it is dropped, as
	 * gthread's (asgi_http.c: request_over) */
}

static void __attribute__((noreturn))
exit_with_hook(enum hook_id id, int code)
{
	if (asgi.cfg->hooks[id] != NULL)
		python_hook(asgi.cfg, id, 1, wsgi_worker_object());
	http_worker_exit(code);
}

/* on_signals(): read the signal pipe; exits for INT/QUIT/ABRT. */
static PyObject *
mod_on_signals(PyObject *self, PyObject *unused)
{
	int sig;

	while ((sig = sigpipe_next()) != 0)
		http_worker_loop_signal(sig, start_stopping, exit_with_hook);
	return PyBool_FromLong(asgi.stopping);
}

/* tick() -> (seconds to the next tick, stopping, done, full): deadlines,
 * heartbeat, the master's death, --reload; full: worker_connections
 * reached, the glue stops accepting until a connection ends. */
static PyObject *
mod_tick(PyObject *self, PyObject *unused)
{
	uint64_t now = monotonic_ms(), next = now + 1000;

	for (int l = 0; l < PS_TIMED; l++) {
		while (asgi.timers[l].head != NULL && asgi.timers[l].head->deadline_ms <= now) {
			Proto *p = asgi.timers[l].head;
			if (l == PS_HEAD && p->c.len > 0)
				log_debug("Closing connection: no complete request head in time");
			if (l == PS_DRAIN)
				http_drain_log_timeout(&p->c.drain);
			if (l == PS_FILE) {
				log_debug("pathsend: the client took nothing of %s for %d ms: "
				    "closing the connection", p->file_path ? p->file_path : "",
				    http_io_timeout_ms());
				/* abort: close() would wait for the transport's
				 * bytes to drain to a client that reads nothing */
				set_state(p, PS_CLOSING, 0);
				asgi_file_abort(p);
				transport_call(p, asgi.s_abort);
			} else {
				proto_close(p);		/* leaves the list */
				/* a TLS transport closes once the client answered
				 * our close_notify (or the shutdown timeout): an
				 * idle client that reads nothing would hold its
				 * slot and a stopping worker that long, for a
				 * connection with nothing of ours in flight */
				if (asgi.tls && (l == PS_HEAD || l == PS_IDLE))
					uncount(p);
			}
			asgi_response_file_failed(p);
		}
		if (asgi.timers[l].head != NULL && asgi.timers[l].head->deadline_ms < next)
			next = asgi.timers[l].head->deadline_ms;
	}
	if (now >= asgi.next_look) {
		asgi.next_look = now + 1000;
		if (asgi.ctx->heartbeat != NULL)
			*asgi.ctx->heartbeat = now;
		if (getppid() != asgi.ctx->master_pid && !asgi.stopping) {
			log_info("Parent changed, shutting down: <Worker %ld>", (long)getpid());
			start_stopping();
		}
		if (asgi.cfg->reload && !asgi.stopping && http_worker_reload_due())
			start_stopping();
	}
	if (asgi.stopping && !asgi.websockets_closed) {
		/* a websocket has no "between requests": going away (1001) */
		asgi.websockets_closed = 1;
		while (asgi.websockets != NULL)
			asgi_ws_fail(asgi.websockets, 1001, "the worker is stopping");
	}
	if (asgi.stopping && asgi.stop_deadline < next)
		next = asgi.stop_deadline;
	int done = asgi.stopping && (asgi.nconns == 0 || now >= asgi.stop_deadline);
	asgi.full = asgi.nconns >= asgi.max_conns;
	return Py_BuildValue("(dOOO)", next > now ? (double)(next - now) / 1000.0 : 0.0,
	    asgi.stopping ? Py_True : Py_False, done ? Py_True : Py_False,
	    asgi.full ? Py_True : Py_False);
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
	Py_XSETREF(asgi.stop_accepting, Py_NewRef(stop));
	Py_XSETREF(asgi.app, Py_NewRef(app));
	Py_XSETREF(asgi.tasks, Py_NewRef(tasks));
	Py_XSETREF(asgi.wake, Py_NewRef(wake));
	Py_XSETREF(asgi.lifespan_state, state == Py_None ? NULL : Py_NewRef(state));
	Py_CLEAR(asgi.scope_tmpl);	/* its keys depend on lifespan_state */
	Py_XSETREF(asgi.loop_create_future, PyObject_GetAttrString(loop, "create_future"));
	Py_XSETREF(asgi.loop_create_task, PyObject_GetAttrString(loop, "create_task"));
	if (asgi.loop_create_future == NULL || asgi.loop_create_task == NULL)
		return NULL;
	Py_XSETREF(asgi.loop, Py_NewRef(loop));
	if (asgi.on_files == NULL &&
	    (asgi.on_files = PyCFunction_New(&on_files_def, NULL)) == NULL)
		return NULL;
	if (asgi.on_file_soon == NULL &&
	    (asgi.on_file_soon = PyCFunction_New(&on_file_soon_def, NULL)) == NULL)
		return NULL;
	Py_XSETREF(asgi.base_ctx, PyContext_CopyCurrent());
	if (asgi.base_ctx == NULL)
		return NULL;
	if (asgi_task_configure() == -1)
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
	if (asgi.cfg->hooks[HOOK_POST_WORKER_INIT] != NULL)
		python_hook(asgi.cfg, HOOK_POST_WORKER_INIT, 1, wsgi_worker_object());
	Py_RETURN_NONE;
}

/* tls_options() -> None (plain HTTP) or a dict of the TLS settings the
 * glue builds its ssl.SSLContext from (the master checked them at
 * start), with the seconds of
 *   handshake_timeout: a client's handshake -- a head's deadline
 *     (limits.head_timeout_ms: half the worker timeout, 1 to 10 s),
 *     since a handshake is what comes before the first head;
 *   shutdown_timeout: a closing connection's: the transport's last bytes
 *     taken and the client's close_notify answered, or it is aborted (the
 *     loop's SSL transports wait for both; a short one would cut the end
 *     of a response to a slow reader): `timeout`, 30 s (the loop's
 *     default) when it is 0. */
static PyObject *
mod_tls_options(PyObject *self, PyObject *unused)
{
	const struct settings *cfg = asgi.cfg;

	if (!asgi.tls)
		Py_RETURN_NONE;
	return Py_BuildValue("{s:s,s:z,s:z,s:i,s:i,s:z,s:O,s:d,s:d}",
	    "certfile", cfg->certfile, "keyfile", cfg->keyfile, "ca_certs", cfg->ca_certs,
	    "cert_reqs", cfg->cert_reqs, "ssl_version", cfg->ssl_version,
	    "ciphers", cfg->ciphers,
	    "suppress_ragged_eofs", cfg->suppress_ragged_eofs ? Py_True : Py_False,
	    "handshake_timeout", (double)asgi.limits.head_timeout_ms / 1000.0,
	    "shutdown_timeout", (double)(cfg->timeout > 0 ? cfg->timeout : 30));
}

static PyMethodDef asgi_methods[] = {
	{ "tls_options", mod_tls_options, METH_NOARGS, NULL },
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
	    asgi_task_types_ready() < 0 ||
	    PyType_Ready(&asgi_ready_type) < 0)
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

	asgi.ctx = ctx;
	asgi.cfg = cfg;
	asgi.sigfd = sigfd;
	http_conn_limits_init(&asgi.limits, cfg);
	asgi_alog_init(cfg->access_log_format, &asgi.limits);
	asgi.keepalive_ms = (uint64_t)(cfg->keepalive > 0 ? cfg->keepalive : 0) * 1000u;
	asgi.max_conns = cfg->worker_connections > 0 ? (size_t)cfg->worker_connections : 1;
	if (cfg->max_requests > 0) {
		unsigned long jitter = 0;
		if (cfg->max_requests_jitter > 0) {
			srandom((unsigned)(getpid() ^ monotonic_ms()));
			jitter = (unsigned long)random() % ((unsigned long)cfg->max_requests_jitter + 1);
		}
		asgi.limit = (unsigned long)cfg->max_requests + jitter;
	}
	ip_allow_init(&asgi.forwarded_allow, &cfg->forwarded_allow_ips);

	asgi.k_type = intern("type");
	asgi.k_asgi = intern("asgi");
	asgi.k_http_version = intern("http_version");
	asgi.k_server = intern("server");
	asgi.k_client = intern("client");
	asgi.k_scheme = intern("scheme");
	asgi.k_method = intern("method");
	asgi.k_root_path = intern("root_path");
	asgi.k_path = intern("path");
	asgi.k_raw_path = intern("raw_path");
	asgi.k_query_string = intern("query_string");
	asgi.k_headers = intern("headers");
	asgi.k_state = intern("state");
	asgi.k_body = intern("body");
	asgi.k_more_body = intern("more_body");
	asgi.k_status = intern("status");
	asgi.k_code = intern("code");
	asgi.k_text = intern("text");
	asgi.k_bytes = intern("bytes");
	asgi.k_subprotocol = intern("subprotocol");
	asgi.k_subprotocols = intern("subprotocols");
	asgi.k_reason = intern("reason");
	asgi.v_websocket = intern("websocket");
	asgi.v_ws = intern("ws");
	asgi.v_wss = intern("wss");
	asgi.v_http_scope = intern("http");
	asgi.v_http = intern("http");
	asgi.v_https = intern("https");
	asgi.v_11 = intern("1.1");
	asgi.v_10 = intern("1.0");
	asgi.m_request = intern("http.request");
	asgi.m_disconnect_msg = intern("http.disconnect");
	asgi.s_start = intern("http.response.start");
	asgi.s_body_msg = intern("http.response.body");
	asgi.s_pathsend_msg = intern("http.response.pathsend");
	asgi.s_get_write_buffer_size = intern("get_write_buffer_size");
	asgi.k_extensions = intern("extensions");
	asgi.file_ep = -1;
	/* the ASGI extensions served, each with no options; with
	 * --no-sendfile (a filesystem whose sendfile is broken) no pathsend:
	 * apps then read their files themselves */
	asgi.ext_http = cfg->sendfile ? Py_BuildValue("{s{}}", "http.response.pathsend") :
	    PyDict_New();
	asgi.ext_ws = Py_BuildValue("{s{}}", "websocket.http.response");
	if (asgi.ext_http == NULL || asgi.ext_ws == NULL)
		fatalx("cannot set up the ASGI worker");
	asgi.s_write = intern("write");
	asgi.s_close = intern("close");
	asgi.s_abort = intern("abort");
	asgi.s_call_soon = intern("call_soon");
	asgi.tls = cfg->certfile != NULL;
	asgi.schemes[0] = asgi.tls ? asgi.v_https : asgi.v_http;
	asgi.schemes[1] = asgi.v_http;
	asgi.schemes[2] = asgi.v_https;
	asgi.s_pause_reading = intern("pause_reading");
	asgi.s_resume_reading = intern("resume_reading");
	asgi.s_set_result = intern("set_result");
	asgi.s_done = intern("done");
	asgi.s_result = intern("result");
	asgi.s_add_done_callback = intern("add_done_callback");
	asgi.s_throw = intern("throw");
	asgi.kw_context = Py_BuildValue("(s)", "context");
	if (asgi.kw_context == NULL)
		fatalx("out of memory");
	asgi.s_get_extra_info = intern("get_extra_info");
	asgi.s_peername = intern("peername");
	for (int i = 0; i < 9; i++)
		asgi.methods[i] = intern(asgi_method_names[i]);
	asgi.v_empty_bytes = PyBytes_FromStringAndSize("", 0);
	asgi.root_path = PyUnicode_DecodeUTF8(cfg->root_path ? cfg->root_path : "",
	    (Py_ssize_t)strlen(cfg->root_path ? cfg->root_path : ""), "replace");
	asgi.asgi_info = Py_BuildValue("{ssss}", "version", "3.0", "spec_version", "2.3");
	asgi.servers = xcalloc(ctx->nlisteners + 1, sizeof(*asgi.servers));
	for (size_t i = 0; i < ctx->nlisteners; i++) {
		const struct listener *l = &ctx->listeners[i];
		if (l->family == AF_UNIX)
			asgi.servers[i] = Py_BuildValue("(sO)", l->host ? l->host : "", Py_None);
		else
			asgi.servers[i] = Py_BuildValue("(si)", l->host ? l->host : "", l->port);
		if (asgi.servers[i] == NULL)
			fatalx("cannot build the ASGI server tuple");
	}
	if (asgi.v_empty_bytes == NULL || asgi.root_path == NULL || asgi.asgi_info == NULL)
		fatalx("cannot set up the ASGI worker");
}
