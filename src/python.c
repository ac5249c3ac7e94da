/*
 * python.c — the embedded CPython (see python.h) and the small built-in
 * module `_cunicorn` through which Python code logs into our error log
 * and sends statsd metrics.
 *
 * Owns the interpreter's lifetime.  Called by the master (config file,
 * preload, hooks), HTTP workers and dirty workers; never by the dirty
 * arbiter.  The main thread holds the GIL from python_init() on; a child
 * that forks off calls python_after_fork() before touching Python.
 * Anything that is easier to say in Python (app loading, hook objects)
 * lives in python/cunicorn/_hooks.py and is called from here.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "python.h"

#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "statsd.h"

PyObject *PyInit__cunicorn_dirty(void);	/* dirty_pyext.c */
PyObject *PyInit__cunicorn_asgi(void);	/* asgi_proto.c */

static PyObject *hooks_module;	/* cunicorn._hooks */

/* ---- the _cunicorn module ---- */

/* log(level, message, exception=False): every record goes to log.c,
 * which counts a warning or worse for statsd even when the level hides
 * it; exception: the record of log.exception() (its traceback in it). */
static PyObject *
mod_log(PyObject *self, PyObject *args)
{
	int level, exception = 0;
	const char *msg;

	if (!PyArg_ParseTuple(args, "is|p:log", &level, &msg, &exception))
		return NULL;
	if (exception)
		log_exception_msg(level, "%s", msg);
	else
		log_msg(level, "%s", msg);
	Py_RETURN_NONE;
}

/* statsd(line): one metric, "name:value|type...", prefixed and tagged
 * (statsd.c); nothing when no statsd_host is set. */
static PyObject *
mod_statsd(PyObject *self, PyObject *args)
{
	const char *line;
	Py_ssize_t len;

	if (!PyArg_ParseTuple(args, "s#:statsd", &line, &len))
		return NULL;
	statsd_metric(line, (size_t)len);
	Py_RETURN_NONE;
}

static PyObject *
mod_log_level(PyObject *self, PyObject *noargs)
{
	return PyLong_FromLong(log_get_level());
}

static PyObject *
mod_reopen_logs(PyObject *self, PyObject *noargs)
{
	log_reopen();
	Py_RETURN_NONE;
}

static PyMethodDef cunicorn_methods[] = {
	{ "log", mod_log, METH_VARARGS,
	  "log(level, message, exception=False): write to the error log" },
	{ "statsd", mod_statsd, METH_VARARGS,
	  "statsd(line): send one metric, 'name:value|type', to statsd_host" },
	{ "log_level", mod_log_level, METH_NOARGS, "the error log's level" },
	{ "reopen_logs", mod_reopen_logs, METH_NOARGS, "reopen log files" },
	{ NULL, NULL, 0, NULL },
};

static struct PyModuleDef cunicorn_module = {
	PyModuleDef_HEAD_INIT, "_cunicorn", "cunicorn's C side", -1,
	cunicorn_methods, NULL, NULL, NULL, NULL,
};

static PyObject *
PyInit__cunicorn(void)
{
	PyObject *m = PyModule_Create(&cunicorn_module);
	if (m == NULL)
		return NULL;
	PyModule_AddIntConstant(m, "DEBUG", LOG_DEBUG);
	PyModule_AddIntConstant(m, "INFO", LOG_INFO);
	PyModule_AddIntConstant(m, "WARNING", LOG_WARNING);
	PyModule_AddIntConstant(m, "ERROR", LOG_ERROR);
	PyModule_AddIntConstant(m, "CRITICAL", LOG_CRITICAL);
	PyModule_AddStringConstant(m, "VERSION", "0.1.0");
	return m;
}

/* ---- start-up ---- */

/* Where python/ (the cunicorn and gunicorn packages) lives: $CUNICORN_PYTHON_DIR,
 * else next to the binary (build/../python, or PREFIX/lib/cunicorn/python). */
