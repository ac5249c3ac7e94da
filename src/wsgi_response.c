/*
 * wsgi_response.c — the response side of PEP 3333 (interface:
 * wsgi_int.h): start_response, write(), wsgi.early_hints,
 * wsgi.file_wrapper, building the head and framing the body, sending the
 * app's result.
 *
 * Owns: a request slot's struct response (with its head buffer) and its
 * start_response / write / early_hints objects (struct wsgi_req's resp,
 * sr_obj, write_obj, hints_obj), the list of every slot
 * (wsgi_abort_responses()).  Fast
 * paths: a list or tuple of bytes goes out with the head in one writev
 * with Content-Length; a file_wrapper around a real file with
 * sendfile(2); in the gthread worker, a dirty stream is handed to the
 * worker's loop after the head (c->relay).  Write-behind (gthread):
 * every byte goes through resp_send_iov, in order; what a full socket
 * refuses is copied to the connection's output buffer (c->out, up to
 * c->out_cap: the rest of a list body, the current chunk or write(), the
 * rest of a file read with pread) and the thread goes on; past the cap
 * it waits for the socket as before, so an iterator's chunks fill the
 * buffer while there is room and then wait.  r->sent counts the body
 * bytes handed to the socket or to that buffer: what the access log's
 * `b` says.
 *
 * Never: writes more than Content-Length bytes or a body for HEAD, 204
 * or 304, lets a header with CR/LF or a hop-by-hop header out (but a
 * websocket handshake's), writes after a socket error, or blocks without
 * a bounded wait (http_conn.c's).
 */
#include "wsgi_int.h"

#include <structmember.h>

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "settings.h"
#include "util.h"

#define SERVER_HEADER	"cunicorn"
#define MAX_FAST_IOV	64

static const _Atomic int *keepalive_gate;	/* wsgi_setup's */
static int relay_streams;			/* wsgi_setup's */
static int use_sendfile;			/* the sendfile setting */
static PyObject *k_relay;			/* "_cunicorn_relay" */

/* ---- response: start_response, write() ---- */

/* Every slot, for wsgi_abort_responses(); under the GIL. */
static struct wsgi_req *all_slots;

typedef RequestBoundObject CallableObject;	/* start_response, write, early_hints */

static PyTypeObject StartResponseType, WriteType, EarlyHintsType;

void
wsgi_response_register(struct wsgi_req *q)
{
	q->next = all_slots;
	all_slots = q;
}

struct response *
wsgi_resp_begin(struct wsgi_req *q, struct http_conn *c)
{
	struct response *r = &q->resp;

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
	r->relayed = 0;
	r->conn = c;
	r->body = &q->body;
	c->relay = NULL;
	return r;
}

/* Every head is built right before it is sent: from here on a 500 from
 * wsgi_abort_responses() could interleave with it. */
static void
build_head(struct response *r)
{
	struct buf *h = &r->head;

	r->writing = 1;
	h->len = 0;
	buf_appends(h, r->http10 ? "HTTP/1.0 " : "HTTP/1.1 ");
	buf_append(h, r->status.chars, r->status.len);
	/* an app's own Server or Date replaces ours, as in gunicorn */
	if (!r->app_server)
		buf_appends(h, "\r\nServer: " SERVER_HEADER);
	if (!r->app_date) {
		buf_appends(h, "\r\nDate: ");
		buf_appends(h, http_date());
	}
	if (keepalive_gate != NULL && !*keepalive_gate)
		r->keepalive = 0;	/* the worker is stopping */
	/* a request body the app left unread, too big to drop afterwards
	 * (wsgi_body_drain): the connection will close, so say it */
	if (r->keepalive && !wsgi_body_drainable(r->body))
		r->keepalive = 0;
	/* a body the client cannot delimit ends with the connection */
	if (!r->chunked && r->content_length < 0 && !r->head_only &&
	    r->status_code >= 200 && r->status_code != 204 && r->status_code != 304)
		r->keepalive = 0;
	/* after a protocol switch the app owned the connection: it ends */
	if (r->upgrade)
		r->keepalive = 0;
	buf_appends(h, r->upgrade ? "\r\nConnection: upgrade\r\n" :
	    r->keepalive ? "\r\nConnection: keep-alive\r\n" : "\r\nConnection: close\r\n");
	if (r->chunked)
		buf_appends(h, "Transfer-Encoding: chunked\r\n");
	if (r->auto_length)
		buf_printf(h, "Content-Length: %lld\r\n", (long long)r->content_length);
	buf_append(h, r->headers.chars, r->headers.len);
	buf_append(h, "\r\n", 2);
}

