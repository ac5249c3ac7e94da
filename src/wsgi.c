/*
 * wsgi.c — PEP 3333 glue for the sync HTTP worker (contract: wsgi.h).
 *
 * Owns: the environ template and its interned keys, the wsgi.input /
 * start_response / write / wsgi.errors / wsgi.file_wrapper types, the
 * response writer and the access-log formatter.  One request at a time:
 * the per-request state lives in two static structs (cur_body, cur_resp);
 * the Python objects handed to the app carry a generation number and go
 * stale when their request ends, so an app that keeps one cannot touch
 * the next request.  Objects nobody kept are reused (hot path: no churn).
 *
 * Never: blocks without poll (client sockets are non-blocking), sends a
 * traceback to a client, writes more than Content-Length bytes, reads past
 * the request body, or lets a header with CR/LF out.
 *
 * gunicorn behaviours matched (workers/sync.py, http/wsgi.py, glogging.py):
 * headers with '_' in their name are dropped (header_map = "drop") but for
 * forwarder_headers sent by a forwarded_allow_ips peer (gunicorn 22+),
 * duplicate headers are joined with ',', SCRIPT_NAME comes from the
 * environment (or a trusted SCRIPT_NAME header) and must prefix the path,
 * wsgi.url_scheme from secure_scheme_headers when the peer is in
 * forwarded_allow_ips (addresses or CIDR networks),
 * "Connection: close" on every response, hop-by-hop headers from the app
 * are dropped but for a websocket handshake's (Connection: upgrade,
 * Upgrade: websocket), environ's gunicorn.socket and wsgi.early_hints, 500 page without traceback, access log atoms.
 * Deliberate differences: when the app returns a list/tuple of bytes (or a
 * file_wrapper) without Content-Length, we send Content-Length instead of
 * chunked framing (the length is known; one writev); HEAD sends no body.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include "wsgi.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "http_conn.h"
#include "listen.h"
#include "log.h"
#include "python.h"
#include "settings.h"
#include "util.h"

#define SERVER_SOFTWARE	"cunicorn/0.1.0"
#define SERVER_HEADER	"cunicorn"
#define MAX_FAST_IOV	64

/* ---- worker-wide state ---- */

static struct settings *cfg;
static PyObject *app;			/* the WSGI callable */
static PyObject *worker_obj;		/* hook argument, see wsgi_worker_object() */
static int worker_age;
static PyObject *base_env;		/* constant part of every environ */
static PyObject *ns_type;		/* types.SimpleNamespace, for hook objects */
static PyObject *signal_mod;		/* _signal */
static int trust_all_proxies;
static char *script_name;		/* $SCRIPT_NAME or "" */
static size_t script_name_len;

/* interned keys and constant values */
static PyObject *k_request_method, *k_script_name, *k_path_info,
    *k_query_string, *k_raw_uri, *k_server_name, *k_server_port,
    *k_server_protocol, *k_remote_addr, *k_remote_port, *k_content_type,
    *k_content_length, *k_url_scheme, *k_input, *k_early_hints, *k_socket,
    *k_http_authorization, *k_http_referer, *k_http_user_agent;
static PyObject *v_http, *v_https, *v_http11, *v_http10, *v_empty;
static PyObject *v_methods[10];
static const char *const method_names[10] = {
	"GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH",
	"CONNECT", "TRACE", NULL
};
/* SERVER_NAME / SERVER_PORT per listener (NULL for unix listeners) */
static PyObject **srv_name, **srv_port;
static void (*urgent_signals)(void);
static const _Atomic int *keepalive_gate;
static int relay_streams;
static PyObject *k_relay;		/* "_cunicorn_relay" */
static const struct listener *listeners;
static size_t nlisteners;

static PyObject *
intern(const char *s)
{
	PyObject *o = PyUnicode_InternFromString(s);
	if (o == NULL)
		fatalx("cannot intern %s", s);
	return o;
}

/* ---- header name -> environ key cache ---- */

#define KEYCACHE_SLOTS	512
#define KEYCACHE_NAME	64

struct keycache_entry {
	uint32_t hash;
	uint8_t len;
	char name[KEYCACHE_NAME];
	PyObject *key;
};
static struct keycache_entry keycache[KEYCACHE_SLOTS];
static size_t keycache_used;

/* name: upper-cased, '-' already turned to '_'. Borrowed reference. */
static PyObject *
env_key(const char *name, size_t len)
{
	uint32_t h = 2166136261u;
	char tmp[KEYCACHE_NAME + 8];
	PyObject *key;

	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char)name[i]) * 16777619u;
	if (len < KEYCACHE_NAME) {
		for (size_t i = h & (KEYCACHE_SLOTS - 1), n = 0; n < 8;
		    i = (i + 1) & (KEYCACHE_SLOTS - 1), n++) {
			struct keycache_entry *e = &keycache[i];
			if (e->key == NULL) {
				if (keycache_used >= KEYCACHE_SLOTS / 2)
					break;
				if (len == 12 && memcmp(name, "CONTENT_TYPE", 12) == 0)
					key = Py_NewRef(k_content_type);
				else if (len == 14 && memcmp(name, "CONTENT_LENGTH", 14) == 0)
					key = Py_NewRef(k_content_length);
				else {
					memcpy(tmp, "HTTP_", 5);
					memcpy(tmp + 5, name, len);
					tmp[5 + len] = '\0';
					key = PyUnicode_InternFromString(tmp);
					if (key == NULL)
						return NULL;
				}
				e->hash = h;
				e->len = (uint8_t)len;
				memcpy(e->name, name, len);
				e->key = key;
				keycache_used++;
				return key;
			}
			if (e->hash == h && e->len == len &&
			    memcmp(e->name, name, len) == 0)
				return e->key;
		}
	}
	return NULL;	/* not cacheable: caller builds its own */
}

/* ---- request body: wsgi.input ---- */

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

/* A body must keep coming: one total deadline that starts at BODY_BASE
 * (the head's deadline) and grows with every byte received at
 * BODY_MIN_RATE bytes per second, so that a big upload at a sane pace
 * goes through and a trickle of a byte now and then is cut, whatever the
 * pause between two bytes. */
#define BODY_MIN_RATE	(64 * 1024)
/* A read() of a long body starts with at most this much room and grows
 * as the bytes arrive: a Content-Length alone reserves nothing. */
#define READ_FIRST_ALLOC	(256 * 1024)
static int body_base_ms = 10000;

/* Read for the body within its deadline; as http_io_recv. */
static ssize_t
body_recv(struct body *b, void *buf, size_t n)
{
	uint64_t deadline = b->start_ms + (uint64_t)body_base_ms +
	    b->received * 1000 / BODY_MIN_RATE;
	ssize_t r = http_io_recv_until(b->fd, buf, n, deadline);

	if (r > 0)
		b->received += (uint64_t)r;
	else if (r == -1 && errno == ETIMEDOUT)
		log_debug("Request body too slow: %llu bytes in %llu ms",
		    (unsigned long long)b->received,
		    (unsigned long long)(monotonic_ms() - b->start_ms));
	return r;
}

static __thread struct body cur_body;
static __thread uint64_t cur_gen;	/* generation of this thread's running request */
/* Generations are unique across threads (handed out under the GIL): an
 * object of one thread's request is stale in every other thread. */
static uint64_t gen_counter;

static void
body_begin(struct http_conn *c)
{
	struct body *b = &cur_body;

	b->fd = c->fd;
	b->buf = c->buf;
	b->base = c->req.head_len;
	b->pos = c->req.head_len;
	b->len = c->len;
	b->cap = c->cap;
	b->kind = c->req.body;
	b->remaining = c->req.content_length;
	b->pend = NULL;
	b->pend_len = 0;
	b->failed = b->io_error = b->err_status = 0;
	b->start_ms = monotonic_ms();
	b->received = 0;
	b->err_reason = NULL;
	b->eof = (b->kind == HTTP_BODY_NONE) ||
	    (b->kind == HTTP_BODY_LENGTH && b->remaining == 0);
	b->continue_pending = c->req.expect_continue && !b->eof &&
	    c->req.version_major == 1 && c->req.version_minor >= 1;
	if (b->kind == HTTP_BODY_CHUNKED)
		http_chunked_init(&b->ch);
}

static int
body_fail(struct body *b, PyObject *type, const char *msg)
{
	b->failed = 1;
	PyErr_SetString(type, msg);
	return -1;
}

static int
body_send_continue(struct body *b)
{
	static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";

	b->continue_pending = 0;
	if (http_io_send(b->fd, cont, sizeof(cont) - 1) == -1) {
		b->io_error = 1;
		return body_fail(b, PyExc_OSError, "cannot send 100 Continue");
	}
	return 0;
}

/* Make decoded bytes available in pend.  1: data, 0: end of body,
 * -1: error (Python exception set). */
static int
body_more(struct body *b)
{
	if (b->pend_len > 0)
		return 1;
	for (;;) {
		if (b->eof)
			return 0;
		if (b->failed)
			return body_fail(b, PyExc_OSError, "request body unavailable");
		if (b->continue_pending && body_send_continue(b) == -1)
			return -1;
		size_t avail = b->len - b->pos;
		if (b->kind == HTTP_BODY_LENGTH) {
			if (b->remaining == 0) {
				b->eof = 1;
				return 0;
			}
			if (avail > 0) {
				size_t take = avail < b->remaining ? avail : (size_t)b->remaining;
				b->pend = b->buf + b->pos;
				b->pend_len = take;
				b->pos += take;
				b->remaining -= take;
				return 1;
			}
		} else {
			if (b->ch.done) {
				b->eof = 1;
				return 0;
			}
			if (avail > 0) {
				size_t used = 0, dlen = 0;
				const char *data;
				struct http_error err;
				int r = http_chunked_next(&b->ch, b->buf + b->pos, avail,
				    &used, &data, &dlen, &err);
				b->pos += used;
				if (r == HTTP_PARSE_ERROR) {
					b->err_status = err.status;
					b->err_reason = err.reason;
					return body_fail(b, PyExc_ValueError, err.reason);
				}
				if (r == HTTP_PARSE_OK && dlen > 0) {
					b->pend = data;
					b->pend_len = dlen;
					return 1;
				}
				continue;
			}
		}
		/* need more bytes from the socket */
		b->pos = b->len = b->base;
		ssize_t n = body_recv(b, b->buf + b->base, b->cap - b->base);
		if (n <= 0)
			b->io_error = 1;
		if (n <= 0)
			return body_fail(b, PyExc_OSError,
			    n == 0 ? "client closed the connection before the end of the body"
			    : "cannot read the request body");
		b->len += (size_t)n;
	}
}

static void
body_consume(struct body *b, size_t n)
{
	b->pend += n;
	b->pend_len -= n;
}

/* Whether request bytes may still be unread on the socket. */
static int
body_unread(const struct body *b)
{
	if (b->failed)
		return 1;
	if (b->eof)
		return 0;
	if (b->kind == HTTP_BODY_LENGTH)	/* beyond what the buffer holds */
		return b->remaining > (uint64_t)(b->len - b->pos);
	return !b->ch.done;
}

/* Read and drop what is left of the body, up to DRAIN_MAX bytes: 0 when
 * the body ended, -1 when the connection cannot be reused. */
#define DRAIN_MAX	(1024 * 1024)
static int
body_drain(struct body *b)
{
	size_t dropped = 0;

	for (;;) {
		int r = body_more(b);
		if (r == 0)
			return 0;
		if (r == -1) {
			PyErr_Clear();
			return -1;
		}
		dropped += b->pend_len;
		body_consume(b, b->pend_len);
		if (dropped > DRAIN_MAX)
			return -1;
	}
}

typedef struct {
	PyObject_HEAD
	uint64_t gen;
} InputObject;

static PyTypeObject InputType;

static struct body *
input_body(InputObject *self)
{
	return self->gen == cur_gen ? &cur_body : NULL;
}

static int
size_arg(PyObject *arg, Py_ssize_t *size)
{
	*size = -1;
	if (arg == NULL || arg == Py_None)
		return 0;
	*size = PyNumber_AsSsize_t(arg, PyExc_OverflowError);
	if (*size == -1 && PyErr_Occurred())
		return -1;
	return 0;
}