static char *
find_python_dir(void)
{
	static const char *rel[] = { "/../python", "/../lib/cunicorn/python" };
	const char *env = getenv("CUNICORN_PYTHON_DIR");
	char exe[PATH_MAX], path[PATH_MAX + 64];
	ssize_t n;

	if (env != NULL && *env != '\0')
		return xstrdup(env);
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		exe[n] = '\0';
		char *slash = strrchr(exe, '/');
		if (slash != NULL)
			*slash = '\0';
		for (size_t i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
			snprintf(path, sizeof(path), "%s%s/cunicorn/__init__.py", exe, rel[i]);
			if (access(path, R_OK) == 0) {
				snprintf(path, sizeof(path), "%s%s", exe, rel[i]);
				char *real = realpath(path, NULL);
				return real ? real : xstrdup(path);
			}
		}
	}
#ifdef CUNICORN_PYDIR
	return xstrdup(CUNICORN_PYDIR);
#else
	return NULL;
#endif
}

static void
fatal_pystatus(PyStatus st, const char *what)
{
	fatalx("cannot start Python (%s): %s", what,
	    st.err_msg ? st.err_msg : "unknown error");
}

/* An executable file at dir/name, as a new string, else NULL. */
static char *
executable_in(const char *dir, const char *name)
{
	char *path = xasprintf("%s/%s", dir, name);

	if (access(path, X_OK) == 0)
		return path;
	free(path);
	return NULL;
}

/* The interpreter a `python` started in place of cunicorn would be: the
 * virtualenv's (it picks up the venv's site-packages by itself), else the
 * system's one of the version we embed.  NULL when none is found. */
static char *
find_interpreter(const char *dir)
{
	static const char *names[] = {
		"python" Py_STRINGIFY(PY_MAJOR_VERSION) "." Py_STRINGIFY(PY_MINOR_VERSION),
		"python" Py_STRINGIFY(PY_MAJOR_VERSION), "python",
	};
	char *bin = xasprintf("%s/bin", dir), *path = NULL;

	for (size_t i = 0; path == NULL && i < sizeof(names) / sizeof(names[0]); i++)
		path = executable_in(bin, names[i]);
	free(bin);
	return path;
}

/* argv[0] as the shell found it: a bare name is looked up in $PATH, as
 * gunicorn's sys.argv[0] is the full path of its script.  New string. */
static char *
full_argv0(const char *argv0)
{
	const char *env = getenv("PATH");
	char *copy, *dir, *save = NULL, *found = NULL;

	if (strchr(argv0, '/') != NULL || env == NULL)
		return xstrdup(argv0);
	copy = xstrdup(env);
	for (dir = strtok_r(copy, ":", &save); dir != NULL && found == NULL;
	    dir = strtok_r(NULL, ":", &save))
		found = executable_in(*dir ? dir : ".", argv0);
	free(copy);
	return found != NULL ? found : xstrdup(argv0);
}

static int
sys_set_string(const char *name, const char *value)
{
	PyObject *v = PyUnicode_DecodeFSDefault(value);
	int rc = v != NULL ? PySys_SetObject(name, v) : -1;

	Py_XDECREF(v);
	return rc;
}

/*
 * sys.executable must name a Python interpreter: subprocess and
 * multiprocessing's spawn start it with `-c ...`, which the cunicorn
 * binary would take for its own options.  sys.argv is the command line
 * cunicorn was started with, as gunicorn's is its own.
 */
