/*
 * http_parser.c — strict HTTP/1.0 and 1.1 request-head parser, and the
 * byte classes it shares with the chunked decoder (http_chunked.c)
 * (contract: http_parser.h).
 *
 * Owns nothing: it never allocates, never copies and keeps no state between
 * calls of http_parse_request(); every pointer it returns points into the
 * caller's buffer.  It must never log, never call Python and never accept
 * an ambiguous message: whatever two parsers could frame differently is
 * an error and the caller closes the connection.
 *
 * How the head parser works.  It is re-run from the start of the buffer
 * each time more bytes arrive, in one forward pass over a 256-entry class
 * table.  Every decision (an error or a limit) is taken at a fixed byte
 * position, so a prefix of a request either yields INCOMPLETE or the very
 * same error as the whole request, and INCOMPLETE is only returned while no
 * limit is exceeded yet: the (limit+1)th byte of an over-long line is
 * enough to answer, without waiting for its CRLF.
 *
 * gunicorn compatibility (gunicorn 23-26, http/message.py +
 * workers/base.py handle_error), errors and the status they are
 * answered with:
 *   request line longer than limit_request_line   400 LimitRequestLine
 *   (limit 0 or > 8190 means 8190, gunicorn's MAX_REQUEST_LINE)
 *   method not a token, lowercase or '#', not 3..20 chars   400
 *   version not HTTP/<digit>.<digit>, or major != 1         400
 *   more than limit_request_fields header lines              431
 *   (0 or > 32768 means 32768, gunicorn's MAX_HEADERS)
 *   a header line (incl. CRLF) above limit_request_field_size  431
 *   (0 = no per-line limit; the whole header block is still bounded by
 *    fields * ((field_size or 8190) + 2) + 4 bytes, gunicorn's
 *    max_buffer_headers)                                     431
 *   header name not a token / whitespace before ':'          400
 *   obsolete line folding                                    400
 *   Transfer-Encoding coding other than chunked, gzip, x-gzip, deflate,
 *   compress, x-compress, identity                           501
 *   Transfer-Encoding whose final coding is not chunked,
 *   chunked twice, TE in HTTP/1.0, TE with Content-Length    400
 *   (a TE of "identity" alone is no coding: Content-Length frames)
 *   a second Content-Type (gunicorn 26, RFC 9110 5.3)       400
 *   request-target "*" with a method other than OPTIONS      400
 *   absolute-form whose authority is not RFC 3986's          400
 *   chunk size followed by whitespace but no extension       400
 *   a trailer field that must not be a trailer (list below) 400
 * Stricter than gunicorn, on purpose (RFC 9112 smuggling vectors):
 *   - any duplicate Content-Length is rejected, even identical copies
 *     (gunicorn 23 does the same); the value is 1*DIGIT, <= 2^63-1;
 *   - a bare CR or bare LF anywhere in the head is rejected;
 *   - header values may hold only HTAB, SP, VCHAR and obs-text (no CTL,
 *     no DEL, no NUL); request-targets only VCHAR and obs-text;
 *   - request-line separators are exactly one SP;
 *   - a second Host header is rejected (RFC 9112 3.2);
 *   - a TE without chunked as final coding is 400 (gunicorn would read
 *     an empty body and close; RFC 9112 6.3 says 400);
 *   - a request-target must be origin-form ("/..."), "*" (OPTIONS only),
 *     absolute-form ("scheme://authority[/...]" with an RFC 3986
 *     authority, a non-empty host for http and https), or anything for
 *     CONNECT;
 *   - trailers may not carry any field of RFC 9110 6.5.1's families
 *     (gunicorn 26: six names; the list is above trailer_forbidden[]).
 * keep_alive: "close" in any Connection header wins, then HTTP/1.1+
 * keeps alive, HTTP/1.0 only with "keep-alive" (token lists, any case);
 * a compression coding before chunked turns it off (gunicorn must_close).
 * expect_continue only for HTTP/1.1+, as RFC 9110 10.1.1 asks.
 * Leading empty lines before the request line are skipped (RFC 9112 2.2);
 * more than limit_request_line bytes of them is "Request Line is too
 * large".  HTTP/1.2 .. 1.9 are accepted as gunicorn does (minor version
 * reported as sent, with 1.1 semantics).  Underscores in header names are
 * accepted here; gunicorn's header_map policy belongs to the WSGI layer.
 */
