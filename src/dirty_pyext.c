/*
 * dirty_pyext.c — the Python extension module _cunicorn_dirty: the codec's
 * functions for Python (encode, decode, frames; dirty_pycodec.c), the
 * protocol's constants, the exception classes, Connection (dirty_pyconn.c)
 * and FrameReader (dirty_pyreader.c).
 *
 * Built two ways: into the cunicorn binary (registered by python.c with
 * PyImport_AppendInittab; dirty_worker.c links against the C API declared
 * in dirty_pyext.h), and with -DCUNICORN_STANDALONE_EXT as an ordinary
 * extension .so for plain python3 (tests, benchmarks, client scripts).
 *
 * Owns nothing beyond the module object: every function here turns its
 * arguments into a call of the codec and its result into bytes or objects.
 */
#include "dirty_pyext_int.h"

/* ---- module-level functions ---- */

/* What an encoder wrote into b, as bytes; rc -1: it failed (the
 * exception is set), NULL.  b is freed either way. */
static PyObject *
bytes_from_buf(struct dirty_buf *b, int rc)
{
	PyObject *r = NULL;

	if (rc == 0)
		r = PyBytes_FromStringAndSize((const char *)b->data, b->len);
	dirty_buf_free(b);
	return r;
}

static PyObject *
mod_encode(PyObject *self, PyObject *o)
{
	struct dirty_buf b;

	dirty_buf_init(&b);
	return bytes_from_buf(&b, dirty_py_encode(&b, o));
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

static PyObject *
mod_encode_frame(PyObject *self, PyObject *args)
{
	int type;
	unsigned long long id;
	PyObject *payload;
	struct dirty_buf b;

	if (!PyArg_ParseTuple(args, "iO&O:encode_frame", &type, dirty_py_id_converter,
	    &id, &payload))
		return NULL;
	if (dirty_py_msg_type_arg(type) == -1)
		return NULL;
	dirty_buf_init(&b);
	return bytes_from_buf(&b, dirty_py_put_keyed_frame(&b, (uint8_t)type,
	    id, NULL, payload == Py_None ? NULL : payload));
}

static PyObject *
mod_encode_request(PyObject *self, PyObject *args)
{
	unsigned long long id;
	PyObject *app_path, *action, *a = Py_None, *kw = Py_None;
	struct dirty_buf b;

	if (!PyArg_ParseTuple(args, "O&UU|OO:encode_request", dirty_py_id_converter,
	    &id, &app_path, &action, &a, &kw))
		return NULL;
	dirty_buf_init(&b);
	return bytes_from_buf(&b, dirty_py_put_request(&b, id, app_path, action,
	    a, kw));
}

/* encode_response(id, result), encode_chunk(id, data): an id and one
 * value through `put`. */
static PyObject *
encode_id_value(PyObject *args, const char *format,
    int (*put)(struct dirty_buf *, uint64_t, PyObject *))
{
	unsigned long long id;
	PyObject *v;
	struct dirty_buf b;

	if (!PyArg_ParseTuple(args, format, dirty_py_id_converter, &id, &v))
		return NULL;
	dirty_buf_init(&b);
	return bytes_from_buf(&b, put(&b, id, v));
}

static PyObject *
mod_encode_response(PyObject *self, PyObject *args)
{
	return encode_id_value(args, "O&O:encode_response",
	    dirty_py_put_response);
}

static PyObject *
mod_encode_chunk(PyObject *self, PyObject *args)
{
	return encode_id_value(args, "O&O:encode_chunk", dirty_py_put_chunk);
}

static PyObject *
mod_encode_end(PyObject *self, PyObject *arg)
{
	unsigned long long id;
	struct dirty_buf b;

	if (!dirty_py_id_converter(arg, &id))
		return NULL;
	dirty_buf_init(&b);
	dirty_py_put_end(&b, id);
	return bytes_from_buf(&b, 0);
}

static PyObject *
mod_encode_error(PyObject *self, PyObject *args)
{
	unsigned long long id;
	const char *error_type, *message;
	PyObject *details = Py_None;
	struct dirty_buf b;

	if (!PyArg_ParseTuple(args, "O&ss|O:encode_error", dirty_py_id_converter, &id,
	    &error_type, &message, &details))
		return NULL;
	dirty_buf_init(&b);
	dirty_py_put_error(&b, id, error_type, message, details);
	return bytes_from_buf(&b, 0);
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
		dirty_py_raise_protocol(why);
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
		dirty_py_raise_protocol("frame shorter than 16 bytes");
		goto out;
	}
	if (dirty_header_decode(view.buf, &h, &why) == -1) {
		dirty_py_raise_protocol(why);
		goto out;
	}
	if ((size_t)view.len - DIRTY_HEADER_SIZE != h.length) {
		dirty_py_raise_protocol((size_t)view.len - DIRTY_HEADER_SIZE < h.length ?
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

	if (dirty_py_exceptions_init() == -1)
		return NULL;
	if (PyType_Ready(&dirty_py_connection_type) < 0 ||
	    PyType_Ready(&dirty_py_frame_reader_type) < 0)
		return NULL;
	if ((m = PyModule_Create(&dirty_module)) == NULL)
		return NULL;
	for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++)
		if (PyModule_AddIntConstant(m, ints[i].name, ints[i].value) < 0)
			goto fail;
	if (PyModule_AddObjectRef(m, "ProtocolError", dirty_py_protocol_error()) < 0 ||
	    PyModule_AddObjectRef(m, "RemoteError", dirty_py_remote_error()) < 0 ||
	    PyModule_AddObjectRef(m, "Connection",
	    (PyObject *)&dirty_py_connection_type) < 0 ||
	    PyModule_AddObjectRef(m, "FrameReader",
	    (PyObject *)&dirty_py_frame_reader_type) < 0)
		goto fail;
	return m;
fail:
	Py_DECREF(m);
	return NULL;
}
