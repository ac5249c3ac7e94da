/*
 * ws_frame.h — the WebSocket frame codec (RFC 6455 §5), no Python, no
 * allocation: parse a client frame's header, unmask, check a close
 * payload, write a server frame's header.  asgi_ws.c uses it; the
 * fuzz target tests/fuzz/fuzz_ws_frame.c drives it.
 *
 * A client frame (RFC 6455 §5.2):
 *   byte 0   FIN (0x80), RSV1-3 (0x70, must be 0, except RSV1 on the
 *            first frame of a compressed message once permessage-deflate
 *            is agreed, RFC 7692 §6), opcode (0x0f): 0 continuation,
 *            1 text, 2 binary,
 *            8 close, 9 ping, 10 pong; the rest are reserved
 *   byte 1   MASK (0x80, must be 1 from a client), length 0-125, or 126
 *            (then 2 bytes, big-endian), or 127 (then 8 bytes, the top
 *            bit 0)
 *   then     the 4-byte masking key, then the payload
 * Control frames (8-10) are never fragmented and carry at most 125 bytes.
 */
#ifndef CUNICORN_WS_FRAME_H
#define CUNICORN_WS_FRAME_H

#include <stddef.h>
#include <stdint.h>

struct ws_frame {
	int fin;
	int rsv1;			/* a compressed message starts here */
	int opcode;
	uint64_t len;			/* payload bytes */
	size_t head_len;		/* header and masking key: 6 to 14 */
	const unsigned char *mask;	/* the 4-byte key, inside the buffer */
};

enum { WS_FRAME_OK, WS_FRAME_MORE, WS_FRAME_BAD };

/*
 * The header at buf[0..len).  msg_opcode: the opcode of the fragmented
 * message in progress (0: none); msg_len: its bytes so far; max: the
 * largest message accepted; rsv1_ok: permessage-deflate is agreed (RSV1
 * is then allowed on a text or binary frame, never on a continuation or
 * control frame).  OK: *f is filled and valid (the payload may
 * still be incomplete: the caller needs head_len + len bytes); MORE: the
 * header is incomplete; BAD: *code (1002 protocol error, 1009 too big)
 * and *why say why.  Never reads past buf[len).
 */
int ws_frame_parse(const unsigned char *buf, size_t len, int msg_opcode,
    uint64_t msg_len, uint64_t max, int rsv1_ok, struct ws_frame *f, int *code,
    const char **why);

/* XOR n bytes with the masking key, in place. */
void ws_unmask(unsigned char *data, uint64_t n, const unsigned char mask[4]);

/* A close frame's (unmasked) payload: its status code, 1005 when
 * empty, or -1 when malformed (one byte, or a code no endpoint may send). */
int ws_close_code(const unsigned char *p, size_t n);

/* A server frame's header (FIN set, no mask) into out (10 bytes room);
 * returns its length. */
size_t ws_frame_header(unsigned char *out, int opcode, uint64_t len);

#endif
