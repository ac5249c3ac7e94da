/*
 * dirty_pyext.c — the Python extension module _cunicorn_dirty: maps dirty
 * wire values (dirty_wire.c) to Python objects and back, and implements
 * Connection, the fast blocking client transport to the dirty arbiter.
 *
 * Built two ways: into the cunicorn binary (registered by python.c with
 * PyImport_AppendInittab; dirty_worker.c links against the C API declared
 * in dirty_pyext.h), and with -DCUNICORN_STANDALONE_EXT as an ordinary
 * extension .so for plain python3 (tests, benchmarks, client scripts).
 *
 * Owns: the two exception classes, and per Connection one socket, one
 * send buffer and one receive buffer (reused across calls).  Never holds
 * the GIL across a blocking socket call; never lets a malformed frame
 * through (the connection is closed after one, since its byte stream can
 * no longer be trusted).  A Connection carries one call at a time.
 *
 * Waiting for a reply: up to 50 µs of non-blocking polls (only when the
 * process may run on more than one CPU), then a blocking recv() bounded
 * by SO_RCVTIMEO: a blocked call costs no CPU beyond that first 50 µs
 * (see SPIN_SECONDS).
 */
#include "dirty_pyext.h"

#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static PyObject *ProtocolError;
static PyObject *RemoteError;

static int
ensure_exceptions(void)
{
	if (ProtocolError == NULL) {
		ProtocolError = PyErr_NewExceptionWithDoc(
		    "_cunicorn_dirty.ProtocolError",
		    "A malformed dirty protocol frame or value.",
		    PyExc_ValueError, NULL);
		if (ProtocolError == NULL)
			return -1;
	}
	if (RemoteError == NULL) {
		RemoteError = PyErr_NewExceptionWithDoc(
		    "_cunicorn_dirty.RemoteError",
		    "An ERROR frame from the dirty arbiter: args and attributes "
		    "error_type (str), message (str), details (dict).",
		    PyExc_Exception, NULL);
		if (RemoteError == NULL)
			return -1;
	}
	return 0;
}

PyObject *
dirty_py_protocol_error(void)
{
	if (ensure_exceptions() == -1)
		return NULL;
	return ProtocolError;
}

PyObject *
dirty_py_remote_error(void)
{
	if (ensure_exceptions() == -1)
		return NULL;
	return RemoteError;
}

static void
protocol_error(const char *why)
{
	if (ensure_exceptions() == -1)
		return;
	PyErr_SetString(ProtocolError, why ? why : "malformed dirty frame");
}

/* ---- decoding ---- */

static PyObject *
decode_fail(struct dirty_cursor *c)
{
	if (!PyErr_Occurred())
		protocol_error(c->error);
	return NULL;
}

PyObject *
dirty_py_decode(struct dirty_cursor *c)
{
	PyObject *o, *k, *v;
	const uint8_t *bp;
	const char *s;
	uint32_t n, i, kn;
	int64_t iv;
	double dv;
	int bv;

	switch (dirty_peek_type(c)) {
	case DIRTY_TLV_NONE:
		if (dirty_get_none(c) == -1)
			return decode_fail(c);
		Py_RETURN_NONE;
	case DIRTY_TLV_BOOL:
		if (dirty_get_bool(c, &bv) == -1)
			return decode_fail(c);
		return PyBool_FromLong(bv);
	case DIRTY_TLV_INT64:
		if (dirty_get_int64(c, &iv) == -1)
			return decode_fail(c);
		return PyLong_FromLongLong(iv);
	case DIRTY_TLV_FLOAT64:
		if (dirty_get_float64(c, &dv) == -1)
			return decode_fail(c);
		return PyFloat_FromDouble(dv);
	case DIRTY_TLV_BYTES:
		if (dirty_get_bytes(c, &bp, &n) == -1)
			return decode_fail(c);
		return PyBytes_FromStringAndSize((const char *)bp, n);
	case DIRTY_TLV_STRING:
		if (dirty_get_string(c, &s, &n) == -1)
			return decode_fail(c);
		return PyUnicode_DecodeUTF8(s, n, "strict");
	case DIRTY_TLV_LIST:
		/* n is bounded by the bytes left, so this allocation is too */
		if (dirty_get_list(c, &n) == -1)
			return decode_fail(c);
		if ((o = PyList_New(n)) == NULL)
			return NULL;
		for (i = 0; i < n; i++) {
			if ((v = dirty_py_decode(c)) == NULL) {
				Py_DECREF(o);
				return NULL;
			}
			PyList_SET_ITEM(o, i, v);
		}
		dirty_leave(c);
		return o;
	case DIRTY_TLV_DICT:
		if (dirty_get_dict(c, &n) == -1)
			return decode_fail(c);
		if ((o = PyDict_New()) == NULL)
			return NULL;
		for (i = 0; i < n; i++) {
			if (dirty_peek_type(c) != DIRTY_TLV_STRING) {
				if (dirty_peek_type(c) == -1)
					dirty_skip(c);	/* sets "truncated" */
				else
					protocol_error("dict key is not a string");
				Py_DECREF(o);
				return decode_fail(c);
			}
			if (dirty_get_string(c, &s, &kn) == -1) {
				Py_DECREF(o);
				return decode_fail(c);
			}
			if ((k = PyUnicode_DecodeUTF8(s, kn, "strict")) == NULL) {
				Py_DECREF(o);
				return NULL;
			}
			if ((v = dirty_py_decode(c)) == NULL) {
				Py_DECREF(k);
				Py_DECREF(o);
				return NULL;
			}
			if (PyDict_SetItem(o, k, v) == -1) {
				Py_DECREF(k);
				Py_DECREF(v);
				Py_DECREF(o);
				return NULL;
			}
			Py_DECREF(k);
			Py_DECREF(v);
		}
		dirty_leave(c);
		return o;
	default:
		dirty_skip(c);		/* unknown type or end: sets c->error */
		return decode_fail(c);
	}
}

PyObject *
dirty_py_decode_payload(const uint8_t *p, size_t len)
{
	struct dirty_cursor c;
	PyObject *o;

	if (len == 0) {
		protocol_error("empty payload");
		return NULL;
	}
	dirty_cursor_init(&c, p, len);
	if ((o = dirty_py_decode(&c)) == NULL)
		return NULL;
	if (dirty_end(&c) == -1) {
		Py_DECREF(o);
		return decode_fail(&c);
	}
	return o;
}

/*
 * The value of `key` in a payload that must be a Dict, decoded; the other
 * values are validated and skipped, trailing bytes refused.  Returns a new
 * reference, or NULL with ProtocolError (also when the key is absent).
 */
static PyObject *
decode_field(const uint8_t *p, size_t len, const char *key)
{
	struct dirty_cursor c;
	PyObject *found = NULL;
	const char *k;
	size_t keylen = strlen(key);
	uint32_t n, i, kn;

	dirty_cursor_init(&c, p, len);
	if (dirty_get_dict(&c, &n) == -1)
		return decode_fail(&c);
	for (i = 0; i < n; i++) {
		if (dirty_peek_type(&c) != DIRTY_TLV_STRING &&
		    dirty_peek_type(&c) != -1) {
			protocol_error("dict key is not a string");
			goto fail;
		}
		if (dirty_get_string(&c, &k, &kn) == -1)
			goto fail;
		if (kn == keylen && memcmp(k, key, keylen) == 0) {
			Py_CLEAR(found);
			if ((found = dirty_py_decode(&c)) == NULL)
				goto fail;
		} else if (dirty_skip(&c) == -1)
			goto fail;
	}
	dirty_leave(&c);
	if (dirty_end(&c) == -1)
		goto fail;
	if (found == NULL) {
		PyErr_Format(dirty_py_protocol_error(),
		    "payload has no \"%s\" field", key);
		return NULL;
	}
	return found;
fail:
	Py_XDECREF(found);
	return decode_fail(&c);
}

/* ---- encoding ---- */

