/*
 * test_statsd.c — the statsd module (src/statsd.c): statsd_host's forms
 * and refusals, gunicorn's prefix rule (the expected values are what
 * gunicorn's own re.sub gives), the settings' checks, and the bytes on
 * the wire, read from a UDP and a unix datagram socket of the test's:
 * a request's one datagram (durations as Python prints gunicorn's float),
 * its split when it would pass STATSD_PACKET_MAX, gauges and histograms
 * (a 0 is not sent), Python's metric lines, the log records' counters
 * (counted whatever the level shows), reconfiguring (off, another
 * family at the same descriptor number), an unreachable unix socket.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <unistd.h>

#include "check.h"
#include "log.h"
#include "settings.h"
#include "statsd.h"

/* ---- parsing and checks ---- */

static void
test_parse(void)
{
	static const struct {
		const char *in;
		int unix_socket;
		const char *host_or_path;
		unsigned port;
	} good[] = {
		{ "localhost:8125", 0, "localhost", 8125 },
		{ "LocalHost:9125", 0, "localhost", 9125 },
		{ "statsd", 0, "statsd", 8125 },
		{ "10.0.0.1:1", 0, "10.0.0.1", 1 },
		{ "[::1]:8126", 0, "::1", 8126 },
		{ "[::1]", 0, "::1", 8125 },
		{ "tcp://h:65535", 0, "h", 65535 },
		{ ":8125", 0, "0.0.0.0", 8125 },
		{ "unix:8125", 0, "unix", 8125 },	/* gunicorn's guard */
		{ "unix:/run/dsd.sock", 1, "/run/dsd.sock", 0 },
		{ "unix:///run/dsd.sock", 1, "/run/dsd.sock", 0 },
		{ "unix:relative.sock", 1, "relative.sock", 0 },
	};
	static const struct {
		const char *in;
		const char *why;
	} bad[] = {
		{ "h:abc", "port" }, { "h:0", "port" }, { "h:65536", "port" },
		{ "h:", "port" }, { "h:-1", "port" }, { "h:123456", "port" },
		{ "::1", "HOST:PORT" }, { "a:1:2", "HOST:PORT" },
		{ "[::1", "[ADDRESS]:PORT" }, { "[::1]x", "[ADDRESS]:PORT" },
		{ "[::1]:", "port" }, { "fd://3", "descriptor" },
		{ "unix:", "needs a path" }, { "unix://", "needs a path" },
		{ "unix:99999", "port" }, { "h o:1", "host" },
	};
	struct statsd_address a;
	const char *why;
	char longpath[200];

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		why = NULL;
		CHECK_MSG(statsd_parse_address(good[i].in, &a, &why) == 0,
		    "%s: %s", good[i].in, why ? why : "?");
		CHECK_MSG(a.unix_socket == good[i].unix_socket, "%s", good[i].in);
		CHECK_STR(a.unix_socket ? a.path : a.host, good[i].host_or_path);
		if (!a.unix_socket)
			CHECK_MSG(a.port == good[i].port, "%s: port %u", good[i].in, a.port);
		CHECK(statsd_check_host(good[i].in) == NULL);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		why = NULL;
		CHECK_MSG(statsd_parse_address(bad[i].in, &a, &why) == -1 && why != NULL &&
		    strstr(why, bad[i].why) != NULL, "%s: %s", bad[i].in, why ? why : "(accepted)");
		CHECK(statsd_check_host(bad[i].in) != NULL);
	}
	memset(longpath, 'x', sizeof(longpath) - 1);
	memcpy(longpath, "unix:/", 6);
	longpath[sizeof(longpath) - 1] = '\0';
	CHECK(statsd_check_host(longpath) != NULL);
	CHECK(statsd_check_host("") == NULL);		/* off */

	CHECK(statsd_check_prefix("svc.web") == NULL);
	CHECK(statsd_check_prefix("a\nb") != NULL);
	CHECK(statsd_check_prefix("caf\xc3\xa9") != NULL);
	CHECK(statsd_check_tags("env:prod,role:web") == NULL);
	CHECK(statsd_check_tags("a\tb") != NULL);
	{
		char big[STATSD_TAGS_MAX + 2];
		memset(big, 'a', sizeof(big) - 1);
		big[sizeof(big) - 1] = '\0';
		CHECK(statsd_check_tags(big) != NULL);
		big[STATSD_TAGS_MAX] = '\0';
		CHECK(statsd_check_tags(big) == NULL);
		big[STATSD_PREFIX_MAX + 1] = '\0';
		CHECK(statsd_check_prefix(big) != NULL);
		big[STATSD_PREFIX_MAX] = '\0';
		CHECK(statsd_check_prefix(big) == NULL);
	}
}

