/*
 * wsgi.c — PEP 3333 glue for the HTTP workers (contract: wsgi.h): one
 * request from start to end (wsgi_handle), setup, the objects passed to
 * the request hooks, the Python-level signal handlers of the sync worker.
 * Its parts are the environ (wsgi_environ.c), the body and wsgi.input
 * (wsgi_input.c), the response (wsgi_response.c), the access log
 * (access_log.c) and statsd's request metrics (statsd.c), sent where the
 * access log line is made; what they share is in wsgi_int.h.
 *
 * Owns: the app, the worker hook object, making request slots (struct
 * wsgi_req; the worker keeps them) and the request generations (the
 * Python objects handed to the app carry their slot and generation and
 * go stale when their request ends, so an app that keeps one cannot
 * touch the next request; objects nobody kept are reused: no churn on
 * the hot path), and the choice of what a failed request gets: a 400 for
 * the client's fault, a 500 page without traceback before the head, a
 * cut connection after it.
 *
 * Never: sends a traceback to a client, keeps a connection whose request
 * bytes were not all read (but for a bounded drain), or calls back into
 * the worker (the worker calls wsgi_handle; the loop takes over only
 * through c->relay and the bytes left in c->out).
 *
 * Deliberate differences from gunicorn: when the app returns a
 * list/tuple of bytes (or a file_wrapper) without Content-Length, we send
 * Content-Length instead of chunked framing (the length is known; one
 * writev); HEAD sends no body.
 */
#include "wsgi_int.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "access_log.h"
#include "hook_objects.h"
#include "python.h"
#include "pythreads.h"
#include "settings.h"
#include "statsd.h"

static struct settings *cfg;
static PyObject *app;			/* the WSGI callable */
static PyObject *worker_obj;		/* hook argument, see wsgi_worker_object() */
static int worker_age;
static PyObject *signal_mod;		/* _signal */
static void (*urgent_signals)(void);

/* Request generations (struct wsgi_req), unique across slots: handed
 * out under the GIL. */
static uint64_t gen_counter;

/* ---- hook objects (built only when a request hook is set) ---- */

static PyObject *
resp_headers_list(const struct response *r)
{
	PyObject *list = PyList_New(0);
	const char *p = r->headers.chars, *end = r->headers.chars + r->headers.len;

	if (list == NULL)
		return NULL;
	while (p < end) {
		const char *colon = memchr(p, ':', (size_t)(end - p));
		const char *eol = memchr(p, '\r', (size_t)(end - p));
		if (colon == NULL || eol == NULL)
			break;
		PyObject *t = Py_BuildValue("(NN)",
		    PyUnicode_DecodeLatin1(p, colon - p, NULL),
		    PyUnicode_DecodeLatin1(colon + 2, eol - colon - 2, NULL));
		if (t == NULL || PyList_Append(list, t) == -1) {
			Py_XDECREF(t);
			Py_DECREF(list);
			return NULL;
		}
		Py_DECREF(t);
		p = eol + 2;
	}
	return list;
}

static PyObject *
make_resp_object(const struct response *r)
{
	PyObject *status = r->status_set ?
	    PyUnicode_DecodeLatin1(r->status.chars, (Py_ssize_t)r->status.len, NULL) :
	    Py_NewRef(Py_None);
	PyObject *kw = Py_BuildValue("{s:N,s:N,s:N,s:K,s:N,s:O,s:O}",
	    "status", status,
	    "status_code", r->status_set ? PyLong_FromLong(r->status_code) : Py_NewRef(Py_None),
	    "headers", resp_headers_list(r),
	    "sent", (unsigned long long)r->sent,
	    "response_length", r->content_length >= 0 ?
	        PyLong_FromLongLong(r->content_length) : Py_NewRef(Py_None),
	    "chunked", r->chunked ? Py_True : Py_False,
	    "headers_sent", r->headers_sent ? Py_True : Py_False);
	return hook_namespace(kw);
}

/* ---- running the app ---- */

static uint64_t
realtime_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Whether a request's end is observed: an access log line, statsd's
 * request metrics. */
static int
request_observed(void)
{
	return log_access_enabled() || statsd_enabled();
}

static void *io_unlock(void);
static void io_relock(void *ts);

/* The request's access log line and statsd metrics (gunicorn's
 * log.access(), which its statsd logger extends). */
