/*
 * hook_objects.c — the objects gunicorn's request hooks receive
 * (contract: hook_objects.h), for the WSGI workers (wsgi.c) and the asgi
 * worker (asgi_hooks.c) alike.
 *
 * Owns: types.SimpleNamespace (imported once) and a per-thread buffer
 * for upper-casing header names.  Never: calls a hook itself.
 */
#include "hook_objects.h"

#include "buf.h"
#include "http_parser.h"

static PyObject *ns_type;			/* types.SimpleNamespace */
/* Upper-cased header names: scratch within one call, so per thread
 * rather than in a worker's request struct. */
static __thread struct buf hook_names;

int
hook_objects_prepare(void)
{
	PyObject *mod;

	if (ns_type != NULL)
		return 0;
	if ((mod = PyImport_ImportModule("types")) == NULL)
		return -1;
	ns_type = PyObject_GetAttrString(mod, "SimpleNamespace");
	Py_DECREF(mod);
	return ns_type == NULL ? -1 : 0;
}

PyObject *
hook_namespace(PyObject *kw)
{
	PyObject *empty, *o;

	if (kw == NULL)
		return NULL;
	if (hook_objects_prepare() == -1 || (empty = PyTuple_New(0)) == NULL) {
		Py_DECREF(kw);
		return NULL;
	}
	o = PyObject_Call(ns_type, empty, kw);
	Py_DECREF(empty);
	Py_DECREF(kw);
	return o;
}

PyObject *
hook_request_object(const struct http_request *q, const char *scheme,
    const char *remote_addr)
{
	PyObject *headers = PyList_New((Py_ssize_t)q->nheaders);

	if (headers == NULL)
		return NULL;
	for (size_t i = 0; i < q->nheaders; i++) {
		const struct http_header *h = &q->headers[i];
		hook_names.len = 0;
		for (size_t j = 0; j < h->name_len; j++) {
			unsigned char ch = (unsigned char)h->name[j];
			char u = (ch >= 'a' && ch <= 'z') ? (char)(ch - 32) : (char)ch;
			buf_append(&hook_names, &u, 1);
		}
		/* values as latin-1 str, like gunicorn */
		PyObject *t = Py_BuildValue("(s#N)", hook_names.chars, (Py_ssize_t)hook_names.len,
		    PyUnicode_DecodeLatin1(h->value, (Py_ssize_t)h->value_len, NULL));
		if (t == NULL) {
			Py_DECREF(headers);
			return NULL;
		}
		PyList_SET_ITEM(headers, (Py_ssize_t)i, t);
	}
	PyObject *kw = Py_BuildValue("{s:N,s:N,s:N,s:N,s:N,s:(ii),s:N,s:s,s:s}",
	    "method", PyUnicode_DecodeLatin1(q->method, (Py_ssize_t)q->method_len, NULL),
	    "uri", PyUnicode_DecodeLatin1(q->target, (Py_ssize_t)q->target_len, NULL),
	    "path", PyUnicode_DecodeLatin1(q->path, (Py_ssize_t)q->path_len, NULL),
	    "query", PyUnicode_DecodeLatin1(q->query ? q->query : "", (Py_ssize_t)q->query_len, NULL),
	    "fragment", PyUnicode_DecodeLatin1(q->fragment ? q->fragment : "",
	        (Py_ssize_t)q->fragment_len, NULL),
	    "version", q->version_major, q->version_minor,
	    "headers", headers,
	    "scheme", scheme,
	    "remote_addr", remote_addr);
	return hook_namespace(kw);
}