struct encoder {
	struct dirty_buf *b;
	size_t limit;		/* b->len may not grow past this */
};

static int
too_large(void)
{
	PyErr_SetString(PyExc_ValueError,
	    "dirty payload too large (max 64 MiB)");
	return -1;
}

static inline int
room(struct encoder *e, size_t n)
{
	if (n > e->limit - e->b->len)
		return too_large();
	return 0;
}

static int
encode_blob(struct encoder *e, uint8_t type, const void *p, Py_ssize_t n)
{
	if ((size_t)n > DIRTY_MAX_BLOB) {
		PyErr_Format(PyExc_ValueError, "%s too large: %zd bytes "
		    "(max %u)", type == DIRTY_TLV_STRING ? "str" : "bytes", n,
		    DIRTY_MAX_BLOB);
		return -1;
	}
	if (room(e, 5 + (size_t)n) == -1)
		return -1;
	if (type == DIRTY_TLV_STRING)
		dirty_put_string(e->b, p, (uint32_t)n);
	else
		dirty_put_bytes(e->b, p, (uint32_t)n);
	return 0;
}

static int encode_value(struct encoder *e, PyObject *o, int depth);

static int
enter_container(struct encoder *e, Py_ssize_t n, int depth)
{
	if (depth >= DIRTY_MAX_DEPTH) {
		PyErr_Format(PyExc_ValueError, "dirty value nested deeper "
		    "than %d containers", DIRTY_MAX_DEPTH);
		return -1;
	}
	if ((size_t)n > DIRTY_MAX_COUNT) {
		PyErr_Format(PyExc_ValueError, "list or dict too large: %zd "
		    "items (max %u)", n, DIRTY_MAX_COUNT);
		return -1;
	}
	/* every item takes at least one byte: refuse early */
	return room(e, 5 + (size_t)n);
}

static int
encode_sequence(struct encoder *e, PyObject *o, int depth)
{
	int is_list = PyList_Check(o);
	Py_ssize_t n = is_list ? PyList_GET_SIZE(o) : PyTuple_GET_SIZE(o);
	PyObject *item;
	int rc;

	if (enter_container(e, n, depth) == -1)
		return -1;
	dirty_put_list(e->b, (uint32_t)n);
	for (Py_ssize_t i = 0; i < n; i++) {
		if (is_list && i >= PyList_GET_SIZE(o)) {
			PyErr_SetString(PyExc_RuntimeError,
			    "list changed size during encoding");
			return -1;
		}
		item = is_list ? PyList_GET_ITEM(o, i) : PyTuple_GET_ITEM(o, i);
		Py_INCREF(item);
		rc = encode_value(e, item, depth + 1);
		Py_DECREF(item);
		if (rc == -1)
			return -1;
	}
	return 0;
}

static int
encode_dict(struct encoder *e, PyObject *o, int depth)
{
	Py_ssize_t n = PyDict_GET_SIZE(o), pos = 0, done = 0, klen;
	PyObject *k, *v;
	const char *ks;
	int rc;

	if (enter_container(e, n, depth) == -1)
		return -1;
	dirty_put_dict(e->b, (uint32_t)n);
	while (PyDict_Next(o, &pos, &k, &v)) {
		if (!PyUnicode_Check(k)) {
			PyErr_Format(PyExc_TypeError, "dirty dict keys must be "
			    "str, not %.100s", Py_TYPE(k)->tp_name);
			return -1;
		}
		if (++done > n)
			break;
		if ((ks = PyUnicode_AsUTF8AndSize(k, &klen)) == NULL)
			return -1;
		if (encode_blob(e, DIRTY_TLV_STRING, ks, klen) == -1)
			return -1;
		Py_INCREF(v);
		rc = encode_value(e, v, depth + 1);
		Py_DECREF(v);
		if (rc == -1)
			return -1;
	}
	if (done != n) {
		PyErr_SetString(PyExc_RuntimeError,
		    "dict changed size during encoding");
		return -1;
	}
	return 0;
}

static int
encode_value(struct encoder *e, PyObject *o, int depth)
{
	Py_ssize_t n;
	const char *s;

	if (o == Py_None) {
		if (room(e, 1) == -1)
			return -1;
		dirty_put_none(e->b);
		return 0;
	}
	if (PyUnicode_Check(o)) {
		if ((s = PyUnicode_AsUTF8AndSize(o, &n)) == NULL)
			return -1;
		return encode_blob(e, DIRTY_TLV_STRING, s, n);
	}
	if (PyBool_Check(o)) {
		if (room(e, 2) == -1)
			return -1;
		dirty_put_bool(e->b, o == Py_True);
		return 0;
	}
	if (PyLong_Check(o)) {
		int overflow;
		long long v = PyLong_AsLongLongAndOverflow(o, &overflow);

		if (overflow) {
			PyErr_SetString(PyExc_OverflowError,
			    "int out of the dirty protocol's int64 range");
			return -1;
		}
		if (v == -1 && PyErr_Occurred())
			return -1;
		if (room(e, 9) == -1)
			return -1;
		dirty_put_int64(e->b, v);
		return 0;
	}
	if (PyFloat_Check(o)) {
		if (room(e, 9) == -1)
			return -1;
		dirty_put_float64(e->b, PyFloat_AS_DOUBLE(o));
		return 0;
	}
	if (PyDict_Check(o))
		return encode_dict(e, o, depth);
	if (PyList_Check(o) || PyTuple_Check(o))
		return encode_sequence(e, o, depth);
	if (PyBytes_Check(o))
		return encode_blob(e, DIRTY_TLV_BYTES, PyBytes_AS_STRING(o),
		    PyBytes_GET_SIZE(o));
	if (PyByteArray_Check(o))
		return encode_blob(e, DIRTY_TLV_BYTES, PyByteArray_AS_STRING(o),
		    PyByteArray_GET_SIZE(o));
	if (PyMemoryView_Check(o)) {
		Py_buffer view;
		int rc;

		if (PyObject_GetBuffer(o, &view, PyBUF_SIMPLE) == -1)
			return -1;
		rc = encode_blob(e, DIRTY_TLV_BYTES, view.buf, view.len);
		PyBuffer_Release(&view);
		return rc;
	}
	PyErr_Format(PyExc_TypeError, "unsupported type for the dirty "
	    "protocol: %.100s", Py_TYPE(o)->tp_name);
	return -1;
}

int
dirty_py_encode(struct dirty_buf *b, PyObject *o)
{
	struct encoder e = { b, b->len + DIRTY_MAX_PAYLOAD };
	size_t start = b->len;

	if (encode_value(&e, o, 0) == -1) {
		b->len = start;
		return -1;
	}
	return 0;
}

/* Frame with payload {key: value}; value NULL means an empty payload. */
static int
put_keyed_frame(struct dirty_buf *b, uint8_t type, uint64_t id,
    const char *key, PyObject *value)
{
	size_t off = dirty_frame_begin(b, type, id);
	struct encoder e = { b, off + DIRTY_HEADER_SIZE + DIRTY_MAX_PAYLOAD };

	if (key != NULL) {
		dirty_put_dict(b, 1);
		dirty_put_cstring(b, key);
		if (encode_value(&e, value, 1) == -1)
			goto fail;
	} else if (value != NULL && encode_value(&e, value, 0) == -1)
		goto fail;
	if (dirty_frame_end(b, off) == -1) {
		too_large();
		goto fail;
	}
	return 0;
fail:
	b->len = off;
	return -1;
}

