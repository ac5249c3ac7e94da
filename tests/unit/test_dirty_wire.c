/*
 * test_dirty_wire.c — unit tests of the dirty protocol codec (dirty_wire.c):
 * round trips of every type, size/count/depth boundaries, a corpus of
 * malformed frames, byte-exact vectors written by hand from the spec, and
 * the frame reassembler (dirty_reader) fed a stream split every way.
 *
 * Runs standalone (no Python, no sockets); prints "N passed, M failed" and
 * exits non-zero on any failure.  Meant to run under ASan+UBSan.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dirty_wire.h"
#include "log.h"
#include "check.h"

/* Parse a hex string (spaces and '|' ignored; "'text'" inserts ASCII)
 * into buf; returns the length. */
static size_t
unhex(const char *s, uint8_t *buf, size_t cap)
{
	size_t n = 0;

	while (*s) {
		if (*s == ' ' || *s == '|' || *s == '\n') {
			s++;
			continue;
		}
		if (*s == '\'') {
			s++;
			while (*s && *s != '\'') {
				if (n == cap)
					abort();
				buf[n++] = (uint8_t)*s++;
			}
			if (*s)
				s++;
			continue;
		}
		unsigned v;
		if (sscanf(s, "%2x", &v) != 1)
			abort();
		if (n == cap)
			abort();
		buf[n++] = (uint8_t)v;
		s += 2;
	}
	return n;
}

static int
bytes_eq(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	if (alen != blen) {
		fprintf(stderr, "  length %zu != %zu\n", alen, blen);
		return 0;
	}
	for (size_t i = 0; i < alen; i++)
		if (a[i] != b[i]) {
			fprintf(stderr, "  byte %zu: %02x != %02x\n", i, a[i],
			    b[i]);
			return 0;
		}
	return 1;
}

/* ---- byte-exact vectors ---- */

static const char REQUEST_VECTOR[] =
    "47 44 01 01 | 00 00 00 60 | 00 00 00 00 00 00 00 01"
    "21 00 00 00 04"
    "11 00 00 00 08 'app_path'"
    "11 00 00 00 10 'app:TestDirtyApp'"
    "11 00 00 00 06 'action'"
    "11 00 00 00 04 'echo'"
    "11 00 00 00 04 'args'"
    "20 00 00 00 01  11 00 00 00 02 'hi'"
    "11 00 00 00 06 'kwargs'"
    "21 00 00 00 00";

/* ERROR id 0x0102030405060708, DirtyAppError "boom", details {} */
static const char ERROR_VECTOR[] =
    "47 44 01 03 | 00 00 00 5b | 01 02 03 04 05 06 07 08"
    "21 00 00 00 01"
    "11 00 00 00 05 'error'"
    "21 00 00 00 03"
    "11 00 00 00 0a 'error_type'"
    "11 00 00 00 0d 'DirtyAppError'"
    "11 00 00 00 07 'message'"
    "11 00 00 00 04 'boom'"
    "11 00 00 00 07 'details'"
    "21 00 00 00 00";

