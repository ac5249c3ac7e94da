/*
 * ws_deflate.h — permessage-deflate (RFC 7692) for websockets, over zlib:
 * the handshake's negotiation, and one connection's two compressors (the
 * client's messages inflated, ours deflated).  No Python, no I/O; the
 * asgi worker's asgi_ws.c uses it, tests/unit/test_ws_deflate.c and
 * tests/fuzz/fuzz_ws_deflate.c drive it.
 *
 * Negotiation (RFC 7692 §5, §7.1).  The client's Sec-WebSocket-Extensions
 * lists offers, best first: `permessage-deflate; param[=value]; ...`,
 * offers separated by commas (several headers are one list, RFC 9110
 * §5.3).  The first permessage-deflate offer we can honour is accepted:
 *   server_no_context_takeover   honoured: our compressor is reset after
 *                                every message; echoed
 *   client_no_context_takeover   echoed (the client will reset; our
 *                                inflater resets too and so keeps no
 *                                window between messages)
 *   server_max_window_bits=N     9..15: echoed, and our window is at most
 *                                N; 8 is declined (zlib's raw deflate
 *                                cannot use a 256-byte window)
 *   client_max_window_bits[=N]   accepted and not echoed: our inflater
 *                                takes any window up to 15
 * An offer with an unknown or repeated parameter, a value where none
 * belongs, or a bad number is declined (§7.1); a header we cannot parse
 * declines everything.  Declined: no Sec-WebSocket-Extensions in the
 * answer, and the connection speaks plain RFC 6455.
 *
 * Messages (§7.2).  A compressed message has RSV1 on its first frame; its
 * payload is raw DEFLATE ending in an empty stored block whose last four
 * bytes (00 00 ff ff) are stripped by the sender and appended again by
 * the receiver.  Inflated output is bounded: the caller's limit is
 * checked before any byte past it would be stored, so a message that
 * inflates beyond it (a "zip bomb") costs at most the limit in memory.
 */
#ifndef CUNICORN_WS_DEFLATE_H
#define CUNICORN_WS_DEFLATE_H

#include <stddef.h>

struct ws_deflate_params {
	int server_no_context_takeover;
	int client_no_context_takeover;
	int server_max_window_bits;	/* 0: not offered (15) */
};

/*
 * Pick the first acceptable permessage-deflate offer in offers[0..n)
 * (a Sec-WebSocket-Extensions value).  1: accepted, *out filled and the
 * answer's header value written to resp (NUL-terminated; cap >= 128
 * always suffices); 0: nothing accepted.
 */
int ws_deflate_negotiate(const char *offers, size_t n, struct ws_deflate_params *out,
    char *resp, size_t cap);

/* Our compressor's window (never above what the client allowed) and
 * memory level: the memory a connection costs once it has sent a
 * compressed message is about (1 << (bits + 2)) + (1 << (level + 9)). */
#define WS_DEFLATE_WINDOW_BITS	12
#define WS_DEFLATE_MEM_LEVEL	5

/* One connection's state; zlib's streams are set up on first use. */
struct ws_deflate *ws_deflate_new(const struct ws_deflate_params *agreed);
void ws_deflate_free(struct ws_deflate *d);

enum { WS_INFLATE_OK, WS_INFLATE_TOO_BIG, WS_INFLATE_BAD };

/*
 * Inflate in[0..n), one frame's payload of a compressed message, onto
 * *out (len *out_len, capacity *out_cap; grown with xrealloc, never past
 * max bytes).  last: the message's final frame (the stripped tail is
 * fed, and the inflater is reset when the client agreed not to take
 * context over).  TOO_BIG: the message inflates past max; BAD: not valid
 * DEFLATE (the connection must fail).
 */
int ws_inflate(struct ws_deflate *d, const unsigned char *in, size_t n, int last,
    unsigned char **out, size_t *out_len, size_t *out_cap, size_t max);

/* Forget a message half inflated (the connection is failing anyway). */
void ws_inflate_abort(struct ws_deflate *d);

/*
 * Compress one whole message; *out points into d's own buffer (valid
 * until the next call), *out_len its length.  0, or -1 when zlib fails
 * (out of memory).
 */
int ws_deflate_message(struct ws_deflate *d, const unsigned char *in, size_t n,
    const unsigned char **out, size_t *out_len);

#endif