int
dirty_py_put_request(struct dirty_buf *b, uint64_t id, PyObject *app_path,
    PyObject *action, PyObject *args, PyObject *kwargs)
{
	size_t off;
	struct encoder e;

	if (!PyUnicode_Check(app_path) || !PyUnicode_Check(action)) {
		PyErr_SetString(PyExc_TypeError,
		    "app_path and action must be str");
		return -1;
	}
	if (args == Py_None)
		args = NULL;
	if (kwargs == Py_None)
		kwargs = NULL;
	if (args != NULL && !PyList_Check(args) && !PyTuple_Check(args)) {
		PyErr_SetString(PyExc_TypeError, "args must be a list or tuple");
		return -1;
	}
	if (kwargs != NULL && !PyDict_Check(kwargs)) {
		PyErr_SetString(PyExc_TypeError, "kwargs must be a dict");
		return -1;
	}
	off = dirty_frame_begin(b, DIRTY_MSG_REQUEST, id);
	e.b = b;
	e.limit = off + DIRTY_HEADER_SIZE + DIRTY_MAX_PAYLOAD;
	dirty_put_dict(b, 4);
	dirty_put_cstring(b, "app_path");
	if (encode_value(&e, app_path, 1) == -1)
		goto fail;
	dirty_put_cstring(b, "action");
	if (encode_value(&e, action, 1) == -1)
		goto fail;
	dirty_put_cstring(b, "args");
	if (args != NULL) {
		if (encode_sequence(&e, args, 1) == -1)
			goto fail;
	} else
		dirty_put_list(b, 0);
	dirty_put_cstring(b, "kwargs");
	if (kwargs != NULL) {
		if (encode_dict(&e, kwargs, 1) == -1)
			goto fail;
	} else
		dirty_put_dict(b, 0);
	if (dirty_frame_end(b, off) == -1) {
		too_large();
		goto fail;
	}
	return 0;
fail:
	b->len = off;
	return -1;
}

int
dirty_py_put_response(struct dirty_buf *b, uint64_t id, PyObject *result)
{
	return put_keyed_frame(b, DIRTY_MSG_RESPONSE, id, "result", result);
}

int
dirty_py_put_chunk(struct dirty_buf *b, uint64_t id, PyObject *data)
{
	return put_keyed_frame(b, DIRTY_MSG_CHUNK, id, "data", data);
}

void
dirty_py_put_end(struct dirty_buf *b, uint64_t id)
{
	size_t off = dirty_frame_begin(b, DIRTY_MSG_END, id);

	(void)dirty_frame_end(b, off);
}

/* Append s as a String, capped at `cap` bytes; invalid UTF-8 (or a cut
 * inside a sequence) is replaced, never sent. */
static void
put_text(struct dirty_buf *b, const char *s, size_t cap)
{
	size_t n = s ? strlen(s) : 0;
	PyObject *u;
	const char *t;
	Py_ssize_t tn;

	if (n > cap)
		n = cap;
	if (dirty_utf8_valid((const uint8_t *)s, n)) {
		dirty_put_string(b, s ? s : "", (uint32_t)n);
		return;
	}
	u = PyUnicode_DecodeUTF8(s, (Py_ssize_t)n, "replace");
	if (u != NULL && (t = PyUnicode_AsUTF8AndSize(u, &tn)) != NULL &&
	    (size_t)tn <= DIRTY_MAX_BLOB)
		dirty_put_string(b, t, (uint32_t)tn);
	else {
		PyErr_Clear();
		dirty_put_cstring(b, "(message not valid UTF-8)");
	}
	Py_XDECREF(u);
}

int
dirty_py_put_error(struct dirty_buf *b, uint64_t id, const char *error_type,
    const char *message, PyObject *details)
{
	size_t off = dirty_frame_begin(b, DIRTY_MSG_ERROR, id);
	size_t dstart;
	struct encoder e = { b, off + DIRTY_HEADER_SIZE + DIRTY_MAX_PAYLOAD };
	PyObject *exc_type, *exc_value, *exc_tb;

	PyErr_Fetch(&exc_type, &exc_value, &exc_tb);
	dirty_put_dict(b, 1);
	dirty_put_cstring(b, "error");
	dirty_put_dict(b, 3);
	dirty_put_cstring(b, "error_type");
	put_text(b, error_type ? error_type : DIRTY_E_ERROR, 256);
	dirty_put_cstring(b, "message");
	put_text(b, message, 1024 * 1024);
	dirty_put_cstring(b, "details");
	dstart = b->len;
	if (details == NULL || details == Py_None || !PyDict_Check(details) ||
	    encode_dict(&e, details, 2) == -1) {
		PyErr_Clear();
		b->len = dstart;
		dirty_put_dict(b, 0);
	}
	if (dirty_frame_end(b, off) == -1) {
		b->len = off;
		dirty_put_error_frame(b, id, error_type ? error_type :
		    DIRTY_E_ERROR, "");
	}
	PyErr_Restore(exc_type, exc_value, exc_tb);
	return 0;
}

int
dirty_py_parse_request(const uint8_t *p, size_t len, PyObject **app_path,
    PyObject **action, PyObject **args, PyObject **kwargs)
{
	PyObject *d, *ap, *ac, *ar, *kw;

	*app_path = *action = *args = *kwargs = NULL;
	if ((d = dirty_py_decode_payload(p, len)) == NULL)
		return -1;
	if (!PyDict_Check(d)) {
		protocol_error("REQUEST payload is not a dict");
		goto fail;
	}
	ap = PyDict_GetItemString(d, "app_path");
	ac = PyDict_GetItemString(d, "action");
	ar = PyDict_GetItemString(d, "args");
	kw = PyDict_GetItemString(d, "kwargs");
	if (ap == NULL || !PyUnicode_Check(ap) || ac == NULL ||
	    !PyUnicode_Check(ac)) {
		protocol_error("REQUEST without str app_path and action");
		goto fail;
	}
	if ((ar != NULL && ar != Py_None && !PyList_Check(ar)) ||
	    (kw != NULL && kw != Py_None && !PyDict_Check(kw))) {
		protocol_error("REQUEST args must be a list, kwargs a dict");
		goto fail;
	}
	if (ar == NULL || ar == Py_None)
		*args = PyTuple_New(0);
	else
		*args = PyList_AsTuple(ar);
	if (*args == NULL)
		goto fail;
	if (kw == NULL || kw == Py_None) {
		if ((*kwargs = PyDict_New()) == NULL)
			goto fail;
	} else {
		Py_INCREF(kw);
		*kwargs = kw;
	}
	Py_INCREF(ap);
	Py_INCREF(ac);
	*app_path = ap;
	*action = ac;
	Py_DECREF(d);
	return 0;
fail:
	Py_CLEAR(*args);
	Py_CLEAR(*kwargs);
	Py_DECREF(d);
	return -1;
}

/* ---- module-level functions ---- */

static PyObject *
bytes_from_buf(struct dirty_buf *b)
{
	PyObject *r = PyBytes_FromStringAndSize((const char *)b->data, b->len);

	dirty_buf_free(b);
	return r;
}

static PyObject *
mod_encode(PyObject *self, PyObject *o)
{
	struct dirty_buf b;

	dirty_buf_init(&b);
	if (dirty_py_encode(&b, o) == -1) {
		dirty_buf_free(&b);
		return NULL;
	}
	return bytes_from_buf(&b);
}

static PyObject *
mod_decode(PyObject *self, PyObject *arg)
{
	Py_buffer view;
	PyObject *r;

	if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) == -1)
		return NULL;
	r = dirty_py_decode_payload(view.buf, (size_t)view.len);
	PyBuffer_Release(&view);
	return r;
}

/* "O&" converter: a request id, an int in 0 .. 2**64-1. */
static int
id_converter(PyObject *o, void *addr)
{
	unsigned long long v;

	if (!PyLong_Check(o)) {
		PyErr_SetString(PyExc_TypeError, "request id must be an int");
		return 0;
	}
	v = PyLong_AsUnsignedLongLong(o);
	if (v == (unsigned long long)-1 && PyErr_Occurred())
		return 0;
	*(unsigned long long *)addr = v;
	return 1;
}

static int
msg_type_arg(int type)
{
	switch (type) {
	case DIRTY_MSG_REQUEST: case DIRTY_MSG_RESPONSE: case DIRTY_MSG_ERROR:
	case DIRTY_MSG_CHUNK: case DIRTY_MSG_END: case DIRTY_MSG_STASH:
	case DIRTY_MSG_STATUS: case DIRTY_MSG_MANAGE:
		return 0;
	}
	PyErr_Format(PyExc_ValueError, "unknown dirty message type %d", type);
	return -1;
}