#include "http_parser.h"
#include "http_parser_int.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define GUNICORN_MAX_REQUEST_LINE	8190
#define GUNICORN_MAX_HEADERS		32768
#define GUNICORN_MAX_FIELD_SIZE		8190	/* for the header block bound */
#define METHOD_MIN_LEN			3
#define METHOD_MAX_LEN			20
#define CONTENT_LENGTH_MAX		UINT64_C(0x7fffffffffffffff)

/* The byte classes (what each means: http_parser_int.h), one letter each
 * so that a row of the table fits a line. */
#define T	C_TCHAR
#define U	C_TARGET
#define V	C_VALUE
#define X	C_HEX
#define M	C_METHOD_BAD
#define Q	C_QDTEXT
const uint8_t http_byte_class[256] = {
	0, 0, 0, 0, 0, 0, 0, 0,	/* 0x00 */
	0, V|Q, 0, 0, 0, 0, 0, 0,	/* 0x08 */
	0, 0, 0, 0, 0, 0, 0, 0,	/* 0x10 */
	0, 0, 0, 0, 0, 0, 0, 0,	/* 0x18 */
	V|Q, T|U|V|Q, U|V, T|U|V|M|Q, T|U|V|Q, T|U|V|Q, T|U|V|Q, T|U|V|Q,	/* 0x20 */
	U|V|Q, U|V|Q, T|U|V|Q, T|U|V|Q, U|V|Q, T|U|V|Q, T|U|V|Q, U|V|Q,	/* 0x28 */
	T|U|V|X|Q, T|U|V|X|Q, T|U|V|X|Q, T|U|V|X|Q, T|U|V|X|Q, T|U|V|X|Q, T|U|V|X|Q, T|U|V|X|Q,	/* 0x30 */
	T|U|V|X|Q, T|U|V|X|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q,	/* 0x38 */
	U|V|Q, T|U|V|X|Q, T|U|V|X|Q, T|U|V|X|Q, T|U|V|X|Q, T|U|V|X|Q, T|U|V|X|Q, T|U|V|Q,	/* 0x40 */
	T|U|V|Q, T|U|V|Q, T|U|V|Q, T|U|V|Q, T|U|V|Q, T|U|V|Q, T|U|V|Q, T|U|V|Q,	/* 0x48 */
	T|U|V|Q, T|U|V|Q, T|U|V|Q, T|U|V|Q, T|U|V|Q, T|U|V|Q, T|U|V|Q, T|U|V|Q,	/* 0x50 */
	T|U|V|Q, T|U|V|Q, T|U|V|Q, U|V|Q, U|V, U|V|Q, T|U|V|Q, T|U|V|Q,	/* 0x58 */
	T|U|V|Q, T|U|V|X|M|Q, T|U|V|X|M|Q, T|U|V|X|M|Q, T|U|V|X|M|Q, T|U|V|X|M|Q, T|U|V|X|M|Q, T|U|V|M|Q,	/* 0x60 */
	T|U|V|M|Q, T|U|V|M|Q, T|U|V|M|Q, T|U|V|M|Q, T|U|V|M|Q, T|U|V|M|Q, T|U|V|M|Q, T|U|V|M|Q,	/* 0x68 */
	T|U|V|M|Q, T|U|V|M|Q, T|U|V|M|Q, T|U|V|M|Q, T|U|V|M|Q, T|U|V|M|Q, T|U|V|M|Q, T|U|V|M|Q,	/* 0x70 */
	T|U|V|M|Q, T|U|V|M|Q, T|U|V|M|Q, U|V|Q, T|U|V|Q, U|V|Q, T|U|V|Q, 0,	/* 0x78 */
	U|V|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q,	/* 0x80 */
	U|V|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q,	/* 0x88 */
	U|V|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q,	/* 0x90 */
	U|V|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q,	/* 0x98 */
	U|V|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q,	/* 0xa0 */
	U|V|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q,	/* 0xa8 */
	U|V|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q,	/* 0xb0 */
	U|V|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q,	/* 0xb8 */
	U|V|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q,	/* 0xc0 */
	U|V|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q,	/* 0xc8 */
	U|V|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q,	/* 0xd0 */
	U|V|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q,	/* 0xd8 */
	U|V|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q,	/* 0xe0 */
	U|V|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q,	/* 0xe8 */
	U|V|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q,	/* 0xf0 */
	U|V|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q, U|V|Q,	/* 0xf8 */
};
#undef T
#undef U
#undef V
#undef X
#undef M
#undef Q
static size_t
add_saturated(size_t a, size_t b)
{
	return a > SIZE_MAX - b ? SIZE_MAX : a + b;
}

