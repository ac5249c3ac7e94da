/*
 * test_http_parser.c — unit tests for src/http_parser.c.
 *
 * A table of valid and malformed request heads (the smuggling vectors of
 * RFC 9112 each as a row), every row re-parsed at every split point from
 * an exact-size heap copy (so ASan sees any over-read), limit boundaries
 * built at run time, the chunked decoder fed whole, split in two at every
 * byte and one byte at a time, and a small benchmark.  Owns nothing but
 * its own test data; prints "N passed, M failed" and exits non-zero on any
 * failure.
 */
#include "http_parser.h"
#include "check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* gunicorn's defaults */
static const struct http_limits default_limits = { 4094, 100, 8190 };

#define OK	HTTP_PARSE_OK
#define INC	HTTP_PARSE_INCOMPLETE
#define ERR	HTTP_PARSE_ERROR
#define RAW(s)	.raw = (s), .len = sizeof(s) - 1

struct row {
	const char *name;
	const char *raw;
	size_t len;
	int has_limits;			/* else default_limits */
	struct http_limits limits;
	size_t max_headers;		/* 0: 64 */
	int result;
	int status;			/* ERROR rows */
	/* OK rows */
	const char *method, *path, *query, *fragment;
	int minor;
	enum http_body_kind body;
	uint64_t content_length;
	int keep_alive;
	int expect;
	int nheaders;			/* -1: do not check */
	size_t head_len;		/* 0: whole input */
};

#define GET11(path_) "GET " path_ " HTTP/1.1\r\nHost: example.com\r\n\r\n"
#define POST11(hdrs) "POST /submit HTTP/1.1\r\nHost: h\r\n" hdrs "\r\n"

