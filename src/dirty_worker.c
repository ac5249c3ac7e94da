/*
 * dirty_worker.c — the dirty worker process: loads the dirty apps (Python
 * classes named "module:Class") and serves the calls its dirty arbiter
 * sends over one socketpair.
 *
 * Owns: the worker's socketpair end, its apps, its heartbeat slot, its
 * pool of calling threads.  It never forks, never touches another
 * process's state and never calls the arbiter's code; the only Python it
 * runs is the apps', the dirty hooks and DirtyApp's dispatch.
 *
 * Threads:
 *   main      reads frames.  dirty_threads == 1: it also decodes, calls
 *             and writes the reply itself (no thread hop); it holds the GIL
 *             except while blocked in poll/read/write.  dirty_threads > 1:
 *             it only queues the raw frames and never holds the GIL.
 *   callers   (dirty_threads > 1 only) the pool of Python threads the
 *             gthread worker uses too (pythreads.h): each takes a queued
 *             frame, calls the app with the GIL and writes the reply
 *             under the write lock (one writer at a time, never awaited
 *             holding the GIL).
 *   watch     a pthread that never touches Python: it acts on signals
 *             (their handlers only set flags) and writes the heartbeat
 *             every 250 ms — also while a call runs — as long as no call
 *             has been running for longer than dirty_timeout and the main
 *             loop has come round in the last LOOP_STALL_MS.  A stuck
 *             worker so stops beating and the arbiter replaces it.
 *
 * Signals (flag-only handlers; the watch thread acts on the flags):
 * TERM and HUP: finish the calls already received, then exit cleanly
 * (apps' close(), dirty_worker_exit hook).  INT and QUIT: exit at once
 * (from the watch thread, _exit), even in the middle of a call.  USR1:
 * reopen the log files.
 * The arbiter's death (EOF on the socketpair, PR_SET_PDEATHSIG, getppid()
 * changing) ends the worker too.
 *
 * An app that fails to import, instantiate or init() is logged (one line,
 * traceback at debug level) and the worker stays up, answering calls to
 * it with DirtyAppError "Dirty app X failed to load: ...": a worker that
 * exited instead would be respawned by the arbiter into the same failure,
 * a crash loop.  Other apps of the worker keep working.
 *
 * Log lines: "Initialized dirty app: PATH" (info), "Failed to load dirty
 * app PATH: ..." (error), "Error executing PATH.ACTION: ..." (error; the
 * traceback at debug), "Dirty worker PID exiting" (info) — as gunicorn.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include "dirty.h"
#include "dirty_pyext.h"
#include "dirty_wire.h"
#include "log.h"
#include "python.h"
#include "pythreads.h"
#include "settings.h"
#include "util.h"

#define WATCH_PERIOD_MS		250
#define LOOP_POLL_MS		1000
#define LOOP_STALL_MS		10000	/* main loop silent that long: unhealthy */
#define READ_CHUNK		65536
#define MAX_THREADS		256
#define ARGS_ON_STACK		16
#define BUF_KEEP		(4u * 1024 * 1024)	/* larger buffers are freed */

struct dirty_app {
	char *path;		/* "module:Class", as the requests name it */
	size_t pathlen;
	PyObject *obj;		/* the instance, or NULL when it failed to load */
	int fast_dispatch;	/* type(obj).__call__ is DirtyApp.__call__ */
	char *load_error;	/* why it failed to load, or NULL */
};

/* One calling context: the main thread (single mode) or a pool thread. */
struct caller {
	int slot;		/* index into busy_since[] */
	PyObject *aloop;	/* this thread's asyncio loop, lazily created */
	struct dirty_buf out;	/* reply being encoded */
};

/* A frame received and not yet served (threaded mode); freed once served. */
struct job {
	struct pythreads_job link;	/* first: a job is its link */
	uint64_t id;
	uint8_t type;
	uint32_t len;
	uint8_t payload[];
};

static struct {
	struct dirty_worker_ctx *ctx;
	struct settings *cfg;
	int fd;
	int wakefd;			/* eventfd: watch thread -> main loop */
	int nthreads;			/* dirty_threads */
	uint64_t timeout_ms;		/* dirty_timeout, 0 = none */
	int sigfd;			/* eventfd: signal handler -> watch thread */

	struct dirty_app *apps;
	size_t napps;

	PyObject *arbiter_obj;		/* hook arguments */
	PyObject *worker_obj;
	PyObject *dirtyapp_call;	/* DirtyApp.__call__, or NULL */
	PyObject *format_exception;	/* traceback.format_exception */
	PyObject *asyncio_new_loop;	/* asyncio.new_event_loop */

	atomic_int stopping;		/* TERM / HUP seen */
	atomic_int reopen;		/* USR1 seen */
	atomic_int channel_broken;	/* a write to the arbiter failed */
	_Atomic uint64_t loop_tick;	/* main loop came round (ms) */
	_Atomic uint64_t busy_since[MAX_THREADS + 1];	/* 0 = idle */

	struct dirty_reader in;		/* frames read from the arbiter */

	struct caller *callers;		/* [0] main; [1..n] pool thread n-1 */

	struct pythreads *pool;		/* threaded mode: the callers */
	pthread_mutex_t wlock;		/* one writer on fd at a time */
} W;

static void worker_exit(int status) __attribute__((noreturn));

/* ---- the watch thread: signals and heartbeat (never touches Python) ---- */

static void
wake_main(void)
{
	uint64_t one = 1;
	ssize_t r = write(W.wakefd, &one, sizeof(one));
	(void)r;
}

static uint64_t
elapsed_ms(uint64_t now, uint64_t then)
{
	return now > then ? now - then : 0;	/* `then` may be a hair newer */
}

