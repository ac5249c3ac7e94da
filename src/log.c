/*
 * log.c — error log, access log and the allocation wrappers (see log.h).
 *
 * Owns the two log file descriptors.  Lines are formatted into a stack
 * buffer and written with one write(2), so lines from several processes
 * sharing a file (O_APPEND) never interleave mid-line.  Every record at
 * WARNING or above is first shown to the count hook (statsd.c's, while
 * metrics are sent), whatever the level lets through; log.c knows
 * nothing else of statsd.
 *
 * One policy for every line written to a log (ours, the access log's,
 * wsgi.errors'): a log whose reader stalls must not stall the server.  A
 * regular file is written as it is (a disk does not stall on a reader).
 * A pipe, FIFO, socket or terminal is written without blocking — a
 * socket with send(MSG_DONTWAIT), the others through our own O_NONBLOCK
 * open of the same pipe (/proc/self/fd/N: a description of our own, so
 * the O_NONBLOCK flag never reaches the shared one that Python's
 * sys.stderr, the other processes and the log reader hold) — and a
 * line waits at most SINK_WAIT_MS for room.  Past that it is dropped and
 * counted, and the sink is "stalled": further lines are tried once,
 * without waiting, until one goes through; then a WARNING says how many
 * were lost.  A line longer than PIPE_BUF may be cut by the drop: the next
 * line written starts with a newline, so it is not glued to the head of
 * the lost one.  So a reader that keeps up (a 64 KiB pipe, bursts) loses
 * nothing, and one that hangs costs each process one SINK_WAIT_MS wait,
 * then nothing.  Never called from a signal handler; safe from several
 * threads (the state is atomic; each line is one write when it fits
 * PIPE_BUF, so lines do not interleave).  The same policy writes to a
 * syslog receiver (log_syslog.c, through log_int.h): error lines, and
 * access lines, go there too when syslog is on.
 */
#include "log.h"
#include "log_int.h"
#include "log_syslog.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <poll.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>

static int error_fd = STDERR_FILENO;
static int access_fd = -1;
static int log_level = LOG_INFO;
static char *error_path;	/* NULL: stderr */
static char *access_path;	/* NULL: off or stdout (access_fd says) */
static int forked_child;	/* fatal() ends us with _exit() */
static void (*count_hook)(int level, int exception);	/* atomic */

/* The calling thread's wait scope (log.h): what a wait releases first,
 * and whether one did. */
static __thread void *(*scope_release)(void);
static __thread void (*scope_reacquire)(void *);
static __thread void *scope_token;
static __thread int scope_released;

static struct sink error_sink = { .nowait_fd = -1, .end = '\n' };
static struct sink access_sink = { .nowait_fd = -1, .end = '\n' };

int
log_level_parse(const char *name)
{
	static const struct { const char *name; int level; } levels[] = {
		{ "debug", LOG_DEBUG }, { "info", LOG_INFO },
		{ "warning", LOG_WARNING }, { "warn", LOG_WARNING },
		{ "error", LOG_ERROR }, { "critical", LOG_CRITICAL },
	};
	for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++)
		if (strcasecmp(name, levels[i].name) == 0)
			return levels[i].level;
	return -1;
}

static const char *
level_name(int level)
{
	if (level >= LOG_CRITICAL) return "CRITICAL";
	if (level >= LOG_ERROR) return "ERROR";
	if (level >= LOG_WARNING) return "WARNING";
	if (level >= LOG_INFO) return "INFO";
	return "DEBUG";
}

static void
sink_detach(struct sink *k)
{
	if (k->own && k->nowait_fd != -1)
		close(k->nowait_fd);
	k->nowait_fd = -1;
	k->own = k->socket = 0;
}

/* Decide how fd is written (see the header).  The counters stay. */
static void
sink_attach(struct sink *k, int fd)
{
	struct stat st;
	char path[32];

	sink_detach(k);
	if (fd == -1 || fstat(fd, &st) == -1 || S_ISREG(st.st_mode))
		return;
	if (S_ISSOCK(st.st_mode)) {
		k->nowait_fd = fd;
		k->socket = 1;
		return;
	}
	/* A FIFO with no reader (ENXIO), no /proc: plain writes, as before. */
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	k->nowait_fd = open(path, O_WRONLY | O_APPEND | O_NONBLOCK | O_NOCTTY |
	    O_CLOEXEC);
	k->own = k->nowait_fd != -1;
}

