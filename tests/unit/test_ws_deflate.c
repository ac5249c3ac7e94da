/*
 * test_ws_deflate.c — permessage-deflate (src/ws_deflate.c): the
 * negotiation's accepted, declined and malformed offers; messages round
 * trip through our compressor and our inflater, whole and one byte per
 * frame; context takeover and its absence; the inflate limit at ±1 byte
 * (a bomb never grows the buffer past the limit); garbage; an empty
 * message; a sender that ends its message with a final block.
 */
#include "ws_deflate.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "check.h"

static int
nego(const char *offer, char *resp, struct ws_deflate_params *o)
{
	memset(o, 0, sizeof(*o));
	resp[0] = '\0';
	return ws_deflate_negotiate(offer, strlen(offer), o, resp, 128);
}

static void
test_negotiation(void)
{
	struct ws_deflate_params o;
	char r[128];

	CHECK(nego("permessage-deflate", r, &o) == 1);
	CHECK_STR(r, "permessage-deflate");
	CHECK(!o.server_no_context_takeover && !o.client_no_context_takeover &&
	    o.server_max_window_bits == 0);
	/* python3-websockets' default offer */
	CHECK(nego("permessage-deflate; client_max_window_bits", r, &o) == 1);
	CHECK_STR(r, "permessage-deflate");
	CHECK(nego("permessage-deflate; client_max_window_bits=10", r, &o) == 1);
	CHECK(nego("x-webkit-deflate-frame, permessage-deflate; server_no_context_takeover;"
	    "client_no_context_takeover ; server_max_window_bits=10", r, &o) == 1);
	CHECK_STR(r, "permessage-deflate; server_no_context_takeover; "
	    "client_no_context_takeover; server_max_window_bits=10");
	CHECK(o.server_no_context_takeover && o.client_no_context_takeover &&
	    o.server_max_window_bits == 10);
	CHECK(nego("PerMessage-Deflate; Server_Max_Window_Bits=\"15\"", r, &o) == 1);
	CHECK_STR(r, "permessage-deflate; server_max_window_bits=15");
	/* the first acceptable offer wins; 8 bits cannot be honoured */
	CHECK(nego("permessage-deflate; server_max_window_bits=8, "
	    "permessage-deflate; server_max_window_bits=9", r, &o) == 1);
	CHECK_STR(r, "permessage-deflate; server_max_window_bits=9");
	CHECK(nego("permessage-deflate; server_max_window_bits=8", r, &o) == 0);
	/* a quoted comma inside another extension's parameter */
	CHECK(nego("foo; bar=\"a,b\\\"c\", permessage-deflate", r, &o) == 1);
	/* an empty list element */
	CHECK(nego(" , ,permessage-deflate", r, &o) == 1);

	/* declined offers */
	const char *declined[] = {
		"",
		"x-webkit-deflate-frame",
		"permessage-deflate; unknown",
		"permessage-deflate; server_no_context_takeover; server_no_context_takeover",
		"permessage-deflate; server_no_context_takeover=1",
		"permessage-deflate; client_no_context_takeover=\"\"",
		"permessage-deflate; server_max_window_bits",
		"permessage-deflate; server_max_window_bits=16",
		"permessage-deflate; server_max_window_bits=7",
		"permessage-deflate; server_max_window_bits=010",
		"permessage-deflate; server_max_window_bits=1x",
		"permessage-deflate; client_max_window_bits=16",
		"permessage-deflate; client_max_window_bits=123456789012",
		"permessage-deflate; client_max_window_bits; client_max_window_bits",
		/* malformed: nothing after, even a good offer */
		"permessage-deflate; =x, permessage-deflate",
		"permessage-deflate; a=\"open, permessage-deflate",
		"permessage-deflate; a=, permessage-deflate",
		"permessage-deflate x, permessage-deflate",
		"permessage-deflate; a=\"\\",
	};
	for (size_t i = 0; i < sizeof(declined) / sizeof(declined[0]); i++)
		CHECK_MSG(nego(declined[i], r, &o) == 0, "accepted: %s", declined[i]);
	/* no room for the answer: declined, nothing overrun */
	char small[20];
	CHECK(ws_deflate_negotiate("permessage-deflate; server_no_context_takeover", 46, &o,
	    small, sizeof(small)) == 0);
}