static void
test_prefix_rule(void)
{
	/* gunicorn: re.sub(r"^(.+[^.]+)\.*$", r"\g<1>.", prefix) */
	static const char *const cases[][2] = {
		{ "", "" }, { "web", "web." }, { "web.", "web." },
		{ "web...", "web." }, { "a", "a" }, { "a.", "a." }, { ".", "." },
		{ "..", ".." }, { "ab", "ab." }, { "a.b", "a.b." },
		{ "..a", "..a." }, { "x..", "x.." }, { "a..b", "a..b." },
		{ ".a", ".a." },
	};
	char out[32];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n = statsd_prefix_apply(cases[i][0], out, sizeof(out));
		CHECK_STR(out, cases[i][1]);
		CHECK(n == strlen(cases[i][1]));
	}
	CHECK(statsd_prefix_apply("abcdef", out, 4) == 3);	/* bounded */
	CHECK_STR(out, "abc");
}

/* ---- on the wire ---- */

static int
udp_sink(unsigned *port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET,
	    .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sin);
	struct timeval tv = { .tv_sec = 2 };
	int fd = socket(AF_INET, SOCK_DGRAM, 0);

	if (fd == -1 || bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == -1 ||
	    getsockname(fd, (struct sockaddr *)&sin, &len) == -1)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	*port = ntohs(sin.sin_port);
	return fd;
}

/* The next datagram, NUL-terminated, or "" after the timeout. */
static const char *
next(int fd)
{
	static char buf[16384];
	ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);

	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

static void
configure(const char *host, const char *prefix, const char *tags)
{
	struct settings s;

	settings_defaults(&s);
	free(s.statsd_prefix);
	free(s.dogstatsd_tags);
	s.statsd_host = host ? strdup(host) : NULL;
	s.statsd_prefix = strdup(prefix);
	s.dogstatsd_tags = strdup(tags);
	statsd_configure(&s);
	settings_free(&s);
}

