/*
 * statsd.c — gunicorn's statsd instrumentation (contract, metric names
 * and the wire format: statsd.h).
 *
 * Owns: the statsd socket (one per server: the master opens it, every
 * child inherits it, its number never changes once open) and the
 * configuration it sends with (address, the prefix as applied, the tags
 * as "|#..."), which the master replaces on HUP.  A configuration is
 * never changed once published: statsd_configure() makes a new one and
 * swaps the pointer, and the one it replaced is freed at the next
 * replacement, so a thread of the master (a hook's) that read the old
 * one a moment before still reads valid memory.  A new socket of another
 * family takes the old one's number (dup3), so a sender never writes to
 * a number that was closed and reused.
 *
 * Per metric: formatting into a stack buffer, one non-blocking sendto.
 * Never: blocks, allocates, logs or fails on the sending path (a metric
 * that cannot go is dropped: gunicorn drops it too, after a warning per
 * failure that cunicorn does not repeat), calls Python.
 */
#include "statsd.h"

#include <ctype.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "settings.h"
#include "util.h"

struct statsd_conf {
	struct sockaddr_storage addr;
	socklen_t addrlen;		/* 0: the socket is connected (unix) */
	char prefix[STATSD_PREFIX_MAX + 2];
	size_t prefix_len;
	char tags[STATSD_TAGS_MAX + 3];	/* "|#a:b,c" or "" */
	size_t tags_len;
};

static struct statsd_conf *current;	/* NULL: off; atomic */
static struct statsd_conf *retired;	/* the one current replaced */
static int sock = -1;			/* its number never changes once open */
static int sock_family;

/* The longest metric ("name:value|type...", before prefix and tags; a
 * longer one from Python is dropped) and the longest line. */
#define METRIC_MAX	512
#define LINE_MAX_LEN	(STATSD_PREFIX_MAX + 1 + METRIC_MAX + STATSD_TAGS_MAX + 2)

/* ---- settings ---- */

static int
port_of(const char *p, size_t n, unsigned *port)
{
	unsigned v = 0;

	if (!all_digits(p, n) || n > 5)
		return -1;
	for (size_t i = 0; i < n; i++)
		v = v * 10 + (unsigned)(p[i] - '0');
	if (v == 0 || v > 65535)
		return -1;
	*port = v;
	return 0;
}

int
statsd_parse_address(const char *v, struct statsd_address *a, const char **why)
{
	const char *host, *colon, *port = NULL;
	size_t host_len, port_len = 0;

	memset(a, 0, sizeof(*a));
	a->port = 8125;
	if (strncmp(v, "unix:", 5) == 0) {
		/* gunicorn 20's guard: "unix:8125" was a host named unix */
		if (all_digits(v + 5, strlen(v + 5))) {
			if (port_of(v + 5, strlen(v + 5), &a->port) == -1) {
				*why = "not a valid port number";
				return -1;
			}
			strcpy(a->host, "unix");
			return 0;
		}
		const char *path = v + 5 + (strncmp(v + 5, "//", 2) == 0 ? 2 : 0);
		if (*path == '\0') {
			*why = "unix: needs a path";
			return -1;
		}
		if (strlen(path) >= sizeof(a->path)) {
			*why = "the unix socket's path is too long";
			return -1;
		}
		a->unix_socket = 1;
		strcpy(a->path, path);
		return 0;
	}
	if (strncmp(v, "fd://", 5) == 0) {
		*why = "expected HOST:PORT or unix://PATH (a descriptor is "
		    "no statsd address)";
		return -1;
	}
	if (strncmp(v, "tcp://", 6) == 0)	/* gunicorn strips it: still UDP */
		v += 6;
	if (v[0] == '[') {
		const char *end = strchr(v, ']');
		if (end == NULL || (end[1] != '\0' && end[1] != ':')) {
			*why = "expected [ADDRESS]:PORT";
			return -1;
		}
		host = v + 1;
		host_len = (size_t)(end - host);
		if (end[1] == ':') {
			port = end + 2;
			port_len = strlen(port);
		}
	} else if ((colon = strchr(v, ':')) != NULL) {
		if (strchr(colon + 1, ':') != NULL) {
			*why = "expected HOST:PORT ([ADDRESS]:PORT for IPv6)";
			return -1;
		}
		host = v;
		host_len = (size_t)(colon - v);
		port = colon + 1;
		port_len = strlen(port);
	} else {
		host = v;
		host_len = strlen(v);
	}
	if (port != NULL && port_of(port, port_len, &a->port) == -1) {
		*why = "not a valid port number";
		return -1;
	}
	if (host_len >= sizeof(a->host)) {
		*why = "the host name is too long";
		return -1;
	}
	for (size_t i = 0; i < host_len; i++)
		if (!isgraph((unsigned char)host[i])) {
			*why = "not a host name";
			return -1;
		}
	/* as Python's connect(("", port)): any address, this host */
	if (host_len == 0)
		strcpy(a->host, "0.0.0.0");
	for (size_t i = 0; i < host_len; i++)	/* gunicorn lower-cases it */
		a->host[i] = (char)tolower((unsigned char)host[i]);
	return 0;
}

