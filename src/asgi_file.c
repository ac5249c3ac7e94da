/*
 * asgi_file.c — the file of an http.response.pathsend (part of
 * _cunicorn_asgi; asgi_int.h names the files): opened and checked when
 * the app names it, then sent with sendfile(2) (http_conn.c's
 * http_io_sendfile_nowait, the step the WSGI workers' file_wrapper
 * uses) as the client's socket takes it, from the event loop: never
 * waiting, so the loop serves every other connection meanwhile.
 *
 * The transport owns the socket and may still hold bytes of earlier
 * writes (a previous response a slow client has not read): the head goes
 * straight to the socket only when the transport holds nothing (else
 * through it), the file only once the transport's buffer is empty, and
 * nothing else is written through the transport while the file is under
 * way (R_FILE refuses the app's sends; asgi_refuse and error pages check
 * file_fd).
 * A file that cannot go at once waits in the worker's epoll set file_ep
 * (one descriptor the loop reads: asgi_proto.c's on_files calls
 * asgi_file_ready, then asgi_file_step for each), through our own
 * duplicate of the socket: a descriptor number the transport might close
 * and the kernel hand to another connection is never written to or
 * watched.  The client must take a byte within the I/O timeout (PS_FILE's
 * deadline), or the connection is closed.
 *
 * Under TLS (asgi.tls) the socket carries records only the transport can
 * make: the head and the file go through the transport, the file read
 * in pieces of TLS_PIECE, written while the transport does not ask the
 * protocol to pause (pause_writing), at most FILE_STEP_MAX a loop turn;
 * resume_writing (or the cap) schedules the next step (on_file_soon).
 * The worker holds at most about two pieces and the transport's high
 * water mark of a file, however slow the reader.  The same deadline
 * closes a client that lets the transport's buffer stand still.
 *
 * Owns: a Proto's file fields (file_fd .. file_soon, sock_fd), the
 * epoll set and the references it holds (a Proto in it is kept alive).
 * Every descriptor it opens is closed by the end of the file, its
 * failure, or asgi_file_abort (proto_close, connection_lost, dealloc).
 *
 * Never: writes through the transport but a head the socket refused
 * (plain) or pieces as the transport's flow control allows (TLS), writes
 * a TLS connection's socket, reads more than a piece of the file into
 * memory, or
 * waits (a page-cache miss is the kernel's: sendfile reads the disk
 * inline, as nginx without aio does).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "asgi_int.h"
#include "http_conn.h"
#include "log.h"
#include "python.h"
#include "util.h"

#define STALL_NONE_MS	(UINT64_C(1) << 40)	/* timeout 0: no I/O timeout */

/* Bytes of a file one step sends at most before the loop turns (the
 * set is level-triggered: a socket that can take more is stepped again
 * on the next turn, after the other callbacks). */
#define FILE_STEP_MAX	((uint64_t)4 << 20)

/* TLS: bytes of the file read and handed to the transport at a time. */
#define TLS_PIECE	((size_t)256 << 10)

/* ---- opening ---- */

/* The app's path (str or bytes, absolute) opened for reading: a regular
 * file's descriptor and size, and its path as bytes (new).  -1 with an
 * exception for the app (OSError naming the file: missing, unreadable,
 * a directory or something else than a regular file). */
