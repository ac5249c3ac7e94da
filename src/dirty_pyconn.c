/*
 * dirty_pyconn.c — Connection, the fast blocking client transport of the
 * extension module _cunicorn_dirty: one Unix socket to the dirty arbiter,
 * one call at a time, replies reassembled by the codec's frame reader.
 *
 * Owns, per Connection: one socket, one send buffer and one frame reader
 * (reused across calls).  Never holds the GIL across a blocking socket
 * call; never lets a malformed frame through (the connection is closed
 * after one, since its byte stream can no longer be trusted).
 *
 * Waiting for a reply: up to 50 µs of non-blocking polls (only when the
 * process may run on more than one CPU), then, in a server that set
 * dirty_client_wait_hook, up to WAIT_GRACE_US asleep in ppoll() before
 * the hook hears of the wait, then a blocking recv() bounded by
 * SO_RCVTIMEO: a blocked call costs no CPU beyond that first 50 µs
 * (see SPIN_SECONDS).
 */
#include "dirty_pyext_int.h"

#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define RBUF_INITIAL	(64 * 1024)
#define RBUF_KEEP	(4 * 1024 * 1024)	/* shrink back above this */
#define RCVTIMEO_SLACK_US 10000		/* a timeout may fire this late */
/*
 * Before sleeping in recv() for a reply, poll without blocking for up to
 * SPIN_SECONDS: a stash op or a short call is answered within tens of µs,
 * and sleeping costs a cross-CPU wake-up of about the same size
 * (measured: a one-op round trip 29-51 µs blocking, 21 µs with the spin,
 * on a 2-vCPU VM).  The window opens once per frame awaited (a call, a
 * stream chunk) and then recv() blocks (SO_RCVTIMEO): a long call wastes
 * at most SPIN_SECONDS of CPU.  No spin at all when this process may run
 * on one CPU only (online CPUs, narrowed by its affinity mask, as with
 * `taskset -c 0` or a one-CPU cpuset; read once per process): there the
 * spin would only delay the arbiter and the worker that must answer.
 */
#define SPIN_SECONDS	50e-6
/*
 * The wait hook lets the gthread worker hand its loop, or the requests
 * queued behind this thread, to another thread: a wake-up and a GIL
 * handoff, worth it for a call that lasts, pure loss for one answered
 * within tens of µs (most).  So the client first sleeps up to
 * WAIT_GRACE_US in ppoll() and tells the hook only when no reply came.
 */
#define WAIT_GRACE_US	1000

/* set by the gthread worker (dirty_pyext.h) */
void (*dirty_client_wait_hook)(int waiting);

static int
spin_allowed(void)
{
	static int ncpu;

	if (ncpu == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		cpu_set_t set;

		if (sched_getaffinity(0, sizeof(set), &set) == 0 &&
		    CPU_COUNT(&set) < n)
			n = CPU_COUNT(&set);
		ncpu = n > 0 ? (int)n : 1;
	}
	return ncpu > 1;
}

/*
 * The spin pays only while the answer usually comes within the window,
 * which it does when a CPU is free for the arbiter and the worker.  When
 * every CPU is busy (an HTTP load on a small machine), spinning takes the
 * CPU they need: replies then come after the window and the spin is pure
 * loss (measured: /dirty at 12k req/s with a blind spin, 20k without).  So
 * each process keeps a score: a reply caught while spinning +1, a window
 * that ran out -4; no spin at 0, except one probe every SPIN_PROBE waits.
 * A probe that fails is 50 µs of CPU and some 30 failed recv() calls:
 * one every 32 waits was one recv() per call and about 5 µs of HTTP
 * worker CPU per call under a /dirty load; every 256 is a tenth of that,
 * and still a probe every few ms at such rates.
 */
#define SPIN_SCORE_MAX	16
#define SPIN_PROBE	256
static int spin_score = SPIN_SCORE_MAX;
static unsigned spin_waits;

