/*
 * asgi_task.c — how the asgi worker runs an app's coroutine: as an
 * asyncio Task whose first step runs at once, inside data_received
 * (asgi_proto.c calls the app and follows what asgi_task_start() says:
 * finished in that step, or a Task that waits).
 *
 * Owns: the Resume awaitable that hands an eagerly started coroutine to
 * its Task, each request's copy of the context, and the lookup of
 * asyncio's _enter_task/_leave_task (no eager step without them).
 *
 * Never: knows a connection or a request (no Proto here), runs a step
 * inside another task (data fed from inside one, or a pipelined request
 * started from the app's send(): asgi.in_app), or keeps a Task.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "asgi_int.h"

/* ---- eager start ----
 *
 * The app's coroutine runs its first step right away, inside
 * data_received (what Python 3.12's eager task factory does): most
 * requests complete in that step, since send() and a receive() answered
 * from the buffer are Ready awaitables, and then nothing waits for a loop
 * iteration.  It still runs as the current step of a real asyncio Task
 * (created first, with the copied context the step runs in), so that
 * asyncio.current_task() and everything keyed on it (anyio's cancel
 * scopes: Starlette's StreamingResponse) sees one task before and after
 * a suspension.  The Task's own first step, already scheduled by
 * create_task, then finds either a finished Resume (it returns None at
 * once) or the future the coroutine waits on, which Resume yields to the
 * Task exactly as the coroutine did; from then on Resume passes every
 * send/throw/close through to the coroutine. */

typedef struct {
	PyObject_HEAD
	PyObject *coro;		/* NULL once finished */
	PyObject *first;	/* what the eager step yielded, for the task */
	int has_first;
} Resume;

static PyTypeObject ResumeType;

static PySendResult
resume_am_send(Resume *r, PyObject *arg, PyObject **result)
{
	PySendResult st;

	if (r->has_first) {
		r->has_first = 0;
		*result = r->first;		/* the reference moves */
		r->first = NULL;
		return PYGEN_NEXT;
	}
	if (r->coro == NULL) {
		*result = Py_NewRef(Py_None);
		return PYGEN_RETURN;
	}
	st = PyIter_Send(r->coro, arg, result);
	if (st != PYGEN_NEXT)
		Py_CLEAR(r->coro);
	return st;
}

/* StopIteration(value) as the pending exception. */
static void
set_stop_iteration(PyObject *value)
{
	PyObject *e = PyObject_CallOneArg(PyExc_StopIteration, value);

	if (e != NULL) {
		PyErr_SetObject(PyExc_StopIteration, e);
		Py_DECREF(e);
	}
}

static PyObject *
resume_send(Resume *r, PyObject *arg)
{
	PyObject *res;

	switch (resume_am_send(r, arg, &res)) {
	case PYGEN_NEXT:
		return res;
	case PYGEN_RETURN:
		set_stop_iteration(res);
		Py_DECREF(res);
		return NULL;
	default:
		return NULL;
	}
}

static PyObject *
resume_next(Resume *r)
{
	return resume_send(r, Py_None);
}

static PyObject *
resume_throw(Resume *r, PyObject *args)
{
	PyObject *meth, *res;

	/* the first future is not waited for any more: the exception goes
	 * to the coroutine suspended on it (as with a Task cancelled before
	 * its first step) */
	r->has_first = 0;
	Py_CLEAR(r->first);
	if (r->coro == NULL) {
		PyObject *e = PyTuple_GET_SIZE(args) > 0 ? PyTuple_GET_ITEM(args, 0) : NULL;
		if (e != NULL && PyExceptionInstance_Check(e))
			PyErr_SetObject((PyObject *)Py_TYPE(e), e);
		else if (e != NULL && PyExceptionClass_Check(e))
			PyErr_SetNone(e);
		else
			PyErr_SetString(PyExc_TypeError, "throw() expects an exception");
		return NULL;
	}
	if ((meth = PyObject_GetAttr(r->coro, asgi.s_throw)) == NULL)
		return NULL;
	res = PyObject_Call(meth, args, NULL);
	Py_DECREF(meth);
	if (res == NULL)
		Py_CLEAR(r->coro);	/* ended: returned (StopIteration) or raised */
	return res;
}

static PyObject *
resume_close(Resume *r, PyObject *unused)
{
	PyObject *coro = r->coro, *res;

	r->has_first = 0;
	Py_CLEAR(r->first);
	if (coro == NULL)
		Py_RETURN_NONE;
	r->coro = NULL;
	res = PyObject_CallMethodNoArgs(coro, asgi.s_close);
	Py_DECREF(coro);
	return res;
}

static PyObject *
resume_await(Resume *r)
{
	return Py_NewRef(r);
}

static int
resume_traverse(Resume *r, visitproc visit, void *arg)
{
	Py_VISIT(r->coro);
	Py_VISIT(r->first);
	return 0;
}

static int
resume_clear(Resume *r)
{
	Py_CLEAR(r->coro);
	Py_CLEAR(r->first);
	return 0;
}

static void
resume_dealloc(Resume *r)
{
	PyObject_GC_UnTrack(r);
	resume_clear(r);
	PyObject_GC_Del(r);
}

static PyMethodDef resume_methods[] = {
	{ "send", (PyCFunction)resume_send, METH_O, NULL },
	{ "throw", (PyCFunction)resume_throw, METH_VARARGS, NULL },
	{ "close", (PyCFunction)resume_close, METH_NOARGS, NULL },
	{ NULL, NULL, 0, NULL },
};