static void
log_request(struct http_conn *c, PyObject *env, const struct response *r,
    int status_code, uint64_t elapsed_us)
{
	struct access_log_response lr = {
		.status = status_code,
		.sent = r->sent,
		.headers = r->headers.chars,
		.headers_len = r->headers.len,
	};

	/* formatted with the GIL; a wait for a slow log (a pipe, syslog)
	 * without it, so that the other threads go on meanwhile */
	if (log_access_enabled()) {
		log_wait_scope_begin(io_unlock, io_relock);
		access_log_line(&c->req, env, &lr, elapsed_us);
		log_wait_scope_end();
	}
	statsd_request(status_code, elapsed_us);
}

/* result.close(), if any.  0, or -1 with an exception set. */
static int
close_result(PyObject *result)
{
	PyObject *meth, *r;

	if (PyList_CheckExact(result) || PyTuple_CheckExact(result) || PyBytes_CheckExact(result))
		return 0;
	meth = PyObject_GetAttrString(result, "close");
	if (meth == NULL) {
		if (PyErr_ExceptionMatches(PyExc_AttributeError)) {
			PyErr_Clear();
			return 0;
		}
		return -1;
	}
	r = PyObject_CallNoArgs(meth);
	Py_DECREF(meth);
	if (r == NULL)
		return -1;
	Py_DECREF(r);
	return 0;
}

static void
log_app_error(struct http_conn *c, int with_uri)
{
	char ctx[600];

	if (with_uri)
		snprintf(ctx, sizeof(ctx), "Error handling request %.*s",
		    (int)(c->req.target_len > 512 ? 512 : c->req.target_len), c->req.target);
	else
		snprintf(ctx, sizeof(ctx), "Error handling request");
	python_log_exception(LOG_ERROR, LOG_ERROR, ctx);
}

struct wsgi_req *
wsgi_req_new(void)
{
	struct wsgi_req *q = xcalloc(1, sizeof(*q));

	q->sock_fd = -1;
	q->peer_port = -1;
	wsgi_response_register(q);
	return q;
}

