/*
 * log_syslog.c — the error and access logs' lines to a syslog receiver
 * (contract: log_syslog.h).
 *
 * Owns: the one syslog socket of the process, its address (resolved
 * once, when set), the tag and facility, the count of lines lost while
 * the receiver was away or slow.  The socket's descriptor keeps its
 * number for the life of the setting: connecting again makes a new
 * socket and dup3()s it over that number, so that no thread ever writes
 * to a number that was closed and given to something else, and a
 * child's close_all keeps it (log_fds).  A new setting is made whole
 * aside and swapped in under the lock (a failed one leaves the old one
 * as it was); turning syslog off resets everything a sender looks at.
 *
 * A lock (recursive: the warnings it logs come back through
 * log_syslog_line) makes one message at a time go out, so a stream
 * never gets two interleaved.  Each line has SINK_WAIT_MS from the call,
 * the wait for the lock included: a line that cannot have the lock by
 * then is dropped and counted, and the one holding it waits for room
 * only until its own deadline — so a slow receiver costs a line one
 * SINK_WAIT_MS at most however many threads log at once.  A fork (ours
 * or an app's os.fork()) gives the child a lock of its own, free.
 * Never: blocks past that, calls Python, or logs a failure to syslog
 * itself.
 */
#include "log_syslog.h"
#include "log.h"
#include "log_int.h"
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>

#define SYSLOG_PORT	"514"
#define SYSLOG_MSG_MAX	8192	/* a longer message is cut */
#define TAG_MAX		(sizeof("gunicorn.") + SYSLOG_PREFIX_MAX)
#define RETRY_MS	1000	/* a receiver away is tried again this often */

static const struct { const char *name; int code; } facilities[] = {
	{ "kern", 0 }, { "user", 1 }, { "mail", 2 }, { "daemon", 3 },
	{ "auth", 4 }, { "security", 4 }, { "syslog", 5 }, { "lpr", 6 },
	{ "news", 7 }, { "uucp", 8 }, { "cron", 9 }, { "authpriv", 10 },
	{ "ftp", 11 }, { "local0", 16 }, { "local1", 17 }, { "local2", 18 },
	{ "local3", 19 }, { "local4", 20 }, { "local5", 21 }, { "local6", 22 },
	{ "local7", 23 },
};

/* An address of log_syslog.h, parsed. */
struct syslog_addr {
	int unix_path;			/* AF_UNIX: path; else host and port */
	int socktype;			/* 0 (unix only): datagram, else stream */
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char host[256];
	char port[6];
};

/* A setting: the one in use (S), or a new one being made (a local of
 * log_syslog_open's until it is whole). */
struct syslog_setting {
	int fd;				/* -1: syslog off */
	int family, socktype;		/* of the socket to make */
	int fallback;			/* unix: a datagram one, else a stream one */
	struct sockaddr_storage sa;
	socklen_t salen;
	char text[512];			/* the address as given, for warnings */
	char tag[TAG_MAX];		/* "gunicorn.PREFIX" */
	int facility;
	int access;
	int down;			/* the last attempt failed: lines are
					   dropped until retry_ms */
	uint64_t retry_ms;
	struct sink sink;
};

/* The setting in use: written by whoever holds `lock` (the master's
 * log_syslog_open/close, a sender connecting again).  fd and access are
 * also read without it, as a hint (log_syslog_line looks again under
 * the lock). */
static struct syslog_setting S = { .fd = -1 };
static unsigned long lost;		/* atomic: lines lost since the last
					   report (also counted without the
					   lock: one that could not have it) */
static pthread_mutex_t lock = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;
/* While this thread sends a line: that line's deadline, which a warning
 * logged meanwhile (back through log_syslog_line) does not pass. */
static __thread int64_t line_deadline;

int
log_syslog_facility(const char *name)
{
	for (size_t i = 0; i < sizeof(facilities) / sizeof(facilities[0]); i++)
		if (strcasecmp(name, facilities[i].name) == 0)
			return facilities[i].code;
	return -1;
}