static size_t
min_size(size_t a, size_t b)
{
	return a < b ? a : b;
}

/* The reasons double as log text; they follow gunicorn's messages. */
#define E_LINE		"Invalid HTTP request line"
#define E_METHOD	"Invalid HTTP method"
#define E_VERSION	"Invalid HTTP Version"
#define E_LINE_LIMIT	"Request Line is too large"
#define E_TARGET	"Invalid HTTP request target"
#define E_NAME		"Invalid HTTP header name"
#define E_HEADER	"Invalid HTTP Header"
#define E_FOLD		"Obsolete line folding is unacceptable"
#define E_FIELDS	"limit request headers fields"
#define E_FIELD_SIZE	"limit request headers fields size"
#define E_BLOCK		"max buffer headers"
#define E_CL		"Invalid HTTP Header: CONTENT-LENGTH"
#define E_TE		"Invalid HTTP Header: TRANSFER-ENCODING"
#define E_TE_CODING	"Unsupported transfer coding"
#define E_HOST		"Invalid HTTP Header: duplicate HOST"
#define E_CONTENT_TYPE	"Invalid HTTP Header: duplicate CONTENT-TYPE"

/* What the framing-relevant headers said, gathered while parsing. */
struct head_facts {
	int content_length_seen;
	uint64_t content_length;
	int te_seen;
	int te_chunked;			/* chunked seen: must be the last */
	int te_codings;			/* codings listed, all TE headers */
	int te_must_close;		/* a compression coding was listed */
	int conn_close;
	int conn_keep_alive;
	int expect_continue;
	int host_seen;
	int content_type_seen;
};

static int
parse_content_length(const unsigned char *v, size_t n, uint64_t *out)
{
	uint64_t value = 0;
	size_t i;

	if (n == 0)
		return -1;
	for (i = 0; i < n; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -1;
		if (value > (CONTENT_LENGTH_MAX - (v[i] - '0')) / 10)
			return -1;
		value = value * 10 + (v[i] - '0');
	}
	*out = value;
	return 0;
}

/*
 * Call fn on each element of a comma-separated list (RFC 9110 5.6.1),
 * OWS trimmed, empty elements skipped.  Stops at the first non-zero return.
 */
typedef int (*list_fn)(struct head_facts *, const unsigned char *, size_t);

static int
each_list_element(const unsigned char *v, size_t n, struct head_facts *f,
    list_fn fn)
{
	size_t i = 0, s, e;
	int rc;

	while (i < n) {
		while (i < n && (is_ows(v[i]) || v[i] == ','))
			i++;
		s = i;
		while (i < n && v[i] != ',')
			i++;
		e = i;
		while (e > s && is_ows(v[e - 1]))
			e--;
		if (e > s && (rc = fn(f, v + s, e - s)) != 0)
			return rc;
	}
	return 0;
}

static int
connection_token(struct head_facts *f, const unsigned char *t, size_t n)
{
	if (EQUALS(t, n, "close"))
		f->conn_close = 1;
	else if (EQUALS(t, n, "keep-alive"))
		f->conn_keep_alive = 1;
	return 0;
}

/* Returns 0, 400 or 501. */
static int
transfer_coding(struct head_facts *f, const unsigned char *t, size_t n)
{
	int chunked = 0;

	if (EQUALS(t, n, "chunked"))
		chunked = 1;
	else if (EQUALS(t, n, "gzip") || EQUALS(t, n, "x-gzip") ||
	    EQUALS(t, n, "deflate") || EQUALS(t, n, "compress") ||
	    EQUALS(t, n, "x-compress"))
		f->te_must_close = 1;
	else if (!EQUALS(t, n, "identity"))
		return 501;
	if (f->te_chunked)
		return 400;	/* chunked twice, or not the final coding */
	f->te_chunked = chunked;
	f->te_codings++;
	return 0;
}