static PyObject *
mod_encode_frame(PyObject *self, PyObject *args)
{
	int type;
	unsigned long long id;
	PyObject *payload;
	struct dirty_buf b;

	if (!PyArg_ParseTuple(args, "iO&O:encode_frame", &type, id_converter,
	    &id, &payload))
		return NULL;
	if (msg_type_arg(type) == -1)
		return NULL;
	dirty_buf_init(&b);
	if (put_keyed_frame(&b, (uint8_t)type, id, NULL,
	    payload == Py_None ? NULL : payload) == -1) {
		dirty_buf_free(&b);
		return NULL;
	}
	return bytes_from_buf(&b);
}

static PyObject *
mod_encode_request(PyObject *self, PyObject *args)
{
	unsigned long long id;
	PyObject *app_path, *action, *a = Py_None, *kw = Py_None;
	struct dirty_buf b;

	if (!PyArg_ParseTuple(args, "O&UU|OO:encode_request", id_converter,
	    &id, &app_path, &action, &a, &kw))
		return NULL;
	dirty_buf_init(&b);
	if (dirty_py_put_request(&b, id, app_path, action, a, kw) == -1) {
		dirty_buf_free(&b);
		return NULL;
	}
	return bytes_from_buf(&b);
}

static PyObject *
mod_encode_response(PyObject *self, PyObject *args)
{
	unsigned long long id;
	PyObject *v;
	struct dirty_buf b;

	if (!PyArg_ParseTuple(args, "O&O:encode_response", id_converter, &id,
	    &v))
		return NULL;
	dirty_buf_init(&b);
	if (dirty_py_put_response(&b, id, v) == -1) {
		dirty_buf_free(&b);
		return NULL;
	}
	return bytes_from_buf(&b);
}

static PyObject *
mod_encode_chunk(PyObject *self, PyObject *args)
{
	unsigned long long id;
	PyObject *v;
	struct dirty_buf b;

	if (!PyArg_ParseTuple(args, "O&O:encode_chunk", id_converter, &id, &v))
		return NULL;
	dirty_buf_init(&b);
	if (dirty_py_put_chunk(&b, id, v) == -1) {
		dirty_buf_free(&b);
		return NULL;
	}
	return bytes_from_buf(&b);
}

static PyObject *
mod_encode_end(PyObject *self, PyObject *arg)
{
	unsigned long long id;
	struct dirty_buf b;

	if (!id_converter(arg, &id))
		return NULL;
	dirty_buf_init(&b);
	dirty_py_put_end(&b, id);
	return bytes_from_buf(&b);
}

static PyObject *
mod_encode_error(PyObject *self, PyObject *args)
{
	unsigned long long id;
	const char *error_type, *message;
	PyObject *details = Py_None;
	struct dirty_buf b;

	if (!PyArg_ParseTuple(args, "O&ss|O:encode_error", id_converter, &id,
	    &error_type, &message, &details))
		return NULL;
	dirty_buf_init(&b);
	dirty_py_put_error(&b, id, error_type, message, details);
	return bytes_from_buf(&b);
}

static PyObject *
mod_parse_request(PyObject *self, PyObject *arg)
{
	Py_buffer view;
	PyObject *ap, *ac, *a, *kw;
	int rc;

	if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) == -1)
		return NULL;
	rc = dirty_py_parse_request(view.buf, (size_t)view.len, &ap, &ac, &a,
	    &kw);
	PyBuffer_Release(&view);
	if (rc == -1)
		return NULL;
	return Py_BuildValue("(NNNN)", ap, ac, a, kw);
}

static PyObject *
mod_decode_header(PyObject *self, PyObject *arg)
{
	Py_buffer view;
	struct dirty_header h;
	const char *why = NULL;
	int rc = -1;

	if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) == -1)
		return NULL;
	if (view.len < DIRTY_HEADER_SIZE)
		why = "header shorter than 16 bytes";
	else
		rc = dirty_header_decode(view.buf, &h, &why);
	PyBuffer_Release(&view);
	if (rc == -1) {
		protocol_error(why);
		return NULL;
	}
	return Py_BuildValue("(iIK)", (int)h.type, (unsigned int)h.length,
	    (unsigned long long)h.id);
}

static PyObject *
mod_decode_frame(PyObject *self, PyObject *arg)
{
	Py_buffer view;
	struct dirty_header h;
	const char *why = NULL;
	PyObject *payload = NULL, *r = NULL;

	if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) == -1)
		return NULL;
	if (view.len < DIRTY_HEADER_SIZE) {
		protocol_error("frame shorter than 16 bytes");
		goto out;
	}
	if (dirty_header_decode(view.buf, &h, &why) == -1) {
		protocol_error(why);
		goto out;
	}
	if ((size_t)view.len - DIRTY_HEADER_SIZE != h.length) {
		protocol_error((size_t)view.len - DIRTY_HEADER_SIZE < h.length ?
		    "truncated frame" : "trailing bytes after frame");
		goto out;
	}
	if (h.length == 0) {
		Py_INCREF(Py_None);
		payload = Py_None;
	} else if ((payload = dirty_py_decode_payload(
	    (const uint8_t *)view.buf + DIRTY_HEADER_SIZE, h.length)) == NULL)
		goto out;
	r = Py_BuildValue("(iKN)", (int)h.type, (unsigned long long)h.id,
	    payload);
out:
	PyBuffer_Release(&view);
	return r;
}

/* ---- Connection: the blocking client transport ---- */

#define RBUF_INITIAL	(64 * 1024)
#define RBUF_KEEP	(4 * 1024 * 1024)	/* shrink back above this */
#define RCVTIMEO_SLACK_US 10000		/* a timeout may fire this late */
/*
 * Before sleeping in recv() for a reply, poll without blocking for up to
 * SPIN_SECONDS: a stash op or a short call is answered within tens of µs,
 * and sleeping costs a cross-CPU wake-up of about the same size
 * (measured: a one-op round trip 29-51 µs blocking, 21 µs with the spin,
 * on a 2-vCPU VM).  The window opens once per frame awaited (a call, a
 * stream chunk) and then recv() blocks (SO_RCVTIMEO): a long call wastes
 * at most SPIN_SECONDS of CPU.  No spin at all when this process may run
 * on one CPU only (online CPUs, narrowed by its affinity mask, as with
 * `taskset -c 0` or a one-CPU cpuset; read once per process): there the
 * spin would only delay the arbiter and the worker that must answer.
 */
#define SPIN_SECONDS	50e-6

void (*dirty_client_wait_hook)(int waiting);

static int
spin_allowed(void)
{
	static int ncpu;

	if (ncpu == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		cpu_set_t set;

		if (sched_getaffinity(0, sizeof(set), &set) == 0 &&
		    CPU_COUNT(&set) < n)
			n = CPU_COUNT(&set);
		ncpu = n > 0 ? (int)n : 1;
	}
	return ncpu > 1;
}

/*
 * The spin pays only while the answer usually comes within the window,
 * which it does when a CPU is free for the arbiter and the worker.  When
 * every CPU is busy (an HTTP load on a small machine), spinning takes the
 * CPU they need: replies then come after the window and the spin is pure
 * loss (measured: /dirty at 12k req/s with a blind spin, 20k without).  So
 * each process keeps a score: a reply caught while spinning +1, a window
 * that ran out -4; no spin at 0, except one probe every SPIN_PROBE waits.
 */
#define SPIN_SCORE_MAX	16
#define SPIN_PROBE	32
static int spin_score = SPIN_SCORE_MAX;
static unsigned spin_waits;

static int
spin_worthwhile(void)
{
	if (__atomic_load_n(&spin_score, __ATOMIC_RELAXED) > 0)
		return 1;
	return __atomic_add_fetch(&spin_waits, 1, __ATOMIC_RELAXED) % SPIN_PROBE == 0;
}

