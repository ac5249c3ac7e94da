/*
 * fuzz_ws_deflate.c — libFuzzer target for src/ws_deflate.c.
 *
 * The input is, at once, a Sec-WebSocket-Extensions value (the answer,
 * when one is accepted, must be a permessage-deflate one that fits) and
 * a client's compressed message, inflated whole and again in frames of
 * the first byte's size, under a small limit: the output buffer never
 * grows past the limit, and both ways agree on the outcome and bytes.
 * Owns only its scratch buffers.
 */
#include "ws_deflate.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define ASSERT(c)	do { if (!(c)) abort(); } while (0)
#define LIMIT		8192

static int
inflate_in_frames(const uint8_t *data, size_t size, size_t step, unsigned char **buf,
    size_t *len)
{
	struct ws_deflate_params none = { 0 };
	struct ws_deflate *d = ws_deflate_new(&none);
	size_t cap = 0, at = 0;
	int rc;

	*buf = NULL;
	*len = 0;
	do {
		size_t n = size - at < step ? size - at : step;
		rc = ws_inflate(d, data + at, n, at + n == size, buf, len, &cap, LIMIT);
		at += n;
		ASSERT(cap <= LIMIT && *len <= cap);
	} while (rc == WS_INFLATE_OK && at < size);
	ws_deflate_free(d);
	return rc;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ws_deflate_params o;
	char resp[128];
	unsigned char *a, *b;
	size_t alen, blen;

	if (ws_deflate_negotiate((const char *)data, size, &o, resp, sizeof(resp)) == 1) {
		ASSERT(strncmp(resp, "permessage-deflate", 18) == 0);
		ASSERT(o.server_max_window_bits == 0 ||
		    (o.server_max_window_bits >= 9 && o.server_max_window_bits <= 15));
	}
	int ra = inflate_in_frames(data, size, size ? size : 1, &a, &alen);
	int rb = inflate_in_frames(data, size, size ? (size_t)data[0] % 7 + 1 : 1, &b, &blen);
	ASSERT(ra == rb);
	if (ra == WS_INFLATE_OK)
		ASSERT(alen == blen && (alen == 0 || memcmp(a, b, alen) == 0));
	free(a);
	free(b);
	return 0;
}