static PyObject *
input_read(InputObject *self, PyObject *const *args, Py_ssize_t nargs)
{
	struct body *b = input_body(self);
	Py_ssize_t size;
	PyObject *out;
	size_t want, got = 0, alloc;
	int r;

	if (nargs > 1) {
		PyErr_SetString(PyExc_TypeError, "read() takes at most 1 argument");
		return NULL;
	}
	if (size_arg(nargs ? args[0] : NULL, &size) == -1)
		return NULL;
	if (b == NULL || size == 0)
		return PyBytes_FromStringAndSize(NULL, 0);
	if (b->kind == HTTP_BODY_LENGTH) {
		uint64_t left = b->pend_len + b->remaining;
		want = (size < 0 || (uint64_t)size > left) ? (size_t)left : (size_t)size;
		alloc = want < READ_FIRST_ALLOC ? want : READ_FIRST_ALLOC;
	} else {
		want = size < 0 ? SIZE_MAX : (size_t)size;
		alloc = want < 65536 ? want : 65536;
	}
	if ((out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)alloc)) == NULL)
		return NULL;
	while (got < want) {
		/* large Content-Length reads go straight into the result */
		if (b->pend_len == 0 && b->kind == HTTP_BODY_LENGTH &&
		    b->pos == b->len && !b->failed && b->remaining > 0 &&
		    want - got >= 16384) {
			if (b->continue_pending && body_send_continue(b) == -1)
				goto fail;
			if (got == alloc) {	/* grows as the bytes arrive */
				size_t nalloc = alloc * 2 < want ? alloc * 2 : want;
				if (_PyBytes_Resize(&out, (Py_ssize_t)nalloc) == -1)
					return NULL;
				alloc = nalloc;
			}
			size_t n = alloc - got;
			ssize_t rd = body_recv(b, PyBytes_AS_STRING(out) + got, n);
			if (rd <= 0) {
				b->io_error = 1;
				body_fail(b, PyExc_OSError, rd == 0 ?
				    "client closed the connection before the end of the body" :
				    "cannot read the request body");
				goto fail;
			}
			got += (size_t)rd;
			b->remaining -= (uint64_t)rd;
			continue;
		}
		if ((r = body_more(b)) == -1)
			goto fail;
		if (r == 0)
			break;
		size_t take = b->pend_len < want - got ? b->pend_len : want - got;
		if (got + take > alloc) {
			size_t nalloc = alloc * 2 > got + take ? alloc * 2 : got + take;
			if (nalloc > want)
				nalloc = want;
			if (_PyBytes_Resize(&out, (Py_ssize_t)nalloc) == -1)
				return NULL;
			alloc = nalloc;
		}
		memcpy(PyBytes_AS_STRING(out) + got, b->pend, take);
		body_consume(b, take);
		got += take;
	}
	if (got != alloc && _PyBytes_Resize(&out, (Py_ssize_t)got) == -1)
		return NULL;
	return out;
fail:
	Py_DECREF(out);
	return NULL;
}

static PyObject *
input_readline_size(InputObject *self, Py_ssize_t size)
{
	struct body *b = input_body(self);
	struct buf acc = { 0 };
	PyObject *out;
	int r;

	if (b == NULL || size == 0)
		return PyBytes_FromStringAndSize(NULL, 0);
	for (;;) {
		if ((r = body_more(b)) == -1) {
			free(acc.chars);
			return NULL;
		}
		if (r == 0)
			break;
		size_t lim = b->pend_len;
		if (size > 0 && (size_t)size - acc.len < lim)
			lim = (size_t)size - acc.len;
		const char *nl = memchr(b->pend, '\n', lim);
		size_t take = nl ? (size_t)(nl - b->pend) + 1 : lim;
		if (acc.len == 0 && (nl || take == (size_t)size)) {
			/* the whole line is in one slice: no copy */
			out = PyBytes_FromStringAndSize(b->pend, (Py_ssize_t)take);
			body_consume(b, take);
			return out;
		}
		buf_append(&acc, b->pend, take);
		body_consume(b, take);
		if (nl || (size > 0 && acc.len >= (size_t)size))
			break;
	}
	out = PyBytes_FromStringAndSize(acc.chars, (Py_ssize_t)acc.len);
	free(acc.chars);
	return out;
}

static PyObject *
input_readline(InputObject *self, PyObject *const *args, Py_ssize_t nargs)
{
	Py_ssize_t size;

	if (nargs > 1) {
		PyErr_SetString(PyExc_TypeError, "readline() takes at most 1 argument");
		return NULL;
	}
	if (size_arg(nargs ? args[0] : NULL, &size) == -1)
		return NULL;
	return input_readline_size(self, size);
}

static PyObject *
input_readlines(InputObject *self, PyObject *const *args, Py_ssize_t nargs)
{
	Py_ssize_t hint, total = 0;
	PyObject *list, *line;

	if (nargs > 1) {
		PyErr_SetString(PyExc_TypeError, "readlines() takes at most 1 argument");
		return NULL;
	}
	if (size_arg(nargs ? args[0] : NULL, &hint) == -1)
		return NULL;
	if ((list = PyList_New(0)) == NULL)
		return NULL;
	for (;;) {
		if ((line = input_readline_size(self, -1)) == NULL) {
			Py_DECREF(list);
			return NULL;
		}
		if (PyBytes_GET_SIZE(line) == 0) {
			Py_DECREF(line);
			break;
		}
		total += PyBytes_GET_SIZE(line);
		if (PyList_Append(list, line) == -1) {
			Py_DECREF(line);
			Py_DECREF(list);
			return NULL;
		}
		Py_DECREF(line);
		if (hint > 0 && total >= hint)
			break;
	}
	return list;
}

static PyObject *
input_true(InputObject *self, PyObject *unused)
{
	Py_RETURN_TRUE;
}

static PyObject *
input_close(InputObject *self, PyObject *unused)
{
	Py_RETURN_NONE;
}

static PyObject *
input_iternext(InputObject *self)
{
	PyObject *line = input_readline_size(self, -1);

	if (line != NULL && PyBytes_GET_SIZE(line) == 0) {
		Py_DECREF(line);
		return NULL;	/* StopIteration */
	}
	return line;
}

static PyMethodDef input_methods[] = {
	{ "read", (PyCFunction)(void (*)(void))input_read, METH_FASTCALL, NULL },
	{ "readline", (PyCFunction)(void (*)(void))input_readline, METH_FASTCALL, NULL },
	{ "readlines", (PyCFunction)(void (*)(void))input_readlines, METH_FASTCALL, NULL },
	{ "readable", (PyCFunction)input_true, METH_NOARGS, NULL },
	{ "close", (PyCFunction)input_close, METH_NOARGS, NULL },
	{ NULL, NULL, 0, NULL },
};

static PyTypeObject InputType = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "cunicorn.Input",
	.tp_basicsize = sizeof(InputObject),
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_doc = "wsgi.input: the request body, read lazily from the socket",
	.tp_iter = PyObject_SelfIter,
	.tp_iternext = (iternextfunc)input_iternext,
	.tp_methods = input_methods,
};

/* ---- response: start_response, write() ---- */

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

static __thread struct response cur_resp;
/* Every thread's cur_resp, for wsgi_abort_responses(); under the GIL. */
static struct response **live_resps;
static size_t nlive_resps;
static __thread int resp_registered;
static __thread struct buf headbuf;	/* the serialized response head */

typedef struct {
	PyObject_HEAD
	uint64_t gen;
} CallableObject;		/* start_response and write */

static PyTypeObject StartResponseType, WriteType, EarlyHintsType;
static __thread CallableObject *sr_obj, *write_obj, *hints_obj;
static __thread InputObject *input_obj;

static void
resp_begin(struct http_conn *c)
{
	struct response *r = &cur_resp;

	r->fd = c->fd;
	r->status_set = r->headers_sent = r->failed = 0;
	r->head_only = c->req.method_len == 4 && memcmp(c->req.method, "HEAD", 4) == 0;
	r->http10 = c->req.version_major == 1 && c->req.version_minor == 0;
	r->status_code = 0;
	r->chunked = r->auto_length = 0;
	r->content_length = -1;
	r->sent = 0;
	r->status.len = 0;
	r->headers.len = 0;
	r->keepalive = c->keepalive && c->req.keep_alive;
	r->app_server = r->app_date = r->upgrade = 0;
	r->writing = 0;
	r->in_flight = 1;
	if (!resp_registered) {
		resp_registered = 1;
		live_resps = xrealloc(live_resps, (nlive_resps + 1) * sizeof(*live_resps));
		live_resps[nlive_resps++] = r;
	}
	r->relayed = 0;
	r->conn = c;
	c->relay = NULL;
}

/* Every head is built right before it is sent: from here on a 500 from
 * wsgi_abort_responses() could interleave with it. */
static void
build_head(struct response *r)
{
	r->writing = 1;
	headbuf.len = 0;
	buf_appends(&headbuf, r->http10 ? "HTTP/1.0 " : "HTTP/1.1 ");
	buf_append(&headbuf, r->status.chars, r->status.len);
	/* an app's own Server or Date replaces ours, as in gunicorn */
	if (!r->app_server)
		buf_appends(&headbuf, "\r\nServer: " SERVER_HEADER);
	if (!r->app_date) {
		buf_appends(&headbuf, "\r\nDate: ");
		buf_appends(&headbuf, http_date());
	}
	if (keepalive_gate != NULL && !*keepalive_gate)
		r->keepalive = 0;	/* the worker is stopping */
	/* a body the client cannot delimit ends with the connection */
	if (!r->chunked && r->content_length < 0 && !r->head_only &&
	    r->status_code >= 200 && r->status_code != 204 && r->status_code != 304)
		r->keepalive = 0;
	/* after a protocol switch the app owned the connection: it ends */
	if (r->upgrade)
		r->keepalive = 0;
	buf_appends(&headbuf, r->upgrade ? "\r\nConnection: upgrade\r\n" :
	    r->keepalive ? "\r\nConnection: keep-alive\r\n" : "\r\nConnection: close\r\n");
	if (r->chunked)
		buf_appends(&headbuf, "Transfer-Encoding: chunked\r\n");
	if (r->auto_length)
		buf_printf(&headbuf, "Content-Length: %lld\r\n", (long long)r->content_length);
	buf_append(&headbuf, r->headers.chars, r->headers.len);
	buf_append(&headbuf, "\r\n", 2);
}

static int
resp_io_error(struct response *r)
{
	r->failed = 1;
	PyErr_SetFromErrno(PyExc_OSError);
	return -1;
}

/* Send body bytes (headers first if not yet sent).  0 or -1 (exception). */
static int
resp_write(struct response *r, const char *data, size_t len)
{
	struct iovec iov[4];
	char chunk[24];
	int n = 0;

	if (r->failed) {
		PyErr_SetString(PyExc_OSError, "connection lost");
		return -1;
	}
	if (r->content_length >= 0) {
		uint64_t left = (uint64_t)r->content_length > r->sent ?
		    (uint64_t)r->content_length - r->sent : 0;
		if (len > left)
			len = (size_t)left;
	}
	if (r->head_only)
		len = 0;
	if (len == 0)
		return 0;	/* headers go out with the first non-empty write */
	if (!r->headers_sent) {
		build_head(r);
		iov[n].iov_base = headbuf.chars;
		iov[n++].iov_len = headbuf.len;
	}
	if (r->chunked) {
		iov[n].iov_base = chunk;
		iov[n++].iov_len = (size_t)snprintf(chunk, sizeof(chunk), "%zx\r\n", len);
	}
	iov[n].iov_base = (void *)data;
	iov[n++].iov_len = len;
	if (r->chunked) {
		iov[n].iov_base = (void *)"\r\n";
		iov[n++].iov_len = 2;
	}
	if (http_io_send_iov(r->fd, iov, n) == -1)
		return resp_io_error(r);
	r->headers_sent = 1;
	r->sent += len;
	return 0;
}

/* End of the response: headers if still unsent, last chunk. */
static int
resp_finish(struct response *r)
{
	struct iovec iov[2];
	int n = 0;

	if (r->failed) {
		PyErr_SetString(PyExc_OSError, "connection lost");
		return -1;
	}
	if (r->relayed)
		return 0;	/* the worker's loop ends it */
	if (!r->headers_sent) {
		build_head(r);
		iov[n].iov_base = headbuf.chars;
		iov[n++].iov_len = headbuf.len;
	}
	if (r->chunked) {
		iov[n].iov_base = (void *)"0\r\n\r\n";
		iov[n++].iov_len = 5;
	}
	if (n > 0 && http_io_send_iov(r->fd, iov, n) == -1)
		return resp_io_error(r);
	r->headers_sent = 1;
	return 0;
}

static int
is_tchar(unsigned char c)
{
	static const char extra[] = "!#$%&'*+-.^_`|~";
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
	    (c >= 'A' && c <= 'Z') || (c && strchr(extra, c) != NULL);
}