static void
test_wire(void)
{
	unsigned port;
	int fd = udp_sink(&port), ufd;
	char host[160], big[STATSD_TAGS_MAX + 1];
	struct sockaddr_un un = { .sun_family = AF_UNIX };
	int statsd_number;

	CHECK(fd != -1);
	CHECK(!statsd_enabled() && statsd_fd() == -1);
	statsd_request(200, 1);		/* off: nothing, no crash */
	snprintf(host, sizeof(host), "127.0.0.1:%u", port);
	configure(host, "web...", "env:t,svc");
	CHECK(statsd_enabled() && statsd_fd() != -1);
	statsd_number = statsd_fd();

	statsd_request(200, 12345);
	CHECK_STR(next(fd), "web.gunicorn.request.duration:12.345|ms|#env:t,svc\n"
	    "web.gunicorn.requests:1|c|@1.0|#env:t,svc\n"
	    "web.gunicorn.request.status.200:1|c|@1.0|#env:t,svc");

	/* durations as Python prints gunicorn's float of milliseconds */
	static const struct { uint64_t us; const char *ms; } ms[] = {
		{ 0, "0.0" }, { 1, "0.001" }, { 10, "0.01" }, { 100, "0.1" },
		{ 1000, "1.0" }, { 1500, "1.5" }, { 1050, "1.05" },
		{ 123456789, "123456.789" }, { UINT64_MAX - 5, "0.0" },
	};
	configure(host, "", "");
	for (size_t i = 0; i < sizeof(ms) / sizeof(ms[0]); i++) {
		char want[256];
		statsd_request(404, ms[i].us);
		snprintf(want, sizeof(want), "gunicorn.request.duration:%s|ms\n"
		    "gunicorn.requests:1|c|@1.0\ngunicorn.request.status.404:1|c|@1.0",
		    ms[i].ms);
		CHECK_STR(next(fd), want);
	}

	/* gauges and histograms; gunicorn sends no 0 */
	statsd_gauge("gunicorn.workers", 0);
	statsd_gauge("gunicorn.workers", 3);
	CHECK_STR(next(fd), "gunicorn.workers:3|g");
	statsd_histogram("gunicorn.backlog", 0);
	statsd_histogram("gunicorn.backlog", 7);
	CHECK_STR(next(fd), "gunicorn.backlog:7|ms");
	/* Python's lines, prefixed and tagged; a too long one is dropped */
	configure(host, "pre", "t");
	memset(big, 'm', 600);
	big[600] = '\0';
	statsd_metric(big, 600);
	statsd_metric("custom:2|c|@1.0", strlen("custom:2|c|@1.0"));
	CHECK_STR(next(fd), "pre.custom:2|c|@1.0|#t");

	/* log records: counted before the level filters them */
	log_set_level(LOG_CRITICAL + 10);	/* nothing shown on stderr */
	log_debug("not counted");
	log_info("not counted");
	log_warnx("w");
	CHECK_STR(next(fd), "pre.gunicorn.log.warning:1|c|@1.0|#t");
	log_errorx("e");
	CHECK_STR(next(fd), "pre.gunicorn.log.error:1|c|@1.0|#t");
	log_msg(LOG_CRITICAL, "c");
	CHECK_STR(next(fd), "pre.gunicorn.log.critical:1|c|@1.0|#t");
	log_exception_msg(LOG_ERROR, "x");
	CHECK_STR(next(fd), "pre.gunicorn.log.exception:1|c|@1.0|#t");
	errno = EBADF;
	log_warnx("errno kept");
	CHECK(errno == EBADF);
	CHECK_STR(next(fd), "pre.gunicorn.log.warning:1|c|@1.0|#t");
	log_set_level(LOG_INFO);

	/* lines too long for one packet together: one datagram each */
	memset(big, 'a', STATSD_TAGS_MAX);
	big[STATSD_TAGS_MAX] = '\0';
	configure(host, "pre", big);
	statsd_request(500, 2000);
	CHECK(strncmp(next(fd), "pre.gunicorn.request.duration:2.0|ms|#aaa", 41) == 0);
	CHECK(strncmp(next(fd), "pre.gunicorn.requests:1|c|@1.0|#aaa", 35) == 0);
	CHECK(strncmp(next(fd), "pre.gunicorn.request.status.500:1|c|@1.0|#aaa", 45) == 0);

	/* off again: nothing, and no count hook */
	configure(NULL, "", "");
	CHECK(!statsd_enabled());
	statsd_request(200, 1);
	log_set_level(LOG_CRITICAL + 10);
	log_warnx("w");
	log_set_level(LOG_INFO);
	configure(host, "", "");
	statsd_gauge("marker", 1);
	CHECK_STR(next(fd), "marker:1|g");	/* nothing came before it */

	/* a unix datagram socket: the same descriptor number, connected */
	snprintf(un.sun_path, sizeof(un.sun_path), "/tmp/cunicorn-test-statsd-%d.sock",
	    (int)getpid());
	unlink(un.sun_path);
	ufd = socket(AF_UNIX, SOCK_DGRAM, 0);
	CHECK(ufd != -1 && bind(ufd, (struct sockaddr *)&un, sizeof(un)) == 0);
	{
		struct timeval tv = { .tv_sec = 2 };
		setsockopt(ufd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	}
	snprintf(host, sizeof(host), "unix://%s", un.sun_path);
	configure(host, "un", "");
	CHECK(statsd_enabled() && statsd_fd() == statsd_number);
	statsd_request(201, 3000);
	CHECK_STR(next(ufd), "un.gunicorn.request.duration:3.0|ms\n"
	    "un.gunicorn.requests:1|c|@1.0\nun.gunicorn.request.status.201:1|c|@1.0");
	close(ufd);
	unlink(un.sun_path);

	/* nobody there: a warning, and off */
	configure(host, "un", "");
	CHECK(!statsd_enabled() && statsd_fd() == statsd_number);
	configure(NULL, "", "");
	close(fd);
}

int
main(void)
{
	test_parse();
	test_prefix_rule();
	test_wire();
	return check_summary("test_statsd");
}