static void
spin_outcome(int caught)
{
	int v = __atomic_load_n(&spin_score, __ATOMIC_RELAXED);

	v = caught ? (v < SPIN_SCORE_MAX ? v + 1 : v) : (v > 4 ? v - 4 : 0);
	__atomic_store_n(&spin_score, v, __ATOMIC_RELAXED);
}

typedef struct {
	PyObject_HEAD
	int fd;
	int busy;		/* a call is in progress (GIL released) */
	int close_pending;	/* close() came during a call */
	double timeout;		/* seconds; < 0: none */
	long sockopt_us;	/* SO_RCVTIMEO now set on fd (0: none) */
	long sndopt_us;		/* SO_SNDTIMEO now set on fd (0: none) */
	uint64_t next_id;
	struct dirty_buf wbuf;
	struct dirty_buf rbuf;
	size_t rpos;		/* first unconsumed byte of rbuf */
	PyObject *path;
} ConnectionObject;

enum io_status {
	IO_OK, IO_TIMEOUT, IO_EOF, IO_ERRNO, IO_EINTR, IO_PROTOCOL,
};

static double
now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
conn_close_fd(ConnectionObject *self)
{
	if (self->fd != -1) {
		close(self->fd);
		self->fd = -1;
	}
	self->rpos = 0;
	self->rbuf.len = 0;
}

static int
set_rcvtimeo(ConnectionObject *self, long us)
{
	struct timeval tv;

	if (self->sockopt_us == us)
		return 0;
	tv.tv_sec = us / 1000000;
	tv.tv_usec = us % 1000000;
	if (setsockopt(self->fd, SOL_SOCKET, SO_RCVTIMEO, &tv,
	    sizeof(tv)) == -1)
		return -1;
	self->sockopt_us = us;
	return 0;
}

static long
timeout_us(double t)
{
	long us;

	if (t < 0)
		return 0;
	us = (long)(t * 1e6);
	return us < 1 ? 1 : us;
}

/* Begin a call: refuse a closed or busy connection; arm the timeouts. */
static int
conn_begin(ConnectionObject *self, double *deadline)
{
	struct timeval tv;
	long us;

	if (self->fd == -1) {
		PyErr_SetString(PyExc_ConnectionError,
		    "dirty connection is closed");
		return -1;
	}
	if (self->busy) {
		PyErr_SetString(PyExc_RuntimeError, "dirty Connection is in "
		    "use by another thread");
		return -1;
	}
	/* The common path makes no system call here: the options keep
	 * the per-call timeout between calls. */
	us = timeout_us(self->timeout);
	if (set_rcvtimeo(self, us) == -1)
		goto err;
	if (self->sndopt_us != us) {
		tv.tv_sec = us / 1000000;
		tv.tv_usec = us % 1000000;
		if (setsockopt(self->fd, SOL_SOCKET, SO_SNDTIMEO, &tv,
		    sizeof(tv)) == -1)
			goto err;
		self->sndopt_us = us;
	}
	*deadline = self->timeout >= 0 ? now_seconds() + self->timeout : 0;
	self->busy = 1;
	return 0;
err:
	PyErr_SetFromErrno(PyExc_OSError);
	return -1;
}

static void
conn_end(ConnectionObject *self)
{
	self->busy = 0;
	if (self->close_pending) {
		self->close_pending = 0;
		conn_close_fd(self);
	}
	if (self->rpos == self->rbuf.len) {
		self->rpos = 0;
		self->rbuf.len = 0;
		if (self->rbuf.cap > RBUF_KEEP)
			dirty_buf_free(&self->rbuf);
	}
	if (self->wbuf.cap > RBUF_KEEP)
		dirty_buf_free(&self->wbuf);
}

/* Raise the exception for a failed I/O status (GIL held). */
static void
conn_raise(ConnectionObject *self, enum io_status st, int err,
    const char *why)
{
	switch (st) {
	case IO_TIMEOUT:
		PyErr_SetString(PyExc_TimeoutError,
		    "dirty call timed out");
		break;
	case IO_EOF:
		conn_close_fd(self);
		PyErr_SetString(PyExc_ConnectionError,
		    "dirty arbiter closed the connection");
		break;
	case IO_ERRNO:
		conn_close_fd(self);
		errno = err;
		PyErr_SetFromErrno(PyExc_OSError);
		break;
	case IO_PROTOCOL:
		conn_close_fd(self);
		protocol_error(why);
		break;
	default:
		break;
	}
}

/* Send wbuf whole (GIL released inside).  A send that cannot finish leaves
 * a partial frame on the stream: the connection is closed then. */
static int
conn_send(ConnectionObject *self)
{
	const uint8_t *p = self->wbuf.data;
	size_t left = self->wbuf.len;
	enum io_status st = IO_OK;
	int err = 0;
	ssize_t n;
	PyThreadState *ts;

	while (left > 0) {
		ts = PyEval_SaveThread();
		for (;;) {
			n = send(self->fd, p, left, MSG_NOSIGNAL);
			if (n >= 0) {
				p += n;
				left -= (size_t)n;
				if (left == 0)
					break;
				continue;
			}
			err = errno;
			if (err == EINTR)
				st = IO_EINTR;
			else if (err == EAGAIN || err == EWOULDBLOCK)
				st = IO_TIMEOUT;
			else if (err == EPIPE || err == ECONNRESET)
				st = IO_ERRNO;
			else
				st = IO_ERRNO;
			break;
		}
		PyEval_RestoreThread(ts);
		if (st == IO_EINTR) {
			if (PyErr_CheckSignals() == -1) {
				if (left != self->wbuf.len)
					conn_close_fd(self);
				return -1;
			}
			st = IO_OK;
			continue;
		}
		if (st != IO_OK) {
			if (st == IO_TIMEOUT)
				conn_close_fd(self);	/* partial frame */
			conn_raise(self, st, err, NULL);
			return -1;
		}
	}
	return 0;
}

/*
 * Read frames until one for `id` arrives; frames for other ids (replies to
 * calls that timed out, ...) are dropped.  On success *h is its header and
 * *payload points into rbuf, valid until the next read.  GIL held on entry
 * and exit, released while waiting.
 */
static int
conn_read_frame(ConnectionObject *self, uint64_t id, double deadline,
    struct dirty_header *h, const uint8_t **payload)
{
	struct dirty_buf *rb = &self->rbuf;
	enum io_status st;
	const char *why = NULL;
	PyThreadState *ts;
	size_t avail, need;
	ssize_t n;
	int err = 0, flags;

	double spin_end = spin_allowed() && spin_worthwhile()
	    ? now_seconds() + SPIN_SECONDS : 0;