static int
resp_io_error(struct response *r)
{
	r->failed = 1;
	PyErr_SetFromErrno(PyExc_OSError);
	return -1;
}

/* Every byte of a response goes out here, in order: what the socket does
 * not take waits in the connection's output buffer when the worker has
 * one (gthread: the loop writes it on, "write-behind"), else the thread
 * waits.  0 or -1 (exception). */
static int
resp_send_iov(struct response *r, struct iovec *iov, int n)
{
	struct http_conn *c = r->conn;

	if (conn_out_send_iov(&c->out, r->fd, c->out_cap, iov, n) == -1)
		return resp_io_error(r);
	return 0;
}

static int
resp_send(struct response *r, const void *p, size_t n)
{
	struct iovec iov = { .iov_base = (void *)p, .iov_len = n };

	return resp_send_iov(r, &iov, 1);
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
		iov[n].iov_base = r->head.chars;
		iov[n++].iov_len = r->head.len;
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
	if (resp_send_iov(r, iov, n) == -1)
		return -1;
	r->headers_sent = 1;
	r->sent += len;
	return 0;
}

int
wsgi_resp_finish(struct response *r)
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
		iov[n].iov_base = r->head.chars;
		iov[n++].iov_len = r->head.len;
	}
	if (r->chunked) {
		iov[n].iov_base = (void *)"0\r\n\r\n";
		iov[n++].iov_len = 5;
	}
	if (n > 0 && resp_send_iov(r, iov, n) == -1)
		return -1;
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
	struct wsgi_req *q;
	struct response *r;
	PyObject *status, *headers, *exc_info = Py_None;
	Py_ssize_t sl;
	const char *ss;

	if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|O:start_response", kwlist,
	    &status, &headers, &exc_info))
		return NULL;
	if ((q = wsgi_req_of((PyObject *)self)) == NULL) {
		PyErr_SetString(PyExc_RuntimeError, "start_response() called after the request ended");
		return NULL;
	}
	r = &q->resp;
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
	return Py_NewRef(q->write_obj);
bad_status:
	PyErr_Format(PyExc_ValueError, "invalid status %R", status);
	return NULL;
}