static int
healthy(uint64_t now)
{
	for (int i = 0; i <= W.nthreads && i <= MAX_THREADS; i++) {
		uint64_t since = atomic_load(&W.busy_since[i]);
		if (since != 0 && W.timeout_ms != 0 &&
		    elapsed_ms(now, since) > W.timeout_ms)
			return 0;
	}
	/* Slot 0 is the main thread's: busy loading the apps, or serving a
	 * call in single mode.  While it is, that slot speaks for it. */
	if (atomic_load(&W.busy_since[0]) != 0)
		return 1;
	return elapsed_ms(now, atomic_load(&W.loop_tick)) <= LOOP_STALL_MS;
}

/* Signal handler: only records the signal and wakes the watch thread. */
static volatile sig_atomic_t sig_quick, sig_stop, sig_reopen;

static void
on_signal(int sig)
{
	int saved = errno;
	uint64_t one = 1;
	ssize_t r;

	if (sig == SIGINT || sig == SIGQUIT)
		sig_quick = 1;
	else if (sig == SIGTERM || sig == SIGHUP)
		sig_stop = 1;
	else if (sig == SIGUSR1)
		sig_reopen = 1;
	r = write(W.sigfd, &one, sizeof(one));
	(void)r;
	errno = saved;
}

static void *
watch_thread(void *arg)
{
	struct pollfd pfd = { .fd = W.sigfd, .events = POLLIN };
	uint64_t v;

	(void)arg;
	for (;;) {
		if (poll(&pfd, 1, WATCH_PERIOD_MS) == 1 &&
		    read(W.sigfd, &v, sizeof(v)) == -1 && errno != EAGAIN)
			log_warn("dirty worker: signal eventfd");
		if (sig_quick) {
			log_info("Dirty worker %d exiting (quick)", (int)getpid());
			_exit(0);
		}
		if (sig_stop) {
			sig_stop = 0;
			atomic_store(&W.stopping, 1);
			wake_main();
		}
		if (sig_reopen) {
			sig_reopen = 0;
			atomic_store(&W.reopen, 1);
			wake_main();
		}
		uint64_t now = monotonic_ms();
		if (W.ctx->heartbeat != NULL && healthy(now))
			*W.ctx->heartbeat = now;
		if (getppid() != W.ctx->arbiter_pid) {
			log_info("Dirty worker %d: arbiter gone, exiting",
			    (int)getpid());
			_exit(0);
		}
	}
	return NULL;
}

/* ---- cancelled calls (dirty.h: the ring the arbiter writes) ---- */

/* Whether the arbiter cancelled call `id` (its caller went away). */
static int
call_cancelled(uint64_t id)
{
	volatile uint64_t *ring = W.ctx->cancel;

	if (ring == NULL)
		return 0;
	for (int i = 0; i < DIRTY_CANCEL_SLOTS; i++)
		if (__atomic_load_n(&ring[i], __ATOMIC_ACQUIRE) == id)
			return 1;
	return 0;
}

/* ---- writing frames ---- */

/* Send all of b.  The GIL is NOT held here.  0, or -1 (arbiter gone). */
static int
send_all(const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(W.fd, p, n, MSG_NOSIGNAL);
		if (w == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				struct pollfd pfd = { .fd = W.fd, .events = POLLOUT };
				poll(&pfd, 1, -1);
				continue;
			}
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Write the caller's out buffer and reset it.  Called with the GIL held;
 * releases it only if the write would block (single mode) or always
 * (threaded mode: the write lock must never be awaited holding the GIL).
 * Returns 0, or -1 when the arbiter's end is gone (the main loop's read
 * sees the EOF and ends the worker; a stream in progress stops). */
static int
flush_out(struct caller *c)
{
	struct dirty_buf *b = &c->out;
	int rc = 0, err = 0;

	if (b->len == 0)
		return 0;
	if (atomic_load(&W.channel_broken)) {
		dirty_buf_reset(b);
		return -1;
	}
	if (W.nthreads == 1) {
		ssize_t w = send(W.fd, b->data, b->len, MSG_NOSIGNAL | MSG_DONTWAIT);
		size_t done = w > 0 ? (size_t)w : 0;
		if (w == (ssize_t)b->len)
			rc = 0;
		else if (w == -1 && errno != EAGAIN && errno != EINTR) {
			rc = -1;
			err = errno;
		} else {
			Py_BEGIN_ALLOW_THREADS
			rc = send_all(b->data + done, b->len - done);
			err = errno;
			Py_END_ALLOW_THREADS
		}
	} else {
		Py_BEGIN_ALLOW_THREADS
		pthread_mutex_lock(&W.wlock);
		rc = send_all(b->data, b->len);
		err = errno;
		pthread_mutex_unlock(&W.wlock);
		Py_END_ALLOW_THREADS
	}
	dirty_buf_reset(b);
	if (b->cap > BUF_KEEP)
		dirty_buf_free(b);	/* one huge reply: do not keep its memory */
	if (rc == -1) {
		atomic_store(&W.channel_broken, 1);
		if (err != EPIPE && err != ECONNRESET) {
			errno = err;
			log_warn("dirty worker: write to arbiter");
		}
	}
	return rc;
}

/* ---- Python helpers (GIL held) ---- */

/* UTF-8 of str(obj), never NULL; *n its length.  The returned pointer
 * lives as long as *keep (a new reference the caller drops). */