static int
is_hop_by_hop(const char *n, size_t len)
{
	static const char *const hop[] = { "connection", "keep-alive",
	    "proxy-authenticate", "proxy-authorization", "te", "trailers",
	    "transfer-encoding", "upgrade", NULL };
	for (int i = 0; hop[i]; i++)
		if (strlen(hop[i]) == len && strncasecmp(hop[i], n, len) == 0)
			return 1;
	return 0;
}

/* A Connection header value naming "close" (any case). */
static int
has_close_token(const char *v, size_t n)
{
	for (size_t i = 0; i + 5 <= n; i++)
		if (strncasecmp(v + i, "close", 5) == 0)
			return 1;
	return 0;
}

/* Latin-1 bytes of a str whose characters are all <= U+00FF. */
static const char *
latin1_of(PyObject *s, Py_ssize_t *len)
{
	if (!PyUnicode_Check(s) || PyUnicode_READY(s) == -1 ||
	    PyUnicode_KIND(s) != PyUnicode_1BYTE_KIND)
		return NULL;
	*len = PyUnicode_GET_LENGTH(s);
	return (const char *)PyUnicode_1BYTE_DATA(s);
}

static int
set_headers(struct response *r, PyObject *headers)
{
	PyObject *seq = PySequence_Fast(headers, "headers must be a list of (name, value) tuples");
	Py_ssize_t n;

	if (seq == NULL)
		return -1;
	r->headers.len = 0;
	r->content_length = -1;
	r->app_server = r->app_date = r->upgrade = 0;
	n = PySequence_Fast_GET_SIZE(seq);
	for (Py_ssize_t i = 0; i < n; i++) {
		PyObject *item = PySequence_Fast_GET_ITEM(seq, i), *name, *value;
		Py_ssize_t nl, vl;
		const char *ns, *vs;

		if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2) {
			PyErr_Format(PyExc_TypeError, "header %R is not a (name, value) tuple", item);
			goto fail;
		}
		name = PyTuple_GET_ITEM(item, 0);
		value = PyTuple_GET_ITEM(item, 1);
		if (!PyUnicode_Check(name)) {
			PyErr_Format(PyExc_TypeError, "%R is not a string", name);
			goto fail;
		}
		if ((ns = latin1_of(name, &nl)) == NULL || nl == 0) {
			PyErr_Format(PyExc_ValueError, "invalid header name %R", name);
			goto fail;
		}
		for (Py_ssize_t j = 0; j < nl; j++)
			if (!is_tchar((unsigned char)ns[j])) {
				PyErr_Format(PyExc_ValueError, "invalid header name %R", name);
				goto fail;
			}
		if (!PyUnicode_Check(value)) {
			PyErr_Format(PyExc_TypeError, "%R is not a string", value);
			goto fail;
		}
		if ((vs = latin1_of(value, &vl)) == NULL) {
			PyErr_Format(PyExc_ValueError, "invalid header value %R", value);
			goto fail;
		}
		for (Py_ssize_t j = 0; j < vl; j++) {
			unsigned char c = (unsigned char)vs[j];
			if ((c < 0x20 && c != '\t') || c == 0x7f) {
				PyErr_Format(PyExc_ValueError, "invalid header value %R", value);
				goto fail;
			}
		}
		while (vl > 0 && (vs[0] == ' ' || vs[0] == '\t'))
			vs++, vl--;
		while (vl > 0 && (vs[vl - 1] == ' ' || vs[vl - 1] == '\t'))
			vl--;
		if (nl == 14 && strncasecmp(ns, "content-length", 14) == 0) {
			char tmp[32];
			char *end;
			long long v;
			if (vl == 0 || (size_t)vl >= sizeof(tmp))
				goto bad_length;
			memcpy(tmp, vs, (size_t)vl);
			tmp[vl] = '\0';
			errno = 0;
			v = strtoll(tmp, &end, 10);
			if (errno || *end || v < 0 || tmp[0] == '-' || tmp[0] == '+')
				goto bad_length;
			r->content_length = v;
		} else if (is_hop_by_hop(ns, (size_t)nl)) {
			/* the app asking to close is honoured; as gunicorn,
			 * "Connection: upgrade" and "Upgrade: websocket" pass
			 * (a websocket handshake), every other hop-by-hop not */
			if (nl == 10 && strncasecmp(ns, "connection", 10) == 0) {
				if (vl == 7 && strncasecmp(vs, "upgrade", 7) == 0)
					r->upgrade = 1;
				else if (has_close_token(vs, (size_t)vl))
					r->keepalive = 0;
				continue;
			}
			if (!(nl == 7 && strncasecmp(ns, "upgrade", 7) == 0 &&
			    vl == 9 && strncasecmp(vs, "websocket", 9) == 0))
				continue;
		}
		else if (nl == 6 && strncasecmp(ns, "server", 6) == 0)
			r->app_server = 1;
		else if (nl == 4 && strncasecmp(ns, "date", 4) == 0)
			r->app_date = 1;
		buf_append(&r->headers, ns, (size_t)nl);
		buf_append(&r->headers, ": ", 2);
		buf_append(&r->headers, vs, (size_t)vl);
		buf_append(&r->headers, "\r\n", 2);
	}
	Py_DECREF(seq);
	return 0;
bad_length:
	PyErr_SetString(PyExc_ValueError, "invalid Content-Length header value");
fail:
	Py_DECREF(seq);
	return -1;
}

static PyObject *
start_response(CallableObject *self, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = { "status", "headers", "exc_info", NULL };
	struct response *r = &cur_resp;
	PyObject *status, *headers, *exc_info = Py_None;
	Py_ssize_t sl;
	const char *ss;

	if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|O:start_response", kwlist,
	    &status, &headers, &exc_info))
		return NULL;
	if (self->gen != cur_gen) {
		PyErr_SetString(PyExc_RuntimeError, "start_response() called after the request ended");
		return NULL;
	}
	if (exc_info != Py_None && PyObject_IsTrue(exc_info)) {
		if (r->headers_sent) {
			if (!PyTuple_Check(exc_info) || PyTuple_GET_SIZE(exc_info) != 3) {
				PyErr_SetString(PyExc_TypeError, "exc_info must be a 3-tuple");
				return NULL;
			}
			PyObject *t = PyTuple_GET_ITEM(exc_info, 0);
			PyObject *v = PyTuple_GET_ITEM(exc_info, 1);
			PyObject *tb = PyTuple_GET_ITEM(exc_info, 2);
			Py_INCREF(t);
			Py_INCREF(v);
			if (tb == Py_None)
				tb = NULL;
			Py_XINCREF(tb);
			PyErr_Restore(t, v, tb);
			return NULL;
		}
	} else if (r->status_set) {
		PyErr_SetString(PyExc_AssertionError, "Response headers already set!");
		return NULL;
	}
	if (!PyUnicode_Check(status)) {
		PyErr_Format(PyExc_TypeError, "status %R is not a string", status);
		return NULL;
	}
	if ((ss = latin1_of(status, &sl)) == NULL || sl < 3 ||
	    ss[0] < '1' || ss[0] > '9' || ss[1] < '0' || ss[1] > '9' ||
	    ss[2] < '0' || ss[2] > '9' || (sl > 3 && ss[3] != ' '))
		goto bad_status;
	for (Py_ssize_t i = 0; i < sl; i++) {
		unsigned char c = (unsigned char)ss[i];
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			goto bad_status;
	}
	if (set_headers(r, headers) == -1)
		return NULL;
	r->status.len = 0;
	buf_append(&r->status, ss, (size_t)sl);
	r->status_code = (ss[0] - '0') * 100 + (ss[1] - '0') * 10 + (ss[2] - '0');
	r->status_set = 1;
	r->auto_length = 0;
	r->chunked = r->content_length < 0 && !r->http10 && !r->head_only &&
	    r->status_code != 204 && r->status_code != 304 && r->status_code >= 200;
	return Py_NewRef((PyObject *)write_obj);
bad_status:
	PyErr_Format(PyExc_ValueError, "invalid status %R", status);
	return NULL;
}

static PyObject *
write_call(CallableObject *self, PyObject *args, PyObject *kw)
{
	PyObject *data;

	if (!PyArg_ParseTuple(args, "O:write", &data))
		return NULL;
	if (self->gen != cur_gen) {
		PyErr_SetString(PyExc_RuntimeError, "write() called after the request ended");
		return NULL;
	}
	if (!cur_resp.status_set) {
		PyErr_SetString(PyExc_AssertionError, "write() before start_response()");
		return NULL;
	}
	if (!PyBytes_Check(data)) {
		PyErr_Format(PyExc_TypeError, "%R is not a byte", data);
		return NULL;
	}
	if (resp_write(&cur_resp, PyBytes_AS_STRING(data), (size_t)PyBytes_GET_SIZE(data)) == -1)
		return NULL;
	Py_RETURN_NONE;
}

static PyTypeObject StartResponseType = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "cunicorn.StartResponse",
	.tp_basicsize = sizeof(CallableObject),
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_call = (ternaryfunc)start_response,
};

static PyTypeObject WriteType = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "cunicorn.Write",
	.tp_basicsize = sizeof(CallableObject),
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_call = (ternaryfunc)write_call,
};

/*
 * wsgi.early_hints (gunicorn 25+): early_hints([(name, value), ...]) sends
 * a "103 Early Hints" interim response before the final one.  A no-op on
 * HTTP/1.0 (no interim responses there) and once the final head is out.
 * The headers are checked as start_response checks them.
 */
static PyObject *
early_hints_call(CallableObject *self, PyObject *args, PyObject *kw)
{
	struct response hints = { 0 };
	PyObject *headers;
	int rc;

	if (!PyArg_ParseTuple(args, "O:early_hints", &headers))
		return NULL;
	if (self->gen != cur_gen) {
		PyErr_SetString(PyExc_RuntimeError, "early_hints() called after the request ended");
		return NULL;
	}
	if (set_headers(&hints, headers) == -1) {
		free(hints.headers.chars);
		return NULL;
	}
	if (cur_resp.http10 || cur_resp.headers_sent || cur_resp.failed) {
		free(hints.headers.chars);
		Py_RETURN_NONE;
	}
	struct iovec iov[3] = {
		{ (void *)"HTTP/1.1 103 Early Hints\r\n", 26 },
		{ hints.headers.chars, hints.headers.len },
		{ (void *)"\r\n", 2 },
	};
	cur_resp.writing = 1;
	rc = http_io_send_iov(cur_resp.fd, iov, 3);
	cur_resp.writing = 0;
	free(hints.headers.chars);
	if (rc == -1) {
		resp_io_error(&cur_resp);
		return NULL;
	}
	Py_RETURN_NONE;
}

static PyTypeObject EarlyHintsType = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "cunicorn.EarlyHints",
	.tp_basicsize = sizeof(CallableObject),
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_call = (ternaryfunc)early_hints_call,
};

/* Reuse obj for the new request if nobody else holds it, else replace. */
static int
renew(PyObject **obj, PyTypeObject *type)
{
	if (*obj != NULL && Py_REFCNT(*obj) == 1) {
		((CallableObject *)*obj)->gen = cur_gen;
		return 0;
	}
	Py_XDECREF(*obj);
	if ((*obj = (PyObject *)PyObject_New(CallableObject, type)) == NULL)
		return -1;
	((CallableObject *)*obj)->gen = cur_gen;
	return 0;
}

/* ---- wsgi.errors ---- */

static PyObject *
errors_write(PyObject *self, PyObject *arg)
{
	Py_ssize_t n;
	const char *s;

	if (PyBytes_Check(arg)) {
		s = PyBytes_AS_STRING(arg);
		n = PyBytes_GET_SIZE(arg);
	} else if ((s = PyUnicode_AsUTF8AndSize(arg, &n)) == NULL)
		return NULL;
	write_full(log_error_fd(), s, (size_t)n);
	return PyLong_FromSsize_t(n);
}

static PyObject *
errors_writelines(PyObject *self, PyObject *seq)
{
	PyObject *it = PyObject_GetIter(seq), *item;

	if (it == NULL)
		return NULL;
	while ((item = PyIter_Next(it)) != NULL) {
		PyObject *r = errors_write(self, item);
		Py_DECREF(item);
		if (r == NULL) {
			Py_DECREF(it);
			return NULL;
		}
		Py_DECREF(r);
	}
	Py_DECREF(it);
	if (PyErr_Occurred())
		return NULL;
	Py_RETURN_NONE;
}

static PyObject *
errors_flush(PyObject *self, PyObject *unused)
{
	Py_RETURN_NONE;
}

