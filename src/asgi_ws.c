/*
 * asgi_ws.c — websockets (RFC 6455) for ASGI apps (part of
 * _cunicorn_asgi; asgi_int.h names the files): the handshake and the
 * `websocket` scope, frames decoded from the connection's buffer
 * (ws_frame.c), messages for receive(), and websocket.accept/send/close.
 *
 * Owns: a Proto's websocket fields and the worker's list of open
 * websockets (closed with 1001 when the worker drains).
 *
 * permessage-deflate (RFC 7692, ws_deflate.c) is agreed when the client
 * offers it in a form we can honour: a compressed message (RSV1 on its
 * first frame) is inflated frame by frame as it arrives, bounded by
 * WS_MAX_MESSAGE like any other (a bomb closes with 1009, undecodable
 * data with 1007), and every message we send is compressed.
 *
 * Access log: one line per websocket, written when it ends: status 101
 * and the handshake's request line for an accepted one (%(b)s: the data
 * frames' payload bytes sent, compressed; %(D)s and friends: its whole
 * life), 403 when the app closed it before accepting, 500 when the app
 * failed before answering (asgi_proto.c).
 *
 * Never: buffers a message past WS_MAX_MESSAGE (the length is checked
 * before any byte is kept; inflated bytes too), answers an unmasked
 * client frame, or writes to a socket itself (the transport does).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "asgi_int.h"
#include "http_conn.h"
#include "http_parser.h"
#include "log.h"
#include "python.h"
#include "util.h"
#include "ws_deflate.h"
#include "ws_frame.h"

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

int
asgi_ws_wanted(const struct http_request *q)
{
	const struct http_header *up = http_header_find(q, "upgrade");

	return up != NULL && token_in(up->value, up->value_len, "websocket");
}

/* The access log line of an accepted websocket, once. */
static void
ws_log_end(Proto *p)
{
	if (p->status == 101)
		asgi_access_log(p, 101);
}

/* The connection is gone (asgi_proto.c's connection_lost). */
void
asgi_ws_ended(Proto *p)
{
	asgi_ws_unlink(p);
	ws_log_end(p);
}

/* What a Proto's websocket owns outside Python (its dealloc). */
void
asgi_ws_free(Proto *p)
{
	free(p->ws_msg);
	p->ws_msg = NULL;
	ws_deflate_free(p->ws_pmd);
	p->ws_pmd = NULL;
	free(p->ws_ext);
	p->ws_ext = NULL;
}

void
asgi_ws_unlink(Proto *p)
{
	if (p->wsprev != NULL)
		p->wsprev->wsnext = p->wsnext;
	else if (asgi.websockets == p)
		asgi.websockets = p->wsnext;
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
	if ((t = PyUnicode_FromString(type)) == NULL || PyDict_SetItem(m, asgi.k_type, t) == -1) {
		Py_XDECREF(t);
		Py_DECREF(m);
		return NULL;
	}
	Py_DECREF(t);
	return m;
}

PyObject *
asgi_ws_disconnect_message(int code)
{
	PyObject *m = ws_message("websocket.disconnect");

	if (m != NULL && py_dict_set_new(m, asgi.k_code, PyLong_FromLong(code)) == -1)
		Py_CLEAR(m);
	return m;
}

/* One message for the app: to a waiting receive(), else queued. */
void
asgi_ws_deliver(Proto *p, PyObject *m)
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

/* One frame; a data frame is compressed once permessage-deflate is
 * agreed.  0, or -1 when zlib failed (the caller closes with 1011). */
static int
ws_write_frame(Proto *p, int opcode, const char *data, size_t len)
{
	unsigned char head[10];
	size_t h;
	PyObject *out;
	int deflated = 0;

	if (p->ws_pmd != NULL && (opcode == 0x1 || opcode == 0x2)) {
		const unsigned char *z;
		if (ws_deflate_message(p->ws_pmd, (const unsigned char *)data, len, &z, &len) == -1)
			return -1;
		data = (const char *)z;
		deflated = 1;
	}
	h = ws_frame_header(head, opcode, len);
	if (deflated)
		head[0] |= 0x40;	/* RSV1: a compressed message */
	if (opcode == 0x1 || opcode == 0x2)
		p->resp_sent += len;
	if ((out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(h + len))) == NULL) {
		PyErr_Clear();
		return 0;
	}
	memcpy(PyBytes_AS_STRING(out), head, h);
	if (len > 0)
		memcpy(PyBytes_AS_STRING(out) + h, data, len);
	if (transport_write(p, out) == -1)
		PyErr_Clear();
	Py_DECREF(out);
	return 0;
}

