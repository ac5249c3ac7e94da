/*
 * dirty_serve.c — the dirty worker's Python side: loads the dirty apps
 * (import, instantiate, init(); a failure is kept as the app's answer),
 * reports their per-app worker counts, and serves one request: finds the
 * app and its action, calls it (a coroutine on the caller's own asyncio
 * loop, a generator as a stream of CHUNK frames and an END), and encodes
 * the RESPONSE or the ERROR with its traceback.
 *
 * Owns: the apps table (dirty_worker.apps) and the Python functions it
 * imports once (traceback.format_exception, asyncio.new_event_loop, DirtyApp.__call__).
 * Everything here runs with the GIL held, on the caller's thread (the
 * main thread, or a pool thread with dirty_threads > 1); replies leave
 * through dirty_worker_flush_out() (dirty_worker.c).  Never reads the
 * socket, never touches signals.
 */
#include "dirty_worker_int.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dirty_pyext.h"
#include "log.h"
#include "python.h"
#include "util.h"

/* ---- cancelled calls (dirty.h: the ring the arbiter writes) ---- */

/* Whether the arbiter cancelled call `id` (its caller went away). */
static int
call_cancelled(uint64_t id)
{
	volatile uint64_t *ring = dirty_worker.ctx->cancel;

	if (ring == NULL)
		return 0;
	for (int i = 0; i < DIRTY_CANCEL_SLOTS; i++)
		if (__atomic_load_n(&ring[i], __ATOMIC_ACQUIRE) == id)
			return 1;
	return 0;
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
	if (value != NULL && lazy_function(&dirty_worker.format_exception, "traceback",
	    "format_exception") != NULL) {
		lines = PyObject_CallFunctionObjArgs(dirty_worker.format_exception,
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
	if (c->aloop == NULL && lazy_function(&dirty_worker.asyncio_new_loop,
	    "asyncio", "new_event_loop") != NULL)
		c->aloop = PyObject_CallNoArgs(dirty_worker.asyncio_new_loop);
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
	for (size_t i = 0; i < dirty_worker.napps; i++)
		if (dirty_worker.apps[i].pathlen == len &&
		    memcmp(dirty_worker.apps[i].path, path, len) == 0)
			return &dirty_worker.apps[i];
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
			dirty_worker_flush_out(c);
			return;
		}
		int rc = put_value(c, id, DIRTY_MSG_CHUNK, item, app_path,
		    app_len, action, action_len);
		Py_DECREF(item);
		if (dirty_worker_flush_out(c) == -1)
			rc = -1;
		/* A stream making progress is healthy, however long it runs. */
		atomic_store(&dirty_worker.busy_since[c->slot], monotonic_ms());
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
	dirty_worker_flush_out(c);
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
	dirty_worker_flush_out(c);
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
void
dirty_serve_frame(struct caller *c, uint8_t type, uint64_t id,
    const uint8_t *payload, uint32_t len)
{
	uint64_t now = monotonic_ms();

	atomic_store(&dirty_worker.busy_since[c->slot], now != 0 ? now : 1);
	if (type == DIRTY_MSG_REQUEST && call_cancelled(id))
		;	/* its caller went away while it waited: nothing to do */
	else if (type == DIRTY_MSG_REQUEST)
		serve_request(c, id, payload, len);
	else {
		char *m = xasprintf("dirty worker: unexpected message type 0x%02x",
		    type);
		put_error(c, id, DIRTY_E_WORKER, NULL, 0, NULL, 0, m);
		free(m);
		dirty_worker_flush_out(c);
	}
	atomic_store(&dirty_worker.busy_since[c->slot], 0);
}

/* ---- loading the apps ---- */

/* "module:Class" (a trailing ":N" worker count is tolerated and dropped). */
static char *
app_path_normalize(const char *spec)
{
	size_t path_len;
	int limit;

	(void)dirty_app_spec_split(spec, &path_len, &limit);
	return xasprintf("%.*s", (int)path_len, spec);
}

/* Import "module:Attr.Sub": the class, a new reference, or NULL with the
 * Python exception set. */
static PyObject *
app_class(const char *path)
{
	const char *colon = strchr(path, ':');
	PyObject *obj, *next;

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
	return obj;
}

/* An instance of cls, init()ed: a new reference, or NULL with the Python
 * exception set. */
static PyObject *
app_instantiate(PyObject *cls, const char *path)
{
	PyObject *obj, *r;

	if ((obj = PyObject_CallNoArgs(cls)) == NULL)
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

/* An app that failed to load (the Python exception set): its calls get
 * the reason; the worker serves the others. */
static void
app_failed(struct dirty_app *a)
{
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
}

/*
 * Tell the arbiter the class attributes `workers = N` of the apps'
 * classes, before any is instantiated: a STATUS frame with id 0,
 * {"app_workers": {"module:Class": N, ...}}, sent even when empty — the
 * arbiter runs this one worker alone until it knows them, then gives the
 * others their share (dirty_pool.c), so an app limited by its class is
 * init()ed only where it belongs.  Read from the class, as gunicorn's
 * arbiter does.  A failed send is logged, never fatal.
 */
static void
report_class_limits(PyObject **classes)
{
	struct dirty_buf b;
	uint32_t n = 0;
	int64_t *limits = xcalloc(dirty_worker.napps > 0 ?
	    dirty_worker.napps : 1, sizeof(*limits));
	PyObject *v;

	for (size_t i = 0; i < dirty_worker.napps; i++) {
		if (classes[i] == NULL)
			continue;
		if ((v = PyObject_GetAttrString(classes[i], "workers")) != NULL &&
		    PyLong_Check(v) && !PyBool_Check(v)) {
			long long l = PyLong_AsLongLong(v);
			if (l > 0) {
				limits[i] = l;
				n++;
			}
		}
		Py_XDECREF(v);
		PyErr_Clear();
	}
	dirty_buf_init(&b);
	size_t off = dirty_frame_begin(&b, DIRTY_MSG_STATUS, 0);
	dirty_put_dict(&b, 1);
	dirty_put_cstring(&b, "app_workers");
	dirty_put_dict(&b, n);
	for (size_t i = 0; i < dirty_worker.napps; i++) {
		if (limits[i] == 0)
			continue;
		dirty_put_cstring(&b, dirty_worker.apps[i].path);
		dirty_put_int64(&b, limits[i]);
	}
	/* An unsolicited report has no caller to answer: one too large for a
	 * frame (thousands of apps) is logged and not sent, never sent with
	 * a length that does not match its payload. */
	if (dirty_frame_end(&b, off) == -1)
		log_warnx("dirty worker: app workers report too large, not sent");
	else if (send_full(dirty_worker.fd, b.data, b.len) == -1)
		log_warn("dirty worker: cannot report app workers to the arbiter");
	dirty_buf_free(&b);
	free(limits);
}

/* Import every app's class, report their class limits, then make and
 * init() each: an app that fails is logged and answers its calls with
 * the reason. */
void
dirty_apps_load(void)
{
	PyObject *dirtyapp = NULL, *m, **classes;

	if ((m = PyImport_ImportModule("cunicorn.dirty.app")) != NULL) {
		PyObject *cls = PyObject_GetAttrString(m, "DirtyApp");
		if (cls != NULL)
			dirty_worker.dirtyapp_call = PyObject_GetAttrString(cls, "__call__");
		dirtyapp = cls;
		Py_DECREF(m);
	}
	PyErr_Clear();
	Py_XDECREF(dirtyapp);

	dirty_worker.napps = dirty_worker.ctx->napps;
	dirty_worker.apps = xcalloc(dirty_worker.napps > 0 ?
	    dirty_worker.napps : 1, sizeof(*dirty_worker.apps));
	classes = xcalloc(dirty_worker.napps > 0 ? dirty_worker.napps : 1,
	    sizeof(*classes));
	for (size_t i = 0; i < dirty_worker.napps; i++) {
		struct dirty_app *a = &dirty_worker.apps[i];
		a->path = app_path_normalize(dirty_worker.ctx->apps[i]);
		a->pathlen = strlen(a->path);
		if ((classes[i] = app_class(a->path)) == NULL)
			app_failed(a);
	}
	report_class_limits(classes);
	for (size_t i = 0; i < dirty_worker.napps; i++) {
		struct dirty_app *a = &dirty_worker.apps[i];
		if (classes[i] == NULL)
			continue;
		a->obj = app_instantiate(classes[i], a->path);
		Py_CLEAR(classes[i]);
		if (a->obj == NULL) {
			app_failed(a);
			continue;
		}
		if (dirty_worker.dirtyapp_call != NULL) {
			PyObject *call = PyObject_GetAttrString(
			    (PyObject *)Py_TYPE(a->obj), "__call__");
			a->fast_dispatch = call == dirty_worker.dirtyapp_call;
			Py_XDECREF(call);
			PyErr_Clear();
		}
		log_info("Initialized dirty app: %s", a->path);
	}
	free(classes);
}

/* Class attributes `stashes = [...]`: the tables are created through the
 * ordinary stash client (ensure is idempotent, so every worker doing it
 * is harmless).  Failures are logged, never fatal. */
void
dirty_apps_ensure_stashes(void)
{
	PyObject *v, *ensure = NULL, *r;

	for (size_t i = 0; i < dirty_worker.napps; i++) {
		if (dirty_worker.apps[i].obj == NULL)
			continue;
		if ((v = PyObject_GetAttrString(dirty_worker.apps[i].obj,
		    "stashes")) == NULL) {
			PyErr_Clear();
			continue;
		}
		if (PyObject_IsTrue(v) == 1 && lazy_function(&ensure,
		    "cunicorn.dirty.stash", "_ensure_tables") != NULL) {
			if ((r = PyObject_CallOneArg(ensure, v)) == NULL) {
				char *ctx = xasprintf("Dirty app %s: cannot "
				    "create its stash tables", dirty_worker.apps[i].path);
				python_log_exception(LOG_WARNING, LOG_DEBUG, ctx);
				free(ctx);
			}
			Py_XDECREF(r);
		}
		Py_DECREF(v);
		PyErr_Clear();
	}
	Py_XDECREF(ensure);
}

/* Hook objects get what gunicorn's DirtyWorker shows: app_paths, apps,
 * ppid.  Best effort: the worker object may refuse new attributes. */
void
dirty_apps_decorate_worker(void)
{
	PyObject *paths, *apps, *v;

	if (dirty_worker.worker_obj == NULL)
		return;
	paths = PyList_New(0);
	apps = PyDict_New();
	for (size_t i = 0; paths != NULL && apps != NULL &&
	    i < dirty_worker.napps; i++) {
		if ((v = PyUnicode_FromString(dirty_worker.apps[i].path)) == NULL)
			break;
		PyList_Append(paths, v);
		if (dirty_worker.apps[i].obj != NULL)
			PyDict_SetItem(apps, v, dirty_worker.apps[i].obj);
		Py_DECREF(v);
	}
	if (paths != NULL)
		PyObject_SetAttrString(dirty_worker.worker_obj, "app_paths", paths);
	if (apps != NULL)
		PyObject_SetAttrString(dirty_worker.worker_obj, "apps", apps);
	if ((v = PyLong_FromLong((long)dirty_worker.ctx->arbiter_pid)) != NULL) {
		PyObject_SetAttrString(dirty_worker.worker_obj, "ppid", v);
		Py_DECREF(v);
	}
	Py_XDECREF(paths);
	Py_XDECREF(apps);
	PyErr_Clear();
}