int
wsgi_handle(struct wsgi_req *q, struct http_conn *c)
{
	struct response *r;
	struct body *b;
	PyObject *env = NULL, *result = NULL, *reqobj = NULL, *sr;
	const char *bad_request;
	PyObject *args[2];
	int rc = 0, failed = 0, status_code = 0;
	int want_hooks = cfg->hooks[HOOK_PRE_REQUEST] != NULL ||
	    cfg->hooks[HOOK_POST_REQUEST] != NULL;
	uint64_t start;

	if (want_hooks) {
		if ((reqobj = hook_request_object(&c->req, "http", wsgi_peer_text(q, c))) == NULL) {
			python_log_exception(LOG_ERROR, LOG_DEBUG, "request object for hooks");
			reqobj = Py_NewRef(Py_None);
		}
		python_hook(cfg, HOOK_PRE_REQUEST, 2, wsgi_worker_object(), reqobj);
	}
	/* gunicorn's default pre_request hook logs "METHOD path" at debug */
	if (cfg->hooks[HOOK_PRE_REQUEST] == NULL && log_get_level() <= LOG_DEBUG)
		log_debug("%.*s %.*s", (int)c->req.method_len, c->req.method,
		    (int)c->req.path_len, c->req.path);
	start = realtime_us();
	q->gen = ++gen_counter;
	q->thread = PyThreadState_Get();
	r = wsgi_resp_begin(q, c);
	b = wsgi_body_begin(q, c);

	if ((env = wsgi_build_environ(q, c, &bad_request)) == NULL) {
		if (bad_request != NULL) {
			PyErr_Clear();
			log_warnx("Invalid request from ip=%s: %s", wsgi_peer_text(q, c), bad_request);
			http_write_error(c->fd, 400, "Bad Request", bad_request);
			r->keepalive = 0;
			c->body_unread = wsgi_body_unread(b);
			goto done;
		}
		failed = 1;
		goto error;
	}
	if ((sr = wsgi_start_response_object(q)) == NULL) {
		failed = 1;
		goto error;
	}
	args[0] = env;
	args[1] = sr;
	result = PyObject_Vectorcall(app, args, 2, NULL);
	if (result == NULL || wsgi_send_result(r, result) == -1 || wsgi_resp_finish(r) == -1)
		failed = 1;
	else {
		/* fewer bytes than its Content-Length: the client would wait */
		if (r->content_length >= 0 && r->sent < (uint64_t)r->content_length &&
		    !r->head_only)
			r->keepalive = 0;
		status_code = r->status_code;
		if (request_observed())
			log_request(c, env, r, status_code, realtime_us() - start);
	}
	if (result != NULL) {
		if (failed) {
			/* keep the first exception; close() still runs */
			PyObject *t, *v, *tb;
			PyErr_Fetch(&t, &v, &tb);
			if (close_result(result) == -1)
				PyErr_Clear();
			PyErr_Restore(t, v, tb);
		} else if (close_result(result) == -1) {
			failed = 1;
		}
	}
error:
	if (failed) {
		r->keepalive = 0;	/* every error page says Connection: close */
		if (r->failed || (b->io_error && !r->headers_sent)) {
			if (PyErr_Occurred() && log_get_level() <= LOG_DEBUG)
				python_log_exception(LOG_DEBUG, LOG_DEBUG,
				    b->io_error ? "Ignored premature client disconnection" :
				    "Ignoring socket error");
			PyErr_Clear();
			rc = -1;
		} else if (b->err_status && !r->headers_sent) {
			/* malformed chunked body: the client's fault, not the app's */
			PyErr_Clear();
			log_warnx("Invalid request from ip=%s: %s", wsgi_peer_text(q, c), b->err_reason);
			http_write_error(c->fd, b->err_status,
			    http_reason_phrase(b->err_status), b->err_reason);
			r->status_code = b->err_status;
			if (request_observed())
				log_request(c, env, r, r->status_code, realtime_us() - start);
		} else if (!r->headers_sent) {
			log_app_error(c, 1);
			PyErr_Clear();
			http_write_error(c->fd, 500, "Internal Server Error", "");
			r->status_set = 1;
			r->status_code = 500;
			r->status.len = 0;
			buf_appends(&r->status, "500 Internal Server Error");
			r->headers.len = 0;
			r->sent = 0;
			if (request_observed())
				log_request(c, env, r, 500, realtime_us() - start);
		} else {
			log_app_error(c, 0);
			PyErr_Clear();
			shutdown(c->fd, SHUT_RDWR);
			rc = -1;
		}
	}
	c->body_unread = wsgi_body_unread(b);
done:
	if (cfg->hooks[HOOK_POST_REQUEST] != NULL) {
		PyObject *respobj = make_resp_object(r);
		if (respobj == NULL) {
			python_log_exception(LOG_ERROR, LOG_DEBUG, "response object for hooks");
			respobj = Py_NewRef(Py_None);
		}
		if (python_hook(cfg, HOOK_POST_REQUEST, 4, wsgi_worker_object(), reqobj,
		    env ? env : Py_None, respobj) == -1)
			log_debug("Exception in post_request hook");
		Py_DECREF(respobj);
	}
	/* Keep the connection only when the request's bytes end exactly where
	 * the next request's begin: the unread body is read and dropped (up
	 * to a bound; what is not here yet, the worker's loop drops:
	 * c->drain), a client still waiting for 100-continue is closed.
	 * The body's reads went into c->buf: its length is the body's. */
	http_drain_length(&c->drain, 0);
	if (r->keepalive && rc == 0 && !b->continue_pending &&
	    wsgi_body_drain(b, &c->drain) >= 0) {
		c->keepalive = 1;
		c->next = b->pos;
		c->len = b->len;
	} else
		c->keepalive = 0;	/* c->drain stays inactive: only a
					   kept connection gets a rest */
	q->gen = 0;	/* every object of this request is now stale */
	Py_XDECREF(result);
	Py_XDECREF(env);
	Py_XDECREF(reqobj);
	wsgi_client_socket_release(q);
	r->in_flight = 0;
	return rc;
}

/* ---- Python-level signal handlers: let INT/QUIT/ABRT interrupt the app ---- */


static PyObject *
py_signal_handler(PyObject *self, PyObject *args)
{
	if (urgent_signals != NULL)
		urgent_signals();
	Py_RETURN_NONE;
}

static PyMethodDef signal_handler_def = {
	"_cunicorn_worker_signal", py_signal_handler, METH_VARARGS, NULL
};

static int
install_python_signal_handlers(void)
{
	static const int sigs[] = { SIGINT, SIGQUIT, SIGABRT };
	PyObject *mod = signal_mod, *fn;

	Py_INCREF(mod);
	if ((fn = PyCFunction_New(&signal_handler_def, NULL)) == NULL) {
		Py_DECREF(mod);
		return -1;
	}
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
		PyObject *r = PyObject_CallMethod(mod, "signal", "iO", sigs[i], fn);
		if (r == NULL) {
			Py_DECREF(fn);
			Py_DECREF(mod);
			return -1;
		}
		Py_DECREF(r);
	}
	Py_DECREF(fn);
	Py_DECREF(mod);
	return 0;
}

void
wsgi_signal_trip(int sig)
{
	PyErr_SetInterruptEx(sig);
}