	for (;;) {
		st = IO_OK;
		if (dirty_client_wait_hook != NULL)
			dirty_client_wait_hook(1);
		ts = PyEval_SaveThread();
		for (;;) {
			avail = rb->len - self->rpos;
			if (avail >= DIRTY_HEADER_SIZE) {
				if (dirty_header_decode(rb->data + self->rpos,
				    h, &why) == -1) {
					st = IO_PROTOCOL;
					break;
				}
				need = DIRTY_HEADER_SIZE + (size_t)h->length;
				if (avail >= need) {
					const uint8_t *f = rb->data + self->rpos;

					self->rpos += need;
					if (h->id == id) {
						*payload = f + DIRTY_HEADER_SIZE;
						break;
					}
					continue;	/* stale: drop */
				}
			} else
				need = DIRTY_HEADER_SIZE;
			/* make room for the rest of this frame and more */
			if (self->rpos > 0 && (self->rpos == rb->len ||
			    rb->cap - rb->len < 4096 ||
			    rb->cap - self->rpos < need)) {
				dirty_buf_consume(rb, self->rpos);
				self->rpos = 0;
			}
			if (rb->cap - self->rpos < need ||
			    rb->cap - rb->len < 4096)
				dirty_buf_reserve(rb, need - avail >
				    RBUF_INITIAL ? need - avail : RBUF_INITIAL);
			flags = 0;
			if (self->timeout >= 0) {
				double left = deadline - now_seconds();
				long us = (long)(left * 1e6);

				/* Lower SO_RCVTIMEO only when that moves the
				 * wake-up by more than RCVTIMEO_SLACK_US, so a
				 * fast call makes no setsockopt(). */
				if (us <= 0)
					flags = MSG_DONTWAIT;
				else if (us + RCVTIMEO_SLACK_US < self->sockopt_us &&
				    set_rcvtimeo(self, us) == -1) {
					err = errno;
					st = IO_ERRNO;
					break;
				}
			}
			if (spin_end != 0) {
				if (now_seconds() < spin_end)
					flags |= MSG_DONTWAIT;
				else {
					spin_end = 0;
					spin_outcome(0);
				}
			}
			n = recv(self->fd, rb->data + rb->len,
			    rb->cap - rb->len, flags);
			if (n > 0) {
				rb->len += (size_t)n;
				if (spin_end != 0) {
					spin_end = 0;	/* caught: one outcome per wait */
					spin_outcome(1);
				}
				continue;
			}
			if (n == 0) {
				st = IO_EOF;
				break;
			}
			err = errno;
			if (err == EINTR) {
				st = IO_EINTR;
				break;
			}
			if (err == EAGAIN || err == EWOULDBLOCK) {
				if (self->timeout >= 0 &&
				    now_seconds() >= deadline) {
					st = IO_TIMEOUT;
					break;
				}
				continue;
			}
			st = IO_ERRNO;
			break;
		}
		PyEval_RestoreThread(ts);
		if (dirty_client_wait_hook != NULL)
			dirty_client_wait_hook(0);
		if (st == IO_OK)
			return 0;
		if (st == IO_EINTR) {
			if (PyErr_CheckSignals() == -1)
				return -1;
			continue;
		}
		conn_raise(self, st, err, why);
		return -1;
	}
}

/* The RemoteError for an ERROR payload (or ProtocolError). */
static void
raise_remote(ConnectionObject *self, const uint8_t *p, size_t len)
{
	PyObject *err, *et, *msg, *det, *exc;

	if ((err = decode_field(p, len, "error")) == NULL) {
		conn_close_fd(self);
		return;
	}
	if (!PyDict_Check(err)) {
		Py_DECREF(err);
		conn_close_fd(self);
		protocol_error("ERROR payload \"error\" is not a dict");
		return;
	}
	et = PyDict_GetItemString(err, "error_type");
	msg = PyDict_GetItemString(err, "message");
	det = PyDict_GetItemString(err, "details");
	if (et == NULL || !PyUnicode_Check(et))
		et = NULL;
	if (msg == NULL || msg == Py_None)
		msg = NULL;
	if (det != NULL && !PyDict_Check(det))
		det = NULL;
	if ((et = et ? (Py_INCREF(et), et) :
	    PyUnicode_FromString(DIRTY_E_ERROR)) == NULL)
		goto out;
	msg = msg ? PyObject_Str(msg) : PyUnicode_FromString("");
	det = det ? (Py_INCREF(det), det) : PyDict_New();
	if (msg != NULL && det != NULL &&
	    (exc = PyObject_CallFunctionObjArgs(RemoteError, et, msg, det,
	    NULL)) != NULL) {
		if (PyObject_SetAttrString(exc, "error_type", et) == 0 &&
		    PyObject_SetAttrString(exc, "message", msg) == 0 &&
		    PyObject_SetAttrString(exc, "details", det) == 0)
			PyErr_SetObject(RemoteError, exc);
		Py_DECREF(exc);
	}
	Py_DECREF(et);
	Py_XDECREF(msg);
	Py_XDECREF(det);
out:
	Py_DECREF(err);
}

static int
parse_timeout(PyObject *o, double *t)
{
	if (o == Py_None) {
		*t = -1;
		return 0;
	}
	*t = PyFloat_AsDouble(o);
	if (*t == -1 && PyErr_Occurred())
		return -1;
	if (*t < 0 || *t != *t) {
		PyErr_SetString(PyExc_ValueError,
		    "timeout must be None or >= 0");
		return -1;
	}
	return 0;
}

static int
Connection_init(ConnectionObject *self, PyObject *args, PyObject *kwds)
{
	static char *kwlist[] = { "path", "timeout", NULL };
	PyObject *path_obj, *timeout_obj = Py_None, *path_bytes = NULL;
	struct sockaddr_un sa;
	const char *path;
	Py_ssize_t plen;
	double timeout;
	int fd, rc, err;

	if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|O:Connection", kwlist,
	    &path_obj, &timeout_obj))
		return -1;
	if (self->busy) {
		PyErr_SetString(PyExc_RuntimeError, "dirty Connection is in "
		    "use by another thread");
		return -1;
	}
	if (parse_timeout(timeout_obj, &timeout) == -1)
		return -1;
	if (!PyUnicode_FSConverter(path_obj, &path_bytes))
		return -1;
	path = PyBytes_AS_STRING(path_bytes);
	plen = PyBytes_GET_SIZE(path_bytes);
	if ((size_t)plen >= sizeof(sa.sun_path)) {
		Py_DECREF(path_bytes);
		PyErr_SetString(PyExc_ValueError, "socket path too long");
		return -1;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, path, (size_t)plen);

	if (self->fd != -1)
		conn_close_fd(self);
	Py_BEGIN_ALLOW_THREADS
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	err = errno;
	if (fd != -1) {
		do
			rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
		while (rc == -1 && errno == EINTR);
		err = errno;
		if (rc == -1) {
			close(fd);
			fd = -1;
		}
	}
	Py_END_ALLOW_THREADS
	if (fd == -1) {
		errno = err;
		PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, path_obj);
		Py_DECREF(path_bytes);
		return -1;
	}
	Py_DECREF(path_bytes);
	self->fd = fd;
	self->timeout = timeout;
	self->sockopt_us = 0;
	self->sndopt_us = 0;
	self->next_id = 1;
	self->rpos = 0;
	self->rbuf.len = 0;
	Py_INCREF(path_obj);
	Py_XSETREF(self->path, path_obj);
	return 0;
}

static PyObject *
Connection_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
	ConnectionObject *self = (ConnectionObject *)type->tp_alloc(type, 0);

	if (self == NULL)
		return NULL;
	self->fd = -1;
	self->timeout = -1;
	dirty_buf_init(&self->wbuf);
	dirty_buf_init(&self->rbuf);
	return (PyObject *)self;
}