static const char *
str_utf8(PyObject *obj, PyObject **keep, Py_ssize_t *n)
{
	const char *s;

	*keep = obj != NULL ? PyObject_Str(obj) : NULL;
	if (*keep != NULL && (s = PyUnicode_AsUTF8AndSize(*keep, n)) != NULL)
		return s;
	PyErr_Clear();
	Py_CLEAR(*keep);
	*n = 13;
	return "<unprintable>";
}

/* A function of a module, imported on first use (GIL held).  Borrowed
 * from *slot, which keeps it; NULL with the exception cleared. */
static PyObject *
lazy_function(PyObject **slot, const char *module, const char *name)
{
	PyObject *m;

	if (*slot == NULL && (m = PyImport_ImportModule(module)) != NULL) {
		*slot = PyObject_GetAttrString(m, name);
		Py_DECREF(m);
	}
	if (*slot == NULL)
		PyErr_Clear();
	return *slot;
}

/*
 * Turn the pending Python exception into an ERROR frame in c->out:
 * {"error": {"error_type", "message": str(exc), "details": {"traceback",
 * "exception_type", "app_path", "action"}}}.  Logs one line (error) and the
 * traceback (debug).  Clears the exception.
 */
static void
put_exception(struct caller *c, uint64_t id, const char *error_type,
    const char *app_path, size_t app_len, const char *action,
    size_t action_len, const char *prefix)
{
	PyObject *type, *value, *tb, *msgobj = NULL, *tbtext = NULL, *lines;
	const char *msg, *tbs = "", *tname;
	Py_ssize_t msglen, tblen = 0;
	char *full = NULL;

	PyErr_Fetch(&type, &value, &tb);
	PyErr_NormalizeException(&type, &value, &tb);
	if (tb != NULL && value != NULL)
		PyException_SetTraceback(value, tb);
	msg = str_utf8(value, &msgobj, &msglen);
	tname = type != NULL ? ((PyTypeObject *)type)->tp_name : "Exception";
	if (strrchr(tname, '.') != NULL)
		tname = strrchr(tname, '.') + 1;
	if (prefix != NULL) {
		full = xasprintf("%s%.*s", prefix, (int)msglen, msg);
		msg = full;
		msglen = (Py_ssize_t)strlen(full);
	}
	if (value != NULL && lazy_function(&W.format_exception, "traceback",
	    "format_exception") != NULL) {
		lines = PyObject_CallFunctionObjArgs(W.format_exception,
		    type, value, tb != NULL ? tb : Py_None, NULL);
		if (lines != NULL) {
			PyObject *empty = PyUnicode_FromString("");
			if (empty != NULL)
				tbtext = PyUnicode_Join(empty, lines);
			Py_XDECREF(empty);
			Py_DECREF(lines);
		}
		if (tbtext != NULL && (tbs = PyUnicode_AsUTF8AndSize(tbtext,
		    &tblen)) == NULL) {
			tbs = "";
			tblen = 0;
		}
		PyErr_Clear();
	}

	log_errorx("Error executing %.*s.%.*s: %.*s", (int)app_len, app_path,
	    (int)action_len, action, (int)msglen, msg);
	if (tblen > 0 && log_get_level() <= LOG_DEBUG)
		log_debug("%.*s", (int)tblen, tbs);

	struct dirty_error_details d = {
		.traceback = tbs, .traceback_len = (size_t)tblen,
		.exception_type = tname,
		.app_path = app_path, .app_path_len = app_len,
		.action = action, .action_len = action_len,
	};
	dirty_put_error_frame_details(&c->out, id, error_type, msg,
	    (size_t)msglen, &d);
	free(full);
	Py_XDECREF(tbtext);
	Py_XDECREF(msgobj);
	Py_XDECREF(type);
	Py_XDECREF(value);
	Py_XDECREF(tb);
}

/* An ERROR frame with a plain message and {"app_path", "action"} details. */
static void
put_error(struct caller *c, uint64_t id, const char *error_type,
    const char *app_path, size_t app_len, const char *action,
    size_t action_len, const char *message)
{
	struct dirty_error_details d = {
		.app_path = app_path, .app_path_len = app_len,
		.action = action, .action_len = action_len,
	};

	dirty_put_error_frame_details(&c->out, id, error_type, message,
	    strlen(message), app_path != NULL ? &d : NULL);
}

/* Encode a RESPONSE {"result": v} or CHUNK {"data": v}.  On a value that
 * cannot be encoded, an ERROR DirtyAppError instead.  Returns 0 / -1. */
static int
put_value(struct caller *c, uint64_t id, uint8_t type, PyObject *v,
    const char *app_path, size_t app_len, const char *action,
    size_t action_len)
{
	struct dirty_buf *b = &c->out;
	size_t off = dirty_frame_begin(b, type, id);

	dirty_put_dict(b, 1);
	dirty_put_cstring(b, type == DIRTY_MSG_RESPONSE ? "result" : "data");
	if (dirty_py_encode(b, v) == 0 && dirty_frame_end(b, off) == 0)
		return 0;
	b->len = off;
	if (!PyErr_Occurred())
		PyErr_SetString(PyExc_ValueError, "payload larger than 64 MiB");
	put_exception(c, id, DIRTY_E_APP, app_path, app_len, action,
	    action_len, type == DIRTY_MSG_RESPONSE ?
	    "result cannot be encoded: " : "chunk cannot be encoded: ");
	return -1;
}

static PyObject *
caller_loop(struct caller *c)
{
	if (c->aloop == NULL && lazy_function(&W.asyncio_new_loop, "asyncio",
	    "new_event_loop") != NULL)
		c->aloop = PyObject_CallNoArgs(W.asyncio_new_loop);
	if (c->aloop == NULL && !PyErr_Occurred())
		PyErr_SetString(PyExc_RuntimeError, "asyncio is not available");
	return c->aloop;
}

