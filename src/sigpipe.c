/*
 * sigpipe.c — signals as bytes on a pipe (contract: sigpipe.h).
 *
 * Owns: the pipe and the handlers.  Never: does anything in a handler but
 * write one byte and the caller's async-signal-safe `also`.
 */
#include "sigpipe.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

static int fds[2] = { -1, -1 };
static volatile sig_atomic_t owner;	/* the pid that opened the pipe */
static void (*volatile also_fn)(int);

static void
on_signal(int sig)
{
	int saved = errno;
	unsigned char b = (unsigned char)sig;

	if (getpid() != (pid_t)owner) {
		/* a fork of ours that is not ours to serve: as if no handler */
		signal(sig, SIG_DFL);
		raise(sig);
		errno = saved;
		return;
	}
	(void)!write(fds[1], &b, 1);
	if (also_fn != NULL)
		also_fn(sig);
	errno = saved;
}

int
sigpipe_open_with(const int *sigs, size_t nsigs, int restart, void (*also)(int))
{
	struct sigaction sa;
	sigset_t none;

	if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) == -1)
		fatal("pipe2");
	owner = getpid();
	also_fn = also;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < nsigs; i++) {
		sa.sa_flags = (restart ? SA_RESTART : 0) |
		    (sigs[i] == SIGCHLD ? SA_NOCLDSTOP : 0);
		if (sigaction(sigs[i], &sa, NULL) == -1)
			fatal("sigaction %d", sigs[i]);
	}
	sa.sa_handler = SIG_IGN;	/* EPIPE from write() instead */
	sa.sa_flags = 0;
	sigaction(SIGPIPE, &sa, NULL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);	/* spawn_process forks us blocked */
	return fds[0];
}

int
sigpipe_open(const int *sigs, size_t nsigs)
{
	return sigpipe_open_with(sigs, nsigs, 1, NULL);
}

int
sigpipe_next(void)
{
	unsigned char b;

	return fds[0] != -1 && read(fds[0], &b, 1) == 1 ? b : 0;
}

void
sigpipe_close(void)
{
	for (int i = 0; i < 2; i++)
		if (fds[i] != -1) {
			close(fds[i]);
			fds[i] = -1;
		}
	owner = 0;
}
