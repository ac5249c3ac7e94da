/*
 * asgi_state.c — what every file of _cunicorn_asgi leans on (asgi_int.h
 * names the files): the worker's shared state `asgi`, gunicorn's error
 * pages, and Ready, an awaitable
 * that is already done (send() and a receive() answered from the buffer
 * return one: no future, no loop iteration).
 *
 * Owns: the definition of `asgi` (its fields are written where
 * asgi_int.h says) and the Ready type.
 *
 * Never: calls into the other asgi files, or writes to a socket itself
 * (a page goes through the connection's transport).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>
#include <time.h>

#include "asgi_int.h"
#include "http_parser.h"
#include "log.h"

struct asgi_state asgi;

/* gunicorn's error page as bytes. */
PyObject *
asgi_error_page(int status, const char *mesg)
{
	const char *reason = http_reason_phrase(status);
	char esc[1024], body[2048];
	size_t e = 0;
	int blen;

	for (const char *s = mesg; *s && e + 7 < sizeof(esc); s++) {
		const char *r = *s == '<' ? "&lt;" : *s == '>' ? "&gt;" : *s == '&' ? "&amp;" :
		    *s == '"' ? "&quot;" : *s == '\'' ? "&#x27;" : NULL;
		if (r != NULL) {
			memcpy(esc + e, r, strlen(r));
			e += strlen(r);
		} else
			esc[e++] = *s;
	}
	esc[e] = '\0';
	blen = snprintf(body, sizeof(body), "<html>\n  <head>\n    <title>%s</title>\n"
	    "  </head>\n  <body>\n    <h1><p>%s</p></h1>\n    %s\n  </body>\n</html>\n",
	    reason, reason, esc);
	if (blen < 0 || (size_t)blen >= sizeof(body))
		blen = (int)strlen(body);
	return PyBytes_FromFormat("HTTP/1.1 %d %s\r\nConnection: close\r\n"
	    "Content-Type: text/html\r\nContent-Length: %d\r\n\r\n%s",
	    status, reason, blen, body);
}

uint64_t
asgi_realtime_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void
asgi_refuse(Proto *p, int status, const char *why)
{
	PyObject *page = asgi_error_page(status, why);

	log_debug("Invalid request: %s", why);
	/* a pathsend's file under way owns the socket: no page after it */
	if (page == NULL || (p->file_fd < 0 && transport_write(p, page) == -1))
		PyErr_Clear();
	Py_XDECREF(page);
	p->c.len = 0;
	proto_close(p);
}

/* ---- Ready ---- */

static PyObject *
ready_await(Ready *r)
{
	return Py_NewRef(r);
}

static PyObject *
ready_next(Ready *r)
{
	if (r->value == Py_None) {
		PyErr_SetNone(PyExc_StopIteration);
		return NULL;
	}
	PyObject *e = PyObject_CallOneArg(PyExc_StopIteration, r->value);
	if (e != NULL) {
		PyErr_SetObject(PyExc_StopIteration, e);
		Py_DECREF(e);
	}
	return NULL;
}

static PyObject *
ready_send(Ready *r, PyObject *arg)
{
	return ready_next(r);
}

/* `await` (the interpreter's SEND, an asyncio Task's step) ends here:
 * the value is returned as such, with no StopIteration to raise and
 * catch (ready_next remains for iteration by hand and `yield from`). */
static PySendResult
ready_am_send(Ready *r, PyObject *arg, PyObject **result)
{
	*result = Py_NewRef(r->value);
	return PYGEN_RETURN;
}

static void
ready_dealloc(Ready *r)
{
	Py_DECREF(r->value);
	PyObject_Free(r);
}

static PyMethodDef ready_methods[] = {
	{ "send", (PyCFunction)ready_send, METH_O, NULL },
	{ NULL, NULL, 0, NULL },
};

static PyAsyncMethods ready_async = {
	.am_await = (unaryfunc)ready_await,
	.am_send = (sendfunc)ready_am_send,
};

PyTypeObject asgi_ready_type = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "_cunicorn_asgi.Ready",
	.tp_basicsize = sizeof(Ready),
	.tp_dealloc = (destructor)ready_dealloc,
	.tp_as_async = &ready_async,
	.tp_iter = PyObject_SelfIter,
	.tp_iternext = (iternextfunc)ready_next,
	.tp_methods = ready_methods,
	.tp_flags = Py_TPFLAGS_DEFAULT,
};