/* Run an awaitable to completion on this thread's loop (new reference). */
static PyObject *
run_awaitable(struct caller *c, PyObject *aw)
{
	PyObject *loop = caller_loop(c);

	if (loop == NULL)
		return NULL;
	return PyObject_CallMethod(loop, "run_until_complete", "O", aw);
}

/* ---- serving one request ---- */

static struct dirty_app *
find_app(const char *path, size_t len)
{
	for (size_t i = 0; i < W.napps; i++)
		if (W.apps[i].pathlen == len && memcmp(W.apps[i].path, path, len) == 0)
			return &W.apps[i];
	return NULL;
}

/* The method `action` of app, by DirtyApp.__call__'s rules: unknown,
 * private (leading underscore) or non-callable names are a ValueError
 * "Unknown action: NAME".  New reference. */
static PyObject *
app_method(struct dirty_app *a, PyObject *action)
{
	PyObject *m;

	if (PyUnicode_GET_LENGTH(action) > 0 &&
	    PyUnicode_READ_CHAR(action, 0) != '_' &&
	    (m = PyObject_GetAttr(a->obj, action)) != NULL) {
		if (PyCallable_Check(m))
			return m;
		Py_DECREF(m);
	}
	PyErr_Clear();
	PyErr_Format(PyExc_ValueError, "Unknown action: %U", action);
	return NULL;
}

/* Stream a generator / async generator result as CHUNK... END. */
static void
stream_result(struct caller *c, uint64_t id, PyObject *it, int async,
    const char *app_path, size_t app_len, const char *action,
    size_t action_len)
{
	PyObject *item, *anext;

	for (;;) {
		if (async) {
			if ((anext = PyObject_CallMethod(it, "__anext__", NULL)) == NULL)
				item = NULL;
			else {
				item = run_awaitable(c, anext);
				Py_DECREF(anext);
			}
			if (item == NULL &&
			    PyErr_ExceptionMatches(PyExc_StopAsyncIteration)) {
				PyErr_Clear();
				break;
			}
		} else
			item = PyIter_Next(it);
		if (item == NULL) {
			if (!PyErr_Occurred())
				break;
			put_exception(c, id, DIRTY_E_APP, app_path, app_len,
			    action, action_len, NULL);
			flush_out(c);
			return;
		}
		int rc = put_value(c, id, DIRTY_MSG_CHUNK, item, app_path,
		    app_len, action, action_len);
		Py_DECREF(item);
		if (flush_out(c) == -1)
			rc = -1;
		/* A stream making progress is healthy, however long it runs. */
		atomic_store(&W.busy_since[c->slot], monotonic_ms());
		if (rc == 0 && call_cancelled(id))
			rc = -1;	/* its caller went away */
		if (rc == -1) {
			/* The error already ended the stream for the client,
			 * or nobody is listening any more: stop the generator. */
			PyObject *r = PyObject_CallMethod(it,
			    async ? "aclose" : "close", NULL);
			if (r != NULL && async)
				Py_XSETREF(r, run_awaitable(c, r));
			Py_XDECREF(r);
			PyErr_Clear();
			return;
		}
	}
	size_t off = dirty_frame_begin(&c->out, DIRTY_MSG_END, id);
	if (dirty_frame_end(&c->out, off) == -1) {
		/* never with an empty payload; were it ever, an ERROR ends the
		 * stream rather than a frame whose length lies */
		c->out.len = off;
		dirty_put_error_frame(&c->out, id, DIRTY_E_WORKER,
		    "cannot encode the end of the stream");
	}
	flush_out(c);
}

/*
 * Serve one REQUEST frame: decode, call, encode, write.  GIL held.
 * The payload was validated only as far as the cursor goes: anything
 * malformed is answered with DirtyProtocolError.
 */
