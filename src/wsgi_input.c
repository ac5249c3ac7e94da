/*
 * wsgi_input.c — the request body and wsgi.input (PEP 3333's input
 * stream; interface: wsgi_int.h).
 *
 * Owns: a request slot's struct body and wsgi.input object (struct
 * wsgi_req's body and input_obj), the body's deadline.  The body is decoded lazily, when the app reads: first from
 * what the connection buffer already holds past the head, then from the
 * socket into the same buffer; Content-Length and chunked framing
 * (http_parser.c's decoder), "100 Continue" on the first read.  A long
 * read() grows its result as the bytes arrive, never from the declared
 * length alone.
 *
 * Never: reads past the end of the body (the next pipelined request's
 * bytes stay in the buffer), blocks without a deadline, allocates from an
 * unchecked length, or serves a wsgi.input kept from an earlier request.
 */
#include "wsgi_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "tls.h"
#include "util.h"

/* A read() of a long body starts with at most this much room and grows
 * as the bytes arrive: a Content-Length alone reserves nothing. */
#define READ_FIRST_ALLOC	(256 * 1024)
/* A body must keep coming: one total deadline that starts at
 * body_base_ms (the head's deadline) and grows with every byte received
 * at HTTP_BODY_MIN_RATE bytes per second (http_conn.h), so that a big
 * upload at a sane pace goes through and a trickle of a byte now and
 * then is cut, whatever the pause between two bytes. */
static int body_base_ms = 10000;

/* Read for the body within its deadline; as http_io_recv. */
static ssize_t
body_recv(struct body *b, void *buf, size_t n)
{
	uint64_t deadline = b->start_ms + http_body_rest_ms(body_base_ms, b->received);
	ssize_t r = http_io_recv_until(b->fd, buf, n, deadline);

	if (r > 0)
		b->received += (uint64_t)r;
	else if (r == -1 && errno == ETIMEDOUT)
		log_debug("Request body too slow: %llu bytes in %llu ms",
		    (unsigned long long)b->received,
		    (unsigned long long)(monotonic_ms() - b->start_ms));
	return r;
}

struct body *
wsgi_body_begin(struct wsgi_req *q, struct http_conn *c)
{
	struct body *b = &q->body;

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
	b->failed = b->io_error = b->err_status = b->nowait = 0;
	b->start_ms = monotonic_ms();
	b->received = 0;
	b->err_reason = NULL;
	b->eof = (b->kind == HTTP_BODY_NONE) ||
	    (b->kind == HTTP_BODY_LENGTH && b->remaining == 0);
	b->continue_pending = c->req.expect_continue && !b->eof &&
	    c->req.version_major == 1 && c->req.version_minor >= 1;
	if (b->kind == HTTP_BODY_CHUNKED)
		http_chunked_init(&b->ch);
	return b;
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
		ssize_t n;
		if (b->nowait) {
			/* the socket is non-blocking: MSG_DONTWAIT's effect */
			n = tls_io_read(b->fd, b->buf + b->base, b->cap - b->base);
			if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK ||
			    errno == EINTR))
				return -2;	/* not here yet: no waiting */
			if (n > 0)
				b->received += (uint64_t)n;
		} else
			n = body_recv(b, b->buf + b->base, b->cap - b->base);
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

int
wsgi_body_unread(const struct body *b)
{
	if (b->failed)
		return 1;
	if (b->eof)
		return 0;
	if (b->kind == HTTP_BODY_LENGTH)	/* beyond what the buffer holds */
		return b->remaining > (uint64_t)(b->len - b->pos);
	return !b->ch.done;
}

/* wsgi_body_drain() keeps the connection within HTTP_DRAIN_MAX
 * (http_drain.h). */
int
wsgi_body_drainable(const struct body *b)
{
	if (b->eof)
		return 1;
	if (b->failed || b->continue_pending)
		return 0;
	return http_drain_possible(b->kind, b->remaining, b->len - b->pos);
}

/* Drop decoded body bytes until the end: 0 at the end; 1 when the rest
 * is not here yet (b->nowait) and every byte of the buffer is taken (a
 * chunked body's decoded): a Content-Length rest within HTTP_DRAIN_MAX,
 * or a chunked one, is handed to *rest for the worker's loop, which goes
 * on decoding where this left off; -1 past HTTP_DRAIN_MAX or on an
 * error. */
static int
drop_rest(struct body *b, struct http_drain *rest)
{
	uint64_t dropped = 0;

	for (;;) {
		int r = body_more(b);
		if (r == 0)
			return 0;
		if (r == -2 && b->pos == b->len) {
			if (b->kind == HTTP_BODY_CHUNKED)
				http_drain_chunked(rest, &b->ch, dropped);
			else if (b->remaining <= HTTP_DRAIN_MAX)
				http_drain_length(rest, b->remaining);
			else
				return -1;
			return 1;
		}
		if (r < 0) {
			if (r == -1)
				PyErr_Clear();
			return -1;
		}
		dropped += b->pend_len;
		body_consume(b, b->pend_len);
		if (dropped > HTTP_DRAIN_MAX) {
			http_drain_log_over();
			return -1;
		}
	}
}

int
wsgi_body_drain(struct body *b, struct http_drain *rest)
{
	int rc;

	http_drain_length(rest, 0);
	if (!wsgi_body_drainable(b))
		return -1;
	b->nowait = 1;
	rc = drop_rest(b, rest);
	b->nowait = 0;
	return rc;
}

typedef RequestBoundObject InputObject;

static PyTypeObject InputType;

/* The body of the request self was handed out for, NULL once stale. */
static struct body *
input_body(InputObject *self)
{
	struct wsgi_req *q = wsgi_req_of((PyObject *)self);

	return q != NULL ? &q->body : NULL;
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

int
wsgi_input_prepare(void)
{
	return PyType_Ready(&InputType) < 0 ? -1 : 0;
}

void
wsgi_input_init(int base_ms)
{
	body_base_ms = base_ms;
}

PyObject *
wsgi_input_object(struct wsgi_req *q)
{
	if (wsgi_renew(q, &q->input_obj, &InputType) == -1)
		return NULL;
	return q->input_obj;
}
