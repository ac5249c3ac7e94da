/*
 * http_parser_int.h — what the two halves of the HTTP parser share: the
 * head parser (http_parser.c) and the chunked body decoder
 * (http_chunked.c).  Never included elsewhere.
 *
 * http_byte_class: one entry per byte.  C_TCHAR: RFC 9110 token
 * character.  C_TARGET: allowed in a request-target (VCHAR / obs-text).
 * C_VALUE: allowed inside a field value (HTAB / SP / VCHAR / obs-text).
 * C_HEX: HEXDIG.  C_METHOD_BAD: what gunicorn refuses in a method
 * (lowercase and '#').  C_QDTEXT: quoted-string text.
 */
#ifndef CUNICORN_HTTP_PARSER_INT_H
#define CUNICORN_HTTP_PARSER_INT_H

#include <stddef.h>
#include <stdint.h>

#include "http_parser.h"

extern const uint8_t http_byte_class[256];

#define C_TCHAR		0x01
#define C_TARGET	0x02
#define C_VALUE		0x04
#define C_HEX		0x08
#define C_METHOD_BAD	0x10
#define C_QDTEXT	0x20

static inline int
is_ows(unsigned char c)
{
	return c == ' ' || c == '\t';
}

static inline unsigned char
ascii_lower(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

/* Case-insensitive equality of s[0..n) with the lowercase literal lit. */
static inline int
equals_lower(const unsigned char *s, size_t n, const char *lit, size_t litlen)
{
	size_t i;

	if (n != litlen)
		return 0;
	for (i = 0; i < n; i++)
		if (ascii_lower(s[i]) != (unsigned char)lit[i])
			return 0;
	return 1;
}
#define EQUALS(s, n, lit)	equals_lower((s), (n), (lit), sizeof(lit) - 1)

static inline int
fail(struct http_error *err, int status, const char *reason)
{
	err->status = status;
	err->reason = reason;
	return HTTP_PARSE_ERROR;
}

/* The reasons double as log text; they follow gunicorn's messages. */
#define E_CR		"Invalid HTTP line ending: bare CR"
#define E_LF		"Invalid HTTP line ending: bare LF"

#endif
