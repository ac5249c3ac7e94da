/*
 * sigpipe.h — signals as bytes on a pipe, for the event loops (gthread,
 * asgi, the dirty arbiter, the dirty worker's watch thread): flag-only
 * handlers write the signal's number; the loop watches the read end
 * like any descriptor.
 *
 * Not signalfd: that needs the signals blocked in every thread, and a
 * process an app starts (subprocess, from a pool thread or the asyncio
 * loop) would inherit them blocked — a child that ignores TERM.  Here no
 * thread blocks anything; whichever thread a signal lands on, its
 * handler only writes one byte (async-signal-safe, errno kept).
 */
#ifndef CUNICORN_SIGPIPE_H
#define CUNICORN_SIGPIPE_H

#include <stddef.h>

/* Install the handlers for sigs (SA_RESTART), SIGPIPE ignored, every
 * signal unblocked.  Returns the read end (non-blocking, close-on-exec).
 * Fatal on failure.  Once per process. */
int sigpipe_open(const int *sigs, size_t nsigs);
/* The next signal received, or 0 when none is waiting. */
int sigpipe_next(void);

#endif