static void
test_vectors(void)
{
	uint8_t want[512];
	size_t wlen, off;
	struct dirty_buf b;
	struct dirty_header h;
	struct dirty_cursor v;
	const char *why = NULL, *s;
	uint32_t n;

	dirty_buf_init(&b);

	/* REQUEST built with the encoder, key order as gunicorn sends it */
	wlen = unhex(REQUEST_VECTOR, want, sizeof(want));
	CHECK(wlen == 16 + 0x60);
	off = dirty_frame_begin(&b, DIRTY_MSG_REQUEST, 1);
	dirty_put_dict(&b, 4);
	dirty_put_cstring(&b, "app_path");
	dirty_put_cstring(&b, "app:TestDirtyApp");
	dirty_put_cstring(&b, "action");
	dirty_put_cstring(&b, "echo");
	dirty_put_cstring(&b, "args");
	dirty_put_list(&b, 1);
	dirty_put_string(&b, "hi", 2);
	dirty_put_cstring(&b, "kwargs");
	dirty_put_dict(&b, 0);
	CHECK(dirty_frame_end(&b, off) == 0);
	CHECK(bytes_eq(b.data, b.len, want, wlen));

	/* and decoded back */
	CHECK(dirty_header_decode(want, &h, &why) == 0);
	CHECK(h.type == DIRTY_MSG_REQUEST && h.length == 0x60 && h.id == 1);
	CHECK(dirty_validate(want + 16, h.length, 0, &why) == 0);
	CHECK(dirty_dict_lookup(want + 16, h.length, "action", &v, &why) == 0);
	CHECK(dirty_get_string(&v, &s, &n) == 0 && n == 4 &&
	    memcmp(s, "echo", 4) == 0 && dirty_end(&v) == 0);
	CHECK(dirty_dict_lookup(want + 16, h.length, "args", &v, &why) == 0);
	CHECK(dirty_get_list(&v, &n) == 0 && n == 1);
	CHECK(dirty_get_string(&v, &s, &n) == 0 && n == 2 &&
	    memcmp(s, "hi", 2) == 0);
	dirty_leave(&v);
	CHECK(dirty_end(&v) == 0);
	CHECK(dirty_dict_lookup(want + 16, h.length, "nope", &v, &why) == 1);

	/* ERROR frame via dirty_put_error_frame */
	wlen = unhex(ERROR_VECTOR, want, sizeof(want));
	CHECK(wlen == 16 + 0x5b);
	dirty_buf_reset(&b);
	dirty_put_error_frame(&b, 0x0102030405060708ULL, DIRTY_E_APP, "boom");
	CHECK(bytes_eq(b.data, b.len, want, wlen));
	CHECK(dirty_header_decode(want, &h, &why) == 0);
	CHECK(h.type == DIRTY_MSG_ERROR && h.id == 0x0102030405060708ULL);

	/* END: header only */
	dirty_buf_reset(&b);
	off = dirty_frame_begin(&b, DIRTY_MSG_END, 9);
	CHECK(dirty_frame_end(&b, off) == 0);
	wlen = unhex("47 44 01 05 00 00 00 00 00 00 00 00 00 00 00 09", want,
	    sizeof(want));
	CHECK(bytes_eq(b.data, b.len, want, wlen));

	/* header id rewrite */
	dirty_header_set_id(b.data, 0xfedcba9876543210ULL);
	CHECK(dirty_header_decode(b.data, &h, &why) == 0 &&
	    h.id == 0xfedcba9876543210ULL && h.type == DIRTY_MSG_END &&
	    h.length == 0);

	/* scalars byte-exact: -2 as int64, 1.5 as float64, true */
	dirty_buf_reset(&b);
	dirty_put_int64(&b, -2);
	dirty_put_float64(&b, 1.5);
	dirty_put_bool(&b, 1);
	dirty_put_none(&b);
	dirty_put_bytes(&b, "\x00\xff", 2);
	wlen = unhex("05 ff ff ff ff ff ff ff fe  06 3f f8 00 00 00 00 00 00"
	    " 01 01  00  10 00 00 00 02 00 ff", want, sizeof(want));
	CHECK(bytes_eq(b.data, b.len, want, wlen));

	dirty_buf_free(&b);
}

/* ---- round trips ---- */

static void
test_roundtrip(void)
{
	struct dirty_buf b;
	struct dirty_cursor c;
	const uint8_t *bp;
	const char *s, *why;
	uint32_t n;
	int64_t iv;
	double dv;
	int bv;
	size_t off;
	struct dirty_header h;
	static const int64_t ints[] = { 0, 1, -1, INT64_MAX, INT64_MIN, 42 };
	static const double dbls[] = { 0.0, -0.0, 3.25, 1e308, -1e-308 };

	dirty_buf_init(&b);
	off = dirty_frame_begin(&b, DIRTY_MSG_RESPONSE, 77);
	dirty_put_list(&b, 6 + 5 + 8);
	for (size_t i = 0; i < 6; i++)
		dirty_put_int64(&b, ints[i]);
	for (size_t i = 0; i < 5; i++)
		dirty_put_float64(&b, dbls[i]);
	dirty_put_float64(&b, INFINITY);
	dirty_put_float64(&b, NAN);
	dirty_put_none(&b);
	dirty_put_bool(&b, 0);
	dirty_put_bool(&b, 7);		/* any true value encodes as 1 */
	dirty_put_bytes(&b, "", 0);
	dirty_put_string(&b, "h\xc3\xa9llo \xf0\x9f\xa6\x84", 11);
	dirty_put_dict(&b, 2);
	dirty_put_cstring(&b, "k");
	dirty_put_list(&b, 0);
	dirty_put_cstring(&b, "");
	dirty_put_bytes(&b, "\x01\x02\x03", 3);
	CHECK(dirty_frame_end(&b, off) == 0);

	CHECK(dirty_header_decode(b.data, &h, &why) == 0);
	CHECK(h.type == DIRTY_MSG_RESPONSE && h.id == 77 &&
	    h.length == b.len - 16);
	CHECK(dirty_validate(b.data + 16, h.length, 0, &why) == 0);

	dirty_cursor_init(&c, b.data + 16, h.length);
	CHECK(dirty_peek_type(&c) == DIRTY_TLV_LIST);
	CHECK(dirty_get_list(&c, &n) == 0 && n == 19 && c.depth == 1);
	for (size_t i = 0; i < 6; i++)
		CHECK(dirty_get_int64(&c, &iv) == 0 && iv == ints[i]);
	for (size_t i = 0; i < 5; i++)
		CHECK(dirty_get_float64(&c, &dv) == 0 &&
		    memcmp(&dv, &dbls[i], sizeof(dv)) == 0);
	CHECK(dirty_get_float64(&c, &dv) == 0 && isinf(dv) && dv > 0);
	CHECK(dirty_get_float64(&c, &dv) == 0 && isnan(dv));
	CHECK(dirty_get_none(&c) == 0);
	CHECK(dirty_get_bool(&c, &bv) == 0 && bv == 0);
	CHECK(dirty_get_bool(&c, &bv) == 0 && bv == 1);
	CHECK(dirty_get_bytes(&c, &bp, &n) == 0 && n == 0);
	CHECK(dirty_get_string(&c, &s, &n) == 0 && n == 11 &&
	    memcmp(s, "h\xc3\xa9llo \xf0\x9f\xa6\x84", 11) == 0);
	CHECK(dirty_get_dict(&c, &n) == 0 && n == 2 && c.depth == 2);
	CHECK(dirty_get_string(&c, &s, &n) == 0 && n == 1 && *s == 'k');
	CHECK(dirty_get_list(&c, &n) == 0 && n == 0);
	dirty_leave(&c);
	CHECK(dirty_get_string(&c, &s, &n) == 0 && n == 0);
	CHECK(dirty_get_bytes(&c, &bp, &n) == 0 && n == 3 &&
	    memcmp(bp, "\x01\x02\x03", 3) == 0);
	dirty_leave(&c);
	dirty_leave(&c);
	CHECK(c.depth == 0);
	CHECK(dirty_end(&c) == 0 && c.error == NULL);
	CHECK(dirty_peek_type(&c) == -1);

	/* a type mismatch is an error and the error is sticky */
	dirty_cursor_init(&c, b.data + 16, h.length);
	CHECK(dirty_get_dict(&c, &n) == -1 && c.error != NULL);
	CHECK(dirty_get_list(&c, &n) == -1);

	/* dirty_buf_consume */
	dirty_buf_reset(&b);
	dirty_buf_append(&b, "abcdef", 6);
	dirty_buf_consume(&b, 2);
	CHECK(b.len == 4 && memcmp(b.data, "cdef", 4) == 0);
	dirty_buf_consume(&b, 10);
	CHECK(b.len == 0);

	/* empty payloads */
	CHECK(dirty_validate(NULL, 0, 1, &why) == 0);
	CHECK(dirty_validate(NULL, 0, 0, &why) == -1);

	dirty_buf_free(&b);
}