static PyMethodDef errors_methods[] = {
	{ "write", errors_write, METH_O, NULL },
	{ "writelines", errors_writelines, METH_O, NULL },
	{ "flush", errors_flush, METH_NOARGS, NULL },
	{ NULL, NULL, 0, NULL },
};

static PyTypeObject ErrorsType = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "cunicorn.Errors",
	.tp_basicsize = sizeof(PyObject),
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_doc = "wsgi.errors: writes go to the error log",
	.tp_methods = errors_methods,
};

/* ---- wsgi.file_wrapper ---- */

typedef struct {
	PyObject_HEAD
	PyObject *filelike;
	Py_ssize_t blksize;
} FileWrapperObject;

static int
fw_init(FileWrapperObject *self, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = { "filelike", "blksize", NULL };
	PyObject *f;
	Py_ssize_t blksize = 8192;

	if (!PyArg_ParseTupleAndKeywords(args, kw, "O|n:FileWrapper", kwlist, &f, &blksize))
		return -1;
	Py_XSETREF(self->filelike, Py_NewRef(f));
	self->blksize = blksize > 0 ? blksize : 8192;
	return 0;
}

static void
fw_dealloc(FileWrapperObject *self)
{
	PyObject_GC_UnTrack(self);
	Py_CLEAR(self->filelike);
	Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
fw_traverse(FileWrapperObject *self, visitproc visit, void *arg)
{
	Py_VISIT(self->filelike);
	return 0;
}

static int
fw_clear(FileWrapperObject *self)
{
	Py_CLEAR(self->filelike);
	return 0;
}

static PyObject *
fw_iternext(FileWrapperObject *self)
{
	PyObject *data;

	if (self->filelike == NULL)
		return NULL;
	data = PyObject_CallMethod(self->filelike, "read", "n", self->blksize);
	if (data == NULL)
		return NULL;
	if (PyObject_IsTrue(data) <= 0) {
		Py_DECREF(data);
		return NULL;
	}
	return data;
}

static PyObject *
fw_close(FileWrapperObject *self, PyObject *unused)
{
	if (self->filelike != NULL && PyObject_HasAttrString(self->filelike, "close"))
		return PyObject_CallMethod(self->filelike, "close", NULL);
	Py_RETURN_NONE;
}

static PyMethodDef fw_methods[] = {
	{ "close", (PyCFunction)fw_close, METH_NOARGS, NULL },
	{ NULL, NULL, 0, NULL },
};

static PyMemberDef fw_members[] = {
	{ "filelike", T_OBJECT, offsetof(FileWrapperObject, filelike), READONLY, NULL },
	{ "blksize", T_PYSSIZET, offsetof(FileWrapperObject, blksize), READONLY, NULL },
	{ NULL, 0, 0, 0, NULL },
};

static PyTypeObject FileWrapperType = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "cunicorn.FileWrapper",
	.tp_basicsize = sizeof(FileWrapperObject),
	.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE,
	.tp_doc = "wsgi.file_wrapper: sent with sendfile(2) when it wraps a real file",
	.tp_new = PyType_GenericNew,
	.tp_init = (initproc)fw_init,
	.tp_dealloc = (destructor)fw_dealloc,
	.tp_traverse = (traverseproc)fw_traverse,
	.tp_clear = (inquiry)fw_clear,
	.tp_iter = PyObject_SelfIter,
	.tp_iternext = (iternextfunc)fw_iternext,
	.tp_methods = fw_methods,
	.tp_members = fw_members,
};

/* ---- environ ---- */

static __thread struct buf scratch;	/* percent-decoding, header keys */
static __thread char peer_text[INET6_ADDRSTRLEN + 8];
static __thread int peer_port = -1;

static void
format_peer(struct http_conn *c)
{
	peer_port = http_peer_format(&c->peer, peer_text, sizeof(peer_text));
}

/*
 * forwarded_allow_ips, parsed once by allow_nets_init(): each entry is an
 * address or a CIDR network (gunicorn 22+: "10.0.0.0/8", "::1/128"),
 * matched on the peer's binary address.  An entry that is neither is kept
 * as text and compared with the peer's printed address, as before.
 * Read-only after init, so every gthread thread may read it.
 */
struct allow_net {
	int family;			/* AF_INET, AF_INET6, 0 = text only */
	int prefix;			/* network bits */
	unsigned char addr[16];		/* host bits already cleared */
	const char *text;		/* the setting's item (borrowed) */
};
static struct allow_net *allow_nets;
static size_t nallow_nets;

static void
mask_addr(unsigned char *a, size_t len, int prefix)
{
	for (size_t i = 0; i < len; i++) {
		int bits = prefix - (int)i * 8;
		a[i] &= bits >= 8 ? 0xff : bits <= 0 ? 0 : (unsigned char)(0xff << (8 - bits));
	}
}

static void
allow_nets_init(void)
{
	const struct strlist *l = &cfg->forwarded_allow_ips;

	allow_nets = xcalloc(l->len + 1, sizeof(*allow_nets));
	for (size_t i = 0; i < l->len; i++) {
		struct allow_net *n = &allow_nets[nallow_nets++];
		char buf[INET6_ADDRSTRLEN + 8], *slash, *end;
		long bits = -1;

		n->text = l->items[i];
		if (strlen(n->text) >= sizeof(buf))
			continue;
		strcpy(buf, n->text);
		if ((slash = strchr(buf, '/')) != NULL) {
			*slash = '\0';
			errno = 0;
			bits = strtol(slash + 1, &end, 10);
			if (errno || end == slash + 1 || *end || bits < 0)
				continue;
		}
		if (inet_pton(AF_INET, buf, n->addr) == 1) {
			if (bits > 32)
				continue;
			n->family = AF_INET;
			n->prefix = bits < 0 ? 32 : (int)bits;
			mask_addr(n->addr, 4, n->prefix);
		} else if (inet_pton(AF_INET6, buf, n->addr) == 1) {
			if (bits > 128)
				continue;
			n->family = AF_INET6;
			n->prefix = bits < 0 ? 128 : (int)bits;
			mask_addr(n->addr, 16, n->prefix);
		}
	}
}

static int
addr_in_net(const unsigned char *a, const struct allow_net *n)
{
	int full = n->prefix / 8, rest = n->prefix % 8;

	if (memcmp(a, n->addr, (size_t)full) != 0)
		return 0;
	return rest == 0 || (a[full] & (unsigned char)(0xff << (8 - rest))) == n->addr[full];
}

/* peer_text must be formatted (format_peer) before this is called. */
static int
peer_trusted(struct http_conn *c)
{
	const unsigned char *a = NULL;
	int family = c->peer.ss_family;

	if (trust_all_proxies || family == AF_UNIX)
		return 1;
	if (family == AF_INET)
		a = (const unsigned char *)&((const struct sockaddr_in *)&c->peer)->sin_addr;
	else if (family == AF_INET6)
		a = ((const struct sockaddr_in6 *)&c->peer)->sin6_addr.s6_addr;
	for (size_t i = 0; i < nallow_nets; i++) {
		const struct allow_net *n = &allow_nets[i];
		if (n->family == 0 ? strcmp(n->text, peer_text) == 0 :
		    n->family == family && a != NULL && addr_in_net(a, n))
			return 1;
	}
	return 0;
}

/* A header whose name has '_' that forwarder_headers lets a trusted peer set. */
static int
is_forwarder_header(const char *name, size_t len)
{
	const struct strlist *l = &cfg->forwarder_headers;

	for (size_t i = 0; i < l->len; i++)
		if (strcmp(l->items[i], "*") == 0 ||
		    (strlen(l->items[i]) == len && strncasecmp(l->items[i], name, len) == 0))
			return 1;
	return 0;
}

static int
hexval(int c)
{
	if (c >= '0' && c <= '9') return c - '0';
	if (c >= 'a' && c <= 'f') return c - 'a' + 10;
	if (c >= 'A' && c <= 'F') return c - 'A' + 10;
	return -1;
}

/* urllib.parse.unquote_to_bytes(s).decode('latin-1') */
static PyObject *
unquote_latin1(const char *s, size_t n)
{
	if (memchr(s, '%', n) == NULL)
		return PyUnicode_DecodeLatin1(s, (Py_ssize_t)n, NULL);
	scratch.len = 0;
	buf_reserve(&scratch, n);
	for (size_t i = 0; i < n; i++) {
		int hi, lo;
		if (s[i] == '%' && i + 2 < n && (hi = hexval(s[i + 1])) >= 0 &&
		    (lo = hexval(s[i + 2])) >= 0) {
			scratch.chars[scratch.len++] = (char)(hi * 16 + lo);
			i += 2;
		} else
			scratch.chars[scratch.len++] = s[i];
	}
	return PyUnicode_DecodeLatin1(scratch.chars, (Py_ssize_t)scratch.len, NULL);
}

static PyObject *
method_object(const char *m, size_t len)
{
	for (int i = 0; method_names[i]; i++)
		if (strlen(method_names[i]) == len && memcmp(method_names[i], m, len) == 0)
			return Py_NewRef(v_methods[i]);
	return PyUnicode_DecodeLatin1(m, (Py_ssize_t)len, NULL);
}

static int
set_new(PyObject *env, PyObject *key, PyObject *value)
{
	int rc;

	if (value == NULL)
		return -1;
	rc = PyDict_SetItem(env, key, value);
	Py_DECREF(value);
	return rc;
}

/*
 * gunicorn.socket: a socket.socket on the client's fd.  Making one costs
 * ~3.5 us (Python __init__, getsockname), too much for every request, and
 * a plain dict cannot make it on first access.  So one object per fd
 * number is kept (fds are recycled: the sync worker sees the same number
 * for every connection) and reused while nobody else holds it.  It never
 * owns the fd: a request that ends with the object kept elsewhere (the
 * app stored it) detaches it -- later calls fail with EBADF instead of
 * touching another connection -- and the next request makes a new one.
 * Its class turns close() into a detach that also forgets the object.
 * Only touched under the GIL.
 */
static PyObject *socket_type;		/* socket.socket */
static PyObject **sock_by_fd;		/* [fd]: our reference */
static int *sock_family;		/* [fd]: the family it was made for */
static size_t sock_slots;
static __thread int cur_sock_fd = -1;	/* the fd whose object this request uses */

static void
sock_drop(int fd)
{
	PyObject *s = sock_by_fd[fd], *r;

	sock_by_fd[fd] = NULL;
	if ((r = PyObject_CallMethod(s, "detach", NULL)) == NULL)
		PyErr_Clear();
	Py_XDECREF(r);
	Py_DECREF(s);
}

/* ClientSocket.close(): the app is done with the object; the next
 * request on this fd gets a fresh one. */
static PyObject *
sock_forget(PyObject *self, PyObject *args)
{
	PyObject *obj;
	int fd;

	if (!PyArg_ParseTuple(args, "iO", &fd, &obj))
		return NULL;
	if (fd >= 0 && (size_t)fd < sock_slots && sock_by_fd[fd] == obj) {
		sock_by_fd[fd] = NULL;
		Py_DECREF(obj);		/* the caller still holds it */
	}
	Py_RETURN_NONE;
}

static PyMethodDef sock_forget_def = {
	"_forget", sock_forget, METH_VARARGS, NULL
};

/* Borrowed reference, or NULL with an exception. */
static PyObject *
client_socket(struct http_conn *c)
{
	int fd = c->fd, family = c->peer.ss_family;

	if (fd < 0) {
		PyErr_SetString(PyExc_OSError, "no client socket");
		return NULL;
	}
	if ((size_t)fd >= sock_slots) {
		size_t n = sock_slots ? sock_slots : 64;
		while (n <= (size_t)fd)
			n *= 2;
		sock_by_fd = xrealloc(sock_by_fd, n * sizeof(*sock_by_fd));
		sock_family = xrealloc(sock_family, n * sizeof(*sock_family));
		memset(sock_by_fd + sock_slots, 0, (n - sock_slots) * sizeof(*sock_by_fd));
		sock_slots = n;
	}
	if (sock_by_fd[fd] != NULL && (Py_REFCNT(sock_by_fd[fd]) > 1 ||
	    sock_family[fd] != family))
		sock_drop(fd);
	if (sock_by_fd[fd] == NULL) {
		sock_by_fd[fd] = PyObject_CallFunction(socket_type, "iiii",
		    family, SOCK_STREAM, 0, fd);
		if (sock_by_fd[fd] == NULL)
			return NULL;
		sock_family[fd] = family;
	}
	cur_sock_fd = fd;
	return sock_by_fd[fd];
}