static void
set_sys_identity(int argc, char **argv, const char *virtualenv)
{
	PyObject *base_prefix = PySys_GetObject("base_prefix");	/* borrowed */
	const char *prefix = base_prefix ? PyUnicode_AsUTF8(base_prefix) : NULL;
	char *base = NULL, *exe = NULL;
	PyObject *list;

	PyErr_Clear();
	if (prefix != NULL)
		base = find_interpreter(prefix);
	if (base == NULL)
		base = find_interpreter("/usr");
	if (base == NULL)
		base = find_interpreter("/usr/local");
	if (virtualenv != NULL && *virtualenv != '\0')
		exe = find_interpreter(virtualenv);
	/* none found: an empty string, as Python itself says "unknown" */
	if (sys_set_string("executable", exe ? exe : base ? base : "") == -1 ||
	    sys_set_string("_base_executable", base ? base : "") == -1)
		fatalx("cannot set sys.executable");
	free(exe);
	free(base);

	if ((list = PyList_New(0)) == NULL)
		fatalx("cannot set sys.argv");
	for (int i = 0; i < argc; i++) {
		char *a = i == 0 ? full_argv0(argv[0]) : NULL;
		PyObject *item = PyUnicode_DecodeFSDefault(a ? a : argv[i]);
		free(a);
		if (item == NULL || PyList_Append(list, item) == -1)
			fatalx("cannot set sys.argv");
		Py_DECREF(item);
	}
	if (PySys_SetObject("argv", list) == -1)
		fatalx("cannot set sys.argv");
	Py_DECREF(list);
}

void
python_init(int argc, char **argv, const char *virtualenv)
{
	const char *argv0 = argc > 0 ? argv[0] : "cunicorn";
	PyConfig config;
	PyStatus st;
	char *pydir;

	if (PyImport_AppendInittab("_cunicorn", PyInit__cunicorn) == -1 ||
	    PyImport_AppendInittab("_cunicorn_dirty", PyInit__cunicorn_dirty) == -1 ||
	    PyImport_AppendInittab("_cunicorn_asgi", PyInit__cunicorn_asgi) == -1)
		fatalx("cannot register built-in modules");

	PyConfig_InitPythonConfig(&config);
	config.install_signal_handlers = 0;	/* C owns signals */
	config.parse_argv = 0;
	config.user_site_directory = 0;
	config.buffered_stdio = 1;
	st = PyConfig_SetBytesString(&config, &config.program_name, argv0);
	if (PyStatus_Exception(st))
		fatal_pystatus(st, "program name");
	{
		char *one[1] = { (char *)argv0 };
		st = PyConfig_SetBytesArgv(&config, 1, one);
		if (PyStatus_Exception(st))
			fatal_pystatus(st, "argv");
	}
	st = Py_InitializeFromConfig(&config);
	PyConfig_Clear(&config);
	if (PyStatus_Exception(st))
		fatal_pystatus(st, "initialize");
	set_sys_identity(argc, argv, virtualenv);

	pydir = find_python_dir();
	if (pydir == NULL)
		fatalx("cannot find cunicorn's python/ directory (set CUNICORN_PYTHON_DIR)");
	{
		PyObject *sys_path = PySys_GetObject("path");	/* borrowed */
		PyObject *p = PyUnicode_DecodeFSDefault(pydir);
		if (sys_path == NULL || p == NULL || PyList_Insert(sys_path, 0, p) == -1)
			fatalx("cannot set sys.path");
		Py_DECREF(p);
	}
	free(pydir);

	if (virtualenv != NULL && *virtualenv != '\0') {
		PyObject *site = PyImport_ImportModule("site");
		PyObject *r = NULL;
		if (site != NULL) {
			char *sp = xasprintf("%s/lib/python%d.%d/site-packages",
			    virtualenv, PY_MAJOR_VERSION, PY_MINOR_VERSION);
			r = PyObject_CallMethod(site, "addsitedir", "s", sp);
			free(sp);
			Py_DECREF(site);
		}
		if (r == NULL)
			python_log_exception(LOG_WARNING, LOG_DEBUG, "virtualenv");
		Py_XDECREF(r);
	}

	hooks_module = PyImport_ImportModule("cunicorn._hooks");
	if (hooks_module == NULL) {
		python_log_exception(LOG_CRITICAL, LOG_CRITICAL, "cannot import cunicorn._hooks");
		exit(1);
	}
}

