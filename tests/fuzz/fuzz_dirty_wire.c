/*
 * fuzz_dirty_wire.c — libFuzzer target for the dirty protocol decoder
 * (dirty_wire.c): header decode, dirty_validate, a full walk with the
 * cursor API, and dirty_dict_lookup, on arbitrary bytes; and the frame
 * reassembler (dirty_reader) reading the input as a stream.
 *
 * Invariants checked (abort on violation): the cursor walk and
 * dirty_validate agree; a walk never moves outside the input; a found
 * dict value lies inside the payload and re-validates; whatever is
 * accepted re-encodes to the same bytes; the reader, fed the input in
 * chunks or in place in steps of any size, hands out exactly the frames a
 * plain walk of the headers finds, byte for byte, and then stops at the
 * same place (a bad header, or a partial frame).
 */
#include <stdlib.h>
#include <string.h>

#include "dirty_wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Walk one value with the typed readers, re-encoding it into `out`. */
static int
walk(struct dirty_cursor *c, struct dirty_buf *out)
{
	const uint8_t *bp;
	const char *s;
	uint32_t n, i;
	int64_t iv;
	double dv;
	int bv;

	switch (dirty_peek_type(c)) {
	case DIRTY_TLV_NONE:
		if (dirty_get_none(c) == -1)
			return -1;
		dirty_put_none(out);
		return 0;
	case DIRTY_TLV_BOOL:
		if (dirty_get_bool(c, &bv) == -1)
			return -1;
		if (bv != 0 && bv != 1)
			abort();
		dirty_put_bool(out, bv);
		return 0;
	case DIRTY_TLV_INT64:
		if (dirty_get_int64(c, &iv) == -1)
			return -1;
		dirty_put_int64(out, iv);
		return 0;
	case DIRTY_TLV_FLOAT64:
		if (dirty_get_float64(c, &dv) == -1)
			return -1;
		dirty_put_float64(out, dv);
		return 0;
	case DIRTY_TLV_BYTES:
		if (dirty_get_bytes(c, &bp, &n) == -1)
			return -1;
		if (bp + n != c->p)
			abort();
		dirty_put_bytes(out, bp, n);
		return 0;
	case DIRTY_TLV_STRING:
		if (dirty_get_string(c, &s, &n) == -1)
			return -1;
		if (!dirty_utf8_valid((const uint8_t *)s, n))
			abort();
		dirty_put_string(out, s, n);
		return 0;
	case DIRTY_TLV_LIST:
		if (dirty_get_list(c, &n) == -1)
			return -1;
		if (c->depth > DIRTY_MAX_DEPTH)
			abort();
		dirty_put_list(out, n);
		for (i = 0; i < n; i++)
			if (walk(c, out) == -1)
				return -1;
		dirty_leave(c);
		return 0;
	case DIRTY_TLV_DICT:
		if (dirty_get_dict(c, &n) == -1)
			return -1;
		if (c->depth > DIRTY_MAX_DEPTH)
			abort();
		dirty_put_dict(out, n);
		for (i = 0; i < n; i++) {
			uint32_t kn;
			if (dirty_get_string(c, &s, &kn) == -1)
				return -1;
			dirty_put_string(out, s, kn);
			if (walk(c, out) == -1)
				return -1;
		}
		dirty_leave(c);
		return 0;
	default:
		/* unknown type or end: the skipper must refuse it too */
		return dirty_skip(c);
	}
}

/* The reference: whole frames from offset 0, header by header.  Returns
 * how many; *stop is where it stopped, *bad whether at a bad header. */
static size_t
split_frames(const uint8_t *p, size_t len, size_t *stop, int *bad)
{
	struct dirty_header h;
	const char *why;
	size_t off = 0, n = 0;

	*bad = 0;
	while (len - off >= DIRTY_HEADER_SIZE) {
		if (dirty_header_decode(p + off, &h, &why) == -1) {
			*bad = 1;
			break;
		}
		if (len - off - DIRTY_HEADER_SIZE < h.length)
			break;
		off += DIRTY_HEADER_SIZE + h.length;
		n++;
	}
	*stop = off;
	return n;
}

