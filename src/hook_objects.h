/*
 * hook_objects.h — the Python objects gunicorn's request hooks receive
 * (pre_request(worker, req), post_request(worker, req, environ, resp)),
 * built the same way for every worker type: a types.SimpleNamespace with
 * gunicorn's Request attributes.  GIL held.
 */
#ifndef CUNICORN_HOOK_OBJECTS_H
#define CUNICORN_HOOK_OBJECTS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

struct http_request;

/* Import what the objects need, once per process (in the master before
 * fork when it can).  0, or -1 with an exception set. */
int hook_objects_prepare(void);

/* A SimpleNamespace of kw's items (kw is stolen; NULL passes through). */
PyObject *hook_namespace(PyObject *kw);

/* gunicorn's req: method, uri, path, query, fragment, version, headers
 * (upper-cased names, latin-1 values), scheme, remote_addr. */
PyObject *hook_request_object(const struct http_request *q, const char *scheme,
    const char *remote_addr);

#endif