/* ---- boundaries ---- */

static void
put_be32(uint8_t *p, uint32_t v)
{
	p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v;
}

static void
test_boundaries(void)
{
	uint8_t hdr[16];
	struct dirty_header h;
	struct dirty_cursor c;
	struct dirty_buf b;
	const char *why;
	const uint8_t *bp;
	uint8_t *big;
	uint32_t n;
	size_t off;
	int i;

	/* header length: max ok, max + 1 refused */
	dirty_header_encode(hdr, DIRTY_MSG_CHUNK, DIRTY_MAX_PAYLOAD, 3);
	CHECK(dirty_header_decode(hdr, &h, &why) == 0 &&
	    h.length == DIRTY_MAX_PAYLOAD);
	dirty_header_encode(hdr, DIRTY_MSG_CHUNK, DIRTY_MAX_PAYLOAD + 1, 3);
	CHECK(dirty_header_decode(hdr, &h, &why) == -1);
	dirty_header_encode(hdr, DIRTY_MSG_CHUNK, UINT32_MAX, 3);
	CHECK(dirty_header_decode(hdr, &h, &why) == -1);

	/* blob: exactly max ok; max + 1 refused even with the bytes there */
	big = calloc(1, (size_t)DIRTY_MAX_BLOB + 16);
	CHECK(big != NULL);
	big[0] = DIRTY_TLV_BYTES;
	put_be32(big + 1, DIRTY_MAX_BLOB);
	CHECK(dirty_validate(big, 5 + (size_t)DIRTY_MAX_BLOB, 0, &why) == 0);
	dirty_cursor_init(&c, big, 5 + (size_t)DIRTY_MAX_BLOB);
	CHECK(dirty_get_bytes(&c, &bp, &n) == 0 && n == DIRTY_MAX_BLOB &&
	    bp == big + 5);
	put_be32(big + 1, DIRTY_MAX_BLOB + 1);
	CHECK(dirty_validate(big, 6 + (size_t)DIRTY_MAX_BLOB, 0, &why) == -1);
	big[0] = DIRTY_TLV_STRING;	/* all zero bytes: valid UTF-8 */
	put_be32(big + 1, DIRTY_MAX_BLOB);
	CHECK(dirty_validate(big, 5 + (size_t)DIRTY_MAX_BLOB, 0, &why) == 0);
	put_be32(big + 1, DIRTY_MAX_BLOB + 1);
	CHECK(dirty_validate(big, 6 + (size_t)DIRTY_MAX_BLOB, 0, &why) == -1);

	/* a frame whose payload is max ok, one more byte refused */
	dirty_buf_init(&b);
	off = dirty_frame_begin(&b, DIRTY_MSG_RESPONSE, 1);
	dirty_put_bytes(&b, big, DIRTY_MAX_PAYLOAD - 5);
	CHECK(dirty_frame_end(&b, off) == 0);
	CHECK(dirty_header_decode(b.data, &h, &why) == 0 &&
	    h.length == DIRTY_MAX_PAYLOAD);
	dirty_buf_reset(&b);
	off = dirty_frame_begin(&b, DIRTY_MSG_RESPONSE, 1);
	dirty_put_bytes(&b, big, DIRTY_MAX_PAYLOAD - 4);
	CHECK(dirty_frame_end(&b, off) == -1);

	/* list count: max ok, max + 1 refused (with enough bytes there) */
	memset(big, 0, (size_t)DIRTY_MAX_COUNT + 16);
	big[0] = DIRTY_TLV_LIST;
	put_be32(big + 1, DIRTY_MAX_COUNT);
	CHECK(dirty_validate(big, 5 + (size_t)DIRTY_MAX_COUNT, 0, &why) == 0);
	put_be32(big + 1, DIRTY_MAX_COUNT + 1);
	CHECK(dirty_validate(big, 6 + (size_t)DIRTY_MAX_COUNT, 0, &why) == -1);
	/* dict count: max ok (pairs of "" : None), max + 1 refused */
	dirty_buf_reset(&b);
	dirty_put_dict(&b, DIRTY_MAX_COUNT);
	for (i = 0; i < (int)DIRTY_MAX_COUNT; i++) {
		dirty_put_string(&b, "", 0);
		dirty_put_none(&b);
	}
	CHECK(dirty_validate(b.data, b.len, 0, &why) == 0);
	dirty_put_string(&b, "", 0);
	dirty_put_none(&b);
	b.data[4] = 1;		/* count = 0x00100001 */
	CHECK(dirty_validate(b.data, b.len, 0, &why) == -1);
	/* a count larger than the bytes left is refused at once */
	CHECK(dirty_validate((const uint8_t *)"\x20\x00\x00\x00\x02\x00", 6,
	    0, &why) == -1);
	CHECK(dirty_validate((const uint8_t *)"\x21\x00\x00\x00\x01\x00", 6,
	    0, &why) == -1);
	free(big);

	/* nesting: DIRTY_MAX_DEPTH lists ok, one more refused */
	for (int depth = DIRTY_MAX_DEPTH - 1; depth <= DIRTY_MAX_DEPTH + 1;
	    depth++) {
		dirty_buf_reset(&b);
		for (i = 0; i < depth - 1; i++)
			dirty_put_list(&b, 1);
		dirty_put_list(&b, 0);
		int rc = dirty_validate(b.data, b.len, 0, &why);
		CHECK(rc == (depth <= DIRTY_MAX_DEPTH ? 0 : -1));
		if (rc == -1)
			CHECK(strstr(why, "deep") != NULL);
	}
	/* same with dicts */
	dirty_buf_reset(&b);
	for (i = 0; i < DIRTY_MAX_DEPTH; i++) {
		dirty_put_dict(&b, 1);
		dirty_put_cstring(&b, "d");
	}
	dirty_put_none(&b);
	CHECK(dirty_validate(b.data, b.len, 0, &why) == 0);
	dirty_buf_reset(&b);
	for (i = 0; i < DIRTY_MAX_DEPTH + 1; i++) {
		dirty_put_dict(&b, 1);
		dirty_put_cstring(&b, "d");
	}
	dirty_put_none(&b);
	CHECK(dirty_validate(b.data, b.len, 0, &why) == -1);

	dirty_buf_free(&b);
}