void
python_setup_paths(const struct settings *s)
{
	PyObject *sys_path = PySys_GetObject("path");	/* borrowed */
	PyObject *p;

	if (sys_path == NULL)
		return;
	/* gunicorn puts chdir (the app's directory) first, then pythonpath */
	for (size_t i = s->pythonpath.len; i-- > 0;) {
		if ((p = PyUnicode_DecodeFSDefault(s->pythonpath.items[i])) == NULL)
			continue;
		PyList_Insert(sys_path, 1, p);
		Py_DECREF(p);
	}
	if (s->chdir != NULL && (p = PyUnicode_DecodeFSDefault(s->chdir)) != NULL) {
		PyList_Insert(sys_path, 1, p);
		Py_DECREF(p);
	}
	/* --paste-global KEY=VALUE: the PasteDeploy loader's global_conf */
	PyObject *conf = PyDict_New();
	for (size_t i = 0; conf != NULL && i < s->raw_paste_global_conf.len; i++) {
		const char *kv = s->raw_paste_global_conf.items[i], *eq = strchr(kv, '=');
		PyObject *k = eq ? PyUnicode_DecodeFSDefaultAndSize(kv, eq - kv) : NULL;
		PyObject *v = eq ? PyUnicode_DecodeFSDefault(eq + 1) : NULL;
		if (k != NULL && v != NULL)
			PyDict_SetItem(conf, k, v);
		Py_XDECREF(k);
		Py_XDECREF(v);
	}
	if (conf != NULL && hooks_module != NULL)
		PyObject_SetAttrString(hooks_module, "PASTE_GLOBAL_CONF", conf);
	Py_XDECREF(conf);
	PyErr_Clear();
}

void
python_after_fork(void)
{
	PyOS_AfterFork_Child();
}

void
python_fini(void)
{
	if (Py_IsInitialized()) {
		Py_CLEAR(hooks_module);
		Py_FinalizeEx();
	}
}

/* ---- errors ---- */

/* The traceback of an exception as one string without its last newline,
 * or NULL.  A new string; the caller frees. */
static char *
format_traceback(PyObject *type, PyObject *value, PyObject *tb)
{
	PyObject *tbmod = PyImport_ImportModule("traceback");
	PyObject *lines = tbmod ? PyObject_CallMethod(tbmod, "format_exception",
	    "OOO", type, value ? value : Py_None, tb) : NULL;
	PyObject *empty = lines ? PyUnicode_FromString("") : NULL;
	PyObject *text = empty ? PyUnicode_Join(empty, lines) : NULL;
	const char *t = text ? PyUnicode_AsUTF8(text) : NULL;
	char *r = NULL;

	if (t != NULL) {
		size_t len = strlen(t);
		r = xasprintf("%.*s", (int)(len && t[len - 1] == '\n' ? len - 1 : len), t);
	}
	PyErr_Clear();
	Py_XDECREF(text);
	Py_XDECREF(empty);
	Py_XDECREF(lines);
	Py_XDECREF(tbmod);
	return r;
}

void
python_log_exception(int level, int tb_level, const char *context)
{
	PyObject *type, *value, *tb, *s;
	const char *name, *msg;
	char *head, *trace = NULL;

	if (!PyErr_Occurred())
		return;
	PyErr_Fetch(&type, &value, &tb);
	PyErr_NormalizeException(&type, &value, &tb);
	if (tb != NULL && value != NULL)
		PyException_SetTraceback(value, tb);

	s = value ? PyObject_Str(value) : NULL;
	name = type ? ((PyTypeObject *)type)->tp_name : "Exception";
	msg = s ? PyUnicode_AsUTF8(s) : NULL;
	if (msg == NULL) {
		PyErr_Clear();
		msg = "";
	}
	head = *msg ? xasprintf("%s: %s: %s", context, name, msg)
	    : xasprintf("%s: %s", context, name);
	Py_XDECREF(s);
	if (tb != NULL && tb_level >= log_get_level())
		trace = format_traceback(type, value, tb);
	/* one record, as gunicorn's log.exception(): the line, then the
	 * traceback; a traceback at another level is a record of its own */
	if (trace != NULL && tb_level == level)
		log_exception_msg(level, "%s\n%s", head, trace);
	else {
		log_exception_msg(level, "%s", head);
		if (trace != NULL)
			log_msg(tb_level, "%s", trace);
	}
	free(head);
	free(trace);
	PyErr_Clear();
	Py_XDECREF(type);
	Py_XDECREF(value);
	Py_XDECREF(tb);
}

