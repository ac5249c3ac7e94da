/*
 * dirty_wire.c — the dirty protocol codec (format documented in
 * dirty_wire.h): frame headers, the TLV encoder into a growable buffer,
 * the bounded cursor decoder, and the parser of "module:Class:N"
 * dirty_apps entries shared by the settings, the arbiter and the worker.
 *
 * Owns nothing but the buffer memory (buf.h) its callers hand it.  Decoding
 * never allocates, never reads past `end`, and checks every length and
 * count against the bytes left and the maxima before using it.  This file
 * must never call Python nor do I/O: it is shared by the arbiter (C only),
 * the dirty worker and the Python extension, and it is on the hot path of
 * every dirty call.
 */
#include "dirty_wire.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"

/* ---- big-endian helpers ---- */

static inline uint32_t
be32_get(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
	    ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static inline uint64_t
be64_get(const uint8_t *p)
{
	return ((uint64_t)be32_get(p) << 32) | (uint64_t)be32_get(p + 4);
}

static inline void
be32_put(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static inline void
be64_put(uint8_t *p, uint64_t v)
{
	be32_put(p, (uint32_t)(v >> 32));
	be32_put(p + 4, (uint32_t)v);
}

/* ---- header ---- */

static int
msg_type_known(uint8_t t)
{
	switch (t) {
	case DIRTY_MSG_REQUEST:
	case DIRTY_MSG_RESPONSE:
	case DIRTY_MSG_ERROR:
	case DIRTY_MSG_CHUNK:
	case DIRTY_MSG_END:
	case DIRTY_MSG_STASH:
	case DIRTY_MSG_STATUS:
	case DIRTY_MSG_MANAGE:
		return 1;
	}
	return 0;
}

int
dirty_header_decode(const uint8_t buf[DIRTY_HEADER_SIZE],
    struct dirty_header *h, const char **why)
{
	if (buf[0] != DIRTY_MAGIC0 || buf[1] != DIRTY_MAGIC1) {
		*why = "bad magic";
		return -1;
	}
	if (buf[2] != DIRTY_VERSION) {
		*why = "unsupported protocol version";
		return -1;
	}
	if (!msg_type_known(buf[3])) {
		*why = "unknown message type";
		return -1;
	}
	h->type = buf[3];
	h->length = be32_get(buf + 4);
	if (h->length > DIRTY_MAX_PAYLOAD) {
		*why = "payload too large";
		return -1;
	}
	h->id = be64_get(buf + 8);
	return 0;
}

void
dirty_header_encode(uint8_t buf[DIRTY_HEADER_SIZE], uint8_t type,
    uint32_t length, uint64_t id)
{
	buf[0] = DIRTY_MAGIC0;
	buf[1] = DIRTY_MAGIC1;
	buf[2] = DIRTY_VERSION;
	buf[3] = type;
	be32_put(buf + 4, length);
	be64_put(buf + 8, id);
}

void
dirty_header_set_id(uint8_t buf[DIRTY_HEADER_SIZE], uint64_t id)
{
	be64_put(buf + 8, id);
}

/* ---- reading frames from a byte stream ---- */

void
dirty_reader_init(struct dirty_reader *r)
{
	memset(r, 0, sizeof(*r));
}

void
dirty_reader_free(struct dirty_reader *r)
{
	buf_free(&r->held);
	dirty_reader_init(r);
}

int
dirty_reader_next(struct dirty_reader *r, struct dirty_header *h,
    const uint8_t **frame, const char **why)
{
	const uint8_t *p;
	size_t avail, *pos;

	if (r->chunk != NULL) {
		p = r->chunk;
		pos = &r->chunk_pos;
		avail = r->chunk_len - r->chunk_pos;
	} else {
		p = r->held.data;
		pos = &r->pos;
		avail = r->held.len - r->pos;
	}
	if (avail < DIRTY_HEADER_SIZE)
		return 0;
	p += *pos;
	if (dirty_header_decode(p, h, why) == -1)
		return -1;
	if (avail - DIRTY_HEADER_SIZE < h->length)
		return 0;
	*frame = p;
	*pos += DIRTY_HEADER_SIZE + (size_t)h->length;
	return 1;
}

uint8_t *
dirty_reader_space(struct dirty_reader *r, size_t min, size_t *room)
{
	struct buf *b = &r->held;
	size_t avail = b->len - r->pos, need = DIRTY_HEADER_SIZE, rest;
	struct dirty_header h;
	const char *why;

	if (r->chunk != NULL)
		dirty_reader_keep(r);
	if (avail >= DIRTY_HEADER_SIZE &&
	    dirty_header_decode(b->data + r->pos, &h, &why) == 0)
		need += h.length;	/* <= DIRTY_MAX_PAYLOAD: checked */
	/* move the unread bytes to the front when the room at the end is
	 * short, or the frame would not fit from where it starts */
	if (r->pos > 0 && (r->pos == b->len || b->cap - b->len < min ||
	    b->cap - r->pos < need)) {
		buf_consume(b, r->pos);
		r->pos = 0;
	}
	rest = need > avail ? need - avail : 0;
	if (b->cap - b->len < min || b->cap - b->len < rest)
		buf_reserve(b, rest > min ? rest : min);
	*room = b->cap - b->len;
	return b->data + b->len;
}

void
dirty_reader_commit(struct dirty_reader *r, size_t n)
{
	r->held.len += n;
}

void
dirty_reader_feed(struct dirty_reader *r, const uint8_t *p, size_t n)
{
	if (r->chunk != NULL)
		dirty_reader_keep(r);
	if (r->pos < r->held.len) {
		buf_append(&r->held, p, n);	/* a frame already begun */
		return;
	}
	r->held.len = r->pos = 0;
	r->chunk = p;
	r->chunk_len = n;
	r->chunk_pos = 0;
}

void
dirty_reader_keep(struct dirty_reader *r)
{
	if (r->chunk != NULL) {
		/* held is empty while a chunk is borrowed */
		buf_append(&r->held, r->chunk + r->chunk_pos,
		    r->chunk_len - r->chunk_pos);
		r->chunk = NULL;
		r->chunk_len = r->chunk_pos = 0;
	} else if (r->pos > 0) {
		buf_consume(&r->held, r->pos);
		r->pos = 0;
	}
}

const uint8_t *
dirty_reader_peek(const struct dirty_reader *r, size_t *len)
{
	if (r->chunk != NULL) {
		*len = r->chunk_len - r->chunk_pos;
		return r->chunk + r->chunk_pos;
	}
	*len = r->held.len - r->pos;
	return *len > 0 ? r->held.data + r->pos : (const uint8_t *)"";
}

void
dirty_reader_reset(struct dirty_reader *r)
{
	r->chunk = NULL;
	r->chunk_len = r->chunk_pos = 0;
	r->held.len = r->pos = 0;
}

void
dirty_reader_trim(struct dirty_reader *r, size_t keep)
{
	if (r->chunk != NULL || r->pos < r->held.len)
		return;
	r->held.len = r->pos = 0;
	if (r->held.cap > keep)
		buf_free(&r->held);
}

/* ---- encoding ---- */

size_t
dirty_frame_begin(struct dirty_buf *b, uint8_t type, uint64_t id)
{
	size_t off = b->len;

	dirty_buf_reserve(b, DIRTY_HEADER_SIZE);
	dirty_header_encode(b->data + off, type, 0, id);
	b->len += DIRTY_HEADER_SIZE;
	return off;
}

int
dirty_frame_end(struct dirty_buf *b, size_t frame_offset)
{
	size_t plen = b->len - frame_offset - DIRTY_HEADER_SIZE;

	if (plen > DIRTY_MAX_PAYLOAD)
		return -1;
	be32_put(b->data + frame_offset + 4, (uint32_t)plen);
	return 0;
}

static inline uint8_t *
put_space(struct dirty_buf *b, size_t n)
{
	uint8_t *p;

	dirty_buf_reserve(b, n);
	p = b->data + b->len;
	b->len += n;
	return p;
}

void
dirty_put_none(struct dirty_buf *b)
{
	*put_space(b, 1) = DIRTY_TLV_NONE;
}

void
dirty_put_bool(struct dirty_buf *b, int v)
{
	uint8_t *p = put_space(b, 2);

	p[0] = DIRTY_TLV_BOOL;
	p[1] = v ? 1 : 0;
}

void
dirty_put_int64(struct dirty_buf *b, int64_t v)
{
	uint8_t *p = put_space(b, 9);

	p[0] = DIRTY_TLV_INT64;
	be64_put(p + 1, (uint64_t)v);
}

void
dirty_put_float64(struct dirty_buf *b, double v)
{
	uint8_t *p = put_space(b, 9);
	uint64_t u;

	memcpy(&u, &v, sizeof(u));
	p[0] = DIRTY_TLV_FLOAT64;
	be64_put(p + 1, u);
}

static void
put_blob(struct dirty_buf *b, uint8_t type, const void *s, uint32_t n)
{
	uint8_t *p = put_space(b, 5 + (size_t)n);

	p[0] = type;
	be32_put(p + 1, n);
	if (n)
		memcpy(p + 5, s, n);
}

void
dirty_put_bytes(struct dirty_buf *b, const void *p, uint32_t n)
{
	put_blob(b, DIRTY_TLV_BYTES, p, n);
}

void
dirty_put_string(struct dirty_buf *b, const char *s, uint32_t n)
{
	put_blob(b, DIRTY_TLV_STRING, s, n);
}

void
dirty_put_cstring(struct dirty_buf *b, const char *s)
{
	size_t n = strlen(s);

	if (n > DIRTY_MAX_BLOB)
		n = DIRTY_MAX_BLOB;	/* never emit what a peer must reject */
	put_blob(b, DIRTY_TLV_STRING, s, (uint32_t)n);
}

void
dirty_put_list(struct dirty_buf *b, uint32_t count)
{
	uint8_t *p = put_space(b, 5);

	p[0] = DIRTY_TLV_LIST;
	be32_put(p + 1, count);
}

void
dirty_put_dict(struct dirty_buf *b, uint32_t count)
{
	uint8_t *p = put_space(b, 5);

	p[0] = DIRTY_TLV_DICT;
	be32_put(p + 1, count);
}

static void
put_capped(struct dirty_buf *b, const char *s, size_t n)
{
	dirty_put_string(b, s, (uint32_t)(n > DIRTY_MAX_BLOB ? DIRTY_MAX_BLOB : n));
}

void
dirty_put_error_frame_details(struct dirty_buf *b, uint64_t id,
    const char *error_type, const char *message, size_t message_len,
    const struct dirty_error_details *d)
{
	size_t off = dirty_frame_begin(b, DIRTY_MSG_ERROR, id);
	uint32_t n = 0;

	if (d != NULL)
		n = (d->exception_type != NULL ? 2 : 0) +
		    (d->app_path != NULL ? 2 : 0);
	dirty_put_dict(b, 1);
	dirty_put_cstring(b, "error");
	dirty_put_dict(b, 3);
	dirty_put_cstring(b, "error_type");
	dirty_put_cstring(b, error_type);
	dirty_put_cstring(b, "message");
	put_capped(b, message, message_len);
	dirty_put_cstring(b, "details");
	dirty_put_dict(b, n);
	if (d != NULL && d->exception_type != NULL) {
		dirty_put_cstring(b, "traceback");
		put_capped(b, d->traceback != NULL ? d->traceback : "",
		    d->traceback != NULL ? d->traceback_len : 0);
		dirty_put_cstring(b, "exception_type");
		dirty_put_cstring(b, d->exception_type);
	}
	if (d != NULL && d->app_path != NULL) {
		dirty_put_cstring(b, "app_path");
		put_capped(b, d->app_path, d->app_path_len);
		dirty_put_cstring(b, "action");
		put_capped(b, d->action != NULL ? d->action : "",
		    d->action != NULL ? d->action_len : 0);
	}
	if (dirty_frame_end(b, off) == -1) {
		/* Only a message or traceback near 64 MiB gets here. */
		b->len = off;
		dirty_put_error_frame_details(b, id, error_type,
		    "error too large", 15, NULL);
	}
}

void
dirty_put_error_frame(struct dirty_buf *b, uint64_t id,
    const char *error_type, const char *message)
{
	dirty_put_error_frame_details(b, id, error_type, message,
	    strlen(message), NULL);
}

/* ---- dirty_apps entries ---- */

int
dirty_app_spec_split(const char *spec, size_t *path_len, int *limit)
{
	const char *c1 = strchr(spec, ':'), *c2;
	size_t n;

	*path_len = strlen(spec);
	*limit = 0;
	if (c1 == NULL || c1 == spec || c1[1] == '\0' || c1[1] == ':')
		return -1;
	if ((c2 = strchr(c1 + 1, ':')) == NULL)
		return 0;
	n = strlen(c2 + 1);
	if (n == 0 || n > 9 || strspn(c2 + 1, "0123456789") != n ||
	    atoi(c2 + 1) < 1)
		return -1;
	*path_len = (size_t)(c2 - spec);
	*limit = atoi(c2 + 1);
	return 0;
}

/* ---- UTF-8 ---- */

int
dirty_utf8_valid(const uint8_t *s, size_t n)
{
	const uint8_t *end = s + n;

	while (s < end) {
		uint8_t c = *s;

		if (c < 0x80) {
			/* ASCII fast path, a word at a time. */
			while ((size_t)(end - s) >= 8) {
				uint64_t w;

				memcpy(&w, s, 8);
				if (w & 0x8080808080808080ULL)
					break;
				s += 8;
			}
			while (s < end && *s < 0x80)
				s++;
			continue;
		}
		if (c < 0xC2)		/* continuation byte or overlong 2-byte */
			return 0;
		if (c < 0xE0) {
			if (end - s < 2 || (s[1] & 0xC0) != 0x80)
				return 0;
			s += 2;
			continue;
		}
		if (c < 0xF0) {
			if (end - s < 3 || (s[1] & 0xC0) != 0x80 ||
			    (s[2] & 0xC0) != 0x80)
				return 0;
			if (c == 0xE0 && s[1] < 0xA0)	/* overlong */
				return 0;
			if (c == 0xED && s[1] >= 0xA0)	/* surrogate */
				return 0;
			s += 3;
			continue;
		}
		if (c < 0xF5) {
			if (end - s < 4 || (s[1] & 0xC0) != 0x80 ||
			    (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
				return 0;
			if (c == 0xF0 && s[1] < 0x90)	/* overlong */
				return 0;
			if (c == 0xF4 && s[1] >= 0x90)	/* > U+10FFFF */
				return 0;
			s += 4;
			continue;
		}
		return 0;
	}
	return 1;
}

/* ---- decoding ---- */

void
dirty_cursor_init(struct dirty_cursor *c, const uint8_t *p, size_t len)
{
	c->p = p;
	c->end = p + len;
	c->depth = 0;
	c->error = NULL;
}

static inline int
fail(struct dirty_cursor *c, const char *why)
{
	if (c->error == NULL)
		c->error = why;
	return -1;
}

static inline size_t
left(const struct dirty_cursor *c)
{
	return (size_t)(c->end - c->p);
}

int
dirty_peek_type(const struct dirty_cursor *c)
{
	if (c->error != NULL || c->p >= c->end)
		return -1;
	return *c->p;
}

/* Consume the type byte if it is `want` and `body` more bytes follow. */
static inline int
expect(struct dirty_cursor *c, uint8_t want, size_t body)
{
	if (c->error != NULL)
		return -1;
	if (c->p >= c->end)
		return fail(c, "truncated value: no type byte");
	if (*c->p != want)
		return fail(c, "unexpected value type");
	if (left(c) - 1 < body)
		return fail(c, "truncated value");
	c->p++;
	return 0;
}

int
dirty_get_none(struct dirty_cursor *c)
{
	return expect(c, DIRTY_TLV_NONE, 0);
}

int
dirty_get_bool(struct dirty_cursor *c, int *v)
{
	if (expect(c, DIRTY_TLV_BOOL, 1) == -1)
		return -1;
	if (*c->p > 1) {
		c->p--;
		return fail(c, "bool byte not 0 or 1");
	}
	*v = *c->p++;
	return 0;
}

int
dirty_get_int64(struct dirty_cursor *c, int64_t *v)
{
	if (expect(c, DIRTY_TLV_INT64, 8) == -1)
		return -1;
	*v = (int64_t)be64_get(c->p);
	c->p += 8;
	return 0;
}

int
dirty_get_float64(struct dirty_cursor *c, double *v)
{
	uint64_t u;

	if (expect(c, DIRTY_TLV_FLOAT64, 8) == -1)
		return -1;
	u = be64_get(c->p);
	memcpy(v, &u, sizeof(*v));
	c->p += 8;
	return 0;
}

/* A length-prefixed body: length checked against the maximum and what is
 * left before the pointer moves. */
static inline int
get_blob(struct dirty_cursor *c, uint8_t type, const uint8_t **p,
    uint32_t *n)
{
	uint32_t len;

	if (expect(c, type, 4) == -1)
		return -1;
	len = be32_get(c->p);
	if (len > DIRTY_MAX_BLOB) {
		c->p--;
		return fail(c, "string or bytes too large");
	}
	if (left(c) - 4 < len) {
		c->p--;
		return fail(c, "truncated string or bytes");
	}
	*p = c->p + 4;
	*n = len;
	c->p += 4 + (size_t)len;
	return 0;
}

int
dirty_get_bytes(struct dirty_cursor *c, const uint8_t **p, uint32_t *n)
{
	return get_blob(c, DIRTY_TLV_BYTES, p, n);
}

int
dirty_get_string(struct dirty_cursor *c, const char **s, uint32_t *n)
{
	const uint8_t *p;
	const uint8_t *start = c->p;

	if (get_blob(c, DIRTY_TLV_STRING, &p, n) == -1)
		return -1;
	if (!dirty_utf8_valid(p, *n)) {
		c->p = start;
		return fail(c, "invalid UTF-8 in string");
	}
	*s = (const char *)p;
	return 0;
}

/* `minitem`: the fewest bytes one item can take, so that a count larger
 * than what is left can be refused at once. */
static inline int
get_container(struct dirty_cursor *c, uint8_t type, uint32_t *count,
    size_t minitem)
{
	uint32_t n;

	if (expect(c, type, 4) == -1)
		return -1;
	n = be32_get(c->p);
	if (n > DIRTY_MAX_COUNT) {
		c->p--;
		return fail(c, "list or dict too large");
	}
	if ((left(c) - 4) / minitem < n) {
		c->p--;
		return fail(c, "truncated list or dict");
	}
	if (c->depth >= DIRTY_MAX_DEPTH) {
		c->p--;
		return fail(c, "nesting too deep");
	}
	c->depth++;
	c->p += 4;
	*count = n;
	return 0;
}

int
dirty_get_list(struct dirty_cursor *c, uint32_t *count)
{
	return get_container(c, DIRTY_TLV_LIST, count, 1);
}

int
dirty_get_dict(struct dirty_cursor *c, uint32_t *count)
{
	/* A pair is at least an empty String key (5) and a None (1). */
	return get_container(c, DIRTY_TLV_DICT, count, 6);
}

void
dirty_leave(struct dirty_cursor *c)
{
	if (c->depth > 0)
		c->depth--;
}

int
dirty_skip(struct dirty_cursor *c)
{
	const uint8_t *p;
	const char *s;
	uint32_t n, i, kn;
	int64_t iv;
	double dv;
	int bv;

	switch (dirty_peek_type(c)) {
	case DIRTY_TLV_NONE:
		return dirty_get_none(c);
	case DIRTY_TLV_BOOL:
		return dirty_get_bool(c, &bv);
	case DIRTY_TLV_INT64:
		return dirty_get_int64(c, &iv);
	case DIRTY_TLV_FLOAT64:
		return dirty_get_float64(c, &dv);
	case DIRTY_TLV_BYTES:
		return dirty_get_bytes(c, &p, &n);
	case DIRTY_TLV_STRING:
		return dirty_get_string(c, &s, &n);
	case DIRTY_TLV_LIST:
		if (dirty_get_list(c, &n) == -1)
			return -1;
		for (i = 0; i < n; i++)
			if (dirty_skip(c) == -1)
				return -1;
		dirty_leave(c);
		return 0;
	case DIRTY_TLV_DICT:
		if (dirty_get_dict(c, &n) == -1)
			return -1;
		for (i = 0; i < n; i++) {
			if (dirty_peek_type(c) != DIRTY_TLV_STRING &&
			    dirty_peek_type(c) != -1)
				return fail(c, "dict key is not a string");
			if (dirty_get_string(c, &s, &kn) == -1 ||
			    dirty_skip(c) == -1)
				return -1;
		}
		dirty_leave(c);
		return 0;
	case -1:
		if (c->error != NULL)
			return -1;
		return fail(c, "truncated value: no type byte");
	default:
		return fail(c, "unknown value type");
	}
}

int
dirty_end(struct dirty_cursor *c)
{
	if (c->error != NULL)
		return -1;
	if (c->p != c->end)
		return fail(c, "trailing bytes after value");
	return 0;
}

int
dirty_validate(const uint8_t *p, size_t len, int allow_empty,
    const char **why)
{
	struct dirty_cursor c;

	if (len == 0) {
		if (allow_empty)
			return 0;
		*why = "empty payload";
		return -1;
	}
	dirty_cursor_init(&c, p, len);
	if (dirty_skip(&c) == -1 || dirty_end(&c) == -1) {
		*why = c.error;
		return -1;
	}
	return 0;
}

int
dirty_dict_lookup(const uint8_t *p, size_t len, const char *key,
    struct dirty_cursor *value, const char **why)
{
	struct dirty_cursor c;
	const uint8_t *vstart, *found = NULL, *found_end = NULL;
	const char *k;
	size_t keylen = strlen(key);
	uint32_t n, i, kn;

	dirty_cursor_init(&c, p, len);
	if (dirty_peek_type(&c) != DIRTY_TLV_DICT) {
		*why = len == 0 ? "empty payload" : "payload is not a dict";
		return -1;
	}
	if (dirty_get_dict(&c, &n) == -1)
		goto bad;
	/* Walk the whole payload, so that a found key also means a valid
	 * payload; the last of duplicate keys wins, as in a Python decode. */
	for (i = 0; i < n; i++) {
		if (dirty_peek_type(&c) != DIRTY_TLV_STRING &&
		    dirty_peek_type(&c) != -1) {
			fail(&c, "dict key is not a string");
			goto bad;
		}
		if (dirty_get_string(&c, &k, &kn) == -1)
			goto bad;
		vstart = c.p;
		if (dirty_skip(&c) == -1)
			goto bad;
		if (kn == keylen && memcmp(k, key, keylen) == 0) {
			found = vstart;
			found_end = c.p;
		}
	}
	dirty_leave(&c);
	if (dirty_end(&c) == -1)
		goto bad;
	if (found == NULL)
		return 1;
	dirty_cursor_init(value, found, (size_t)(found_end - found));
	value->depth = 1;
	return 0;
bad:
	*why = c.error;
	return -1;
}
