/*
 * dirty_runtime.c — the dirty arbiter's runtime directory, pid file lock
 * and orphan removal (see dirty_runtime.h for the layout and the rules).
 *
 * Owns: the chosen paths (static strings for the life of the process).
 * Runs in the master (prepare, master cleanup) and in the arbiter (lock,
 * listen, arbiter cleanup).  Never calls Python.  Never signals a process
 * that is not proven, by F_GETLK, to hold the pid file's write lock.
 * Never follows a symlink inside the runtime directory.
 */
#include "dirty.h"
#include "dirty_runtime.h"
#include "log.h"
#include "settings.h"
#include "util.h"

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

static char *runtime_top;	/* <base>/cunicorn-<uid> */
static char *runtime_dir;	/* <top>/<name> */
static char *socket_path;	/* <dir>/dirty.sock */
static char *pidfile_path;	/* <dir>/dirty-arbiter.pid */
static char *base_dir;		/* $XDG_RUNTIME_DIR or /tmp */
static char *top_dir_name;	/* cunicorn-<uid> */
static char *dir_name;		/* <sanitized proc_name>-<hash> */
static uid_t runtime_uid;
static gid_t runtime_gid;

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
	if (runtime_uid != geteuid())
		return "/tmp";
	if (x != NULL && x[0] == '/' &&
	    strlen(x) + tail_len < sizeof(((struct sockaddr_un *)0)->sun_path) &&
	    stat(x, &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == geteuid())
		return x;
	return "/tmp";
}

/*
 * mkdir (if needed) and open `name` under parent without following a
 * symlink; make sure it is a directory owned by uid with mode 0700.
 * Returns an O_DIRECTORY fd or -1 after logging.
 */
static int
ensure_dir(int parent, const char *parent_path, const char *name)
{
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
	if (st.st_uid != runtime_uid) {
		/* Ours (root creating it for workers that drop privileges):
		 * hand it over.  Anybody else's: refuse. */
		if (st.st_uid != geteuid() ||
		    fchown(fd, runtime_uid, runtime_gid) == -1) {
			log_errorx("dirty: %s/%s is owned by uid %u, expected %u",
			    parent_path, name, (unsigned)st.st_uid,
			    (unsigned)runtime_uid);
			goto fail;
		}
	}
	if ((st.st_mode & 07777) != 0700 && fchmod(fd, 0700) == -1) {
		log_warn("dirty: cannot chmod 0700 %s/%s", parent_path, name);
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
kill_orphan(int fd, pid_t pid)
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
	log_errorx("dirty: cannot remove the orphaned dirty arbiter holding %s",
	    pidfile_path);
	return -1;
}

static int
remove_predecessor(int dfd)
{
	int fd, rc = 0;
	pid_t holder;

	fd = openat(dfd, DIRTY_PIDFILE_NAME,
	    O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	if (fd == -1 && errno != ENOENT && errno != ELOOP) {
		log_warn("dirty: cannot open %s", pidfile_path);
		return -1;
	}
	if (fd != -1) {
		holder = lock_holder_fd(fd);
		if (holder > 0)
			rc = kill_orphan(fd, holder);
		else if (holder == -2) {
			log_errorx("dirty: %s is locked by a process outside "
			    "this PID namespace", pidfile_path);
			rc = -1;
		} else if (holder == -1) {
			log_warn("dirty: cannot examine the lock of %s",
			    pidfile_path);
			rc = -1;
		} else
			log_debug("dirty: removing stale %s (no lock holder)",
			    pidfile_path);
		close(fd);
		if (rc == -1)
			return -1;
	}
	/* Leftovers of a dead predecessor: nothing holds them any more. */
	if (unlinkat(dfd, DIRTY_PIDFILE_NAME, 0) == -1 && errno != ENOENT)
		log_warn("dirty: cannot remove %s", pidfile_path);
	if (unlinkat(dfd, DIRTY_SOCKET_NAME, 0) == -1 && errno != ENOENT)
		log_warn("dirty: cannot remove %s", socket_path);
	return 0;
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
		if ((tfd = ensure_dir(bfd, base_dir, top_dir_name)) == -1)
			break;
		if ((dfd = ensure_dir(tfd, runtime_top, dir_name)) != -1)
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

int
dirty_runtime_prepare(struct settings *s)
{
	char *name, *top_name;
	const char *base;
	int dfd = -1, rc = -1;

	runtime_uid = s->uid;
	runtime_gid = s->gid;
	name = sanitized_name(settings_proc_name(s));
	top_name = xasprintf("cunicorn-%u", (unsigned)runtime_uid);
	base = runtime_base(strlen(top_name) + strlen(name) +
	    sizeof("//" DIRTY_SOCKET_NAME));

	free(runtime_top);
	free(runtime_dir);
	free(socket_path);
	free(pidfile_path);
	free(base_dir);
	free(top_dir_name);
	free(dir_name);
	base_dir = xstrdup(base);
	top_dir_name = xstrdup(top_name);
	dir_name = xstrdup(name);
	runtime_top = xasprintf("%s/%s", base, top_name);
	runtime_dir = xasprintf("%s/%s", runtime_top, name);
	socket_path = xasprintf("%s/%s", runtime_dir, DIRTY_SOCKET_NAME);
	pidfile_path = xasprintf("%s/%s", runtime_dir, DIRTY_PIDFILE_NAME);
	if (strlen(socket_path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
		log_errorx("dirty: socket path too long: %s", socket_path);
		goto out;
	}

	if ((dfd = open_dirs()) == -1)
		goto out;
	if (remove_predecessor(dfd) == -1)
		goto out;
	/* The orphan, once it noticed its master's death, may have removed
	 * the (empty) directories on its way out: make sure they exist. */
	close(dfd);
	if ((dfd = open_dirs()) == -1)
		goto out;
	if (setenv("GUNICORN_DIRTY_SOCKET", socket_path, 1) == -1) {
		log_warn("dirty: setenv");
		goto out;
	}
	rc = 0;
out:
	if (dfd != -1)
		close(dfd);
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
	n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
	if (ftruncate(fd, 0) == -1 || pwrite(fd, buf, (size_t)n, 0) != n) {
		log_warn("dirty: cannot write %s", pidfile_path);
		close(fd);
		return -1;
	}
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
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		log_warn("dirty: cannot bind %s", socket_path);
		goto fail;
	}
	if (chmod(socket_path, 0600) == -1 ||
	    (s->uid != geteuid() || s->gid != getegid() ?
	    lchown(socket_path, s->uid, s->gid) : 0) == -1) {
		log_warn("dirty: cannot set the owner/mode of %s", socket_path);
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
	if (socket_path != NULL)
		unlink(socket_path);
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