static void
serve_request(struct caller *c, uint64_t id, const uint8_t *payload,
    uint32_t len)
{
	struct dirty_cursor cur;
	const char *app_path = NULL, *action = NULL, *key;
	uint32_t app_len = 0, action_len = 0, n, klen;
	PyObject *stackv[ARGS_ON_STACK], **argv = stackv;
	PyObject *args = NULL, *kwargs = NULL, *actobj = NULL;
	PyObject *callee = NULL, *res = NULL;
	struct dirty_app *app;
	Py_ssize_t nargs = 0;

	dirty_cursor_init(&cur, payload, len);
	if (dirty_get_dict(&cur, &n) == -1)
		goto malformed;
	for (uint32_t i = 0; i < n; i++) {
		if (dirty_get_string(&cur, &key, &klen) == -1)
			goto malformed;
		if (klen == 8 && memcmp(key, "app_path", 8) == 0) {
			if (dirty_get_string(&cur, &app_path, &app_len) == -1)
				goto malformed;
		} else if (klen == 6 && memcmp(key, "action", 6) == 0) {
			if (dirty_get_string(&cur, &action, &action_len) == -1)
				goto malformed;
		} else if (klen == 4 && memcmp(key, "args", 4) == 0 && args == NULL) {
			if (dirty_peek_type(&cur) != DIRTY_TLV_LIST)
				goto malformed;
			if ((args = dirty_py_decode(&cur)) == NULL)
				goto decode_failed;
		} else if (klen == 6 && memcmp(key, "kwargs", 6) == 0 && kwargs == NULL) {
			if (dirty_peek_type(&cur) != DIRTY_TLV_DICT)
				goto malformed;
			if ((kwargs = dirty_py_decode(&cur)) == NULL)
				goto decode_failed;
		} else if (dirty_skip(&cur) == -1)
			goto malformed;
	}
	dirty_leave(&cur);
	if (dirty_end(&cur) == -1 || app_path == NULL || action == NULL)
		goto malformed;

	if ((app = find_app(app_path, app_len)) == NULL) {
		char *m = xasprintf("Dirty app not found: %.*s", (int)app_len,
		    app_path);
		put_error(c, id, DIRTY_E_APP_NOT_FOUND, app_path, app_len,
		    action, action_len, m);
		free(m);
		goto out;
	}
	if (app->obj == NULL) {
		put_error(c, id, DIRTY_E_APP, app_path, app_len, action,
		    action_len, app->load_error);
		goto out;
	}
	if ((actobj = PyUnicode_DecodeUTF8(action, action_len, NULL)) == NULL)
		goto failed;

	/* argv: [action,] args..., for a vectorcall with kwargs as a dict */
	Py_ssize_t nlist = args != NULL ? PyList_GET_SIZE(args) : 0;
	if (nlist + 1 > ARGS_ON_STACK)
		argv = xreallocarray(NULL, (size_t)nlist + 1, sizeof(*argv));
	if (app->fast_dispatch) {
		if ((callee = app_method(app, actobj)) == NULL)
			goto failed;
	} else {
		callee = app->obj;
		Py_INCREF(callee);
		argv[nargs++] = actobj;
	}
	for (Py_ssize_t i = 0; i < nlist; i++)
		argv[nargs++] = PyList_GET_ITEM(args, i);
	if (kwargs != NULL && PyDict_GET_SIZE(kwargs) == 0)
		Py_CLEAR(kwargs);
	res = PyObject_VectorcallDict(callee, argv, (size_t)nargs, kwargs);
	if (res == NULL)
		goto failed;

	if (PyCoro_CheckExact(res) || (Py_TYPE(res)->tp_as_async != NULL &&
	    Py_TYPE(res)->tp_as_async->am_await != NULL &&
	    !PyAsyncGen_CheckExact(res))) {
		Py_SETREF(res, run_awaitable(c, res));
		if (res == NULL)
			goto failed;
	}
	if (PyGen_Check(res) || PyAsyncGen_CheckExact(res)) {
		stream_result(c, id, res, PyAsyncGen_CheckExact(res), app_path,
		    app_len, action, action_len);
		goto done;
	}
	put_value(c, id, DIRTY_MSG_RESPONSE, res, app_path, app_len, action,
	    action_len);
	goto out;

decode_failed:
	if (!PyErr_Occurred())
		goto malformed;
	put_exception(c, id, DIRTY_E_PROTOCOL, app_path != NULL ? app_path : "",
	    app_len, action != NULL ? action : "", action_len,
	    "cannot decode request: ");
	goto out;
malformed:
	PyErr_Clear();
	{
		char *m = xasprintf("malformed request: %s",
		    cur.error != NULL ? cur.error : "missing app_path or action");
		put_error(c, id, DIRTY_E_PROTOCOL, NULL, 0, NULL, 0, m);
		free(m);
	}
	goto out;
failed:
	put_exception(c, id, DIRTY_E_APP, app_path, app_len, action,
	    action_len, NULL);
out:
	flush_out(c);
done:
	if (argv != stackv)
		free(argv);
	Py_XDECREF(res);
	Py_XDECREF(callee);
	Py_XDECREF(actobj);
	Py_XDECREF(args);
	Py_XDECREF(kwargs);
}

/* One frame from the arbiter.  GIL held. */
static void
serve_frame(struct caller *c, uint8_t type, uint64_t id,
    const uint8_t *payload, uint32_t len)
{
	uint64_t now = monotonic_ms();

	atomic_store(&W.busy_since[c->slot], now != 0 ? now : 1);
	if (type == DIRTY_MSG_REQUEST && call_cancelled(id))
		;	/* its caller went away while it waited: nothing to do */
	else if (type == DIRTY_MSG_REQUEST)
		serve_request(c, id, payload, len);
	else {
		char *m = xasprintf("dirty worker: unexpected message type 0x%02x",
		    type);
		put_error(c, id, DIRTY_E_WORKER, NULL, 0, NULL, 0, m);
		free(m);
		flush_out(c);
	}
	atomic_store(&W.busy_since[c->slot], 0);
}

/* ---- the caller threads (dirty_threads > 1) ---- */

/* A pool thread's job (GIL held): serve the frame on that thread's caller,
 * whose busy_since slot the watch thread reads. */
static void
serve_job(struct pythreads_job *link, int thread, void *arg)
{
	struct job *j = (struct job *)link;

	(void)arg;
	serve_frame(&W.callers[thread + 1], j->type, j->id, j->payload, j->len);
	free(j);
}

static void
enqueue(uint8_t type, uint64_t id, const uint8_t *payload, uint32_t len)
{
	struct job *j = xmalloc(sizeof(*j) + len);

	j->type = type;
	j->id = id;
	j->len = len;
	memcpy(j->payload, payload, len);
	pythreads_submit(W.pool, &j->link);
}

/* ---- the main loop ---- */

/*
 * Serve (single mode, GIL held) or queue (threaded mode, no GIL) every
 * complete frame in W.in.  Frames already read count as received: they
 * are served even after a TERM.
 */