/* Semantics of one complete header line. */
static int
note_header(struct head_facts *f, const struct http_header *h,
    struct http_error *err)
{
	const unsigned char *name = (const unsigned char *)h->name;
	const unsigned char *value = (const unsigned char *)h->value;
	int rc, before;

	switch (h->name_len) {
	case 4:
		if (EQUALS(name, 4, "host")) {
			if (f->host_seen)
				return fail(err, 400, E_HOST);
			f->host_seen = 1;
		}
		break;
	case 6:
		if (EQUALS(name, 6, "expect") &&
		    EQUALS(value, h->value_len, "100-continue"))
			f->expect_continue = 1;
		break;
	case 10:
		if (EQUALS(name, 10, "connection"))
			each_list_element(value, h->value_len, f,
			    connection_token);
		break;
	case 12:
		if (EQUALS(name, 12, "content-type")) {
			if (f->content_type_seen)
				return fail(err, 400, E_CONTENT_TYPE);
			f->content_type_seen = 1;
		}
		break;
	case 14:
		if (EQUALS(name, 14, "content-length")) {
			if (f->content_length_seen ||
			    parse_content_length(value, h->value_len,
			    &f->content_length) == -1)
				return fail(err, 400, E_CL);
			f->content_length_seen = 1;
		}
		break;
	case 17:
		if (EQUALS(name, 17, "transfer-encoding")) {
			f->te_seen = 1;
			before = f->te_codings;
			rc = each_list_element(value, h->value_len, f,
			    transfer_coding);
			if (rc == 501)
				return fail(err, 501, E_TE_CODING);
			/* rc 400, or a TE header listing no coding at all */
			if (rc != 0 || f->te_codings == before)
				return fail(err, 400, E_TE);
		}
		break;
	}
	return 0;
}

/* RFC 3986: unreserved / sub-delims, what a reg-name or userinfo holds
 * besides pct-encoded octets. */
static int
is_authority_char(unsigned char c)
{
	return ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') ||
	    (c >= '0' && c <= '9') || (c != 0 && strchr("-._~!$&'()*+,;=", c));
}

/* s[*i] is '%': a pct-encoded octet "%" HEXDIG HEXDIG; advances *i. */
static int
skip_pct_encoded(const char *s, size_t n, size_t *i)
{
	if (n - *i < 3 || !(http_byte_class[(unsigned char)s[*i + 1]] & C_HEX) ||
	    !(http_byte_class[(unsigned char)s[*i + 2]] & C_HEX))
		return -1;
	*i += 3;
	return 0;
}

/*
 * authority = [ userinfo "@" ] host [ ":" port ]  (RFC 3986 3.2), where
 * host is an IP-literal "[...]" (its content: unreserved / sub-delims /
 * ":", not empty) or a reg-name (IPv4 addresses are reg-names
 * syntactically), and port is *DIGIT.  An http or https URI must have a
 * host (RFC 9110 4.2.1-4.2.2).  Returns 0 if a[0..n) is one.
 */
static int
valid_authority(const char *a, size_t n, int needs_host)
{
	const char *at = memchr(a, '@', n);
	size_t i = 0, host_start;

	if (at != NULL) {
		for (; a + i < at; ) {
			if (a[i] == '%') {
				if (skip_pct_encoded(a, n, &i) == -1)
					return -1;
			} else if (a[i] == ':' || is_authority_char(a[i]))
				i++;
			else
				return -1;
		}
		i++;	/* the '@'; a second one fails as a host byte */
	}
	host_start = i;
	if (i < n && a[i] == '[') {
		for (i++; i < n && a[i] != ']'; i++)
			if (a[i] != ':' && !is_authority_char(a[i]))
				return -1;
		if (i == n || i == host_start + 1)
			return -1;
		i++;
	} else {
		while (i < n && a[i] != ':') {
			if (a[i] == '%') {
				if (skip_pct_encoded(a, n, &i) == -1)
					return -1;
			} else if (is_authority_char(a[i]))
				i++;
			else
				return -1;
		}
		if (needs_host && i == host_start)
			return -1;
	}
	if (i < n && a[i++] != ':')
		return -1;
	for (; i < n; i++)
		if (a[i] < '0' || a[i] > '9')
			return -1;
	return 0;
}

/*
 * Check the request-target and split it into path, query and fragment.
 * origin-form "/p?q#f"; asterisk-form "*", only with OPTIONS (RFC 9112
 * 3.2.4); absolute-form "scheme://authority/p?q#f" with a valid authority
 * (path is the "/p" part, empty if absent); authority-form "host:port"
 * only with CONNECT (empty path).
 */
