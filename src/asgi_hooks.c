/*
 * asgi_hooks.c — what gunicorn's settings ask of the asgi worker around
 * one request (part of _cunicorn_asgi; asgi_int.h names the files):
 *
 *   pre_request(worker, req)    when an HTTP request's head is read,
 *                               before the app runs
 *   post_request(worker, req, environ, resp)
 *                               once its response is complete (the
 *                               access log's moment), or when its app
 *                               ends after the client went away
 *   asgi_disconnect_grace_period
 *                               when the client goes away (the
 *                               connection is lost, or the client ends
 *                               its side while a request is in flight:
 *                               the moment receive() starts answering
 *                               http.disconnect), the app's task has
 *                               that many seconds to finish; then it is
 *                               cancelled (0: at once).  gunicorn closes
 *                               on the client's EOF, so a half-closing
 *                               client gets no more time there either.
 *
 * As in gunicorn's asgi worker: the hooks run for HTTP requests, not
 * for websockets; a hook that raises is logged ("Exception in
 * pre_request hook") and the request goes on; req is built as for the
 * WSGI workers (hook_objects.c), environ is gunicorn's small one for an
 * ASGI request (REQUEST_METHOD, RAW_URI, PATH_INFO, QUERY_STRING,
 * SERVER_PROTOCOL, REMOTE_ADDR, HTTP_*), resp has status, status_code,
 * headers and sent.  Without a hook nothing is built.
 *
 * Owns: a Proto's hook_req (the (req, environ) pair from pre to post)
 * and its task reference's use on disconnect.  Never: fails a request.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdio.h>
#include <string.h>

#include "asgi_int.h"
#include "hook_objects.h"
#include "http_parser.h"
#include "log.h"
#include "python.h"
#include "settings.h"
#include "wsgi.h"

static int
want_hooks(void)
{
	return asgi.cfg->hooks[HOOK_PRE_REQUEST] != NULL ||
	    asgi.cfg->hooks[HOOK_POST_REQUEST] != NULL;
}

static const char *
client_host(Proto *p)
{
	const char *s = NULL;

	if (p->client != NULL && PyTuple_Check(p->client) &&
	    PyUnicode_Check(PyTuple_GET_ITEM(p->client, 0)))
		s = PyUnicode_AsUTF8(PyTuple_GET_ITEM(p->client, 0));
	PyErr_Clear();
	return s != NULL ? s : "-";
}

static int
env_set(PyObject *env, const char *key, const char *v, size_t n)
{
	PyObject *o = PyUnicode_DecodeLatin1(v, (Py_ssize_t)n, NULL);
	int rc = o != NULL ? PyDict_SetItemString(env, key, o) : -1;

	Py_XDECREF(o);
	return rc;
}

/* gunicorn's environ for an ASGI request's hooks. */
static PyObject *
hook_environ(const struct http_request *q, const char *host)
{
	PyObject *env = PyDict_New();
	char proto[16], key[300];
	int pl = snprintf(proto, sizeof(proto), "HTTP/%d.%d", q->version_major, q->version_minor);

	if (env == NULL ||
	    env_set(env, "REQUEST_METHOD", q->method, q->method_len) == -1 ||
	    env_set(env, "RAW_URI", q->target, q->target_len) == -1 ||
	    env_set(env, "PATH_INFO", q->path, q->path_len) == -1 ||
	    env_set(env, "QUERY_STRING", q->query ? q->query : "", q->query_len) == -1 ||
	    env_set(env, "SERVER_PROTOCOL", proto, (size_t)pl) == -1 ||
	    env_set(env, "REMOTE_ADDR", host, strlen(host)) == -1)
		goto fail;
	for (size_t i = 0; i < q->nheaders; i++) {
		const struct http_header *h = &q->headers[i];
		size_t n = 5;
		if (h->name_len > sizeof(key) - 6)
			continue;
		memcpy(key, "HTTP_", 5);
		for (size_t j = 0; j < h->name_len; j++) {
			char c = h->name[j];
			key[n++] = c == '-' ? '_' : (c >= 'a' && c <= 'z') ? (char)(c - 32) : c;
		}
		key[n] = '\0';
		if (env_set(env, key, h->value, h->value_len) == -1)
			goto fail;
	}
	return env;
fail:
	Py_XDECREF(env);
	return NULL;
}

