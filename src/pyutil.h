/*
 * pyutil.h — small helpers for the files that call the Python C API with
 * the GIL held (the wsgi and asgi files, settings_print.c), written once here.
 */
#ifndef CUNICORN_PYUTIL_H
#define CUNICORN_PYUTIL_H

#include <Python.h>

/* d[k] = v, taking v's reference (v NULL: an error already set by the
 * call that made it); 0, or -1 with an exception. */
static inline int
py_dict_set_new(PyObject *d, PyObject *k, PyObject *v)
{
	int rc;

	if (v == NULL)
		return -1;
	rc = PyDict_SetItem(d, k, v);
	Py_DECREF(v);
	return rc;
}

/* The same with a C string key. */
static inline int
py_dict_set_new_str(PyObject *d, const char *k, PyObject *v)
{
	int rc;

	if (v == NULL)
		return -1;
	rc = PyDict_SetItemString(d, k, v);
	Py_DECREF(v);
	return rc;
}

#endif