static int
spin_worthwhile(void)
{
	if (__atomic_load_n(&spin_score, __ATOMIC_RELAXED) > 0)
		return 1;
	return __atomic_add_fetch(&spin_waits, 1, __ATOMIC_RELAXED) % SPIN_PROBE == 0;
}

static void
spin_outcome(int caught)
{
	int v = __atomic_load_n(&spin_score, __ATOMIC_RELAXED);

	v = caught ? (v < SPIN_SCORE_MAX ? v + 1 : v) : (v > 4 ? v - 4 : 0);
	__atomic_store_n(&spin_score, v, __ATOMIC_RELAXED);
}

typedef struct {
	PyObject_HEAD
	int fd;
	int busy;		/* a call is in progress (GIL released) */
	int close_pending;	/* close() came during a call */
	double timeout;		/* seconds; < 0: none */
	long sockopt_us;	/* SO_RCVTIMEO now set on fd (0: none) */
	long sndopt_us;		/* SO_SNDTIMEO now set on fd (0: none) */
	uint64_t next_id;
	struct dirty_buf wbuf;
	struct dirty_reader rd;	/* replies, reassembled */
	PyObject *path;
} ConnectionObject;

enum io_status {
	IO_OK, IO_TIMEOUT, IO_EOF, IO_ERRNO, IO_EINTR, IO_PROTOCOL,
};

static double
now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
conn_close_fd(ConnectionObject *self)
{
	if (self->fd != -1) {
		close(self->fd);
		self->fd = -1;
	}
	dirty_reader_reset(&self->rd);
}

static int
set_rcvtimeo(ConnectionObject *self, long us)
{
	struct timeval tv;

	if (self->sockopt_us == us)
		return 0;
	tv.tv_sec = us / 1000000;
	tv.tv_usec = us % 1000000;
	if (setsockopt(self->fd, SOL_SOCKET, SO_RCVTIMEO, &tv,
	    sizeof(tv)) == -1)
		return -1;
	self->sockopt_us = us;
	return 0;
}

static long
timeout_us(double t)
{
	long us;

	if (t < 0)
		return 0;
	us = (long)(t * 1e6);
	return us < 1 ? 1 : us;
}

/* Begin a call: refuse a closed or busy connection; arm the timeouts. */
static int
conn_begin(ConnectionObject *self, double *deadline)
{
	struct timeval tv;
	long us;

	if (self->fd == -1) {
		PyErr_SetString(PyExc_ConnectionError,
		    "dirty connection is closed");
		return -1;
	}
	if (self->busy) {
		PyErr_SetString(PyExc_RuntimeError, "dirty Connection is in "
		    "use by another thread");
		return -1;
	}
	/* The common path makes no system call here: the options keep
	 * the per-call timeout between calls. */
	us = timeout_us(self->timeout);
	if (set_rcvtimeo(self, us) == -1)
		goto err;
	if (self->sndopt_us != us) {
		tv.tv_sec = us / 1000000;
		tv.tv_usec = us % 1000000;
		if (setsockopt(self->fd, SOL_SOCKET, SO_SNDTIMEO, &tv,
		    sizeof(tv)) == -1)
			goto err;
		self->sndopt_us = us;
	}
	*deadline = self->timeout >= 0 ? now_seconds() + self->timeout : 0;
	self->busy = 1;
	return 0;
err:
	PyErr_SetFromErrno(PyExc_OSError);
	return -1;
}

static void
conn_end(ConnectionObject *self)
{
	self->busy = 0;
	if (self->close_pending) {
		self->close_pending = 0;
		conn_close_fd(self);
	}
	dirty_reader_trim(&self->rd, RBUF_KEEP);
	if (self->wbuf.cap > RBUF_KEEP)
		dirty_buf_free(&self->wbuf);
}

