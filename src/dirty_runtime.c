/*
 * dirty_runtime.c — the dirty arbiter's runtime directory, pid file lock
 * and orphan removal (see dirty_runtime.h for the layout and the rules).
 *
 * Owns: the chosen paths (static strings for the life of the process).
 * Runs in the master (prepare, master cleanup) and in the arbiter (lock,
 * listen, arbiter cleanup).  Never calls Python.  Never signals a process
 * that is not proven, by F_GETLK, to hold the pid file's write lock, nor
 * a holder whose recorded master is alive and still its parent (a sibling
 * server with the same proc_name).
 * Never follows a symlink inside the runtime directory.
 * Every directory it makes is owned by our euid and writable by nobody
 * else, also when the workers run as another user: a privileged arbiter
 * never works by path inside a directory an unprivileged user can change
 * (a symlink swapped in there once made root chmod a file of the
 * attacker's choice).  Workers of another user/group are let in by group
 * and search permission alone.
 */
#include "dirty.h"
#include "dirty_runtime.h"
#include "log.h"
#include "settings.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#define NAME_MAX_SANITIZED	40
#define ORPHAN_WAIT_MS		1000
#define RUNTIME_DIRS_MAX	100	/* <name>, <name>.2 ... <name>.100 */

static char *runtime_top;	/* <base>/cunicorn-<uid> */
static char *runtime_dir;	/* <top>/<name> */
static char *socket_path;	/* <dir>/dirty.sock */
static char *pidfile_path;	/* <dir>/dirty-arbiter.pid */
static char *base_dir;		/* $XDG_RUNTIME_DIR or /tmp */
static char *top_dir_name;	/* cunicorn-<uid> */
static char *base_name;		/* <sanitized proc_name>-<hash> */
static char *dir_name;		/* base_name, or base_name.N (N >= 2) */
static uid_t runtime_uid;	/* the workers' uid and gid */
static int lock_fd = -1;		/* arbiter: the locked pid file */
static pid_t lock_master;		/* arbiter: the master it records */
static gid_t runtime_gid;
static int runtime_shared;	/* workers run as another uid or gid */

const char *dirty_runtime_dir(void) { return runtime_dir; }
const char *dirty_runtime_socket(void) { return socket_path; }
const char *dirty_runtime_pidfile(void) { return pidfile_path; }

static uint32_t
fnv1a(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s != '\0'; s++) {
		h ^= (uint8_t)*s;
		h *= 16777619u;
	}
	return h;
}

/* "<sanitized proc_name>-<hash>"; caller frees. */
static char *
sanitized_name(const char *proc_name)
{
	char buf[NAME_MAX_SANITIZED + 1];
	size_t n = 0;

	for (const char *p = proc_name; *p != '\0' && n < NAME_MAX_SANITIZED; p++) {
		unsigned char c = (unsigned char)*p;
		int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
		buf[n++] = ok ? (char)c : '_';
	}
	buf[n] = '\0';
	if (n == 0 || buf[0] == '.')	/* never "." or ".." or hidden */
		buf[0] = '_';
	if (n == 0)
		buf[1] = '\0';
	return xasprintf("%s-%08x", buf, fnv1a(proc_name));
}

