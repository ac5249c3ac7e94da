/*
 * http_chunked.c — the incremental chunked body decoder (contract:
 * http_parser.h); the head parser is http_parser.c.
 *
 * Owns nothing but the caller's struct http_chunked: it never allocates
 * and never copies chunk data (it is handed back as slices of the
 * caller's buffer).  It must never log, never call Python and never
 * accept an ambiguous message.
 *
 * Chunked decoding (RFC 9112 7.1): chunk-size is 1*HEXDIG (leading zeros
 * allowed, overflow of 64 bits rejected), optionally followed by chunk
 * extensions that must follow the grammar (BWS ";" token [= token /
 * quoted-string]; BWS after the size only before a ';', as gunicorn);
 * the whole size line, CRLF included, is bounded to CHUNK_LINE_MAX bytes.
 * Chunk data must be followed by exactly CRLF.  Trailer fields are
 * validated like header fields (token name, no whitespace before ':', no
 * folding, no CTL) and the trailer section is bounded to TRAILER_MAX
 * bytes (431 beyond, like gunicorn's header limits); they are not returned.
 */
#include "http_parser.h"
#include "http_parser_int.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define CHUNK_LINE_MAX			4096	/* chunk-size line incl. extensions */
#define TRAILER_MAX			16384	/* whole trailer section */

/*
 * Chunked decoding.  One state per grammar position; framing bytes are
 * consumed one at a time, chunk data is handed back as one slice.
 */
enum chunked_state {
	CH_SIZE_FIRST = 0,	/* first HEXDIG of chunk-size */
	CH_SIZE,		/* more HEXDIG, BWS, ';' or CR */
	CH_SIZE_BWS,		/* BWS after chunk-size */
	CH_EXT_PRE_NAME,	/* after ';': BWS then ext name */
	CH_EXT_NAME,
	CH_EXT_POST_NAME,	/* BWS after name: '=', ';' or CR */
	CH_EXT_PRE_VALUE,	/* after '=': BWS then token or quoted-string */
	CH_EXT_VALUE,		/* token value */
	CH_EXT_QUOTED,		/* inside quoted-string */
	CH_EXT_QUOTED_PAIR,	/* after backslash */
	CH_EXT_POST_VALUE,	/* BWS after value: ';' or CR */
	CH_SIZE_LF,		/* LF ending the size line */
	CH_DATA,
	CH_DATA_CR,
	CH_DATA_LF,
	CH_TRAILER_START,	/* a trailer field or the final CRLF */
	CH_TRAILER_NAME,
	CH_TRAILER_VALUE,
	CH_TRAILER_LF,
	CH_END_LF,
	CH_DONE,
};

#define E_CHUNK_SIZE	"Invalid chunk size"
#define E_CHUNK_EXT	"Invalid chunk extension"
#define E_CHUNK_LINE	"Chunk size line is too large"
#define E_CHUNK_TERM	"Invalid chunk terminator is not '\\r\\n'"
#define E_TRAILER	"Invalid HTTP trailer"
#define E_TRAILER_SIZE	"limit request trailers size"
#define E_TRAILER_NAME	"Invalid HTTP trailer: field not allowed in trailers"

/*
 * Fields a trailer section must not carry (RFC 9110 6.5.1: whatever has to
 * be known before the content is processed).  gunicorn 26 refuses Host,
 * Content-Length, Transfer-Encoding, Trailer, Authorization and TE; we
 * refuse the whole of 6.5.1's families as they apply to a request:
 *   framing:            Content-Length, Transfer-Encoding, Trailer, TE,
 *                       Connection, Keep-Alive, Upgrade, Proxy-Connection
 *   routing:            Host
 *   request modifiers:  controls (Cache-Control, Expect, Max-Forwards,
 *                       Pragma, Range) and conditionals (If-Match,
 *                       If-None-Match, If-Modified-Since,
 *                       If-Unmodified-Since, If-Range)
 *   authentication:     Authorization, Proxy-Authorization, Cookie
 *   content processing: Content-Encoding, Content-Type, Content-Range
 * (Response control data — Age, Expires, Location, Vary, ... — describes
 * responses and is left alone.)  Each is at most HTTP_TRAILER_NAME_MAX
 * bytes; a longer name is never one of them.
 */