static int
open_append(const char *path)
{
	return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
}

int
log_open(const char *errorlog, const char *accesslog, int level)
{
	int efd = STDERR_FILENO, afd = -1;

	if (errorlog != NULL && strcmp(errorlog, "-") != 0) {
		if ((efd = open_append(errorlog)) == -1)
			return -1;
	}
	if (accesslog != NULL) {
		if (strcmp(accesslog, "-") == 0)
			afd = STDOUT_FILENO;
		else if ((afd = open_append(accesslog)) == -1) {
			int saved = errno;
			if (efd != STDERR_FILENO)
				close(efd);
			errno = saved;
			return -1;
		}
	}
	/* copy the paths first: they may be the ones log_close() frees */
	char *epath = (efd != STDERR_FILENO) ? xstrdup(errorlog) : NULL;
	char *apath = (afd != -1 && afd != STDOUT_FILENO) ? xstrdup(accesslog) : NULL;
	log_close();
	error_fd = efd;
	access_fd = afd;
	error_path = epath;
	access_path = apath;
	log_level = level;
	log_rebind();
	return 0;
}

static int
reopen_one(int *fd, const char *path)
{
	int nfd;

	if (path == NULL)
		return 0;
	if ((nfd = open_append(path)) == -1)
		return -1;
	if (dup2(nfd, *fd) == -1) {	/* keep the number: others may hold it */
		close(nfd);
		return -1;
	}
	close(nfd);
	return 0;
}

int
log_reopen(void)
{
	int rc = 0;

	if (reopen_one(&error_fd, error_path) == -1) {
		log_warn("cannot reopen error log %s", error_path);
		rc = -1;
	}
	if (reopen_one(&access_fd, access_path) == -1) {
		log_warn("cannot reopen access log %s", access_path);
		rc = -1;
	}
	log_rebind();
	return rc;
}

void
log_close(void)
{
	if (error_fd > STDERR_FILENO)
		close(error_fd);
	if (access_fd > STDERR_FILENO)
		close(access_fd);
	sink_detach(&error_sink);
	sink_detach(&access_sink);
	error_fd = STDERR_FILENO;
	access_fd = -1;
	free(error_path);
	free(access_path);
	error_path = access_path = NULL;
}

int log_get_level(void) { return log_level; }
void log_set_level(int level) { log_level = level; }
int log_error_fd(void) { return error_fd; }

size_t
log_fds(int *out)
{
	size_t n = 0;

	out[n++] = error_fd;
	if (error_sink.own)
		out[n++] = error_sink.nowait_fd;
	if (access_sink.own)
		out[n++] = access_sink.nowait_fd;
	if (log_syslog_fd() != -1)
		out[n++] = log_syslog_fd();
	return n;
}

void
log_rebind(void)
{
	sink_attach(&error_sink, error_fd);
	sink_attach(&access_sink, access_fd);
}
int log_access_enabled(void) { return access_fd != -1 || log_syslog_access(); }

/* A sink that fails (EPIPE: its reader is gone, as when `docker exec
 * ... sh -c "gunicorn ... &"` closes the session; EBADF; ENOSPC) loses
 * the line and nothing else: SIGPIPE is ignored in every process
 * (main.c), and no error here ever stops the server. */
static void
plain_write(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			return;
		}
		buf += n;
		len -= (size_t)n;
	}
}

/* A write to a pipe or FIFO (or a terminal): with SIGPIPE blocked in this
 * thread, and the one a reader gone leaves pending taken back
 * (util.h).  SIGPIPE is ignored in every process, but app code may set it
 * back to SIG_DFL (scripts do, to die quietly in a shell pipeline), and
 * the next line to a log whose reader left would then kill the process.
 * Two cheap syscalls per line, for pipes only: files never raise it, and
 * sockets say MSG_NOSIGNAL. */
static ssize_t
pipe_write(int fd, const char *buf, size_t len)
{
	sigset_t saved;

	nosigpipe_begin(&saved);
	ssize_t n = write(fd, buf, len);
	int err = errno;
	nosigpipe_end(&saved, n == -1 && err == EPIPE);
	errno = err;
	return n;
}

/* The non-blocking write of the header's policy: 1 written, 0 dropped
 * (no room within the wait), -1 the sink failed (the line is lost, as
 * plain_write's). */
