/*
 * buf.h — the tree's one growable byte buffer: the dirty codec encodes
 * frames into it, the WSGI glue builds response heads, header keys and
 * access-log lines in it.
 *
 * A buffer owns its memory (data[0..cap)), of which data[0..len) is in
 * use; a zeroed struct is an empty buffer.  Growth doubles from 256 bytes
 * and aborts through xrealloc() when memory runs out: callers never see an
 * allocation failure.  Not thread-safe: one owner at a time (the WSGI
 * glue keeps its buffers per thread).  Never does I/O, never calls Python.
 */
#ifndef CUNICORN_BUF_H
#define CUNICORN_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "log.h"	/* PRINTF_LIKE */

struct buf {
	union {
		uint8_t *data;	/* bytes, for codecs */
		char *chars;	/* the same bytes, as text */
	};
	size_t len;
	size_t cap;
};

void buf_init(struct buf *b);
void buf_free(struct buf *b);		/* releases the memory; b is empty again */
void buf_grow(struct buf *b, size_t extra);
void buf_append(struct buf *b, const void *p, size_t n);
void buf_consume(struct buf *b, size_t n);	/* drop the first n bytes */
void buf_printf(struct buf *b, const char *fmt, ...) PRINTF_LIKE(2, 3);

/* len = 0, keeps the memory. */
static inline void
buf_reset(struct buf *b)
{
	b->len = 0;
}

/* Room for extra more bytes.  Inline: the check is on hot paths. */
static inline void
buf_reserve(struct buf *b, size_t extra)
{
	if (b->cap - b->len < extra)
		buf_grow(b, extra);
}

static inline void
buf_appends(struct buf *b, const char *s)
{
	buf_append(b, s, strlen(s));
}

#endif