static int
split_target(struct http_request *req)
{
	const char *t = req->target;
	size_t n = req->target_len, i = 0, path_start, scheme_len;
	int is_connect = req->method_len == 7 &&
	    memcmp(req->method, "CONNECT", 7) == 0;

	if (t[0] == '/') {
		path_start = 0;
	} else if (n == 1 && t[0] == '*') {
		if (req->method_len != 7 || memcmp(req->method, "OPTIONS", 7))
			return -1;
		path_start = 0;
	} else if (is_connect) {
		path_start = i = n;
	} else {
		/* scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) */
		if (!((t[0] | 0x20) >= 'a' && (t[0] | 0x20) <= 'z'))
			return -1;
		for (i = 1; i < n; i++) {
			unsigned char c = (unsigned char)t[i];
			if (!(((c | 0x20) >= 'a' && (c | 0x20) <= 'z') ||
			    (c >= '0' && c <= '9') || c == '+' || c == '-' ||
			    c == '.'))
				break;
		}
		if (n - i < 3 || t[i] != ':' || t[i + 1] != '/' ||
		    t[i + 2] != '/')
			return -1;
		scheme_len = i;
		for (i += 3; i < n; i++)
			if (t[i] == '/' || t[i] == '?' || t[i] == '#')
				break;
		path_start = i;
		if (valid_authority(t + scheme_len + 3,
		    path_start - scheme_len - 3,
		    EQUALS((const unsigned char *)t, scheme_len, "http") ||
		    EQUALS((const unsigned char *)t, scheme_len, "https")) == -1)
			return -1;
	}
	for (i = path_start; i < n && t[i] != '?' && t[i] != '#'; i++)
		;
	req->path = t + path_start;
	req->path_len = i - path_start;
	req->query = t + i;
	req->query_len = 0;
	if (i < n && t[i] == '?') {
		req->query = t + ++i;
		while (i < n && t[i] != '#')
			i++;
		req->query_len = (size_t)(t + i - req->query);
	}
	req->fragment = t + i;
	req->fragment_len = 0;
	if (i < n && t[i] == '#') {
		req->fragment = t + i + 1;
		req->fragment_len = n - i - 1;
	}
	return 0;
}

/*
 * The request line: method SP request-target SP HTTP-version CRLF, parsed
 * from s[*pos].  Content bytes beyond s[line_start + line_max] are over the
 * limit; the CR after the version may sit just beyond it.
 */
static int
parse_request_line(const unsigned char *s, size_t n, size_t *pos,
    size_t line_max, struct http_request *req, struct http_error *err)
{
	static const char version_prefix[] = "HTTP/1.";
	size_t i = *pos, line_start = *pos, lim, tok, k;

	lim = min_size(n, add_saturated(line_start, line_max));

	/* method */
	while (i < lim && (http_byte_class[s[i]] & C_TCHAR)) {
		if ((http_byte_class[s[i]] & C_METHOD_BAD) ||
		    i - line_start >= METHOD_MAX_LEN)
			return fail(err, 400, E_METHOD);
		i++;
	}
	if (i == lim)
		goto out_of_window;
	if (s[i] != ' ')
		return fail(err, 400, (s[i] == '\r' || s[i] == '\n' ||
		    i == line_start) ? E_LINE : E_METHOD);
	if (i - line_start < METHOD_MIN_LEN)
		return fail(err, 400, E_METHOD);
	req->method = (const char *)s + line_start;
	req->method_len = i - line_start;
	i++;

	/* request-target */
	tok = i;
	while (i < lim && (http_byte_class[s[i]] & C_TARGET))
		i++;
	if (i == lim)
		goto out_of_window;
	if (s[i] != ' ' || i == tok)
		return fail(err, 400, E_LINE);
	req->target = (const char *)s + tok;
	req->target_len = i - tok;
	i++;

	/* HTTP-version: "HTTP/1." DIGIT (gunicorn: 1.0 <= version < 2.0) */
	for (k = 0; k < sizeof(version_prefix) - 1; k++, i++) {
		if (i == lim)
			goto out_of_window;
		if (s[i] != (unsigned char)version_prefix[k])
			return fail(err, 400, E_VERSION);
	}
	if (i == lim)
		goto out_of_window;
	if (s[i] < '0' || s[i] > '9')
		return fail(err, 400, E_VERSION);
	req->version_major = 1;
	req->version_minor = s[i] - '0';
	i++;
	if (i == n)
		return HTTP_PARSE_INCOMPLETE;
	if (s[i] != '\r')
		return fail(err, 400, s[i] == '\n' ? E_LF : E_VERSION);
	if (++i == n)
		return HTTP_PARSE_INCOMPLETE;
	if (s[i] != '\n')
		return fail(err, 400, E_CR);
	*pos = i + 1;
	if (split_target(req) == -1)
		return fail(err, 400, E_TARGET);
	return HTTP_PARSE_OK;

out_of_window:
	if (i == n)
		return HTTP_PARSE_INCOMPLETE;
	return fail(err, 400, E_LINE_LIMIT);
}