/* ---- malformed corpus ---- */

struct bad_frame {
	const char *name;
	const char *hex;	/* whole frame: header + payload */
};

static const struct bad_frame bad_frames[] = {
	{ "bad magic", "47 45 01 02 00 00 00 01 00 00 00 00 00 00 00 01 00" },
	{ "bad magic 2", "00 44 01 02 00 00 00 01 00 00 00 00 00 00 00 01 00" },
	{ "bad version", "47 44 02 02 00 00 00 01 00 00 00 00 00 00 00 01 00" },
	{ "version 0", "47 44 00 02 00 00 00 01 00 00 00 00 00 00 00 01 00" },
	{ "unknown msg type", "47 44 01 06 00 00 00 01 00 00 00 00 00 00 00 01 00" },
	{ "msg type 0", "47 44 01 00 00 00 00 01 00 00 00 00 00 00 00 01 00" },
	{ "msg type 0x13", "47 44 01 13 00 00 00 01 00 00 00 00 00 00 00 01 00" },
	{ "oversize length", "47 44 01 02 04 00 00 01 00 00 00 00 00 00 00 01 00" },
	{ "truncated header", "47 44 01 02 00 00 00 01 00 00 00" },
	{ "empty", "" },
	{ "truncated payload", "47 44 01 02 00 00 00 09 00 00 00 00 00 00 00 01 05 00 00" },
	{ "empty response payload", "47 44 01 02 00 00 00 00 00 00 00 00 00 00 00 01" },
	{ "unknown tlv type", "47 44 01 02 00 00 00 01 00 00 00 00 00 00 00 01 02" },
	{ "unknown tlv type 0x22", "47 44 01 02 00 00 00 05 00 00 00 00 00 00 00 01 22 00 00 00 00" },
	{ "truncated int", "47 44 01 02 00 00 00 05 00 00 00 00 00 00 00 01 05 00 00 00 00" },
	{ "truncated float", "47 44 01 02 00 00 00 01 00 00 00 00 00 00 00 01 06" },
	{ "truncated bool", "47 44 01 02 00 00 00 01 00 00 00 00 00 00 00 01 01" },
	{ "bool byte 2", "47 44 01 02 00 00 00 02 00 00 00 00 00 00 00 01 01 02" },
	{ "bool byte ff", "47 44 01 02 00 00 00 02 00 00 00 00 00 00 00 01 01 ff" },
	{ "truncated string len", "47 44 01 02 00 00 00 03 00 00 00 00 00 00 00 01 11 00 00" },
	{ "truncated string", "47 44 01 02 00 00 00 07 00 00 00 00 00 00 00 01 11 00 00 00 03 'ab'" },
	{ "truncated bytes", "47 44 01 02 00 00 00 05 00 00 00 00 00 00 00 01 10 ff ff ff ff" },
	{ "string len > max", "47 44 01 02 00 00 00 05 00 00 00 00 00 00 00 01 11 04 00 00 01" },
	{ "truncated list count", "47 44 01 02 00 00 00 02 00 00 00 00 00 00 00 01 20 00" },
	{ "truncated list", "47 44 01 02 00 00 00 06 00 00 00 00 00 00 00 01 20 00 00 00 02 00" },
	{ "list count > max", "47 44 01 02 00 00 00 05 00 00 00 00 00 00 00 01 20 00 10 00 01" },
	{ "truncated dict", "47 44 01 02 00 00 00 0b 00 00 00 00 00 00 00 01 21 00 00 00 01 11 00 00 00 01 'k'" },
	{ "trailing bytes", "47 44 01 02 00 00 00 02 00 00 00 00 00 00 00 01 00 00" },
	{ "trailing after dict", "47 44 01 02 00 00 00 06 00 00 00 00 00 00 00 01 21 00 00 00 00 00" },
	{ "non-string key int", "47 44 01 02 00 00 00 0f 00 00 00 00 00 00 00 01 21 00 00 00 01 05 00 00 00 00 00 00 00 01 00" },
	{ "non-string key bytes", "47 44 01 02 00 00 00 0b 00 00 00 00 00 00 00 01 21 00 00 00 01 10 00 00 00 00 00 00" },
	{ "non-string key none", "47 44 01 02 00 00 00 07 00 00 00 00 00 00 00 01 21 00 00 00 01 00 00" },
	{ "utf8 lone continuation", "47 44 01 02 00 00 00 06 00 00 00 00 00 00 00 01 11 00 00 00 01 80" },
	{ "utf8 overlong 2-byte /", "47 44 01 02 00 00 00 07 00 00 00 00 00 00 00 01 11 00 00 00 02 c0 af" },
	{ "utf8 overlong c1", "47 44 01 02 00 00 00 07 00 00 00 00 00 00 00 01 11 00 00 00 02 c1 bf" },
	{ "utf8 overlong 3-byte", "47 44 01 02 00 00 00 08 00 00 00 00 00 00 00 01 11 00 00 00 03 e0 80 af" },
	{ "utf8 overlong 4-byte", "47 44 01 02 00 00 00 09 00 00 00 00 00 00 00 01 11 00 00 00 04 f0 80 80 af" },
	{ "utf8 surrogate d800", "47 44 01 02 00 00 00 08 00 00 00 00 00 00 00 01 11 00 00 00 03 ed a0 80" },
	{ "utf8 surrogate dfff", "47 44 01 02 00 00 00 08 00 00 00 00 00 00 00 01 11 00 00 00 03 ed bf bf" },
	{ "utf8 > U+10FFFF", "47 44 01 02 00 00 00 09 00 00 00 00 00 00 00 01 11 00 00 00 04 f4 90 80 80" },
	{ "utf8 f5", "47 44 01 02 00 00 00 09 00 00 00 00 00 00 00 01 11 00 00 00 04 f5 80 80 80" },
	{ "utf8 ff", "47 44 01 02 00 00 00 06 00 00 00 00 00 00 00 01 11 00 00 00 01 ff" },
	{ "utf8 truncated seq", "47 44 01 02 00 00 00 07 00 00 00 00 00 00 00 01 11 00 00 00 02 e2 82" },
	{ "utf8 bad continuation", "47 44 01 02 00 00 00 08 00 00 00 00 00 00 00 01 11 00 00 00 03 e2 28 a1" },
	{ "utf8 in key", "47 44 01 02 00 00 00 0b 00 00 00 00 00 00 00 01 21 00 00 00 01 11 00 00 00 01 c3 00" },
	{ "utf8 after ascii run", "47 44 01 02 00 00 00 0f 00 00 00 00 00 00 00 01 11 00 00 00 0a 'abcdefghi' 80" },
	{ "deep dict key missing", "47 44 01 02 00 00 00 0a 00 00 00 00 00 00 00 01 20 00 00 00 01 21 00 00 00 01" },
};

