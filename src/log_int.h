/*
 * log_int.h — what log.c lends log_syslog.c, and nobody else sees: the
 * non-blocking write policy of log.c's header (a line waits at most
 * SINK_WAIT_MS for room from the call, then it is dropped and counted, and the sink
 * is tried once a line until one goes through), for a socket of
 * syslog's as for a log's pipe.
 */
#ifndef CUNICORN_LOG_INT_H
#define CUNICORN_LOG_INT_H

#include <stddef.h>
#include <stdint.h>

/* How a log's lines are written (log.c's header). */
struct sink {
	int nowait_fd;		/* -1: plain write(2); else written without blocking */
	int own;		/* nowait_fd is our /proc/self/fd open (we close it) */
	int socket;		/* nowait_fd is a socket: send(MSG_DONTWAIT) */
	int stalled;		/* atomic: the last line was dropped */
	int cut;		/* atomic: a dropped line left its head written:
				 * the next line starts with `end` */
	unsigned long dropped;	/* atomic: lines dropped since the last report */
	char end;		/* what ends a line: '\n', or syslog's NUL */
};

/* Before a wait that may last: release what the calling thread's wait
 * scope says (log.h; once per scope, nothing outside one). */
void log_wait_release(void);

/* How long a line may wait, from the call, for a log's reader. */
#define SINK_WAIT_MS	1000

/* One line to k->nowait_fd under the policy, waiting for room until
 * `deadline` at most (monotonic_ms()'s clock, util.h; not at all while
 * the sink is stalled).  1 written (*lost: the lines dropped before it,
 * when it ended a stall, else 0), 0 dropped (counted), -1 the sink
 * failed (errno; not counted: the caller decides). */
int sink_put(struct sink *k, const char *buf, size_t len, int64_t deadline,
    unsigned long *lost);

#endif