/* Raise the exception for a failed I/O status (GIL held). */
static void
conn_raise(ConnectionObject *self, enum io_status st, int err,
    const char *why)
{
	switch (st) {
	case IO_TIMEOUT:
		PyErr_SetString(PyExc_TimeoutError,
		    "dirty call timed out");
		break;
	case IO_EOF:
		conn_close_fd(self);
		PyErr_SetString(PyExc_ConnectionError,
		    "dirty arbiter closed the connection");
		break;
	case IO_ERRNO:
		conn_close_fd(self);
		errno = err;
		PyErr_SetFromErrno(PyExc_OSError);
		break;
	case IO_PROTOCOL:
		conn_close_fd(self);
		dirty_py_raise_protocol(why);
		break;
	default:
		break;
	}
}

/* Send wbuf whole (GIL released inside).  A send that cannot finish leaves
 * a partial frame on the stream: the connection is closed then. */
static int
conn_send(ConnectionObject *self)
{
	const uint8_t *p = self->wbuf.data;
	size_t left = self->wbuf.len;
	enum io_status st = IO_OK;
	int err = 0;
	ssize_t n;
	PyThreadState *ts;

	while (left > 0) {
		ts = PyEval_SaveThread();
		for (;;) {
			n = send(self->fd, p, left, MSG_NOSIGNAL);
			if (n >= 0) {
				p += n;
				left -= (size_t)n;
				if (left == 0)
					break;
				continue;
			}
			err = errno;
			if (err == EINTR)
				st = IO_EINTR;
			else if (err == EAGAIN || err == EWOULDBLOCK)
				st = IO_TIMEOUT;
			else if (err == EPIPE || err == ECONNRESET)
				st = IO_ERRNO;
			else
				st = IO_ERRNO;
			break;
		}
		PyEval_RestoreThread(ts);
		if (st == IO_EINTR) {
			if (PyErr_CheckSignals() == -1) {
				if (left != self->wbuf.len)
					conn_close_fd(self);
				return -1;
			}
			st = IO_OK;
			continue;
		}
		if (st != IO_OK) {
			if (st == IO_TIMEOUT)
				conn_close_fd(self);	/* partial frame */
			conn_raise(self, st, err, NULL);
			return -1;
		}
	}
	return 0;
}

/* About to block in recv() for a reply (GIL released): 1 when the caller
 * need not tell the wait hook — no hook, or the reply came within the
 * grace period (spent once per wait: *grace is cleared); 0 when it must;
 * -1 on a signal (EINTR: the caller lets Python handle it). */
static int
wait_grace(int fd, int *grace)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	struct timespec ts = { 0, WAIT_GRACE_US * 1000L };
	int n;

	if (dirty_client_wait_hook == NULL)
		return 1;
	if (!*grace)
		return 0;
	*grace = 0;
	n = ppoll(&pfd, 1, &ts, NULL);
	if (n == -1 && errno == EINTR)
		return -1;
	return n == 1;
}

/*
 * Read frames until one for `id` arrives; frames for other ids (replies to
 * calls that timed out, ...) are dropped.  On success *h is its header and
 * *payload points into the reader, valid until the next read.  GIL held on entry
 * and exit, released while waiting.
 */
static int
conn_read_frame(ConnectionObject *self, uint64_t id, double deadline,
    struct dirty_header *h, const uint8_t **payload)
{
	struct dirty_reader *rd = &self->rd;
	enum io_status st;
	const char *why = NULL;
	const uint8_t *frame;
	PyThreadState *ts;
	uint8_t *at;
	size_t room;
	ssize_t n;
	int err = 0, flags, got;

	double spin_end = spin_allowed() && spin_worthwhile()
	    ? now_seconds() + SPIN_SECONDS : 0;

