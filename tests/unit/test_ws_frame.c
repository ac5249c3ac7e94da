/*
 * test_ws_frame.c — the WebSocket frame codec (src/ws_frame.c): RFC
 * 6455's own examples, every length form and its split points, each
 * malformed header, the size limit ±1, close codes, server headers.
 */
#include "ws_frame.h"

#include <stdint.h>
#include <string.h>

#include "check.h"

static int rsv1_ok;	/* permessage-deflate agreed, for parse() */

static int
parse(const unsigned char *b, size_t n, int msg_op, uint64_t msg_len, uint64_t max,
    struct ws_frame *f, int *code)
{
	const char *why = NULL;
	int r = ws_frame_parse(b, n, msg_op, msg_len, max, rsv1_ok, f, code, &why);

	if (r == WS_FRAME_BAD)
		CHECK(why != NULL);
	return r;
}

static void
test_rfc_examples(void)
{
	/* RFC 6455 §5.7: a masked "Hello" from a client */
	unsigned char hello[] = { 0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58 };
	struct ws_frame f;
	int code;

	CHECK(parse(hello, sizeof(hello), 0, 0, 1 << 20, &f, &code) == WS_FRAME_OK);
	CHECK(f.fin && f.opcode == 1 && f.len == 5 && f.head_len == 6);
	ws_unmask(hello + f.head_len, f.len, f.mask);
	CHECK(memcmp(hello + 6, "Hello", 5) == 0);
	/* every split point of the header is MORE, never BAD */
	for (size_t i = 0; i < 6; i++)
		CHECK(parse(hello, i, 0, 0, 1 << 20, &f, &code) == WS_FRAME_MORE);
	/* an unmasked one, as a server sends it, is refused from a client */
	unsigned char unmasked[] = { 0x81, 0x05, 'H', 'e', 'l', 'l', 'o' };
	CHECK(parse(unmasked, sizeof(unmasked), 0, 0, 1 << 20, &f, &code) == WS_FRAME_BAD &&
	    code == 1002);
}

static void
test_lengths(void)
{
	unsigned char b[14] = { 0x82, 0x80 | 126, 0x01, 0x00, 1, 2, 3, 4 };
	struct ws_frame f;
	int code;

	CHECK(parse(b, 8, 0, 0, 1 << 20, &f, &code) == WS_FRAME_OK && f.len == 256 &&
	    f.head_len == 8);
	for (size_t i = 0; i < 8; i++)
		CHECK(parse(b, i, 0, 0, 1 << 20, &f, &code) == WS_FRAME_MORE);
	memset(b, 0, sizeof(b));
	b[0] = 0x82;
	b[1] = 0x80 | 127;
	b[7] = 0x01;		/* 1 << 16 */
	CHECK(parse(b, 14, 0, 0, 1 << 20, &f, &code) == WS_FRAME_OK && f.len == 65536 &&
	    f.head_len == 14);
	for (size_t i = 0; i < 14; i++)
		CHECK(parse(b, i, 0, 0, 1 << 20, &f, &code) == WS_FRAME_MORE);
	/* the limit, exactly and one over; a continuation counts the message */
	CHECK(parse(b, 14, 0, 0, 65536, &f, &code) == WS_FRAME_OK);
	CHECK(parse(b, 14, 0, 0, 65535, &f, &code) == WS_FRAME_BAD && code == 1009);
	b[0] = 0x80;		/* continuation */
	CHECK(parse(b, 14, 2, 1, 65537, &f, &code) == WS_FRAME_OK);
	CHECK(parse(b, 14, 2, 2, 65537, &f, &code) == WS_FRAME_BAD && code == 1009);
	/* refused before the key is even there: nothing buffered for it */
	CHECK(parse(b, 10, 2, 2, 65537, &f, &code) == WS_FRAME_BAD && code == 1009);
	b[2] = 0x80;		/* top bit */
	b[0] = 0x82;
	CHECK(parse(b, 14, 0, 0, UINT64_MAX, &f, &code) == WS_FRAME_BAD && code == 1002);
}

