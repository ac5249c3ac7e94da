/*
 * test_uwsgi_proto.c — uWSGI request packets as HTTP heads
 * (src/uwsgi_proto.c).
 *
 * A packet gives exactly the head it stands for, at every split point
 * asking for more until it is whole; the body's framing is
 * CONTENT_LENGTH's alone; HTTPS and REMOTE_ADDR come out beside the
 * head; every malformed form is refused with its reason, a head past the
 * output's capacity says how much it needs, and nothing is written past
 * it.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "uwsgi_proto.h"

struct pk {
	unsigned char b[70000];
	size_t len;
};

static void
pk_start(struct pk *p, int modifier1)
{
	p->b[0] = (unsigned char)modifier1;
	p->b[3] = 0;
	p->len = 4;
}

static void
pk_var(struct pk *p, const char *k, size_t kl, const char *v, size_t vl)
{
	p->b[p->len++] = (unsigned char)(kl & 0xff);
	p->b[p->len++] = (unsigned char)(kl >> 8);
	memcpy(p->b + p->len, k, kl);
	p->len += kl;
	p->b[p->len++] = (unsigned char)(vl & 0xff);
	p->b[p->len++] = (unsigned char)(vl >> 8);
	memcpy(p->b + p->len, v, vl);
	p->len += vl;
}

static void
pk_set(struct pk *p, const char *k, const char *v)
{
	pk_var(p, k, strlen(k), v, strlen(v));
}

static size_t
pk_end(struct pk *p)
{
	size_t n = p->len - 4;

	p->b[1] = (unsigned char)(n & 0xff);
	p->b[2] = (unsigned char)(n >> 8);
	return p->len;
}

static char out[80000];

/* The packet translates to want; every shorter prefix is MORE. */
static void
check_head(struct pk *p, const char *want, struct uwsgi_meta *meta)
{
	size_t n = pk_end(p), used, outlen;
	const char *why;

	for (size_t i = 0; i < n; i++) {
		int r = uwsgi_head((const char *)p->b, i, out, sizeof(out), &used, &outlen, meta, &why);
		CHECK_MSG(r == UWSGI_MORE, "prefix %zu: %d", i, r);
	}
	memcpy(p->b + n, "BODY", 4);	/* what follows is not the packet's */
	int r = uwsgi_head((const char *)p->b, n + 4, out, sizeof(out), &used, &outlen, meta, &why);
	CHECK_MSG(r == UWSGI_OK, "%d %s", r, why ? why : "");
	CHECK(used == n);
	CHECK(outlen == strlen(want));
	out[outlen < sizeof(out) ? outlen : 0] = '\0';
	CHECK_STR(out, want);
}

static void
check_bad(struct pk *p, const char *reason)
{
	struct uwsgi_meta meta;
	size_t n = pk_end(p), used, outlen;
	const char *why = NULL;

	int r = uwsgi_head((const char *)p->b, n, out, sizeof(out), &used, &outlen, &meta, &why);
	CHECK_MSG(r == UWSGI_BAD && why != NULL && strstr(why, reason) != NULL,
	    "%d (%s), want %s", r, why ? why : "-", reason);
}

static void
test_heads(void)
{
	struct uwsgi_meta m;
	struct pk p;
	char text[64];

	pk_start(&p, 0);
	pk_set(&p, "REQUEST_METHOD", "POST");
	pk_set(&p, "REQUEST_URI", "/a%20b?x=1");
	pk_set(&p, "PATH_INFO", "/a b");
	pk_set(&p, "QUERY_STRING", "x=1");
	pk_set(&p, "CONTENT_TYPE", "text/plain");
	pk_set(&p, "CONTENT_LENGTH", "4");
	pk_set(&p, "HTTP_HOST", "example.com");
	pk_set(&p, "HTTP_X_FORWARDED_FOR", "1.2.3.4");
	pk_set(&p, "HTTP_CONTENT_LENGTH", "999");	/* framing: CONTENT_LENGTH only */
	pk_set(&p, "HTTP_TRANSFER_ENCODING", "chunked");
	pk_set(&p, "HTTP_CONTENT_TYPE", "x/y");
	pk_set(&p, "DOCUMENT_ROOT", "/srv");
	pk_set(&p, "REMOTE_ADDR", "203.0.113.5");
	pk_set(&p, "REMOTE_PORT", "5555");
	pk_set(&p, "HTTPS", "on");
	check_head(&p, "POST /a%20b?x=1 HTTP/1.0\r\nCONTENT-TYPE: text/plain\r\n"
	    "CONTENT-LENGTH: 4\r\nHOST: example.com\r\nX-FORWARDED-FOR: 1.2.3.4\r\n\r\n", &m);
	CHECK(m.https == 1 && m.has_remote == 1);
	struct sockaddr_in *in = (struct sockaddr_in *)&m.remote;
	CHECK(in->sin_family == AF_INET && ntohs(in->sin_port) == 5555);
	inet_ntop(AF_INET, &in->sin_addr, text, sizeof(text));
	CHECK_STR(text, "203.0.113.5");

	/* no REQUEST_URI: PATH_INFO encoded again, QUERY_STRING; defaults */
	pk_start(&p, 0);
	pk_set(&p, "PATH_INFO", "/p q/\xc3\xa9%#?");
	pk_set(&p, "QUERY_STRING", "k=v");
	pk_set(&p, "REMOTE_ADDR", "2001:db8::7");
	pk_set(&p, "UWSGI_SCHEME", "https");
	check_head(&p, "GET /p%20q/%C3%A9%25%23%3F?k=v HTTP/1.0\r\n\r\n", &m);
	CHECK(m.https == 1 && m.has_remote == 1 && m.remote.ss_family == AF_INET6);

	/* nothing at all: GET / */
	pk_start(&p, 0);
	check_head(&p, "GET / HTTP/1.0\r\n\r\n", &m);
	CHECK(m.https == 0 && m.has_remote == 0);

	/* HTTPS off, a REMOTE_ADDR that is no address, a bad port: ignored */
	pk_start(&p, 0);
	pk_set(&p, "HTTPS", "off");
	pk_set(&p, "REMOTE_ADDR", "not-an-address");
	pk_set(&p, "wsgi.url_scheme", "http");
	check_head(&p, "GET / HTTP/1.0\r\n\r\n", &m);
	CHECK(m.https == 0 && m.has_remote == 0);
	pk_start(&p, 0);
	pk_set(&p, "REMOTE_ADDR", "192.0.2.1");
	pk_set(&p, "REMOTE_PORT", "70000");
	check_head(&p, "GET / HTTP/1.0\r\n\r\n", &m);
	CHECK(m.has_remote == 0);
	pk_start(&p, 0);
	pk_set(&p, "REMOTE_ADDR", "192.0.2.1");
	check_head(&p, "GET / HTTP/1.0\r\n\r\n", &m);
	CHECK(m.has_remote == 1 && ntohs(((struct sockaddr_in *)&m.remote)->sin_port) == 0);
	/* an empty CONTENT_LENGTH / CONTENT_TYPE (nginx sends them so) */
	pk_start(&p, 0);
	pk_set(&p, "CONTENT_LENGTH", "");
	pk_set(&p, "CONTENT_TYPE", "");
	pk_set(&p, "HTTP_CONNECTION", "keep-alive");
	check_head(&p, "GET / HTTP/1.0\r\nCONNECTION: keep-alive\r\n\r\n", &m);
}

