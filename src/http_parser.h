/*
 * http_parser.h — strict HTTP/1.0 and 1.1 request parsing, no Python.
 *
 * The parser never allocates and never copies: a parsed request points
 * into the caller's buffer.  It is strict where leniency is a
 * request-smuggling vector (RFC 9112): Content-Length together with
 * Transfer-Encoding, differing duplicate Content-Length, bad chunk sizes,
 * bare CR or LF, whitespace before a colon, obsolete line folding,
 * invalid method / version tokens are all errors (400) and the caller
 * closes the connection.  Limits mirror gunicorn's limit_request_* settings
 * and are answered with gunicorn's status codes.
 */
#ifndef CUNICORN_HTTP_PARSER_H
#define CUNICORN_HTTP_PARSER_H

#include <stddef.h>
#include <stdint.h>

enum http_parse_result {
	HTTP_PARSE_OK = 0,
	HTTP_PARSE_INCOMPLETE = 1,	/* need more bytes */
	HTTP_PARSE_ERROR = -1,		/* see struct http_error */
};

struct http_error {
	int status;		/* HTTP status to answer with: 400, 431, 501, ... */
	const char *reason;	/* short text for the response body and the log */
};

struct http_limits {
	size_t request_line;	/* limit_request_line; 0 = gunicorn's max (8190) */
	size_t fields;		/* limit_request_fields */
	size_t field_size;	/* limit_request_field_size; 0 = unlimited */
};

struct http_header {
	const char *name;	/* as sent (case preserved) */
	size_t name_len;
	const char *value;	/* leading/trailing OWS stripped */
	size_t value_len;
};

enum http_body_kind {
	HTTP_BODY_NONE,		/* no body: Content-Length absent or 0 */
	HTTP_BODY_LENGTH,	/* content_length bytes follow */
	HTTP_BODY_CHUNKED,	/* Transfer-Encoding: chunked (final coding) */
};

struct http_request {
	const char *method;	size_t method_len;
	const char *target;	size_t target_len;	/* raw request-target */
	const char *path;	size_t path_len;	/* target up to '?' or '#', raw; for
							   absolute-form, the path part */
	const char *query;	size_t query_len;	/* after '?', up to '#'; may be 0 */
	const char *fragment;	size_t fragment_len;
	int version_major;
	int version_minor;

	struct http_header *headers;	/* caller's array */
	size_t nheaders;

	enum http_body_kind body;
	uint64_t content_length;	/* HTTP_BODY_LENGTH */
	int keep_alive;			/* per version + Connection header */
	int expect_continue;		/* "Expect: 100-continue" */
	size_t head_len;		/* bytes of request line + headers + CRLF */
};

/*
 * Parse the request line and header block at buf[0..len).
 * headers/max_headers: caller's storage (max_headers >= limits->fields+1
 * lets the parser report "too many fields" itself).
 * Returns OK (req filled, req->head_len bytes consumed), INCOMPLETE (no
 * complete head yet and no limit exceeded), or ERROR (*err filled).
 * Leading empty lines before the request line are skipped (RFC 9112 2.2).
 */
int http_parse_request(const char *buf, size_t len,
    const struct http_limits *limits, struct http_request *req,
    struct http_header *headers, size_t max_headers, struct http_error *err);

/* Chunked body decoding, incrementally, one piece at a time. */
#define HTTP_TRAILER_NAME_MAX	20	/* longest name a trailer may not carry */
struct http_chunked {
	int state;			/* private */
	uint64_t remaining;		/* private: bytes left in current chunk */
	size_t trailer_bytes;		/* private: size of trailer block so far */
	size_t trailer_name_len;	/* private: current trailer's name so far */
	char trailer_name[HTTP_TRAILER_NAME_MAX];	/* private: its start */
	int done;			/* set once the last chunk and trailers are read */
};

void http_chunked_init(struct http_chunked *c);
/*
 * Consume bytes from buf[0..len).  On OK, *consumed bytes were used and
 * *data, *data_len is a slice of body (possibly empty: framing only); call
 * again with the rest.  c->done is set after the terminating chunk and
 * trailer section.  INCOMPLETE: *consumed bytes used, need more input.
 * ERROR: bad chunk size / framing, or a trailer field that must not be
 * a trailer (the list is in http_parser.c), *err filled.  Trailers are
 * parsed and validated but not returned.
 */
int http_chunked_next(struct http_chunked *c, const char *buf, size_t len,
    size_t *consumed, const char **data, size_t *data_len,
    struct http_error *err);

/* Case-insensitive header lookup helper: first header named name. */
const struct http_header *http_header_find(const struct http_request *req,
    const char *name);

/* Standard reason phrase for a status code ("OK", "Not Found", ...). */
const char *http_reason_phrase(int status);

#endif
