/*
 * proctitle.h — process titles as `ps aux` shows them.
 *
 * proctitle_init() moves environ out of the argv area (as setproctitle
 * does) so that the whole contiguous argv+environ block can hold a title;
 * proctitle_set() rewrites it and pads with NULs, and sets the 15-byte comm
 * with PR_SET_NAME.  Titles follow gunicorn's: "<prog>: master [<name>]".
 */
#ifndef CUNICORN_PROCTITLE_H
#define CUNICORN_PROCTITLE_H

#include "log.h"

void proctitle_init(int argc, char **argv);
void proctitle_set(const char *fmt, ...) PRINTF_LIKE(1, 2);
/* Basename the binary was started as: "cunicorn", or "gunicorn". */
const char *proctitle_prog(void);

#endif