int
asgi_file_open(PyObject *path, int *fdp, uint64_t *size, PyObject **fspath)
{
	PyObject *b = NULL;
	struct stat st;
	int fd, e = 0;

	*fspath = NULL;
	if (path == NULL || (!PyUnicode_Check(path) && !PyBytes_Check(path))) {
		PyErr_Format(PyExc_TypeError, "http.response.pathsend's path must be a str, "
		    "not %.100s", path == NULL ? "missing" : Py_TYPE(path)->tp_name);
		return -1;
	}
	if (!PyUnicode_FSConverter(path, &b))
		return -1;		/* an embedded NUL: ValueError */
	if (PyBytes_AS_STRING(b)[0] != '/') {
		PyErr_Format(PyExc_ValueError, "http.response.pathsend needs an absolute path, "
		    "not %R", path);
		Py_DECREF(b);
		return -1;
	}
	/* not a regular file: refused before it is opened, so that opening a
	 * device or a FIFO has no effect (a FIFO's writer released, a watchdog
	 * armed); the fstat below still checks what was opened.  O_NONBLOCK:
	 * a FIFO swapped in between must not hold the loop in open() */
	if (stat(PyBytes_AS_STRING(b), &st) == 0 && !S_ISREG(st.st_mode)) {
		errno = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
		PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, path);
		Py_DECREF(b);
		return -1;
	}
	fd = open(PyBytes_AS_STRING(b), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd == -1) {
		PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, path);
		Py_DECREF(b);
		return -1;
	}
	if (fstat(fd, &st) == -1)
		e = errno;
	else if (!S_ISREG(st.st_mode))	/* a device, FIFO or socket: not a file to send */
		e = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
	if (e != 0) {
		close(fd);
		errno = e;
		PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, path);
		Py_DECREF(b);
		return -1;
	}
	*fdp = fd;
	*size = (uint64_t)st.st_size;
	*fspath = b;
	return 0;
}

/* ---- the wait for the socket ---- */

static uint64_t
stall_ms(void)
{
	int ms = http_io_timeout_ms();

	return ms >= 0 ? (uint64_t)ms : STALL_NONE_MS;
}

/* The transport's socket, asked once per connection: its number is
 * used only while the transport says it is open (asked here each time),
 * in the same call.  A transport that closed has closed that number,
 * which the kernel may already have given to another connection (uvloop
 * closes it before connection_lost comes): from then on only our
 * duplicate (file_sock) is written to or watched. */
static int
socket_of(Proto *p)
{
	PyObject *sock, *fd, *closing;
	long n = -1;

	if (p->transport == NULL)
		return -1;
	closing = PyObject_CallMethod(p->transport, "is_closing", NULL);
	if (closing != Py_False) {
		Py_XDECREF(closing);
		PyErr_Clear();
		return -1;
	}
	Py_DECREF(closing);
	if (p->sock_fd >= 0)
		return p->sock_fd;
	sock = PyObject_CallMethod(p->transport, "get_extra_info", "s", "socket");
	if (sock != NULL && sock != Py_None && (fd = PyObject_CallMethod(sock, "fileno", NULL))) {
		n = PyLong_AsLong(fd);
		Py_DECREF(fd);
	}
	Py_XDECREF(sock);
	PyErr_Clear();
	if (n < 0 || n > INT32_MAX)
		return -1;
	return p->sock_fd = (int)n;
}

/* Bytes the transport holds, not yet in the socket (0 when it cannot
 * say: a transport that is closing). */
static size_t
transport_behind(Proto *p)
{
	PyObject *r;
	Py_ssize_t n = 0;

	if (p->transport == NULL)
		return 0;
	r = PyObject_CallMethodNoArgs(p->transport, asgi.s_get_write_buffer_size);
	if (r != NULL)
		n = PyLong_AsSsize_t(r);
	Py_XDECREF(r);
	PyErr_Clear();
	return n > 0 ? (size_t)n : 0;
}

/* The epoll set, made and handed to the loop on the first wait. */
static int
file_ep(void)
{
	PyObject *r;

	if (asgi.file_ep >= 0)
		return asgi.file_ep;
	if ((asgi.file_ep = epoll_create1(EPOLL_CLOEXEC)) == -1) {
		log_warn("epoll_create1 (pathsend)");
		return -1;
	}
	r = PyObject_CallMethod(asgi.loop, "add_reader", "iO", asgi.file_ep, asgi.on_files);
	if (r == NULL) {
		python_log_exception(LOG_ERROR, LOG_ERROR, "pathsend: cannot watch its sockets");
		close(asgi.file_ep);
		asgi.file_ep = -1;
		return -1;
	}
	Py_DECREF(r);
	return asgi.file_ep;
}