int
http_parse_request(const char *buf, size_t len,
    const struct http_limits *limits, struct http_request *req,
    struct http_header *headers, size_t max_headers, struct http_error *err)
{
	const unsigned char *s = (const unsigned char *)buf;
	struct head_facts facts;
	struct http_header *h;
	size_t i = 0, line_max, fields_max, field_max, block_end, line_start;
	size_t lim, field_lim, name_end, value_start, value_end, nheaders = 0;
	int rc;

	line_max = limits->request_line;
	if (line_max == 0 || line_max > GUNICORN_MAX_REQUEST_LINE)
		line_max = GUNICORN_MAX_REQUEST_LINE;
	fields_max = limits->fields;
	if (fields_max == 0 || fields_max > GUNICORN_MAX_HEADERS)
		fields_max = GUNICORN_MAX_HEADERS;
	field_max = limits->field_size;

	/* RFC 9112 2.2: ignore empty lines before the request line. */
	while (i < len && (s[i] == '\r' || s[i] == '\n')) {
		if (s[i] == '\n')
			return fail(err, 400, E_LF);
		if (i + 1 == len)
			return HTTP_PARSE_INCOMPLETE;
		if (s[i + 1] != '\n')
			return fail(err, 400, E_CR);
		i += 2;
		if (i > line_max)
			return fail(err, 400, E_LINE_LIMIT);
	}
	if (i == len)
		return HTTP_PARSE_INCOMPLETE;

	memset(req, 0, sizeof(*req));
	if ((rc = parse_request_line(s, len, &i, line_max, req, err)) !=
	    HTTP_PARSE_OK)
		return rc;

	/* gunicorn's max_buffer_headers bounds the whole header block. */
	block_end = add_saturated(i, add_saturated(4, min_size(fields_max,
	    GUNICORN_MAX_HEADERS) * (min_size(field_max ? field_max :
	    GUNICORN_MAX_FIELD_SIZE, SIZE_MAX / (2 * GUNICORN_MAX_HEADERS)) +
	    2)));
	memset(&facts, 0, sizeof(facts));
	for (;;) {
		if (i == len)
			return HTTP_PARSE_INCOMPLETE;
		if (s[i] == '\r') {
			if (++i == len)
				return HTTP_PARSE_INCOMPLETE;
			if (s[i] != '\n')
				return fail(err, 400, E_CR);
			i++;
			break;
		}
		if (i >= block_end)
			return fail(err, 431, E_BLOCK);
		if (s[i] == '\n')
			return fail(err, 400, E_LF);
		if (is_ows(s[i]))
			return fail(err, 400, nheaders ? E_FOLD : E_HEADER);
		if (nheaders >= fields_max || nheaders >= max_headers)
			return fail(err, 431, E_FIELDS);

		/* field-name ":" OWS field-value OWS CRLF, within limits */
		line_start = i;
		field_lim = field_max == 0 ? SIZE_MAX :
		    add_saturated(line_start, field_max > 2 ? field_max - 2 : 0);
		lim = min_size(len, min_size(block_end, field_lim));
		while (i < lim && (http_byte_class[s[i]] & C_TCHAR))
			i++;
		if (i == lim)
			goto out_of_window;
		if (s[i] != ':' || i == line_start)
			return fail(err, 400, E_NAME);
		name_end = i++;
		while (i < lim && is_ows(s[i]))
			i++;
		value_start = i;
		while (i < lim && (http_byte_class[s[i]] & C_VALUE))
			i++;
		for (value_end = i; value_end > value_start &&
		    is_ows(s[value_end - 1]); value_end--)
			;
		if (i == len)
			return HTTP_PARSE_INCOMPLETE;
		if (s[i] != '\r') {
			if (i == lim)
				goto out_of_window;
			return fail(err, 400, s[i] == '\n' ? E_LF : E_HEADER);
		}
		if (++i == len)
			return HTTP_PARSE_INCOMPLETE;
		if (s[i] != '\n')
			return fail(err, 400, E_CR);
		i++;

		h = &headers[nheaders++];
		h->name = buf + line_start;
		h->name_len = name_end - line_start;
		h->value = buf + value_start;
		h->value_len = value_end - value_start;
		if (note_header(&facts, h, err) != 0)
			return HTTP_PARSE_ERROR;
	}