const char *
statsd_check_host(const char *v)
{
	struct statsd_address a;
	const char *why = NULL;

	if (*v == '\0')		/* off, as None */
		return NULL;
	return statsd_parse_address(v, &a, &why) == 0 ? NULL : why;
}

static const char *
check_text(const char *v, size_t max)
{
	if (strlen(v) > max)
		return "too long";
	for (const unsigned char *p = (const unsigned char *)v; *p; p++)
		if (*p < 0x20 || *p >= 0x7f)
			return "only printable ASCII characters";
	return NULL;
}

const char *
statsd_check_prefix(const char *v)
{
	return check_text(v, STATSD_PREFIX_MAX);
}

const char *
statsd_check_tags(const char *v)
{
	return check_text(v, STATSD_TAGS_MAX);
}

/* gunicorn: re.sub(r"^(.+[^.]+)\.*$", r"\g<1>.", prefix).  The group is
 * the prefix up to its last non-dot character and needs two characters
 * at least; with no match the prefix stays as it is. */
size_t
statsd_prefix_apply(const char *prefix, char *out, size_t size)
{
	size_t keep = strlen(prefix);
	int n;

	while (keep > 0 && prefix[keep - 1] == '.')
		keep--;
	n = keep >= 2 ? snprintf(out, size, "%.*s.", (int)keep, prefix) :
	    snprintf(out, size, "%s", prefix);
	if (n < 0)
		return 0;
	return (size_t)n < size ? (size_t)n : size - 1;
}

/* ---- the socket and its configuration ---- */

/* The address of a, resolved into c (IPv4 first, as gunicorn's AF_INET
 * socket; IPv6 when the name has no IPv4 address).  0 or -1 (logged). */
static int
resolve(const struct statsd_address *a, struct statsd_conf *c, const char *setting)
{
	static const int families[] = { AF_INET, AF_INET6 };
	char port[8];
	int rc = EAI_NONAME;

	snprintf(port, sizeof(port), "%u", a->port);
	for (size_t i = 0; i < sizeof(families) / sizeof(families[0]); i++) {
		struct addrinfo hints = {
			.ai_family = families[i], .ai_socktype = SOCK_DGRAM,
			.ai_flags = AI_NUMERICSERV,
		}, *res = NULL;

		if ((rc = getaddrinfo(a->host, port, &hints, &res)) != 0)
			continue;
		memcpy(&c->addr, res->ai_addr, res->ai_addrlen);
		c->addrlen = res->ai_addrlen;
		freeaddrinfo(res);
		return 0;
	}
	log_warnx("statsd_host %s: cannot resolve %s (%s); no metrics are sent",
	    setting, a->host, gai_strerror(rc));
	return -1;
}