static void
test_malformed(void)
{
	static const struct { unsigned char b0, b1; int msg_op; } bad[] = {
		{ 0xc1, 0x81, 0 },	/* RSV1 */
		{ 0xa1, 0x81, 0 },	/* RSV2 */
		{ 0x91, 0x81, 0 },	/* RSV3 */
		{ 0x83, 0x81, 0 },	/* reserved data opcode */
		{ 0x8b, 0x81, 0 },	/* reserved control opcode */
		{ 0x09, 0x81, 0 },	/* fragmented ping */
		{ 0x89, 0x80 | 126, 0 },	/* long ping */
		{ 0x80, 0x81, 0 },	/* continuation without a message */
		{ 0x81, 0x81, 1 },	/* text inside a fragmented message */
		{ 0x81, 0x01, 0 },	/* unmasked */
	};
	unsigned char b[16] = { 0 };
	struct ws_frame f;
	int code;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		b[0] = bad[i].b0;
		b[1] = bad[i].b1;
		CHECK_MSG(parse(b, sizeof(b), bad[i].msg_op, 0, 1 << 20, &f, &code) == WS_FRAME_BAD &&
		    code == 1002, "row %zu", i);
	}
	/* control frames inside a fragmented message are fine */
	b[0] = 0x89;
	b[1] = 0x80;
	CHECK(parse(b, 6, 1, 10, 1 << 20, &f, &code) == WS_FRAME_OK && f.opcode == 9);
}

/* With permessage-deflate agreed, RSV1 marks the first frame of a
 * compressed message, and nothing else. */
static void
test_rsv1_with_deflate(void)
{
	unsigned char b[16] = { 0 };
	struct ws_frame f;
	int code;

	rsv1_ok = 1;
	b[1] = 0x81;
	b[0] = 0xc1;		/* compressed text, one frame */
	CHECK(parse(b, 7, 0, 0, 1 << 20, &f, &code) == WS_FRAME_OK && f.rsv1 && f.opcode == 1);
	b[0] = 0x42;		/* compressed binary, first of several */
	CHECK(parse(b, 7, 0, 0, 1 << 20, &f, &code) == WS_FRAME_OK && f.rsv1 && !f.fin);
	b[0] = 0x82;		/* plain binary: still fine */
	CHECK(parse(b, 7, 0, 0, 1 << 20, &f, &code) == WS_FRAME_OK && !f.rsv1);
	static const struct { unsigned char b0; int msg_op; } bad[] = {
		{ 0xc0, 2 },	/* RSV1 on a continuation */
		{ 0xc9, 0 },	/* RSV1 on a ping */
		{ 0xc8, 0 },	/* RSV1 on a close */
		{ 0xe1, 0 },	/* RSV2 is still no one's */
		{ 0xd1, 0 },	/* RSV3 too */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		b[0] = bad[i].b0;
		CHECK_MSG(parse(b, sizeof(b), bad[i].msg_op, 0, 1 << 20, &f, &code) == WS_FRAME_BAD &&
		    code == 1002, "row %zu", i);
	}
	rsv1_ok = 0;
	b[0] = 0xc1;
	CHECK(parse(b, 7, 0, 0, 1 << 20, &f, &code) == WS_FRAME_BAD && code == 1002);
}

static void
test_close_codes(void)
{
	unsigned char c[2];
	static const int ok[] = { 1000, 1001, 1002, 1003, 1007, 1011, 1014, 3000, 4999 };
	static const int no[] = { 0, 999, 1004, 1005, 1006, 1015, 2999, 5000, 65535 };

	CHECK(ws_close_code(c, 0) == 1005);
	CHECK(ws_close_code(c, 1) == -1);
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		c[0] = (unsigned char)(ok[i] >> 8);
		c[1] = (unsigned char)ok[i];
		CHECK_MSG(ws_close_code(c, 2) == ok[i], "%d", ok[i]);
	}
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
		c[0] = (unsigned char)(no[i] >> 8);
		c[1] = (unsigned char)no[i];
		CHECK_MSG(ws_close_code(c, 2) == -1, "%d", no[i]);
	}
}

static void
test_server_header(void)
{
	unsigned char h[10];

	CHECK(ws_frame_header(h, 1, 5) == 2 && h[0] == 0x81 && h[1] == 5);
	CHECK(ws_frame_header(h, 2, 125) == 2 && h[1] == 125);
	CHECK(ws_frame_header(h, 2, 126) == 4 && h[1] == 126 && h[2] == 0 && h[3] == 126);
	CHECK(ws_frame_header(h, 2, 65535) == 4 && h[2] == 0xff && h[3] == 0xff);
	CHECK(ws_frame_header(h, 2, 65536) == 10 && h[1] == 127 && h[7] == 1 && h[9] == 0);
	CHECK(ws_frame_header(h, 8, 2) == 2 && h[0] == 0x88);
}

int
main(void)
{
	test_rfc_examples();
	test_lengths();
	test_malformed();
	test_rsv1_with_deflate();
	test_close_codes();
	test_server_header();
	return check_summary("test_ws_frame");
}
