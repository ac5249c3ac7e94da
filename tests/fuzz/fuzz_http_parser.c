/*
 * fuzz_http_parser.c — libFuzzer target for src/http_parser.c.
 *
 * Feeds the input to the head parser under a few limit settings, checks
 * the invariants the contract promises (every returned pointer lies in
 * the input, head_len <= len, a prefix never disagrees with the whole),
 * then decodes what follows the head as a chunked body, whole and split,
 * and checks that both ways give the same bytes and outcome.  Owns only
 * its scratch buffers; aborts on a broken invariant.
 */
#include "http_parser.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define ASSERT(c)	do { if (!(c)) abort(); } while (0)

static int
inside(const char *p, size_t n, const char *buf, size_t len)
{
	return n == 0 || (p >= buf && p + n <= buf + len);
}

static void
check_request(const struct http_request *r, const char *buf, size_t len)
{
	size_t i;

	ASSERT(r->head_len > 0 && r->head_len <= len);
	ASSERT(inside(r->method, r->method_len, buf, r->head_len));
	ASSERT(inside(r->target, r->target_len, buf, r->head_len));
	ASSERT(inside(r->path, r->path_len, r->target, r->target_len));
	ASSERT(inside(r->query, r->query_len, r->target, r->target_len));
	ASSERT(inside(r->fragment, r->fragment_len, r->target,
	    r->target_len));
	ASSERT(r->version_major == 1);
	for (i = 0; i < r->nheaders; i++) {
		ASSERT(r->headers[i].name_len > 0);
		ASSERT(inside(r->headers[i].name, r->headers[i].name_len, buf,
		    r->head_len));
		ASSERT(inside(r->headers[i].value, r->headers[i].value_len,
		    buf, r->head_len));
	}
	ASSERT(!(r->body == HTTP_BODY_LENGTH && r->content_length == 0));
	ASSERT(r->body != HTTP_BODY_CHUNKED || r->version_minor >= 1);
}

/* Decode body[0..len) in pieces of at most step bytes. */
static int
decode(const char *body, size_t len, size_t step, uint8_t *out,
    size_t *outlen, size_t *used, int *status)
{
	struct http_chunked c;
	struct http_error err;
	size_t pos = 0, consumed, dlen, avail_end = 0;
	const char *d;
	int rc = HTTP_PARSE_INCOMPLETE;

	http_chunked_init(&c);
	*outlen = 0;
	*status = 0;
	while (!c.done) {
		if (pos == avail_end) {
			if (avail_end == len)
				break;
			avail_end = avail_end + step < len ? avail_end + step :
			    len;
		}
		rc = http_chunked_next(&c, body + pos, avail_end - pos,
		    &consumed, &d, &dlen, &err);
		ASSERT(consumed <= avail_end - pos);
		if (dlen > 0) {
			ASSERT(d >= body + pos && d + dlen <= body + avail_end);
			memcpy(out + *outlen, d, dlen);
			*outlen += dlen;
		}
		pos += consumed;
		if (rc == HTTP_PARSE_ERROR) {
			ASSERT(err.status >= 400 && err.reason != NULL);
			*status = err.status;
			break;
		}
		if (rc == HTTP_PARSE_INCOMPLETE)
			ASSERT(pos == avail_end);
	}
	*used = pos;
	if (rc == HTTP_PARSE_OK && !c.done)
		rc = HTTP_PARSE_INCOMPLETE;
	return rc;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct http_limits limit_sets[] = {
		{ 4094, 100, 8190 },	/* gunicorn defaults */
		{ 0, 0, 0 },		/* maxima / unlimited */
		{ 16, 3, 12 },		/* tiny */
	};
	struct http_header hdrs[32];
	struct http_request req, preq;
	struct http_error err, perr;
	const struct http_limits *lim;
	size_t i, k, used1, used2, len1, len2, body_len, step;
	const char *buf, *body;
	uint8_t *out1, *out2;
	char *copy;
	int rc, prc, r1, r2, s1, s2;

	/* exact-size copy so over-reads are caught */
	copy = malloc(size ? size : 1);
	ASSERT(copy != NULL);
	memcpy(copy, data, size);
	buf = copy;

	for (i = 0; i < sizeof(limit_sets) / sizeof(limit_sets[0]); i++) {
		lim = &limit_sets[i];
		rc = http_parse_request(buf, size, lim, &req, hdrs, 32, &err);
		if (rc == HTTP_PARSE_OK) {
			check_request(&req, buf, size);
			(void)http_header_find(&req, "content-length");
		} else if (rc == HTTP_PARSE_ERROR)
			ASSERT(err.status >= 400 && err.reason != NULL &&
			    http_reason_phrase(err.status) != NULL);
		else
			ASSERT(rc == HTTP_PARSE_INCOMPLETE);
		/* a few prefixes must agree with the whole */
		for (k = 0; k < size; k += 1 + size / 8) {
			prc = http_parse_request(buf, k, lim, &preq, hdrs, 32,
			    &perr);
			if (prc == HTTP_PARSE_INCOMPLETE)
				continue;
			ASSERT(prc == rc);
			if (rc == HTTP_PARSE_ERROR)
				ASSERT(perr.status == err.status &&
				    strcmp(perr.reason, err.reason) == 0);
			else
				ASSERT(preq.head_len == req.head_len);
		}
	}

	/* the chunked decoder on what follows a parsed head, or on all */
	rc = http_parse_request(buf, size, &limit_sets[0], &req, hdrs, 32, &err);
	body = buf;
	body_len = size;
	if (rc == HTTP_PARSE_OK) {
		body = buf + req.head_len;
		body_len = size - req.head_len;
	}
	out1 = malloc(body_len + 1);
	out2 = malloc(body_len + 1);
	ASSERT(out1 != NULL && out2 != NULL);
	r1 = decode(body, body_len, body_len ? body_len : 1, out1, &len1,
	    &used1, &s1);
	step = 1 + (size ? data[0] % 7 : 0);
	r2 = decode(body, body_len, step, out2, &len2, &used2, &s2);
	ASSERT(r1 == r2 && s1 == s2 && used1 == used2 && len1 == len2 &&
	    memcmp(out1, out2, len1) == 0);
	ASSERT(len1 <= used1);
	free(out1);
	free(out2);
	free(copy);
	return 0;
}