	req->headers = headers;
	req->nheaders = nheaders;
	req->head_len = i;
	/* "identity" alone is no transfer coding at all (gunicorn): the
	 * Content-Length, if any, frames the body, in 1.0 and 1.1 alike. */
	if (facts.te_seen && !facts.te_chunked && !facts.te_must_close)
		facts.te_seen = 0;
	if (facts.te_seen) {
		if (!facts.te_chunked || req->version_minor == 0)
			return fail(err, 400, E_TE);
		if (facts.content_length_seen)
			return fail(err, 400, E_CL);
		req->body = HTTP_BODY_CHUNKED;
	} else if (facts.content_length_seen && facts.content_length > 0) {
		req->body = HTTP_BODY_LENGTH;
		req->content_length = facts.content_length;
	} else
		req->body = HTTP_BODY_NONE;
	if (facts.conn_close || facts.te_must_close)
		req->keep_alive = 0;
	else
		req->keep_alive = req->version_minor >= 1 ||
		    facts.conn_keep_alive;
	req->expect_continue = facts.expect_continue &&
	    req->version_minor >= 1;
	return HTTP_PARSE_OK;

out_of_window:
	if (i == len)
		return HTTP_PARSE_INCOMPLETE;
	return fail(err, 431, i >= block_end ? E_BLOCK : E_FIELD_SIZE);
}

const struct http_header *
http_header_find(const struct http_request *req, const char *name)
{
	size_t i, n = strlen(name), k;

	for (i = 0; i < req->nheaders; i++) {
		const struct http_header *h = &req->headers[i];

		if (h->name_len != n)
			continue;
		for (k = 0; k < n; k++)
			if (ascii_lower((unsigned char)h->name[k]) !=
			    ascii_lower((unsigned char)name[k]))
				break;
		if (k == n)
			return h;
	}
	return NULL;
}

const char *
http_reason_phrase(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 101: return "Switching Protocols";
	case 102: return "Processing";
	case 103: return "Early Hints";
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 203: return "Non-Authoritative Information";
	case 204: return "No Content";
	case 205: return "Reset Content";
	case 206: return "Partial Content";
	case 207: return "Multi-Status";
	case 208: return "Already Reported";
	case 226: return "IM Used";
	case 300: return "Multiple Choices";
	case 301: return "Moved Permanently";
	case 302: return "Found";
	case 303: return "See Other";
	case 304: return "Not Modified";
	case 305: return "Use Proxy";
	case 307: return "Temporary Redirect";
	case 308: return "Permanent Redirect";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 402: return "Payment Required";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 406: return "Not Acceptable";
	case 407: return "Proxy Authentication Required";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 410: return "Gone";
	case 411: return "Length Required";
	case 412: return "Precondition Failed";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 415: return "Unsupported Media Type";
	case 416: return "Range Not Satisfiable";
	case 417: return "Expectation Failed";
	case 418: return "I'm a Teapot";
	case 421: return "Misdirected Request";
	case 422: return "Unprocessable Content";
	case 423: return "Locked";
	case 424: return "Failed Dependency";
	case 425: return "Too Early";
	case 426: return "Upgrade Required";
	case 428: return "Precondition Required";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 451: return "Unavailable For Legal Reasons";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	case 506: return "Variant Also Negotiates";
	case 507: return "Insufficient Storage";
	case 508: return "Loop Detected";
	case 510: return "Not Extended";
	case 511: return "Network Authentication Required";
	}
	return "Unknown";
}