	for (;;) {
		int grace = dirty_client_wait_hook != NULL, hooked = 0;

		st = IO_OK;
		ts = PyEval_SaveThread();
		for (;;) {
			got = dirty_reader_next(rd, h, &frame, &why);
			if (got == -1) {
				st = IO_PROTOCOL;
				break;
			}
			if (got == 1) {
				if (h->id == id) {
					*payload = frame + DIRTY_HEADER_SIZE;
					break;
				}
				continue;	/* stale: drop */
			}
			/* room for the rest of this frame and more */
			at = dirty_reader_space(rd, RBUF_INITIAL, &room);
			flags = 0;
			if (self->timeout >= 0) {
				double left = deadline - now_seconds();
				long us = (long)(left * 1e6);

				/* Lower SO_RCVTIMEO only when that moves the
				 * wake-up by more than RCVTIMEO_SLACK_US, so a
				 * fast call makes no setsockopt(). */
				if (us <= 0)
					flags = MSG_DONTWAIT;
				else if (us + RCVTIMEO_SLACK_US < self->sockopt_us &&
				    set_rcvtimeo(self, us) == -1) {
					err = errno;
					st = IO_ERRNO;
					break;
				}
			}
			if (spin_end != 0) {
				if (now_seconds() < spin_end)
					flags |= MSG_DONTWAIT;
				else {
					spin_end = 0;
					spin_outcome(0);
				}
			}
			if (!(flags & MSG_DONTWAIT) && !hooked) {
				int quick = wait_grace(self->fd, &grace);
				if (quick == -1) {
					st = IO_EINTR;
					break;
				}
				if (!quick) {
					dirty_client_wait_hook(1);
					hooked = 1;
				}
			}
			n = recv(self->fd, at, room, flags);
			if (n > 0) {
				dirty_reader_commit(rd, (size_t)n);
				if (spin_end != 0) {
					spin_end = 0;	/* caught: one outcome per wait */
					spin_outcome(1);
				}
				continue;
			}
			if (n == 0) {
				st = IO_EOF;
				break;
			}
			err = errno;
			if (err == EINTR) {
				st = IO_EINTR;
				break;
			}
			if (err == EAGAIN || err == EWOULDBLOCK) {
				if (self->timeout >= 0 &&
				    now_seconds() >= deadline) {
					st = IO_TIMEOUT;
					break;
				}
				continue;
			}
			st = IO_ERRNO;
			break;
		}
		if (hooked)
			dirty_client_wait_hook(0);
		PyEval_RestoreThread(ts);
		if (st == IO_OK)
			return 0;
		if (st == IO_EINTR) {
			if (PyErr_CheckSignals() == -1)
				return -1;
			continue;
		}
		conn_raise(self, st, err, why);
		return -1;
	}
}

/* The RemoteError for an ERROR payload (or ProtocolError). */
static void
raise_remote(ConnectionObject *self, const uint8_t *p, size_t len)
{
	PyObject *err, *et, *msg, *det, *exc;
	PyObject *remote = dirty_py_remote_error();	/* borrowed */

	if ((err = dirty_py_decode_field(p, len, "error")) == NULL) {
		conn_close_fd(self);
		return;
	}
	if (!PyDict_Check(err)) {
		Py_DECREF(err);
		conn_close_fd(self);
		dirty_py_raise_protocol("ERROR payload \"error\" is not a dict");
		return;
	}
	et = PyDict_GetItemString(err, "error_type");
	msg = PyDict_GetItemString(err, "message");
	det = PyDict_GetItemString(err, "details");
	if (et == NULL || !PyUnicode_Check(et))
		et = NULL;
	if (msg == NULL || msg == Py_None)
		msg = NULL;
	if (det != NULL && !PyDict_Check(det))
		det = NULL;
	if ((et = et ? (Py_INCREF(et), et) :
	    PyUnicode_FromString(DIRTY_E_ERROR)) == NULL)
		goto out;
	msg = msg ? PyObject_Str(msg) : PyUnicode_FromString("");
	det = det ? (Py_INCREF(det), det) : PyDict_New();
	if (msg != NULL && det != NULL &&
	    (exc = PyObject_CallFunctionObjArgs(remote, et, msg, det,
	    NULL)) != NULL) {
		if (PyObject_SetAttrString(exc, "error_type", et) == 0 &&
		    PyObject_SetAttrString(exc, "message", msg) == 0 &&
		    PyObject_SetAttrString(exc, "details", det) == 0)
			PyErr_SetObject(remote, exc);
		Py_DECREF(exc);
	}
	Py_DECREF(et);
	Py_XDECREF(msg);
	Py_XDECREF(det);
out:
	Py_DECREF(err);
}