/* Into the set (a reference to p held while there).  0 or -1. */
static int
watch(Proto *p)
{
	struct epoll_event ev = { .events = EPOLLOUT, .data.ptr = p };

	if (p->file_sock >= 0)
		return 0;
	if (file_ep() == -1)
		return -1;
	if ((p->file_sock = fcntl(p->sock_fd, F_DUPFD_CLOEXEC, 0)) == -1) {
		log_warn("dup (pathsend)");
		return -1;
	}
	if (epoll_ctl(asgi.file_ep, EPOLL_CTL_ADD, p->file_sock, &ev) == -1) {
		log_warn("epoll_ctl (pathsend)");
		close(p->file_sock);
		p->file_sock = -1;
		return -1;
	}
	Py_INCREF(p);
	return 0;
}

static void
unwatch(Proto *p)
{
	if (p->file_sock < 0)
		return;
	(void)epoll_ctl(asgi.file_ep, EPOLL_CTL_DEL, p->file_sock, NULL);
	close(p->file_sock);
	p->file_sock = -1;
	Py_DECREF(p);		/* the transport still holds it */
}

/* The file is over (sent, failed, or given up): everything it held. */
static void
file_end(Proto *p)
{
	unwatch(p);
	if (p->file_fd >= 0)
		close(p->file_fd);
	p->file_fd = -1;
	p->file_left = 0;
	free(p->file_path);
	p->file_path = NULL;
}

void
asgi_file_abort(Proto *p)
{
	if (p->file_fd >= 0 && p->file_left > 0)
		log_debug("pathsend: %s cut, %llu bytes unsent", p->file_path ? p->file_path : "",
		    (unsigned long long)p->file_left);
	file_end(p);
	future_resolve(&p->file_waiter, Py_None);
	PyErr_Clear();
}

/* The file failed: logged by the caller; the connection closes (its
 * head promised bytes that will not come). */
static int
file_failed(Proto *p)
{
	file_end(p);
	proto_close(p);
	return ASGI_FILE_FAILED;
}

/* The socket (or the transport ahead of the file) is full: wait in the
 * set, the deadline renewed when something moved. */
static int
file_wait(Proto *p, int moved)
{
	if (watch(p) == -1)
		return file_failed(p);
	if (moved || p->state != PS_FILE)
		set_state(p, PS_FILE, stall_ms());
	return ASGI_FILE_WAITS;
}

/* ---- sending ---- */

static int file_send(Proto *p, int behind_checked);
static int tls_send(Proto *p);

/* The response's head (the transport's socket is open: the caller
 * asked): straight to the socket when the transport holds nothing (with
 * MSG_MORE, so that the head and the file's first bytes leave as one
 * segment; uvloop would only queue it for the end of the loop's turn),
 * and what the socket refuses through the transport, which then holds
 * it ahead of the file.  1: all of it went straight; 0: through the
 * transport; -1: the transport refused it (an exception). */
static int
send_head(Proto *p, PyObject *head)
{
	const char *h = PyBytes_AS_STRING(head);
	size_t len = (size_t)PyBytes_GET_SIZE(head);
	ssize_t n = 0;
	PyObject *rest;
	int rc;

	if (transport_behind(p) == 0) {
		do
			n = send(p->sock_fd, h, len, MSG_NOSIGNAL | MSG_MORE | MSG_DONTWAIT);
		while (n == -1 && errno == EINTR);
		if (n == (ssize_t)len)
			return 1;
		if (n < 0)
			n = 0;	/* full, or an error the transport meets too */
	}
	if ((rest = PyBytes_FromStringAndSize(h + n, (Py_ssize_t)(len - (size_t)n))) == NULL)
		return -1;
	rc = transport_write(p, rest);
	Py_DECREF(rest);
	return rc;
}

/* Send head, then count bytes of fd (owned from now on) from its start.
 * DONE: all sent (the caller ends the response); WAITS: the rest goes as
 * the socket drains (state PS_FILE; asgi_file_step); FAILED: logged, the
 * connection is closing; -1: the head could not be handed to the
 * transport (an exception for the app; fd closed). */