/* End of a request: an object the app kept must not outlive the fd. */
static void
client_socket_release(void)
{
	int fd = cur_sock_fd;

	cur_sock_fd = -1;
	if (fd >= 0 && sock_by_fd[fd] != NULL && Py_REFCNT(sock_by_fd[fd]) > 1)
		sock_drop(fd);
}

/* Why a request was refused before the app ran (400), or NULL. */
static __thread const char *bad_request;
static __thread char bad_request_buf[512];

static PyObject *
build_environ(struct http_conn *c)
{
	const struct http_request *q = &c->req;
	PyObject *env, *key, *val, *old;
	const char *host = NULL;
	size_t host_len = 0;
	int trusted = -1, scheme = -1;	/* -1 unknown, 0 http, 1 https */
	char kbuf[KEYCACHE_NAME + 8];
	const char *sn = script_name, *fwd_script = NULL;
	size_t sn_len = script_name_len, fwd_script_len = 0;

	bad_request = NULL;
	if ((env = PyDict_Copy(base_env)) == NULL)
		return NULL;
	if (set_new(env, k_request_method, method_object(q->method, q->method_len)) == -1 ||
	    set_new(env, k_query_string, q->query_len ? PyUnicode_DecodeLatin1(q->query,
	        (Py_ssize_t)q->query_len, NULL) : Py_NewRef(v_empty)) == -1 ||
	    set_new(env, k_raw_uri, PyUnicode_DecodeLatin1(q->target,
	        (Py_ssize_t)q->target_len, NULL)) == -1 ||
	    PyDict_SetItem(env, k_server_protocol,
	        q->version_minor == 0 ? v_http10 : v_http11) == -1)
		goto fail;
	if (q->version_major != 1 || q->version_minor > 1) {
		char proto[32];
		snprintf(proto, sizeof(proto), "HTTP/%d.%d", q->version_major, q->version_minor);
		if (set_new(env, k_server_protocol, PyUnicode_FromString(proto)) == -1)
			goto fail;
	}

	for (size_t i = 0; i < q->nheaders; i++) {
		const struct http_header *h = &q->headers[i];
		if (memchr(h->name, '_', h->name_len) != NULL) {
			/* gunicorn's header_map = "drop", but for the
			 * forwarder_headers a trusted proxy sends */
			if (!is_forwarder_header(h->name, h->name_len))
				continue;
			if (trusted == -1) {
				format_peer(c);
				trusted = peer_trusted(c);
			}
			if (!trusted)
				continue;
			if (h->name_len == 11 && strncasecmp(h->name, "script_name", 11) == 0) {
				fwd_script = h->value;
				fwd_script_len = h->value_len;
			}
		}
		if (h->name_len == 4 && strncasecmp(h->name, "host", 4) == 0) {
			host = h->value;
			host_len = h->value_len;
		}
		for (size_t j = 0; j < cfg->secure_scheme_names.len; j++) {
			const char *scheme_name = cfg->secure_scheme_names.items[j];
			if (strlen(scheme_name) != h->name_len || strncasecmp(scheme_name, h->name, h->name_len) != 0)
				continue;
			if (trusted == -1) {
				format_peer(c);
				trusted = peer_trusted(c);
			}
			if (!trusted)
				break;
			const char *sv = cfg->secure_scheme_values.items[j];
			int https = strlen(sv) == h->value_len &&
			    memcmp(sv, h->value, h->value_len) == 0;
			if (scheme != -1 && scheme != https) {
				bad_request = "Contradictory scheme headers";
				goto fail;
			}
			scheme = https;
		}
		key = NULL;
		if (h->name_len < KEYCACHE_NAME) {
			for (size_t j = 0; j < h->name_len; j++) {
				unsigned char ch = (unsigned char)h->name[j];
				kbuf[j] = ch == '-' ? '_' : (ch >= 'a' && ch <= 'z') ? ch - 32 : ch;
			}
			key = env_key(kbuf, h->name_len);
			if (key != NULL)
				Py_INCREF(key);
			else if (PyErr_Occurred())
				goto fail;
		}
		if (key == NULL) {
			scratch.len = 0;
			buf_appends(&scratch, "HTTP_");
			for (size_t j = 0; j < h->name_len; j++) {
				unsigned char ch = (unsigned char)h->name[j];
				char u = ch == '-' ? '_' : (ch >= 'a' && ch <= 'z') ? ch - 32 : ch;
				buf_append(&scratch, &u, 1);
			}
			if (scratch.len == 17 && memcmp(scratch.chars + 5, "CONTENT_TYPE", 12) == 0)
				key = Py_NewRef(k_content_type);
			else if (scratch.len == 19 && memcmp(scratch.chars + 5, "CONTENT_LENGTH", 14) == 0)
				key = Py_NewRef(k_content_length);
			else if ((key = PyUnicode_DecodeLatin1(scratch.chars,
			    (Py_ssize_t)scratch.len, NULL)) == NULL)
				goto fail;
		}
		if ((val = PyUnicode_DecodeLatin1(h->value, (Py_ssize_t)h->value_len, NULL)) == NULL) {
			Py_DECREF(key);
			goto fail;
		}
		if (key != k_content_type && key != k_content_length &&
		    (old = PyDict_GetItemWithError(env, key)) != NULL) {
			PyObject *joined = PyUnicode_FromFormat("%U,%U", old, val);
			Py_DECREF(val);
			val = joined;
		}
		if (val == NULL || PyDict_SetItem(env, key, val) == -1) {
			Py_XDECREF(val);
			Py_DECREF(key);
			goto fail;
		}
		Py_DECREF(val);
		Py_DECREF(key);
	}

	if (PyDict_SetItem(env, k_url_scheme, scheme == 1 ? v_https : v_http) == -1)
		goto fail;

	/* REMOTE_* */
	if (trusted == -1)
		format_peer(c);
	if (c->peer.ss_family == AF_UNIX) {
		if (PyDict_SetItem(env, k_remote_addr, v_empty) == -1)
			goto fail;
	} else if (set_new(env, k_remote_addr, PyUnicode_FromString(peer_text)) == -1 ||
	    set_new(env, k_remote_port, PyUnicode_FromFormat("%d", peer_port)) == -1)
		goto fail;

	/* SERVER_* : the listener's address, or the Host header for unix */
	size_t li = (size_t)(c->listener - listeners);
	if (li < nlisteners && srv_name[li] != NULL) {
		if (PyDict_SetItem(env, k_server_name, srv_name[li]) == -1 ||
		    PyDict_SetItem(env, k_server_port, srv_port[li]) == -1)
			goto fail;
	} else if (host != NULL) {
		const char *colon = memchr(host, ':', host_len);
		size_t nlen = colon ? (size_t)(colon - host) : host_len;
		if (set_new(env, k_server_name, PyUnicode_DecodeLatin1(host, (Py_ssize_t)nlen, NULL)) == -1)
			goto fail;
		if (colon) {
			const char *p = colon + 1, *e = memchr(p, ':', host_len - nlen - 1);
			size_t plen = e ? (size_t)(e - p) : host_len - nlen - 1;
			val = PyUnicode_DecodeLatin1(p, (Py_ssize_t)plen, NULL);
		} else
			val = PyUnicode_FromString(scheme == 1 ? "443" : "80");
		if (set_new(env, k_server_port, val) == -1)
			goto fail;
	} else {
		const char *name = c->listener ? c->listener->host : "";
		if (set_new(env, k_server_name, PyUnicode_DecodeFSDefault(name ? name : "")) == -1 ||
		    PyDict_SetItem(env, k_server_port, v_empty) == -1)
			goto fail;
	}

	/* SCRIPT_NAME (in base_env, or a trusted proxy's header) and PATH_INFO */
	const char *path = q->path;
	size_t path_len = q->path_len;
	if (fwd_script != NULL) {
		sn = fwd_script;
		sn_len = fwd_script_len;
		if (set_new(env, k_script_name, PyUnicode_DecodeLatin1(sn,
		    (Py_ssize_t)sn_len, NULL)) == -1)
			goto fail;
	}
	if (sn_len > 0) {
		if (path_len < sn_len || memcmp(path, sn, sn_len) != 0) {
			snprintf(bad_request_buf, sizeof(bad_request_buf),
			    "Configuration problem: Request path '%.*s' does not start with SCRIPT_NAME '%.*s'",
			    (int)(path_len > 200 ? 200 : path_len), path,
			    (int)(sn_len > 200 ? 200 : sn_len), sn);
			bad_request = bad_request_buf;
			goto fail;
		}
		path += sn_len;
		path_len -= sn_len;
	}
	if (set_new(env, k_path_info, unquote_latin1(path, path_len)) == -1)
		goto fail;

	if (renew((PyObject **)&input_obj, &InputType) == -1 ||
	    PyDict_SetItem(env, k_input, (PyObject *)input_obj) == -1 ||
	    renew((PyObject **)&hints_obj, &EarlyHintsType) == -1 ||
	    PyDict_SetItem(env, k_early_hints, (PyObject *)hints_obj) == -1 ||
	    (val = client_socket(c)) == NULL ||
	    PyDict_SetItem(env, k_socket, val) == -1)
		goto fail;
	return env;
fail:
	Py_DECREF(env);
	return NULL;
}

/* ---- hook objects (built only when a request hook is set) ---- */

static PyObject *
make_namespace(PyObject *kw)
{
	PyObject *empty, *o;

	if (kw == NULL)
		return NULL;
	if ((empty = PyTuple_New(0)) == NULL) {
		Py_DECREF(kw);
		return NULL;
	}
	o = PyObject_Call(ns_type, empty, kw);
	Py_DECREF(empty);
	Py_DECREF(kw);
	return o;
}

static PyObject *
make_req_object(struct http_conn *c)
{
	const struct http_request *q = &c->req;
	PyObject *headers = PyList_New((Py_ssize_t)q->nheaders);

	if (headers == NULL)
		return NULL;
	for (size_t i = 0; i < q->nheaders; i++) {
		const struct http_header *h = &q->headers[i];
		scratch.len = 0;
		for (size_t j = 0; j < h->name_len; j++) {
			unsigned char ch = (unsigned char)h->name[j];
			char u = (ch >= 'a' && ch <= 'z') ? (char)(ch - 32) : (char)ch;
			buf_append(&scratch, &u, 1);
		}
		PyObject *t = Py_BuildValue("(s#y#)", scratch.chars, (Py_ssize_t)scratch.len,
		    h->value, (Py_ssize_t)h->value_len);
		if (t == NULL) {
			Py_DECREF(headers);
			return NULL;
		}
		/* values as latin-1 str, like gunicorn */
		PyObject *v = PyUnicode_DecodeLatin1(h->value, (Py_ssize_t)h->value_len, NULL);
		if (v == NULL) {
			Py_DECREF(t);
			Py_DECREF(headers);
			return NULL;
		}
		PyTuple_SetItem(t, 1, v);
		PyList_SET_ITEM(headers, (Py_ssize_t)i, t);
	}
	format_peer(c);
	PyObject *kw = Py_BuildValue("{s:N,s:N,s:N,s:N,s:N,s:(ii),s:N,s:s,s:s}",
	    "method", PyUnicode_DecodeLatin1(q->method, (Py_ssize_t)q->method_len, NULL),
	    "uri", PyUnicode_DecodeLatin1(q->target, (Py_ssize_t)q->target_len, NULL),
	    "path", PyUnicode_DecodeLatin1(q->path, (Py_ssize_t)q->path_len, NULL),
	    "query", PyUnicode_DecodeLatin1(q->query ? q->query : "", (Py_ssize_t)q->query_len, NULL),
	    "fragment", PyUnicode_DecodeLatin1(q->fragment ? q->fragment : "",
	        (Py_ssize_t)q->fragment_len, NULL),
	    "version", q->version_major, q->version_minor,
	    "headers", headers,
	    "scheme", "http",
	    "remote_addr", peer_text);
	return make_namespace(kw);
}

static PyObject *
resp_headers_list(const struct response *r)
{
	PyObject *list = PyList_New(0);
	const char *p = r->headers.chars, *end = r->headers.chars + r->headers.len;

	if (list == NULL)
		return NULL;
	while (p < end) {
		const char *colon = memchr(p, ':', (size_t)(end - p));
		const char *eol = memchr(p, '\r', (size_t)(end - p));
		if (colon == NULL || eol == NULL)
			break;
		PyObject *t = Py_BuildValue("(NN)",
		    PyUnicode_DecodeLatin1(p, colon - p, NULL),
		    PyUnicode_DecodeLatin1(colon + 2, eol - colon - 2, NULL));
		if (t == NULL || PyList_Append(list, t) == -1) {
			Py_XDECREF(t);
			Py_DECREF(list);
			return NULL;
		}
		Py_DECREF(t);
		p = eol + 2;
	}
	return list;
}

