/*
 * sigpipe.h — signals as bytes on a pipe, the one way our loops take
 * signals (the master, the sync, gthread and asgi workers, the dirty
 * arbiter, the dirty worker's watch thread): flag-only handlers write the
 * signal's number; the loop watches the read end like any descriptor and
 * reads the signals back in the order they came.
 *
 * Not signalfd: that needs the signals blocked in every thread, and a
 * process an app or a hook starts (subprocess, from a pool thread or the
 * asyncio loop) would inherit them blocked — a child that ignores TERM.
 * Here no thread blocks anything; whichever thread a signal lands on, its
 * handler only writes one byte (async-signal-safe, errno kept).  In a
 * process forked without spawn_process() (os.fork() in a hook or an app)
 * the handler is not ours: it restores the default action and raises the
 * signal again, so that process never writes into our pipe.
 */
#ifndef CUNICORN_SIGPIPE_H
#define CUNICORN_SIGPIPE_H

#include <stddef.h>

/* Install the handlers for sigs (SA_RESTART; SIGCHLD with SA_NOCLDSTOP),
 * SIGPIPE ignored, every signal unblocked.  Returns the read end
 * (non-blocking, close-on-exec).  Fatal on failure.  Once per process. */
int sigpipe_open(const int *sigs, size_t nsigs);

/* The same, and: restart 0 leaves SA_RESTART off (a blocking call a
 * signal interrupts fails with EINTR); also, when not NULL, runs in the
 * handler after the byte is written — it must be async-signal-safe
 * (alarm(), PyErr_SetInterruptEx()). */
int sigpipe_open_with(const int *sigs, size_t nsigs, int restart,
    void (*also)(int sig));

/* The next signal received, or 0 when none is waiting. */
int sigpipe_next(void);

/* Close the pipe (a child: the parent's is not its own); the handlers
 * stay until the caller resets them.  Harmless when none is open. */
void sigpipe_close(void);

#endif