/* The base directory: $XDG_RUNTIME_DIR if usable, else /tmp. */
static const char *
runtime_base(size_t tail_len)
{
	const char *x = getenv("XDG_RUNTIME_DIR");
	struct stat st;

	/* Workers running as another user could not traverse our private
	 * $XDG_RUNTIME_DIR: use the world-traversable /tmp then. */
	if (runtime_shared)
		return "/tmp";
	if (x != NULL && x[0] == '/' &&
	    strlen(x) + tail_len < sizeof(((struct sockaddr_un *)0)->sun_path) &&
	    stat(x, &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == geteuid())
		return x;
	return "/tmp";
}

/*
 * mkdir (if needed) and open `name` under parent without following a
 * symlink; make sure it is a directory owned by our euid, writable by
 * nobody else.  top: <base>/cunicorn-<euid>, mode 0700, or 0711 when the
 * workers run as another user (never narrowed back from 0711: a sibling
 * server with such workers may rely on it).  Otherwise our own directory:
 * 0700, or 0710 with the workers' group when they run as another
 * user/group.  Returns an O_DIRECTORY fd or -1 after logging.
 */
static int
ensure_dir(int parent, const char *parent_path, const char *name, int top)
{
	mode_t want, mode;
	struct stat st;
	int fd;

	if (mkdirat(parent, name, 0700) == -1 && errno != EEXIST) {
		if (errno == ENOENT)	/* parent removed meanwhile: caller retries */
			return -1;
		log_warn("dirty: cannot create %s/%s", parent_path, name);
		return -1;
	}
	fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd == -1) {
		log_warn("dirty: cannot open %s/%s (not a directory, or a symlink)",
		    parent_path, name);
		return -1;
	}
	if (fstat(fd, &st) == -1) {
		log_warn("dirty: cannot stat %s/%s", parent_path, name);
		goto fail;
	}
	if (st.st_uid != geteuid()) {
		log_errorx("dirty: %s/%s is owned by uid %u, expected %u",
		    parent_path, name, (unsigned)st.st_uid, (unsigned)geteuid());
		goto fail;
	}
	if (!top && runtime_shared && st.st_gid != runtime_gid &&
	    fchown(fd, (uid_t)-1, runtime_gid) == -1) {
		log_warn("dirty: cannot give %s/%s to group %u", parent_path,
		    name, (unsigned)runtime_gid);
		goto fail;
	}
	mode = st.st_mode & 07777;
	if (top)
		want = runtime_shared || mode == 0711 ? 0711 : 0700;
	else
		want = runtime_shared ? 0710 : 0700;
	if (mode != want && fchmod(fd, want) == -1) {
		log_warn("dirty: cannot chmod %o %s/%s", (unsigned)want,
		    parent_path, name);
		goto fail;
	}
	return fd;
fail:
	close(fd);
	return -1;
}

/* The pid holding a write lock on the open file fd, 0 if none, -1 on error. */
static pid_t
lock_holder_fd(int fd)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };

	if (fcntl(fd, F_GETLK, &fl) == -1)
		return -1;
	if (fl.l_type == F_UNLCK)
		return 0;
	/* l_pid 0: the holder lives in another PID namespace. */
	return fl.l_pid > 0 ? fl.l_pid : -2;
}

static void
sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

/* Wait until nobody holds the lock on fd, up to ms.  1 if released. */
static int
wait_unlocked(int fd, long ms)
{
	for (long t = 0; t < ms; t += 10) {
		if (lock_holder_fd(fd) == 0)
			return 1;
		sleep_ms(10);
	}
	return lock_holder_fd(fd) == 0;
}

/*
 * A predecessor's arbiter holds the lock: it outlived its master (frozen,
 * or its master was SIGKILLed before it noticed).  TERM it, CONT it (a
 * stopped process acts on nothing but KILL and CONT), then KILL it.  Its
 * dirty workers die with it: they carry PR_SET_PDEATHSIG(SIGKILL).
 */
static int
kill_orphan(int fd, pid_t pid, const char *path)
{
	log_warnx("Killing orphaned dirty arbiter (pid: %d)", (int)pid);
	if (kill(pid, SIGTERM) == -1 && errno != ESRCH)
		log_warn("dirty: kill(%d, SIGTERM)", (int)pid);
	kill(pid, SIGCONT);
	if (wait_unlocked(fd, ORPHAN_WAIT_MS))
		return 0;
	pid = lock_holder_fd(fd);
	if (pid > 0) {
		log_warnx("Orphaned dirty arbiter (pid: %d) ignored SIGTERM, "
		    "sending SIGKILL", (int)pid);
		kill(pid, SIGKILL);
	}
	if (wait_unlocked(fd, ORPHAN_WAIT_MS))
		return 0;
	log_errorx("dirty: cannot remove the orphaned dirty arbiter holding "
	    "%s/%s", path, DIRTY_PIDFILE_NAME);
	return -1;
}

