/*
 * log.h — cunicorn's one error vocabulary and the access log.
 *
 * Error log lines look like gunicorn's:
 *   [2026-11-26 03:35:30 +0000] [PID] [LEVEL] message
 * Every process role logs through these functions; they are async-signal
 * UNSAFE (they format with stdio) and must never be called from a signal
 * handler.  log_reopen() is what SIGUSR1 triggers, from the event loop.
 *
 * Allocation failure is handled in one place: the x*alloc() wrappers log
 * and abort, so callers never half-handle ENOMEM.
 */
#ifndef CUNICORN_LOG_H
#define CUNICORN_LOG_H

#include <stdarg.h>
#include <stddef.h>

enum log_level {
	LOG_DEBUG = 10,
	LOG_INFO = 20,
	LOG_WARNING = 30,
	LOG_ERROR = 40,
	LOG_CRITICAL = 50,
};

#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))

/* Parses "debug", "info", "warning", "error", "critical" (any case).
 * Returns -1 for anything else. */
int log_level_parse(const char *name);

/* errorlog: "-" for stderr, else a path opened for append.
 * accesslog: NULL for off, "-" for stdout, else a path.
 * Returns 0, or -1 with errno set when a file cannot be opened. */
int log_open(const char *errorlog, const char *accesslog, int level);
/* Reopen both files (SIGUSR1).  Keeps the old ones if a reopen fails. */
int log_reopen(void);
/* Close the files; after this, messages go to stderr. */
void log_close(void);
int log_get_level(void);
void log_set_level(int level);
/* The fd error lines are written to (for capture_output's dup2). */
int log_error_fd(void);
/* The descriptors a child must keep for its logs (spawn's close_all):
 * the error log's, the private non-blocking ones (log.c's header) and
 * syslog's socket.  out has room for LOG_FDS_MAX; returns how many. */
#define LOG_FDS_MAX	4
size_t log_fds(int *out);
/* After a dup2 over a log's descriptor (daemon, capture_output): write
 * to what it is now. */
void log_rebind(void);
/* Bytes as they are (wsgi.errors) to the error log, under the same
 * policy as every log line (log.c's header): may wait up to a second for
 * a stalled reader, so call it without the GIL. */
void log_error_write(const char *buf, size_t len);

void log_msg(int level, const char *fmt, ...) PRINTF_LIKE(2, 3);
void log_vmsg(int level, const char *fmt, va_list ap) PRINTF_LIKE(2, 0);
/* The record of a Python exception with its traceback (gunicorn's
 * log.exception()): as log_msg, but counted as an exception (below). */
void log_exception_msg(int level, const char *fmt, ...) PRINTF_LIKE(2, 3);
/* gunicorn's statsd logger counts every WARNING, ERROR and CRITICAL
 * record, and every exception, whatever the level lets through: each such
 * record calls hook(level, exception) first (statsd.c sets it while
 * metrics are sent; NULL: none).  The hook must not log. */
void log_set_count_hook(void (*hook)(int level, int exception));
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warnx(...) log_msg(LOG_WARNING, __VA_ARGS__)
#define log_errorx(...) log_msg(LOG_ERROR, __VA_ARGS__)
/* As above, with ": strerror(errno)" appended. */
void log_warn(const char *fmt, ...) PRINTF_LIKE(1, 2);
void log_error(const char *fmt, ...) PRINTF_LIKE(1, 2);
/* Log at CRITICAL and exit(1); in a forked child (log_forked_child()),
 * _exit(1) after flushing stdio: the parent's atexit handlers are not the
 * child's to run. */
void fatal(const char *fmt, ...) PRINTF_LIKE(1, 2) __attribute__((noreturn));
void fatalx(const char *fmt, ...) PRINTF_LIKE(1, 2) __attribute__((noreturn));
/* Called once in every child a role runs in (spawn_process does). */
void log_forked_child(void);

/* Whether access lines are wanted (an access log, or syslog that takes
 * them: log_syslog.h), and writing one finished line (the caller
 * formats it and includes the trailing newline). */
int log_access_enabled(void);
void log_access_write(const char *line, size_t len);

/* A scope of the calling thread (not nested) in which the first wait
 * of a log line — for a slow reader's room, for syslog's lock — calls
 * release() first; the scope's end calls reacquire() with what it
 * returned, when it was called.  The WSGI workers put the GIL there
 * around an access line (formatted with it, then written), so that one
 * thread waiting for a slow log does not hold the others; a line that
 * does not wait costs nothing.  Nothing between begin and end may need
 * what release() gave up. */
void log_wait_scope_begin(void *(*release)(void), void (*reacquire)(void *));
void log_wait_scope_end(void);

void *xmalloc(size_t size);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t size);
void *xreallocarray(void *p, size_t n, size_t size);
char *xstrdup(const char *s);
char *xasprintf(const char *fmt, ...) PRINTF_LIKE(1, 2);

#endif