/* Close with code (we start it, or we answer the client's close):
 * the close frame, the app's disconnect, then the TCP close. */
void
asgi_ws_fail(Proto *p, int code, const char *why)
{
	char b[2] = { (char)(code >> 8), (char)code };

	if (p->ws_state == WS_CLOSED) {
		asgi_ws_unlink(p);
		return;
	}
	if (why != NULL)
		log_debug("websocket closed with %d: %s", code, why);
	(void)ws_write_frame(p, 0x8, b, 2);
	asgi_ws_unlink(p);
	p->ws_state = WS_CLOSED;
	p->ws_close_code = code;
	asgi_ws_deliver(p, asgi_ws_disconnect_message(code));
	p->c.len = 0;
	proto_close(p);
	ws_log_end(p);
}

/* Inflate one frame's payload of a compressed message onto ws_msg;
 * 0, or -1 once the connection failed. */
static int
ws_inflate_frame(Proto *p, const unsigned char *data, size_t len, int fin)
{
	unsigned char *m = (unsigned char *)p->ws_msg;
	int r = ws_inflate(p->ws_pmd, data, len, fin, &m, &p->ws_msg_len, &p->ws_msg_cap,
	    WS_MAX_MESSAGE);

	p->ws_msg = (char *)m;
	if (r == WS_INFLATE_OK)
		return 0;
	ws_inflate_abort(p->ws_pmd);
	asgi_ws_fail(p, r == WS_INFLATE_TOO_BIG ? 1009 : 1007, r == WS_INFLATE_TOO_BIG ?
	    "message too big once inflated" : "compressed message not valid DEFLATE");
	return -1;
}

static void
ws_message_done(Proto *p, int opcode, const char *data, size_t len)
{
	PyObject *m, *v;

	if (opcode == 0x1) {
		if ((v = PyUnicode_DecodeUTF8(data, (Py_ssize_t)len, "strict")) == NULL) {
			PyErr_Clear();
			asgi_ws_fail(p, 1007, "invalid UTF-8 in a text message");
			return;
		}
	} else if ((v = PyBytes_FromStringAndSize(data, (Py_ssize_t)len)) == NULL) {
		PyErr_Clear();
		return;
	}
	if ((m = ws_message("websocket.receive")) == NULL ||
	    PyDict_SetItem(m, opcode == 0x1 ? asgi.k_text : asgi.k_bytes, v) == -1) {
		Py_XDECREF(m);
		Py_DECREF(v);
		PyErr_Clear();
		return;
	}
	Py_DECREF(v);
	asgi_ws_deliver(p, m);
}