int
asgi_file_start(Proto *p, PyObject *head, int fd, uint64_t count, const char *path)
{
	int h;

	p->file_fd = fd;
	p->file_pos = 0;
	p->file_left = count;
	p->file_behind = 0;
	free(p->file_path);
	p->file_path = xstrdup(path);
	if (asgi.tls) {
		/* the transport encrypts: the head and the file go through it */
		if (p->lost || p->state == PS_CLOSING || p->transport == NULL) {
			log_debug("pathsend: %s not sent: the connection is closing", path);
			return file_failed(p);
		}
		if (transport_write(p, head) == -1) {
			file_end(p);
			return -1;
		}
		return tls_send(p);
	}
	if (p->lost || p->state == PS_CLOSING || socket_of(p) == -1) {
		log_debug("pathsend: %s not sent: the connection is closing", path);
		return file_failed(p);
	}
	/* the transport's socket is open now: the head and the first step
	 * write to it; the step makes our duplicate if the file must wait */
	if ((h = send_head(p, head)) == -1) {
		file_end(p);
		return -1;
	}
	return file_send(p, h == 1);
}

/* What the socket takes now.  DONE, WAITS or FAILED as asgi_file_start. */
int
asgi_file_step(Proto *p)
{
	return asgi.tls ? tls_send(p) : file_send(p, 0);
}

/* The step; behind_checked: the transport is known to hold nothing. */
static int
file_send(Proto *p, int behind_checked)
{
	uint64_t before = p->file_left;
	size_t behind;
	int r;

	if (p->file_fd < 0)
		return ASGI_FILE_FAILED;
	if (p->lost || p->state == PS_CLOSING) {
		asgi_file_abort(p);
		return ASGI_FILE_FAILED;
	}
	if (!behind_checked && (behind = transport_behind(p)) > 0) {
		/* earlier bytes go first: the transport writes them as the
		 * socket drains, and the set says when to look again */
		int moved = p->file_behind == 0 || behind < p->file_behind;
		p->file_behind = behind;
		return file_wait(p, moved);
	}
	p->file_behind = 0;
	/* at most FILE_STEP_MAX per turn of the loop: a client (or a page
	 * cache) faster than the step would otherwise keep every other
	 * connection, timer and the heartbeat waiting for the whole file */
	uint64_t step = p->file_left > FILE_STEP_MAX ? FILE_STEP_MAX : p->file_left;
	uint64_t later = p->file_left - step;
	r = http_io_sendfile_nowait(p->file_sock >= 0 ? p->file_sock : p->sock_fd, p->file_fd,
	    &p->file_pos, &step);
	p->file_left = later + step;
	p->resp_sent += before - p->file_left;
	switch (r) {
	case HTTP_FILE_SENT:
		if (p->file_left > 0)	/* the step's cap: the rest on a later turn */
			return file_wait(p, 1);
		file_end(p);
		return ASGI_FILE_DONE;
	case HTTP_FILE_FULL:
		return file_wait(p, before != p->file_left);
	case HTTP_FILE_SHORT:
		log_errorx("pathsend: %s ended %llu bytes short of the response's length "
		    "(it shrank, or its Content-Length is wrong): closing the connection",
		    p->file_path, (unsigned long long)p->file_left);
		return file_failed(p);
	default:
		if (errno == EPIPE || errno == ECONNRESET)
			log_debug("pathsend: %s cut: the client went away", p->file_path);
		else
			log_errorx("pathsend: cannot send %s: %s: closing the connection",
			    p->file_path, strerror(errno));
		return file_failed(p);
	}
}

/* ---- under TLS: through the transport ---- */

/* The next step on a later turn of the loop (once: file_soon), not from
 * inside the transport's callback that said it can take more. */
static int
tls_soon(Proto *p)
{
	PyObject *r;

	if (p->file_soon)
		return 0;
	r = PyObject_CallMethodObjArgs(asgi.loop, asgi.s_call_soon, asgi.on_file_soon, p, NULL);
	if (r == NULL) {
		python_log_exception(LOG_ERROR, LOG_ERROR, "pathsend: cannot schedule the file");
		return -1;
	}
	Py_DECREF(r);
	p->file_soon = 1;
	return 0;
}