/* What a receiver does with a whole frame: header, then the payload (END
 * and STATUS may be empty). */
static const char *last_why;

static int
frame_ok(const uint8_t *p, size_t len)
{
	struct dirty_header h;

	last_why = NULL;
	if (len < DIRTY_HEADER_SIZE) {
		last_why = "short";
		return 0;
	}
	if (dirty_header_decode(p, &h, &last_why) == -1)
		return 0;
	if (len - DIRTY_HEADER_SIZE != h.length) {
		last_why = "length mismatch";
		return 0;
	}
	if (dirty_validate(p + 16, h.length, h.type == DIRTY_MSG_END ||
	    h.type == DIRTY_MSG_STATUS, &last_why) == -1)
		return 0;
	return 1;
}

static void
test_malformed(void)
{
	uint8_t buf[256];
	size_t n;

	for (size_t i = 0; i < sizeof(bad_frames) / sizeof(bad_frames[0]); i++) {
		n = unhex(bad_frames[i].hex, buf, sizeof(buf));
		if (frame_ok(buf, n)) {
			fprintf(stderr, "  accepted: %s\n", bad_frames[i].name);
			CHECK(!"malformed frame accepted");
		} else
			CHECK(last_why != NULL && last_why[0] != '\0');
	}
	/* a valid frame accepted by the same function, as a control */
	n = unhex(REQUEST_VECTOR, buf, sizeof(buf));
	CHECK(frame_ok(buf, n));
	n = unhex("47 44 01 05 00 00 00 00 00 00 00 00 00 00 00 01", buf,
	    sizeof(buf));
	CHECK(frame_ok(buf, n));
	n = unhex("47 44 01 11 00 00 00 00 00 00 00 00 00 00 00 01", buf,
	    sizeof(buf));
	CHECK(frame_ok(buf, n));
	/* bool byte 2 through the cursor too */
	{
		struct dirty_cursor c;
		int v = -1;
		dirty_cursor_init(&c, (const uint8_t *)"\x01\x02", 2);
		CHECK(dirty_get_bool(&c, &v) == -1 && v == -1 &&
		    c.error != NULL);
	}
	/* a valid UTF-8 sample of every length accepted */
	CHECK(dirty_utf8_valid((const uint8_t *)"a\xc2\x80\xdf\xbf"
	    "\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80\xef\xbf\xbf"
	    "\xf0\x90\x80\x80\xf4\x8f\xbf\xbf", 25));
	/* dict_lookup on malformed / non-dict payloads */
	{
		struct dirty_cursor v;
		const char *why = NULL;
		CHECK(dirty_dict_lookup((const uint8_t *)"\x00", 1, "k", &v,
		    &why) == -1 && why != NULL);
		CHECK(dirty_dict_lookup((const uint8_t *)"\x21\x00\x00\x00\x00"
		    "\x00", 6, "k", &v, &why) == -1);
		CHECK(dirty_dict_lookup((const uint8_t *)"\x21\x00\x00\x00\x00",
		    5, "k", &v, &why) == 1);
	}
}