static PyObject *
make_resp_object(const struct response *r)
{
	PyObject *status = r->status_set ?
	    PyUnicode_DecodeLatin1(r->status.chars, (Py_ssize_t)r->status.len, NULL) :
	    Py_NewRef(Py_None);
	PyObject *kw = Py_BuildValue("{s:N,s:N,s:N,s:K,s:N,s:O,s:O}",
	    "status", status,
	    "status_code", r->status_set ? PyLong_FromLong(r->status_code) : Py_NewRef(Py_None),
	    "headers", resp_headers_list(r),
	    "sent", (unsigned long long)r->sent,
	    "response_length", r->content_length >= 0 ?
	        PyLong_FromLongLong(r->content_length) : Py_NewRef(Py_None),
	    "chunked", r->chunked ? Py_True : Py_False,
	    "headers_sent", r->headers_sent ? Py_True : Py_False);
	return make_namespace(kw);
}

/* ---- access log ---- */

enum alog_kind { AL_TEXT, AL_ATOM, AL_REQ_HEADER, AL_RESP_HEADER, AL_ENV, AL_NONE };

struct alog_seg {
	enum alog_kind kind;
	char atom;
	char *text;		/* AL_TEXT: literal; others: lower-cased name */
	size_t len;
};

static struct alog_seg *alog;
static size_t nalog;
static __thread struct buf logline;

static void
alog_add(enum alog_kind kind, char atom, const char *text, size_t len)
{
	alog = xreallocarray(alog, nalog + 1, sizeof(*alog));
	alog[nalog].kind = kind;
	alog[nalog].atom = atom;
	alog[nalog].text = xmalloc(len + 1);
	memcpy(alog[nalog].text, text, len);
	alog[nalog].text[len] = '\0';
	alog[nalog].len = len;
	nalog++;
}

/* Python %-format with a mapping: "%(name)s" (any conversion letter
 * treated as s), "%%". */
static void
alog_compile(const char *fmt)
{
	const char *p = fmt, *lit = fmt;

	while (*p) {
		if (p[0] != '%') {
			p++;
			continue;
		}
		if (p[1] == '%') {
			alog_add(AL_TEXT, 0, lit, (size_t)(p - lit) + 1);
			p += 2;
			lit = p;
			continue;
		}
		const char *close;
		if (p[1] != '(' || (close = strchr(p + 2, ')')) == NULL) {
			p++;
			continue;
		}
		if (p > lit)
			alog_add(AL_TEXT, 0, lit, (size_t)(p - lit));
		const char *name = p + 2;
		size_t nlen = (size_t)(close - name);
		const char *after = close + 1;
		while (*after && strchr("#0- +123456789.", *after))	/* flags, width */
			after++;
		if (*after)
			after++;	/* conversion letter */
		char buf[256];
		size_t bl = nlen < sizeof(buf) - 1 ? nlen : sizeof(buf) - 1;
		for (size_t i = 0; i < bl; i++)
			buf[i] = (char)(name[0] == '{' ? tolower((unsigned char)name[i]) : name[i]);
		buf[bl] = '\0';
		if (bl == 1 && strchr("hlutrsmUqHbBfaTDMLp", buf[0]))
			alog_add(AL_ATOM, buf[0], buf, bl);
		else if (bl > 3 && buf[0] == '{' && buf[bl - 2] == '}' && strchr("ioe", buf[bl - 1])) {
			enum alog_kind k = buf[bl - 1] == 'i' ? AL_REQ_HEADER :
			    buf[bl - 1] == 'o' ? AL_RESP_HEADER : AL_ENV;
			alog_add(k, 0, buf + 1, bl - 3);
		} else
			alog_add(AL_NONE, 0, buf, bl);
		p = after;
		lit = p;
	}
	if (p > lit)
		alog_add(AL_TEXT, 0, lit, (size_t)(p - lit));
}

static void
log_add_env(PyObject *env, PyObject *key, const char *dflt)
{
	PyObject *v = env ? PyDict_GetItemWithError(env, key) : NULL;
	Py_ssize_t n;
	const char *s;

	if (v != NULL && PyUnicode_Check(v) && (s = PyUnicode_AsUTF8AndSize(v, &n)) != NULL) {
		buf_append(&logline, s, (size_t)n);
		return;
	}
	PyErr_Clear();
	buf_appends(&logline, dflt);
}

static int
b64val(int c)
{
	if (c >= 'A' && c <= 'Z') return c - 'A';
	if (c >= 'a' && c <= 'z') return c - 'a' + 26;
	if (c >= '0' && c <= '9') return c - '0' + 52;
	if (c == '+') return 62;
	if (c == '/') return 63;
	return -1;
}

/* The user of "Authorization: Basic ...", as gunicorn's _get_user. */
static void
log_add_user(PyObject *env)
{
	PyObject *v = env ? PyDict_GetItemWithError(env, k_http_authorization) : NULL;
	const char *s, *sp;
	char out[512];
	size_t o = 0;
	unsigned acc = 0;
	int bits = 0;

	if (v == NULL || !PyUnicode_Check(v) || (s = PyUnicode_AsUTF8(v)) == NULL ||
	    strncasecmp(s, "basic", 5) != 0 || (sp = strchr(s, ' ')) == NULL)
		goto none;
	for (sp++; *sp && o < sizeof(out); sp++) {
		int d = b64val((unsigned char)*sp);
		if (d < 0)
			continue;
		acc = (acc << 6) | (unsigned)d;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (char)((acc >> bits) & 0xff);
		}
	}
	char *colon = memchr(out, ':', o);
	if (colon == NULL || colon == out)
		goto none;
	buf_append(&logline, out, (size_t)(colon - out));
	return;
none:
	PyErr_Clear();
	buf_appends(&logline, "-");
}

static void
access_log(struct http_conn *c, PyObject *env, const struct response *r,
    int status_code, uint64_t elapsed_us)
{
	const struct http_request *q = &c->req;

	logline.len = 0;
	for (size_t i = 0; i < nalog; i++) {
		const struct alog_seg *s = &alog[i];
		switch (s->kind) {
		case AL_TEXT:
			buf_append(&logline, s->text, s->len);
			break;
		case AL_NONE:
			buf_appends(&logline, "-");
			break;
		case AL_ATOM:
			switch (s->atom) {
			case 'h': log_add_env(env, k_remote_addr, "-"); break;
			case 'l': buf_appends(&logline, "-"); break;
			case 'u': log_add_user(env); break;
			case 't': {
				char tb[64];
				struct tm tm;
				time_t now = time(NULL);
				localtime_r(&now, &tm);
				strftime(tb, sizeof(tb), "[%d/%b/%Y:%H:%M:%S %z]", &tm);
				buf_appends(&logline, tb);
				break;
			}
			case 'r':
				log_add_env(env, k_request_method, "-");
				buf_appends(&logline, " ");
				log_add_env(env, k_raw_uri, "-");
				buf_appends(&logline, " ");
				log_add_env(env, k_server_protocol, "-");
				break;
			case 's': buf_printf(&logline, "%d", status_code); break;
			case 'm': log_add_env(env, k_request_method, "-"); break;
			case 'U': log_add_env(env, k_path_info, "-"); break;
			case 'q': log_add_env(env, k_query_string, "-"); break;
			case 'H': log_add_env(env, k_server_protocol, "-"); break;
			case 'b':
			case 'B': buf_printf(&logline, "%llu", (unsigned long long)r->sent); break;
			case 'f': log_add_env(env, k_http_referer, "-"); break;
			case 'a': log_add_env(env, k_http_user_agent, "-"); break;
			case 'T': buf_printf(&logline, "%llu", (unsigned long long)(elapsed_us / 1000000)); break;
			case 'D': buf_printf(&logline, "%llu", (unsigned long long)elapsed_us); break;
			case 'M': buf_printf(&logline, "%llu", (unsigned long long)(elapsed_us / 1000)); break;
			case 'L': buf_printf(&logline, "%llu.%06llu", (unsigned long long)(elapsed_us / 1000000),
			    (unsigned long long)(elapsed_us % 1000000)); break;
			case 'p': buf_printf(&logline, "<%ld>", (long)getpid()); break;
			}
			break;
		case AL_REQ_HEADER: {
			const struct http_header *found = NULL;
			for (size_t j = 0; j < q->nheaders; j++)
				if (q->headers[j].name_len == s->len &&
				    strncasecmp(q->headers[j].name, s->text, s->len) == 0)
					found = &q->headers[j];
			if (found)
				buf_append(&logline, found->value, found->value_len);
			else
				buf_appends(&logline, "-");
			break;
		}
		case AL_RESP_HEADER: {
			const char *p = r->headers.chars, *end = p + r->headers.len;
			const char *val = NULL;
			size_t vlen = 0;
			while (p < end) {
				const char *colon = memchr(p, ':', (size_t)(end - p));
				const char *eol = memchr(p, '\r', (size_t)(end - p));
				if (colon == NULL || eol == NULL)
					break;
				if ((size_t)(colon - p) == s->len && strncasecmp(p, s->text, s->len) == 0) {
					val = colon + 2;
					vlen = (size_t)(eol - colon - 2);
				}
				p = eol + 2;
			}
			if (val)
				buf_append(&logline, val, vlen);
			else
				buf_appends(&logline, "-");
			break;
		}
		case AL_ENV: {
			PyObject *k, *v, *str = NULL;
			Py_ssize_t pos = 0;
			const char *ks;
			Py_ssize_t kl;
			while (env && PyDict_Next(env, &pos, &k, &v)) {
				if (PyUnicode_Check(k) && (ks = PyUnicode_AsUTF8AndSize(k, &kl)) != NULL &&
				    (size_t)kl == s->len && strncasecmp(ks, s->text, s->len) == 0) {
					Py_XSETREF(str, PyObject_Str(v));
				}
			}
			const char *vs = str ? PyUnicode_AsUTF8AndSize(str, &kl) : NULL;
			if (vs)
				buf_append(&logline, vs, (size_t)kl);
			else
				buf_appends(&logline, "-");
			Py_XDECREF(str);
			PyErr_Clear();
			break;
		}
		}
	}
	buf_append(&logline, "\n", 1);
	log_access_write(logline.chars, logline.len);
}

/* ---- running the app ---- */

static uint64_t
realtime_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* The list/tuple-of-bytes fast path: one writev for head and body. */
static int
send_sequence(struct response *r, PyObject *seq)
{
	Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
	struct iovec iov[MAX_FAST_IOV + 1];
	uint64_t total = 0;
	int k = 0;

	for (Py_ssize_t i = 0; i < n; i++)
		total += (uint64_t)PyBytes_GET_SIZE(PySequence_Fast_GET_ITEM(seq, i));
	if (r->content_length < 0 && r->status_code >= 200 &&
	    r->status_code != 204 && r->status_code != 304) {
		r->content_length = (int64_t)total;
		r->auto_length = 1;
		r->chunked = 0;
	}
	uint64_t left = r->content_length >= 0 ? (uint64_t)r->content_length : total;
	if (r->head_only)
		left = 0;
	if (r->chunked)
		return -2;	/* 1xx/204/304 without length: general path */
	build_head(r);
	iov[k].iov_base = headbuf.chars;
	iov[k++].iov_len = headbuf.len;
	uint64_t body = 0;
	for (Py_ssize_t i = 0; i < n && left > 0; i++) {
		PyObject *b = PySequence_Fast_GET_ITEM(seq, i);
		size_t len = (size_t)PyBytes_GET_SIZE(b);
		if (len > left)
			len = (size_t)left;
		if (len == 0)
			continue;
		iov[k].iov_base = PyBytes_AS_STRING(b);
		iov[k++].iov_len = len;
		left -= len;
		body += len;
	}
	if (http_io_send_iov(r->fd, iov, k) == -1)
		return resp_io_error(r);
	r->headers_sent = 1;
	r->sent = body;
	return 0;
}

/* file_wrapper around a real file: sendfile(2).  1 sent, 0 not possible
 * (caller iterates), -1 error. */