/* ---- apps and hooks ---- */

void *
python_load_app(const char *uri)
{
	return python_load_app_with(NULL, uri);
}

void *
python_load_app_with(void *loader, const char *uri)
{
	PyObject *app = loader != NULL ?
	    PyObject_CallFunction((PyObject *)loader, "s", uri) :
	    PyObject_CallMethod(hooks_module, "load_app", "s", uri);
	if (app != NULL)
		return app;
	/* AppLoadError carries a one-line message; anything else is the app's
	 * own exception at import time: show its traceback */
	PyObject *type, *value, *tb;
	PyErr_Fetch(&type, &value, &tb);
	PyObject *cls = PyObject_GetAttrString(hooks_module, "AppLoadError");
	int clean = cls != NULL && type != NULL && PyErr_GivenExceptionMatches(type, cls);
	Py_XDECREF(cls);
	if (clean) {
		PyObject *s = PyObject_Str(value);
		const char *m = s ? PyUnicode_AsUTF8(s) : NULL;
		log_errorx("%s", m ? m : "cannot load the application");
		Py_XDECREF(s);
		PyErr_Clear();
		Py_XDECREF(type);
		Py_XDECREF(value);
		Py_XDECREF(tb);
	} else {
		PyErr_Restore(type, value, tb);
		python_log_exception(LOG_ERROR, LOG_ERROR, "Exception in worker process");
	}
	return NULL;
}

void
python_freeze(void)
{
	PyObject *gc = PyImport_ImportModule("gc");
	PyObject *r = gc ? PyObject_CallMethod(gc, "freeze", NULL) : NULL;
	if (r == NULL)
		PyErr_Clear();
	Py_XDECREF(r);
	Py_XDECREF(gc);
}

void
python_warm_import(const char *uri)
{
	PyObject *r = PyObject_CallMethod(hooks_module, "warm_import", "s", uri);
	if (r == NULL)
		PyErr_Clear();
	Py_XDECREF(r);
}

void *
python_server_object(struct settings *s, pid_t pid)
{
	PyObject *cfg = settings_to_python(s);
	PyObject *o;

	if (cfg == NULL) {
		python_log_exception(LOG_ERROR, LOG_DEBUG, "settings");
		cfg = Py_NewRef(Py_None);
	}
	o = PyObject_CallMethod(hooks_module, "Server", "Oi", cfg, (int)pid);
	Py_DECREF(cfg);
	if (o == NULL)
		python_log_exception(LOG_ERROR, LOG_ERROR, "server object");
	return o;
}

void *
python_worker_object(struct settings *s, pid_t pid, int age)
{
	PyObject *cfg = settings_to_python(s);
	PyObject *o;

	if (cfg == NULL) {
		python_log_exception(LOG_ERROR, LOG_DEBUG, "settings");
		cfg = Py_NewRef(Py_None);
	}
	o = PyObject_CallMethod(hooks_module, "Worker", "Oii", cfg, (int)pid, age);
	Py_DECREF(cfg);
	if (o == NULL)
		python_log_exception(LOG_ERROR, LOG_ERROR, "worker object");
	return o;
}