/* ---- setup ---- */

/*
 * Everything that does not depend on the worker: made once in the master
 * before forking (master.c calls this before gc.freeze()), so that all
 * workers share it.  Made in each worker, the type slots, the interned
 * keys and the first import through importlib's Python code (even of a
 * built-in module) would write into ~0.5 MB of the master's pages.
 */
int
wsgi_prepare(void)
{
	static int done;

	if (done)
		return 0;
	if (wsgi_environ_prepare() == -1 || wsgi_input_prepare() == -1 ||
	    wsgi_response_prepare() == -1)
		return -1;
	access_log_prepare();

	if (hook_objects_prepare() == -1)
		return -1;
	/* _signal (built in), not signal: signal.py imports enum, ~1.7 MB
	 * more in every worker when the app does not import it anyway */
	if ((signal_mod = PyImport_ImportModule("_signal")) == NULL)
		return -1;
	done = 1;
	return 0;
}

/* Made on first use (or in wsgi_init when a worker hook is set): a
 * worker without such hooks never runs the Python code that builds it,
 * which would write into ~0.25 MB of the master's pages. */
void *
wsgi_worker_object(void)
{
	if (worker_obj == NULL && cfg != NULL &&
	    (worker_obj = python_worker_object(cfg, getpid(), worker_age)) == NULL) {
		PyErr_Clear();
		worker_obj = Py_NewRef(Py_None);
	}
	return worker_obj;
}

void
wsgi_flush_stdio(void)
{
	static const char *const names[] = { "stdout", "stderr" };

	if (!Py_IsInitialized())
		return;
	for (int i = 0; i < 2; i++) {
		PyObject *f = PySys_GetObject(names[i]), *r;	/* borrowed */
		if (f == NULL || f == Py_None)
			continue;
		if ((r = PyObject_CallMethod(f, "flush", NULL)) == NULL)
			PyErr_Clear();
		Py_XDECREF(r);
	}
}

/* Around every socket wait: let other threads run Python meanwhile. */
static void *
io_unlock(void)
{
	if (!PyGILState_Check())
		return NULL;
	pythreads_blocking(1);	/* the requests queued behind this one */
	return (void *)PyEval_SaveThread();
}

static void
io_relock(void *ts)
{
	if (ts != NULL) {
		PyEval_RestoreThread((PyThreadState *)ts);
		pythreads_blocking(0);
	}
}

int
wsgi_init(const struct wsgi_setup *setup, void *app_obj)
{
	struct http_io_hooks hooks;
	int io_timeout_ms;

	cfg = setup->cfg;
	app = app_obj;
	urgent_signals = setup->urgent_signals;
	{
		struct http_conn_limits lim;
		http_conn_limits_init(&lim, setup->cfg);
		wsgi_input_init(lim.head_timeout_ms);
		http_conn_limits_free(&lim);
	}
	wsgi_response_init(setup);
	/* a client that stalls this long is dropped, before the master's
	 * timeout would kill the whole worker */
	io_timeout_ms = cfg->timeout > 0 ? cfg->timeout * 750 : -1;
	if (io_timeout_ms >= 0 && io_timeout_ms < 1000)
		io_timeout_ms = 1000;
	hooks = (struct http_io_hooks){
		.timeout_ms = io_timeout_ms,
		.on_eintr = setup->urgent_signals,
		.unlock = io_unlock,
		.relock = io_relock,
	};
	http_io_configure(&hooks);
	if (wsgi_prepare() == -1)
		goto pyfail;

	if (wsgi_environ_init(setup) == -1)
		goto pyfail;

	/* Only a worker whose main thread runs the app (sync) lets INT, QUIT
	 * and ABRT interrupt it through Python's handlers. */
	if (setup->urgent_signals != NULL && install_python_signal_handlers() == -1)
		goto pyfail;

	access_log_init(cfg->access_log_format);

	worker_age = setup->age;
	if (cfg->hooks[HOOK_POST_WORKER_INIT] != NULL || cfg->hooks[HOOK_WORKER_INT] != NULL ||
	    cfg->hooks[HOOK_WORKER_ABORT] != NULL || cfg->hooks[HOOK_PRE_REQUEST] != NULL ||
	    cfg->hooks[HOOK_POST_REQUEST] != NULL || cfg->hooks[HOOK_WORKER_EXIT] != NULL)
		(void)wsgi_worker_object();	/* its `started` is the boot time */
	return 0;
pyfail:
	python_log_exception(LOG_ERROR, LOG_ERROR, "cannot set up the WSGI worker");
	return -1;
}
