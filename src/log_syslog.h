/*
 * log_syslog.h — gunicorn's syslog settings (--log-syslog, --log-syslog-to,
 * --log-syslog-prefix, --log-syslog-facility,
 * --disable-redirect-access-to-syslog): the error log's lines, and the
 * access log's, also sent to a syslog receiver, as gunicorn's handlers
 * send them.
 *
 * Addresses, as gunicorn reads them:
 *   udp://HOST[:PORT]   datagrams (HOST "" is localhost, PORT 514)
 *   tcp://HOST[:PORT]   a stream, each message ended by a NUL
 *   unix://PATH         a datagram socket, else a stream one (what the
 *                       receiver at PATH is); unix://PATH#dgram: a
 *                       datagram socket only
 * HOST may be a name, an IPv4 address or an [IPv6] one.
 * A message is "<PRI>gunicorn.PREFIX.error: [PID] MESSAGE" (".access"
 * for access lines) and a NUL: PRI is facility * 8 + the line's
 * severity (CRITICAL 2, ERROR 3, WARNING 4, INFO 6, DEBUG 7; access
 * lines INFO), PREFIX syslog_prefix or else proc_name with ':' made '.'.
 * No date nor host name: the receiver adds them.  A NUL inside MESSAGE
 * (an app's bytes in an access line) is sent as a space, so that it
 * does not end the message early for a stream's receiver.
 *
 * Every process logs through it (log.c calls log_syslog_line); the
 * socket is opened once, in the master, and inherited: a datagram one
 * is shared, a stream one is connected again by each child (so two
 * processes' messages never interleave in one stream).  Never blocks
 * longer than log.c's policy allows (log_int.h), counted from the call,
 * however many threads log at once: a receiver that stops reading costs
 * one wait, then lines are dropped and counted; one that
 * goes away is connected again (at most once a second), the lines
 * meanwhile dropped and counted; a WARNING in the error log says how
 * many once lines go through again.
 */
#ifndef CUNICORN_LOG_SYSLOG_H
#define CUNICORN_LOG_SYSLOG_H

#include <stddef.h>

enum { LOG_SYSLOG_ERROR, LOG_SYSLOG_ACCESS };

/* The longest syslog_prefix. */
#define SYSLOG_PREFIX_MAX	200

/* gunicorn's facility names (any case): the code, or -1. */
int log_syslog_facility(const char *name);
/* NULL when addr is one of the forms above, else why not (static). */
const char *log_syslog_check_addr(const char *addr);
/* NULL when prefix is printable ASCII of SYSLOG_PREFIX_MAX bytes at
 * most, else why not (static). */
const char *log_syslog_check_prefix(const char *prefix);

/*
 * Send from now on (and in every process forked after) to addr, with
 * facility (a name), tagged "gunicorn.TAG": TAG is prefix when not NULL
 * or empty, else proc_name with ':' made '.'; access lines too when
 * access (prefix as log_syslog_check_prefix accepts; a longer tag is
 * cut).  Replaces what was set before.  0, or -1 with why (a bad
 * address or facility, a host that does not resolve, no socket): the
 * previous setting is kept, all of it.  A receiver not there yet is not
 * an error (a warning; connected again when lines come).
 */
int log_syslog_open(const char *addr, const char *facility,
    const char *prefix, const char *proc_name, int access,
    char *why, size_t whylen);
/* Stop sending (syslog off after a reload). */
void log_syslog_close(void);

/* For log.c: the socket a child keeps (-1: none), whether access lines
 * are wanted, one line (without its newline) at log level `level`, and
 * the child's side of a fork. */
int log_syslog_fd(void);
int log_syslog_access(void);
void log_syslog_line(int which, int level, const char *msg, size_t len);
void log_syslog_forked(void);

#endif
