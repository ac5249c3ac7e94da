/*
 * statsd.h — gunicorn's statsd instrumentation (statsd_host,
 * statsd_prefix, dogstatsd_tags, enable_backlog_metric), the metrics on
 * the wire as gunicorn's gunicorn/instrument/statsd.py sends them:
 *
 *   <prefix>gunicorn.requests:1|c|@1.0             every request
 *   <prefix>gunicorn.request.duration:12.345|ms    its duration in ms
 *   <prefix>gunicorn.request.status.404:1|c|@1.0   its status
 *   <prefix>gunicorn.workers:4|g                   master: HTTP workers
 *   <prefix>gunicorn.backlog:3|ms                  master, with
 *                                                  enable_backlog_metric
 *   <prefix>gunicorn.log.warning:1|c|@1.0          every WARNING, ERROR
 *   (.error, .critical, .exception)                and CRITICAL record,
 *                                                  whatever the log level
 *
 * each followed by "|#<dogstatsd_tags>" when tags are set.  The prefix is
 * gunicorn's: statsd_prefix with one "." after it (statsd_prefix_apply).
 * A request's three lines travel in one datagram, separated by "\n"
 * (statsd's multi-metric packet, which etsy's statsd, DogStatsD,
 * Telegraf, statsd_exporter and the OpenTelemetry receiver read): one
 * sendto per request instead of gunicorn's three; a packet that would
 * pass STATSD_PACKET_MAX is sent as one datagram per line.
 *
 * Which process sends what: HTTP workers the request metrics (sync,
 * gthread and asgi, where the access log line is made; not websockets),
 * the master the workers gauge and the backlog, every process its log
 * records' counters (the dirty arbiter and dirty workers too, as
 * gunicorn's, whose dirty processes log through the master's statsd
 * logger).  The master opens the socket (statsd_configure, at start and
 * on HUP) before it forks; children inherit it and what it points at.
 *
 * Sending never blocks and never fails a request: one non-blocking
 * sendto, a metric that cannot go (no room, no listener, any error) is
 * dropped without a word.  Safe from any thread; never called from a
 * signal handler.  No Python here.
 */
#ifndef CUNICORN_STATSD_H
#define CUNICORN_STATSD_H

#include <stddef.h>
#include <stdint.h>

struct settings;

/* Bounds of the settings (checked at start): a metric line always fits
 * the stack buffer it is formatted in. */
#define STATSD_PREFIX_MAX	512
#define STATSD_TAGS_MAX		2048
/* The most bytes one datagram carries several lines in: a UDP payload
 * that fits a 1500-byte Ethernet frame unfragmented, with headroom. */
#define STATSD_PACKET_MAX	1432

/* A statsd_host value, as gunicorn's validate_statsd_address reads it. */
struct statsd_address {
	int unix_socket;	/* 1: path; 0: host and port */
	char host[256];		/* "" never: an empty host is "0.0.0.0" */
	unsigned port;		/* 1..65535; 8125 when not given */
	char path[108];		/* a datagram socket's path (sun_path) */
};

/*
 * Parse a statsd_host value (not empty): "HOST:PORT", "HOST" (port
 * 8125), "[IPV6]:PORT", "tcp://HOST:PORT", "unix:PATH", "unix://PATH",
 * and "unix:PORT" (gunicorn's guard: host "unix").  0, or -1 with *why.
 */
int statsd_parse_address(const char *v, struct statsd_address *a,
    const char **why);

/* settings_table's checks: NULL when valid, else why not.  A host
 * must parse; a prefix or tags value must be printable ASCII (a control
 * character would split the line, gunicorn cannot send non-ASCII) and
 * within its bound. */
const char *statsd_check_host(const char *v);
const char *statsd_check_prefix(const char *v);
const char *statsd_check_tags(const char *v);

/* gunicorn's prefix rule: the prefix up to its last character that is
 * not a dot, then one dot -- when that part is at least two characters
 * long; else the prefix as given ("web" and "web.." give "web.", "a"
 * stays "a").  Writes at most size - 1 bytes and a NUL; returns the
 * length. */
size_t statsd_prefix_apply(const char *prefix, char *out, size_t size);

/*
 * The master, at start and on HUP, before it forks: take the statsd
 * settings (statsd_host NULL or "" turns it off).  Resolves the host
 * (IPv4 first, as gunicorn's AF_INET socket, then IPv6); a unix socket
 * is connected here, with the master's credentials, as gunicorn's.  A
 * host that does not resolve or a socket that cannot be reached is one
 * warning, and no metrics: the server runs on.
 */
void statsd_configure(const struct settings *s);
/* Whether metrics are sent (a setting was given and the socket is open). */
int statsd_enabled(void);
/* The descriptor a forked child keeps (spawn's close_all), or -1. */
int statsd_fd(void);

/* A request answered with status, elapsed_us after it began: its
 * duration, gunicorn.requests and its status counter, one datagram. */
void statsd_request(int status, uint64_t elapsed_us);
/* "name:value|g" and "name:value|ms" (gunicorn's gauge and histogram);
 * gunicorn's logger sends no metric whose value is 0, nor do these. */
void statsd_gauge(const char *name, long long value);
void statsd_histogram(const char *name, long long value);
/* A metric line from Python ("name:value|type...", a hook's
 * log.increment() or extra={"metric": ...}): prefixed and tagged, one
 * datagram; one over 512 bytes is dropped. */
void statsd_metric(const char *line, size_t len);
/* log.c's count hook (log_set_count_hook, set while metrics are sent):
 * one record at level, a Python exception's or not. */
void statsd_count_log(int level, int exception);

#endif
