/*
 * test_http_drain.c — unit tests for src/http_drain.c, the rest of an
 * unread request body dropped after the response: a Content-Length count
 * never takes a byte past the body; a chunked body fed byte by byte and
 * in one piece ends at the same place (extensions and trailers
 * consumed), the next request's bytes untouched; a chunked drain
 * picked up mid-body from an app's decoder; malformed framing; the
 * 1 MiB bound of chunk data; the deadlines.  Prints "N passed, M failed".
 */
#include "http_drain.h"
#include "check.h"

#include <stdlib.h>
#include <string.h>

#include "http_conn.h"

static const char NEXT[] = "GET /b HTTP/1.1\r\n\r\n";

/* Feed s in pieces of `step` bytes; the offset where the body ended
 * (-1: not ended; -2: given up). */
static long
feed_steps(struct http_drain *d, const char *s, size_t n, size_t step)
{
	size_t off = 0, used;
	int r;

	while (off < n) {
		size_t k = n - off < step ? n - off : step;
		r = http_drain_feed(d, s + off, k, &used);
		if (r == HTTP_DRAIN_BAD || r == HTTP_DRAIN_OVER)
			return -2;
		off += used;
		if (r == HTTP_DRAIN_END)
			return (long)off;
		if (used != k)
			return -3;	/* MORE must take everything */
	}
	return -1;
}

static void
test_length(void)
{
	struct http_drain d;
	char buf[64];
	size_t used;

	http_drain_length(&d, 10);
	CHECK(http_drain_active(&d));
	CHECK(http_drain_want(&d, 16384) == 10);
	memset(buf, 'y', sizeof(buf));
	CHECK(http_drain_feed(&d, buf, 4, &used) == HTTP_DRAIN_MORE && used == 4);
	CHECK(http_drain_feed(&d, buf, 20, &used) == HTTP_DRAIN_END && used == 6);
	CHECK(!http_drain_active(&d));
	http_drain_length(&d, 0);
	CHECK(!http_drain_active(&d));
}

static void
test_chunked_pieces(void)
{
	static const char body[] = "5;name=value\r\nhello\r\n"
	    "3;q=\"a;b\"\r\nabc\r\n0\r\nX-Checksum: abc\r\n\r\n";
	char msg[256];
	size_t n = strlen(body), steps[] = { 1, 2, 7, 1000 };
	struct http_chunked ch;
	struct http_drain d;

	snprintf(msg, sizeof(msg), "%s%s", body, NEXT);
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		http_chunked_init(&ch);
		http_drain_chunked(&d, &ch, 0);
		CHECK(http_drain_active(&d));
		CHECK(http_drain_want(&d, 16384) == 16384);
		CHECK_MSG(feed_steps(&d, msg, strlen(msg), steps[i]) == (long)n,
		    "step %zu", steps[i]);
		CHECK(!http_drain_active(&d));
		CHECK(d.dropped == 8);
	}
}

/* An app read part of the body: the drain goes on from its decoder. */
static void
test_chunked_from_app(void)
{
	static const char part[] = "4\r\nab";
	static const char rest[] = "cd\r\n0\r\n\r\n";
	struct http_chunked ch;
	struct http_drain d;
	struct http_error err;
	const char *data;
	size_t used, dlen;
	char msg[128];

	http_chunked_init(&ch);
	while (http_chunked_next(&ch, part, strlen(part), &used, &data, &dlen,
	    &err) == HTTP_PARSE_OK && used < strlen(part))
		;
	http_drain_chunked(&d, &ch, 2);
	snprintf(msg, sizeof(msg), "%s%s", rest, NEXT);
	CHECK(feed_steps(&d, msg, strlen(msg), 3) == (long)strlen(rest));
	CHECK(d.dropped == 4);
	/* a decoder already at the end: nothing to drain */
	http_chunked_init(&ch);
	ch.done = 1;
	http_drain_chunked(&d, &ch, 0);
	CHECK(!http_drain_active(&d));
}

static void
test_chunked_bad(void)
{
	static const char *const bad[] = {
		"zz\r\nhello\r\n0\r\n\r\n",		/* size not hex */
		"5\r\nhelloXX0\r\n\r\n",		/* no CRLF after data */
		"0\r\nHost: x\r\n\r\n",			/* forbidden trailer */
		"5 \r\nhello\r\n0\r\n\r\n",		/* BWS without extension */
	};
	struct http_chunked ch;
	struct http_drain d;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		http_chunked_init(&ch);
		http_drain_chunked(&d, &ch, 0);
		CHECK_MSG(feed_steps(&d, bad[i], strlen(bad[i]), 1) == -2, "%zu", i);
	}
}

static void
test_chunked_bound(void)
{
	size_t piece = 65536, n = 16 * (piece + 9) + 16;
	char *msg = malloc(n + 64), *p = msg;
	struct http_chunked ch;
	struct http_drain d;

	for (int i = 0; i < 16; i++) {
		p += sprintf(p, "10000\r\n");
		memset(p, 'y', piece);
		p += piece;
		p += sprintf(p, "\r\n");
	}
	strcpy(p, "0\r\n\r\n");
	http_chunked_init(&ch);
	http_drain_chunked(&d, &ch, 0);
	CHECK(feed_steps(&d, msg, strlen(msg), 4096) == (long)strlen(msg));
	CHECK(d.dropped == HTTP_DRAIN_MAX);
	/* one byte more, counting what was dropped before the loop */
	http_chunked_init(&ch);
	http_drain_chunked(&d, &ch, 1);
	CHECK(feed_steps(&d, msg, strlen(msg), 4096) == -2);
	free(msg);
}

static void
test_deadline(void)
{
	struct http_chunked ch;
	struct http_drain d;

	http_drain_length(&d, 2 * HTTP_BODY_MIN_RATE);
	CHECK(http_drain_ms(&d, 1000) == 3000);
	http_chunked_init(&ch);
	http_drain_chunked(&d, &ch, 0);
	CHECK(http_drain_ms(&d, 1000) == 1000 + 1000ull * HTTP_DRAIN_MAX / HTTP_BODY_MIN_RATE);
	http_drain_chunked(&d, &ch, HTTP_DRAIN_MAX);
	CHECK(http_drain_ms(&d, 1000) == 1000);
}

int
main(void)
{
	test_length();
	test_chunked_pieces();
	test_chunked_from_app();
	test_chunked_bad();
	test_chunked_bound();
	test_deadline();
	return check_summary("test_http_drain");
}
