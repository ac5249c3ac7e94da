/*
 * ws_frame.c — the WebSocket frame codec (contract and format:
 * ws_frame.h).  Pure C: no Python, no allocation, no I/O; every length
 * is checked against the caller's limit before the caller buffers
 * anything for it.
 */
#include "ws_frame.h"

int
ws_frame_parse(const unsigned char *buf, size_t len, int msg_opcode,
    uint64_t msg_len, uint64_t max, int rsv1_ok, struct ws_frame *f, int *code,
    const char **why)
{
	uint64_t n;
	size_t h = 2;

	if (len < 2)
		return WS_FRAME_MORE;
	f->fin = (buf[0] & 0x80) != 0;
	f->rsv1 = (buf[0] & 0x40) != 0;
	f->opcode = buf[0] & 0x0f;
	*code = 1002;
	if (buf[0] & 0x30) {
		*why = "RSV2 or RSV3 set (no extension uses them)";
		return WS_FRAME_BAD;
	}
	if (f->rsv1 && !rsv1_ok) {
		*why = "RSV1 set (no extension was agreed)";
		return WS_FRAME_BAD;
	}
	if (f->rsv1 && f->opcode != 0x1 && f->opcode != 0x2) {
		*why = "RSV1 on a continuation or control frame";
		return WS_FRAME_BAD;
	}
	if (!(buf[1] & 0x80)) {
		*why = "client frame not masked";
		return WS_FRAME_BAD;
	}
	n = buf[1] & 0x7f;
	if (f->opcode >= 0x8) {
		if (f->opcode > 0xa) {
			*why = "unknown opcode";
			return WS_FRAME_BAD;
		}
		if (!f->fin || n > 125) {
			*why = "control frame fragmented or longer than 125 bytes";
			return WS_FRAME_BAD;
		}
	} else if (f->opcode > 0x2) {
		*why = "unknown opcode";
		return WS_FRAME_BAD;
	} else if (f->opcode == 0x0 && msg_opcode == 0) {
		*why = "continuation frame without a message";
		return WS_FRAME_BAD;
	} else if (f->opcode != 0x0 && msg_opcode != 0) {
		*why = "new message inside a fragmented one";
		return WS_FRAME_BAD;
	}
	if (n == 126) {
		if (len < 4)
			return WS_FRAME_MORE;
		n = ((uint64_t)buf[2] << 8) | buf[3];
		h = 4;
	} else if (n == 127) {
		if (len < 10)
			return WS_FRAME_MORE;
		n = 0;
		for (int i = 0; i < 8; i++)
			n = (n << 8) | buf[2 + i];
		h = 10;
		if (n >> 63) {
			*why = "length with the top bit set";
			return WS_FRAME_BAD;
		}
	}
	if (n > max || (f->opcode == 0x0 && msg_len > max - n)) {
		*code = 1009;
		*why = "message too big";
		return WS_FRAME_BAD;
	}
	if (len < h + 4)
		return WS_FRAME_MORE;
	f->len = n;
	f->mask = buf + h;
	f->head_len = h + 4;
	return WS_FRAME_OK;
}

void
ws_unmask(unsigned char *data, uint64_t n, const unsigned char mask[4])
{
	for (uint64_t i = 0; i < n; i++)
		data[i] ^= mask[i & 3];
}

int
ws_close_code(const unsigned char *p, size_t n)
{
	int code;

	if (n == 0)
		return 1005;
	if (n == 1)
		return -1;
	code = (p[0] << 8) | p[1];
	/* RFC 6455 §7.4: 1004-1006 and 1015 are never sent; 1016-2999 are
	 * unassigned; 3000-4999 are for libraries and apps */
	if (code < 1000 || code == 1004 || code == 1005 || code == 1006 ||
	    (code > 1014 && code < 3000) || code > 4999)
		return -1;
	return code;
}

size_t
ws_frame_header(unsigned char *out, int opcode, uint64_t len)
{
	out[0] = (unsigned char)(0x80 | (opcode & 0x0f));
	if (len < 126) {
		out[1] = (unsigned char)len;
		return 2;
	}
	if (len <= 0xffff) {
		out[1] = 126;
		out[2] = (unsigned char)(len >> 8);
		out[3] = (unsigned char)len;
		return 4;
	}
	out[1] = 127;
	for (int i = 0; i < 8; i++)
		out[2 + i] = (unsigned char)(len >> (56 - 8 * i));
	return 10;
}