static const struct row rows[] = {
	/* ---- valid requests ---- */
	{ "simple GET 1.1", RAW(GET11("/")), .result = OK, .method = "GET",
	  .path = "/", .minor = 1, .keep_alive = 1, .nheaders = 1 },
	{ "path query fragment", RAW(GET11("/a/b%20c?x=1&y=2#frag")),
	  .result = OK, .method = "GET", .path = "/a/b%20c",
	  .query = "x=1&y=2", .fragment = "frag", .minor = 1,
	  .keep_alive = 1, .nheaders = 1 },
	{ "empty query", RAW(GET11("/p?")), .result = OK, .method = "GET",
	  .path = "/p", .query = "", .minor = 1, .keep_alive = 1,
	  .nheaders = 1 },
	{ "fragment without query", RAW(GET11("/p#f?x")), .result = OK,
	  .method = "GET", .path = "/p", .fragment = "f?x", .minor = 1,
	  .keep_alive = 1, .nheaders = 1 },
	{ "double slash path", RAW(GET11("//x//y")), .result = OK,
	  .method = "GET", .path = "//x//y", .minor = 1, .keep_alive = 1,
	  .nheaders = 1 },
	{ "1.0 default close", RAW("GET / HTTP/1.0\r\n\r\n"), .result = OK,
	  .method = "GET", .path = "/", .minor = 0, .keep_alive = 0,
	  .nheaders = 0 },
	{ "1.0 keep-alive", RAW("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"),
	  .result = OK, .method = "GET", .path = "/", .minor = 0,
	  .keep_alive = 1, .nheaders = 1 },
	{ "1.0 keep-alive in list", RAW("GET / HTTP/1.0\r\nConnection: foo, keep-alive\r\n\r\n"),
	  .result = OK, .method = "GET", .path = "/", .minor = 0,
	  .keep_alive = 1, .nheaders = 1 },
	{ "1.1 close", RAW("GET / HTTP/1.1\r\nConnection: close\r\n\r\n"),
	  .result = OK, .method = "GET", .path = "/", .minor = 1,
	  .keep_alive = 0, .nheaders = 1 },
	{ "1.1 close in list, any case",
	  RAW("GET / HTTP/1.1\r\nConnection: Upgrade ,CLOSE\r\n\r\n"),
	  .result = OK, .method = "GET", .path = "/", .minor = 1,
	  .keep_alive = 0, .nheaders = 1 },
	{ "1.1 close in second Connection header",
	  RAW("GET / HTTP/1.1\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n"),
	  .result = OK, .method = "GET", .path = "/", .minor = 1,
	  .keep_alive = 0, .nheaders = 2 },
	{ "POST content-length with body after head",
	  RAW(POST11("Content-Length: 5\r\n") "hello"), .result = OK,
	  .method = "POST", .path = "/submit", .minor = 1,
	  .body = HTTP_BODY_LENGTH, .content_length = 5, .keep_alive = 1,
	  .nheaders = 2, .head_len = sizeof(POST11("Content-Length: 5\r\n")) - 1 },
	{ "content-length 0", RAW(POST11("Content-Length: 0\r\n")),
	  .result = OK, .method = "POST", .path = "/submit", .minor = 1,
	  .body = HTTP_BODY_NONE, .keep_alive = 1, .nheaders = 2 },
	{ "content-length leading zeros", RAW(POST11("Content-Length: 007\r\n")),
	  .result = OK, .method = "POST", .path = "/submit", .minor = 1,
	  .body = HTTP_BODY_LENGTH, .content_length = 7, .keep_alive = 1,
	  .nheaders = 2 },
	{ "content-length max", RAW(POST11("Content-Length: 9223372036854775807\r\n")),
	  .result = OK, .method = "POST", .path = "/submit", .minor = 1,
	  .body = HTTP_BODY_LENGTH, .content_length = 9223372036854775807ULL,
	  .keep_alive = 1, .nheaders = 2 },
	{ "chunked", RAW(POST11("Transfer-Encoding: chunked\r\n")),
	  .result = OK, .method = "POST", .path = "/submit", .minor = 1,
	  .body = HTTP_BODY_CHUNKED, .keep_alive = 1, .nheaders = 2 },
	{ "chunked any case, OWS", RAW(POST11("transfer-encoding:   ChUnKeD \t\r\n")),
	  .result = OK, .method = "POST", .path = "/submit", .minor = 1,
	  .body = HTTP_BODY_CHUNKED, .keep_alive = 1, .nheaders = 2 },
	{ "gzip then chunked: chunked, close",
	  RAW(POST11("Transfer-Encoding: gzip, chunked\r\n")), .result = OK,
	  .method = "POST", .path = "/submit", .minor = 1,
	  .body = HTTP_BODY_CHUNKED, .keep_alive = 0, .nheaders = 2 },
	{ "identity then chunked over two headers",
	  RAW(POST11("Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n")),
	  .result = OK, .method = "POST", .path = "/submit", .minor = 1,
	  .body = HTTP_BODY_CHUNKED, .keep_alive = 1, .nheaders = 3 },
	{ "expect 100-continue", RAW(POST11("Expect: 100-Continue\r\nContent-Length: 3\r\n")),
	  .result = OK, .method = "POST", .path = "/submit", .minor = 1,
	  .body = HTTP_BODY_LENGTH, .content_length = 3, .keep_alive = 1,
	  .expect = 1, .nheaders = 3 },
	{ "expect ignored in 1.0",
	  RAW("POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"),
	  .result = OK, .method = "POST", .path = "/", .minor = 0,
	  .body = HTTP_BODY_LENGTH, .content_length = 3, .keep_alive = 0,
	  .expect = 0, .nheaders = 2 },
	{ "other expectation not flagged", RAW(POST11("Expect: foo\r\n")),
	  .result = OK, .method = "POST", .path = "/submit", .minor = 1,
	  .keep_alive = 1, .nheaders = 2 },
	{ "leading empty lines skipped", RAW("\r\n\r\n" GET11("/x")),
	  .result = OK, .method = "GET", .path = "/x", .minor = 1,
	  .keep_alive = 1, .nheaders = 1 },
	{ "absolute-form", RAW(GET11("http://example.com:80/p/q?a=b#c")),
	  .result = OK, .method = "GET", .path = "/p/q", .query = "a=b",
	  .fragment = "c", .minor = 1, .keep_alive = 1, .nheaders = 1 },
	{ "absolute-form no path", RAW(GET11("http://example.com")),
	  .result = OK, .method = "GET", .path = "", .minor = 1,
	  .keep_alive = 1, .nheaders = 1 },
	{ "absolute-form https query only", RAW(GET11("https://h:8443?x=1")),
	  .result = OK, .method = "GET", .path = "", .query = "x=1",
	  .minor = 1, .keep_alive = 1, .nheaders = 1 },
	{ "asterisk-form", RAW("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n"),
	  .result = OK, .method = "OPTIONS", .path = "*", .minor = 1,
	  .keep_alive = 1, .nheaders = 1 },
	{ "authority-form CONNECT", RAW("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"),
	  .result = OK, .method = "CONNECT", .path = "", .minor = 1,
	  .keep_alive = 1, .nheaders = 1 },
	{ "token method with dash", RAW("M-SEARCH / HTTP/1.1\r\nHost: h\r\n\r\n"),
	  .result = OK, .method = "M-SEARCH", .path = "/", .minor = 1,
	  .keep_alive = 1, .nheaders = 1 },
	{ "absolute-form userinfo, IPv6, empty port",
	  RAW(GET11("http://u%20s:pw@[::1]:/p")), .result = OK,
	  .method = "GET", .path = "/p", .minor = 1, .keep_alive = 1,
	  .nheaders = 1 },
	{ "absolute-form reg-name sub-delims, pct-encoded",
	  RAW(GET11("http://a-b.c_~!$&'()*+,;=%41/")), .result = OK,
	  .method = "GET", .path = "/", .minor = 1, .keep_alive = 1,
	  .nheaders = 1 },
	{ "absolute-form other scheme, empty host",
	  RAW(GET11("file:///etc")), .result = OK, .method = "GET",
	  .path = "/etc", .minor = 1, .keep_alive = 1, .nheaders = 1 },
	{ "TE identity with CL: the length frames (gunicorn)",
	  RAW(POST11("Transfer-Encoding: identity\r\nContent-Length: 5\r\n") "hello"),
	  .result = OK, .method = "POST", .path = "/submit", .minor = 1,
	  .body = HTTP_BODY_LENGTH, .content_length = 5, .keep_alive = 1,
	  .nheaders = 3, .head_len = sizeof(POST11("Transfer-Encoding: identity\r\nContent-Length: 5\r\n")) - 1 },
	{ "CL then TE identity, any case",
	  RAW(POST11("Content-Length: 2\r\nTransfer-Encoding: IDENTITY\r\n")),
	  .result = OK, .method = "POST", .path = "/submit", .minor = 1,
	  .body = HTTP_BODY_LENGTH, .content_length = 2, .keep_alive = 1,
	  .nheaders = 3 },
	{ "TE identity alone: no body",
	  RAW(POST11("Transfer-Encoding: identity, identity\r\n")),
	  .result = OK, .method = "POST", .path = "/submit", .minor = 1,
	  .body = HTTP_BODY_NONE, .keep_alive = 1, .nheaders = 2 },
	{ "TE identity with CL in HTTP/1.0",
	  RAW("POST / HTTP/1.0\r\nTransfer-Encoding: identity\r\nContent-Length: 3\r\n\r\n"),
	  .result = OK, .method = "POST", .path = "/", .minor = 0,
	  .body = HTTP_BODY_LENGTH, .content_length = 3, .keep_alive = 0,
	  .nheaders = 2 },
	{ "20-char method", RAW("ABCDEFGHIJKLMNOPQRST / HTTP/1.1\r\n\r\n"),
	  .result = OK, .method = "ABCDEFGHIJKLMNOPQRST", .path = "/",
	  .minor = 1, .keep_alive = 1, .nheaders = 0 },
	{ "HTTP/1.2 accepted like gunicorn", RAW("GET / HTTP/1.2\r\n\r\n"),
	  .result = OK, .method = "GET", .path = "/", .minor = 2,
	  .keep_alive = 1, .nheaders = 0 },
	{ "empty header value", RAW("GET / HTTP/1.1\r\nX-Empty:\r\nX-Sp:   \r\n\r\n"),
	  .result = OK, .method = "GET", .path = "/", .minor = 1,
	  .keep_alive = 1, .nheaders = 2 },
	{ "obs-text in value and target", RAW("GET /caf\xc3\xa9 HTTP/1.1\r\nX-N: caf\xc3\xa9\xff\r\n\r\n"),
	  .result = OK, .method = "GET", .path = "/caf\xc3\xa9", .minor = 1,
	  .keep_alive = 1, .nheaders = 1 },
	{ "underscore and odd token chars in name",
	  RAW("GET / HTTP/1.1\r\nX_Forwarded-For: 1\r\n!#$%&'*+-.^_`|~: v\r\n\r\n"),
	  .result = OK, .method = "GET", .path = "/", .minor = 1,
	  .keep_alive = 1, .nheaders = 2 },
	{ "body bytes after head are not parsed",
	  RAW(POST11("Content-Length: 4\r\n") "\x00\r\n\n"), .result = OK,
	  .method = "POST", .path = "/submit", .minor = 1,
	  .body = HTTP_BODY_LENGTH, .content_length = 4, .keep_alive = 1,
	  .nheaders = 2, .head_len = sizeof(POST11("Content-Length: 4\r\n")) - 1 },
	{ "fields exactly at limit",
	  RAW("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"), .has_limits = 1,
	  .limits = { 0, 3, 0 }, .result = OK, .method = "GET", .path = "/",
	  .minor = 1, .keep_alive = 1, .nheaders = 3 },
	{ "field exactly at field_size (line+CRLF = 10)",
	  RAW("GET / HTTP/1.1\r\nAbc: 123\r\n\r\n"), .has_limits = 1,
	  .limits = { 0, 10, 10 }, .result = OK, .method = "GET", .path = "/",
	  .minor = 1, .keep_alive = 1, .nheaders = 1 },
	{ "request line exactly at limit (14)", RAW("GET / HTTP/1.1\r\n\r\n"),
	  .has_limits = 1, .limits = { 14, 10, 0 }, .result = OK,
	  .method = "GET", .path = "/", .minor = 1, .keep_alive = 1,
	  .nheaders = 0 },

	/* ---- incomplete ---- */
	{ "empty input", RAW(""), .result = INC },
	{ "only CRLF", RAW("\r\n"), .result = INC },
	{ "no final CRLF", RAW("GET / HTTP/1.1\r\nHost: x\r\n"), .result = INC },
	{ "final CR only", RAW("GET / HTTP/1.1\r\nHost: x\r\n\r"), .result = INC },
	{ "line below limit, no CRLF yet", RAW("GET /aaaa"),
	  .has_limits = 1, .limits = { 10, 10, 0 }, .result = INC },
	{ "line at limit, CR pending", RAW("GET / HTTP/1.1\r"),
	  .has_limits = 1, .limits = { 14, 10, 0 }, .result = INC },

	/* ---- request line errors ---- */
	{ "lowercase method", RAW("get / HTTP/1.1\r\n\r\n"), .result = ERR, .status = 400 },
	{ "method with #", RAW("GE#T / HTTP/1.1\r\n\r\n"), .result = ERR, .status = 400 },
	{ "method too short", RAW("GE / HTTP/1.1\r\n\r\n"), .result = ERR, .status = 400 },
	{ "method 21 chars", RAW("ABCDEFGHIJKLMNOPQRSTU / HTTP/1.1\r\n\r\n"), .result = ERR, .status = 400 },
	{ "method not a token", RAW("GE(T / HTTP/1.1\r\n\r\n"), .result = ERR, .status = 400 },
	{ "empty method", RAW(" / HTTP/1.1\r\n\r\n"), .result = ERR, .status = 400 },
	{ "double space", RAW("GET  / HTTP/1.1\r\n\r\n"), .result = ERR, .status = 400 },
	{ "tab separator", RAW("GET\t/ HTTP/1.1\r\n\r\n"), .result = ERR, .status = 400 },
	{ "HTTP/0.9 style", RAW("GET /\r\n\r\n"), .result = ERR, .status = 400 },
	{ "HTTP/2.0", RAW("GET / HTTP/2.0\r\n\r\n"), .result = ERR, .status = 400 },
	{ "HTTP/0.9", RAW("GET / HTTP/0.9\r\n\r\n"), .result = ERR, .status = 400 },
	{ "HTTP/1.10", RAW("GET / HTTP/1.10\r\n\r\n"), .result = ERR, .status = 400 },
	{ "lowercase version", RAW("GET / http/1.1\r\n\r\n"), .result = ERR, .status = 400 },
	{ "short version", RAW("GET / HTTP/1\r\n\r\n"), .result = ERR, .status = 400 },
	{ "trailing space after version", RAW("GET / HTTP/1.1 \r\n\r\n"), .result = ERR, .status = 400 },
	{ "NUL in target", RAW("GET /a\x00" "b HTTP/1.1\r\n\r\n"), .result = ERR, .status = 400 },
	{ "CTL in target", RAW("GET /a\x01 HTTP/1.1\r\n\r\n"), .result = ERR, .status = 400 },
	{ "DEL in target", RAW("GET /a\x7f HTTP/1.1\r\n\r\n"), .result = ERR, .status = 400 },
	{ "relative target", RAW("GET foo HTTP/1.1\r\n\r\n"), .result = ERR, .status = 400 },
	{ "bad absolute-form", RAW("GET http:/x HTTP/1.1\r\n\r\n"), .result = ERR, .status = 400 },
	{ "asterisk with suffix", RAW("OPTIONS *x HTTP/1.1\r\n\r\n"), .result = ERR, .status = 400 },
	{ "asterisk with GET", RAW("GET * HTTP/1.1\r\nHost: h\r\n\r\n"), .result = ERR, .status = 400 },
	{ "asterisk with M-SEARCH", RAW("M-SEARCH * HTTP/1.1\r\nHost: h\r\n\r\n"), .result = ERR, .status = 400 },
	{ "asterisk with OPTION", RAW("OPTION * HTTP/1.1\r\n\r\n"), .result = ERR, .status = 400 },
	{ "absolute-form stray ']' (gunicorn corpus)", RAW("PUT s://]ufd/: HTTP/1.1\r\n\r\n"), .result = ERR, .status = 400 },
	{ "absolute-form '[' never closed", RAW(GET11("http://[::1/")), .result = ERR, .status = 400 },
	{ "absolute-form empty IP-literal", RAW(GET11("http://[]/")), .result = ERR, .status = 400 },
	{ "absolute-form junk after IP-literal", RAW(GET11("http://[::1]x/")), .result = ERR, .status = 400 },
	{ "absolute-form port not digits", RAW(GET11("http://h:8x/")), .result = ERR, .status = 400 },
	{ "absolute-form two ports", RAW(GET11("http://h:1:2/")), .result = ERR, .status = 400 },
	{ "absolute-form two '@'", RAW(GET11("http://a@b@c/")), .result = ERR, .status = 400 },
	{ "absolute-form bad pct-encoding", RAW(GET11("http://h%4g/")), .result = ERR, .status = 400 },
	{ "absolute-form truncated pct-encoding", RAW(GET11("http://h%4")), .result = ERR, .status = 400 },
	{ "absolute-form '<' in host", RAW(GET11("http://a<b/")), .result = ERR, .status = 400 },
	{ "absolute-form http without host", RAW(GET11("http:///p")), .result = ERR, .status = 400 },
	{ "absolute-form https userinfo, no host", RAW(GET11("https://u@:443/")), .result = ERR, .status = 400 },
	{ "bare LF ends request line", RAW("GET / HTTP/1.1\nHost: x\r\n\r\n"), .result = ERR, .status = 400 },
	{ "bare CR in request line", RAW("GET /\r HTTP/1.1\r\n\r\n"), .result = ERR, .status = 400 },
	{ "CR CR LF", RAW("GET / HTTP/1.1\r\r\n\r\n"), .result = ERR, .status = 400 },
	{ "bare LF leading line", RAW("\nGET / HTTP/1.1\r\n\r\n"), .result = ERR, .status = 400 },
	{ "request line over limit", RAW("GET /abcdef HTTP/1.1\r\n\r\n"),
	  .has_limits = 1, .limits = { 14, 10, 0 }, .result = ERR, .status = 400 },
	{ "request line over limit, no CRLF yet", RAW("GET /aaaaaa"),
	  .has_limits = 1, .limits = { 10, 10, 0 }, .result = ERR, .status = 400 },
	{ "too many leading empty lines", RAW("\r\n\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\n\r\n"),
	  .has_limits = 1, .limits = { 10, 10, 0 }, .result = ERR, .status = 400 },

	/* ---- header errors ---- */
	{ "space before colon", RAW("GET / HTTP/1.1\r\nHost : x\r\n\r\n"), .result = ERR, .status = 400 },
	{ "tab before colon", RAW("GET / HTTP/1.1\r\nHost\t: x\r\n\r\n"), .result = ERR, .status = 400 },
	{ "obs-fold", RAW("GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n"), .result = ERR, .status = 400 },
	{ "obs-fold with tab", RAW("GET / HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n"), .result = ERR, .status = 400 },
	{ "whitespace before first header", RAW("GET / HTTP/1.1\r\n Host: x\r\n\r\n"), .result = ERR, .status = 400 },
	{ "empty header name", RAW("GET / HTTP/1.1\r\n: x\r\n\r\n"), .result = ERR, .status = 400 },
	{ "no colon", RAW("GET / HTTP/1.1\r\nHost x\r\n\r\n"), .result = ERR, .status = 400 },
	{ "no colon, ends at CRLF", RAW("GET / HTTP/1.1\r\nHost\r\n\r\n"), .result = ERR, .status = 400 },
	{ "bad name char", RAW("GET / HTTP/1.1\r\nHo(st: x\r\n\r\n"), .result = ERR, .status = 400 },
	{ "NUL in name", RAW("GET / HTTP/1.1\r\nHo\x00st: x\r\n\r\n"), .result = ERR, .status = 400 },
	{ "NUL in value", RAW("GET / HTTP/1.1\r\nX: a\x00" "b\r\n\r\n"), .result = ERR, .status = 400 },
	{ "CTL in value", RAW("GET / HTTP/1.1\r\nX: a\x01\r\n\r\n"), .result = ERR, .status = 400 },
	{ "DEL in value", RAW("GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n"), .result = ERR, .status = 400 },
	{ "bare CR in value", RAW("GET / HTTP/1.1\r\nX: a\rb\r\n\r\n"), .result = ERR, .status = 400 },
	{ "bare LF ends header", RAW("GET / HTTP/1.1\r\nX: a\nY: b\r\n\r\n"), .result = ERR, .status = 400 },
	{ "bare LF ends head", RAW("GET / HTTP/1.1\r\nX: a\r\n\n"), .result = ERR, .status = 400 },
	{ "CR without LF ends head", RAW("GET / HTTP/1.1\r\nX: a\r\n\rX"), .result = ERR, .status = 400 },
	{ "duplicate Host", RAW("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n"), .result = ERR, .status = 400 },
	{ "duplicate Content-Type (gunicorn 26)", RAW(POST11("Content-Type: text/plain\r\ncontent-type: application/json\r\n")), .result = ERR, .status = 400 },
	{ "identical duplicate Content-Type", RAW(POST11("Content-Type: a/b\r\nContent-Type: a/b\r\n")), .result = ERR, .status = 400 },

	/* ---- framing / smuggling ---- */
	{ "CL + TE", RAW(POST11("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n")), .result = ERR, .status = 400 },
	{ "TE + CL", RAW(POST11("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n")), .result = ERR, .status = 400 },
	{ "TE + CL 0", RAW(POST11("Transfer-Encoding: chunked\r\nContent-Length: 0\r\n")), .result = ERR, .status = 400 },
	{ "differing duplicate CL", RAW(POST11("Content-Length: 5\r\nContent-Length: 6\r\n")), .result = ERR, .status = 400 },
	{ "identical duplicate CL", RAW(POST11("Content-Length: 5\r\nContent-Length: 5\r\n")), .result = ERR, .status = 400 },
	{ "CL list", RAW(POST11("Content-Length: 5, 5\r\n")), .result = ERR, .status = 400 },
	{ "CL negative", RAW(POST11("Content-Length: -1\r\n")), .result = ERR, .status = 400 },
	{ "CL plus sign", RAW(POST11("Content-Length: +5\r\n")), .result = ERR, .status = 400 },
	{ "CL hex", RAW(POST11("Content-Length: 0x10\r\n")), .result = ERR, .status = 400 },
	{ "CL inner space", RAW(POST11("Content-Length: 1 2\r\n")), .result = ERR, .status = 400 },
	{ "CL empty", RAW(POST11("Content-Length:\r\n")), .result = ERR, .status = 400 },
	{ "CL overflow 2^63", RAW(POST11("Content-Length: 9223372036854775808\r\n")), .result = ERR, .status = 400 },
	{ "CL overflow 20 digits", RAW(POST11("Content-Length: 99999999999999999999\r\n")), .result = ERR, .status = 400 },
	{ "CL superscript digit", RAW(POST11("Content-Length: \xb2\r\n")), .result = ERR, .status = 400 },
	{ "TE chunked not final", RAW(POST11("Transfer-Encoding: chunked, gzip\r\n")), .result = ERR, .status = 400 },
	{ "TE without chunked", RAW(POST11("Transfer-Encoding: gzip\r\n")), .result = ERR, .status = 400 },
	{ "TE chunked twice in one header", RAW(POST11("Transfer-Encoding: chunked, chunked\r\n")), .result = ERR, .status = 400 },
	{ "TE chunked twice in two headers", RAW(POST11("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n")), .result = ERR, .status = 400 },
	{ "TE chunked then identity header", RAW(POST11("Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n")), .result = ERR, .status = 400 },
	{ "TE empty", RAW(POST11("Transfer-Encoding:\r\n")), .result = ERR, .status = 400 },
	{ "TE only commas", RAW(POST11("Transfer-Encoding: , ,\r\n")), .result = ERR, .status = 400 },
	{ "TE unknown coding", RAW(POST11("Transfer-Encoding: foo\r\n")), .result = ERR, .status = 501 },
	{ "TE chunked with params", RAW(POST11("Transfer-Encoding: chunked;q=1\r\n")), .result = ERR, .status = 501 },
	{ "TE xchunked", RAW(POST11("Transfer-Encoding: xchunked\r\n")), .result = ERR, .status = 501 },
	{ "TE chunked with VT", RAW(POST11("Transfer-Encoding: \x0b" "chunked\r\n")), .result = ERR, .status = 400 },
	{ "TE in HTTP/1.0", RAW("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), .result = ERR, .status = 400 },
	{ "TE name with space before colon", RAW(POST11("Transfer-Encoding : chunked\r\n")), .result = ERR, .status = 400 },
	{ "TE folded", RAW(POST11("Transfer-Encoding:\r\n chunked\r\n")), .result = ERR, .status = 400 },

	/* ---- limits ---- */
	{ "too many fields", RAW("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"),
	  .has_limits = 1, .limits = { 0, 2, 0 }, .result = ERR, .status = 431 },
	{ "too many fields, incomplete", RAW("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC"),
	  .has_limits = 1, .limits = { 0, 2, 0 }, .result = ERR, .status = 431 },
	{ "caller's array too small", RAW("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\n\r\n"),
	  .max_headers = 1, .result = ERR, .status = 431 },
	{ "field one byte over field_size", RAW("GET / HTTP/1.1\r\nAbc: 1234\r\n\r\n"),
	  .has_limits = 1, .limits = { 0, 10, 10 }, .result = ERR, .status = 431 },
	{ "field over field_size, incomplete", RAW("GET / HTTP/1.1\r\nAbcdefghij"),
	  .has_limits = 1, .limits = { 0, 10, 10 }, .result = ERR, .status = 431 },
	{ "long name over field_size", RAW("GET / HTTP/1.1\r\nAbcdefghijklmnop: 1\r\n\r\n"),
	  .has_limits = 1, .limits = { 0, 10, 10 }, .result = ERR, .status = 431 },
};

static void
copy_cstr(char *dst, size_t cap, const char *s, size_t n)
{
	if (n >= cap)
		n = cap - 1;
	memcpy(dst, s, n);
	dst[n] = '\0';
}

static int
slice_is(const char *p, size_t n, const char *want)
{
	if (want == NULL)
		want = "";
	return n == strlen(want) && (n == 0 || memcmp(p, want, n) == 0);
}

/* Parse from an exact-size heap copy so ASan catches any over-read. */
static int
parse_copy(const char *raw, size_t len, const struct http_limits *lim,
    size_t max_headers, struct http_request *req, struct http_header *hdrs,
    struct http_error *err, char **copy)
{
	*copy = malloc(len ? len : 1);
	if (*copy == NULL)
		abort();
	memcpy(*copy, raw, len);
	return http_parse_request(*copy, len, lim, req, hdrs, max_headers, err);
}

static void
test_row(const struct row *r)
{
	struct http_header hdrs[64];
	struct http_request req, preq;
	struct http_error err, perr;
	const struct http_limits *lim = r->has_limits ? &r->limits :
	    &default_limits;
	size_t maxh = r->max_headers ? r->max_headers : 64, k, head_len;
	char *copy, *pcopy, buf[256];
	int rc, prc, prefix_ok = 1;

	memset(&err, 0, sizeof(err));
	rc = parse_copy(r->raw, r->len, lim, maxh, &req, hdrs, &err, &copy);
	CHECK_MSG(rc == r->result, "[%s] result %d, want %d (%d %s)", r->name, rc,
	    r->result, err.status, err.reason ? err.reason : "");
	if (rc == ERR && r->result == ERR) {
		CHECK_MSG(err.status == r->status && err.reason != NULL &&
		    err.reason[0] != '\0', "[%s] status %d (%s), want %d",
		    r->name, err.status, err.reason, r->status);
	}
	if (rc == OK && r->result == OK) {
		head_len = r->head_len ? r->head_len : r->len;
		copy_cstr(buf, sizeof(buf), req.method, req.method_len);
		CHECK_MSG(slice_is(req.method, req.method_len, r->method),
		    "[%s] method '%s'", r->name, buf);
		copy_cstr(buf, sizeof(buf), req.path, req.path_len);
		CHECK_MSG(slice_is(req.path, req.path_len, r->path),
		    "[%s] path '%s' want '%s'", r->name, buf, r->path);
		copy_cstr(buf, sizeof(buf), req.query, req.query_len);
		CHECK_MSG(slice_is(req.query, req.query_len, r->query),
		    "[%s] query '%s'", r->name, buf);
		copy_cstr(buf, sizeof(buf), req.fragment, req.fragment_len);
		CHECK_MSG(slice_is(req.fragment, req.fragment_len, r->fragment),
		    "[%s] fragment '%s'", r->name, buf);
		CHECK_MSG(req.version_major == 1 && req.version_minor == r->minor,
		    "[%s] version %d.%d", r->name, req.version_major,
		    req.version_minor);
		CHECK_MSG(req.body == r->body && req.content_length ==
		    r->content_length, "[%s] body %d/%llu", r->name,
		    (int)req.body, (unsigned long long)req.content_length);
		CHECK_MSG(req.keep_alive == r->keep_alive, "[%s] keep_alive %d",
		    r->name, req.keep_alive);
		CHECK_MSG(req.expect_continue == r->expect, "[%s] expect %d",
		    r->name, req.expect_continue);
		CHECK_MSG(r->nheaders < 0 || req.nheaders == (size_t)r->nheaders,
		    "[%s] nheaders %zu", r->name, req.nheaders);
		CHECK_MSG(req.head_len == head_len, "[%s] head_len %zu want %zu",
		    r->name, req.head_len, head_len);
		/* the target spans method end + 1 .. and contains the path */
		CHECK_MSG(req.target >= copy && req.target + req.target_len <=
		    copy + r->len && req.path >= req.target &&
		    req.path + req.path_len <= req.target + req.target_len,
		    "[%s] pointers outside the buffer", r->name);
	}

	/* Every prefix: INCOMPLETE, or the same answer as the whole. */
	for (k = 0; k < r->len; k++) {
		memset(&perr, 0, sizeof(perr));
		prc = parse_copy(r->raw, k, lim, maxh, &preq, hdrs, &perr,
		    &pcopy);
		if (prc == INC)
			;
		else if (prc == ERR && rc == ERR)
			prefix_ok &= perr.status == err.status &&
			    strcmp(perr.reason, err.reason) == 0;
		else if (prc == OK && rc == OK)
			prefix_ok &= preq.head_len == req.head_len &&
			    k >= req.head_len;
		else
			prefix_ok = 0;
		if (!prefix_ok) {
			fprintf(stderr, "  [%s] prefix %zu gives %d (%s)\n",
			    r->name, k, prc, prc == ERR ? perr.reason : "");
			free(pcopy);
			break;
		}
		free(pcopy);
	}
	CHECK_MSG(prefix_ok, "[%s] a prefix disagrees with the whole", r->name);
	free(copy);
}

/* Header names and values as returned; http_header_find. */
static void
test_header_values(void)
{
	static const char raw[] = "GET / HTTP/1.1\r\nHost: example.com\r\n"
	    "X-Pad: \t  a  b \t \r\nx-empty:\r\nContent-Type:text/plain\r\n\r\n";
	struct http_header hdrs[8];
	struct http_request req;
	struct http_error err;
	const struct http_header *h;

	CHECK_MSG(http_parse_request(raw, sizeof(raw) - 1, &default_limits, &req,
	    hdrs, 8, &err) == OK, "header values parse");
	CHECK_MSG(req.nheaders == 4 && req.headers == hdrs, "header count %zu",
	    req.nheaders);
	h = http_header_find(&req, "x-pad");
	CHECK_MSG(h != NULL && slice_is(h->name, h->name_len, "X-Pad") &&
	    slice_is(h->value, h->value_len, "a  b"), "OWS stripped");
	h = http_header_find(&req, "X-EMPTY");
	CHECK_MSG(h != NULL && h->value_len == 0, "empty value");
	h = http_header_find(&req, "content-type");
	CHECK_MSG(h != NULL && slice_is(h->value, h->value_len, "text/plain"),
	    "value without OWS");
	CHECK_MSG(http_header_find(&req, "Content") == NULL, "prefix not a match");
	CHECK_MSG(http_header_find(&req, "Missing") == NULL, "missing header");
}

/* A keep-alive stream: chunked POST, then a GET, in one buffer. */
static void
test_pipeline(void)
{
	static const char raw[] =
	    "POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
	    "4\r\nWiki\r\n5;x=1\r\npedia\r\n0\r\nX-T: 1\r\n\r\n"
	    "GET /next?a HTTP/1.1\r\nHost: h\r\n\r\n";
	struct http_header hdrs[8];
	struct http_request req;
	struct http_error err;
	struct http_chunked c;
	const char *data;
	size_t pos, used, dlen, outlen = 0;
	char out[32];
	int rc;

	rc = http_parse_request(raw, sizeof(raw) - 1, &default_limits, &req,
	    hdrs, 8, &err);
	CHECK_MSG(rc == OK && req.body == HTTP_BODY_CHUNKED && req.keep_alive,
	    "pipeline: first head");
	pos = req.head_len;
	http_chunked_init(&c);
	while (!c.done) {
		rc = http_chunked_next(&c, raw + pos, sizeof(raw) - 1 - pos,
		    &used, &data, &dlen, &err);
		if (rc != OK || outlen + dlen > sizeof(out))
			break;
		memcpy(out + outlen, data, dlen);
		outlen += dlen;
		pos += used;
	}
	CHECK_MSG(c.done && slice_is(out, outlen, "Wikipedia"),
	    "pipeline: chunked body");
	rc = http_parse_request(raw + pos, sizeof(raw) - 1 - pos,
	    &default_limits, &req, hdrs, 8, &err);
	CHECK_MSG(rc == OK && slice_is(req.path, req.path_len, "/next") &&
	    slice_is(req.query, req.query_len, "a") &&
	    pos + req.head_len == sizeof(raw) - 1, "pipeline: second head");
}

static void
test_reason_phrases(void)
{
	CHECK_MSG(strcmp(http_reason_phrase(200), "OK") == 0, "200");
	CHECK_MSG(strcmp(http_reason_phrase(404), "Not Found") == 0, "404");
	CHECK_MSG(strcmp(http_reason_phrase(400), "Bad Request") == 0, "400");
	CHECK_MSG(strcmp(http_reason_phrase(431),
	    "Request Header Fields Too Large") == 0, "431");
	CHECK_MSG(strcmp(http_reason_phrase(501), "Not Implemented") == 0, "501");
	CHECK_MSG(http_reason_phrase(799) != NULL, "unknown status has text");
}

/* Build "GET /aaa... HTTP/1.1\r\n" + headers at run time for big limits. */
static char *
build_request(size_t target_len, size_t nfields, size_t value_len,
    size_t *outlen)
{
	size_t cap = 64 + target_len + nfields * (value_len + 32), n = 0, i;
	char *b = malloc(cap);

	if (b == NULL)
		abort();
	n += (size_t)sprintf(b + n, "GET /");
	memset(b + n, 'a', target_len);
	n += target_len;
	n += (size_t)sprintf(b + n, " HTTP/1.1\r\n");
	for (i = 0; i < nfields; i++) {
		n += (size_t)sprintf(b + n, "X-%zu: ", i);
		memset(b + n, 'v', value_len);
		n += value_len;
		b[n++] = '\r';
		b[n++] = '\n';
	}
	b[n++] = '\r';
	b[n++] = '\n';
	*outlen = n;
	return b;
}

static int
parse_big(const char *b, size_t n, size_t line, size_t fields, size_t fsize,
    struct http_error *err)
{
	static struct http_header hdrs[40000];
	struct http_limits lim = { line, fields, fsize };
	struct http_request req;

	return http_parse_request(b, n, &lim, &req, hdrs, 40000, err);
}

static void
test_limits_runtime(void)
{
	struct http_error err;
	size_t n;
	char *b;

	/* request line: "GET /" + t + " HTTP/1.1" = t + 14 bytes */
	b = build_request(8190 - 14, 0, 0, &n);
	CHECK_MSG(parse_big(b, n, 0, 0, 0, &err) == OK, "line 8190 with limit 0");
	CHECK_MSG(parse_big(b, n, 9000, 0, 0, &err) == OK, "line 8190, limit 9000");
	CHECK_MSG(parse_big(b, n, 8189, 0, 0, &err) == ERR && err.status == 400,
	    "line 8190, limit 8189");
	free(b);
	b = build_request(8191 - 14, 0, 0, &n);
	CHECK_MSG(parse_big(b, n, 0, 0, 0, &err) == ERR && err.status == 400,
	    "line 8191 with limit 0 (= 8190)");
	CHECK_MSG(parse_big(b, n, 100000, 0, 0, &err) == ERR && err.status == 400,
	    "limit above 8190 is capped");
	/* an endless line is refused once the limit is passed */
	CHECK_MSG(parse_big(b, 4095, 4094, 0, 0, &err) == ERR &&
	    err.status == 400, "endless request line refused at limit+1");
	CHECK_MSG(parse_big(b, 4094, 4094, 0, 0, &err) == INC,
	    "request line at limit still incomplete");
	free(b);

	/* fields: 0 means 32768 */
	b = build_request(1, 32768, 1, &n);
	CHECK_MSG(parse_big(b, n, 0, 0, 0, &err) == OK, "32768 fields, limit 0");
	CHECK_MSG(parse_big(b, n, 0, 32767, 0, &err) == ERR && err.status == 431,
	    "32768 fields, limit 32767");
	free(b);
	b = build_request(1, 32769, 1, &n);
	CHECK_MSG(parse_big(b, n, 0, 0, 0, &err) == ERR && err.status == 431,
	    "32769 fields, limit 0 (= 32768)");
	CHECK_MSG(parse_big(b, n, 0, 50000, 0, &err) == ERR && err.status == 431,
	    "fields limit above 32768 is capped");
	free(b);

	/* field_size 0: no per-line limit, but the block is bounded */
	b = build_request(1, 1, 20000, &n);
	CHECK_MSG(parse_big(b, n, 0, 100, 0, &err) == OK,
	    "20000-byte field, field_size 0");
	CHECK_MSG(parse_big(b, n, 0, 100, 8190, &err) == ERR && err.status == 431,
	    "20000-byte field, field_size 8190");
	CHECK_MSG(parse_big(b, n, 0, 1, 0, &err) == ERR && err.status == 431,
	    "20000-byte field over the header block bound");
	CHECK_MSG(parse_big(b, 8300, 0, 100, 8190, &err) == ERR &&
	    err.status == 431, "endless field refused before its CRLF");
	free(b);
	/* default field size: "X-0: " + v + CRLF = v + 7 */
	b = build_request(1, 1, 8190 - 7, &n);
	CHECK_MSG(parse_big(b, n, 0, 100, 8190, &err) == OK, "field of 8190");
	free(b);
	b = build_request(1, 1, 8191 - 7, &n);
	CHECK_MSG(parse_big(b, n, 0, 100, 8190, &err) == ERR && err.status == 431,
	    "field of 8191");
	free(b);
}

/* ---- chunked ---- */

#define B(s)	(s), sizeof(s) - 1

struct chunk_row {
	const char *name;
	const char *raw;
	size_t len;
	int result;		/* OK: done; ERR; INC: truncated */
	int status;
	const char *body;	/* OK: decoded body */
	size_t body_len;
	size_t leftover;	/* OK: bytes after the message */
};

static const struct chunk_row chunk_rows[] = {
	{ "one chunk", RAW("5\r\nhello\r\n0\r\n\r\n"), OK, 0, B("hello"), 0 },
	{ "two chunks + leftover", RAW("3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\nGET"),
	  OK, 0, B("abcdefg"), 3 },
	{ "hex upper/lower, leading zeros", RAW("0000A\r\n0123456789\r\n0b\r\nabcdefghijk\r\n000\r\n\r\n"),
	  OK, 0, B("0123456789abcdefghijk"), 0 },
	{ "empty body", RAW("0\r\n\r\n"), OK, 0, B(""), 0 },
	{ "extensions", RAW("5;a=b;c;d=\"q\\\"x; y\" ; e = f\r\nhello\r\n0;last\r\n\r\n"),
	  OK, 0, B("hello"), 0 },
	{ "BWS after size before an extension", RAW("5 \t;a\r\nhello\r\n0 ;b\r\n\r\n"), OK, 0, B("hello"), 0 },
	{ "trailer names near the forbidden ones",
	  RAW("0\r\nHosts: a\r\nX-Host: b\r\nContent-Lengthy: 1\r\n"
	      "If-Unmodified-Since-X: c\r\nContent-MD5: d\r\nETag: e\r\n\r\n"),
	  OK, 0, B(""), 0 },
	{ "trailers", RAW("5\r\nhello\r\n0\r\nX-Sum: abc\r\nX-E:\r\n\r\nrest"),
	  OK, 0, B("hello"), 4 },
	{ "data holding CRLF and NUL", RAW("6\r\n\r\n\x00\r\n\n\r\n0\r\n\r\n"),
	  OK, 0, B("\r\n\x00\r\n\n"), 0 },
	{ "truncated in data", RAW("5\r\nhel"), INC, 0, NULL, 0, 0 },
	{ "truncated before trailers end", RAW("0\r\nX: y\r\n"), INC, 0, NULL, 0, 0 },
	{ "empty size", RAW("\r\nhello\r\n0\r\n\r\n"), ERR, 400, NULL, 0, 0 },
	{ "non-hex size", RAW("g\r\n"), ERR, 400, NULL, 0, 0 },
	{ "0x prefix", RAW("0x5\r\nhello\r\n0\r\n\r\n"), ERR, 400, NULL, 0, 0 },
	{ "negative size", RAW("-5\r\nhello\r\n0\r\n\r\n"), ERR, 400, NULL, 0, 0 },
	{ "leading space", RAW(" 5\r\nhello\r\n0\r\n\r\n"), ERR, 400, NULL, 0, 0 },
	{ "size overflow 17 digits", RAW("10000000000000000\r\n"), ERR, 400, NULL, 0, 0 },
	{ "bare LF after size", RAW("5\nhello\r\n0\r\n\r\n"), ERR, 400, NULL, 0, 0 },
	{ "bare CR after size", RAW("5\rhello\r\n0\r\n\r\n"), ERR, 400, NULL, 0, 0 },
	{ "missing CRLF after data", RAW("5\r\nhelloX\r\n0\r\n\r\n"), ERR, 400, NULL, 0, 0 },
	{ "LF only after data", RAW("5\r\nhello\n0\r\n\r\n"), ERR, 400, NULL, 0, 0 },
	{ "data longer than size", RAW("3\r\nhello\r\n0\r\n\r\n"), ERR, 400, NULL, 0, 0 },
	{ "ext without name", RAW("5;\r\nhello\r\n0\r\n\r\n"), ERR, 400, NULL, 0, 0 },
	{ "ext with = but no value", RAW("5;a=\r\nhello\r\n0\r\n\r\n"), ERR, 400, NULL, 0, 0 },
	{ "ext garbage", RAW("5;a@b\r\nhello\r\n0\r\n\r\n"), ERR, 400, NULL, 0, 0 },
	{ "ext NUL", RAW("5;a\x00\r\nhello\r\n0\r\n\r\n"), ERR, 400, NULL, 0, 0 },
	{ "ext unterminated quote", RAW("5;a=\"b\r\nhello\r\n0\r\n\r\n"), ERR, 400, NULL, 0, 0 },
	{ "ext bare LF", RAW("5;a\nhello\r\n0\r\n\r\n"), ERR, 400, NULL, 0, 0 },
	{ "garbage after size", RAW("5x\r\nhello\r\n0\r\n\r\n"), ERR, 400, NULL, 0, 0 },
	{ "space inside size", RAW("5 5\r\nhello\r\n0\r\n\r\n"), ERR, 400, NULL, 0, 0 },
	{ "trailer obs-fold", RAW("0\r\nX: a\r\n b\r\n\r\n"), ERR, 400, NULL, 0, 0 },
	{ "trailer space before colon", RAW("0\r\nX : a\r\n\r\n"), ERR, 400, NULL, 0, 0 },
	{ "trailer no colon", RAW("0\r\nXa\r\n\r\n"), ERR, 400, NULL, 0, 0 },
	{ "trailer empty name", RAW("0\r\n: a\r\n\r\n"), ERR, 400, NULL, 0, 0 },
	{ "trailer CTL", RAW("0\r\nX: a\x01\r\n\r\n"), ERR, 400, NULL, 0, 0 },
	{ "trailer bare LF", RAW("0\r\nX: a\n\r\n"), ERR, 400, NULL, 0, 0 },
	{ "final bare LF", RAW("0\r\n\n"), ERR, 400, NULL, 0, 0 },
	{ "final CR junk", RAW("0\r\n\rX"), ERR, 400, NULL, 0, 0 },
	{ "whitespace after size (gunicorn corpus)", RAW("0 \r\n\r\n"), ERR, 400, NULL, 0, 0 },
	{ "tab after size", RAW("5\t\r\nhello\r\n0\r\n\r\n"), ERR, 400, NULL, 0, 0 },
	{ "trailer Content-Length", RAW("5\r\nhello\r\n0\r\nContent-Length: 5\r\n\r\n"), ERR, 400, NULL, 0, 0 },
	{ "trailer Transfer-Encoding", RAW("0\r\ntransfer-encoding: chunked\r\n\r\n"), ERR, 400, NULL, 0, 0 },
	{ "trailer Host after another", RAW("0\r\nX: y\r\nHOST: evil\r\n\r\n"), ERR, 400, NULL, 0, 0 },
	{ "trailer Trailer", RAW("0\r\nTrailer: X\r\n\r\n"), ERR, 400, NULL, 0, 0 },
	{ "trailer TE", RAW("0\r\nTE: trailers\r\n\r\n"), ERR, 400, NULL, 0, 0 },
	{ "trailer Authorization", RAW("0\r\nAuthorization: Basic x\r\n\r\n"), ERR, 400, NULL, 0, 0 },
	{ "trailer Cookie", RAW("0\r\nCookie: a=b\r\n\r\n"), ERR, 400, NULL, 0, 0 },
	{ "trailer Content-Type", RAW("0\r\nContent-Type: a/b\r\n\r\n"), ERR, 400, NULL, 0, 0 },
	{ "trailer Content-Encoding", RAW("0\r\nContent-Encoding: gzip\r\n\r\n"), ERR, 400, NULL, 0, 0 },
	{ "trailer Connection", RAW("0\r\nConnection: close\r\n\r\n"), ERR, 400, NULL, 0, 0 },
	{ "trailer Expect", RAW("0\r\nExpect: 100-continue\r\n\r\n"), ERR, 400, NULL, 0, 0 },
	{ "trailer Range", RAW("0\r\nRange: bytes=0-1\r\n\r\n"), ERR, 400, NULL, 0, 0 },
	{ "trailer If-Unmodified-Since (longest name)", RAW("0\r\nIf-Unmodified-Since: x\r\n\r\n"), ERR, 400, NULL, 0, 0 },
	{ "trailer Proxy-Authorization (longest name)", RAW("0\r\nProxy-Authorization: x\r\n\r\n"), ERR, 400, NULL, 0, 0 },
	{ "trailer Cache-Control, empty value", RAW("0\r\nCache-Control:\r\n\r\n"), ERR, 400, NULL, 0, 0 },
};

/*
 * Decode raw, handing it to the decoder in pieces cut at cuts[0..ncuts)
 * (each piece an exact heap copy).  Returns the final result.
 */
static int
decode_pieces(const char *raw, size_t len, const size_t *cuts, size_t ncuts,
    char *out, size_t *outlen, size_t *used, struct http_error *err)
{
	struct http_chunked c;
	size_t pos = 0, piece_end, ci = 0, consumed, dlen;
	const char *data;
	char *piece;
	int rc = INC;

	http_chunked_init(&c);
	*outlen = 0;
	while (!c.done) {
		piece_end = ci < ncuts ? cuts[ci] : len;
		if (pos == piece_end) {
			if (ci >= ncuts)
				break;
			ci++;
			continue;
		}
		piece = malloc(piece_end - pos);
		if (piece == NULL)
			abort();
		memcpy(piece, raw + pos, piece_end - pos);
		rc = http_chunked_next(&c, piece, piece_end - pos, &consumed,
		    &data, &dlen, err);
		if (dlen > 0) {
			if (data < piece || data + dlen > piece + (piece_end - pos))
				rc = 99;	/* slice outside the input */
			else
				memcpy(out + *outlen, data, dlen);
			*outlen += dlen;
		}
		free(piece);
		if (consumed > piece_end - pos)
			return 98;
		pos += consumed;
		if (rc == ERR || rc == 99)
			break;
		if (rc == INC && pos != piece_end)
			return 97;	/* INCOMPLETE must use every byte */
	}
	*used = pos;
	if (rc == OK && !c.done)
		rc = INC;
	return rc;
}

static int
chunk_outcome_ok(const struct chunk_row *r, int rc, const char *out,
    size_t outlen, size_t used, const struct http_error *err)
{
	if (rc != r->result)
		return 0;
	if (rc == ERR)
		return err->status == r->status;
	if (rc == OK)
		return outlen == r->body_len &&
		    memcmp(out, r->body, outlen) == 0 &&
		    used == r->len - r->leftover;
	return 1;
}

static void
test_chunk_row(const struct chunk_row *r)
{
	struct http_error err;
	size_t cuts[2], outlen, used, k, i, *every;
	char *out = malloc(r->len + 1);
	int rc, ok = 1;

	if (out == NULL)
		abort();
	/* whole */
	rc = decode_pieces(r->raw, r->len, NULL, 0, out, &outlen, &used, &err);
	CHECK_MSG(chunk_outcome_ok(r, rc, out, outlen, used, &err),
	    "[chunked %s] whole: rc %d outlen %zu used %zu", r->name, rc,
	    outlen, used);
	/* two pieces, cut at every byte */
	for (k = 1; k < r->len && ok; k++) {
		cuts[0] = k;
		rc = decode_pieces(r->raw, r->len, cuts, 1, out, &outlen,
		    &used, &err);
		ok = chunk_outcome_ok(r, rc, out, outlen, used, &err);
		if (!ok)
			fprintf(stderr, "  cut at %zu: rc %d\n", k, rc);
	}
	CHECK_MSG(ok, "[chunked %s] split in two at every byte", r->name);
	/* one byte at a time */
	every = malloc(sizeof(*every) * (r->len + 1));
	if (every == NULL)
		abort();
	for (i = 0; i < r->len; i++)
		every[i] = i + 1;
	rc = decode_pieces(r->raw, r->len, every, r->len, out, &outlen, &used,
	    &err);
	CHECK_MSG(chunk_outcome_ok(r, rc, out, outlen, used, &err),
	    "[chunked %s] byte at a time: rc %d", r->name, rc);
	free(every);
	free(out);
}

static void
test_chunked_misc(void)
{
	struct http_chunked c;
	struct http_error err;
	const char *data;
	size_t consumed, dlen, n;
	char *big;
	int rc;

	/* after done: OK, nothing consumed */
	http_chunked_init(&c);
	rc = http_chunked_next(&c, "0\r\n\r\nXY", 7, &consumed, &data, &dlen,
	    &err);
	CHECK_MSG(rc == OK && c.done && consumed == 5 && dlen == 0, "done at 5");
	rc = http_chunked_next(&c, "XY", 2, &consumed, &data, &dlen, &err);
	CHECK_MSG(rc == OK && consumed == 0 && dlen == 0, "after done");

	/* largest size accepted; data is handed out as it comes */
	http_chunked_init(&c);
	rc = http_chunked_next(&c, "ffffffffffffffff\r\nabc", 21, &consumed,
	    &data, &dlen, &err);
	CHECK_MSG(rc == OK && consumed == 21 && dlen == 3 &&
	    memcmp(data, "abc", 3) == 0 && !c.done, "2^64-1 chunk");

	/* the size line is bounded (4096) */
	big = malloc(20000);
	if (big == NULL)
		abort();
	memcpy(big, "5;a=", 4);
	memset(big + 4, 'x', 5000);
	http_chunked_init(&c);
	rc = http_chunked_next(&c, big, 5004, &consumed, &data, &dlen, &err);
	CHECK_MSG(rc == ERR && err.status == 400, "size line over 4096");
	memset(big, '0', 4093);	/* 4093 + "5" + CRLF = 4096 */
	memcpy(big + 4093, "5\r\nhello\r\n0\r\n\r\n", 15);
	http_chunked_init(&c);
	rc = http_chunked_next(&c, big, 4108, &consumed, &data, &dlen, &err);
	CHECK_MSG(rc == OK && dlen == 5, "size line of 4096 with zeros");
	memset(big, '0', 4094);
	memcpy(big + 4094, "5\r\nhello\r\n0\r\n\r\n", 15);
	http_chunked_init(&c);
	rc = http_chunked_next(&c, big, 4109, &consumed, &data, &dlen, &err);
	CHECK_MSG(rc == ERR && err.status == 400, "size line of 4097");

	/* the trailer section is bounded (16384) */
	memcpy(big, "0\r\nX: ", 6);
	memset(big + 6, 'v', 17000);
	http_chunked_init(&c);
	rc = http_chunked_next(&c, big, 17006, &consumed, &data, &dlen, &err);
	CHECK_MSG(rc == ERR && err.status == 431, "trailers over 16384");
	n = 3;
	memcpy(big, "0\r\n", 3);
	while (n < 16000) {
		memcpy(big + n, "X-T: 1234567890\r\n", 17);
		n += 17;
	}
	memcpy(big + n, "\r\n", 2);
	http_chunked_init(&c);
	rc = http_chunked_next(&c, big, n + 2, &consumed, &data, &dlen, &err);
	CHECK_MSG(rc == OK && c.done && consumed == n + 2, "trailers of %zu", n);
	free(big);
}

/* ---- benchmark ---- */

static double
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static void
bench(void)
{
	static const char raw[] =
	    "GET /api/v1/users/12345/profile?fields=name,email&lang=en HTTP/1.1\r\n"
	    "Host: api.example.com\r\n"
	    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0\r\n"
	    "Accept: application/json, text/plain, */*\r\n"
	    "Accept-Language: en-US,en;q=0.5\r\n"
	    "Accept-Encoding: gzip, deflate, br\r\n"
	    "Connection: keep-alive\r\n"
	    "Cookie: session=abcdef0123456789\r\n"
	    "\r\n";
	struct http_header hdrs[101];
	struct http_request req;
	struct http_error err;
	double t0, t1;
	long i, iters = 200000, ok = 0;

	t0 = now_ns();
	for (i = 0; i < iters; i++)
		ok += http_parse_request(raw, sizeof(raw) - 1, &default_limits,
		    &req, hdrs, 101, &err) == OK;
	t1 = now_ns();
	CHECK_MSG(ok == iters, "bench parses");
	printf("bench: %zu-byte request, %.0f ns/request\n", sizeof(raw) - 1,
	    (t1 - t0) / iters);
}

int
main(void)
{
	size_t i;

	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		test_row(&rows[i]);
	printf("%zu request rows\n", sizeof(rows) / sizeof(rows[0]));
	test_header_values();
	test_pipeline();
	test_reason_phrases();
	test_limits_runtime();
	for (i = 0; i < sizeof(chunk_rows) / sizeof(chunk_rows[0]); i++)
		test_chunk_row(&chunk_rows[i]);
	printf("%zu chunked rows\n", sizeof(chunk_rows) / sizeof(chunk_rows[0]));
	test_chunked_misc();
	bench();
	return check_summary("test_http_parser");
}
