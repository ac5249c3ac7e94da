/*
 * util.h — small helpers every role uses: clocks, descriptor flags,
 * blocking whole-buffer writes (any fd; a socket), closing inherited
 * descriptors after fork, dropping privileges in a child, reading a
 * small file.  memory_limit.h (included here for the callers that size
 * caps from it) says how much memory a process may count on.
 */
#ifndef CUNICORN_UTIL_H
#define CUNICORN_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <signal.h>
#include <sys/types.h>

#include "memory_limit.h"

/* CLOCK_MONOTONIC in milliseconds (heartbeats, timeouts; shared across
 * processes of one boot). */
uint64_t monotonic_ms(void);
/* Milliseconds from `then` to `now`, 0 when `then` is the later: a stamp
 * taken after `now` was read (by a function the same tick calls) is a
 * hair newer, and the unsigned difference would wrap to a huge age. */
static inline uint64_t
ms_since(uint64_t now, uint64_t then)
{
	return now > then ? now - then : 0;
}
int fd_set_nonblock(int fd, int on);
int fd_set_cloexec(int fd, int on);
/* The one write-all loop: all n bytes, retrying on EINTR, waiting in
 * poll() when a non-blocking fd is full.  0 or -1.  For files and pipes;
 * a socket goes through send_full. */
int write_full(int fd, const void *buf, size_t n);
/* The same for a socket, with send(MSG_NOSIGNAL): SIGPIPE is ignored in
 * every process, but app code may set it back to SIG_DFL (some libraries
 * do), and a write() to a socket whose peer left would then kill the
 * process instead of returning EPIPE.  Every socket write uses this (or
 * its own send/sendmsg with MSG_NOSIGNAL). */
int send_full(int fd, const void *buf, size_t n);
/* Around a socket write that has no MSG_NOSIGNAL (sendfile): SIGPIPE
 * blocked in this thread, and the one an EPIPE left pending taken back
 * before the mask is restored (got_epipe), so it is never delivered. */
void nosigpipe_begin(sigset_t *saved);
void nosigpipe_end(const sigset_t *saved, int got_epipe);
/* Close every descriptor >= 3 except those listed (after fork). */
void close_fds_except(const int *keep, size_t nkeep);
/* In a child, first thing: every signal blocked, then every disposition
 * back to SIG_DFL but SIGPIPE's (kept ignored: a write to a closed pipe or
 * socket is an EPIPE, never a death).  A signal that arrives before the
 * child installs its handlers stays pending instead of killing it by its
 * default action or running the parent's handler.  The caller unblocks
 * once its handlers are in. */
void signals_reset_child_blocked(void);

/* The value of a hex digit, or -1 (percent-decoding). */
static inline int
hex_digit(int c)
{
	if (c >= '0' && c <= '9') return c - '0';
	if (c >= 'a' && c <= 'f') return c - 'a' + 10;
	if (c >= 'A' && c <= 'F') return c - 'A' + 10;
	return -1;
}

/* n > 0 ASCII decimal digits (ports, uids). */
static inline int
all_digits(const char *p, size_t n)
{
	if (n == 0)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (p[i] < '0' || p[i] > '9')
			return 0;
	return 1;
}

/* The start of a small text file (a pid file, a /sys or /proc value),
 * NUL-terminated, at most size - 1 bytes: its length, or -1 when it is
 * missing, unreadable or empty. */
ssize_t read_small_file(const char *path, char *buf, size_t size);

struct settings;
/* In a freshly forked worker (HTTP or dirty): become the group and user
 * settings' gid and uid.  As root, the supplementary groups become the
 * user's own with initgroups (gunicorn's setting), else gid alone: root's
 * are never kept.  Nothing changes when neither user nor group was given.
 * Logs and returns -1 when gid, the groups or uid cannot be set. */
int privileges_drop(const struct settings *s);

#endif