/* The parent of pid (field 4 of /proc/<pid>/stat), -1 if unknown. */
static pid_t
proc_parent(pid_t pid)
{
	char path[64], buf[512], *p;
	ssize_t n;
	int fd, ppid;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	/* "pid (comm) state ppid ...": comm may hold spaces and ')' */
	if ((p = strrchr(buf, ')')) == NULL ||
	    sscanf(p + 1, " %*c %d", &ppid) != 1)
		return -1;
	return ppid;
}

static int
pid_exists(pid_t pid)
{
	return pid > 0 && (kill(pid, 0) == 0 || errno == EPERM);
}

/* The master pid a pid file records ("ARBITER MASTER\n"; the master's
 * own claim is "0 MASTER\n"), 0 when it records none (an old one-pid
 * file, garbage, or an arbiter caught between its lock and its write). */
static pid_t
pidfile_master(int fd)
{
	char buf[64];
	ssize_t n;
	int arbiter, master;

	n = pread(fd, buf, sizeof(buf) - 1, 0);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	if (sscanf(buf, "%d %d", &arbiter, &master) != 2 || arbiter < 0 ||
	    master <= 0)
		return 0;
	return master;
}

enum dir_state { DIR_FREE, DIR_SIBLING, DIR_ERROR };

/*
 * Judge one of our proc_name's runtime directories (dfd, named path for
 * the logs):
 *   - the pid file is locked and the holder's parent is the master the
 *     file records: a live sibling server, DIR_SIBLING (*master set);
 *   - locked otherwise: an orphan (its master is gone), killed;
 *   - unlocked but recording a live master other than us: that master is
 *     between two arbiters (or has not forked its first one), a sibling;
 *   - unlocked otherwise: stale.
 * A directory whose lock is free, or whose orphan was killed, has its
 * leftovers (pid file, socket) removed: DIR_FREE.  DIR_ERROR after
 * logging when the lock cannot be judged.  !may_kill (another
 * proc_name's directory): any lock holder is left alone, DIR_SIBLING.
 */