/* A socket of family's kind at the statsd socket's number (the first one
 * takes a number of its own).  0 or -1 (logged). */
static int
socket_for(int family, const char *setting)
{
	int fd;

	if (sock != -1 && sock_family == family)
		return 0;
	if ((fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) == -1) {
		log_warn("statsd_host %s: socket", setting);
		return -1;
	}
	if (sock == -1)
		sock = fd;
	else {
		if (dup3(fd, sock, O_CLOEXEC) == -1) {
			log_warn("statsd_host %s: dup3", setting);
			close(fd);
			return -1;
		}
		close(fd);
	}
	sock_family = family;
	return 0;
}

/* The unix datagram socket at path, connected (with the master's
 * credentials, as gunicorn's; the workers may run as another user).
 * 0 or -1 (logged). */
static int
connect_unix(const char *path, const char *setting)
{
	struct sockaddr_un un = { .sun_family = AF_UNIX };

	if (socket_for(AF_UNIX, setting) == -1)
		return -1;
	memcpy(un.sun_path, path, strlen(path) + 1);
	if (connect(sock, (struct sockaddr *)&un, sizeof(un)) == -1) {
		log_warn("statsd_host %s: cannot connect to the unix socket; "
		    "no metrics are sent", setting);
		return -1;
	}
	return 0;
}

static void
publish(struct statsd_conf *c)
{
	struct statsd_conf *old = current;

	__atomic_store_n(&current, c, __ATOMIC_RELEASE);
	free(retired);
	retired = old;
}

void
statsd_configure(const struct settings *s)
{
	struct statsd_address a;
	struct statsd_conf *c;
	const char *why = NULL;

	if (s->statsd_host == NULL || *s->statsd_host == '\0' ||
	    statsd_parse_address(s->statsd_host, &a, &why) == -1) {
		publish(NULL);	/* settings_table's check refused a bad one */
		log_set_count_hook(NULL);
		return;
	}
	c = xcalloc(1, sizeof(*c));
	c->prefix_len = statsd_prefix_apply(s->statsd_prefix ? s->statsd_prefix : "",
	    c->prefix, sizeof(c->prefix));
	if (s->dogstatsd_tags != NULL && *s->dogstatsd_tags != '\0') {
		int n = snprintf(c->tags, sizeof(c->tags), "|#%s", s->dogstatsd_tags);
		c->tags_len = n > 0 && (size_t)n < sizeof(c->tags) ? (size_t)n :
		    strlen(c->tags);
	}
	if (a.unix_socket ? connect_unix(a.path, s->statsd_host) == -1 :
	    (resolve(&a, c, s->statsd_host) == -1 ||
	     socket_for(c->addr.ss_family, s->statsd_host) == -1)) {
		free(c);
		publish(NULL);
		log_set_count_hook(NULL);
		return;
	}
	publish(c);
	log_set_count_hook(statsd_count_log);
}

static const struct statsd_conf *
conf(void)
{
	return __atomic_load_n(&current, __ATOMIC_ACQUIRE);
}

int
statsd_enabled(void)
{
	return conf() != NULL;
}

int
statsd_fd(void)
{
	return sock;
}

/* ---- sending ---- */