static void
Connection_dealloc(ConnectionObject *self)
{
	conn_close_fd(self);
	dirty_buf_free(&self->wbuf);
	dirty_buf_free(&self->rbuf);
	Py_CLEAR(self->path);
	Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Encode and send a REQUEST; returns its id via *id. */
/* Encodes one frame with the given id into b; 0, or -1 with a Python
 * exception set. */
typedef int (*frame_encoder)(struct dirty_buf *b, uint64_t id, void *arg);

/* Encode one frame with a fresh id (*id) into wbuf and send it. */
static int
conn_send_frame(ConnectionObject *self, frame_encoder encode, void *arg,
    uint64_t *id)
{
	*id = self->next_id++;
	dirty_buf_reset(&self->wbuf);
	if (encode(&self->wbuf, *id, arg) == -1)
		return -1;
	return conn_send(self);
}

/* A call's sending half, without waiting for a reply (stream_start,
 * send_raw): the frame's id as an int, or NULL with an exception. */
static PyObject *
conn_send_only(ConnectionObject *self, frame_encoder encode, void *arg)
{
	PyObject *r = NULL;
	double deadline;
	uint64_t id;

	if (conn_begin(self, &deadline) == -1)
		return NULL;
	if (conn_send_frame(self, encode, arg, &id) == 0)
		r = PyLong_FromUnsignedLongLong(id);
	conn_end(self);
	return r;
}

struct request_args {
	PyObject *app_path, *action, *args, *kwargs;
};

static int
encode_request(struct dirty_buf *b, uint64_t id, void *arg)
{
	struct request_args *r = arg;

	return dirty_py_put_request(b, id, r->app_path, r->action, r->args,
	    r->kwargs);
}

static int
conn_send_request(ConnectionObject *self, PyObject *app_path,
    PyObject *action, PyObject *args, PyObject *kwargs, uint64_t *id)
{
	struct request_args r = { app_path, action, args, kwargs };

	return conn_send_frame(self, encode_request, &r, id);
}

/* fmt: "UU|OO:<method name>" */
static int
parse_call_args(PyObject *args, PyObject *kwds, const char *fmt,
    PyObject **app_path, PyObject **action, PyObject **a, PyObject **kw)
{
	static char *kwlist[] = { "app_path", "action", "args", "kwargs",
	    NULL };

	*a = Py_None;
	*kw = Py_None;
	return PyArg_ParseTupleAndKeywords(args, kwds, fmt, kwlist, app_path,
	    action, a, kw) ? 0 : -1;
}

static PyObject *
Connection_request(ConnectionObject *self, PyObject *args, PyObject *kwds)
{
	PyObject *app_path, *action, *a, *kw, *r = NULL;
	struct dirty_header h;
	const uint8_t *p;
	double deadline;
	uint64_t id;

	if (parse_call_args(args, kwds, "UU|OO:request", &app_path, &action, &a,
	    &kw) == -1)
		return NULL;
	if (conn_begin(self, &deadline) == -1)
		return NULL;
	if (conn_send_request(self, app_path, action, a, kw, &id) == -1)
		goto out;
	for (;;) {
		if (conn_read_frame(self, id, deadline, &h, &p) == -1)
			goto out;
		switch (h.type) {
		case DIRTY_MSG_RESPONSE:
			if ((r = decode_field(p, h.length, "result")) == NULL)
				conn_close_fd(self);
			goto out;
		case DIRTY_MSG_ERROR:
			raise_remote(self, p, h.length);
			goto out;
		default:
			conn_close_fd(self);
			PyErr_Format(dirty_py_protocol_error(), "unexpected "
			    "message type 0x%02x in reply to a request "
			    "(a streaming action? use stream_start)", h.type);
			goto out;
		}
	}
out:
	conn_end(self);
	return r;
}

static PyObject *
Connection_stream_start(ConnectionObject *self, PyObject *args,
    PyObject *kwds)
{
	struct request_args r;

	if (parse_call_args(args, kwds, "UU|OO:stream_start", &r.app_path,
	    &r.action, &r.args, &r.kwargs) == -1)
		return NULL;
	return conn_send_only(self, encode_request, &r);
}

static PyObject *
Connection_stream_next(ConnectionObject *self, PyObject *arg)
{
	unsigned long long id;
	struct dirty_header h;
	const uint8_t *p;
	PyObject *v, *r = NULL;
	double deadline;

	if (!id_converter(arg, &id))
		return NULL;
	if (conn_begin(self, &deadline) == -1)
		return NULL;
	if (conn_read_frame(self, id, deadline, &h, &p) == -1)
		goto out;
	switch (h.type) {
	case DIRTY_MSG_CHUNK:
		if ((v = decode_field(p, h.length, "data")) == NULL) {
			conn_close_fd(self);
			goto out;
		}
		r = Py_BuildValue("(iN)", (int)h.type, v);
		break;
	case DIRTY_MSG_RESPONSE:
		if ((v = decode_field(p, h.length, "result")) == NULL) {
			conn_close_fd(self);
			goto out;
		}
		r = Py_BuildValue("(iN)", (int)h.type, v);
		break;
	case DIRTY_MSG_END:
		r = Py_BuildValue("(iO)", (int)h.type, Py_None);
		break;
	case DIRTY_MSG_ERROR:
		raise_remote(self, p, h.length);
		break;
	default:
		conn_close_fd(self);
		PyErr_Format(dirty_py_protocol_error(), "unexpected message "
		    "type 0x%02x in a stream", h.type);
	}
out:
	conn_end(self);
	return r;
}

struct raw_args {
	int type;
	PyObject *payload;
};

static int
encode_raw(struct dirty_buf *b, uint64_t id, void *arg)
{
	struct raw_args *r = arg;

	return put_keyed_frame(b, (uint8_t)r->type, id, NULL,
	    r->payload == Py_None ? NULL : r->payload);
}

static PyObject *
Connection_send_raw(ConnectionObject *self, PyObject *args)
{
	struct raw_args r;

	if (!PyArg_ParseTuple(args, "iO:send_raw", &r.type, &r.payload))
		return NULL;
	if (msg_type_arg(r.type) == -1)
		return NULL;
	return conn_send_only(self, encode_raw, &r);
}

static PyObject *
Connection_recv_reply(ConnectionObject *self, PyObject *arg)
{
	unsigned long long id;
	struct dirty_header h;
	const uint8_t *p;
	PyObject *v, *r = NULL;
	double deadline;

	if (!id_converter(arg, &id))
		return NULL;
	if (conn_begin(self, &deadline) == -1)
		return NULL;
	if (conn_read_frame(self, id, deadline, &h, &p) == -1)
		goto out;
	if (h.length == 0) {
		Py_INCREF(Py_None);
		v = Py_None;
	} else if ((v = dirty_py_decode_payload(p, h.length)) == NULL) {
		conn_close_fd(self);
		goto out;
	}
	r = Py_BuildValue("(iN)", (int)h.type, v);
out:
	conn_end(self);
	return r;
}

static PyObject *
Connection_close(ConnectionObject *self, PyObject *unused)
{
	if (self->busy) {
		/* another thread is blocked in a call: wake it with EOF; it
		 * closes the descriptor when it returns */
		if (self->fd != -1)
			shutdown(self->fd, SHUT_RDWR);
		self->close_pending = 1;
	} else
		conn_close_fd(self);
	Py_RETURN_NONE;
}

static PyObject *
Connection_fileno(ConnectionObject *self, PyObject *unused)
{
	return PyLong_FromLong(self->fd);
}

/* Hand the socket over (cunicorn's event loop relays a stream): returns
 * (fd, the bytes read but not consumed yet); the connection is closed
 * afterwards without closing the fd, which the caller now owns. */
static PyObject *
Connection_detach(ConnectionObject *self, PyObject *unused)
{
	PyObject *r;

	if (self->busy || self->fd == -1) {
		PyErr_SetString(PyExc_OSError, self->fd == -1 ? "connection closed" :
		    "connection busy");
		return NULL;
	}
	r = Py_BuildValue("(iy#)", self->fd, self->rbuf.data != NULL ?
	    (const char *)self->rbuf.data + self->rpos : "",
	    (Py_ssize_t)(self->rbuf.len - self->rpos));
	if (r == NULL)
		return NULL;
	self->fd = -1;
	self->rpos = 0;
	self->rbuf.len = 0;
	return r;
}

static PyObject *
Connection_enter(ConnectionObject *self, PyObject *unused)
{
	Py_INCREF(self);
	return (PyObject *)self;
}

static PyObject *
Connection_exit(ConnectionObject *self, PyObject *args)
{
	return Connection_close(self, NULL);
}

static PyObject *
Connection_get_timeout(ConnectionObject *self, void *closure)
{
	if (self->timeout < 0)
		Py_RETURN_NONE;
	return PyFloat_FromDouble(self->timeout);
}

static int
Connection_set_timeout(ConnectionObject *self, PyObject *v, void *closure)
{
	double t;

	if (v == NULL) {
		PyErr_SetString(PyExc_AttributeError, "cannot delete timeout");
		return -1;
	}
	if (parse_timeout(v, &t) == -1)
		return -1;
	self->timeout = t;
	return 0;
}

static PyObject *
Connection_get_closed(ConnectionObject *self, void *closure)
{
	return PyBool_FromLong(self->fd == -1);
}

static PyObject *
Connection_get_path(ConnectionObject *self, void *closure)
{
	if (self->path == NULL)
		Py_RETURN_NONE;
	Py_INCREF(self->path);
	return self->path;
}

static PyMethodDef Connection_methods[] = {
	{ "request", (PyCFunction)(void (*)(void))Connection_request,
	    METH_VARARGS | METH_KEYWORDS,
	    "request(app_path, action, args=(), kwargs=None) -> result\n"
	    "Send a REQUEST and wait for its RESPONSE (raises RemoteError "
	    "for an ERROR)." },
	{ "stream_start", (PyCFunction)(void (*)(void))Connection_stream_start,
	    METH_VARARGS | METH_KEYWORDS,
	    "stream_start(app_path, action, args=(), kwargs=None) -> id" },
	{ "stream_next", (PyCFunction)Connection_stream_next, METH_O,
	    "stream_next(id) -> (kind, value): (MSG_TYPE_CHUNK, data), "
	    "(MSG_TYPE_END, None) or (MSG_TYPE_RESPONSE, result); raises "
	    "RemoteError for an ERROR." },
	{ "send_raw", (PyCFunction)Connection_send_raw, METH_VARARGS,
	    "send_raw(type, payload_or_None) -> id" },
	{ "recv_reply", (PyCFunction)Connection_recv_reply, METH_O,
	    "recv_reply(id) -> (type, payload_or_None); does not raise for "
	    "ERROR frames." },
	{ "close", (PyCFunction)Connection_close, METH_NOARGS, NULL },
	{ "fileno", (PyCFunction)Connection_fileno, METH_NOARGS, NULL },
	{ "detach", (PyCFunction)Connection_detach, METH_NOARGS,
	    "detach() -> (fd, unread bytes); the caller owns the fd" },
	{ "__enter__", (PyCFunction)Connection_enter, METH_NOARGS, NULL },
	{ "__exit__", (PyCFunction)Connection_exit, METH_VARARGS, NULL },
	{ NULL, NULL, 0, NULL },
};

static PyGetSetDef Connection_getset[] = {
	{ "timeout", (getter)Connection_get_timeout,
	    (setter)Connection_set_timeout, "seconds per call, or None", NULL },
	{ "closed", (getter)Connection_get_closed, NULL, NULL, NULL },
	{ "path", (getter)Connection_get_path, NULL, NULL, NULL },
	{ NULL, NULL, NULL, NULL, NULL },
};

static PyTypeObject ConnectionType = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "_cunicorn_dirty.Connection",
	.tp_doc = "Connection(path, timeout=None): a blocking client "
	    "connection to the dirty arbiter's Unix socket.  One call at a "
	    "time; timeout is per call, in seconds.",
	.tp_basicsize = sizeof(ConnectionObject),
	.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
	.tp_new = Connection_new,
	.tp_init = (initproc)Connection_init,
	.tp_dealloc = (destructor)Connection_dealloc,
	.tp_methods = Connection_methods,
	.tp_getset = Connection_getset,
};

