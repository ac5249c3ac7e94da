/*
 * asgi_http.c — HTTP/1.x requests for ASGI apps (part of
 * _cunicorn_asgi; asgi_int.h names the files): the `http` scope from a
 * parsed head, the request body as http.request messages (Content-Length
 * or chunked, decoded from the connection's buffer), and the response:
 * http.response.start/body framed as Content-Length or chunked, with
 * keep-alive, HEAD, Date/Server, and what happens when it is complete;
 * http.response.pathsend's head and end (its file: asgi_file.c).
 *
 * A body the app left unread when its response is complete is dropped:
 * what is buffered at once; the rest still coming as it arrives, in
 * PS_DRAIN (asgi_int.h), within its deadline, then the connection goes
 * on as after any kept response.  What is the body's is decided by
 * http_drain.c, as in the gthread worker: a Content-Length rest (at most
 * HTTP_DRAIN_MAX: head_write keeps the connection only then) is counted,
 * a chunked one decoded where the app's reads left it (at most
 * HTTP_DRAIN_MAX of chunk data; malformed framing or more closes).  The
 * app sees none of it: its receive() says http.disconnect once the
 * response is complete, as before.
 *
 * Owns: a Proto's request and response fields (asgi_int.h).
 *
 * Never: parses the next head itself (asgi_response_body() and
 * asgi_drain_next() return 1 and asgi_proto.c does), knows websockets
 * (but that a denial response is framed here and that their receive()
 * is not its own),
 * reads more of the body than the app asked for before its response is
 * complete, drops a byte past the body, or writes to a socket itself
 * (the transport does; a pathsend's file: asgi_file.c).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <sys/socket.h>

#include "asgi_alog.h"
#include "asgi_int.h"
#include "http_conn.h"
#include "http_parser.h"
#include "http_worker.h"
#include "listen.h"
#include "log.h"
#include "python.h"
#include "settings.h"
#include "util.h"

/* ---- the scope ---- */

