/*
 * util.c — see util.h.
 */
#include "util.h"
#include "log.h"
#include "settings.h"

#include <dirent.h>
#include <grp.h>
#include <pwd.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/syscall.h>

uint64_t
monotonic_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Turn one bit of a descriptor's flags on or off (get/set: F_GETFL and
 * F_SETFL, or F_GETFD and F_SETFD). */
static int
fd_flag(int fd, int get, int set, int bit, int on)
{
	int fl = fcntl(fd, get);

	if (fl == -1)
		return -1;
	return fcntl(fd, set, on ? (fl | bit) : (fl & ~bit));
}

int
fd_set_nonblock(int fd, int on)
{
	return fd_flag(fd, F_GETFL, F_SETFL, O_NONBLOCK, on);
}

int
fd_set_cloexec(int fd, int on)
{
	return fd_flag(fd, F_GETFD, F_SETFD, FD_CLOEXEC, on);
}

/* n bytes to fd, whatever it takes: EINTR retried, a non-blocking fd
 * waited for; as a socket send with flags when sock, else write(2). */
static int
put_full(int fd, const void *buf, size_t n, int sock, int flags)
{
	const char *p = buf;
	while (n > 0) {
		ssize_t w = sock ? send(fd, p, n, flags) : write(fd, p, n);
		if (w == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				struct pollfd pfd = { .fd = fd, .events = POLLOUT };
				(void)poll(&pfd, 1, -1);
				continue;
			}
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int
write_full(int fd, const void *buf, size_t n)
{
	return put_full(fd, buf, n, 0, 0);
}

int
send_full(int fd, const void *buf, size_t n)
{
	return put_full(fd, buf, n, 1, MSG_NOSIGNAL);
}

void
nosigpipe_begin(sigset_t *saved)
{
	sigset_t pipe_only;

	sigemptyset(&pipe_only);
	sigaddset(&pipe_only, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe_only, saved);
}

void
nosigpipe_end(const sigset_t *saved, int got_epipe)
{
	if (got_epipe && !sigismember(saved, SIGPIPE)) {
		sigset_t pipe_only;
		struct timespec now = { 0, 0 };

		sigemptyset(&pipe_only);
		sigaddset(&pipe_only, SIGPIPE);
		while (sigtimedwait(&pipe_only, NULL, &now) == -1 && errno == EINTR)
			;
	}
	pthread_sigmask(SIG_SETMASK, saved, NULL);
}

static int
kept(int fd, const int *keep, size_t nkeep)
{
	for (size_t i = 0; i < nkeep; i++)
		if (keep[i] == fd)
			return 1;
	return 0;
}

void
close_fds_except(const int *keep, size_t nkeep)
{
	int lo = 3;

	/* close_range over the gaps between kept descriptors; fall back to
	 * walking /proc/self/fd if the kernel lacks it. */
	int *sorted = NULL;
	size_t n = 0;
	if (nkeep > 0) {
		sorted = malloc(nkeep * sizeof(int));
		if (sorted == NULL)
			abort();
		for (size_t i = 0; i < nkeep; i++)
			if (keep[i] >= 3)
				sorted[n++] = keep[i];
		for (size_t i = 1; i < n; i++)	/* insertion sort: tiny */
			for (size_t j = i; j > 0 && sorted[j - 1] > sorted[j]; j--) {
				int t = sorted[j]; sorted[j] = sorted[j - 1]; sorted[j - 1] = t;
			}
	}
	for (size_t i = 0; i <= n; i++) {
		unsigned hi = (i < n) ? (unsigned)sorted[i] - 1 : ~0u;
		if ((unsigned)lo <= hi &&
		    syscall(SYS_close_range, (unsigned)lo, hi, 0) == -1) {
			DIR *d = opendir("/proc/self/fd");
			if (d != NULL) {
				int dfd = dirfd(d);
				struct dirent *e;
				while ((e = readdir(d)) != NULL) {
					int fd = atoi(e->d_name);
					if (fd >= 3 && fd != dfd && !kept(fd, keep, nkeep))
						close(fd);
				}
				closedir(d);
			}
			break;
		}
		if (i < n)
			lo = sorted[i] + 1;
	}
	free(sorted);
}

void
signals_reset_child_blocked(void)
{
	struct sigaction sa = { .sa_handler = SIG_DFL };
	sigset_t all;

	sigfillset(&all);
	sigprocmask(SIG_SETMASK, &all, NULL);
	sigemptyset(&sa.sa_mask);
	for (int sig = 1; sig < NSIG; sig++) {
		if (sig == SIGKILL || sig == SIGSTOP)
			continue;
		sigaction(sig, &sa, NULL);
	}
	sa.sa_handler = SIG_IGN;	/* EPIPE from write(), as in the master */
	sigaction(SIGPIPE, &sa, NULL);
}

int
privileges_drop(const struct settings *s)
{
	if (s->group == NULL && s->user == NULL)
		return 0;
	if (getegid() != s->gid && setgid(s->gid) == -1) {
		log_error("setgid(%d)", (int)s->gid);
		return -1;
	}
	if (geteuid() == 0) {
		struct passwd *pw = s->initgroups && s->user != NULL ?
		    getpwuid(s->uid) : NULL;

		/* a worker must never run with root's groups: fail its boot */
		if (pw != NULL ? initgroups(pw->pw_name, s->gid) == -1
		    : setgroups(1, &s->gid) == -1) {
			log_error("setting the supplementary groups");
			return -1;
		}
	}
	if (geteuid() != s->uid && setuid(s->uid) == -1) {
		log_error("setuid(%d)", (int)s->uid);
		return -1;
	}
	return 0;
}

ssize_t
read_small_file(const char *path, char *buf, size_t size)
{
	ssize_t n;
	int fd;

	if (size == 0 || (fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return -1;
	n = read(fd, buf, size - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	return n;
}
