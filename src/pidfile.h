/*
 * pidfile.h — the master's pid file (gunicorn's --pid): written before
 * the port answers, refused when it names another live process, moved to
 * PATH.oldbin while a USR2 upgrade's new master owns PATH, removed only
 * while it still names us.
 */
#ifndef CUNICORN_PIDFILE_H
#define CUNICORN_PIDFILE_H

#include <sys/types.h>

/* Write our pid to path, atomically.  -1 (logged) when it cannot be
 * written or names another live process (a server already runs there). */
int pidfile_write(const char *path);
/* Remove path (oldbin: PATH.oldbin) if it names owner; one another master
 * has written since (a second start that failed, USR2's new master) is
 * not ours to remove. */
void pidfile_remove(const char *path, int oldbin, pid_t owner);
/* USR2: PATH to PATH.oldbin (to_oldbin), or back when the new master died. */
void pidfile_oldbin(const char *path, int to_oldbin);

#endif
