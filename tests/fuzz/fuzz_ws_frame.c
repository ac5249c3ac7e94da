/*
 * fuzz_ws_frame.c — libFuzzer target for src/ws_frame.c.
 *
 * Treats the input as a client's byte stream and decodes frames from it
 * the way asgi_proto.c does (fragments joined, control frames between
 * them, a message limit, RSV1 allowed for odd sizes), whole and again one
 * byte at a time, checking
 * that a header is never accepted with a length over the limit, that
 * every pointer lies in the input, and that both ways see the same
 * frames and the same outcome.  Owns only its scratch buffer.
 */
#include "ws_frame.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define ASSERT(c)	do { if (!(c)) abort(); } while (0)
#define MAX_MESSAGE	4096

static int rsv1_ok;	/* permessage-deflate agreed: odd-sized inputs */

struct outcome {
	int frames, bad, code;
	uint64_t payload;		/* bytes of every frame */
	uint32_t sum;			/* of the unmasked payloads */
};

/* Decode buf[0..len) as far as whole frames go; *used: bytes taken. */
static void
decode(unsigned char *buf, size_t len, struct outcome *o, size_t *used,
    int *msg_op, uint64_t *msg_len)
{
	size_t at = 0;

	while (!o->bad) {
		struct ws_frame f;
		const char *why = NULL;
		int code = 0;
		int r = ws_frame_parse(buf + at, len - at, *msg_op, *msg_len, MAX_MESSAGE,
		    rsv1_ok, &f, &code, &why);
		if (r == WS_FRAME_MORE)
			break;
		if (r == WS_FRAME_BAD) {
			ASSERT(why != NULL && (code == 1002 || code == 1009));
			o->bad = 1;
			o->code = code;
			break;
		}
		ASSERT(f.head_len >= 6 && f.head_len <= 14 && f.len <= MAX_MESSAGE);
		ASSERT(!f.rsv1 || (rsv1_ok && (f.opcode == 1 || f.opcode == 2)));
		ASSERT(f.mask >= buf + at && f.mask + 4 <= buf + at + f.head_len);
		if (f.opcode == 0)
			ASSERT(*msg_len + f.len <= MAX_MESSAGE);
		if (len - at < f.head_len + f.len)
			break;
		ws_unmask(buf + at + f.head_len, f.len, f.mask);
		for (uint64_t i = 0; i < f.len; i++)
			o->sum = o->sum * 31 + buf[at + f.head_len + i];
		o->frames++;
		o->payload += f.len;
		if (f.opcode == 8)
			(void)ws_close_code(buf + at + f.head_len, (size_t)f.len);
		if (f.opcode < 8) {
			if (f.opcode != 0)
				*msg_op = f.opcode;
			*msg_len += f.len;
			if (f.fin) {
				*msg_op = 0;
				*msg_len = 0;
			}
		}
		at += f.head_len + (size_t)f.len;
	}
	*used = at;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct outcome whole = { 0 }, piece = { 0 };
	unsigned char *a = malloc(size + 1), *b = malloc(size + 1);
	size_t used, have = 0, fed = 0;
	int op = 0;
	uint64_t ml = 0;

	rsv1_ok = size % 2;
	memcpy(a, data, size);
	decode(a, size, &whole, &used, &op, &ml);

	/* one byte at a time, as a trickling client sends it */
	op = 0;
	ml = 0;
	while (fed < size && !piece.bad) {
		b[have++] = data[fed++];
		decode(b, have, &piece, &used, &op, &ml);
		memmove(b, b + used, have - used);
		have -= used;
	}
	ASSERT(whole.bad == piece.bad && whole.code == piece.code);
	if (!whole.bad) {
		ASSERT(whole.frames == piece.frames && whole.payload == piece.payload);
		ASSERT(whole.sum == piece.sum);
	}
	free(a);
	free(b);
	return 0;
}