static const char *const trailer_forbidden[] = {
	"content-length", "transfer-encoding", "trailer", "te",
	"connection", "keep-alive", "upgrade", "proxy-connection",
	"host",
	"cache-control", "expect", "max-forwards", "pragma", "range",
	"if-match", "if-none-match", "if-modified-since",
	"if-unmodified-since", "if-range",
	"authorization", "proxy-authorization", "cookie",
	"content-encoding", "content-type", "content-range",
};

static int
trailer_name_forbidden(const struct http_chunked *c)
{
	size_t k;

	if (c->trailer_name_len > HTTP_TRAILER_NAME_MAX)
		return 0;
	for (k = 0; k < sizeof(trailer_forbidden) /
	    sizeof(trailer_forbidden[0]); k++)
		if (equals_lower((const unsigned char *)c->trailer_name,
		    c->trailer_name_len, trailer_forbidden[k],
		    strlen(trailer_forbidden[k])))
			return 1;
	return 0;
}

/* Remember a trailer name's byte; past the buffer only the length grows. */
static void
trailer_name_add(struct http_chunked *c, unsigned char ch)
{
	if (c->trailer_name_len < HTTP_TRAILER_NAME_MAX)
		c->trailer_name[c->trailer_name_len] = (char)ch;
	if (c->trailer_name_len <= HTTP_TRAILER_NAME_MAX)
		c->trailer_name_len++;
}

void
http_chunked_init(struct http_chunked *c)
{
	memset(c, 0, sizeof(*c));
	c->state = CH_SIZE_FIRST;
}

/* Next state of the size line after a byte that ends a token or value. */
static int
ext_separator(unsigned char ch)
{
	if (ch == ';')
		return CH_EXT_PRE_NAME;
	if (ch == '\r')
		return CH_SIZE_LF;
	return -1;
}

int
http_chunked_next(struct http_chunked *c, const char *buf, size_t len,
    size_t *consumed, const char **data, size_t *data_len,
    struct http_error *err)
{
	const unsigned char *s = (const unsigned char *)buf;
	size_t i = 0, take;
	unsigned char ch;
	int next, cls;