/* ---- dirty_apps entries, ERROR frames with details ---- */

static void
test_spec_split(void)
{
	static const struct { const char *spec; int rc; size_t len; int limit; }
	    cases[] = {
		{ "m:C", 0, 3, 0 },
		{ "m.x:C.D:12", 0, 7, 12 },
		{ "pkg.mod:Cls:999999999", 0, 11, 999999999 },
		{ "m:C:0", -1, 5, 0 },
		{ "m:C:x", -1, 5, 0 },
		{ "m:C:", -1, 4, 0 },
		{ "m:C:1:2", -1, 7, 0 },
		{ "m:C:1234567890", -1, 14, 0 },
		{ "nomodule", -1, 8, 0 },
		{ ":C", -1, 2, 0 },
		{ "m:", -1, 2, 0 },
		{ "m::C", -1, 4, 0 },
		{ "", -1, 0, 0 },
	};
	size_t len;
	int limit;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		len = 99;
		limit = 99;
		CHECK(dirty_app_spec_split(cases[i].spec, &len, &limit) ==
		    cases[i].rc && len == cases[i].len &&
		    limit == cases[i].limit);
	}
}

/* By hand, the head of the ERROR frame the dirty worker always sent for
 * an app error "bad" with id 9, up to its details dict of n entries. */
static size_t
app_error_begin(struct dirty_buf *w, uint32_t n)
{
	size_t off = dirty_frame_begin(w, DIRTY_MSG_ERROR, 9);

	dirty_put_dict(w, 1);
	dirty_put_cstring(w, "error");
	dirty_put_dict(w, 3);
	dirty_put_cstring(w, "error_type");
	dirty_put_cstring(w, DIRTY_E_APP);
	dirty_put_cstring(w, "message");
	dirty_put_cstring(w, "bad");
	dirty_put_cstring(w, "details");
	dirty_put_dict(w, n);
	return off;
}