static int
nowait_write(struct sink *k, const char *buf, size_t len, int64_t deadline)
{
	int wait = __atomic_load_n(&k->stalled, __ATOMIC_RELAXED) ? 0 : 1;
	size_t whole = len;

	while (len > 0) {
		ssize_t n;
		if (k->socket)
			n = send(k->nowait_fd, buf, len,
			    MSG_DONTWAIT | MSG_NOSIGNAL);
		else
			n = pipe_write(k->nowait_fd, buf, len);
		if (n > 0) {
			buf += n;
			len -= (size_t)n;
			continue;
		}
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno != EAGAIN && errno != EWOULDBLOCK)
			return -1;
		int64_t left = wait ? deadline - (int64_t)monotonic_ms() : 0;
		if (left <= 0) {
			/* a line over PIPE_BUF may have left its head behind:
			 * the next line written ends it */
			if (len < whole)
				__atomic_store_n(&k->cut, 1, __ATOMIC_RELAXED);
			return 0;
		}
		struct pollfd p = { .fd = k->nowait_fd, .events = POLLOUT };
		log_wait_release();
		(void)poll(&p, 1, (int)left);
	}
	return 1;
}

int
sink_put(struct sink *k, const char *buf, size_t len, int64_t deadline,
    unsigned long *lost)
{
	*lost = 0;
	/* a plain load first: the exchange (a locked instruction) only
	 * after a cut, not on every line */
	if (__atomic_load_n(&k->cut, __ATOMIC_RELAXED) &&
	    __atomic_exchange_n(&k->cut, 0, __ATOMIC_RELAXED) &&
	    nowait_write(k, &k->end, 1, deadline) != 1) {
		__atomic_store_n(&k->cut, 1, __ATOMIC_RELAXED);
		__atomic_store_n(&k->stalled, 1, __ATOMIC_RELAXED);
		__atomic_add_fetch(&k->dropped, 1, __ATOMIC_RELAXED);
		return 0;
	}
	switch (nowait_write(k, buf, len, deadline)) {
	case 0:
		__atomic_store_n(&k->stalled, 1, __ATOMIC_RELAXED);
		__atomic_add_fetch(&k->dropped, 1, __ATOMIC_RELAXED);
		return 0;
	case 1:
		if (__atomic_exchange_n(&k->stalled, 0, __ATOMIC_RELAXED))
			*lost = __atomic_exchange_n(&k->dropped, 0,
			    __ATOMIC_RELAXED);
		return 1;
	}
	return -1;
}

static void
sink_write(struct sink *k, int fd, const char *buf, size_t len)
{
	unsigned long lost;

	if (k->nowait_fd == -1) {
		plain_write(fd, buf, len);
		return;
	}
	if (sink_put(k, buf, len, (int64_t)monotonic_ms() + SINK_WAIT_MS,
	    &lost) == 1 && lost > 0)
		log_warnx("%lu lines dropped: the %s log's reader did not read "
		    "for %d ms", lost, k == &error_sink ? "error" : "access",
		    SINK_WAIT_MS);
}

void
log_error_write(const char *buf, size_t len)
{
	sink_write(&error_sink, error_fd, buf, len);
}

void
log_access_write(const char *line, size_t len)
{
	if (access_fd != -1)
		sink_write(&access_sink, access_fd, line, len);
	/* gunicorn's access logger at INFO, without the newline */
	log_syslog_line(LOG_SYSLOG_ACCESS, LOG_INFO, line,
	    len > 0 && line[len - 1] == '\n' ? len - 1 : len);
}

void
log_wait_scope_begin(void *(*release)(void), void (*reacquire)(void *))
{
	scope_release = release;
	scope_reacquire = reacquire;
	scope_released = 0;
}

void
log_wait_release(void)
{
	if (scope_release != NULL && !scope_released) {
		scope_released = 1;
		scope_token = scope_release();
	}
}

void
log_wait_scope_end(void)
{
	if (scope_released)
		scope_reacquire(scope_token);
	scope_release = NULL;
	scope_reacquire = NULL;
	scope_token = NULL;
	scope_released = 0;
}

void
log_set_count_hook(void (*hook)(int level, int exception))
{
	__atomic_store_n(&count_hook, hook, __ATOMIC_RELAXED);
}

