/*
 * master.h — the master (gunicorn's "arbiter") role.
 */
#ifndef CUNICORN_MASTER_H
#define CUNICORN_MASTER_H

struct settings;

/* Run the master until it stops; returns the process exit code.  argc/argv
 * are kept to re-read the configuration on SIGHUP and to re-execute on
 * SIGUSR2 from start_cwd (the directory we were started in). */
int master_main(struct settings *s, int argc, char **argv, const char *start_cwd);

#endif