/* ---- the module ---- */

static PyMethodDef module_methods[] = {
	{ "encode", mod_encode, METH_O,
	    "encode(obj) -> bytes: one TLV value" },
	{ "decode", mod_decode, METH_O,
	    "decode(data) -> obj: exactly one TLV value (trailing bytes are "
	    "an error)" },
	{ "encode_frame", mod_encode_frame, METH_VARARGS,
	    "encode_frame(type, id, payload_or_None) -> bytes: header + "
	    "payload (None: empty payload)" },
	{ "encode_request", mod_encode_request, METH_VARARGS,
	    "encode_request(id, app_path, action, args=None, kwargs=None) "
	    "-> bytes: a whole REQUEST frame" },
	{ "encode_response", mod_encode_response, METH_VARARGS,
	    "encode_response(id, result) -> bytes: a RESPONSE frame" },
	{ "encode_chunk", mod_encode_chunk, METH_VARARGS,
	    "encode_chunk(id, data) -> bytes: a CHUNK frame" },
	{ "encode_end", mod_encode_end, METH_O,
	    "encode_end(id) -> bytes: an END frame" },
	{ "encode_error", mod_encode_error, METH_VARARGS,
	    "encode_error(id, error_type, message, details=None) -> bytes: an "
	    "ERROR frame (never fails; unencodable details become {})" },
	{ "parse_request", mod_parse_request, METH_O,
	    "parse_request(payload) -> (app_path, action, args_tuple, kwargs)" },
	{ "decode_header", mod_decode_header, METH_O,
	    "decode_header(data) -> (type, length, id) from the first 16 "
	    "bytes" },
	{ "decode_frame", mod_decode_frame, METH_O,
	    "decode_frame(data) -> (type, id, payload_or_None) from exactly "
	    "one whole frame" },
	{ NULL, NULL, 0, NULL },
};

static struct PyModuleDef dirty_module = {
	PyModuleDef_HEAD_INIT,
	.m_name = "_cunicorn_dirty",
	.m_doc = "cunicorn's dirty protocol codec and client transport.",
	.m_size = -1,
	.m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__cunicorn_dirty(void)
{
	PyObject *m;
	static const struct { const char *name; long value; } ints[] = {
		{ "MSG_TYPE_REQUEST", DIRTY_MSG_REQUEST },
		{ "MSG_TYPE_RESPONSE", DIRTY_MSG_RESPONSE },
		{ "MSG_TYPE_ERROR", DIRTY_MSG_ERROR },
		{ "MSG_TYPE_CHUNK", DIRTY_MSG_CHUNK },
		{ "MSG_TYPE_END", DIRTY_MSG_END },
		{ "MSG_TYPE_STASH", DIRTY_MSG_STASH },
		{ "MSG_TYPE_STATUS", DIRTY_MSG_STATUS },
		{ "MSG_TYPE_MANAGE", DIRTY_MSG_MANAGE },
		{ "STASH_OP_PUT", DIRTY_STASH_PUT },
		{ "STASH_OP_GET", DIRTY_STASH_GET },
		{ "STASH_OP_DELETE", DIRTY_STASH_DELETE },
		{ "STASH_OP_KEYS", DIRTY_STASH_KEYS },
		{ "STASH_OP_CLEAR", DIRTY_STASH_CLEAR },
		{ "STASH_OP_INFO", DIRTY_STASH_INFO },
		{ "STASH_OP_ENSURE", DIRTY_STASH_ENSURE },
		{ "STASH_OP_DELETE_TABLE", DIRTY_STASH_DELETE_TABLE },
		{ "STASH_OP_TABLES", DIRTY_STASH_TABLES },
		{ "STASH_OP_EXISTS", DIRTY_STASH_EXISTS },
		{ "MANAGE_OP_ADD", DIRTY_MANAGE_ADD },
		{ "MANAGE_OP_REMOVE", DIRTY_MANAGE_REMOVE },
		{ "HEADER_SIZE", DIRTY_HEADER_SIZE },
		{ "MAX_PAYLOAD", DIRTY_MAX_PAYLOAD },
		{ "MAX_BLOB", DIRTY_MAX_BLOB },
		{ "MAX_COUNT", DIRTY_MAX_COUNT },
		{ "MAX_DEPTH", DIRTY_MAX_DEPTH },
	};

	if (ensure_exceptions() == -1)
		return NULL;
	if (PyType_Ready(&ConnectionType) < 0)
		return NULL;
	if ((m = PyModule_Create(&dirty_module)) == NULL)
		return NULL;
	for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++)
		if (PyModule_AddIntConstant(m, ints[i].name, ints[i].value) < 0)
			goto fail;
	if (PyModule_AddObjectRef(m, "ProtocolError", ProtocolError) < 0 ||
	    PyModule_AddObjectRef(m, "RemoteError", RemoteError) < 0 ||
	    PyModule_AddObjectRef(m, "Connection",
	    (PyObject *)&ConnectionType) < 0)
		goto fail;
	return m;
fail:
	Py_DECREF(m);
	return NULL;
}