/* Compress msg with tx, inflate it with rx (whole, or one byte per
 * frame); the inflated length, or -1 with *rc set. */
static long
round_trip(struct ws_deflate *tx, struct ws_deflate *rx, const unsigned char *msg, size_t n,
    int bytewise, size_t max, size_t *wire, int *rc, unsigned char **buf, size_t *cap)
{
	const unsigned char *z;
	size_t zn, len = 0;

	*rc = WS_INFLATE_OK;
	if (ws_deflate_message(tx, msg, n, &z, &zn) != 0)
		return -2;
	*wire = zn;
	unsigned char *copy = malloc(zn ? zn : 1);
	memcpy(copy, z, zn);
	if (!bytewise)
		*rc = ws_inflate(rx, copy, zn, 1, buf, &len, cap, max);
	else {
		for (size_t i = 0; i < zn && *rc == WS_INFLATE_OK; i++)
			*rc = ws_inflate(rx, copy + i, 1, i + 1 == zn, buf, &len, cap, max);
		if (zn == 0)
			*rc = ws_inflate(rx, copy, 0, 1, buf, &len, cap, max);
	}
	free(copy);
	return *rc == WS_INFLATE_OK ? (long)len : -1;
}

static void
test_round_trips(void)
{
	struct ws_deflate_params none = { 0 };
	struct ws_deflate *tx = ws_deflate_new(&none), *rx = ws_deflate_new(&none);
	unsigned char *buf = NULL, *msg = malloc(300000);
	size_t cap = 0, wire1, wire2;
	int rc;

	for (size_t i = 0; i < 300000; i++)
		msg[i] = (unsigned char)("the quick brown fox "[i % 20] ^ (i / 7919));
	for (int bytewise = 0; bytewise < 2; bytewise++) {
		long n = round_trip(tx, rx, msg, 300000, bytewise, 1 << 20, &wire1, &rc, &buf, &cap);
		CHECK(n == 300000 && memcmp(buf, msg, 300000) == 0);
		CHECK(wire1 < 300000 / 4);
	}
	/* context takeover: the same text again costs a few bytes */
	const unsigned char *text = (const unsigned char *)
	    "{\"event\": \"tick\", \"payload\": \"0123456789abcdefghijklmnopqrstuvwxyz\"}";
	size_t tl = strlen((const char *)text);
	CHECK(round_trip(tx, rx, text, tl, 0, 1 << 20, &wire1, &rc, &buf, &cap) == (long)tl);
	CHECK(round_trip(tx, rx, text, tl, 1, 1 << 20, &wire2, &rc, &buf, &cap) == (long)tl);
	CHECK(memcmp(buf, text, tl) == 0);
	CHECK_MSG(wire2 < wire1 / 2, "takeover: %zu then %zu bytes", wire1, wire2);
	/* an empty message */
	CHECK(round_trip(tx, rx, text, 0, 0, 1 << 20, &wire1, &rc, &buf, &cap) == 0);
	CHECK(wire1 == 1);
	CHECK(round_trip(tx, rx, text, tl, 0, 1 << 20, &wire1, &rc, &buf, &cap) == (long)tl);
	ws_deflate_free(tx);
	ws_deflate_free(rx);

	/* no context takeover either way: every message stands alone */
	struct ws_deflate_params both = { .server_no_context_takeover = 1,
	    .client_no_context_takeover = 1, .server_max_window_bits = 9 };
	tx = ws_deflate_new(&both);
	rx = ws_deflate_new(&both);
	CHECK(round_trip(tx, rx, text, tl, 0, 1 << 20, &wire1, &rc, &buf, &cap) == (long)tl);
	CHECK(round_trip(tx, rx, text, tl, 0, 1 << 20, &wire2, &rc, &buf, &cap) == (long)tl);
	CHECK(wire1 == wire2);
	/* a fresh inflater decodes the second message alone */
	struct ws_deflate *fresh = ws_deflate_new(&none);
	CHECK(round_trip(tx, fresh, text, tl, 0, 1 << 20, &wire2, &rc, &buf, &cap) == (long)tl);
	CHECK(round_trip(tx, rx, msg, 300000, 1, 1 << 20, &wire2, &rc, &buf, &cap) == 300000);
	CHECK(memcmp(buf, msg, 300000) == 0);
	ws_deflate_free(fresh);
	ws_deflate_free(tx);
	ws_deflate_free(rx);
	free(buf);
	free(msg);
}

