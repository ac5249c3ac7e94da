/*
 * http_drain.c — dropping the rest of an unread request body after its
 * response (contract: http_drain.h).
 *
 * The deadline.  A Content-Length rest has the body reader's own: the
 * head's timeout plus a second per HTTP_BODY_MIN_RATE bytes left.  A
 * chunked rest has no known size, so it is given what the most it may
 * still be would get: the head's timeout plus the chunk data the bound
 * still allows (HTTP_DRAIN_MAX less what was dropped since the
 * response) at that rate — about 16 s past the head's for a body that
 * just started, no longer than a Content-Length rest of the same bound.
 * The framing bytes around the data (size lines, at most 4 KiB each;
 * trailers, at most 16 KiB: http_chunked.c) are not counted against the
 * bound: the deadline is what bounds them.
 */
#include "http_drain.h"

#include <string.h>

#include "http_conn.h"
#include "log.h"

void
http_drain_length(struct http_drain *d, uint64_t left)
{
	memset(d, 0, sizeof(*d));
	d->kind = left > 0 ? HTTP_BODY_LENGTH : HTTP_BODY_NONE;
	d->left = left;
}

void
http_drain_chunked(struct http_drain *d, const struct http_chunked *ch,
    uint64_t dropped)
{
	d->kind = ch->done ? HTTP_BODY_NONE : HTTP_BODY_CHUNKED;
	d->left = 0;
	d->dropped = dropped;
	d->ch = *ch;
}

uint64_t
http_drain_ms(const struct http_drain *d, int base_ms)
{
	if (d->kind != HTTP_BODY_CHUNKED)
		return http_body_rest_ms(base_ms, d->left);
	return http_body_rest_ms(base_ms, d->dropped < HTTP_DRAIN_MAX ?
	    HTTP_DRAIN_MAX - d->dropped : 0);
}

size_t
http_drain_want(const struct http_drain *d, size_t room)
{
	if (d->kind == HTTP_BODY_LENGTH && d->left < (uint64_t)room)
		return (size_t)d->left;
	return room;
}

int
http_drain_feed(struct http_drain *d, const char *buf, size_t n, size_t *used)
{
	struct http_error err;
	const char *data;
	size_t k, dlen;
	int r;

	*used = 0;
	if (d->kind == HTTP_BODY_LENGTH) {
		*used = (uint64_t)n < d->left ? n : (size_t)d->left;
		d->left -= *used;
	} else if (d->kind == HTTP_BODY_CHUNKED) {
		while (*used < n && !d->ch.done) {
			r = http_chunked_next(&d->ch, buf + *used, n - *used, &k,
			    &data, &dlen, &err);
			*used += k;
			if (r == HTTP_PARSE_ERROR) {
				log_debug("Closing connection: invalid chunked body "
				    "after the response: %s", err.reason);
				return HTTP_DRAIN_BAD;
			}
			d->dropped += dlen;
			if (d->dropped > HTTP_DRAIN_MAX) {
				http_drain_log_over();
				return HTTP_DRAIN_OVER;
			}
			if (r == HTTP_PARSE_INCOMPLETE)
				break;
		}
		if (d->ch.done)
			d->kind = HTTP_BODY_NONE;
		return d->ch.done ? HTTP_DRAIN_END : HTTP_DRAIN_MORE;
	}
	if (d->left > 0)
		return HTTP_DRAIN_MORE;
	d->kind = HTTP_BODY_NONE;
	return HTTP_DRAIN_END;
}

void
http_drain_log_over(void)
{
	log_debug("Closing connection: more than %d bytes of an unread "
	    "chunked body", HTTP_DRAIN_MAX);
}

void
http_drain_log_timeout(const struct http_drain *d)
{
	if (d->kind == HTTP_BODY_CHUNKED)
		log_debug("Closing connection: the end of a chunked request body "
		    "not sent in time (%llu bytes of it dropped)",
		    (unsigned long long)d->dropped);
	else
		log_debug("Closing connection: %llu bytes of a request body "
		    "not sent in time", (unsigned long long)d->left);
}

void
http_drain_log_eof(const struct http_drain *d)
{
	if (d->kind == HTTP_BODY_CHUNKED)
		log_debug("Ignored premature client disconnection: the end of a "
		    "chunked body still to come");
	else
		log_debug("Ignored premature client disconnection: %llu body bytes "
		    "still to come", (unsigned long long)d->left);
}