static void
dispatch_input(struct caller *main_caller)
{
	struct dirty_header h;
	const uint8_t *frame;
	const char *why;
	int got;

	while ((got = dirty_reader_next(&W.in, &h, &frame, &why)) != 0) {
		if (got == -1) {
			/* The arbiter is trusted: garbage from it is fatal,
			 * at once (the GIL may not be held here). */
			log_errorx("Dirty worker %d: bad frame from arbiter: %s",
			    (int)getpid(), why);
			_exit(1);
		}
		if (W.nthreads == 1)
			serve_frame(main_caller, h.type, h.id,
			    frame + DIRTY_HEADER_SIZE, h.length);
		else
			enqueue(h.type, h.id, frame + DIRTY_HEADER_SIZE,
			    h.length);
	}
	dirty_reader_trim(&W.in, BUF_KEEP);
}

/* Wait for input and read what is there.  Called WITHOUT the GIL.
 * Returns 1 data read, 0 nothing (timeout, wakeup), -1 EOF / error. */
static int
read_input(void)
{
	struct pollfd pfd[2] = {
		{ .fd = W.fd, .events = POLLIN },
		{ .fd = W.wakefd, .events = POLLIN },
	};
	int got = 0;

	if (poll(pfd, 2, LOOP_POLL_MS) == -1)
		return errno == EINTR ? 0 : -1;
	if (pfd[1].revents & POLLIN) {
		uint64_t v;
		ssize_t r = read(W.wakefd, &v, sizeof(v));
		(void)r;
	}
	if (!(pfd[0].revents & (POLLIN | POLLHUP | POLLERR)))
		return 0;
	for (;;) {
		size_t room;
		uint8_t *at = dirty_reader_space(&W.in, READ_CHUNK, &room);
		ssize_t r = recv(W.fd, at, room, MSG_DONTWAIT);
		if (r > 0) {
			dirty_reader_commit(&W.in, (size_t)r);
			got = 1;
			if ((size_t)r < room)
				break;		/* drained */
			continue;
		}
		if (r == 0)
			return got ? 1 : -1;	/* EOF: serve what came first */
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN)
			break;
		return got ? 1 : -1;
	}
	return got;
}

/*
 * dirty_threads == 1: the GIL is held except while waiting for input, and
 * each frame is served right here.
 */
static void
main_loop_single(void)
{
	struct caller *mc = &W.callers[0];
	int r;

	for (;;) {
		atomic_store(&W.loop_tick, monotonic_ms());
		if (atomic_exchange(&W.reopen, 0))
			log_reopen();
		if (atomic_load(&W.stopping))
			return;
		Py_BEGIN_ALLOW_THREADS
		r = read_input();
		Py_END_ALLOW_THREADS
		dispatch_input(mc);
		if (r == -1)
			return;		/* arbiter gone; what it sent is served */
	}
}

/*
 * dirty_threads > 1: this thread never holds the GIL in the loop (taking
 * it would only delay the callers); it queues frames for them.  On the
 * way out it waits for every received call to finish.
 */
static void
main_loop_threaded(void)
{
	PyThreadState *ts = PyEval_SaveThread();
	int r;

	for (;;) {
		atomic_store(&W.loop_tick, monotonic_ms());
		if (atomic_exchange(&W.reopen, 0))
			log_reopen();
		if (atomic_load(&W.stopping))
			break;
		r = read_input();
		dispatch_input(NULL);
		if (r == -1)
			break;
	}
	pythreads_drain(W.pool);	/* the pool stays, idle, until _exit */
	PyEval_RestoreThread(ts);
}

/* ---- start and stop ---- */

/* "module:Class" (a trailing ":N" worker count is tolerated and dropped). */
static char *
app_path_normalize(const char *spec)
{
	size_t path_len;
	int limit;

	(void)dirty_app_spec_split(spec, &path_len, &limit);
	return xasprintf("%.*s", (int)path_len, spec);
}

/* Import "module:Attr.Sub", instantiate, init().  New reference, or NULL
 * with the Python exception set. */
static PyObject *
app_instantiate(const char *path)
{
	const char *colon = strchr(path, ':');
	PyObject *obj, *next, *r;

	if (colon == NULL || colon == path || colon[1] == '\0') {
		PyErr_Format(PyExc_ValueError, "Invalid import path format: %s. "
		    "Expected 'module.path:ClassName'", path);
		return NULL;
	}
	char *mod = xasprintf("%.*s", (int)(colon - path), path);
	obj = PyImport_ImportModule(mod);
	free(mod);
	if (obj == NULL)
		return NULL;
	char *attrs = xstrdup(colon + 1), *save = NULL;
	for (char *a = strtok_r(attrs, ".", &save); a != NULL;
	    a = strtok_r(NULL, ".", &save)) {
		next = PyObject_GetAttrString(obj, a);
		Py_DECREF(obj);
		if ((obj = next) == NULL)
			break;
	}
	free(attrs);
	if (obj == NULL)
		return NULL;
	if (!PyType_Check(obj)) {
		PyErr_Format(PyExc_TypeError, "%s is not a class", path);
		Py_DECREF(obj);
		return NULL;
	}
	Py_SETREF(obj, PyObject_CallNoArgs(obj));
	if (obj == NULL)
		return NULL;
	if (!PyCallable_Check(obj)) {
		PyErr_Format(PyExc_TypeError, "%s instances are not callable", path);
		Py_DECREF(obj);
		return NULL;
	}
	if (PyObject_HasAttrString(obj, "init")) {
		if ((r = PyObject_CallMethod(obj, "init", NULL)) == NULL) {
			Py_DECREF(obj);
			return NULL;
		}
		Py_DECREF(r);
	}
	return obj;
}