static void
test_error_details(void)
{
	struct dirty_buf b, w;
	struct dirty_error_details d = {
		.traceback = "Traceback...", .traceback_len = 12,
		.exception_type = "ValueError",
		.app_path = "m:C", .app_path_len = 3,
		.action = "act", .action_len = 3,
	};
	size_t off;

	/* the layout the dirty worker always sent, built by hand */
	dirty_buf_init(&w);
	off = app_error_begin(&w, 4);
	dirty_put_cstring(&w, "traceback");
	dirty_put_cstring(&w, "Traceback...");
	dirty_put_cstring(&w, "exception_type");
	dirty_put_cstring(&w, "ValueError");
	dirty_put_cstring(&w, "app_path");
	dirty_put_cstring(&w, "m:C");
	dirty_put_cstring(&w, "action");
	dirty_put_cstring(&w, "act");
	CHECK(dirty_frame_end(&w, off) == 0);
	dirty_buf_init(&b);
	dirty_put_error_frame_details(&b, 9, DIRTY_E_APP, "bad!", 3, &d);
	CHECK(bytes_eq(b.data, b.len, w.data, w.len));

	/* app_path/action only */
	dirty_buf_reset(&w);
	off = app_error_begin(&w, 2);
	dirty_put_cstring(&w, "app_path");
	dirty_put_cstring(&w, "m:C");
	dirty_put_cstring(&w, "action");
	dirty_put_cstring(&w, "act");
	CHECK(dirty_frame_end(&w, off) == 0);
	d.exception_type = NULL;
	dirty_buf_reset(&b);
	dirty_put_error_frame_details(&b, 9, DIRTY_E_APP, "bad", 3, &d);
	CHECK(bytes_eq(b.data, b.len, w.data, w.len));

	/* no details: the plain form */
	dirty_buf_reset(&w);
	dirty_put_error_frame(&w, 9, DIRTY_E_APP, "bad");
	dirty_buf_reset(&b);
	dirty_put_error_frame_details(&b, 9, DIRTY_E_APP, "bad", 3, NULL);
	CHECK(bytes_eq(b.data, b.len, w.data, w.len));
	dirty_buf_free(&b);
	dirty_buf_free(&w);
}

/* ---- the frame reassembler ---- */

/* A stream of frames: empty, small, one over a read chunk, small again;
 * ends[i] is where frame i ends. */
static size_t
reader_stream(struct dirty_buf *b, size_t *ends, size_t maxends)
{
	static const uint32_t sizes[] = { 0, 5, 70000, 1, 300 };
	size_t n = 0;

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]) && n < maxends;
	    i++) {
		size_t f = dirty_frame_begin(b, i == 0 ? DIRTY_MSG_END :
		    DIRTY_MSG_RESPONSE, 100 + i);
		/* the reader looks at headers only: any payload bytes */
		dirty_buf_reserve(b, sizes[i]);
		memset(b->data + b->len, (int)('a' + i), sizes[i]);
		b->len += sizes[i];
		dirty_frame_end(b, f);
		ends[n++] = b->len;
	}
	return n;
}

/* Drain whole frames from r, checking each against the stream. */
static void
reader_drain(struct dirty_reader *r, const struct dirty_buf *s,
    const size_t *ends, size_t *next, size_t *off)
{
	struct dirty_header h;
	const uint8_t *frame;
	const char *why;
	int got;

	while ((got = dirty_reader_next(r, &h, &frame, &why)) == 1) {
		size_t len = DIRTY_HEADER_SIZE + h.length;
		CHECK(*off + len == ends[*next]);
		CHECK(h.id == 100 + *next);
		CHECK(memcmp(frame, s->data + *off, len) == 0);
		*off += len;
		(*next)++;
	}
	CHECK(got == 0);
}

static void
test_reader_splits(void)
{
	struct dirty_buf s;
	size_t ends[8], nframes;
	static const size_t steps[] = { 1, 7, 16, 17, 4096, 65536, 1 << 20 };

	dirty_buf_init(&s);
	nframes = reader_stream(&s, ends, 8);
	for (size_t k = 0; k < sizeof(steps) / sizeof(steps[0]); k++) {
		size_t step = steps[k], next, off, at;
		struct dirty_reader r;

		/* from chunks, as the arbiter reads into one scratch buffer
		 * (a copy per chunk, reused: frames must not point into it
		 * once kept) */
		dirty_reader_init(&r);
		next = off = 0;
		uint8_t *scratch = malloc(step);
		for (at = 0; at < s.len; at += step) {
			size_t n = s.len - at < step ? s.len - at : step;
			memcpy(scratch, s.data + at, n);
			dirty_reader_feed(&r, scratch, n);
			reader_drain(&r, &s, ends, &next, &off);
			dirty_reader_keep(&r);
			memset(scratch, 0xee, step);
			dirty_reader_trim(&r, 0);
		}
		CHECK_MSG(next == nframes, "chunks of %zu: %zu frames", step,
		    next);
		size_t left;
		dirty_reader_peek(&r, &left);
		CHECK(left == 0);
		CHECK(r.held.cap == 0);		/* trimmed */
		free(scratch);
		dirty_reader_free(&r);

		/* in place, as the dirty worker and the client read */
		dirty_reader_init(&r);
		next = off = 0;
		for (at = 0; at < s.len;) {
			size_t room;
			uint8_t *p = dirty_reader_space(&r, 4096, &room);
			CHECK(room >= 4096);
			size_t n = s.len - at < step ? s.len - at : step;
			if (n > room)
				n = room;
			memcpy(p, s.data + at, n);
			dirty_reader_commit(&r, n);
			at += n;
			reader_drain(&r, &s, ends, &next, &off);
		}
		CHECK_MSG(next == nframes, "in place by %zu: %zu frames", step,
		    next);
		dirty_reader_free(&r);
	}
	dirty_buf_free(&s);
}