static int
send_file(struct response *r, FileWrapperObject *fw)
{
	PyObject *fno;
	struct stat st;
	off_t offset, pos;
	uint64_t nbytes;
	int fd;

	if (fw->filelike == NULL || !PyObject_HasAttrString(fw->filelike, "fileno"))
		return 0;
	if ((fno = PyObject_CallMethod(fw->filelike, "fileno", NULL)) == NULL) {
		PyErr_Clear();
		return 0;
	}
	fd = (int)PyLong_AsLong(fno);
	Py_DECREF(fno);
	if (fd < 0 || PyErr_Occurred()) {
		PyErr_Clear();
		return 0;
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode))
		return 0;
	/* the logical position: tell() accounts for Python-level buffering
	 * (an app may have read a little first); the raw offset does not */
	offset = -1;
	if (PyObject_HasAttrString(fw->filelike, "tell")) {
		PyObject *t = PyObject_CallMethod(fw->filelike, "tell", NULL);
		if (t != NULL)
			offset = (off_t)PyLong_AsLongLong(t);
		Py_XDECREF(t);
		if (PyErr_Occurred()) {
			PyErr_Clear();
			offset = -1;
		}
	}
	if (offset < 0 && (offset = lseek(fd, 0, SEEK_CUR)) == -1)
		return 0;
	nbytes = st.st_size > offset ? (uint64_t)(st.st_size - offset) : 0;
	if (r->content_length >= 0) {
		if ((uint64_t)r->content_length < nbytes)
			nbytes = (uint64_t)r->content_length;
	} else if (r->status_code >= 200 && r->status_code != 204 && r->status_code != 304) {
		r->content_length = (int64_t)nbytes;
		r->auto_length = 1;
		r->chunked = 0;
	}
	if (r->chunked)
		return 0;
	build_head(r);
	if (http_io_send(r->fd, headbuf.chars, headbuf.len) == -1)
		return resp_io_error(r);
	r->headers_sent = 1;
	if (r->head_only)
		return 1;
	pos = offset;
	while (nbytes > 0) {
		size_t n = nbytes > 0x3fffffff ? 0x3fffffff : (size_t)nbytes;
		ssize_t w = sendfile(r->fd, fd, &pos, n);
		if (w > 0) {
			nbytes -= (uint64_t)w;
			r->sent += (uint64_t)w;
			continue;
		}
		if (w == 0)
			break;	/* file shrank */
		if (errno == EINTR) {
			http_io_interrupted();
			continue;
		}
		if (errno == EAGAIN && http_io_wait(r->fd, POLLOUT) == 0)
			continue;
		return resp_io_error(r);
	}
	return 1;	/* sendfile() with an offset leaves the file position alone */
}

/* A dirty stream as the body, in the gthread worker: start the call, send
 * the head, and leave the chunks to the worker's loop (r->conn->relay).
 * 1 handed over, 0 not a relayable stream (iterate it), -1 error. */
static int
send_relayed(struct response *r, PyObject *result)
{
	PyObject *meth, *t;
	int fd;
	unsigned long long id;
	const char *pending;
	Py_ssize_t plen;
	double idle, total;

	if (_PyObject_LookupAttr(result, k_relay, &meth) <= 0)
		return meth == NULL && PyErr_Occurred() ? -1 : 0;
	t = PyObject_CallNoArgs(meth);
	Py_DECREF(meth);
	if (t == NULL)
		return -1;
	if (t == Py_None) {
		Py_DECREF(t);
		return 0;
	}
	if (!PyArg_ParseTuple(t, "iKy#dd", &fd, &id, &pending, &plen, &idle, &total)) {
		Py_DECREF(t);
		return -1;
	}
	struct http_relay *rl = xcalloc(1, sizeof(*rl));
	rl->fd = fd;
	rl->id = id;
	if (plen > 0) {
		rl->pending = xmalloc((size_t)plen);
		memcpy(rl->pending, pending, (size_t)plen);
		rl->pending_len = (size_t)plen;
	}
	Py_DECREF(t);
	rl->idle_ms = idle > 0 ? (unsigned)(idle * 1000) : 0;
	rl->total_ms = total > 0 ? (unsigned)(total * 1000) : 0;
	build_head(r);
	if (http_io_send(r->fd, headbuf.chars, headbuf.len) == -1) {
		close(rl->fd);
		free(rl->pending);
		free(rl);
		return resp_io_error(r);
	}
	r->headers_sent = 1;
	r->relayed = 1;
	r->conn->relay = rl;
	return 1;
}

static int
send_result(struct response *r, PyObject *result)
{
	PyObject *it, *item;

	if (Py_TYPE(result) == &FileWrapperType && cfg->sendfile &&
	    !r->headers_sent && r->status_set) {
		int rc = send_file(r, (FileWrapperObject *)result);
		if (rc != 0)
			return rc < 0 ? -1 : 0;
	}
	if ((PyList_CheckExact(result) || PyTuple_CheckExact(result)) &&
	    !r->headers_sent && r->status_set &&
	    PySequence_Fast_GET_SIZE(result) <= MAX_FAST_IOV) {
		Py_ssize_t n = PySequence_Fast_GET_SIZE(result), i;
		for (i = 0; i < n; i++)
			if (!PyBytes_CheckExact(PySequence_Fast_GET_ITEM(result, i)))
				break;
		if (i == n) {
			int rc = send_sequence(r, result);
			if (rc != -2)
				return rc;
		}
	}
	if (relay_streams && !r->headers_sent && r->status_set && r->chunked) {
		int rc = send_relayed(r, result);
		if (rc != 0)
			return rc < 0 ? -1 : 0;
	}
	if ((it = PyObject_GetIter(result)) == NULL)
		return -1;
	while ((item = PyIter_Next(it)) != NULL) {
		if (!PyBytes_Check(item)) {
			PyErr_Format(PyExc_TypeError, "%R is not a byte", item);
			Py_DECREF(item);
			Py_DECREF(it);
			return -1;
		}
		if (!r->status_set) {
			Py_DECREF(item);
			Py_DECREF(it);
			PyErr_SetString(PyExc_AssertionError, "the application returned data before calling start_response()");
			return -1;
		}
		int rc = resp_write(r, PyBytes_AS_STRING(item), (size_t)PyBytes_GET_SIZE(item));
		Py_DECREF(item);
		if (rc == -1) {
			Py_DECREF(it);
			return -1;
		}
	}
	Py_DECREF(it);
	if (PyErr_Occurred())
		return -1;
	if (!r->status_set) {
		PyErr_SetString(PyExc_AssertionError, "the application did not call start_response()");
		return -1;
	}
	return 0;
}

/* result.close(), if any.  0, or -1 with an exception set. */
static int
close_result(PyObject *result)
{
	PyObject *meth, *r;

	if (PyList_CheckExact(result) || PyTuple_CheckExact(result) || PyBytes_CheckExact(result))
		return 0;
	meth = PyObject_GetAttrString(result, "close");
	if (meth == NULL) {
		if (PyErr_ExceptionMatches(PyExc_AttributeError)) {
			PyErr_Clear();
			return 0;
		}
		return -1;
	}
	r = PyObject_CallNoArgs(meth);
	Py_DECREF(meth);
	if (r == NULL)
		return -1;
	Py_DECREF(r);
	return 0;
}

static void
log_app_error(struct http_conn *c, int with_uri)
{
	char ctx[600];

	if (with_uri)
		snprintf(ctx, sizeof(ctx), "Error handling request %.*s",
		    (int)(c->req.target_len > 512 ? 512 : c->req.target_len), c->req.target);
	else
		snprintf(ctx, sizeof(ctx), "Error handling request");
	python_log_exception(LOG_ERROR, LOG_ERROR, ctx);
}

int
wsgi_handle(struct http_conn *c)
{
	struct response *r = &cur_resp;
	PyObject *env = NULL, *result = NULL, *reqobj = NULL;
	PyObject *args[2];
	int rc = 0, failed = 0, status_code = 0;
	int want_hooks = cfg->hooks[HOOK_PRE_REQUEST] != NULL ||
	    cfg->hooks[HOOK_POST_REQUEST] != NULL;
	uint64_t start;

	cur_gen = ++gen_counter;
	if (want_hooks) {
		if ((reqobj = make_req_object(c)) == NULL) {
			python_log_exception(LOG_ERROR, LOG_DEBUG, "request object for hooks");
			reqobj = Py_NewRef(Py_None);
		}
		python_hook(cfg, HOOK_PRE_REQUEST, 2, wsgi_worker_object(), reqobj);
	}
	/* gunicorn's default pre_request hook logs "METHOD path" at debug */
	if (cfg->hooks[HOOK_PRE_REQUEST] == NULL && log_get_level() <= LOG_DEBUG)
		log_debug("%.*s %.*s", (int)c->req.method_len, c->req.method,
		    (int)c->req.path_len, c->req.path);
	start = realtime_us();
	resp_begin(c);
	body_begin(c);

	if ((env = build_environ(c)) == NULL) {
		if (bad_request != NULL) {
			PyErr_Clear();
			log_warnx("Invalid request from ip=%s: %s", peer_text, bad_request);
			http_write_error(c->fd, 400, "Bad Request", bad_request);
			r->keepalive = 0;
			c->body_unread = body_unread(&cur_body);
			goto done;
		}
		failed = 1;
		goto error;
	}
	if (renew((PyObject **)&sr_obj, &StartResponseType) == -1 ||
	    renew((PyObject **)&write_obj, &WriteType) == -1) {
		failed = 1;
		goto error;
	}
	args[0] = env;
	args[1] = (PyObject *)sr_obj;
	result = PyObject_Vectorcall(app, args, 2, NULL);
	if (result == NULL || send_result(r, result) == -1 || resp_finish(r) == -1)
		failed = 1;
	else {
		/* fewer bytes than its Content-Length: the client would wait */
		if (r->content_length >= 0 && r->sent < (uint64_t)r->content_length &&
		    !r->head_only)
			r->keepalive = 0;
		status_code = r->status_code;
		if (log_access_enabled())
			access_log(c, env, r, status_code, realtime_us() - start);
	}
	if (result != NULL) {
		if (failed) {
			/* keep the first exception; close() still runs */
			PyObject *t, *v, *tb;
			PyErr_Fetch(&t, &v, &tb);
			if (close_result(result) == -1)
				PyErr_Clear();
			PyErr_Restore(t, v, tb);
		} else if (close_result(result) == -1) {
			failed = 1;
		}
	}
error:
	if (failed) {
		r->keepalive = 0;	/* every error page says Connection: close */
		if (r->failed || (cur_body.io_error && !r->headers_sent)) {
			if (PyErr_Occurred() && log_get_level() <= LOG_DEBUG)
				python_log_exception(LOG_DEBUG, LOG_DEBUG,
				    cur_body.io_error ? "Ignored premature client disconnection" :
				    "Ignoring socket error");
			PyErr_Clear();
			rc = -1;
		} else if (cur_body.err_status && !r->headers_sent) {
			/* malformed chunked body: the client's fault, not the app's */
			PyErr_Clear();
			format_peer(c);
			log_warnx("Invalid request from ip=%s: %s", peer_text, cur_body.err_reason);
			http_write_error(c->fd, cur_body.err_status,
			    http_reason_phrase(cur_body.err_status), cur_body.err_reason);
			r->status_code = cur_body.err_status;
			if (log_access_enabled())
				access_log(c, env, r, r->status_code, realtime_us() - start);
		} else if (!r->headers_sent) {
			log_app_error(c, 1);
			PyErr_Clear();
			http_write_error(c->fd, 500, "Internal Server Error", "");
			r->status_set = 1;
			r->status_code = 500;
			r->status.len = 0;
			buf_appends(&r->status, "500 Internal Server Error");
			r->headers.len = 0;
			r->sent = 0;
			if (log_access_enabled())
				access_log(c, env, r, 500, realtime_us() - start);
		} else {
			log_app_error(c, 0);
			PyErr_Clear();
			shutdown(c->fd, SHUT_RDWR);
			rc = -1;
		}
	}
	c->body_unread = body_unread(&cur_body);
done:
	if (cfg->hooks[HOOK_POST_REQUEST] != NULL) {
		PyObject *respobj = make_resp_object(r);
		if (respobj == NULL) {
			python_log_exception(LOG_ERROR, LOG_DEBUG, "response object for hooks");
			respobj = Py_NewRef(Py_None);
		}
		if (python_hook(cfg, HOOK_POST_REQUEST, 4, wsgi_worker_object(), reqobj,
		    env ? env : Py_None, respobj) == -1)
			log_debug("Exception in post_request hook");
		Py_DECREF(respobj);
	}
	/* Keep the connection only when the request's bytes end exactly where
	 * the next request's begin: the unread body is read and dropped (up
	 * to a bound), a client still waiting for 100-continue is closed. */
	if (r->keepalive && rc == 0 && !cur_body.continue_pending &&
	    body_drain(&cur_body) == 0) {
		c->keepalive = 1;
		c->next = cur_body.pos;
	} else
		c->keepalive = 0;
	cur_gen = ++gen_counter;	/* every object of this request is now stale */
	Py_XDECREF(result);
	Py_XDECREF(env);
	Py_XDECREF(reqobj);
	client_socket_release();
	r->in_flight = 0;
	return rc;
}