static void
load_apps(void)
{
	PyObject *dirtyapp = NULL, *m;

	if ((m = PyImport_ImportModule("cunicorn.dirty.app")) != NULL) {
		PyObject *cls = PyObject_GetAttrString(m, "DirtyApp");
		if (cls != NULL)
			W.dirtyapp_call = PyObject_GetAttrString(cls, "__call__");
		dirtyapp = cls;
		Py_DECREF(m);
	}
	PyErr_Clear();
	Py_XDECREF(dirtyapp);

	W.napps = W.ctx->napps;
	W.apps = xcalloc(W.napps > 0 ? W.napps : 1, sizeof(*W.apps));
	for (size_t i = 0; i < W.napps; i++) {
		struct dirty_app *a = &W.apps[i];
		a->path = app_path_normalize(W.ctx->apps[i]);
		a->pathlen = strlen(a->path);
		if ((a->obj = app_instantiate(a->path)) == NULL) {
			PyObject *type, *value, *tb, *keep;
			Py_ssize_t n;
			PyErr_Fetch(&type, &value, &tb);
			PyErr_NormalizeException(&type, &value, &tb);
			const char *msg = str_utf8(value, &keep, &n);
			const char *tname = type != NULL ?
			    ((PyTypeObject *)type)->tp_name : "Error";
			a->load_error = xasprintf("Dirty app %s failed to load: "
			    "%s: %.*s", a->path, tname, (int)n, msg);
			Py_XDECREF(keep);
			PyErr_Restore(type, value, tb);
			char *ctx = xasprintf("Failed to load dirty app %s", a->path);
			python_log_exception(LOG_ERROR, LOG_DEBUG, ctx);
			free(ctx);
			continue;
		}
		if (W.dirtyapp_call != NULL) {
			PyObject *call = PyObject_GetAttrString(
			    (PyObject *)Py_TYPE(a->obj), "__call__");
			a->fast_dispatch = call == W.dirtyapp_call;
			Py_XDECREF(call);
			PyErr_Clear();
		}
		log_info("Initialized dirty app: %s", a->path);
	}
}

/*
 * Tell the arbiter what only Python can read, once the apps are loaded:
 *  - class attributes `workers = N` go in a STATUS frame with id 0,
 *    {"app_workers": {"module:Class": N, ...}} (dirty_pool.c adopts N
 *    for apps without a "module:Class:N" config limit);
 *  - class attributes `stashes = [...]`: the tables are created through
 *    the ordinary stash client (ensure is idempotent, so every worker
 *    doing it is harmless).  Failures are logged, never fatal.
 */
static void
report_app_declarations(void)
{
	struct dirty_buf b;
	uint32_t n = 0;
	int64_t *limits = xcalloc(W.napps > 0 ? W.napps : 1, sizeof(*limits));
	PyObject *v, *ensure = NULL, *r;

	for (size_t i = 0; i < W.napps; i++) {
		if (W.apps[i].obj == NULL)
			continue;
		if ((v = PyObject_GetAttrString(W.apps[i].obj, "workers")) != NULL &&
		    PyLong_Check(v) && !PyBool_Check(v)) {
			long long l = PyLong_AsLongLong(v);
			if (l > 0) {
				limits[i] = l;
				n++;
			}
		}
		Py_XDECREF(v);
		PyErr_Clear();

		if ((v = PyObject_GetAttrString(W.apps[i].obj, "stashes")) == NULL) {
			PyErr_Clear();
			continue;
		}
		if (PyObject_IsTrue(v) == 1 && lazy_function(&ensure,
		    "cunicorn.dirty.stash", "_ensure_tables") != NULL) {
			if ((r = PyObject_CallOneArg(ensure, v)) == NULL) {
				char *ctx = xasprintf("Dirty app %s: cannot "
				    "create its stash tables", W.apps[i].path);
				python_log_exception(LOG_WARNING, LOG_DEBUG, ctx);
				free(ctx);
			}
			Py_XDECREF(r);
		}
		Py_DECREF(v);
		PyErr_Clear();
	}
	Py_XDECREF(ensure);
	if (n == 0) {
		free(limits);
		return;
	}
	dirty_buf_init(&b);
	size_t off = dirty_frame_begin(&b, DIRTY_MSG_STATUS, 0);
	dirty_put_dict(&b, 1);
	dirty_put_cstring(&b, "app_workers");
	dirty_put_dict(&b, n);
	for (size_t i = 0; i < W.napps; i++) {
		if (limits[i] == 0)
			continue;
		dirty_put_cstring(&b, W.apps[i].path);
		dirty_put_int64(&b, limits[i]);
	}
	/* An unsolicited report has no caller to answer: one too large for a
	 * frame (thousands of apps) is logged and not sent, never sent with
	 * a length that does not match its payload. */
	if (dirty_frame_end(&b, off) == -1)
		log_warnx("dirty worker: app workers report too large, not sent");
	else if (send_all(b.data, b.len) == -1)
		log_warn("dirty worker: cannot report app workers to the arbiter");
	dirty_buf_free(&b);
	free(limits);
}

/* Hook objects get what gunicorn's DirtyWorker shows: app_paths, apps,
 * ppid.  Best effort: the worker object may refuse new attributes. */
static void
decorate_worker_object(void)
{
	PyObject *paths, *apps, *v;

	if (W.worker_obj == NULL)
		return;
	paths = PyList_New(0);
	apps = PyDict_New();
	for (size_t i = 0; paths != NULL && apps != NULL && i < W.napps; i++) {
		if ((v = PyUnicode_FromString(W.apps[i].path)) == NULL)
			break;
		PyList_Append(paths, v);
		if (W.apps[i].obj != NULL)
			PyDict_SetItem(apps, v, W.apps[i].obj);
		Py_DECREF(v);
	}
	if (paths != NULL)
		PyObject_SetAttrString(W.worker_obj, "app_paths", paths);
	if (apps != NULL)
		PyObject_SetAttrString(W.worker_obj, "apps", apps);
	if ((v = PyLong_FromLong((long)W.ctx->arbiter_pid)) != NULL) {
		PyObject_SetAttrString(W.worker_obj, "ppid", v);
		Py_DECREF(v);
	}
	Py_XDECREF(paths);
	Py_XDECREF(apps);
	PyErr_Clear();
}