/* The transport resumed writing (asgi_proto.c's resume_writing): a TLS
 * file under way goes on, on a later turn.  WAITS, or FAILED (logged;
 * the connection is closing). */
int
asgi_file_resumed(Proto *p)
{
	if (!asgi.tls || p->file_fd < 0 || tls_soon(p) == 0)
		return ASGI_FILE_WAITS;
	return file_failed(p);
}

/* on_file_soon's turn came (asgi_proto.c): 1 when the file steps now
 * (0: it ended meanwhile, or the transport paused again and its
 * resume_writing schedules the step). */
int
asgi_file_soon_due(Proto *p)
{
	p->file_soon = 0;
	return p->file_fd >= 0 && !p->paused_writing;
}

/* Pieces of the file into the transport while it takes them without
 * asking to pause, at most FILE_STEP_MAX.  DONE, WAITS or FAILED as
 * asgi_file_start. */
static int
tls_send(Proto *p)
{
	uint64_t turn = 0;

	if (p->file_fd < 0)
		return ASGI_FILE_FAILED;
	while (p->file_left > 0 && !p->paused_writing && turn < FILE_STEP_MAX) {
		if (p->lost || p->state == PS_CLOSING || p->transport == NULL) {
			asgi_file_abort(p);
			return ASGI_FILE_FAILED;
		}
		size_t want = p->file_left > TLS_PIECE ? TLS_PIECE : (size_t)p->file_left;
		PyObject *piece = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)want);
		ssize_t n;
		if (piece == NULL) {
			PyErr_Clear();
			log_errorx("pathsend: %s: out of memory: closing the connection",
			    p->file_path);
			return file_failed(p);
		}
		do
			n = pread(p->file_fd, PyBytes_AS_STRING(piece), want, p->file_pos);
		while (n == -1 && errno == EINTR);
		if (n <= 0) {
			Py_DECREF(piece);
			if (n == 0)
				log_errorx("pathsend: %s ended %llu bytes short of the response's "
				    "length (it shrank, or its Content-Length is wrong): closing "
				    "the connection", p->file_path, (unsigned long long)p->file_left);
			else
				log_errorx("pathsend: cannot read %s: %s: closing the connection",
				    p->file_path, strerror(errno));
			return file_failed(p);
		}
		if ((size_t)n < want && _PyBytes_Resize(&piece, n) == -1) {
			PyErr_Clear();
			return file_failed(p);
		}
		int w = transport_write(p, piece);
		Py_DECREF(piece);
		if (w == -1) {
			python_log_exception(LOG_DEBUG, LOG_DEBUG, "pathsend: the transport refused");
			return file_failed(p);
		}
		p->file_pos += n;
		p->file_left -= (uint64_t)n;
		p->resp_sent += (uint64_t)n;
		turn += (uint64_t)n;
	}
	if (p->file_left == 0) {
		file_end(p);
		return ASGI_FILE_DONE;
	}
	if (p->lost || p->state == PS_CLOSING) {
		asgi_file_abort(p);
		return ASGI_FILE_FAILED;
	}
	/* paused: resume_writing schedules the next step; the cap: the
	 * next turn does */
	if (!p->paused_writing && tls_soon(p) == -1)
		return file_failed(p);
	if (turn > 0 || p->state != PS_FILE)
		set_state(p, PS_FILE, stall_ms());
	return ASGI_FILE_WAITS;
}

/* ---- the set ---- */

/* The sockets of the set that can take more (references, for the
 * caller to drop): at most max, without waiting. */
int
asgi_file_ready(Proto **out, int max)
{
	struct epoll_event ev[64];
	int n;

	if (asgi.file_ep < 0)
		return 0;
	if (max > 64)
		max = 64;
	do
		n = epoll_wait(asgi.file_ep, ev, max, 0);
	while (n == -1 && errno == EINTR);
	for (int i = 0; i < n; i++) {
		out[i] = ev[i].data.ptr;
		Py_INCREF(out[i]);	/* stepping one may close another */
	}
	return n > 0 ? n : 0;
}