void
asgi_hook_pre_request(Proto *p)
{
	const struct http_request *q = &p->c.req;
	PyObject *req, *env;

	Py_CLEAR(p->hook_req);
	if (!want_hooks()) {
		/* gunicorn's default pre_request logs "METHOD path" at debug */
		if (log_get_level() <= LOG_DEBUG)
			log_debug("%.*s %.*s", (int)q->method_len, q->method, (int)q->path_len,
			    q->path);
		return;
	}
	const char *host = client_host(p);
	req = hook_request_object(q, "http", host);
	env = req != NULL ? hook_environ(q, host) : NULL;
	if (req == NULL || env == NULL || (p->hook_req = PyTuple_Pack(2, req, env)) == NULL) {
		python_log_exception(LOG_ERROR, LOG_DEBUG, "request object for hooks");
		Py_XDECREF(req);
		Py_XDECREF(env);
		return;
	}
	Py_DECREF(env);
	python_hook(asgi.cfg, HOOK_PRE_REQUEST, 2, wsgi_worker_object(), req);
	Py_DECREF(req);
}

/* The app's headers as sent ("Name: value\r\n"...) as (name, value) str
 * pairs. */
static PyObject *
resp_headers(const Proto *p)
{
	PyObject *list = PyList_New(0);
	const char *s = p->rhead, *end = p->rhead + p->rhead_len;

	while (list != NULL && s != NULL && s < end) {
		const char *colon = memchr(s, ':', (size_t)(end - s));
		const char *eol = memchr(s, '\r', (size_t)(end - s));
		if (colon == NULL || eol == NULL || colon > eol)
			break;
		PyObject *t = Py_BuildValue("(NN)", PyUnicode_DecodeLatin1(s, colon - s, NULL),
		    PyUnicode_DecodeLatin1(colon + 2, eol - colon - 2, NULL));
		if (t == NULL || PyList_Append(list, t) == -1)
			Py_CLEAR(list);
		Py_XDECREF(t);
		s = eol + 2;
	}
	return list;
}

void
asgi_hook_post_request(Proto *p, int status)
{
	PyObject *pair = p->hook_req, *resp;

	if (pair == NULL)
		return;
	p->hook_req = NULL;		/* once per request */
	if (asgi.cfg->hooks[HOOK_POST_REQUEST] != NULL) {
		resp = hook_namespace(Py_BuildValue("{s:i,s:i,s:N,s:K}", "status", status,
		    "status_code", status, "headers", resp_headers(p),
		    "sent", (unsigned long long)p->resp_sent));
		if (resp == NULL) {
			python_log_exception(LOG_ERROR, LOG_DEBUG, "response object for hooks");
			resp = Py_NewRef(Py_None);
		}
		python_hook(asgi.cfg, HOOK_POST_REQUEST, 4, wsgi_worker_object(),
		    PyTuple_GET_ITEM(pair, 0), PyTuple_GET_ITEM(pair, 1), resp);
		Py_DECREF(resp);
	}
	Py_DECREF(pair);
}

static PyObject *cancelled_error;	/* asyncio.CancelledError */

/* The client went away: the app's task gets the grace period, then is
 * cancelled (gunicorn's asgi_disconnect_grace_period).  Called at the
 * client's EOF and again when the connection is lost: a second timer
 * never fires later than the first. */
void
asgi_disconnect_grace(Proto *p)
{
	PyObject *task = p->task, *done, *cancel, *r = NULL;
	int grace = asgi.cfg->asgi_disconnect_grace_period;

	if (task == NULL)
		return;
	if (cancelled_error == NULL) {
		PyObject *m = PyImport_ImportModule("asyncio");
		if (m != NULL)
			cancelled_error = PyObject_GetAttrString(m, "CancelledError");
		Py_XDECREF(m);
		PyErr_Clear();
	}
	if ((done = PyObject_CallMethodNoArgs(task, asgi.s_done)) == NULL || done == Py_True) {
		Py_XDECREF(done);
		PyErr_Clear();
		return;
	}
	Py_DECREF(done);
	if ((cancel = PyObject_GetAttrString(task, "cancel")) == NULL) {
		PyErr_Clear();
		return;
	}
	if (grace <= 0)
		r = PyObject_CallNoArgs(cancel);
	else {
		PyObject *loop = PyObject_CallMethod(task, "get_loop", NULL);
		if (loop != NULL)
			r = PyObject_CallMethod(loop, "call_later", "iO", grace, cancel);
		Py_XDECREF(loop);
	}
	if (r == NULL)
		python_log_exception(LOG_ERROR, LOG_DEBUG, "asgi_disconnect_grace_period");
	Py_XDECREF(r);
	Py_DECREF(cancel);
}

/* In the app's done callback, with its exception set: 1 when it is the
 * cancellation of a task whose client went away (logged at debug, as
 * gunicorn's "Request cancelled (client disconnected)"). */
int
asgi_cancelled_after_disconnect(Proto *p)
{
	if (!(p->lost || p->client_eof) || cancelled_error == NULL ||
	    !PyErr_ExceptionMatches(cancelled_error))
		return 0;
	log_debug("Request cancelled (client disconnected)");
	return 1;
}