static void
test_bad(void)
{
	struct pk p;

	pk_start(&p, 5);
	check_bad(&p, "modifier1");
	pk_start(&p, 0);
	pk_set(&p, "HTTP_X", "a\r\nEvil: 1");
	check_bad(&p, "CR, LF or NUL");
	pk_start(&p, 0);
	pk_var(&p, "HTTP_X", 6, "a\0b", 3);
	check_bad(&p, "CR, LF or NUL");
	pk_start(&p, 0);
	pk_var(&p, "HTTP_\nX", 7, "v", 1);
	check_bad(&p, "CR, LF or NUL");
	/* HTTP_ names as nginx makes them only: [A-Z0-9_] */
	static const char *const names[] = { "HTTP_content_length", "HTTP_TRANSFER-ENCODING",
	    "HTTP_X:Y", "HTTP_X Y", "HTTP_\xc3\xa9" };
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		pk_start(&p, 0);
		pk_set(&p, names[i], "5");
		check_bad(&p, "not [A-Z0-9_]");
	}
	pk_start(&p, 0);
	pk_set(&p, "REQUEST_METHOD", "GET /x");
	check_bad(&p, "REQUEST_METHOD");
	pk_start(&p, 0);
	pk_set(&p, "REQUEST_URI", "/a b");
	check_bad(&p, "REQUEST_URI");
	pk_start(&p, 0);
	pk_set(&p, "QUERY_STRING", "a b");
	check_bad(&p, "QUERY_STRING");
	/* truncations inside the block: key size, key, value size, value */
	static const size_t cut[] = { 1, 3, 5, 7 };
	for (size_t i = 0; i < 4; i++) {
		pk_start(&p, 0);
		pk_set(&p, "AB", "CD");		/* 2+2+2+2 bytes */
		p.len = 4 + cut[i];
		check_bad(&p, "runs past");
	}
	pk_start(&p, 0);
	for (int i = 0; i < 1001; i++)
		pk_set(&p, "X", "");
	check_bad(&p, "more than 1000");
	pk_start(&p, 0);
	for (int i = 0; i < 1000; i++)
		pk_set(&p, "X", "");
	struct uwsgi_meta m;
	size_t used, outlen, n = pk_end(&p);
	const char *why;
	CHECK(uwsgi_head((const char *)p.b, n, out, sizeof(out), &used, &outlen, &m, &why) == UWSGI_OK);
}

static void
test_capacity(void)
{
	struct uwsgi_meta m;
	struct pk p;
	size_t used, outlen, n;
	const char *why;
	char small[32];

	pk_start(&p, 0);
	pk_set(&p, "HTTP_X_LONG", "0123456789012345678901234567890123456789");
	n = pk_end(&p);
	memset(small, 'Z', sizeof(small));
	int r = uwsgi_head((const char *)p.b, n, small, 16, &used, &outlen, &m, &why);
	CHECK(r == UWSGI_TOO_BIG);
	CHECK(outlen == strlen("GET / HTTP/1.0\r\nX-LONG: 0123456789012345678901234567890123456789\r\n\r\n"));
	for (size_t i = 16; i < sizeof(small); i++)
		CHECK(small[i] == 'Z');		/* nothing past the capacity */
	r = uwsgi_head((const char *)p.b, n, out, outlen, &used, &outlen, &m, &why);
	CHECK(r == UWSGI_OK);
	/* the largest block: 65535 bytes */
	pk_start(&p, 0);
	static char big[65535 - 4 - 1];
	memset(big, 'v', sizeof(big));
	pk_var(&p, "Y", 1, big, sizeof(big));
	n = pk_end(&p);
	CHECK(n == 4 + 65535);
	r = uwsgi_head((const char *)p.b, n, out, sizeof(out), &used, &outlen, &m, &why);
	CHECK(r == UWSGI_OK && used == n);
}

int
main(void)
{
	test_heads();
	test_bad();
	test_capacity();
	return check_summary("test_uwsgi_proto");
}
