/*
 * master.h — the master (gunicorn's "arbiter") role.
 */
#ifndef CUNICORN_MASTER_H
#define CUNICORN_MASTER_H

#include <stddef.h>

struct settings;

/* Run the master until it stops; returns the process exit code.  argc/argv
 * are kept to re-read the configuration on SIGHUP and to re-execute on
 * SIGUSR2 from start_cwd (the directory we were started in). */
int master_main(struct settings *s, int argc, char **argv, const char *start_cwd);
/* The syslog settings applied to the log (log_syslog.h): on, replaced,
 * or off.  0, or -1 with why (the previous setting kept). */
int master_syslog(const struct settings *s, char *why, size_t whylen);

#endif