static PyObject *
write_call(CallableObject *self, PyObject *args, PyObject *kw)
{
	struct wsgi_req *q;
	PyObject *data;

	if (!PyArg_ParseTuple(args, "O:write", &data))
		return NULL;
	if ((q = wsgi_req_of((PyObject *)self)) == NULL) {
		PyErr_SetString(PyExc_RuntimeError, "write() called after the request ended");
		return NULL;
	}
	if (!q->resp.status_set) {
		PyErr_SetString(PyExc_AssertionError, "write() before start_response()");
		return NULL;
	}
	if (!PyBytes_Check(data)) {
		PyErr_Format(PyExc_TypeError, "%R is not a byte", data);
		return NULL;
	}
	if (resp_write(&q->resp, PyBytes_AS_STRING(data), (size_t)PyBytes_GET_SIZE(data)) == -1)
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
	struct response hints = { 0 }, *r;
	struct wsgi_req *q;
	PyObject *headers;
	int rc;

	if (!PyArg_ParseTuple(args, "O:early_hints", &headers))
		return NULL;
	if ((q = wsgi_req_of((PyObject *)self)) == NULL) {
		PyErr_SetString(PyExc_RuntimeError, "early_hints() called after the request ended");
		return NULL;
	}
	r = &q->resp;
	if (set_headers(&hints, headers) == -1) {
		free(hints.headers.chars);
		return NULL;
	}
	if (r->http10 || r->headers_sent || r->failed) {
		free(hints.headers.chars);
		Py_RETURN_NONE;
	}
	struct iovec iov[3] = {
		{ (void *)"HTTP/1.1 103 Early Hints\r\n", 26 },
		{ hints.headers.chars, hints.headers.len },
		{ (void *)"\r\n", 2 },
	};
	r->writing = 1;
	rc = http_io_send_iov(r->fd, iov, 3);
	r->writing = 0;
	free(hints.headers.chars);
	if (rc == -1) {
		resp_io_error(r);
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
	iov[k].iov_base = r->head.chars;
	iov[k++].iov_len = r->head.len;
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
	if (resp_send_iov(r, iov, k) == -1)
		return -1;
	r->headers_sent = 1;
	r->sent = body;
	return 0;
}

/* The rest of a file when the socket is full (or the head waits in the
 * connection's output buffer) and the rest fits that buffer: read into
 * it, the worker's loop sends it.  1 done, 0 it does not fit, -1 error. */
static int
file_behind(struct response *r, int fd, off_t pos, uint64_t nbytes)
{
	struct http_conn *c = r->conn;
	size_t got = 0;
	char *at;

	if (nbytes > SIZE_MAX ||
	    (at = conn_out_room(&c->out, c->out_cap, (size_t)nbytes)) == NULL)
		return 0;
	while (got < nbytes) {
		ssize_t n = pread(fd, at + got, (size_t)nbytes - got, pos + (off_t)got);
		if (n > 0)
			got += (size_t)n;
		else if (n == 0)
			break;	/* file shrank */
		else if (errno != EINTR)
			return resp_io_error(r);
	}
	conn_out_commit(&c->out, got);
	r->sent += got;
	return 1;
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
	if (resp_send(r, r->head.chars, r->head.len) == -1)
		return -1;
	r->headers_sent = 1;
	if (r->head_only)
		return 1;
	pos = offset;
	int err = 0;
	int rc = 1;
	while (nbytes > 0) {
		uint64_t before;
		int k;
		if (conn_out_pending(&r->conn->out) > 0) {
			/* the head waits in the buffer: the file goes after it */
			k = file_behind(r, fd, pos, nbytes);
			if (k != 0) {
				rc = k;
				break;
			}
			if (conn_out_drain(&r->conn->out, r->fd) == -1) {
				err = errno != 0 ? errno : EIO;
				break;
			}
		}
		before = nbytes;
		k = http_io_sendfile_nowait(r->fd, fd, &pos, &nbytes);
		r->sent += before - nbytes;
		if (k == HTTP_FILE_SENT || k == HTTP_FILE_SHORT)
			break;	/* all of it, or the file shrank */
		if (k == HTTP_FILE_FULL) {
			k = file_behind(r, fd, pos, nbytes);
			if (k != 0) {
				rc = k;
				break;
			}
			if (http_io_wait(r->fd, POLLOUT) == 0)
				continue;
		}
		err = errno != 0 ? errno : EIO;
		break;
	}
	if (err != 0) {
		errno = err;
		return resp_io_error(r);
	}
	return rc;	/* sendfile() with an offset leaves the file position alone */
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
	if (resp_send(r, r->head.chars, r->head.len) == -1) {
		close(rl->fd);
		free(rl->pending);
		free(rl);
		return -1;
	}
	r->headers_sent = 1;
	r->relayed = 1;
	r->conn->relay = rl;
	return 1;
}

int
wsgi_send_result(struct response *r, PyObject *result)
{
	PyObject *it, *item;

	if (Py_TYPE(result) == &FileWrapperType && use_sendfile &&
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

int
wsgi_abort_responses(void)
{
	int n = 0;

	for (struct wsgi_req *q = all_slots; q != NULL; q = q->next) {
		struct response *r = &q->resp;
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

int
wsgi_response_prepare(void)
{
	if (PyType_Ready(&StartResponseType) < 0 || PyType_Ready(&WriteType) < 0 ||
	    PyType_Ready(&FileWrapperType) < 0 || PyType_Ready(&EarlyHintsType) < 0)
		return -1;
	k_relay = wsgi_intern("_cunicorn_relay");
	return 0;
}

void
wsgi_response_init(const struct wsgi_setup *setup)
{
	keepalive_gate = setup->keepalive_gate;
	relay_streams = setup->relay_streams;
	use_sendfile = setup->cfg->sendfile;
}

PyObject *
wsgi_file_wrapper_type(void)
{
	return (PyObject *)&FileWrapperType;
}

PyObject *
wsgi_start_response_object(struct wsgi_req *q)
{
	if (wsgi_renew(q, &q->sr_obj, &StartResponseType) == -1 ||
	    wsgi_renew(q, &q->write_obj, &WriteType) == -1)
		return NULL;
	return q->sr_obj;
}

PyObject *
wsgi_early_hints_object(struct wsgi_req *q)
{
	if (wsgi_renew(q, &q->hints_obj, &EarlyHintsType) == -1)
		return NULL;
	return q->hints_obj;
}