/* Decode every whole frame in the buffer (ws_frame.c checks them). */
void
asgi_ws_feed(Proto *p)
{
	while (p->ws_state == WS_OPEN) {
		unsigned char *b = (unsigned char *)p->c.buf;
		struct ws_frame f;
		const char *why;
		int code;

		/* a compressed message's limit is on its inflated bytes */
		switch (ws_frame_parse(b, p->c.len, p->ws_msg_opcode,
		    p->ws_msg_deflated ? 0 : p->ws_msg_len, WS_MAX_MESSAGE, p->ws_pmd != NULL,
		    &f, &code, &why)) {
		case WS_FRAME_BAD:
			asgi_ws_fail(p, code, why);
			return;
		case WS_FRAME_MORE:
			goto out;
		}
		if (p->c.len < f.head_len + f.len) {
			if (p->paused_reading) {
				p->paused_reading = 0;	/* a big frame: let it come */
				transport_call(p, asgi.s_resume_reading);
			}
			goto out;
		}
		unsigned char *data = b + f.head_len;
		size_t len = (size_t)f.len, total = f.head_len + len;
		ws_unmask(data, f.len, f.mask);

		if (f.opcode == 0x8) {
			int c = ws_close_code(data, len);
			if (c == -1) {
				asgi_ws_fail(p, 1002, "bad close frame");
				return;
			}
			asgi_ws_fail(p, c == 1005 ? 1000 : c, NULL);
			p->ws_close_code = c;
			return;
		} else if (f.opcode == 0x9) {
			(void)ws_write_frame(p, 0xa, (const char *)data, len);
		} else if (f.opcode == 0xa) {
			/* unsolicited pong: ignored */
		} else if (f.rsv1 || (f.opcode == 0x0 && p->ws_msg_deflated)) {
			if (f.opcode != 0x0) {
				p->ws_msg_opcode = f.opcode;
				p->ws_msg_deflated = 1;
				p->ws_msg_len = 0;
			}
			if (ws_inflate_frame(p, data, len, f.fin) == -1)
				return;
			if (f.fin) {
				int op = p->ws_msg_opcode;
				p->ws_msg_opcode = 0;
				p->ws_msg_deflated = 0;
				ws_message_done(p, op, p->ws_msg, p->ws_msg_len);
				p->ws_msg_len = 0;
			}
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
		transport_call(p, asgi.s_pause_reading);
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

/* permessage-deflate: the first offer of the client's we can honour
 * (every Sec-WebSocket-Extensions header, in order, is one list). */
static void
ws_negotiate_deflate(Proto *p, const struct http_request *q)
{
	struct ws_deflate_params agreed;
	char answer[128], *offers = NULL;
	size_t n = 0;

	for (size_t i = 0; i < q->nheaders; i++) {
		const struct http_header *h = &q->headers[i];
		if (h->name_len != 24 || strncasecmp(h->name, "sec-websocket-extensions", 24) != 0)
			continue;
		offers = xrealloc(offers, n + h->value_len + 2);
		if (n > 0) {
			offers[n++] = ',';
			offers[n++] = ' ';
		}
		memcpy(offers + n, h->value, h->value_len);
		n += h->value_len;
	}
	if (offers != NULL && ws_deflate_negotiate(offers, n, &agreed, answer, sizeof(answer))) {
		p->ws_pmd = ws_deflate_new(&agreed);
		p->ws_ext = xstrdup(answer);
	}
	free(offers);
}

/* A head that asked for a websocket: its scope (new, for the app), or
 * NULL once refused. */
PyObject *
asgi_ws_start(Proto *p)
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
		asgi_refuse(p, 400, "Invalid websocket handshake");
		return NULL;
	}
	if (ver == NULL || ver->value_len != 2 || memcmp(ver->value, "13", 2) != 0) {
		PyObject *r = PyBytes_FromString("HTTP/1.1 426 Upgrade Required\r\n"
		    "Sec-WebSocket-Version: 13\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
		if (r == NULL || transport_write(p, r) == -1)
			PyErr_Clear();
		Py_XDECREF(r);
		p->c.len = 0;
		proto_close(p);
		return NULL;
	}
	p->gen++;
	p->is_ws = 1;
	p->ws_state = WS_CONNECTING;
	p->ws_close_code = 1006;
	p->rstate = R_NONE;
	p->status = 0;
	p->resp_sent = 0;
	p->rhead_len = 0;
	/* a denial response (websocket.http.response.*) is framed by
	 * asgi_http.c, and closes the connection after it */
	p->want_keepalive = p->head_only = 0;
	p->resp_chunked = p->resp_keepalive = p->app_server = p->app_date = p->app_close = 0;
	p->resp_length = -1;
	ws_negotiate_deflate(p, q);
	asgi_alog_keep_head(p);
	p->http10 = 0;
	p->body_done = p->body_sent = 1;
	p->body_kind = HTTP_BODY_NONE;
	if ((p->ws_queue = PyList_New(0)) == NULL ||
	    (p->ws_accept = ws_accept_value(key)) == NULL) {
		python_log_exception(LOG_ERROR, LOG_ERROR, "websocket handshake");
		asgi_refuse(p, 500, "");
		return NULL;
	}
	if ((scope = asgi_build_scope(p, &bad)) == NULL) {
		PyErr_Clear();
		asgi_refuse(p, 400, bad ? bad : "Bad request");
		return NULL;
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
	if (py_dict_set_new(scope, asgi.k_subprotocols, subs) == -1 ||
	    PyDict_SetItem(scope, asgi.k_type, asgi.v_websocket) == -1 ||
	    PyDict_SetItem(scope, asgi.k_scheme,
	        PyUnicode_CompareWithASCIIString(PyDict_GetItem(scope, asgi.k_scheme), "https") == 0 ?
	        asgi.v_wss : asgi.v_ws) == -1 ||
	    PyDict_DelItem(scope, asgi.k_method) == -1 ||
	    py_dict_set_new(scope, asgi.k_extensions, PyDict_Copy(asgi.ext_ws)) == -1)
		goto fail;
	buf_consume(p, q->head_len);
	memset(&p->c.req, 0, sizeof(p->c.req));
	set_state(p, PS_BUSY, 0);
	asgi.served++;
	return scope;
fail:
	Py_DECREF(scope);
	python_log_exception(LOG_ERROR, LOG_ERROR, "websocket scope");
	asgi_refuse(p, 500, "");
	return NULL;
}

PyObject *
asgi_ws_receive(Proto *p)
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
			transport_call(p, asgi.s_resume_reading);
		}
	} else if (p->ws_state == WS_CLOSED || p->lost) {
		m = asgi_ws_disconnect_message(p->ws_close_code);
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

/* The websocket denial response (the ASGI extension
 * websocket.http.response): instead of accepting or closing, the app
 * answers the handshake with an HTTP response of its own, as
 * websocket.http.response.start and .body messages shaped as
 * http.response.start and .body (framed by asgi_http.c: Content-Length or
 * chunked, Connection: close); once it is complete the connection closes
 * (the spec: nothing may follow it) and receive() says
 * websocket.disconnect.  what: "start" or "body".  0, or -1 with an
 * exception for the app. */
static int
ws_deny(Proto *p, PyObject *msg, const char *what)
{
	int r;

	if (p->ws_state == WS_OPEN) {
		PyErr_Format(PyExc_RuntimeError, "Unexpected ASGI message "
		    "'websocket.http.response.%s' sent, after 'websocket.accept'.", what);
		return -1;
	}
	if (strcmp(what, "start") == 0) {
		if (p->rstate != R_NONE) {
			PyErr_SetString(PyExc_RuntimeError, "Unexpected ASGI message "
			    "'websocket.http.response.start' sent, after response already started.");
			return -1;
		}
		return asgi_response_start(p, msg);
	}
	if (strcmp(what, "body") != 0) {
		PyErr_Format(PyExc_RuntimeError, "Unexpected ASGI message "
		    "'websocket.http.response.%s' sent to a websocket", what);
		return -1;
	}
	if (p->rstate == R_NONE) {
		PyErr_SetString(PyExc_RuntimeError, "Unexpected ASGI message "
		    "'websocket.http.response.body' sent, before 'websocket.http.response.start'.");
		return -1;
	}
	if ((r = asgi_response_body(p, msg)) == -1)
		return -1;
	if (p->rstate == R_DONE) {	/* complete: the connection is closing */
		p->ws_state = WS_CLOSED;
		p->c.len = 0;
		proto_close(p);
	}
	return 0;
}

int
asgi_ws_send(Proto *p, PyObject *msg, PyObject *type)
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
	if (strncmp(t, "websocket.http.response.", 24) == 0)
		return ws_deny(p, msg, t + 24);
	if (p->rstate != R_NONE && p->ws_state != WS_OPEN) {
		PyErr_Format(PyExc_RuntimeError, "Unexpected ASGI message '%s' sent, after "
		    "'websocket.http.response.start' (a denial response is all that may follow).", t);
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
		sub = PyDict_GetItemWithError(msg, asgi.k_subprotocol);
		if (sub != NULL && sub != Py_None && asgi_bytes_of(sub, &sv, &sl) == -1)
			return -1;
		hdrs = PyDict_GetItemWithError(msg, asgi.k_headers);
		if (PyErr_Occurred())
			return -1;
		if (hdrs != NULL && hdrs != Py_None) {
			/* reuse the response header checks */
			PyObject *fake = Py_BuildValue("{sisO}", "status", 101, "headers", hdrs);
			int rc = fake ? asgi_response_start(p, fake) : -1;
			Py_XDECREF(fake);
			if (rc == -1)
				return -1;
			p->rstate = R_NONE;	/* not a denial's start: nothing sent yet */
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
			static const char h3[] = "\r\nSec-WebSocket-Extensions: ";
			size_t al = (size_t)PyBytes_GET_SIZE(p->ws_accept);
			size_t el = p->ws_ext != NULL ? strlen(p->ws_ext) : 0;
			size_t n = sizeof(h1) - 1 + al + (sl ? sizeof(h2) - 1 + (size_t)sl : 0) +
			    (el ? sizeof(h3) - 1 + el : 0) + 2 + p->rhead_len + 2;
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
			if (el) {
				memcpy(w, h3, sizeof(h3) - 1);
				w += sizeof(h3) - 1;
				memcpy(w, p->ws_ext, el);
				w += el;
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
		p->status = 101;
		if (asgi.stopping) {
			asgi_ws_fail(p, 1001, "the worker is stopping");
			return 0;
		}
		p->wsnext = asgi.websockets;
		if (asgi.websockets != NULL)
			asgi.websockets->wsprev = p;
		asgi.websockets = p;
		asgi_ws_feed(p);		/* frames that came with the handshake */
		return 0;
	}
	if (strcmp(t, "websocket.close") == 0) {
		PyObject *c = PyDict_GetItemWithError(msg, asgi.k_code);
		long code = 1000;
		if (PyErr_Occurred())
			return -1;
		if (c != NULL && c != Py_None && (code = PyLong_AsLong(c)) == -1 && PyErr_Occurred())
			return -1;
		if (p->ws_state != WS_OPEN) {	/* refused before the handshake: 403 */
			PyObject *r = asgi_error_page(403, "");
			if (r == NULL || transport_write(p, r) == -1)
				PyErr_Clear();
			Py_XDECREF(r);
			p->ws_state = WS_CLOSED;
			p->rstate = R_DONE;
			proto_close(p);
			asgi_access_log(p, 403);
			return 0;
		}
		PyObject *reason = PyDict_GetItemWithError(msg, asgi.k_reason);
		const char *rs = "";
		Py_ssize_t rl = 0;
		char frame[125];
		if (reason != NULL && reason != Py_None && asgi_bytes_of(reason, &rs, &rl) == -1)
			return -1;
		if (rl > 123)
			rl = 123;
		frame[0] = (char)(code >> 8);
		frame[1] = (char)code;
		if (rl > 0)
			memcpy(frame + 2, rs, (size_t)rl);
		(void)ws_write_frame(p, 0x8, frame, (size_t)rl + 2);
		asgi_ws_unlink(p);
		p->ws_state = WS_CLOSED;
		p->ws_close_code = (int)code;
		p->rstate = R_DONE;
		proto_close(p);
		ws_log_end(p);
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
		b = PyDict_GetItemWithError(msg, asgi.k_bytes);
		if (b == NULL && PyErr_Occurred())
			return -1;
		tx = PyDict_GetItemWithError(msg, asgi.k_text);
		if (tx == NULL && PyErr_Occurred())
			return -1;
		int op;
		if (b != NULL && b != Py_None) {
			if (asgi_bytes_of(b, &d, &n) == -1)
				return -1;
			op = 0x2;
		} else if (tx != NULL && tx != Py_None && PyUnicode_Check(tx)) {
			if ((d = PyUnicode_AsUTF8AndSize(tx, &n)) == NULL)
				return -1;
			op = 0x1;
		} else {
			PyErr_SetString(PyExc_ValueError, "websocket.send needs bytes or text");
			return -1;
		}
		if (ws_write_frame(p, op, d, (size_t)n) == -1) {
			log_errorx("websocket: cannot compress a message (zlib)");
			asgi_ws_fail(p, 1011, NULL);
			PyErr_SetString(PyExc_ConnectionResetError, "the websocket is closed");
			return -1;
		}
		return 0;
	}
	PyErr_Format(PyExc_RuntimeError, "Unexpected ASGI message '%s' sent to a websocket", t);
	return -1;
}