/* the methods whose names are interned (asgi.methods) */
const char *const asgi_method_names[9] = {
	"GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE",
};

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
		if (s[i] == '%' && i + 2 < n && (hi = hex_digit(s[i + 1])) >= 0 &&
		    (lo = hex_digit(s[i + 2])) >= 0) {
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

/* The socket peer's trust (its address, or a network holding it, is in
 * forwarded_allow_ips), never a PROXY preamble's client's: as gunicorn. */
static int
peer_trusted(Proto *p)
{
	return ip_allow_match(&asgi.forwarded_allow, &p->c.peer);
}

/* The keys of every http scope, in the order they are set, with the
 * values common to all (the others None until set): a request's scope is
 * a copy, sized once, instead of a dict grown key by key. */
static PyObject *
scope_template(void)
{
	PyObject *t = PyDict_New();
	PyObject *kv[][2] = { { asgi.k_type, asgi.v_http_scope }, { asgi.k_asgi, asgi.asgi_info },
	    { asgi.k_http_version, Py_None }, { asgi.k_server, Py_None },
	    { asgi.k_client, Py_None }, { asgi.k_root_path, asgi.root_path },
	    { asgi.k_method, Py_None }, { asgi.k_path, Py_None }, { asgi.k_raw_path, Py_None },
	    { asgi.k_query_string, Py_None }, { asgi.k_headers, Py_None },
	    { asgi.k_scheme, Py_None }, { asgi.k_extensions, Py_None },
	    { asgi.k_state, Py_None } };
	size_t n = sizeof(kv) / sizeof(kv[0]) - (asgi.lifespan_state == NULL);

	if (t == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (PyDict_SetItem(t, kv[i][0], kv[i][1]) == -1) {
			Py_DECREF(t);
			return NULL;
		}
	return t;
}

/* The http scope of p->c.req; NULL with *bad set (400) or an exception. */
PyObject *
asgi_build_scope(Proto *p, const char **bad)
{
	const struct http_request *q = &p->c.req;
	PyObject *s, *hl, *v;
	int scheme = -1, trusted = -1;
	char lname[256];

	*bad = NULL;
	if (asgi.scope_tmpl == NULL && (asgi.scope_tmpl = scope_template()) == NULL)
		return NULL;
	/* every key is in the copy: no insertion, no resize below */
	if ((s = PyDict_Copy(asgi.scope_tmpl)) == NULL)
		return NULL;
	if (PyDict_SetItem(s, asgi.k_http_version, p->http10 ? asgi.v_10 : asgi.v_11) == -1 ||
	    PyDict_SetItem(s, asgi.k_server, asgi.servers[p->listener]) == -1 ||
	    PyDict_SetItem(s, asgi.k_client, p->client) == -1)
		goto fail;
	v = NULL;
	for (int i = 0; i < 9; i++)
		if (strlen(asgi_method_names[i]) == q->method_len &&
		    memcmp(asgi_method_names[i], q->method, q->method_len) == 0)
			v = Py_NewRef(asgi.methods[i]);
	if (v == NULL)
		v = PyUnicode_DecodeLatin1(q->method, (Py_ssize_t)q->method_len, NULL);
	if (py_dict_set_new(s, asgi.k_method, v) == -1 ||
	    py_dict_set_new(s, asgi.k_path, decoded_path(q->path, q->path_len)) == -1 ||
	    py_dict_set_new(s, asgi.k_raw_path, PyBytes_FromStringAndSize(q->path,
	        (Py_ssize_t)q->path_len)) == -1 ||
	    py_dict_set_new(s, asgi.k_query_string, PyBytes_FromStringAndSize(q->query,
	        (Py_ssize_t)q->query_len)) == -1)
		goto fail;
	if ((hl = PyList_New((Py_ssize_t)q->nheaders)) == NULL)
		goto fail;
	if (PyDict_SetItem(s, asgi.k_headers, hl) == -1) {
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
		for (size_t j = 0; j < asgi.cfg->secure_scheme_names.len; j++) {
			const char *sn = asgi.cfg->secure_scheme_names.items[j];
			if (strlen(sn) != h->name_len || strncasecmp(sn, h->name, h->name_len) != 0)
				continue;
			if (trusted == -1)
				trusted = peer_trusted(p);
			if (!trusted)
				break;
			const char *sv = asgi.cfg->secure_scheme_values.items[j];
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
	if (p->c.https)		/* a uWSGI request's HTTPS */
		scheme = 1;
	/* no trusted scheme header (-1): the listener's, https under TLS (as
	 * gunicorn: its default scheme, which the headers override) */
	if (PyDict_SetItem(s, asgi.k_scheme, asgi.schemes[scheme + 1]) == -1)
		goto fail;
	/* the extensions we serve, a dict of the request's own (an app or
	 * middleware that removes one removes it for itself; a websocket's
	 * are set by asgi_ws.c) */
	if (py_dict_set_new(s, asgi.k_extensions, PyDict_Copy(asgi.ext_http)) == -1)
		goto fail;
	if (asgi.lifespan_state != NULL &&
	    py_dict_set_new(s, asgi.k_state, PyDict_Copy(asgi.lifespan_state)) == -1)
		goto fail;
	return s;
fail:
	Py_DECREF(s);
	return NULL;
}

/* ---- requests ---- */

/* A parsed HTTP/1.x head in p->c.req (not a websocket's): reset the
 * request's state, build its scope (returned, new), take the head out of
 * the buffer.  NULL: the request was refused (a page and a close). */
PyObject *
asgi_http_begin(Proto *p)
{
	const struct http_request *q = &p->c.req;
	PyObject *scope;
	const char *bad;

	p->gen++;
	p->http10 = q->version_minor == 0;
	p->head_only = q->method_len == 4 && memcmp(q->method, "HEAD", 4) == 0;
	p->want_keepalive = q->keep_alive && asgi.keepalive_ms > 0;
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

	if ((scope = asgi_build_scope(p, &bad)) == NULL) {
		if (bad != NULL) {
			PyErr_Clear();
			asgi_refuse(p, 400, bad);
		} else {
			python_log_exception(LOG_ERROR, LOG_ERROR, "asgi scope");
			asgi_refuse(p, 500, "");
		}
		return NULL;
	}
	asgi_alog_keep_head(p);
	asgi_hook_pre_request(p);
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
	asgi.served++;
	if (asgi.limit > 0 && asgi.served >= asgi.limit && !asgi.stopping) {
		log_info("Autorestarting worker after current request.");
		asgi.stopping = 1;
		asgi.stop_deadline = monotonic_ms() + (uint64_t)(asgi.cfg->graceful_timeout > 0 ?
		    asgi.cfg->graceful_timeout : 0) * 1000u;
		wake_glue();
	}
	return scope;
}

/* Bytes of the request body now in the buffer: the next http.request
 * message, or NULL without exception when none is ready yet (or with
 * one).  Consumes what it returns. */
PyObject *
asgi_body_message(Proto *p, int *bad)
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
		body = Py_NewRef(asgi.v_empty_bytes);
	}
	if ((m = PyDict_New()) == NULL ||
	    PyDict_SetItem(m, asgi.k_type, asgi.m_request) == -1 ||
	    PyDict_SetItem(m, asgi.k_body, body) == -1 ||
	    PyDict_SetItem(m, asgi.k_more_body, p->body_done ? Py_False : Py_True) == -1) {
		Py_XDECREF(m);
		Py_DECREF(body);
		return NULL;
	}
	Py_DECREF(body);
	if (p->body_done)
		p->body_sent = 1;
	if (p->paused_reading && p->c.len < p->c.cap / 2 && !p->lost) {
		p->paused_reading = 0;
		transport_call(p, asgi.s_resume_reading);
	}
	return m;
}

PyObject *
asgi_disconnect_message(void)
{
	PyObject *m = PyDict_New();

	if (m != NULL && PyDict_SetItem(m, asgi.k_type, asgi.m_disconnect_msg) == -1)
		Py_CLEAR(m);
	return m;
}

/* A receive() is waiting and bytes came (or the client went). */
void
asgi_feed_receiver(Proto *p)
{
	PyObject *m;
	int bad;

	if (p->recv_waiter == NULL || p->is_ws)
		return;		/* a websocket's receive() is asgi_ws.c's */
	if (p->lost || p->rstate == R_DONE || (p->client_eof && (p->body_sent ||
	    p->c.len == 0))) {
		if ((m = asgi_disconnect_message()) != NULL)
			future_resolve(&p->recv_waiter, m);
		Py_XDECREF(m);
		PyErr_Clear();
		return;
	}
	if (p->body_sent)
		return;		/* waits for the disconnect */
	m = asgi_body_message(p, &bad);
	if (m != NULL) {
		future_resolve(&p->recv_waiter, m);
		Py_DECREF(m);
	} else if (bad) {
		asgi_refuse(p, 400, "Invalid chunked body");
	}
	PyErr_Clear();
}

/* A kept response is complete and so is its request's body (read, or
 * dropped): the next request, or idle.  Also when the worker stops
 * meanwhile (TERM during a drain, or during a response that said
 * keep-alive): the client was told it may send another request, so the
 * connection waits for it idle, as every kept connection of a stopping
 * worker does, until its keep-alive deadline (gunicorn's #3038: no
 * request lost to a close it could not see coming); that request, and
 * one already pipelined, is answered with Connection: close, as gthread
 * does.  1: bytes of a next request wait in the buffer (PS_HEAD). */
static int
request_over(Proto *p)
{
	if (p->c.len > 0) {
		set_state(p, PS_HEAD, (uint64_t)asgi.limits.head_timeout_ms);
		return 1;	/* a pipelined head: the caller parses it */
	}
	buf_release(p);		/* idle: no buffer */
	set_state(p, PS_IDLE, asgi.keepalive_ms);
	if (p->paused_reading) {
		p->paused_reading = 0;
		transport_call(p, asgi.s_resume_reading);
	}
	return 0;
}

/* The response is complete: the connection lives on or closes.  1: bytes
 * of a next request wait in the buffer (state PS_HEAD). */
static int
response_done(Proto *p)
{
	size_t n;

	p->rstate = R_DONE;
	asgi_access_log(p, p->status);
	asgi_feed_receiver(p);	/* a pending receive() gets http.disconnect */
	if (!p->resp_keepalive || p->lost || p->client_eof) {
		proto_close(p);
		return 0;
	}
	if (p->body_done)
		return request_over(p);
	/* drop what the app did not read of the body: what is here now ... */
	if (p->body_kind == HTTP_BODY_CHUNKED)
		http_drain_chunked(&p->c.drain, &p->chunked, 0);
	else
		http_drain_length(&p->c.drain, p->body_left);
	p->body_left = 0;
	if (asgi_drain_take(p, p->c.buf, p->c.len, &n) == -1)
		return 0;
	buf_consume(p, n);
	if (!http_drain_active(&p->c.drain))
		return asgi_drain_next(p);
	/* ... and the rest as it comes (head_write kept the connection only
	 * within HTTP_DRAIN_MAX of a Content-Length rest) */
	buf_release(p);		/* empty: the body's bytes are not kept */
	set_state(p, PS_DRAIN, http_drain_ms(&p->c.drain, asgi.limits.head_timeout_ms));
	if (p->paused_reading) {
		p->paused_reading = 0;
		transport_call(p, asgi.s_resume_reading);
	}
	return 0;
}

/* The drain (PS_DRAIN, or at the response): n bytes came.  The first of
 * them that are the body's are dropped (how many: *used; the caller
 * buffers the others, the next request's).  -1: the connection is
 * closed (malformed chunk framing, more chunk data than the bound). */
int
asgi_drain_take(Proto *p, const char *s, size_t n, size_t *used)
{
	int r = http_drain_feed(&p->c.drain, s, n, used);

	if (r == HTTP_DRAIN_BAD || r == HTTP_DRAIN_OVER) {
		proto_close(p);
		return -1;
	}
	return 0;
}

/* The drain, what came past the body buffered: once its end came, the
 * connection goes on as after any kept response.  1: a pipelined head
 * waits in the buffer (PS_HEAD; the caller parses it). */
int
asgi_drain_next(Proto *p)
{
	if (http_drain_active(&p->c.drain))
		return 0;
	p->body_done = 1;
	return request_over(p);
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
has_close_token(const char *v, size_t n)
{
	for (size_t i = 0; i + 5 <= n; i++)
		if (strncasecmp(v + i, "close", 5) == 0 &&
		    (i == 0 || v[i - 1] == ',' || v[i - 1] == ' ') &&
		    (i + 5 == n || v[i + 5] == ',' || v[i + 5] == ' '))
			return 1;
	return 0;
}

int
asgi_response_start(Proto *p, PyObject *msg)
{
	PyObject *st, *hdrs, *it, *item;

	if (p->rstate != R_NONE) {
		PyErr_SetString(PyExc_RuntimeError, "Unexpected ASGI message 'http.response.start' "
		    "sent, after response already started.");
		return -1;
	}
	if ((st = PyDict_GetItemWithError(msg, asgi.k_status)) == NULL) {
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
	hdrs = PyDict_GetItemWithError(msg, asgi.k_headers);
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
			if (asgi_bytes_of(PySequence_Fast_GET_ITEM(seq, 0), &n, &nl) == -1 ||
			    asgi_bytes_of(PySequence_Fast_GET_ITEM(seq, 1), &v, &vl) == -1) {
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

static size_t
put(char *out, size_t o, const char *s, size_t n)
{
	memcpy(out + o, s, n);
	return o + n;
}

#define PUTS(out, o, lit)	put(out, o, lit, sizeof(lit) - 1)

/* v in decimal at out + o (no terminator); the new offset. */
static size_t
put_u64(char *out, size_t o, uint64_t v)
{
	char tmp[24];
	size_t n = 0;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v > 0);
	while (n > 0)
		out[o++] = tmp[--n];
	return o;
}

static size_t
put_hex(char *out, size_t o, uint64_t v)
{
	char tmp[24];
	size_t n = 0;

	do {
		tmp[n++] = "0123456789abcdef"[v & 15];
		v >>= 4;
	} while (v > 0);
	while (n > 0)
		out[o++] = tmp[--n];
	return o;
}

/* Our part of the head (status line, Server, Date, Connection, framing)
 * into out (head_size() bytes of room); decides keep-alive.  The caller
 * adds Content-Length when the app gave none, then the app's headers.
 * (By hand, not snprintf: this is on every response.) */
static size_t
head_write(Proto *p, char *out, int more)
{
	int nobody = p->status < 200 || p->status == 204 || p->status == 304;
	const char *reason = http_reason_phrase(p->status);
	size_t o = 0;

	if (!nobody && p->resp_length < 0 && more && !p->http10)
		p->resp_chunked = 1;
	/* an unread body: all here, or a rest response_done can drop
	 * (http_drain.h) */
	p->resp_keepalive = p->want_keepalive && !asgi.stopping && !p->app_close &&
	    !p->client_eof &&
	    (nobody || p->head_only || p->resp_chunked || p->resp_length >= 0) &&
	    (p->body_done || http_drain_possible(p->body_kind, p->body_left, p->c.len));
	o = p->http10 ? PUTS(out, o, "HTTP/1.0 ") : PUTS(out, o, "HTTP/1.1 ");
	o = put_u64(out, o, (uint64_t)p->status);
	out[o++] = ' ';
	o = put(out, o, reason, strnlen(reason, 64));
	o = PUTS(out, o, "\r\n");
	if (!p->app_server)
		o = PUTS(out, o, "Server: " SERVER_HEADER "\r\n");
	if (!p->app_date) {
		const char *d = http_date();
		o = PUTS(out, o, "Date: ");
		o = put(out, o, d, strnlen(d, 40));
		o = PUTS(out, o, "\r\n");
	}
	if (p->resp_chunked)
		o = PUTS(out, o, "Transfer-Encoding: chunked\r\n");
	o = p->resp_keepalive ? PUTS(out, o, "Connection: keep-alive\r\n") :
	    PUTS(out, o, "Connection: close\r\n");
	return o;
}

/* The whole head into out (head_size() + 48 bytes of room): ours, a
 * Content-Length we computed (the app gave none: had_length 0), the
 * app's headers, the blank line.  Its length. */
static size_t
head_put(Proto *p, char *out, int more, int had_length)
{
	size_t o = head_write(p, out, more);

	if (!had_length && p->resp_length >= 0) {
		o = PUTS(out, o, "Content-Length: ");
		o = put_u64(out, o, (uint64_t)p->resp_length);
		o = PUTS(out, o, "\r\n");
	}
	if (p->rhead_len > 0)
		memcpy(out + o, p->rhead, p->rhead_len);
	o += p->rhead_len;
	memcpy(out + o, "\r\n", 2);
	return o + 2;
}

int
asgi_response_body(Proto *p, PyObject *msg)
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
	if (p->rstate == R_DONE || p->rstate == R_FILE) {
		PyErr_SetString(PyExc_RuntimeError, "Unexpected ASGI message 'http.response.body' "
		    "sent, after response already completed.");
		return -1;
	}
	b = PyDict_GetItemWithError(msg, asgi.k_body);
	if (b == NULL && PyErr_Occurred())
		return -1;
	if (b != NULL && b != Py_None) {
		if (PyObject_GetBuffer(b, &view, PyBUF_SIMPLE) == -1)
			return -1;
		data = view.buf;
		dlen = view.len;
	}
	mb = PyDict_GetItemWithError(msg, asgi.k_more_body);
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
		o = head_put(p, w, more, had_length);
		p->rstate = R_SENT;
	}
	if (dlen > 0) {
		if (p->resp_chunked)
		{
			o = put_hex(w, o, (uint64_t)dlen);
			o = PUTS(w, o, "\r\n");
		}
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
		return response_done(p);
	}
	return 0;
fail:
	if (view.obj != NULL)
		PyBuffer_Release(&view);
	return -1;
}

/* ---- http.response.pathsend (the ASGI extension) ----
 *
 * After http.response.start, once, instead of any http.response.body:
 * the file at an absolute path is the whole body, and the response is
 * complete when it has been sent.  The app's Content-Length is the
 * body's length (the spec leaves it to the app): a longer file is cut
 * there, as a longer body is; a shorter one fails before anything is
 * written.  Without one, the file's size is sent as Content-Length, as
 * for a single final http.response.body.  HEAD, 1xx, 204 and 304 send
 * the head only (the file is still opened: a missing one is an error).
 * A file that cannot be opened, or is not a regular file, or is shorter
 * than the Content-Length, raises in the app's send() (an OSError naming
 * it): the head is not written yet, so the client gets the 500 of any
 * app error before a response, and the connection closes. */

static int
pathsend_refused(const char *why)
{
	PyErr_Format(PyExc_RuntimeError, "Unexpected ASGI message 'http.response.pathsend' "
	    "sent, %s.", why);
	return -1;
}

/* 0: the response is complete; 1: complete, a pipelined head waits
 * (PS_HEAD; the caller parses it); 2: the file goes on (R_FILE; its end
 * comes to asgi_response_file_end); -1: an exception for the app. */
int
asgi_response_pathsend(Proto *p, PyObject *msg)
{
	PyObject *path, *fspath, *out;
	uint64_t size, count;
	int fd, nobody, had_length;
	size_t o;

	if (!asgi.cfg->sendfile)
		return pathsend_refused("but the server does not offer it (sendfile is off)");
	if (p->rstate == R_NONE)
		return pathsend_refused("before 'http.response.start'");
	if (p->rstate == R_SENT)
		return pathsend_refused("after 'http.response.body' (they cannot be mixed)");
	if (p->rstate != R_STARTED)
		return pathsend_refused("after response already completed");
	path = PyDict_GetItemWithError(msg, asgi.k_path);
	if (path == NULL && PyErr_Occurred())
		return -1;
	if (asgi_file_open(path, &fd, &size, &fspath) == -1)
		return -1;
	nobody = p->status < 200 || p->status == 204 || p->status == 304;
	had_length = p->resp_length >= 0;
	if (had_length && (uint64_t)p->resp_length > size) {
		PyErr_Format(PyExc_OSError, "http.response.pathsend: %R has %llu bytes, fewer "
		    "than the response's Content-Length (%lld)", path, (unsigned long long)size,
		    (long long)p->resp_length);
		close(fd);
		Py_DECREF(fspath);
		return -1;
	}
	if (!had_length && !nobody)
		p->resp_length = (int64_t)size;
	count = nobody || p->head_only ? 0 : (uint64_t)p->resp_length;
	if ((out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(head_size(p) + 48))) == NULL) {
		close(fd);
		Py_DECREF(fspath);
		return -1;
	}
	o = head_put(p, PyBytes_AS_STRING(out), 0, had_length);
	if (_PyBytes_Resize(&out, (Py_ssize_t)o) == -1) {
		close(fd);
		Py_DECREF(fspath);
		return -1;
	}
	p->rstate = R_SENT;
	if (count == 0 && transport_write(p, out) == -1) {
		Py_DECREF(out);
		close(fd);
		Py_DECREF(fspath);
		return -1;
	}
	if (count == 0) {
		Py_DECREF(out);
		close(fd);
		Py_DECREF(fspath);
		return response_done(p);
	}
	p->rstate = R_FILE;	/* the head goes with the file (asgi_file.c) */
	int r = asgi_file_start(p, out, fd, count, PyBytes_AS_STRING(fspath));
	Py_DECREF(out);
	Py_DECREF(fspath);
	switch (r) {
	case -1:
		p->rstate = R_DONE;
		proto_close(p);
		return -1;
	case ASGI_FILE_DONE:
		return asgi_response_file_end(p);
	case ASGI_FILE_WAITS:
		return 2;
	default:
		asgi_response_file_failed(p);
		return 0;
	}
}

/* A pathsend's file failed (logged; the connection is closing): the
 * response ends there. */
void
asgi_response_file_failed(Proto *p)
{
	if (p->rstate != R_FILE)
		return;
	p->rstate = R_DONE;
	asgi_access_log(p, p->status);
}

/* A pathsend's file was sent whole: the response is complete.  1: a
 * pipelined head waits (PS_HEAD; the caller parses it). */
int
asgi_response_file_end(Proto *p)
{
	if (p->state == PS_FILE)
		set_state(p, PS_BUSY, 0);
	return response_done(p);
}
