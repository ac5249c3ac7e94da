/*
 * http_drain.h — the rest of a request body that an app left unread,
 * dropped as it arrives after the response, so that a kept connection
 * can go on to the request pipelined behind it.  The framing rules, the
 * bound and the deadline live here, once; the keep-alive workers' loops
 * only read bytes and act on the result (gthread: gthread_drain.c in
 * the CS_DRAIN state; asgi: asgi_http.c in PS_DRAIN).
 *
 * A Content-Length rest is a count: exactly that many bytes are dropped.
 * A chunked rest is decoded as it comes with the tree's decoder
 * (http_chunked.c, picked up where the app's reads left it), chunk data
 * and trailers dropped; its end is the end of the trailer section.
 * Either way not a byte past the body is taken: what follows it in the
 * same read is the next request's.
 *
 * Owns nothing but the caller's struct http_drain.  Never: allocates,
 * blocks, calls Python, or closes anything (the result says what to do).
 */
#ifndef CUNICORN_HTTP_DRAIN_H
#define CUNICORN_HTTP_DRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "http_parser.h"

/* A body the app left unread keeps its connection alive when at most
 * this much of it is still to come — for a chunked body, this much chunk
 * data at most is dropped after the response — the rest closes it. */
#define HTTP_DRAIN_MAX		(1024 * 1024)

struct http_drain {
	int kind;		/* enum http_body_kind; NONE: nothing to drop */
	uint64_t left;		/* LENGTH: body bytes still to come */
	uint64_t dropped;	/* CHUNKED: chunk data dropped since the response */
	struct http_chunked ch;	/* CHUNKED: the decoder, where the app left it */
};

enum http_drain_result {
	HTTP_DRAIN_MORE,	/* every byte given was the body's; more to come */
	HTTP_DRAIN_END,		/* the body ended: the bytes after *used are
				   the next request's (kind is NONE again) */
	HTTP_DRAIN_BAD,		/* malformed chunk framing: close */
	HTTP_DRAIN_OVER,	/* past HTTP_DRAIN_MAX of chunk data: close */
};

/* Whether a response may say keep-alive to a request whose body is
 * unread: a Content-Length rest (left bytes, buffered of them here
 * already) within the bound; a chunked one maybe (its size is known only
 * once decoded: past the bound the connection closes after all). */
static inline int
http_drain_possible(int kind, uint64_t left, size_t buffered)
{
	return kind != HTTP_BODY_LENGTH || left <= HTTP_DRAIN_MAX + (uint64_t)buffered;
}

/* Start dropping: left Content-Length bytes; or a chunked body whose
 * decoder state is *ch, dropped bytes of its data already dropped since
 * the response (they count against the bound). */
void http_drain_length(struct http_drain *d, uint64_t left);
void http_drain_chunked(struct http_drain *d, const struct http_chunked *ch,
    uint64_t dropped);

static inline int
http_drain_active(const struct http_drain *d)
{
	return d->kind != HTTP_BODY_NONE;
}

/* How long, from now, the rest may take (the body reader's rule:
 * http_body_rest_ms from base_ms, the head's timeout). */
uint64_t http_drain_ms(const struct http_drain *d, int base_ms);

/* How many bytes a read may take, at most room: a Content-Length rest
 * is read exactly, so that what follows it stays in the socket. */
size_t http_drain_want(const struct http_drain *d, size_t room);

/* buf[0..n) came: drop what is the body's (*used bytes).  Logs why it
 * gives up (debug). */
int http_drain_feed(struct http_drain *d, const char *buf, size_t n, size_t *used);

/* The debug lines of a drain cut short: more than HTTP_DRAIN_MAX of
 * chunk data (also where a worker drops what came before its loop's
 * drain: wsgi_input.c), its deadline passed, or the client hung up. */
void http_drain_log_over(void);
void http_drain_log_timeout(const struct http_drain *d);
void http_drain_log_eof(const struct http_drain *d);

#endif
