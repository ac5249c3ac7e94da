/*
 * sigpipe.c — signals as bytes on a pipe (contract: sigpipe.h).
 *
 * Owns: the pipe and the handlers.  Never: does anything in a handler but
 * write one byte.
 */
#include "sigpipe.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

static int fds[2] = { -1, -1 };

static void
on_signal(int sig)
{
	int saved = errno;
	unsigned char b = (unsigned char)sig;

	(void)!write(fds[1], &b, 1);
	errno = saved;
}

int
sigpipe_open(const int *sigs, size_t nsigs)
{
	struct sigaction sa;
	sigset_t none;

	if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) == -1)
		fatal("pipe2");
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	for (size_t i = 0; i < nsigs; i++)
		sigaction(sigs[i], &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sa.sa_flags = 0;
	sigaction(SIGPIPE, &sa, NULL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);	/* the master forks us blocked */
	return fds[0];
}

int
sigpipe_next(void)
{
	unsigned char b;

	return read(fds[0], &b, 1) == 1 ? b : 0;
}
