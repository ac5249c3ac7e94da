/*
 * spawn.h — the one way a process of ours forks: a child role, the USR2
 * re-exec, the daemon.
 *
 * Every child (HTTP worker, dirty arbiter, dirty worker) is started by
 * spawn_process() from a spec that says what the child is (its title and
 * main function) and what it must shed or keep: descriptors, the parent's
 * signal dispositions, the parent-death signal, privileges, Python's
 * per-process state.  What happens in the child, in this order:
 *
 *   1. dispositions back to SIG_DFL (SIGPIPE stays ignored), every signal
 *      still blocked: fork() ran with all of them blocked, so a signal sent
 *      before the role installs its handlers stays pending instead of
 *      killing it or running the parent's handler;
 *   2. descriptors: the parent's signal pipe (sigpipe.h) always goes;
 *      then either every one >= 3 is closed but keep_fds, the logs' and
 *      the statsd socket (then the logs are reopened), or just close_fds;
 *   3. PyOS_AfterFork_Child(), when the child runs Python;
 *   4. PR_SET_PDEATHSIG, then getppid() against the parent's pid recorded
 *      before fork(): a parent that died before the prctl() leaves no
 *      signal to come (parent_gone() runs, or the child exits 0);
 *   5. the title "<prog>: <role> [<proc_name>]" (none when role is NULL);
 *   6. booting(), the role's first words (logged as its own user);
 *   7. the user and group settings, when drop_privileges (boot_error is
 *      the exit status if they cannot be taken);
 *   8. main(), which never returns; the role unblocks signals once its
 *      handlers are in.
 *
 * From step 1 on, fatal() ends the child with _exit() (log_forked_child):
 * the parent's atexit handlers are not the child's to run.
 *
 * With main NULL the child is not a new role but the caller going on (the
 * daemon's forks, spawn_daemon(), whose parent then leaves): only steps 2 to 4 run, the
 * dispositions and the signal mask stay the parent's, fatal() keeps
 * exit(), and spawn_process() returns 0 in the child, as fork() does.
 *
 * The parent side is only fork(): hooks around it and the table of
 * children belong to the caller.
 */
#ifndef CUNICORN_SPAWN_H
#define CUNICORN_SPAWN_H

#include <stddef.h>
#include <sys/types.h>

struct settings;

struct spawn_spec {
	const char *role;		/* title: "worker", "dirty-arbiter", ...; NULL: none */
	const struct settings *cfg;	/* proc_name (title), user/group */
	pid_t parent;			/* the forking process: getpid() before fork */

	int close_all;			/* close every fd >= 3 but keep_fds, logs, statsd */
	const int *keep_fds;		/* close_all: the descriptors the child keeps */
	size_t nkeep_fds;
	const int *close_fds;		/* !close_all: the parent's own, to close */
	size_t nclose_fds;

	int python;			/* the child runs Python: PyOS_AfterFork_Child */
	int parent_death_signal;	/* 0: none */
	/* The parent died before the prctl(): must not return (NULL: _exit(0)). */
	void (*parent_gone)(void *arg);
	void (*booting)(void *arg);	/* NULL, or after the title, as root still */
	int drop_privileges;		/* take the user / group settings */
	int boot_error;			/* exit status when that fails */

	void (*main)(void *arg);	/* the role: never returns; NULL: see above */
	void *arg;			/* for parent_gone, booting and main */
};

/*
 * Fork a child as `spec` says.  Parent: the child's pid, or -1 (errno set,
 * nothing logged).  Child: never returns (main NULL: returns 0).  The spec (and what arg points
 * to) may live on the caller's stack: the child has its own copy.
 */
pid_t spawn_process(const struct spawn_spec *spec);

/* --daemon: go on in a grandchild in a session of its own (the caller's
 * process and the middle one _exit(0)), stdin on /dev/null, and stdout
 * and stderr too unless they are the error log.  0, or -1 (errno set). */
int spawn_daemon(void);

#endif