static const char *
addr_parse(const char *text, struct syslog_addr *a)
{
	const char *rest, *colon, *hash;
	size_t hlen;

	memset(a, 0, sizeof(*a));
	if (strncmp(text, "unix://", 7) == 0) {
		rest = text + 7;
		hash = strchr(rest, '#');
		hlen = hash != NULL ? (size_t)(hash - rest) : strlen(rest);
		if (hlen == 0)
			return "a unix:// address needs a path";
		if (hlen >= sizeof(a->path))
			return "the socket path is too long";
		memcpy(a->path, rest, hlen);
		a->unix_path = 1;
		/* #dgram: a datagram socket only; anything else, or nothing:
		 * whichever the receiver is (gunicorn's SysLogHandler tries
		 * datagram, then stream) */
		a->socktype = hash != NULL && strcmp(hash + 1, "dgram") == 0 ?
		    SOCK_DGRAM : 0;
		return NULL;
	}
	if (strncmp(text, "udp://", 6) == 0)
		a->socktype = SOCK_DGRAM;
	else if (strncmp(text, "tcp://", 6) == 0)
		a->socktype = SOCK_STREAM;
	else
		return "not a syslog address: unix://PATH[#dgram], "
		    "udp://HOST[:PORT] or tcp://HOST[:PORT]";
	rest = text + 6;
	if (rest[0] == '[') {
		const char *close = strchr(rest, ']');
		if (close == NULL)
			return "an IPv6 address needs its closing ']'";
		hlen = (size_t)(close - rest - 1);
		if (hlen >= sizeof(a->host))
			return "the host name is too long";
		memcpy(a->host, rest + 1, hlen);
		colon = close[1] == ':' ? close + 1 : NULL;
		if (close[1] != '\0' && colon == NULL)
			return "only :PORT may follow an [IPv6] address";
	} else {
		colon = strchr(rest, ':');
		hlen = colon != NULL ? (size_t)(colon - rest) : strlen(rest);
		if (hlen >= sizeof(a->host))
			return "the host name is too long";
		memcpy(a->host, rest, hlen);
	}
	if (a->host[0] == '\0')
		strcpy(a->host, "localhost");
	for (char *h = a->host; *h != '\0'; h++)
		*h = (char)tolower((unsigned char)*h);
	if (colon == NULL) {
		strcpy(a->port, SYSLOG_PORT);
		return NULL;
	}
	colon++;
	if (*colon == '\0' || strlen(colon) > 5 ||
	    strspn(colon, "0123456789") != strlen(colon) ||
	    atoi(colon) < 1 || atoi(colon) > 65535)
		return "the port is not a number from 1 to 65535";
	strcpy(a->port, colon);
	return NULL;
}

const char *
log_syslog_check_addr(const char *addr)
{
	struct syslog_addr a;

	return addr_parse(addr, &a);
}

const char *
log_syslog_check_prefix(const char *prefix)
{
	if (strlen(prefix) > SYSLOG_PREFIX_MAX)
		return "too long";
	for (const unsigned char *p = (const unsigned char *)prefix; *p; p++)
		if (*p < 0x20 || *p >= 0x7f)
			return "only printable ASCII characters";
	return NULL;
}

/* A new socket of type `type` connected (or connecting: TCP) to st's
 * address: its descriptor, or -1 (errno). */
static int
socket_to(const struct syslog_setting *st, int type)
{
	int fd = socket(st->family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd == -1)
		return -1;
	if (connect(fd, (const struct sockaddr *)&st->sa, st->salen) == 0 ||
	    errno == EINPROGRESS)
		return fd;
	{
		int saved = errno;
		close(fd);
		errno = saved;
	}
	return -1;
}

/* Connect st again: a new socket over st->fd's number (or st->fd itself
 * the first time).  0, or -1 (errno) with st->fd kept as it was (the
 * first time, an unconnected socket that holds the number, or -1 when
 * not even that could be made). */
