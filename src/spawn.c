/*
 * spawn.c — fork a child role from a spawn_spec (spawn.h): the one place
 * where a child of ours sheds what its parent held and becomes its role.
 *
 * Owns nothing across calls.  Must never run a role's code itself, nor
 * touch the parent's table of children: it forks, prepares the child in
 * the order spawn.h states, and hands over to spec->main.
 */
#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "log.h"
#include "proctitle.h"
#include "python.h"
#include "settings.h"
#include "sigpipe.h"
#include "statsd.h"
#include "util.h"

#define MAX_KEEP_FDS	64

/* Steps 2 to 4 of spawn.h: what the child sheds, Python, parent death. */
static void
spawn_shed(const struct spawn_spec *spec)
{
	if (spec->close_all) {
		int keep[MAX_KEEP_FDS + 1 + LOG_FDS_MAX];	/* + statsd + log_fds */
		size_t n = 0;

		for (size_t i = 0; i < spec->nkeep_fds && n < MAX_KEEP_FDS; i++)
			keep[n++] = spec->keep_fds[i];
		if (statsd_fd() != -1)
			keep[n++] = statsd_fd();
		n += log_fds(keep + n);
		close_fds_except(keep, n);
		log_reopen();
	} else {
		for (size_t i = 0; i < spec->nclose_fds; i++)
			if (spec->close_fds[i] >= 0)
				close(spec->close_fds[i]);
	}

	if (spec->python)
		python_after_fork();

	if (spec->parent_death_signal != 0) {
		if (prctl(PR_SET_PDEATHSIG, spec->parent_death_signal) == -1)
			log_warn("%s: prctl(PR_SET_PDEATHSIG)",
			    spec->role != NULL ? spec->role : "child");
		if (getppid() != spec->parent) {
			if (spec->parent_gone != NULL)
				spec->parent_gone(spec->arg);
			_exit(0);
		}
	}
}

static void __attribute__((noreturn))
spawn_child(const struct spawn_spec *spec)
{
	signals_reset_child_blocked();
	sigpipe_close();	/* the parent's signals are not the child's */
	spawn_shed(spec);

	if (spec->role != NULL)
		proctitle_set("%s: %s [%s]", proctitle_prog(), spec->role,
		    settings_proc_name(spec->cfg));
	if (spec->booting != NULL)
		spec->booting(spec->arg);
	if (spec->drop_privileges && privileges_drop(spec->cfg) == -1)
		_exit(spec->boot_error);

	spec->main(spec->arg);
	_exit(spec->boot_error);	/* a main that returned: a bug */
}

pid_t
spawn_process(const struct spawn_spec *spec)
{
	sigset_t all, saved;
	pid_t pid;
	int saved_errno;

	if (spec->nkeep_fds > MAX_KEEP_FDS) {
		errno = EINVAL;
		return -1;
	}
	fflush(NULL);		/* nothing buffered gets written twice */
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &saved);
	pid = fork();
	if (pid == 0) {
		if (spec->main != NULL) {
			log_forked_child();
			spawn_child(spec);
		}
		sigprocmask(SIG_SETMASK, &saved, NULL);
		spawn_shed(spec);
		return 0;
	}
	saved_errno = errno;
	sigprocmask(SIG_SETMASK, &saved, NULL);
	errno = saved_errno;
	return pid;
}

/* The classic two forks, a new session between them; stdio on /dev/null
 * unless the error log is stderr. */
int
spawn_daemon(void)
{
	struct spawn_spec detach = { .parent = getpid(), .python = 1 };
	pid_t pid;
	int fd;

	for (int i = 0; i < 2; i++) {
		if ((pid = spawn_process(&detach)) == -1)
			return -1;
		if (pid > 0)
			_exit(0);
		if (i == 0)
			setsid();
	}
	if ((fd = open("/dev/null", O_RDWR)) != -1) {
		dup2(fd, STDIN_FILENO);
		if (log_error_fd() != STDERR_FILENO) {
			dup2(fd, STDOUT_FILENO);
			dup2(fd, STDERR_FILENO);
		}
		if (fd > STDERR_FILENO)
			close(fd);
	}
	return 0;
}
