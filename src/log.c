/*
 * log.c — error log, access log and the allocation wrappers (see log.h).
 *
 * Owns the two log file descriptors.  Lines are formatted into a stack
 * buffer and written with one write(2), so lines from several processes
 * sharing a file (O_APPEND) never interleave mid-line.
 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static int error_fd = STDERR_FILENO;
static int access_fd = -1;
static int log_level = LOG_INFO;
static char *error_path;	/* NULL: stderr */
static char *access_path;	/* NULL: off or stdout (access_fd says) */
static int forked_child;	/* fatal() ends us with _exit() */

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
	return rc;
}

void
log_close(void)
{
	if (error_fd > STDERR_FILENO)
		close(error_fd);
	if (access_fd > STDERR_FILENO)
		close(access_fd);
	error_fd = STDERR_FILENO;
	access_fd = -1;
	free(error_path);
	free(access_path);
	error_path = access_path = NULL;
}

int log_get_level(void) { return log_level; }
void log_set_level(int level) { log_level = level; }
int log_error_fd(void) { return error_fd; }
int log_access_enabled(void) { return access_fd != -1; }

/* A sink that fails (EPIPE: its reader is gone, as when `docker exec
 * ... sh -c "gunicorn ... &"` closes the session; EBADF; ENOSPC) loses
 * the line and nothing else: SIGPIPE is ignored in every process
 * (main.c), and no error here ever stops the server. */
static void
sink_write(int fd, const char *buf, size_t len)
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

void
log_access_write(const char *line, size_t len)
{
	if (access_fd != -1)
		sink_write(access_fd, line, len);
}

static void
emit(int level, const char *suffix, const char *fmt, va_list ap)
{
	char buf[8192];
	struct tm tm;
	time_t now;
	size_t off;
	int n, saved = errno;

	if (level < log_level)
		return;
	now = time(NULL);
	localtime_r(&now, &tm);
	off = strftime(buf, sizeof(buf), "[%Y-%m-%d %H:%M:%S %z] ", &tm);
	n = snprintf(buf + off, sizeof(buf) - off, "[%ld] [%s] ",
	    (long)getpid(), level_name(level));
	off += (size_t)n;
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
	buf[off++] = '\n';
	sink_write(error_fd, buf, off);
	errno = saved;
}

void
log_vmsg(int level, const char *fmt, va_list ap)
{
	emit(level, NULL, fmt, ap);
}

void
log_forked_child(void)
{
	forked_child = 1;
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
	emit((level), (suffix), fmt, ap);	\
	va_end(ap);				\
} while (0)

void
log_msg(int level, const char *fmt, ...)
{
	EMIT(level, NULL);
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
		sink_write(STDERR_FILENO, buf, (size_t)n);
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
