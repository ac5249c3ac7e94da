/*
 * dirty_pycodec.c — the dirty protocol seen from Python: maps dirty wire
 * values (dirty_wire.c) to Python objects and back, builds whole frames
 * from Python objects and parses REQUEST payloads into them.  The C API
 * of dirty_pyext.h: the dirty worker (dirty_worker.c) serves calls with
 * it, the module _cunicorn_dirty (dirty_pyext.c) and its Connection
 * (dirty_pyconn.c) are built on it.
 *
 * Owns: the two exception classes (ProtocolError, RemoteError).  Never
 * does I/O; never lets a malformed value through; on an encoding failure
 * leaves the caller's buffer exactly as it was.
 */
#include "dirty_pyext_int.h"

#include <string.h>

static PyObject *ProtocolError;
static PyObject *RemoteError;

int
dirty_py_exceptions_init(void)
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
	if (dirty_py_exceptions_init() == -1)
		return NULL;
	return ProtocolError;
}

PyObject *
dirty_py_remote_error(void)
{
	if (dirty_py_exceptions_init() == -1)
		return NULL;
	return RemoteError;
}

void
dirty_py_raise_protocol(const char *why)
{
	if (dirty_py_exceptions_init() == -1)
		return;
	PyErr_SetString(ProtocolError, why ? why : "malformed dirty frame");
}

/* ---- decoding ---- */

static PyObject *
decode_fail(struct dirty_cursor *c)
{
	if (!PyErr_Occurred())
		dirty_py_raise_protocol(c->error);
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
					dirty_py_raise_protocol("dict key is not a string");
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
		dirty_py_raise_protocol("empty payload");
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
PyObject *
dirty_py_decode_field(const uint8_t *p, size_t len, const char *key)
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
			dirty_py_raise_protocol("dict key is not a string");
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

/* Close the frame begun at off whose payload encoded (ok) or failed: 0,
 * or -1 with the frame taken back (and OverflowError set if too large). */
static int
frame_close(struct dirty_buf *b, size_t off, int ok)
{
	if (ok && dirty_frame_end(b, off) == -1) {
		too_large();
		ok = 0;
	}
	if (!ok)
		b->len = off;
	return ok ? 0 : -1;
}

/* Frame with payload {key: value}; value NULL means an empty payload. */
int
dirty_py_put_keyed_frame(struct dirty_buf *b, uint8_t type, uint64_t id,
    const char *key, PyObject *value)
{
	size_t off = dirty_frame_begin(b, type, id);
	struct encoder e = { b, off + DIRTY_HEADER_SIZE + DIRTY_MAX_PAYLOAD };

	int ok = 1;

	if (key != NULL) {
		dirty_put_dict(b, 1);
		dirty_put_cstring(b, key);
		ok = encode_value(&e, value, 1) == 0;
	} else if (value != NULL)
		ok = encode_value(&e, value, 0) == 0;
	return frame_close(b, off, ok);
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
	return frame_close(b, off, 1);
fail:
	return frame_close(b, off, 0);
}

int
dirty_py_put_response(struct dirty_buf *b, uint64_t id, PyObject *result)
{
	return dirty_py_put_keyed_frame(b, DIRTY_MSG_RESPONSE, id, "result", result);
}

int
dirty_py_put_chunk(struct dirty_buf *b, uint64_t id, PyObject *data)
{
	return dirty_py_put_keyed_frame(b, DIRTY_MSG_CHUNK, id, "data", data);
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
		dirty_py_raise_protocol("REQUEST payload is not a dict");
		goto fail;
	}
	ap = PyDict_GetItemString(d, "app_path");
	ac = PyDict_GetItemString(d, "action");
	ar = PyDict_GetItemString(d, "args");
	kw = PyDict_GetItemString(d, "kwargs");
	if (ap == NULL || !PyUnicode_Check(ap) || ac == NULL ||
	    !PyUnicode_Check(ac)) {
		dirty_py_raise_protocol("REQUEST without str app_path and action");
		goto fail;
	}
	if ((ar != NULL && ar != Py_None && !PyList_Check(ar)) ||
	    (kw != NULL && kw != Py_None && !PyDict_Check(kw))) {
		dirty_py_raise_protocol("REQUEST args must be a list, kwargs a dict");
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


/* ---- arguments shared by the module and Connection ---- */

/* "O&" converter: a request id, an int in 0 .. 2**64-1. */
int
dirty_py_id_converter(PyObject *o, void *addr)
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

int
dirty_py_msg_type_arg(int type)
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