static int
syslog_connect(struct syslog_setting *st)
{
	int fd, err;

	if (st->fallback) {
		if ((fd = socket_to(st, SOCK_DGRAM)) != -1)
			st->socktype = SOCK_DGRAM;
		else if ((fd = socket_to(st, SOCK_STREAM)) != -1)
			st->socktype = SOCK_STREAM;
	} else
		fd = socket_to(st, st->socktype);
	if (fd == -1) {
		err = errno;
		if (st->fd == -1)	/* hold the number: connected again later */
			st->fd = socket(st->family, (st->fallback ? SOCK_DGRAM :
			    st->socktype) | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		errno = err;
		return -1;
	}
	if (st->fd == -1)
		st->fd = fd;
	else if (fd != st->fd) {
		if (dup3(fd, st->fd, O_CLOEXEC) == -1) {
			err = errno;
			close(fd);
			errno = err;
			return -1;
		}
		close(fd);
	}
	st->sink.nowait_fd = st->fd;
	st->sink.cut = 0;
	return 0;
}

/* The child's side of any fork (pthread_atfork): the parent may have
 * held the lock in a thread the child does not have. */
static void
lock_reset(void)
{
	pthread_mutex_t fresh = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;

	memcpy(&lock, &fresh, sizeof(lock));
}

static void
atfork_register(void)
{
	(void)pthread_atfork(NULL, NULL, lock_reset);
}

int
log_syslog_open(const char *addr, const char *facility, const char *prefix,
    const char *proc_name, int access, char *why, size_t whylen)
{
	static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
	struct syslog_setting n = { .fd = -1 };
	struct syslog_addr a;
	const char *bad;
	struct addrinfo hints = { .ai_family = AF_UNSPEC }, *res = NULL;
	int code, rc, err = 0, old;

	if ((bad = addr_parse(addr, &a)) != NULL) {
		snprintf(why, whylen, "%s", bad);
		return -1;
	}
	if ((code = log_syslog_facility(facility)) == -1) {
		snprintf(why, whylen, "unknown facility name '%s'", facility);
		return -1;
	}
	if (!a.unix_path) {
		hints.ai_socktype = a.socktype;
		if ((rc = getaddrinfo(a.host, a.port, &hints, &res)) != 0 ||
		    res == NULL) {
			snprintf(why, whylen, "cannot resolve '%s': %s", a.host,
			    rc != 0 ? gai_strerror(rc) : "no address");
			return -1;
		}
	}
	snprintf(n.tag, sizeof(n.tag), "gunicorn.%s",
	    prefix != NULL && *prefix != '\0' ? prefix : proc_name);
	if (prefix == NULL || *prefix == '\0')
		for (char *t = n.tag; *t != '\0'; t++)
			if (*t == ':')
				*t = '.';
	if (a.unix_path) {
		struct sockaddr_un *un = (struct sockaddr_un *)&n.sa;
		un->sun_family = AF_UNIX;
		memcpy(un->sun_path, a.path, strlen(a.path) + 1);
		n.family = AF_UNIX;
		n.salen = (socklen_t)sizeof(*un);
		n.fallback = a.socktype == 0;
		n.socktype = a.socktype != 0 ? a.socktype : SOCK_DGRAM;
	} else {
		memcpy(&n.sa, res->ai_addr, res->ai_addrlen);
		n.salen = res->ai_addrlen;
		n.family = res->ai_family;
		n.socktype = a.socktype;
		freeaddrinfo(res);
	}
	snprintf(n.text, sizeof(n.text), "%s", addr);
	n.facility = code;
	n.access = access;
	n.sink = (struct sink){ .nowait_fd = -1, .socket = 1, .end = '\0' };
	if (syslog_connect(&n) == -1) {
		err = errno;
		n.down = 1;
		n.retry_ms = monotonic_ms() + RETRY_MS;
	}
	if (n.fd == -1) {	/* not even a socket: the old setting stays */
		snprintf(why, whylen, "socket: %s", strerror(err));
		return -1;
	}
	n.sink.nowait_fd = n.fd;
	pthread_once(&atfork_once, atfork_register);

	pthread_mutex_lock(&lock);
	old = S.fd;
	S = n;
	__atomic_store_n(&lost, 0, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&lock);
	if (old != -1)		/* no sender holds it: they look under the lock */
		close(old);
	if (err != 0)
		log_warnx("syslog: cannot connect to %s: %s (tried again as "
		    "lines come, at most once a second)", addr, strerror(err));
	return 0;
}

void
log_syslog_close(void)
{
	pthread_mutex_lock(&lock);
	if (S.fd != -1)
		close(S.fd);
	S.fd = -1;
	S.sink.nowait_fd = -1;
	S.down = 0;
	S.access = 0;
	pthread_mutex_unlock(&lock);
}

int
log_syslog_fd(void)
{
	return S.fd;
}

int
log_syslog_access(void)
{
	return S.fd != -1 && S.access;
}

static void
lost_one(void)
{
	__atomic_add_fetch(&lost, 1, __ATOMIC_RELAXED);
}

/* One message under the lock, until `deadline`: log.c's policy, then a
 * receiver gone is connected again and the message sent once more (as
 * gunicorn's handler does); while it cannot be, messages are dropped and
 * counted.  Nothing when syslog was turned off since the caller looked. */
static void
syslog_send(const char *buf, size_t len, int64_t deadline)
{
	unsigned long before = 0;
	int rc, err;

	if (S.fd == -1)
		return;
	if (S.down) {
		if (monotonic_ms() < S.retry_ms) {
			lost_one();
			return;
		}
		if (syslog_connect(&S) == -1) {
			S.retry_ms = monotonic_ms() + RETRY_MS;
			lost_one();
			return;
		}
		S.down = 0;
	}
	if ((rc = sink_put(&S.sink, buf, len, deadline, &before)) == -1) {
		int udp = S.family != AF_UNIX && S.socktype == SOCK_DGRAM;

		/* UDP: the error of a datagram before (an ICMP "port
		 * unreachable" for a connected socket) comes with the next
		 * send: send again; nothing to connect to again */
		err = errno;
		if (udp || syslog_connect(&S) == 0)
			rc = sink_put(&S.sink, buf, len, deadline, &before);
		if (rc == -1 && udp) {
			lost_one();
			return;
		}
		if (rc == -1) {
			S.down = 1;
			S.retry_ms = monotonic_ms() + RETRY_MS;
			lost_one();
			log_warnx("syslog: cannot send to %s: %s (lines are "
			    "dropped until it takes them again)", S.text,
			    strerror(err));
			return;
		}
	}
	/* a plain load first: the exchange only after a loss */
	if (rc == 1 && (before > 0 || __atomic_load_n(&lost, __ATOMIC_RELAXED))) {
		before += __atomic_exchange_n(&lost, 0, __ATOMIC_RELAXED);
		if (before > 0)
			log_warnx("syslog: %lu lines lost: %s did not take "
			    "them", before, S.text);
	}
}

static int
severity(int level)
{
	if (level >= LOG_CRITICAL) return 2;
	if (level >= LOG_ERROR) return 3;
	if (level >= LOG_WARNING) return 4;
	if (level >= LOG_INFO) return 6;
	return 7;
}

void
log_syslog_line(int which, int level, const char *msg, size_t len)
{
	char buf[SYSLOG_MSG_MAX + TAG_MAX + 64];
	int64_t deadline, outer = line_deadline;
	struct timespec until;
	char *p, *end;
	int n, saved = errno;

	if (S.fd == -1 || (which == LOG_SYSLOG_ACCESS && !S.access))
		return;		/* a hint: looked at again under the lock */
	deadline = (int64_t)monotonic_ms() + SINK_WAIT_MS;
	if (outer != 0 && outer < deadline)
		deadline = outer;
	until.tv_sec = deadline / 1000;
	until.tv_nsec = (deadline % 1000) * 1000000;
	if (pthread_mutex_trylock(&lock) != 0) {
		log_wait_release();
		if (pthread_mutex_clocklock(&lock, CLOCK_MONOTONIC,
		    &until) != 0) {
			lost_one();	/* others held it for this line's wait */
			errno = saved;
			return;
		}
	}
	if (which == LOG_SYSLOG_ACCESS && !S.access)
		goto out;	/* turned off meanwhile (syslog_send sees S.fd) */
	n = snprintf(buf, sizeof(buf), "<%d>%s.%s: [%ld] ",
	    S.facility * 8 + severity(level), S.tag,
	    which == LOG_SYSLOG_ACCESS ? "access" : "error", (long)getpid());
	if (n < 0)
		goto out;
	if (len > sizeof(buf) - (size_t)n - 1)
		len = sizeof(buf) - (size_t)n - 1;
	memcpy(buf + n, msg, len);
	/* a NUL ends a message for a stream's receiver: none inside (an
	 * access line shows values an app may set) */
	end = buf + n + len;
	for (p = buf + n; (p = memchr(p, '\0', (size_t)(end - p))) != NULL; )
		*p++ = ' ';
	*end = '\0';			/* ends the message, as gunicorn's */
	line_deadline = deadline;
	syslog_send(buf, (size_t)n + len + 1, deadline);
	line_deadline = outer;
out:
	pthread_mutex_unlock(&lock);
	errno = saved;
}

void
log_syslog_forked(void)
{
	lock_reset();	/* as the atfork handler, for a child made without it */
	__atomic_store_n(&lost, 0, __ATOMIC_RELAXED);
	S.sink.stalled = 0;
	S.sink.dropped = 0;
	/* a stream of the child's own (a datagram socket is shared) */
	if (S.fd != -1 && S.socktype == SOCK_STREAM && syslog_connect(&S) == -1) {
		S.down = 1;
		S.retry_ms = 0;
	}
}