static const char *hook_names[HOOK_COUNT] = {
	[HOOK_ON_STARTING] = "on_starting", [HOOK_ON_RELOAD] = "on_reload",
	[HOOK_WHEN_READY] = "when_ready", [HOOK_PRE_FORK] = "pre_fork",
	[HOOK_POST_FORK] = "post_fork", [HOOK_POST_WORKER_INIT] = "post_worker_init",
	[HOOK_WORKER_INT] = "worker_int", [HOOK_WORKER_ABORT] = "worker_abort",
	[HOOK_PRE_EXEC] = "pre_exec", [HOOK_PRE_REQUEST] = "pre_request",
	[HOOK_POST_REQUEST] = "post_request", [HOOK_CHILD_EXIT] = "child_exit",
	[HOOK_WORKER_EXIT] = "worker_exit", [HOOK_NWORKERS_CHANGED] = "nworkers_changed",
	[HOOK_ON_EXIT] = "on_exit", [HOOK_ON_DIRTY_STARTING] = "on_dirty_starting",
	[HOOK_DIRTY_POST_FORK] = "dirty_post_fork",
	[HOOK_DIRTY_WORKER_INIT] = "dirty_worker_init",
	[HOOK_DIRTY_WORKER_EXIT] = "dirty_worker_exit",
};

int
python_hook(struct settings *s, enum hook_id id, int nargs, ...)
{
	PyObject *fn = s->hooks[id], *args, *r;
	va_list ap;

	if (fn == NULL)
		return 0;
	if ((args = PyTuple_New(nargs)) == NULL) {
		python_log_exception(LOG_ERROR, LOG_ERROR, "hook");
		return -1;
	}
	va_start(ap, nargs);
	for (int i = 0; i < nargs; i++) {
		PyObject *a = va_arg(ap, PyObject *);
		if (a == NULL)
			a = Py_None;
		PyTuple_SET_ITEM(args, i, Py_NewRef(a));
	}
	va_end(ap);
	r = PyObject_Call(fn, args, NULL);
	Py_DECREF(args);
	if (r == NULL) {
		char ctx[64];
		snprintf(ctx, sizeof(ctx), "Exception in %s hook", hook_names[id]);
		python_log_exception(LOG_ERROR, LOG_ERROR, ctx);
		return -1;
	}
	Py_DECREF(r);
	return 0;
}

int
python_hook_nworkers_changed(struct settings *s, void *server,
    int new_value, int old_value)
{
	PyObject *n, *o = NULL;
	int rc;

	if (s->hooks[HOOK_NWORKERS_CHANGED] == NULL)
		return 0;
	n = PyLong_FromLong(new_value);
	if (old_value >= 0)
		o = PyLong_FromLong(old_value);
	rc = python_hook(s, HOOK_NWORKERS_CHANGED, 3, server, n, o);
	Py_XDECREF(n);
	Py_XDECREF(o);
	return rc;
}

void
python_release(void *obj)
{
	Py_XDECREF((PyObject *)obj);
}

void
python_error_clear(void)
{
	PyErr_Clear();
}

int
python_threads_running(void)
{
	PyObject *name = PyUnicode_FromString("threading");
	PyObject *threading = name ? PyImport_GetModule(name) : NULL;
	long n = 1;

	Py_XDECREF(name);

	if (threading == NULL) {
		PyErr_Clear();
		return 0;
	}
	PyObject *r = PyObject_CallMethod(threading, "active_count", NULL);
	if (r != NULL) {
		n = PyLong_AsLong(r);
		Py_DECREF(r);
	}
	PyErr_Clear();
	Py_DECREF(threading);
	return n > 1;
}

int
python_setenv(const char *name, const char *value)
{
	PyObject *os = PyImport_ImportModule("os");
	PyObject *environ = os ? PyObject_GetAttrString(os, "environ") : NULL;
	PyObject *v = value ? PyUnicode_DecodeFSDefault(value) : NULL;
	int rc = -1;

	if (value != NULL)
		setenv(name, value, 1);
	else
		unsetenv(name);
	if (environ != NULL) {
		if (value == NULL)
			rc = PyMapping_DelItemString(environ, name) == -1 ? -1 : 0;
		else if (v != NULL)
			rc = PyMapping_SetItemString(environ, name, v);
	}
	if (rc == -1)
		PyErr_Clear();
	Py_XDECREF(v);
	Py_XDECREF(environ);
	Py_XDECREF(os);
	return rc;
}