static void
test_limit(void)
{
	struct ws_deflate_params none = { 0 };
	size_t n = 1 << 20, wire, cap;
	unsigned char *zeros = calloc(1, n), *buf;
	int rc;

	for (size_t max = n - 1; max <= n + 1; max++)
		for (int bytewise = 0; bytewise < 2; bytewise++) {
			struct ws_deflate *tx = ws_deflate_new(&none), *rx = ws_deflate_new(&none);
			buf = NULL;
			cap = 0;
			long got = round_trip(tx, rx, zeros, n, bytewise, max, &wire, &rc, &buf, &cap);
			if (max < n)
				CHECK(got == -1 && rc == WS_INFLATE_TOO_BIG);
			else
				CHECK(got == (long)n);
			CHECK_MSG(cap <= max, "buffer %zu past the limit %zu", cap, max);
			CHECK(wire < 2000);	/* a bomb: 1 MiB from ~1 KiB */
			ws_deflate_free(tx);
			ws_deflate_free(rx);
			free(buf);
		}
	free(zeros);
}

static void
test_bad_and_final_block(void)
{
	struct ws_deflate_params none = { 0 };
	struct ws_deflate *rx = ws_deflate_new(&none);
	unsigned char *buf = NULL, garbage[] = { 0xff, 0xff, 0xff, 0xff, 0x00 };
	size_t len = 0, cap = 0;

	/* BTYPE 11 is reserved */
	CHECK(ws_inflate(rx, garbage, sizeof(garbage), 1, &buf, &len, &cap, 1 << 20) ==
	    WS_INFLATE_BAD);
	ws_deflate_free(rx);

	/* a sender that ends with BFINAL (zlib's Z_FINISH): accepted */
	unsigned char z[256];
	z_stream s;
	memset(&s, 0, sizeof(s));
	CHECK(deflateInit2(&s, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) == Z_OK);
	s.next_in = (unsigned char *)"final block";
	s.avail_in = 11;
	s.next_out = z;
	s.avail_out = sizeof(z);
	CHECK(deflate(&s, Z_FINISH) == Z_STREAM_END);
	size_t zn = sizeof(z) - s.avail_out;
	deflateEnd(&s);
	rx = ws_deflate_new(&none);
	len = 0;
	CHECK(ws_inflate(rx, z, zn, 1, &buf, &len, &cap, 1 << 20) == WS_INFLATE_OK);
	CHECK(len == 11 && memcmp(buf, "final block", 11) == 0);
	/* and the inflater still works for the next message */
	len = 0;
	CHECK(ws_inflate(rx, z, zn, 1, &buf, &len, &cap, 1 << 20) == WS_INFLATE_OK && len == 11);
	/* a message cut short then abandoned */
	len = 0;
	CHECK(ws_inflate(rx, z, zn / 2, 0, &buf, &len, &cap, 1 << 20) == WS_INFLATE_OK);
	ws_inflate_abort(rx);
	ws_deflate_free(rx);
	free(buf);
}

int
main(void)
{
	test_negotiation();
	test_round_trips();
	test_limit();
	test_bad_and_final_block();
	return check_summary("test_ws_deflate");
}
