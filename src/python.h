/*
 * python.h — the embedded CPython: start it, import apps, call hooks.
 *
 * The interpreter is started once in the master with Py_InitializeEx(0)
 * (no Python signal handlers); every child that will run Python calls
 * python_after_fork() first.  The dirty arbiter never calls anything here.
 * Python objects stay at the edges: these functions return opaque
 * pointers (PyObject *) so that callers that never run Python need not
 * include Python.h.
 */
#ifndef CUNICORN_PYTHON_H
#define CUNICORN_PYTHON_H

#include <sys/types.h>
#include "settings.h"

/* gunicorn's exit codes for a worker (its Arbiter's): the master stops
 * with "Worker failed to boot." / "App failed to load." and this code. */
#define WORKER_BOOT_ERROR	3	/* the worker could not start */
#define APP_LOAD_ERROR		4	/* the app's import or lookup failed */

/* Start the interpreter: sys.path gets cunicorn's python/ dir (for the
 * gunicorn / cunicorn packages), the virtualenv's site-packages
 * (--virtualenv or $VIRTUAL_ENV), and the working directory.
 * sys.executable names a real interpreter (the virtualenv's, else the
 * system's python3.X) and sys.argv is cunicorn's command line.  Registers
 * the built-in modules _cunicorn and _cunicorn_dirty.  Fatal on failure. */
void python_init(int argc, char **argv, const char *virtualenv);
/* After chdir and pythonpath are known: put them on sys.path. */
void python_setup_paths(const struct settings *s);
/* In a forked child that will run Python. */
void python_after_fork(void);
/* Finalize (master exit). */
void python_fini(void);

/* Import "module:callable" (callable defaults to "application"; a
 * "module:factory()" call form is honoured).  Returns a new reference, or
 * NULL after logging one clear line (module not found, no such callable,
 * not callable) and, at debug level, the traceback. */
void *python_load_app(const char *uri);
/* The same through loader(uri) (a PyObject * callable that imports as
 * cunicorn._hooks.load_app does), errors logged the same way. */
void *python_load_app_with(void *loader, const char *uri);

/* In the master before forking: move every object the master made into
 * the GC's permanent generation (gc.freeze()), so that a collection in a
 * child never writes to their pages and they stay shared. */
void python_freeze(void);

/* In the master, without importing: find the app's module so that the
 * import machinery's caches are built once, shared by all workers. */
void python_warm_import(const char *uri);

/* Log and clear the current Python exception: the message line at
 * `level`, the traceback at `tb_level` (pass LOG_ERROR for both to log
 * the traceback at error level). */
void python_log_exception(int level, int tb_level, const char *context);

/* Hook objects: the `server`/`arbiter` and `worker` arguments that hooks
 * receive (attributes pid, age, cfg, log, alive, ...).  New references. */
void *python_server_object(struct settings *s, pid_t pid);
void *python_worker_object(struct settings *s, pid_t pid, int age);

/* Call hook `id` with nargs PyObject* arguments (borrowed).  Does nothing
 * if the hook is not set.  An exception in a hook is logged, not raised;
 * returns -1 then, else 0. */
int python_hook(struct settings *s, enum hook_id id, int nargs, ...);
/* nworkers_changed(server, new_value, old_value); old_value < 0 passes
 * None (the first count).  As python_hook(). */
int python_hook_nworkers_changed(struct settings *s, void *server,
    int new_value, int old_value);

/* Drop a reference returned above (NULL: nothing).  GIL held. */
void python_release(void *obj);
/* Forget the pending Python exception, if any.  GIL held. */
void python_error_clear(void);

/* setenv() and os.environ together: os.environ is a snapshot taken at
 * start-up, and values set later (GUNICORN_DIRTY_SOCKET, raw_env) must be
 * seen by both C and Python.  value NULL unsets.  0 or -1. */
int python_setenv(const char *name, const char *value);

/* Whether a Python thread other than the main one is running (a config
 * file or preloaded app started one): forking then is unsafe; warn. */
int python_threads_running(void);

#endif