static void
test_reader_zero_copy(void)
{
	struct dirty_buf s;
	struct dirty_reader r;
	struct dirty_header h;
	const uint8_t *frame;
	const char *why;
	size_t ends[8];

	dirty_buf_init(&s);
	reader_stream(&s, ends, 8);
	dirty_reader_init(&r);
	/* a chunk ending inside the second frame: the first is handed out
	 * in place, the rest kept (copied) */
	dirty_reader_feed(&r, s.data, ends[0] + 3);
	CHECK(dirty_reader_next(&r, &h, &frame, &why) == 1);
	CHECK(frame == s.data);
	CHECK(dirty_reader_next(&r, &h, &frame, &why) == 0);
	dirty_reader_keep(&r);
	CHECK(r.held.len == 3);
	/* the next chunk completes it: appended, handed out from held */
	dirty_reader_feed(&r, s.data + ends[0] + 3, ends[1] - ends[0] - 3);
	CHECK(dirty_reader_next(&r, &h, &frame, &why) == 1);
	CHECK(h.id == 101 && frame == r.held.data);
	dirty_reader_keep(&r);
	dirty_reader_trim(&r, 1 << 20);
	CHECK(r.held.len == 0 && r.pos == 0);
	dirty_reader_free(&r);
	dirty_buf_free(&s);
}

static void
test_reader_bad_headers(void)
{
	struct dirty_reader r;
	struct dirty_header h;
	const uint8_t *frame, *p;
	const char *why = NULL;
	uint8_t hdr[DIRTY_HEADER_SIZE];
	size_t n, room;

	/* a header over the maximum: refused before anything is reserved
	 * for it, and the reader stays at it */
	dirty_header_encode(hdr, DIRTY_MSG_RESPONSE, 0, 7);
	put_be32(hdr + 4, DIRTY_MAX_PAYLOAD + 1);
	dirty_reader_init(&r);
	p = dirty_reader_space(&r, 16, &room);
	memcpy((uint8_t *)p, hdr, sizeof(hdr));
	dirty_reader_commit(&r, sizeof(hdr));
	CHECK(dirty_reader_next(&r, &h, &frame, &why) == -1);
	CHECK_STR(why, "payload too large");
	CHECK(dirty_reader_next(&r, &h, &frame, &why) == -1);
	p = dirty_reader_peek(&r, &n);
	CHECK(n == sizeof(hdr) && memcmp(p, hdr, n) == 0);
	dirty_reader_space(&r, 16, &room);
	CHECK_MSG(r.held.cap < 4096, "reserved %zu for a bad header",
	    r.held.cap);
	dirty_reader_reset(&r);
	dirty_reader_peek(&r, &n);
	CHECK(n == 0);
	dirty_reader_free(&r);

	/* bad magic, from a chunk */
	memcpy(hdr, "XX", 2);
	dirty_reader_init(&r);
	dirty_reader_feed(&r, hdr, sizeof(hdr));
	CHECK(dirty_reader_next(&r, &h, &frame, &why) == -1);
	CHECK_STR(why, "bad magic");
	p = dirty_reader_peek(&r, &n);
	CHECK(p == hdr && n == sizeof(hdr));
	dirty_reader_free(&r);

	/* a valid header for a large frame: space asks for the rest of it
	 * at once, no more than that plus the minimum */
	dirty_header_encode(hdr, DIRTY_MSG_RESPONSE, 1000000, 9);
	dirty_reader_init(&r);
	p = dirty_reader_space(&r, 16, &room);
	memcpy((uint8_t *)p, hdr, sizeof(hdr));
	dirty_reader_commit(&r, sizeof(hdr));
	CHECK(dirty_reader_next(&r, &h, &frame, &why) == 0);
	dirty_reader_space(&r, 16, &room);
	CHECK(room >= 1000000 && r.held.cap <= 2 * (1000000 + 16));
	dirty_reader_free(&r);
}

int
main(void)
{
	test_reader_splits();
	test_reader_zero_copy();
	test_reader_bad_headers();
	test_vectors();
	test_spec_split();
	test_error_details();
	test_roundtrip();
	test_boundaries();
	test_malformed();
	return check_summary("test_dirty_wire");
}
