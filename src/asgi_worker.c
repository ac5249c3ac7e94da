/*
 * asgi_worker.c — the ASGI worker role (-k asgi; uvicorn's two gunicorn
 * worker classes run it too): an asyncio event loop in the worker
 * process, with every connection's HTTP in C (asgi_proto.c).
 *
 * Owns: the worker's signals (sigpipe.h: bytes on a pipe the loop
 * watches: TERM/HUP drain, INT/QUIT worker_int and exit, ABRT
 * worker_abort and exit, USR1 reopen logs), loading the app, and the
 * hand-over to the Python glue (cunicorn/_asgi.py: the loop, lifespan,
 * the servers) whose return value is the exit status.  Draining is the
 * gthread worker's: stop accepting, every response from then on says
 * "Connection: close", a connection closes only between requests, exit
 * when none is left or after graceful_timeout.
 *
 * Never: runs Python before python_after_fork() (the master did it), or
 * returns (the exit is http_worker_exit's).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <signal.h>
#include <string.h>

#include "asgi.h"
#include "http_worker.h"
#include "listen.h"
#include "log.h"
#include "python.h"
#include "settings.h"
#include "sigpipe.h"
#include "util.h"

void
asgi_worker_main(struct http_worker_ctx *ctx)
{
	static const int sigs[] = { SIGTERM, SIGHUP, SIGINT, SIGQUIT, SIGABRT, SIGUSR1 };
	struct settings *cfg = ctx->cfg;
	PyObject *glue, *fds, *r, *app;
	int sigfd;
	long code = 0;

	sigfd = sigpipe_open(sigs, sizeof(sigs) / sizeof(sigs[0]));

	app = http_worker_boot(ctx, 1, NULL, NULL, 0);
	asgi_proto_setup(ctx, sigfd);

	if ((glue = PyImport_ImportModule("cunicorn._asgi")) == NULL) {
		python_log_exception(LOG_ERROR, LOG_ERROR, "cannot import cunicorn._asgi");
		http_worker_exit(WORKER_BOOT_ERROR);
	}
	if ((fds = PyList_New(0)) == NULL)
		fatalx("out of memory");
	for (size_t i = 0; i < ctx->nlisteners; i++) {
		PyObject *t = Py_BuildValue("(ii)", ctx->listeners[i].fd,
		    ctx->listeners[i].family);
		if (t == NULL || PyList_Append(fds, t) == -1)
			fatalx("out of memory");
		Py_DECREF(t);
	}
	r = PyObject_CallMethod(glue, "run", "OOissi", app, fds, sigfd,
	    cfg->asgi_loop ? cfg->asgi_loop : "auto",
	    cfg->asgi_lifespan ? cfg->asgi_lifespan : "auto", cfg->backlog);
	if (r == NULL) {
		python_log_exception(LOG_ERROR, LOG_ERROR, "Exception in worker process");
		code = WORKER_BOOT_ERROR;
	} else {
		code = PyLong_Check(r) ? PyLong_AsLong(r) : 0;
		PyErr_Clear();
		Py_DECREF(r);
	}
	http_worker_exit((int)code);
}
