/*
 * ws_deflate.c — permessage-deflate (contract, negotiation rules and the
 * message format: ws_deflate.h).
 *
 * Owns: one connection's zlib streams (set up on first use: a websocket
 * that never compresses in a direction costs nothing for it) and the
 * buffer our compressed messages are built in.
 *
 * Never: stores an inflated byte past the caller's limit (at the limit a
 * one-byte probe on the stack tells "more to come" from "done"), trusts
 * a length from the peer, or calls Python.
 */
#define ZLIB_CONST
#include "ws_deflate.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#include "log.h"

struct ws_deflate {
	struct ws_deflate_params agreed;
	z_stream in, out;
	int in_ready, out_ready;
	int in_ended;			/* this message had a final block */
	unsigned char *buf;		/* our compressed messages */
	size_t cap;
};

/* ---- negotiation ---- */

struct cursor {
	const char *p, *end;
};

static void
skip_ows(struct cursor *c)
{
	while (c->p < c->end && (*c->p == ' ' || *c->p == '\t'))
		c->p++;
}

static int
is_tchar(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	    (ch >= '0' && ch <= '9') || (ch != 0 && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

static size_t
take_token(struct cursor *c, const char **s)
{
	*s = c->p;
	while (c->p < c->end && is_tchar((unsigned char)*c->p))
		c->p++;
	return (size_t)(c->p - *s);
}

/* A token or a quoted-string, unescaped into v (at most cap - 1 bytes;
 * *too_long when it had more).  Its length, or -1 when malformed. */
static long
take_value(struct cursor *c, char *v, size_t cap, int *too_long)
{
	size_t n = 0;

	*too_long = 0;
	if (c->p < c->end && *c->p == '"') {
		for (c->p++; c->p < c->end && *c->p != '"'; c->p++) {
			if (*c->p == '\\' && ++c->p == c->end)
				return -1;
			if (n + 1 < cap)
				v[n++] = *c->p;
			else
				*too_long = 1;
		}
		if (c->p == c->end)
			return -1;
		c->p++;
	} else {
		const char *s;
		size_t len = take_token(c, &s);
		if (len == 0)
			return -1;
		*too_long = len >= cap;
		n = *too_long ? 0 : len;
		memcpy(v, s, n);
	}
	v[n] = '\0';
	return (long)n;
}

/* "8".."15" (no sign, no leading zero), else 0. */
static int
window_bits(const char *v, int too_long)
{
	if (too_long)
		return 0;
	if (v[0] >= '8' && v[0] <= '9' && v[1] == '\0')
		return v[0] - '0';
	if (v[0] == '1' && v[1] >= '0' && v[1] <= '5' && v[2] == '\0')
		return 10 + v[1] - '0';
	return 0;
}

enum {
	SEEN_SNCT = 1, SEEN_CNCT = 2, SEEN_SMWB = 4, SEEN_CMWB = 8,
};

/* One parameter of a permessage-deflate offer: 0 declines the offer. */
static int
offer_param(struct ws_deflate_params *o, unsigned *seen, const char *name, size_t nlen,
    int has_value, const char *v, int too_long)
{
#define IS(s)	(nlen == sizeof(s) - 1 && strncasecmp(name, s, nlen) == 0)
	unsigned bit;
	int bits = 0;

	if (IS("server_no_context_takeover"))
		bit = SEEN_SNCT;
	else if (IS("client_no_context_takeover"))
		bit = SEEN_CNCT;
	else if (IS("server_max_window_bits"))
		bit = SEEN_SMWB;
	else if (IS("client_max_window_bits"))
		bit = SEEN_CMWB;
	else
		return 0;		/* unknown: §7.1 says decline */
#undef IS
	if (*seen & bit)
		return 0;		/* repeated */
	*seen |= bit;
	if (has_value && (bits = window_bits(v, too_long)) == 0 &&
	    (bit == SEEN_SMWB || bit == SEEN_CMWB))
		return 0;		/* not 8..15 */
	switch (bit) {
	case SEEN_SNCT:
		o->server_no_context_takeover = 1;
		return !has_value;
	case SEEN_CNCT:
		o->client_no_context_takeover = 1;
		return !has_value;
	case SEEN_SMWB:
		o->server_max_window_bits = bits;
		/* a value is required; 8 cannot be honoured by zlib */
		return has_value && bits >= 9;
	default:
		return 1;		/* any window of the client's is fine */
	}
}

int
ws_deflate_negotiate(const char *offers, size_t n, struct ws_deflate_params *out,
    char *resp, size_t cap)
{
	struct cursor c = { offers, offers + n };

	for (;;) {
		struct ws_deflate_params o = { 0 };
		unsigned seen = 0;
		const char *name;
		size_t nlen;
		int ok;

		skip_ows(&c);
		if (c.p == c.end)
			return 0;
		if (*c.p == ',') {	/* an empty list element */
			c.p++;
			continue;
		}
		if ((nlen = take_token(&c, &name)) == 0)
			return 0;	/* malformed: decline everything */
		ok = nlen == 18 && strncasecmp(name, "permessage-deflate", 18) == 0;
		skip_ows(&c);
		while (c.p < c.end && *c.p == ';') {
			const char *pname;
			size_t plen;
			char v[8];
			int has_value = 0, too_long = 0;

			c.p++;
			skip_ows(&c);
			if ((plen = take_token(&c, &pname)) == 0)
				return 0;
			skip_ows(&c);
			v[0] = '\0';
			if (c.p < c.end && *c.p == '=') {
				c.p++;
				skip_ows(&c);
				if (take_value(&c, v, sizeof(v), &too_long) < 0)
					return 0;
				has_value = 1;
				skip_ows(&c);
			}
			if (ok)
				ok = offer_param(&o, &seen, pname, plen, has_value, v, too_long);
		}
		if (c.p < c.end && *c.p != ',')
			return 0;
		if (ok) {
			int w = snprintf(resp, cap, "permessage-deflate%s%s",
			    o.server_no_context_takeover ? "; server_no_context_takeover" : "",
			    o.client_no_context_takeover ? "; client_no_context_takeover" : "");
			if (w < 0 || (size_t)w >= cap)
				return 0;
			if (o.server_max_window_bits != 0) {
				int w2 = snprintf(resp + w, cap - (size_t)w,
				    "; server_max_window_bits=%d", o.server_max_window_bits);
				if (w2 < 0 || (size_t)w2 >= cap - (size_t)w)
					return 0;
			}
			*out = o;
			return 1;
		}
		if (c.p < c.end)
			c.p++;
	}
}

/* ---- the connection's streams ---- */

struct ws_deflate *
ws_deflate_new(const struct ws_deflate_params *agreed)
{
	struct ws_deflate *d = xcalloc(1, sizeof(*d));

	d->agreed = *agreed;
	return d;
}

void
ws_deflate_free(struct ws_deflate *d)
{
	if (d == NULL)
		return;
	if (d->in_ready)
		inflateEnd(&d->in);
	if (d->out_ready)
		deflateEnd(&d->out);
	free(d->buf);
	free(d);
}

/* zlib counts input in uInt: hand it the next piece once it used one. */
static void
refill(z_stream *z, const unsigned char **next, size_t *left)
{
	uInt take;

	if (z->avail_in != 0 || *left == 0)
		return;
	take = *left > (1u << 30) ? (1u << 30) : (uInt)*left;
	z->next_in = *next;
	z->avail_in = take;
	*next += take;
	*left -= take;
}

/* Inflate in[0..n) onto out, bounded by max (ws_inflate's contract). */
static int
inflate_some(struct ws_deflate *d, const unsigned char *in, size_t n,
    unsigned char **out, size_t *len, size_t *cap, size_t max)
{
	z_stream *z = &d->in;
	const unsigned char *next = in;
	size_t left = n;

	if (d->in_ended)
		return WS_INFLATE_OK;	/* after a final block: ignored */
	z->avail_in = 0;
	for (;;) {
		unsigned char probe;
		uInt room, before_in;
		int rc, at_limit = 0;

		refill(z, &next, &left);
		if (*len == *cap) {
			if (*cap >= max)
				at_limit = 1;
			else {
				size_t want = *cap < 4096 ? 4096 : *cap * 2;
				if (want > max)
					want = max;
				*out = xrealloc(*out, want);
				*cap = want;
			}
		}
		if (at_limit) {
			z->next_out = &probe;
			room = 1;
		} else {
			z->next_out = *out + *len;
			room = *cap - *len > UINT_MAX ? UINT_MAX : (uInt)(*cap - *len);
		}
		z->avail_out = room;
		before_in = z->avail_in;
		rc = inflate(z, Z_SYNC_FLUSH);
		if (at_limit && z->avail_out == 0)
			return WS_INFLATE_TOO_BIG;	/* a byte past the limit */
		if (!at_limit)
			*len += room - z->avail_out;
		if (rc == Z_STREAM_END) {
			/* a final block (BFINAL; RFC 7692 allows it): the message's data
			 * ends here, the rest of it (the tail) is ignored, and
			 * the next message starts a new stream */
			d->in_ended = 1;
			return inflateReset(z) == Z_OK ? WS_INFLATE_OK : WS_INFLATE_BAD;
		}
		if (rc != Z_OK && rc != Z_BUF_ERROR)
			return WS_INFLATE_BAD;
		if (z->avail_in == 0 && left == 0 && z->avail_out > 0)
			return WS_INFLATE_OK;
		if (z->avail_out > 0 && z->avail_in == before_in)
			return WS_INFLATE_BAD;		/* no progress with room left */
	}
}

int
ws_inflate(struct ws_deflate *d, const unsigned char *in, size_t n, int last,
    unsigned char **out, size_t *out_len, size_t *out_cap, size_t max)
{
	static const unsigned char tail[4] = { 0x00, 0x00, 0xff, 0xff };
	int r;

	if (!d->in_ready) {
		memset(&d->in, 0, sizeof(d->in));
		if (inflateInit2(&d->in, -15) != Z_OK)
			return WS_INFLATE_BAD;
		d->in_ready = 1;
	}
	if (n > 0 && (r = inflate_some(d, in, n, out, out_len, out_cap, max)) != WS_INFLATE_OK)
		return r;
	if (!last)
		return WS_INFLATE_OK;
	r = inflate_some(d, tail, sizeof(tail), out, out_len, out_cap, max);
	d->in_ended = 0;
	if (r != WS_INFLATE_OK)
		return r;
	if (d->agreed.client_no_context_takeover && inflateReset(&d->in) != Z_OK)
		return WS_INFLATE_BAD;
	return WS_INFLATE_OK;
}

void
ws_inflate_abort(struct ws_deflate *d)
{
	if (d->in_ready)
		inflateReset(&d->in);
	d->in_ended = 0;
}

static void
out_reserve(struct ws_deflate *d, size_t want)
{
	if (d->cap >= want)
		return;
	d->buf = xrealloc(d->buf, want);
	d->cap = want;
}

int
ws_deflate_message(struct ws_deflate *d, const unsigned char *in, size_t n,
    const unsigned char **out, size_t *out_len)
{
	z_stream *z = &d->out;
	const unsigned char *next = in;
	size_t left = n, len = 0;

	if (d->cap > (1u << 20)) {	/* keep no big buffer between messages */
		free(d->buf);
		d->buf = NULL;
		d->cap = 0;
	}
	if (n == 0) {
		/* an empty stored block's first byte; the client appends the
		 * rest (RFC 7692 §7.2.3, its examples); our stream is left untouched */
		out_reserve(d, 16);
		d->buf[0] = 0x00;
		*out = d->buf;
		*out_len = 1;
		return 0;
	}
	if (!d->out_ready) {
		int bits = d->agreed.server_max_window_bits ? d->agreed.server_max_window_bits : 15;
		if (bits > WS_DEFLATE_WINDOW_BITS)
			bits = WS_DEFLATE_WINDOW_BITS;
		memset(z, 0, sizeof(*z));
		if (deflateInit2(z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -bits, WS_DEFLATE_MEM_LEVEL,
		    Z_DEFAULT_STRATEGY) != Z_OK)
			return -1;
		d->out_ready = 1;
	}
	out_reserve(d, (n > (1u << 30) ? (size_t)1 << 30 : (size_t)deflateBound(z, (uLong)n)) + 64);
	z->avail_in = 0;
	for (;;) {
		int flush, rc;
		uInt room;

		refill(z, &next, &left);
		flush = left > 0 ? Z_NO_FLUSH : Z_SYNC_FLUSH;
		if (d->cap - len < 64)
			out_reserve(d, d->cap * 2);
		room = d->cap - len > UINT_MAX ? UINT_MAX : (uInt)(d->cap - len);
		z->next_out = d->buf + len;
		z->avail_out = room;
		rc = deflate(z, flush);
		len += room - z->avail_out;
		if (rc != Z_OK && rc != Z_BUF_ERROR)
			return -1;
		if (flush == Z_SYNC_FLUSH && z->avail_in == 0 && z->avail_out > 0)
			break;
	}
	/* the sync flush ended with an empty stored block: drop 00 00 ff ff */
	if (len >= 4 && memcmp(d->buf + len - 4, "\x00\x00\xff\xff", 4) == 0)
		len -= 4;
	if (d->agreed.server_no_context_takeover && deflateReset(z) != Z_OK)
		return -1;
	*out = d->buf;
	*out_len = len;
	return 0;
}