static int
parse_timeout(PyObject *o, double *t)
{
	if (o == Py_None) {
		*t = -1;
		return 0;
	}
	*t = PyFloat_AsDouble(o);
	if (*t == -1 && PyErr_Occurred())
		return -1;
	if (*t < 0 || *t != *t) {
		PyErr_SetString(PyExc_ValueError,
		    "timeout must be None or >= 0");
		return -1;
	}
	return 0;
}

static int
Connection_init(ConnectionObject *self, PyObject *args, PyObject *kwds)
{
	static char *kwlist[] = { "path", "timeout", NULL };
	PyObject *path_obj, *timeout_obj = Py_None, *path_bytes = NULL;
	struct sockaddr_un sa;
	const char *path;
	Py_ssize_t plen;
	double timeout;
	int fd, rc, err;

	if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|O:Connection", kwlist,
	    &path_obj, &timeout_obj))
		return -1;
	if (self->busy) {
		PyErr_SetString(PyExc_RuntimeError, "dirty Connection is in "
		    "use by another thread");
		return -1;
	}
	if (parse_timeout(timeout_obj, &timeout) == -1)
		return -1;
	if (!PyUnicode_FSConverter(path_obj, &path_bytes))
		return -1;
	path = PyBytes_AS_STRING(path_bytes);
	plen = PyBytes_GET_SIZE(path_bytes);
	if ((size_t)plen >= sizeof(sa.sun_path)) {
		Py_DECREF(path_bytes);
		PyErr_SetString(PyExc_ValueError, "socket path too long");
		return -1;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, path, (size_t)plen);

	if (self->fd != -1)
		conn_close_fd(self);
	Py_BEGIN_ALLOW_THREADS
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	err = errno;
	if (fd != -1) {
		do
			rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
		while (rc == -1 && errno == EINTR);
		err = errno;
		if (rc == -1) {
			close(fd);
			fd = -1;
		}
	}
	Py_END_ALLOW_THREADS
	if (fd == -1) {
		errno = err;
		PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, path_obj);
		Py_DECREF(path_bytes);
		return -1;
	}
	Py_DECREF(path_bytes);
	self->fd = fd;
	self->timeout = timeout;
	self->sockopt_us = 0;
	self->sndopt_us = 0;
	self->next_id = 1;
	dirty_reader_reset(&self->rd);
	Py_INCREF(path_obj);
	Py_XSETREF(self->path, path_obj);
	return 0;
}

static PyObject *
Connection_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
	ConnectionObject *self = (ConnectionObject *)type->tp_alloc(type, 0);

	if (self == NULL)
		return NULL;
	self->fd = -1;
	self->timeout = -1;
	dirty_buf_init(&self->wbuf);
	dirty_reader_init(&self->rd);
	return (PyObject *)self;
}