static PyAsyncMethods resume_async = {
	.am_await = (unaryfunc)resume_await,
	.am_send = (sendfunc)resume_am_send,
};

static PyTypeObject ResumeType = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "_cunicorn_asgi.Resume",
	.tp_doc = "an app coroutine whose first step already ran, for its Task",
	.tp_basicsize = sizeof(Resume),
	.tp_dealloc = (destructor)resume_dealloc,
	.tp_traverse = (traverseproc)resume_traverse,
	.tp_clear = (inquiry)resume_clear,
	.tp_as_async = &resume_async,
	.tp_iter = PyObject_SelfIter,
	.tp_iternext = (iternextfunc)resume_next,
	.tp_methods = resume_methods,
	.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
};

/* asyncio's _enter_task / _leave_task (loop, task). */
static int
task_swap(PyObject *fn, PyObject *task)
{
	PyObject *args[2] = { asgi.loop, task };
	PyObject *r = PyObject_Vectorcall(fn, args, 2, NULL);

	if (r == NULL)
		return -1;
	Py_DECREF(r);
	return 0;
}

/* Run the app's coroutine as a Task whose first step runs now, unless
 * the app itself is running (a pipelined request started from send()).
 * ASGI_TASK_DONE: it finished in that step; *out is what it returned, or
 * NULL with its exception set.  ASGI_TASK_WAITS: *out is its Task (new),
 * running.  ASGI_TASK_FAILED: it could not be started (exception set). */
int
asgi_task_start(PyObject *coro, PyObject **out)
{
	PyObject *task = NULL, *ctx = NULL, *val = NULL, *et, *ev, *etb;
	Resume *res = NULL;
	PySendResult st;

	*out = NULL;
	if ((res = PyObject_GC_New(Resume, &ResumeType)) == NULL)
		return ASGI_TASK_FAILED;
	res->coro = Py_NewRef(coro);
	res->first = NULL;
	res->has_first = 0;
	PyObject_GC_Track(res);
	/* a copy of the current context (the loop's, in data_received), but
	 * not inside the app: a pipelined request starts from the previous
	 * one's send(), whose context variables are not its own */
	if ((ctx = asgi.in_app > 0 ? PyContext_Copy(asgi.base_ctx) : PyContext_CopyCurrent()) == NULL)
		goto fail;
	{
		PyObject *args[2] = { (PyObject *)res, ctx };
		task = PyObject_Vectorcall(asgi.loop_create_task, args, 1, asgi.kw_context);
	}
	if (task == NULL)
		goto fail;
	if (asgi.in_app > 0 || asgi.enter_task == NULL)
		goto waits;

	/* the eager step, in the task's context, as the current task */
	if (PyContext_Enter(ctx) == -1)
		goto fail;
	if (task_swap(asgi.enter_task, task) == -1) {
		/* another task runs (data fed from inside one): no eager step */
		PyErr_Clear();
		if (PyContext_Exit(ctx) == -1)
			goto fail;
		goto waits;
	}
	Py_CLEAR(res->coro);	/* the step owns the coroutine; given back if it waits */
	st = PyIter_Send(coro, Py_None, &val);
	PyErr_Fetch(&et, &ev, &etb);
	if (task_swap(asgi.leave_task, task) == -1)
		PyErr_Clear();
	if (PyContext_Exit(ctx) == -1)
		PyErr_Clear();
	PyErr_Restore(et, ev, etb);
	if (st == PYGEN_NEXT) {
		res->coro = Py_NewRef(coro);
		res->first = val;
		res->has_first = 1;
		goto waits;
	}
	/* finished in one step: its Task's step will find Resume done (the
	 * app's exception, if it raised, stays pending) */
	PyErr_Fetch(&et, &ev, &etb);
	Py_DECREF(res);
	Py_DECREF(ctx);
	Py_DECREF(task);
	PyErr_Restore(et, ev, etb);
	*out = st == PYGEN_RETURN ? val : NULL;
	return ASGI_TASK_DONE;
waits:
	Py_DECREF(res);
	Py_DECREF(ctx);
	*out = task;
	return ASGI_TASK_WAITS;
fail:
	Py_XDECREF(res);
	Py_XDECREF(ctx);
	Py_XDECREF(task);
	return ASGI_TASK_FAILED;
}

/* asyncio's _enter_task/_leave_task, looked up once the loop is known;
 * without them every app runs from its task's first step. */
int
asgi_task_configure(void)
{
	PyObject *tasks_mod;

	Py_CLEAR(asgi.enter_task);
	Py_CLEAR(asgi.leave_task);
	if ((tasks_mod = PyImport_ImportModule("asyncio.tasks")) == NULL)
		return -1;
	asgi.enter_task = PyObject_GetAttrString(tasks_mod, "_enter_task");
	asgi.leave_task = PyObject_GetAttrString(tasks_mod, "_leave_task");
	Py_DECREF(tasks_mod);
	if (asgi.enter_task == NULL || asgi.leave_task == NULL) {
		Py_CLEAR(asgi.enter_task);
		Py_CLEAR(asgi.leave_task);
		PyErr_Clear();
	}
	return 0;
}

int
asgi_task_types_ready(void)
{
	return PyType_Ready(&ResumeType);
}