static void
emit(int level, int exception, const char *suffix, const char *fmt, va_list ap)
{
	void (*hook)(int, int) = __atomic_load_n(&count_hook, __ATOMIC_RELAXED);
	char buf[8192];
	struct tm tm;
	time_t now;
	size_t off, msg;
	int n, saved = errno;

	if (hook != NULL && level >= LOG_WARNING) {
		hook(level, exception);		/* counted before the level filters */
		errno = saved;
	}
	if (level < log_level)
		return;
	now = time(NULL);
	localtime_r(&now, &tm);
	off = strftime(buf, sizeof(buf), "[%Y-%m-%d %H:%M:%S %z] ", &tm);
	n = snprintf(buf + off, sizeof(buf) - off, "[%ld] [%s] ",
	    (long)getpid(), level_name(level));
	off += (size_t)n;
	msg = off;
	n = vsnprintf(buf + off, sizeof(buf) - off, fmt, ap);
	if (n < 0)
		n = 0;
	off = (off + (size_t)n < sizeof(buf) - 1) ? off + (size_t)n : sizeof(buf) - 2;
	if (suffix != NULL) {
		n = snprintf(buf + off, sizeof(buf) - off, ": %s", suffix);
		if (n > 0)
			off = (off + (size_t)n < sizeof(buf) - 1) ? off + (size_t)n
			    : sizeof(buf) - 2;
	}
	buf[off] = '\n';
	sink_write(&error_sink, error_fd, buf, off + 1);
	/* syslog's line: the message, without our date, pid and level */
	log_syslog_line(LOG_SYSLOG_ERROR, level, buf + msg, off - msg);
	errno = saved;
}

void
log_vmsg(int level, const char *fmt, va_list ap)
{
	emit(level, 0, NULL, fmt, ap);
}

void
log_forked_child(void)
{
	forked_child = 1;
	/* the parent's lost lines are the parent's to report */
	error_sink.stalled = access_sink.stalled = 0;
	error_sink.dropped = access_sink.dropped = 0;
	log_syslog_forked();
}

/* fatal()'s way out.  A forked child must not run the atexit handlers it
 * inherited (the parent's), only write what it buffered itself. */
static void __attribute__((noreturn))
fatal_exit(void)
{
	if (forked_child) {
		fflush(NULL);
		_exit(1);
	}
	exit(1);
}

/* The variadic entry points: format through emit() with that suffix. */
#define EMIT(level, suffix) do {		\
	va_list ap;				\
	va_start(ap, fmt);			\
	emit((level), 0, (suffix), fmt, ap);	\
	va_end(ap);				\
} while (0)

void
log_msg(int level, const char *fmt, ...)
{
	EMIT(level, NULL);
}

void
log_exception_msg(int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	emit(level, 1, NULL, fmt, ap);
	va_end(ap);
}

void
log_warn(const char *fmt, ...)
{
	const char *err = strerror(errno);

	EMIT(LOG_WARNING, err);
}

void
log_error(const char *fmt, ...)
{
	const char *err = strerror(errno);

	EMIT(LOG_ERROR, err);
}

void
fatal(const char *fmt, ...)
{
	const char *err = strerror(errno);

	EMIT(LOG_CRITICAL, err);
	fatal_exit();
}

void
fatalx(const char *fmt, ...)
{
	EMIT(LOG_CRITICAL, NULL);
	fatal_exit();
}

#undef EMIT

static void
oom(size_t size)
{
	char buf[96];
	int n = snprintf(buf, sizeof(buf), "cunicorn: out of memory (%zu bytes)\n", size);
	if (n > 0)
		plain_write(STDERR_FILENO, buf, (size_t)n);
	abort();
}

void *
xmalloc(size_t size)
{
	void *p = malloc(size ? size : 1);
	if (p == NULL)
		oom(size);
	return p;
}

void *
xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (p == NULL)
		oom(n * size);
	return p;
}

void *
xrealloc(void *p, size_t size)
{
	void *q = realloc(p, size ? size : 1);
	if (q == NULL)
		oom(size);
	return q;
}

void *
xreallocarray(void *p, size_t n, size_t size)
{
	if (size != 0 && n > ((size_t)-1) / size)
		oom((size_t)-1);
	return xrealloc(p, n * size);
}

char *
xstrdup(const char *s)
{
	size_t len = strlen(s) + 1;
	char *p = xmalloc(len);
	memcpy(p, s, len);
	return p;
}

char *
xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *p;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&p, fmt, ap);
	va_end(ap);
	if (n < 0)
		oom(0);
	return p;
}