int
wsgi_abort_responses(void)
{
	int n = 0;

	for (size_t i = 0; i < nlive_resps; i++) {
		struct response *r = live_resps[i];
		if (!r->in_flight || r->headers_sent || r->writing || r->failed)
			continue;
		r->writing = 1;
		log_debug("Answering 500 to the request in flight: the worker is stopping");
		http_write_error(r->fd, 500, "Internal Server Error", "");
		r->failed = 1;	/* the app's own response never follows */
		n++;
	}
	return n;
}

/* ---- Python-level signal handlers: let INT/QUIT/ABRT interrupt the app ---- */


static PyObject *
py_signal_handler(PyObject *self, PyObject *args)
{
	if (urgent_signals != NULL)
		urgent_signals();
	Py_RETURN_NONE;
}

static PyMethodDef signal_handler_def = {
	"_cunicorn_worker_signal", py_signal_handler, METH_VARARGS, NULL
};

static int
install_python_signal_handlers(void)
{
	static const int sigs[] = { SIGINT, SIGQUIT, SIGABRT };
	PyObject *mod = signal_mod, *fn;

	Py_INCREF(mod);
	if ((fn = PyCFunction_New(&signal_handler_def, NULL)) == NULL) {
		Py_DECREF(mod);
		return -1;
	}
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
		PyObject *r = PyObject_CallMethod(mod, "signal", "iO", sigs[i], fn);
		if (r == NULL) {
			Py_DECREF(fn);
			Py_DECREF(mod);
			return -1;
		}
		Py_DECREF(r);
	}
	Py_DECREF(fn);
	Py_DECREF(mod);
	return 0;
}

void
wsgi_signal_trip(int sig)
{
	PyErr_SetInterruptEx(sig);
}

/* ---- setup ---- */

/*
 * Everything that does not depend on the worker: made once in the master
 * before forking (master.c calls this before gc.freeze()), so that all
 * workers share it.  Made in each worker, the type slots, the interned
 * keys and the first import through importlib's Python code (even of a
 * built-in module) would write into ~0.5 MB of the master's pages.
 */
int
wsgi_prepare(void)
{
	static int done;
	PyObject *mod;

	if (done)
		return 0;
	if (PyType_Ready(&InputType) < 0 || PyType_Ready(&StartResponseType) < 0 ||
	    PyType_Ready(&WriteType) < 0 || PyType_Ready(&ErrorsType) < 0 ||
	    PyType_Ready(&FileWrapperType) < 0 || PyType_Ready(&EarlyHintsType) < 0)
		return -1;

	k_request_method = intern("REQUEST_METHOD");
	k_script_name = intern("SCRIPT_NAME");
	k_path_info = intern("PATH_INFO");
	k_query_string = intern("QUERY_STRING");
	k_raw_uri = intern("RAW_URI");
	k_server_name = intern("SERVER_NAME");
	k_server_port = intern("SERVER_PORT");
	k_server_protocol = intern("SERVER_PROTOCOL");
	k_remote_addr = intern("REMOTE_ADDR");
	k_remote_port = intern("REMOTE_PORT");
	k_content_type = intern("CONTENT_TYPE");
	k_content_length = intern("CONTENT_LENGTH");
	k_url_scheme = intern("wsgi.url_scheme");
	k_input = intern("wsgi.input");
	k_relay = intern("_cunicorn_relay");
	k_early_hints = intern("wsgi.early_hints");
	k_socket = intern("gunicorn.socket");
	k_http_authorization = intern("HTTP_AUTHORIZATION");
	k_http_referer = intern("HTTP_REFERER");
	k_http_user_agent = intern("HTTP_USER_AGENT");
	v_http = intern("http");
	v_https = intern("https");
	v_http11 = intern("HTTP/1.1");
	v_http10 = intern("HTTP/1.0");
	v_empty = intern("");
	for (int i = 0; method_names[i]; i++)
		v_methods[i] = intern(method_names[i]);

	if ((mod = PyImport_ImportModule("types")) == NULL)
		return -1;
	ns_type = PyObject_GetAttrString(mod, "SimpleNamespace");
	Py_DECREF(mod);
	if (ns_type == NULL)
		return -1;
	/* _signal (built in), not signal: signal.py imports enum, ~1.7 MB
	 * more in every worker when the app does not import it anyway */
	if ((signal_mod = PyImport_ImportModule("_signal")) == NULL)
		return -1;
	/* gunicorn.socket's class, made here so that workers share it: a
	 * socket.socket whose close() gives the fd back instead of closing
	 * it -- the worker closes the connection, and an fd number closed
	 * twice could be another connection's by then */
	static const char sock_src[] =
	    "import socket\n"
	    "class ClientSocket(socket.socket):\n"
	    "    # the connection's socket, owned by the worker\n"
	    "    __slots__ = ()\n"
	    "    def _real_close(self, _ss=socket._socket.socket, _forget=_forget):\n"
	    "        if self.fileno() >= 0:\n"
	    "            _forget(self.fileno(), self)\n"
	    "            _ss.detach(self)\n"
	    "    def close(self):\n"
	    "        self._closed = True\n"
	    "        if self._io_refs <= 0:\n"
	    "            self._real_close()\n";
	PyObject *globals = PyDict_New(), *res = NULL;
	if (globals == NULL || PyDict_SetItemString(globals, "__builtins__",
	    PyEval_GetBuiltins()) == -1 ||
	    PyDict_SetItemString(globals, "__name__", v_empty) == -1 ||
	    (res = PyCFunction_New(&sock_forget_def, NULL)) == NULL ||
	    PyDict_SetItemString(globals, "_forget", res) == -1) {
		Py_XDECREF(globals);
		return -1;
	}
	Py_DECREF(res);
	res = PyRun_String(sock_src, Py_file_input, globals, globals);
	Py_XDECREF(res);
	socket_type = res ? PyDict_GetItemString(globals, "ClientSocket") : NULL;
	Py_XINCREF(socket_type);
	Py_DECREF(globals);
	if (socket_type == NULL)
		return -1;
	done = 1;
	return 0;
}

/* Made on first use (or in wsgi_init when a worker hook is set): a
 * worker without such hooks never runs the Python code that builds it,
 * which would write into ~0.25 MB of the master's pages. */
void *
wsgi_worker_object(void)
{
	if (worker_obj == NULL && cfg != NULL &&
	    (worker_obj = python_worker_object(cfg, getpid(), worker_age)) == NULL) {
		PyErr_Clear();
		worker_obj = Py_NewRef(Py_None);
	}
	return worker_obj;
}

void
wsgi_flush_stdio(void)
{
	static const char *const names[] = { "stdout", "stderr" };

	if (!Py_IsInitialized())
		return;
	for (int i = 0; i < 2; i++) {
		PyObject *f = PySys_GetObject(names[i]), *r;	/* borrowed */
		if (f == NULL || f == Py_None)
			continue;
		if ((r = PyObject_CallMethod(f, "flush", NULL)) == NULL)
			PyErr_Clear();
		Py_XDECREF(r);
	}
}

/* Around every socket wait: let other threads run Python meanwhile. */
static void *
io_unlock(void)
{
	return PyGILState_Check() ? (void *)PyEval_SaveThread() : NULL;
}

static void
io_relock(void *ts)
{
	if (ts != NULL)
		PyEval_RestoreThread((PyThreadState *)ts);
}

int
wsgi_init(const struct wsgi_setup *setup, void *app_obj)
{
	PyObject *errors, *v;
	struct http_io_hooks hooks;
	int io_timeout_ms;

	cfg = setup->cfg;
	app = app_obj;
	listeners = setup->listeners;
	nlisteners = setup->nlisteners;
	urgent_signals = setup->urgent_signals;
	{
		struct http_conn_limits lim;
		http_conn_limits_init(&lim, setup->cfg);
		body_base_ms = lim.head_timeout_ms;
	}
	keepalive_gate = setup->keepalive_gate;
	relay_streams = setup->relay_streams;
	/* a client that stalls this long is dropped, before the master's
	 * timeout would kill the whole worker */
	io_timeout_ms = cfg->timeout > 0 ? cfg->timeout * 750 : -1;
	if (io_timeout_ms >= 0 && io_timeout_ms < 1000)
		io_timeout_ms = 1000;
	hooks = (struct http_io_hooks){
		.timeout_ms = io_timeout_ms,
		.on_eintr = setup->urgent_signals,
		.unlock = io_unlock,
		.relock = io_relock,
	};
	http_io_configure(&hooks);
	for (size_t i = 0; i < cfg->forwarded_allow_ips.len; i++)
		if (strcmp(cfg->forwarded_allow_ips.items[i], "*") == 0)
			trust_all_proxies = 1;
	allow_nets_init();
	const char *sn = getenv("SCRIPT_NAME");
	script_name = xstrdup(sn ? sn : "");
	script_name_len = strlen(script_name);

	if (wsgi_prepare() == -1)
		goto pyfail;

	srv_name = xcalloc(nlisteners + 1, sizeof(*srv_name));
	srv_port = xcalloc(nlisteners + 1, sizeof(*srv_port));
	for (size_t i = 0; i < nlisteners; i++) {
		if (listeners[i].family == AF_UNIX)
			continue;
		srv_name[i] = PyUnicode_DecodeFSDefault(listeners[i].host ? listeners[i].host : "");
		srv_port[i] = PyUnicode_FromFormat("%d", listeners[i].port);
		if (srv_name[i] == NULL || srv_port[i] == NULL)
			goto pyfail;
	}

	if ((base_env = PyDict_New()) == NULL)
		goto pyfail;
	if ((errors = PyObject_New(PyObject, &ErrorsType)) == NULL)
		goto pyfail;
	if (PyDict_SetItemString(base_env, "wsgi.errors", errors) == -1)
		goto pyfail;
	Py_DECREF(errors);
	if ((v = Py_BuildValue("(ii)", 1, 0)) == NULL ||
	    PyDict_SetItemString(base_env, "wsgi.version", v) == -1)
		goto pyfail;
	Py_DECREF(v);
	/* gunicorn: multithread is threads > 1 */
	if (PyDict_SetItemString(base_env, "wsgi.multithread",
	        setup->threads > 1 ? Py_True : Py_False) == -1 ||
	    PyDict_SetItemString(base_env, "wsgi.multiprocess",
	        cfg->workers > 1 ? Py_True : Py_False) == -1 ||
	    PyDict_SetItemString(base_env, "wsgi.run_once", Py_False) == -1 ||
	    PyDict_SetItemString(base_env, "wsgi.file_wrapper", (PyObject *)&FileWrapperType) == -1 ||
	    PyDict_SetItemString(base_env, "wsgi.input_terminated", Py_True) == -1)
		goto pyfail;
	if ((v = PyUnicode_FromString(SERVER_SOFTWARE)) == NULL ||
	    PyDict_SetItemString(base_env, "SERVER_SOFTWARE", v) == -1)
		goto pyfail;
	Py_DECREF(v);
	if ((v = PyUnicode_DecodeLatin1(script_name, (Py_ssize_t)script_name_len, NULL)) == NULL ||
	    PyDict_SetItem(base_env, k_script_name, v) == -1)
		goto pyfail;
	Py_DECREF(v);

	/* Only a worker whose main thread runs the app (sync) lets INT, QUIT
	 * and ABRT interrupt it through Python's handlers. */
	if (setup->urgent_signals != NULL && install_python_signal_handlers() == -1)
		goto pyfail;

	if (cfg->access_log_format != NULL)
		alog_compile(cfg->access_log_format);
	else
		alog_compile("%(h)s %(l)s %(u)s %(t)s \"%(r)s\" %(s)s %(b)s \"%(f)s\" \"%(a)s\"");

	worker_age = setup->age;
	if (cfg->hooks[HOOK_POST_WORKER_INIT] != NULL || cfg->hooks[HOOK_WORKER_INT] != NULL ||
	    cfg->hooks[HOOK_WORKER_ABORT] != NULL || cfg->hooks[HOOK_PRE_REQUEST] != NULL ||
	    cfg->hooks[HOOK_POST_REQUEST] != NULL || cfg->hooks[HOOK_WORKER_EXIT] != NULL)
		(void)wsgi_worker_object();	/* its `started` is the boot time */
	return 0;
pyfail:
	python_log_exception(LOG_ERROR, LOG_ERROR, "cannot set up the WSGI worker");
	return -1;
}