static void
mark_not_alive(void)
{
	if (W.worker_obj != NULL &&
	    PyObject_SetAttrString(W.worker_obj, "alive", Py_False) == -1)
		PyErr_Clear();
}

/* Clean exit: apps' close(), the exit hook, the log line.  GIL held. */
static void
worker_exit(int status)
{
	mark_not_alive();
	for (size_t i = 0; i < W.napps; i++) {
		struct dirty_app *a = &W.apps[i];
		PyObject *r;
		if (a->obj == NULL || !PyObject_HasAttrString(a->obj, "close"))
			continue;
		if ((r = PyObject_CallMethod(a->obj, "close", NULL)) == NULL) {
			char *ctx = xasprintf("Error closing dirty app %s", a->path);
			python_log_exception(LOG_ERROR, LOG_DEBUG, ctx);
			free(ctx);
		} else {
			Py_DECREF(r);
			log_debug("Closed dirty app: %s", a->path);
		}
	}
	python_hook(W.cfg, HOOK_DIRTY_WORKER_EXIT, 2,
	    W.arbiter_obj != NULL ? W.arbiter_obj : Py_None,
	    W.worker_obj != NULL ? W.worker_obj : Py_None);
	log_info("Dirty worker %d exiting", (int)getpid());
	fflush(stdout);
	fflush(stderr);
	_exit(status);
}

/*
 * Flag-only handlers (SA_RESTART), not a blocked mask read with
 * sigwait: a blocked mask would be inherited by every process an app
 * spawns (subprocess keeps the mask across exec), which would then ignore
 * SIGTERM.  Handlers are reset to the default by exec.
 */
static void
setup_signals(void)
{
	static const int sigs[] = { SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1 };
	struct sigaction sa = { .sa_handler = SIG_IGN };

	sigemptyset(&sa.sa_mask);
	sigaction(SIGPIPE, &sa, NULL);
	if ((W.sigfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) == -1)
		fatal("dirty worker: eventfd");
	sa.sa_handler = on_signal;
	sa.sa_flags = SA_RESTART;
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaddset(&sa.sa_mask, sigs[i]);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaction(sigs[i], &sa, NULL);
}

void
dirty_worker_main(struct dirty_worker_ctx *ctx)
{
	pthread_t watch;
	sigset_t none;
	int nthreads;

	/* spawn_process() did PyOS_AfterFork_Child, PR_SET_PDEATHSIG and the
	 * title. */
	memset(&W, 0, sizeof(W));
	setup_signals();
	/* The arbiter forked us with every signal blocked (a USR1 or HUP
	 * sent before setup_signals() stays pending); unblock before any app
	 * code runs, or the processes apps spawn would inherit the mask. */
	sigemptyset(&none);
	pthread_sigmask(SIG_SETMASK, &none, NULL);

	W.ctx = ctx;
	W.cfg = ctx->cfg;
	W.fd = ctx->fd;
	nthreads = W.cfg->dirty_threads;
	W.nthreads = nthreads < 1 ? 1 : nthreads > MAX_THREADS ?
	    MAX_THREADS : nthreads;
	W.timeout_ms = W.cfg->dirty_timeout > 0 ?
	    (uint64_t)W.cfg->dirty_timeout * 1000u : 0;
	dirty_reader_init(&W.in);
	pthread_mutex_init(&W.wlock, NULL);
	fd_set_nonblock(W.fd, 0);
	fd_set_cloexec(W.fd, 1);

	if ((W.wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) == -1)
		fatal("dirty worker: eventfd");
	/* Loading the apps counts as a call: the heartbeat goes on for up to
	 * dirty_timeout while a model loads. */
	atomic_store(&W.loop_tick, monotonic_ms());
	atomic_store(&W.busy_since[0], monotonic_ms());
	if (ctx->heartbeat != NULL)
		*ctx->heartbeat = monotonic_ms();
	if (pthread_create(&watch, NULL, watch_thread, NULL) != 0)
		fatalx("dirty worker: cannot start the watch thread");

	W.arbiter_obj = python_server_object(W.cfg, ctx->arbiter_pid);
	W.worker_obj = python_worker_object(W.cfg, getpid(), ctx->age);
	PyErr_Clear();
	python_hook(W.cfg, HOOK_DIRTY_POST_FORK, 2,
	    W.arbiter_obj != NULL ? W.arbiter_obj : Py_None,
	    W.worker_obj != NULL ? W.worker_obj : Py_None);

	load_apps();
	report_app_declarations();
	decorate_worker_object();
	python_hook(W.cfg, HOOK_DIRTY_WORKER_INIT, 1,
	    W.worker_obj != NULL ? W.worker_obj : Py_None);

	W.callers = xcalloc((size_t)W.nthreads + 1, sizeof(*W.callers));
	for (int i = 0; i <= W.nthreads; i++) {
		W.callers[i].slot = i;
		dirty_buf_init(&W.callers[i].out);
	}
	if (W.nthreads > 1)
		W.pool = pythreads_start(W.nthreads, serve_job, NULL);
	atomic_store(&W.busy_since[0], 0);
	atomic_store(&W.loop_tick, monotonic_ms());

	if (W.nthreads == 1)
		main_loop_single();
	else
		main_loop_threaded();
	worker_exit(0);
}