	*data = buf;
	*data_len = 0;
	*consumed = 0;
	if (c->state == CH_DONE)
		return HTTP_PARSE_OK;
	while (i < len) {
		if (c->state == CH_DATA) {
			take = c->remaining < len - i ?
			    (size_t)c->remaining : len - i;
			*data = buf + i;
			*data_len = take;
			c->remaining -= take;
			if (c->remaining == 0)
				c->state = CH_DATA_CR;
			*consumed = i + take;
			return HTTP_PARSE_OK;
		}
		ch = s[i++];
		cls = http_byte_class[ch];
		/* size lines and trailers are bounded; trailer_bytes counts
		 * the current size line, then the trailer section */
		if (c->state < CH_DATA && ++c->trailer_bytes > CHUNK_LINE_MAX) {
			*consumed = i;
			return fail(err, 400, E_CHUNK_LINE);
		}
		if (c->state >= CH_TRAILER_START &&
		    ++c->trailer_bytes > TRAILER_MAX) {
			*consumed = i;
			return fail(err, 431, E_TRAILER_SIZE);
		}
		next = -1;
		switch (c->state) {
		case CH_SIZE_FIRST:
		case CH_SIZE:
			if (cls & C_HEX) {
				if (c->remaining > (UINT64_MAX >> 4)) {
					*consumed = i;	/* overflow */
					return fail(err, 400, E_CHUNK_SIZE);
				}
				c->remaining = (c->remaining << 4) |
				    (uint64_t)(ch <= '9' ? ch - '0' :
				    (ch | 0x20) - 'a' + 10);
				next = CH_SIZE;
			} else if (c->state == CH_SIZE) {
				if (is_ows(ch))
					next = CH_SIZE_BWS;
				else
					next = ext_separator(ch);
			}
			if (next == -1) {
				*consumed = i;
				return fail(err, 400, E_CHUNK_SIZE);
			}
			break;
		case CH_SIZE_BWS:
			/* gunicorn: whitespace after the size only before an
			 * extension ("5 ;a" but never "0 \r\n") */
			if (is_ows(ch))
				next = c->state;
			else if (ch == ';')
				next = CH_EXT_PRE_NAME;
			else {
				*consumed = i;
				return fail(err, 400, E_CHUNK_SIZE);
			}
			break;
		case CH_EXT_POST_NAME:
		case CH_EXT_POST_VALUE:
			if (is_ows(ch))
				next = c->state;
			else if (ch == '=' && c->state == CH_EXT_POST_NAME)
				next = CH_EXT_PRE_VALUE;
			else
				next = ext_separator(ch);
			break;
		case CH_EXT_PRE_NAME:
			if (is_ows(ch))
				next = c->state;
			else if (cls & C_TCHAR)
				next = CH_EXT_NAME;
			break;
		case CH_EXT_NAME:
			if (cls & C_TCHAR)
				next = c->state;
			else if (is_ows(ch))
				next = CH_EXT_POST_NAME;
			else if (ch == '=')
				next = CH_EXT_PRE_VALUE;
			else
				next = ext_separator(ch);
			break;
		case CH_EXT_PRE_VALUE:
			if (is_ows(ch))
				next = c->state;
			else if (ch == '"')
				next = CH_EXT_QUOTED;
			else if (cls & C_TCHAR)
				next = CH_EXT_VALUE;
			break;
		case CH_EXT_VALUE:
			if (cls & C_TCHAR)
				next = c->state;
			else if (is_ows(ch))
				next = CH_EXT_POST_VALUE;
			else
				next = ext_separator(ch);
			break;
		case CH_EXT_QUOTED:
			if (ch == '"')
				next = CH_EXT_POST_VALUE;
			else if (ch == '\\')
				next = CH_EXT_QUOTED_PAIR;
			else if (cls & C_QDTEXT)
				next = c->state;
			break;
		case CH_EXT_QUOTED_PAIR:
			if (cls & C_VALUE)
				next = CH_EXT_QUOTED;
			break;
		case CH_SIZE_LF:
			if (ch != '\n') {
				*consumed = i;
				return fail(err, 400, E_CR);
			}
			c->trailer_bytes = 0;
			next = c->remaining == 0 ? CH_TRAILER_START : CH_DATA;
			break;
		case CH_DATA_CR:
		case CH_DATA_LF:
			if (ch != (c->state == CH_DATA_CR ? '\r' : '\n')) {
				*consumed = i;
				return fail(err, 400, E_CHUNK_TERM);
			}
			next = c->state == CH_DATA_CR ? CH_DATA_LF :
			    CH_SIZE_FIRST;
			break;
		case CH_TRAILER_START:
			c->trailer_name_len = 0;
			if (ch == '\r')
				next = CH_END_LF;
			else if (cls & C_TCHAR) {
				trailer_name_add(c, ch);
				next = CH_TRAILER_NAME;
			}
			break;
		case CH_TRAILER_NAME:
			if (cls & C_TCHAR) {
				trailer_name_add(c, ch);
				next = c->state;
			} else if (ch == ':') {
				if (trailer_name_forbidden(c)) {
					*consumed = i;
					return fail(err, 400, E_TRAILER_NAME);
				}
				next = CH_TRAILER_VALUE;
			}
			break;
		case CH_TRAILER_VALUE:
			if (cls & C_VALUE)
				next = c->state;
			else if (ch == '\r')
				next = CH_TRAILER_LF;
			break;
		case CH_TRAILER_LF:
		case CH_END_LF:
			if (ch != '\n') {
				*consumed = i;
				return fail(err, 400, E_CR);
			}
			next = c->state == CH_END_LF ? CH_DONE :
			    CH_TRAILER_START;
			break;
		}
		if (next == -1) {
			*consumed = i;
			return fail(err, 400, c->state >= CH_TRAILER_START ?
			    E_TRAILER : E_CHUNK_EXT);
		}
		c->state = next;
		if (next == CH_DONE) {
			c->done = 1;
			*data = buf + i;
			*consumed = i;
			return HTTP_PARSE_OK;
		}
	}
	*data = buf + i;
	*consumed = i;
	return HTTP_PARSE_INCOMPLETE;
}
