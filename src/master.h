/*
 * master.h — the master (gunicorn's "arbiter") role.
 */
#ifndef CUNICORN_MASTER_H
#define CUNICORN_MASTER_H

struct settings;

/* Run the master until it stops; returns the process exit code.  argc/argv
 * are kept to re-read the configuration on SIGHUP. */
int master_main(struct settings *s, int argc, char **argv);

#endif