static void
send_packet(const struct statsd_conf *c, const char *buf, size_t len)
{
	/* dropped when it cannot go now: EAGAIN, no listener, any error */
	if (c->addrlen == 0)
		(void)send(sock, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
	else
		(void)sendto(sock, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL,
		    (const struct sockaddr *)&c->addr, c->addrlen);
}

/* One line into out (room >= LINE_MAX_LEN): prefix, the metric's
 * "name:value|type" (len <= METRIC_MAX bytes), the tags.  Its length. */
static size_t
format_line(char *out, const struct statsd_conf *c, const char *metric, size_t len)
{
	size_t n = 0;

	memcpy(out, c->prefix, c->prefix_len);
	n += c->prefix_len;
	memcpy(out + n, metric, len);
	n += len;
	memcpy(out + n, c->tags, c->tags_len);
	n += c->tags_len;
	return n;
}

static void
send_metric(const struct statsd_conf *c, const char *metric, size_t len)
{
	char line[LINE_MAX_LEN];

	send_packet(c, line, format_line(line, c, metric, len));
}

/* Milliseconds as Python prints the float gunicorn computes
 * (seconds * 1000 + microseconds / 1000): "12.0", "0.015", "1234.5". */
static int
format_ms(char *out, size_t size, uint64_t us)
{
	unsigned frac = (unsigned)(us % 1000);
	char digits[4];
	int nd = 3;

	if (frac == 0)
		return snprintf(out, size, "%" PRIu64 ".0", us / 1000);
	snprintf(digits, sizeof(digits), "%03u", frac);
	while (digits[nd - 1] == '0')
		nd--;
	return snprintf(out, size, "%" PRIu64 ".%.*s", us / 1000, nd, digits);
}

void
statsd_request(int status, uint64_t elapsed_us)
{
	const struct statsd_conf *c = conf();
	char buf[3 * (LINE_MAX_LEN + 1)], metric[96];	/* lines and their '\n's */
	size_t off = 0, start[3], len[3];
	int n;

	if (c == NULL)
		return;
	if (elapsed_us > UINT64_C(1) << 53)	/* the wall clock stepped back */
		elapsed_us = 0;
	n = snprintf(metric, sizeof(metric), "gunicorn.request.duration:");
	n += format_ms(metric + n, sizeof(metric) - (size_t)n, elapsed_us);
	n += snprintf(metric + n, sizeof(metric) - (size_t)n, "|ms");
	start[0] = off;
	off += len[0] = format_line(buf + off, c, metric, (size_t)n);
	buf[off++] = '\n';
	start[1] = off;
	off += len[1] = format_line(buf + off, c, "gunicorn.requests:1|c|@1.0",
	    strlen("gunicorn.requests:1|c|@1.0"));
	buf[off++] = '\n';
	n = snprintf(metric, sizeof(metric), "gunicorn.request.status.%d:1|c|@1.0",
	    status);
	start[2] = off;
	off += len[2] = format_line(buf + off, c, metric, (size_t)n);
	if (off <= STATSD_PACKET_MAX) {
		send_packet(c, buf, off);
		return;
	}
	for (int i = 0; i < 3; i++)
		send_packet(c, buf + start[i], len[i]);
}

static void
send_value(const char *name, long long value, const char *type)
{
	const struct statsd_conf *c = conf();
	char metric[128];
	int n;

	if (c == NULL || value == 0)
		return;
	n = snprintf(metric, sizeof(metric), "%s:%lld|%s", name, value, type);
	if (n > 0 && (size_t)n < sizeof(metric))
		send_metric(c, metric, (size_t)n);
}

void
statsd_gauge(const char *name, long long value)
{
	send_value(name, value, "g");
}

void
statsd_histogram(const char *name, long long value)
{
	send_value(name, value, "ms");
}

void
statsd_metric(const char *line, size_t len)
{
	const struct statsd_conf *c = conf();

	if (c != NULL && len > 0 && len <= METRIC_MAX)
		send_metric(c, line, len);
}

/* log.c's count hook: gunicorn's Statsd logger counts every warning,
 * error, critical and exception record, shown or not. */
void
statsd_count_log(int level, int exception)
{
	const struct statsd_conf *c = conf();
	const char *metric;

	if (c == NULL || level < LOG_WARNING)
		return;
	if (exception && level == LOG_ERROR)
		metric = "gunicorn.log.exception:1|c|@1.0";
	else if (level >= LOG_CRITICAL)
		metric = "gunicorn.log.critical:1|c|@1.0";
	else if (level >= LOG_ERROR)
		metric = "gunicorn.log.error:1|c|@1.0";
	else
		metric = "gunicorn.log.warning:1|c|@1.0";
	send_metric(c, metric, strlen(metric));
}
