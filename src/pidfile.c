/*
 * pidfile.c — the master's pid file (contract: pidfile.h).
 *
 * Owns nothing: the master says which path and whose pid.  Never removes
 * or overwrites a file that names another live process.
 */
#include "pidfile.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

/* The pid a pid file names, or 0 (missing, unreadable, not a pid). */
static pid_t
pidfile_read(const char *path)
{
	char buf[32], *end;
	long pid;

	if (read_small_file(path, buf, sizeof(buf)) == -1)
		return 0;
	pid = strtol(buf, &end, 10);
	return (end != buf && (*end == '\n' || *end == '\0') && pid > 0 &&
	    pid <= INT_MAX) ? (pid_t)pid : 0;
}

void
pidfile_remove(const char *path, int oldbin, pid_t owner)
{
	char *p = oldbin ? xasprintf("%s.oldbin", path) : xstrdup(path);

	if (pidfile_read(p) == owner)
		unlink(p);
	free(p);
}

void
pidfile_oldbin(const char *path, int to_oldbin)
{
	char *old = xasprintf("%s.oldbin", path);

	if (to_oldbin && rename(path, old) == -1)
		log_warn("USR2: rename %s", path);
	else if (!to_oldbin)
		(void)rename(old, path);
	free(old);
}

/* As gunicorn: a file naming another live process means a server already
 * runs there -- refuse rather than take its pid file (and remove it at
 * our exit).
 * The temporary is created beside the pid file under a random name with
 * O_EXCL (mkostemp: never an existing file, never through a symlink, so
 * whoever can write that directory cannot make us -- often root --
 * truncate a file of their choosing), then renamed over the pid file. */
int
pidfile_write(const char *path)
{
	char buf[32];
	pid_t other = pidfile_read(path);

	if (other > 0 && other != getpid() &&
	    (kill(other, 0) == 0 || errno == EPERM)) {
		log_errorx("Already running on PID %d (or pid file '%s' is stale)",
		    (int)other, path);
		return -1;
	}
	char *tmp = xasprintf("%s.XXXXXX", path);
	int fd = mkostemp(tmp, O_CLOEXEC);
	int n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
	int ok = fd != -1 && fchmod(fd, 0644) == 0 &&
	    write_full(fd, buf, (size_t)n) == 0;

	if (fd != -1 && close(fd) == -1)
		ok = 0;
	if (!ok || rename(tmp, path) == -1) {
		int saved = errno;
		if (fd != -1)
			unlink(tmp);
		errno = saved;
		log_error("Cannot write pidfile %s", path);
		free(tmp);
		return -1;
	}
	free(tmp);
	return 0;
}