static void
Connection_dealloc(ConnectionObject *self)
{
	conn_close_fd(self);
	dirty_buf_free(&self->wbuf);
	dirty_reader_free(&self->rd);
	Py_CLEAR(self->path);
	Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Encode and send a REQUEST; returns its id via *id. */
/* Encodes one frame with the given id into b; 0, or -1 with a Python
 * exception set. */
typedef int (*frame_encoder)(struct dirty_buf *b, uint64_t id, void *arg);

/* Encode one frame with a fresh id (*id) into wbuf and send it. */
static int
conn_send_frame(ConnectionObject *self, frame_encoder encode, void *arg,
    uint64_t *id)
{
	*id = self->next_id++;
	dirty_buf_reset(&self->wbuf);
	if (encode(&self->wbuf, *id, arg) == -1)
		return -1;
	return conn_send(self);
}

/* A call's sending half, without waiting for a reply (stream_start,
 * send_raw): the frame's id as an int, or NULL with an exception. */
static PyObject *
conn_send_only(ConnectionObject *self, frame_encoder encode, void *arg)
{
	PyObject *r = NULL;
	double deadline;
	uint64_t id;

	if (conn_begin(self, &deadline) == -1)
		return NULL;
	if (conn_send_frame(self, encode, arg, &id) == 0)
		r = PyLong_FromUnsignedLongLong(id);
	conn_end(self);
	return r;
}

struct request_args {
	PyObject *app_path, *action, *args, *kwargs;
};

static int
encode_request(struct dirty_buf *b, uint64_t id, void *arg)
{
	struct request_args *r = arg;

	return dirty_py_put_request(b, id, r->app_path, r->action, r->args,
	    r->kwargs);
}

static int
conn_send_request(ConnectionObject *self, PyObject *app_path,
    PyObject *action, PyObject *args, PyObject *kwargs, uint64_t *id)
{
	struct request_args r = { app_path, action, args, kwargs };

	return conn_send_frame(self, encode_request, &r, id);
}

/* fmt: "UU|OO:<method name>" */
static int
parse_call_args(PyObject *args, PyObject *kwds, const char *fmt,
    PyObject **app_path, PyObject **action, PyObject **a, PyObject **kw)
{
	static char *kwlist[] = { "app_path", "action", "args", "kwargs",
	    NULL };

	*a = Py_None;
	*kw = Py_None;
	return PyArg_ParseTupleAndKeywords(args, kwds, fmt, kwlist, app_path,
	    action, a, kw) ? 0 : -1;
}

static PyObject *
Connection_request(ConnectionObject *self, PyObject *args, PyObject *kwds)
{
	PyObject *app_path, *action, *a, *kw, *r = NULL;
	struct dirty_header h;
	const uint8_t *p;
	double deadline;
	uint64_t id;

	if (parse_call_args(args, kwds, "UU|OO:request", &app_path, &action, &a,
	    &kw) == -1)
		return NULL;
	if (conn_begin(self, &deadline) == -1)
		return NULL;
	if (conn_send_request(self, app_path, action, a, kw, &id) == -1)
		goto out;
	for (;;) {
		if (conn_read_frame(self, id, deadline, &h, &p) == -1)
			goto out;
		switch (h.type) {
		case DIRTY_MSG_RESPONSE:
			if ((r = dirty_py_decode_field(p, h.length, "result")) == NULL)
				conn_close_fd(self);
			goto out;
		case DIRTY_MSG_ERROR:
			raise_remote(self, p, h.length);
			goto out;
		default:
			conn_close_fd(self);
			PyErr_Format(dirty_py_protocol_error(), "unexpected "
			    "message type 0x%02x in reply to a request "
			    "(a streaming action? use stream_start)", h.type);
			goto out;
		}
	}
out:
	conn_end(self);
	return r;
}

static PyObject *
Connection_stream_start(ConnectionObject *self, PyObject *args,
    PyObject *kwds)
{
	struct request_args r;

	if (parse_call_args(args, kwds, "UU|OO:stream_start", &r.app_path,
	    &r.action, &r.args, &r.kwargs) == -1)
		return NULL;
	return conn_send_only(self, encode_request, &r);
}

/* The frame answering request id arg, read within the timeout: 0 with
 * *h and *p (then conn_end() is the caller's), or -1 with an exception
 * (nothing to end). */
static int
conn_begin_read(ConnectionObject *self, PyObject *arg, struct dirty_header *h,
    const uint8_t **p)
{
	unsigned long long id;
	double deadline;

	if (!dirty_py_id_converter(arg, &id))
		return -1;
	if (conn_begin(self, &deadline) == -1)
		return -1;
	if (conn_read_frame(self, id, deadline, h, p) == -1) {
		conn_end(self);
		return -1;
	}
	return 0;
}

static PyObject *
Connection_stream_next(ConnectionObject *self, PyObject *arg)
{
	struct dirty_header h;
	const uint8_t *p;
	PyObject *v, *r = NULL;

	if (conn_begin_read(self, arg, &h, &p) == -1)
		return NULL;
	switch (h.type) {
	case DIRTY_MSG_CHUNK:
	case DIRTY_MSG_RESPONSE:
		if ((v = dirty_py_decode_field(p, h.length,
		    h.type == DIRTY_MSG_CHUNK ? "data" : "result")) == NULL) {
			conn_close_fd(self);
			break;
		}
		r = Py_BuildValue("(iN)", (int)h.type, v);
		break;
	case DIRTY_MSG_END:
		r = Py_BuildValue("(iO)", (int)h.type, Py_None);
		break;
	case DIRTY_MSG_ERROR:
		raise_remote(self, p, h.length);
		break;
	default:
		conn_close_fd(self);
		PyErr_Format(dirty_py_protocol_error(), "unexpected message "
		    "type 0x%02x in a stream", h.type);
	}
	conn_end(self);
	return r;
}

struct raw_args {
	int type;
	PyObject *payload;
};

static int
encode_raw(struct dirty_buf *b, uint64_t id, void *arg)
{
	struct raw_args *r = arg;

	return dirty_py_put_keyed_frame(b, (uint8_t)r->type, id, NULL,
	    r->payload == Py_None ? NULL : r->payload);
}

static PyObject *
Connection_send_raw(ConnectionObject *self, PyObject *args)
{
	struct raw_args r;

	if (!PyArg_ParseTuple(args, "iO:send_raw", &r.type, &r.payload))
		return NULL;
	if (dirty_py_msg_type_arg(r.type) == -1)
		return NULL;
	return conn_send_only(self, encode_raw, &r);
}

static PyObject *
Connection_recv_reply(ConnectionObject *self, PyObject *arg)
{
	struct dirty_header h;
	const uint8_t *p;
	PyObject *v, *r = NULL;

	if (conn_begin_read(self, arg, &h, &p) == -1)
		return NULL;
	if (h.length == 0) {
		Py_INCREF(Py_None);
		v = Py_None;
	} else if ((v = dirty_py_decode_payload(p, h.length)) == NULL) {
		conn_close_fd(self);
		goto out;
	}
	r = Py_BuildValue("(iN)", (int)h.type, v);
out:
	conn_end(self);
	return r;
}

static PyObject *
Connection_close(ConnectionObject *self, PyObject *unused)
{
	if (self->busy) {
		/* another thread is blocked in a call: wake it with EOF; it
		 * closes the descriptor when it returns */
		if (self->fd != -1)
			shutdown(self->fd, SHUT_RDWR);
		self->close_pending = 1;
	} else
		conn_close_fd(self);
	Py_RETURN_NONE;
}

static PyObject *
Connection_fileno(ConnectionObject *self, PyObject *unused)
{
	return PyLong_FromLong(self->fd);
}

/* Hand the socket over (cunicorn's event loop relays a stream): returns
 * (fd, the bytes read but not consumed yet); the connection is closed
 * afterwards without closing the fd, which the caller now owns. */
static PyObject *
Connection_detach(ConnectionObject *self, PyObject *unused)
{
	PyObject *r;
	size_t n;

	if (self->busy || self->fd == -1) {
		PyErr_SetString(PyExc_OSError, self->fd == -1 ? "connection closed" :
		    "connection busy");
		return NULL;
	}
	const uint8_t *unread = dirty_reader_peek(&self->rd, &n);
	r = Py_BuildValue("(iy#)", self->fd, (const char *)unread,
	    (Py_ssize_t)n);
	if (r == NULL)
		return NULL;
	self->fd = -1;
	dirty_reader_reset(&self->rd);
	return r;
}

static PyObject *
Connection_enter(ConnectionObject *self, PyObject *unused)
{
	Py_INCREF(self);
	return (PyObject *)self;
}

static PyObject *
Connection_exit(ConnectionObject *self, PyObject *args)
{
	return Connection_close(self, NULL);
}

static PyObject *
Connection_get_timeout(ConnectionObject *self, void *closure)
{
	if (self->timeout < 0)
		Py_RETURN_NONE;
	return PyFloat_FromDouble(self->timeout);
}

static int
Connection_set_timeout(ConnectionObject *self, PyObject *v, void *closure)
{
	double t;

	if (v == NULL) {
		PyErr_SetString(PyExc_AttributeError, "cannot delete timeout");
		return -1;
	}
	if (parse_timeout(v, &t) == -1)
		return -1;
	self->timeout = t;
	return 0;
}

static PyObject *
Connection_get_closed(ConnectionObject *self, void *closure)
{
	return PyBool_FromLong(self->fd == -1);
}

static PyObject *
Connection_get_path(ConnectionObject *self, void *closure)
{
	if (self->path == NULL)
		Py_RETURN_NONE;
	Py_INCREF(self->path);
	return self->path;
}

static PyMethodDef Connection_methods[] = {
	{ "request", (PyCFunction)(void (*)(void))Connection_request,
	    METH_VARARGS | METH_KEYWORDS,
	    "request(app_path, action, args=(), kwargs=None) -> result\n"
	    "Send a REQUEST and wait for its RESPONSE (raises RemoteError "
	    "for an ERROR)." },
	{ "stream_start", (PyCFunction)(void (*)(void))Connection_stream_start,
	    METH_VARARGS | METH_KEYWORDS,
	    "stream_start(app_path, action, args=(), kwargs=None) -> id" },
	{ "stream_next", (PyCFunction)Connection_stream_next, METH_O,
	    "stream_next(id) -> (kind, value): (MSG_TYPE_CHUNK, data), "
	    "(MSG_TYPE_END, None) or (MSG_TYPE_RESPONSE, result); raises "
	    "RemoteError for an ERROR." },
	{ "send_raw", (PyCFunction)Connection_send_raw, METH_VARARGS,
	    "send_raw(type, payload_or_None) -> id" },
	{ "recv_reply", (PyCFunction)Connection_recv_reply, METH_O,
	    "recv_reply(id) -> (type, payload_or_None); does not raise for "
	    "ERROR frames." },
	{ "close", (PyCFunction)Connection_close, METH_NOARGS, NULL },
	{ "fileno", (PyCFunction)Connection_fileno, METH_NOARGS, NULL },
	{ "detach", (PyCFunction)Connection_detach, METH_NOARGS,
	    "detach() -> (fd, unread bytes); the caller owns the fd" },
	{ "__enter__", (PyCFunction)Connection_enter, METH_NOARGS, NULL },
	{ "__exit__", (PyCFunction)Connection_exit, METH_VARARGS, NULL },
	{ NULL, NULL, 0, NULL },
};

static PyGetSetDef Connection_getset[] = {
	{ "timeout", (getter)Connection_get_timeout,
	    (setter)Connection_set_timeout, "seconds per call, or None", NULL },
	{ "closed", (getter)Connection_get_closed, NULL, NULL, NULL },
	{ "path", (getter)Connection_get_path, NULL, NULL, NULL },
	{ NULL, NULL, NULL, NULL, NULL },
};

PyTypeObject dirty_py_connection_type = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "_cunicorn_dirty.Connection",
	.tp_doc = "Connection(path, timeout=None): a blocking client "
	    "connection to the dirty arbiter's Unix socket.  One call at a "
	    "time; timeout is per call, in seconds.",
	.tp_basicsize = sizeof(ConnectionObject),
	.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
	.tp_new = Connection_new,
	.tp_init = (initproc)Connection_init,
	.tp_dealloc = (destructor)Connection_dealloc,
	.tp_methods = Connection_methods,
	.tp_getset = Connection_getset,
};
