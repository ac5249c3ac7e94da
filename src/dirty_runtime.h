/*
 * dirty_runtime.h — the dirty arbiter's private runtime directory, its
 * pid file lock and the removal of a predecessor's orphan (internal to the
 * dirty arbiter's files; master.c only sees dirty.h).
 *
 * Layout (deterministic from proc_name, so the next master of the same
 * proc_name finds what the previous one left):
 *
 *   <base>/cunicorn-<euid>/            mode 0700 (0711 once a server's
 *                                      workers ran as another user)
 *   <base>/cunicorn-<euid>/<name>/     mode 0700; 0710 and the workers'
 *                                      group when they run as another
 *                                      user or group
 *       dirty.sock                     the arbiter's listening socket
 *                                      (0600, the workers' uid and gid)
 *       dirty-arbiter.pid              "ARBITER_PID MASTER_PID\n", fcntl-
 *                                      write-locked by the arbiter for its
 *                                      whole life ("0 MASTER_PID\n": the
 *                                      master's claim before its arbiter)
 *   <base>/cunicorn-<euid>/<name>.2/   the same, for a second server with
 *   <base>/cunicorn-<euid>/<name>.3/   the same proc_name running at once
 *   ...                                (blue/green deploys), up to .100
 *
 * <base> is $XDG_RUNTIME_DIR when it is an absolute directory short enough
 * for a socket path and the workers run as ourselves, else /tmp; <euid>
 * is the master's (and the arbiter's) effective uid: every directory is
 * owned by it and writable by nobody else, even when the workers run as
 * another user (-u/-g), so a privileged arbiter never works by path in a
 * directory an unprivileged user can change; <name> is proc_name with
 * every byte outside [A-Za-z0-9._-] replaced by '_', cut to 40 bytes,
 * followed by '-' and a 32-bit FNV-1a hash of the full proc_name (so two
 * names that sanitize alike never share a directory).
 *
 * Every directory is created with mkdirat() and opened with
 * O_DIRECTORY|O_NOFOLLOW; its owner and mode are checked with fstat();
 * nothing here follows a symlink.
 *
 * Leftovers: a starting master also removes the directories of other
 * proc_names that nothing uses any more (no lock holder, no live master
 * recorded: a server killed with its whole process group), never
 * signalling anyone.
 *
 * Orphan rule: only a process PROVEN to hold the pid file's write lock
 * (F_GETLK names it) is ever signalled, and only when the master the file
 * records is gone: the holder's parent (/proc/HOLDER/stat) is no longer
 * that master.  A holder whose parent IS the recorded master belongs to a
 * live sibling server: never signalled; the new master takes the next
 * directory (<name>, <name>.2, <name>.3 ...: the first free, stale or
 * orphaned one) and logs "Another server with proc_name X is running
 * (master pid N); using runtime dir D".  An unlocked pid file recording a
 * live master other than us is that sibling between two arbiters: busy
 * too.  A pid file without a lock holder otherwise is stale: it is removed
 * and nothing is killed, whatever pid it names.  Leftovers (pid file,
 * socket) are removed only when the lock is free or its orphan was
 * killed.  At start every directory of the proc_name is examined, so an
 * orphan left in <name>.2 is found by any later master.
 */
#ifndef CUNICORN_DIRTY_RUNTIME_H
#define CUNICORN_DIRTY_RUNTIME_H

#include <sys/types.h>

struct settings;

#define DIRTY_SOCKET_NAME	"dirty.sock"
#define DIRTY_PIDFILE_NAME	"dirty-arbiter.pid"

/* Master: kill the proven orphans of our proc_name, remove leftovers,
 * choose (and claim) a directory no sibling server uses, create it,
 * export GUNICORN_DIRTY_SOCKET.  0, or -1 after logging. */
int dirty_runtime_prepare(struct settings *s);
/* Paths chosen by dirty_runtime_prepare() (NULL before). */
const char *dirty_runtime_dir(void);
const char *dirty_runtime_socket(void);
const char *dirty_runtime_pidfile(void);

/* Arbiter: create/open the pid file, take the write lock, write our pid
 * and our master's (getppid()).
 * Returns the descriptor, which must stay open (never dup'ed then closed)
 * for the arbiter's whole life, or -1 after logging (lock held by
 * someone else, or I/O error). */
int dirty_runtime_lock_pidfile(void);
/* Arbiter: bind and listen on the socket (non-blocking, CLOEXEC), after
 * removing a stale socket file; chown'ed to the workers' uid/gid.
 * Returns the fd or -1 after logging. */
int dirty_runtime_listen(const struct settings *s);
/* Arbiter at exit: unlink the socket; unlink the pid file too, unless
 * the master is alive: then the file goes back to the master's claim
 * "0 MASTER" (the master respawns an arbiter or removes it at exit). */
void dirty_runtime_arbiter_cleanup(void);
/* Remove the directories if empty (master exit; arbiter after its
 * master died, since nobody else will). */
void dirty_runtime_remove_dirs(void);
/* Master at exit: remove socket, pid file (when no lock holder is left)
 * and the directories. */
void dirty_runtime_master_cleanup(void);

/* Who holds the pid file lock: its pid, 0 when nobody does, -1 when the
 * file cannot be examined (tests, status). */
pid_t dirty_runtime_lock_holder(void);

#endif