/* Take every whole frame from r; each must be the input's next one. */
static int
drain(struct dirty_reader *r, const uint8_t *data, size_t *off, size_t *n)
{
	struct dirty_header h;
	const uint8_t *frame;
	const char *why = NULL;
	int got;

	while ((got = dirty_reader_next(r, &h, &frame, &why)) == 1) {
		size_t flen = DIRTY_HEADER_SIZE + (size_t)h.length;
		if (memcmp(frame, data + *off, flen) != 0)
			abort();
		*off += flen;
		(*n)++;
	}
	if (got == -1 && why == NULL)
		abort();
	return got;
}

static void
check_reader(const uint8_t *data, size_t size)
{
	size_t stop, nref, off, n, step, left;
	int bad, got = 0;
	struct dirty_reader r;
	uint8_t *scratch;

	nref = split_frames(data, size, &stop, &bad);
	step = size > 0 ? (size_t)data[size - 1] % 61 + 1 : 1;

	/* from chunks copied into a scratch buffer that is then spoilt */
	dirty_reader_init(&r);
	scratch = malloc(step);
	off = n = 0;
	for (size_t at = 0; at < size && got != -1; at += step) {
		size_t k = size - at < step ? size - at : step;
		memcpy(scratch, data + at, k);
		dirty_reader_feed(&r, scratch, k);
		got = drain(&r, data, &off, &n);
		dirty_reader_keep(&r);
		memset(scratch, 0xa5, step);
		dirty_reader_trim(&r, step & 1 ? 0 : 4096);
	}
	free(scratch);
	dirty_reader_peek(&r, &left);
	if (n != nref || off != stop || (got == -1) != bad ||
	    (!bad && left != size - stop))
		abort();
	dirty_reader_free(&r);

	/* in place, by the same steps */
	dirty_reader_init(&r);
	off = n = 0;
	got = 0;
	for (size_t at = 0; at < size && got != -1;) {
		size_t room, k = size - at < step ? size - at : step;
		uint8_t *p = dirty_reader_space(&r, step, &room);
		if (room < step)
			abort();
		memcpy(p, data + at, k);
		dirty_reader_commit(&r, k);
		at += k;
		got = drain(&r, data, &off, &n);
	}
	if (n != nref || off != stop || (got == -1) != bad)
		abort();
	dirty_reader_free(&r);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dirty_header h;
	struct dirty_cursor c, v;
	struct dirty_buf out;
	const uint8_t *payload;
	const char *why = NULL;
	size_t plen;
	int valid, walked, rc;
	static const char *keys[] = { "app_path", "action", "args", "kwargs",
	    "result", "data", "error", "op", "table", "" };

	/* Header decode on the first 16 bytes, when there are that many. */
	if (size >= DIRTY_HEADER_SIZE) {
		if (dirty_header_decode(data, &h, &why) == 0) {
			if (h.length > DIRTY_MAX_PAYLOAD)
				abort();
		} else if (why == NULL)
			abort();
		payload = data + DIRTY_HEADER_SIZE;
		plen = size - DIRTY_HEADER_SIZE;
	} else {
		payload = data;
		plen = size;
	}

	/* The payload part and the whole input both go through the codec. */
	for (int pass = 0; pass < 2; pass++) {
		const uint8_t *p = pass ? data : payload;
		size_t len = pass ? size : plen;

		why = NULL;
		valid = dirty_validate(p, len, 0, &why) == 0;
		if (!valid && why == NULL)
			abort();

		dirty_buf_init(&out);
		dirty_cursor_init(&c, p, len);
		walked = walk(&c, &out) == 0 && dirty_end(&c) == 0;
		if (c.p < p || c.p > p + len)
			abort();
		if (walked != valid)
			abort();
		if (!walked && c.error == NULL)
			abort();
		if (walked && (out.len != len || memcmp(out.data, p, len) != 0))
			abort();
		dirty_buf_free(&out);

		for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
			why = NULL;
			rc = dirty_dict_lookup(p, len, keys[k], &v, &why);
			if (rc == -1 && why == NULL)
				abort();
			if (rc != -1 && !valid)
				abort();	/* lookup validates the whole */
			if (rc == 0) {
				if (v.p < p || v.end > p + len || v.p >= v.end)
					abort();
				if (dirty_skip(&v) == -1 || dirty_end(&v) == -1)
					abort();
			}
		}
	}
	return 0;
}