static enum dir_state
examine_dir(int dfd, const char *path, pid_t *master, int may_kill)
{
	pid_t holder;
	int fd, rc = 0;

	*master = 0;
	fd = openat(dfd, DIRTY_PIDFILE_NAME,
	    O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	if (fd == -1 && errno != ENOENT && errno != ELOOP) {
		log_warn("dirty: cannot open %s/%s", path, DIRTY_PIDFILE_NAME);
		return DIR_ERROR;
	}
	if (fd != -1) {
		holder = lock_holder_fd(fd);
		if (holder != 0 && !may_kill) {
			close(fd);
			return DIR_SIBLING;
		}
		if (holder > 0) {
			/* A fresh arbiter writes its line right after
			 * taking the lock: give it a moment. */
			for (int i = 0; i < 10 && *master == 0; i++) {
				if ((*master = pidfile_master(fd)) == 0)
					sleep_ms(10);
			}
			if (*master > 0 && proc_parent(holder) == *master) {
				close(fd);
				return DIR_SIBLING;
			}
			rc = kill_orphan(fd, holder, path);
		} else if (holder == 0) {
			*master = pidfile_master(fd);
			if (*master != getpid() && pid_exists(*master)) {
				close(fd);
				return DIR_SIBLING;
			}
			log_debug("dirty: removing stale %s/%s (no lock holder)",
			    path, DIRTY_PIDFILE_NAME);
		} else if (holder == -2) {
			log_errorx("dirty: %s/%s is locked by a process outside "
			    "this PID namespace", path, DIRTY_PIDFILE_NAME);
			rc = -1;
		} else {
			log_warn("dirty: cannot examine the lock of %s/%s",
			    path, DIRTY_PIDFILE_NAME);
			rc = -1;
		}
		close(fd);
		*master = 0;
		if (rc == -1)
			return DIR_ERROR;
	}
	/* Leftovers of a dead predecessor: nothing holds them any more. */
	if (unlinkat(dfd, DIRTY_PIDFILE_NAME, 0) == -1 && errno != ENOENT)
		log_warn("dirty: cannot remove %s/%s", path, DIRTY_PIDFILE_NAME);
	if (unlinkat(dfd, DIRTY_SOCKET_NAME, 0) == -1 && errno != ENOENT)
		log_warn("dirty: cannot remove %s/%s", path, DIRTY_SOCKET_NAME);
	return DIR_FREE;
}

/* Create (if needed) and check <base>/cunicorn-<uid>/<name>; returns an
 * O_DIRECTORY fd of the last one, or -1 after logging. */
static int
open_dirs(void)
{
	int bfd, tfd = -1, dfd = -1;

	if ((bfd = open(base_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1) {
		log_warn("dirty: cannot open %s", base_dir);
		return -1;
	}
	/* Another master's exit may rmdir the shared top directory between
	 * our open and our mkdirat below: retry a few times. */
	for (int attempt = 0; attempt < 5; attempt++) {
		if ((tfd = ensure_dir(bfd, base_dir, top_dir_name, 1)) == -1)
			break;
		if ((dfd = ensure_dir(tfd, runtime_top, dir_name, 0)) != -1)
			break;
		if (errno != ENOENT)
			break;
		close(tfd);
		tfd = -1;
	}
	if (dfd == -1)
		log_errorx("dirty: cannot create %s", runtime_dir);
	if (tfd != -1)
		close(tfd);
	close(bfd);
	return dfd;
}

/* Open (creating it if needed) <base>/cunicorn-<uid>, or -1 after logging. */
static int
open_top(void)
{
	int bfd, tfd;

	if ((bfd = open(base_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1) {
		log_warn("dirty: cannot open %s", base_dir);
		return -1;
	}
	tfd = ensure_dir(bfd, base_dir, top_dir_name, 1);
	close(bfd);
	if (tfd == -1)
		log_errorx("dirty: cannot create %s", runtime_top);
	return tfd;
}

/* Which of our directories entry is: <name> is 1, <name>.N is N
 * (2..RUNTIME_DIRS_MAX), anything else 0. */
static int
dir_index(const char *entry)
{
	size_t n = strlen(base_name);
	char *end;
	long v;

	if (strncmp(entry, base_name, n) != 0)
		return 0;
	if (entry[n] == '\0')
		return 1;
	if (entry[n] != '.' || entry[n + 1] < '1' || entry[n + 1] > '9')
		return 0;
	v = strtol(entry + n + 1, &end, 10);
	if (*end != '\0' || v < 2 || v > RUNTIME_DIRS_MAX)
		return 0;
	return (int)v;
}

/* Point the paths at our directory number idx (see dir_index). */
static void
set_paths(int idx)
{
	free(dir_name);
	free(runtime_dir);
	free(socket_path);
	free(pidfile_path);
	dir_name = idx == 1 ? xstrdup(base_name) :
	    xasprintf("%s.%d", base_name, idx);
	runtime_dir = xasprintf("%s/%s", runtime_top, dir_name);
	socket_path = xasprintf("%s/%s", runtime_dir, DIRTY_SOCKET_NAME);
	pidfile_path = xasprintf("%s/%s", runtime_dir, DIRTY_PIDFILE_NAME);
}

/* Whether entry is named like a runtime directory of some proc_name:
 * "<sanitized>-<8 hex digits>", maybe followed by ".N". */
static int
runtime_dir_like(const char *entry)
{
	const char *end = strrchr(entry, '.'), *dash;
	size_t len = strlen(entry);

	if (end != NULL && end != entry && end[1] >= '1' && end[1] <= '9' &&
	    strspn(end + 1, "0123456789") == strlen(end + 1))
		len = (size_t)(end - entry);
	if (len < 10 || entry[0] == '.')
		return 0;
	dash = entry + len - 9;
	if (*dash != '-')
		return 0;
	for (int i = 1; i <= 8; i++)
		if (!((dash[i] >= '0' && dash[i] <= '9') ||
		    (dash[i] >= 'a' && dash[i] <= 'f')))
			return 0;
	return 1;
}

/*
 * Another proc_name's directory: removed when nothing uses it any more
 * (no lock holder, no live master recorded) -- what a server killed with
 * its whole process group (SIGKILL to every process, nobody left to
 * clean up) leaves.  Never signals anyone: orphans are only the business
 * of the next master of their own proc_name.
 */
static void
sweep_foreign(int tfd, const char *entry)
{
	struct stat st;
	pid_t master;
	int fd;

	if (!runtime_dir_like(entry))
		return;
	fd = openat(tfd, entry, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd == -1)
		return;
	if (fstat(fd, &st) == 0 && st.st_uid == geteuid()) {
		char *path = xasprintf("%s/%s", runtime_top, entry);
		if (examine_dir(fd, path, &master, 0) == DIR_FREE &&
		    unlinkat(tfd, entry, AT_REMOVEDIR) == 0)
			log_debug("dirty: removed the stale runtime dir %s", path);
		free(path);
	}
	close(fd);
}

/*
 * Look at every directory of our proc_name (<name>, <name>.2, ...): kill
 * the orphans, remove what is free (it is recreated if we choose it),
 * mark busy[idx] those a live sibling server uses (or that cannot be
 * judged).  *sibling: the master of the lowest-numbered sibling.
 */
static void
scan_dirs(int tfd, unsigned char *busy, pid_t *sibling)
{
	struct dirent *e;
	struct stat st;
	DIR *d;
	pid_t master;
	int fd, idx, sibling_idx = 0;

	if ((fd = dup(tfd)) == -1 || (d = fdopendir(fd)) == NULL) {
		if (fd != -1)
			close(fd);
		log_warn("dirty: cannot list %s", runtime_top);
		return;
	}
	while ((e = readdir(d)) != NULL) {
		if ((idx = dir_index(e->d_name)) == 0) {
			sweep_foreign(tfd, e->d_name);
			continue;
		}
		fd = openat(tfd, e->d_name,
		    O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd == -1)	/* a symlink...: refused if ever chosen */
			continue;
		if (fstat(fd, &st) == -1 || st.st_uid != geteuid()) {
			close(fd);
			continue;
		}
		char *path = xasprintf("%s/%s", runtime_top, e->d_name);
		switch (examine_dir(fd, path, &master, 1)) {
		case DIR_FREE:
			unlinkat(tfd, e->d_name, AT_REMOVEDIR);
			break;
		case DIR_SIBLING:
			if (sibling_idx == 0 || idx < sibling_idx) {
				sibling_idx = idx;
				*sibling = master;
			}
			/* FALLTHROUGH */
		case DIR_ERROR:
			busy[idx] = 1;
			break;
		}
		free(path);
		close(fd);
	}
	closedir(d);
}

/* Claim the free directory dfd for this master before its arbiter
 * exists: a pid file "0 MASTER", so that a sibling starting now sees it
 * taken.  0, or -1 with errno (EEXIST: another master was faster). */
static int
claim_dir(int dfd)
{
	char buf[32];
	int fd, n;

	fd = openat(dfd, DIRTY_PIDFILE_NAME, O_WRONLY | O_CREAT | O_EXCL |
	    O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0644);
	if (fd == -1)
		return -1;
	n = snprintf(buf, sizeof(buf), "0 %d\n", (int)getpid());
	if (write(fd, buf, (size_t)n) != n)
		log_warn("dirty: cannot write %s", pidfile_path);
	close(fd);
	return 0;
}

int
dirty_runtime_prepare(struct settings *s)
{
	unsigned char busy[RUNTIME_DIRS_MAX + 1] = { 0 };
	char *name, *top_name;
	const char *base;
	pid_t sibling = 0, master;
	int tfd = -1, dfd = -1, idx = 1, rc = -1;

	runtime_uid = s->uid;
	runtime_gid = s->gid;
	runtime_shared = runtime_uid != geteuid() || runtime_gid != getegid();
	name = sanitized_name(settings_proc_name(s));
	top_name = xasprintf("cunicorn-%u", (unsigned)geteuid());
	base = runtime_base(strlen(top_name) + strlen(name) +
	    sizeof(".NNN//" DIRTY_SOCKET_NAME));

	free(runtime_top);
	free(base_dir);
	free(top_dir_name);
	free(base_name);
	base_dir = xstrdup(base);
	top_dir_name = xstrdup(top_name);
	base_name = xstrdup(name);
	runtime_top = xasprintf("%s/%s", base, top_name);
	set_paths(1);

	if ((tfd = open_top()) == -1)
		goto out;
	scan_dirs(tfd, busy, &sibling);
	/* The first directory that is free; re-judged once open (a sibling
	 * may have started meanwhile), then claimed. */
	for (int tries = 0; ; tries++) {
		while (idx <= RUNTIME_DIRS_MAX && busy[idx])
			idx++;
		if (idx > RUNTIME_DIRS_MAX || tries > 2 * RUNTIME_DIRS_MAX) {
			log_errorx("dirty: no free runtime directory for "
			    "proc_name %s under %s", settings_proc_name(s),
			    runtime_top);
			goto out;
		}
		set_paths(idx);
		if (strlen(socket_path) >=
		    sizeof(((struct sockaddr_un *)0)->sun_path)) {
			log_errorx("dirty: socket path too long: %s",
			    socket_path);
			goto out;
		}
		if ((dfd = open_dirs()) == -1)
			goto out;
		switch (examine_dir(dfd, runtime_dir, &master, 1)) {
		case DIR_FREE:
			/* ENOENT: the orphan just killed removed the
			 * directory on its way out; EEXIST: a sibling
			 * claimed it first.  Judge it again. */
			if (claim_dir(dfd) == 0)
				goto chosen;
			if (errno != ENOENT && errno != EEXIST) {
				log_warn("dirty: cannot create %s",
				    pidfile_path);
				goto out;
			}
			break;
		case DIR_SIBLING:
			if (sibling == 0)
				sibling = master;
			/* FALLTHROUGH */
		case DIR_ERROR:
			busy[idx] = 1;
			break;
		}
		close(dfd);
		dfd = -1;
	}
chosen:
	if (idx > 1 && sibling > 0)
		log_info("Another server with proc_name %s is running "
		    "(master pid %d); using runtime dir %s",
		    settings_proc_name(s), (int)sibling, runtime_dir);
	else if (idx > 1)
		log_info("dirty: using runtime dir %s", runtime_dir);
	if (setenv("GUNICORN_DIRTY_SOCKET", socket_path, 1) == -1) {
		log_warn("dirty: setenv");
		goto out;
	}
	rc = 0;
out:
	if (dfd != -1)
		close(dfd);
	if (tfd != -1)
		close(tfd);
	free(name);
	free(top_name);
	return rc;
}

static int
open_runtime_dir(void)
{
	int fd;

	if (runtime_dir == NULL) {
		errno = ENOENT;
		return -1;
	}
	fd = open(runtime_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	return fd;
}

pid_t
dirty_runtime_lock_holder(void)
{
	int dfd, fd;
	pid_t pid;

	if ((dfd = open_runtime_dir()) == -1)
		return errno == ENOENT ? 0 : -1;
	fd = openat(dfd, DIRTY_PIDFILE_NAME,
	    O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	close(dfd);
	if (fd == -1)
		return errno == ENOENT ? 0 : -1;
	pid = lock_holder_fd(fd);
	close(fd);
	return pid == -2 ? -1 : pid;
}

int
dirty_runtime_lock_pidfile(void)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
	char buf[32];
	int dfd, fd, n;

	/* open_dirs(): recreated if someone removed them meanwhile */
	if (base_dir == NULL || (dfd = open_dirs()) == -1)
		return -1;
	fd = openat(dfd, DIRTY_PIDFILE_NAME,
	    O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0644);
	close(dfd);
	if (fd == -1) {
		log_warn("dirty: cannot open %s", pidfile_path);
		return -1;
	}
	if (fcntl(fd, F_SETLK, &fl) == -1) {
		pid_t holder = lock_holder_fd(fd);
		log_errorx("dirty: %s is locked by another dirty arbiter "
		    "(pid: %d)", pidfile_path, (int)holder);
		close(fd);
		return -1;
	}
	/* "ARBITER MASTER": the master lets the next master tell a live
	 * sibling from an orphan.  Written over the master's claim, then
	 * cut, so a reader never sees an empty file. */
	lock_master = getppid();
	n = snprintf(buf, sizeof(buf), "%d %d\n", (int)getpid(),
	    (int)lock_master);
	if (pwrite(fd, buf, (size_t)n, 0) != n || ftruncate(fd, n) == -1) {
		log_warn("dirty: cannot write %s", pidfile_path);
		close(fd);
		return -1;
	}
	lock_fd = fd;
	return fd;
}

int
dirty_runtime_listen(const struct settings *s)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd;

	if (socket_path == NULL ||
	    strlen(socket_path) >= sizeof(sun.sun_path)) {
		log_errorx("dirty: no usable socket path");
		return -1;
	}
	memcpy(sun.sun_path, socket_path, strlen(socket_path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		log_warn("dirty: socket");
		return -1;
	}
	if (unlink(socket_path) == -1 && errno != ENOENT)
		log_warn("dirty: cannot remove stale %s", socket_path);
	/* Mode 0600 from its creation (umask: the arbiter has one thread),
	 * never a chmod by path.  The lchown below is by path, but in a
	 * directory chain only our euid can write (ensure_dir). */
	mode_t saved_umask = umask(0177);
	int bound = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
	umask(saved_umask);
	if (bound == -1) {
		log_warn("dirty: cannot bind %s", socket_path);
		goto fail;
	}
	if (runtime_shared && lchown(socket_path, s->uid, s->gid) == -1) {
		log_warn("dirty: cannot set the owner of %s", socket_path);
		goto fail;
	}
	if (listen(fd, SOMAXCONN) == -1) {
		log_warn("dirty: listen %s", socket_path);
		goto fail;
	}
	return fd;
fail:
	close(fd);
	return -1;
}

void
dirty_runtime_arbiter_cleanup(void)
{
	char buf[32];
	int n;

	if (socket_path != NULL)
		unlink(socket_path);
	/* Our master lives on (it will respawn us, or clean up at its exit):
	 * leave its claim, so a sibling starting meanwhile does not take the
	 * directory.  Otherwise nobody else will remove the file. */
	if (lock_fd != -1 && lock_master > 0 && getppid() == lock_master) {
		n = snprintf(buf, sizeof(buf), "0 %d\n", (int)lock_master);
		if (pwrite(lock_fd, buf, (size_t)n, 0) == n &&
		    ftruncate(lock_fd, n) == 0)
			return;
	}
	if (pidfile_path != NULL)
		unlink(pidfile_path);
}

void
dirty_runtime_remove_dirs(void)
{
	if (runtime_dir == NULL)
		return;
	if (rmdir(runtime_dir) == -1 && errno != ENOENT && errno != ENOTEMPTY)
		log_warn("dirty: cannot remove %s", runtime_dir);
	/* Shared with other proc_names of the same uid: only if empty. */
	rmdir(runtime_top);
}

void
dirty_runtime_master_cleanup(void)
{
	pid_t holder;

	if (runtime_dir == NULL)
		return;
	holder = dirty_runtime_lock_holder();
	if (holder != 0) {
		/* An arbiter is still alive (or we cannot tell): leave its
		 * files for the next master's orphan check. */
		if (holder > 0)
			log_warnx("dirty arbiter (pid: %d) still holds %s",
			    (int)holder, pidfile_path);
		return;
	}
	unlink(socket_path);
	unlink(pidfile_path);
	dirty_runtime_remove_dirs();
}

/* ---- the dirty.h entry points that belong to the runtime ---- */

int
dirty_prepare(struct settings *s)
{
	return dirty_runtime_prepare(s);
}

const char *
dirty_socket_path(void)
{
	return socket_path;
}

void
dirty_master_cleanup(void)
{
	dirty_runtime_master_cleanup();
}
