/*
 * dirty_stash.c — the stash's request handler (see dirty_stash.h): it
 * decodes one STASH payload, runs the op on the tables
 * (dirty_stash_table.c, which owns them) and appends the reply frame.
 * glob patterns (keys op) match String keys with fnmatch(3).
 *
 * dirty_stash_max_bytes: a put or an ensure that would exceed the cap
 * (as dirty_stash_table.c counts it) is refused here, before the tables
 * change, with a StashError naming the setting.
 *
 * Replies are bounded like any frame (DIRTY_MAX_PAYLOAD bytes, lists of at
 * most DIRTY_MAX_COUNT items): a reply that would not fit (keys of a huge
 * table, an error quoting a near-64 MiB key) is answered with a short
 * StashError instead, never with a frame a peer cannot decode.
 *
 * Errors are answered with ERROR frames whose error_type the Python stash
 * client maps to its exceptions: StashTableNotFoundError (details
 * {"table_name"}), StashKeyNotFoundError (details {"table_name", "key"}),
 * StashError (the cap), DirtyError for a request missing op or table.
 *
 * Runs only in the dirty arbiter; never calls Python, never touches a
 * socket (the router sends what it appends).
 */
#include "dirty_stash.h"
#include "dirty_stash_table.h"
#include "dirty_wire.h"
#include "log.h"

#include <fnmatch.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Tables a TABLES reply can list (a List's count limit). */
#define TABLES_MAX	DIRTY_MAX_COUNT

/* ---- replies ---- */

/* A short StashError in place of a reply that cannot be one frame. */
static void
reply_too_large(struct dirty_buf *out, uint64_t id, const char *what)
{
	char msg[256];

	snprintf(msg, sizeof(msg), "Stash reply too large: %s (a reply is "
	    "at most %u bytes and lists at most %u items)", what,
	    DIRTY_MAX_PAYLOAD, DIRTY_MAX_COUNT);
	dirty_put_error_frame(out, id, "StashError", msg);
}

/* Close the frame begun at f.  A payload over DIRTY_MAX_PAYLOAD is taken
 * back whole and answered reply_too_large(): a frame is never sent with
 * a length that does not match its payload. */
static void
reply_end(struct dirty_buf *out, size_t f, uint64_t id)
{
	if (dirty_frame_end(out, f) == 0)
		return;
	out->len = f;
	reply_too_large(out, id, "over the frame size limit");
}

static size_t
reply_begin(struct dirty_buf *out, uint64_t id)
{
	size_t f = dirty_frame_begin(out, DIRTY_MSG_RESPONSE, id);
	dirty_put_dict(out, 1);
	dirty_put_cstring(out, "result");
	return f;
}

static void
reply_bool(struct dirty_buf *out, uint64_t id, int v)
{
	size_t f = reply_begin(out, id);
	dirty_put_bool(out, v);
	reply_end(out, f, id);
}

static void
reply_error(struct dirty_buf *out, uint64_t id, const char *type,
    const char *table, uint32_t tn, const uint8_t *key, uint32_t kn)
{
	char msg[256];
	size_t f;

	if (key != NULL)
		snprintf(msg, sizeof(msg), "Key not found in %.*s",
		    (int)(tn > 200 ? 200 : tn), table);
	else if (table != NULL)
		snprintf(msg, sizeof(msg), "Stash table not found: %.*s",
		    (int)(tn > 200 ? 200 : tn), table);
	else
		snprintf(msg, sizeof(msg), "%s", type);
	f = dirty_frame_begin(out, DIRTY_MSG_ERROR, id);
	dirty_put_dict(out, 1);
	dirty_put_cstring(out, "error");
	dirty_put_dict(out, 3);
	dirty_put_cstring(out, "error_type");
	dirty_put_cstring(out, table != NULL ? type : DIRTY_E_ERROR);
	dirty_put_cstring(out, "message");
	dirty_put_cstring(out, table != NULL ? msg : type);
	dirty_put_cstring(out, "details");
	dirty_put_dict(out, (table != NULL) + (key != NULL));
	if (table != NULL) {
		dirty_put_cstring(out, "table_name");
		dirty_put_string(out, table, tn);
	}
	if (key != NULL) {
		dirty_put_cstring(out, "key");
		dirty_buf_append(out, key, kn);
	}
	reply_end(out, f, id);
}

/* A put refused by dirty_stash_max_bytes: StashError naming the setting. */
static void
reply_full(struct dirty_buf *out, uint64_t id, uint64_t need)
{
	char msg[256];
	size_t f;

	snprintf(msg, sizeof(msg), "Stash is full: %" PRIu64 " more bytes "
	    "would exceed dirty_stash_max_bytes (%" PRIu64 " bytes, %" PRIu64
	    " in use, table names and per-entry overhead included)", need,
	    stash_max_bytes(), stash_total_bytes());
	f = dirty_frame_begin(out, DIRTY_MSG_ERROR, id);
	dirty_put_dict(out, 1);
	dirty_put_cstring(out, "error");
	dirty_put_dict(out, 3);
	dirty_put_cstring(out, "error_type");
	dirty_put_cstring(out, "StashError");
	dirty_put_cstring(out, "message");
	dirty_put_cstring(out, msg);
	dirty_put_cstring(out, "details");
	dirty_put_dict(out, 2);
	dirty_put_cstring(out, "max_bytes");
	dirty_put_int64(out, (int64_t)stash_max_bytes());
	dirty_put_cstring(out, "used_bytes");
	dirty_put_int64(out, (int64_t)stash_total_bytes());
	reply_end(out, f, id);
}

static void
reply_too_many_tables(struct dirty_buf *out, uint64_t id)
{
	char msg[128];

	snprintf(msg, sizeof(msg), "Too many stash tables (at most %u)",
	    TABLES_MAX);
	dirty_put_error_frame(out, id, "StashError", msg);
}

/* Locate field `name` of the payload dict: its encoded bytes. 0 found. */
static int
field_raw(const uint8_t *p, size_t len, const char *name,
    const uint8_t **v, uint32_t *n)
{
	struct dirty_cursor c;
	const char *why;

	if (dirty_dict_lookup(p, len, name, &c, &why) != 0)
		return -1;
	if (dirty_peek_type(&c) == DIRTY_TLV_NONE && strcmp(name, "pattern") == 0)
		return -1;	/* pattern None: no pattern */
	*v = c.p;
	if (dirty_skip(&c) == -1)
		return -1;
	*n = (uint32_t)(c.p - *v);
	return 0;
}

/* The keys of t matching pattern (all when NULL), in insertion order.
 * Stops as soon as the list would exceed a frame (DIRTY_MAX_COUNT items
 * or DIRTY_MAX_PAYLOAD bytes) and answers StashError instead, so a huge
 * table never costs more than one frame's worth of buffer. */
static void
reply_keys(struct dirty_buf *out, uint64_t id, const struct stash_table *t,
    const char *pattern)
{
	size_t f = reply_begin(out, id);
	size_t count_at;
	uint32_t count = 0;

	dirty_put_list(out, 0);
	count_at = out->len - 4;
	for (uint32_t i = 0; t != NULL && i < t->nrecs; i++) {
		struct stash_rec x;
		if (t->recs[i] == NULL)
			continue;
		stash_rec_read(t->recs[i], &x);
		if (pattern != NULL) {
			struct dirty_cursor c;
			const char *s;
			uint32_t n;
			dirty_cursor_init(&c, x.key, x.keylen);
			if (dirty_peek_type(&c) != DIRTY_TLV_STRING ||
			    dirty_get_string(&c, &s, &n) == -1 ||
			    memchr(s, '\0', n) != NULL)
				continue;
			char *k = xmalloc(n + 1);
			memcpy(k, s, n);
			k[n] = '\0';
			int match = fnmatch(pattern, k, 0) == 0;
			free(k);
			if (!match)
				continue;
		}
		if (count == DIRTY_MAX_COUNT ||
		    out->len - f - DIRTY_HEADER_SIZE + x.keylen >
		    DIRTY_MAX_PAYLOAD) {
			out->len = f;
			reply_too_large(out, id, count == DIRTY_MAX_COUNT ?
			    "more keys match than one list can hold" :
			    "the matching keys exceed the frame size limit");
			return;
		}
		dirty_buf_append(out, x.key, x.keylen);
		count++;
	}
	out->data[count_at] = (uint8_t)(count >> 24);
	out->data[count_at + 1] = (uint8_t)(count >> 16);
	out->data[count_at + 2] = (uint8_t)(count >> 8);
	out->data[count_at + 3] = (uint8_t)count;
	reply_end(out, f, id);
}

void
dirty_stash_handle(const uint8_t *payload, size_t len, uint64_t id,
    struct dirty_buf *out)
{
	struct dirty_cursor c;
	const char *why, *table = NULL;
	uint32_t tn = 0, kn = 0, vn = 0;
	const uint8_t *key = NULL, *value = NULL;
	int64_t op;
	struct stash_table *t;
	size_t f;

	if (dirty_dict_lookup(payload, len, "op", &c, &why) != 0 ||
	    dirty_get_int64(&c, &op) == -1) {
		reply_error(out, id, "Invalid stash request: no op", NULL, 0,
		    NULL, 0);
		return;
	}
	if (dirty_dict_lookup(payload, len, "table", &c, &why) == 0 &&
	    dirty_get_string(&c, &table, &tn) == -1)
		table = NULL;
	if (table == NULL && op != DIRTY_STASH_TABLES) {
		reply_error(out, id, "Invalid stash request: no table name",
		    NULL, 0, NULL, 0);
		return;
	}
	int has_key = field_raw(payload, len, "key", &key, &kn) == 0;
	int has_value = field_raw(payload, len, "value", &value, &vn) == 0;
	t = table != NULL ? stash_table_find(table, tn) : NULL;

	switch (op) {
	case DIRTY_STASH_PUT:
		if (!has_key || !has_value) {
			reply_error(out, id, "Invalid stash request: put needs "
			    "key and value", NULL, 0, NULL, 0);
			return;
		}
		if (t == NULL && stash_ntables() >= TABLES_MAX) {
			reply_too_many_tables(out, id);
			return;
		}
		if (stash_max_bytes() > 0) {
			int64_t d = stash_table_put_delta(t, tn, key, kn, vn);
			if (d > 0 &&
			    stash_total_bytes() + (uint64_t)d > stash_max_bytes()) {
				reply_full(out, id, (uint64_t)d);
				return;
			}
		}
		stash_table_put(stash_table_ensure(table, tn), key, kn, value, vn);
		reply_bool(out, id, 1);
		return;
	case DIRTY_STASH_GET: {
		const uint8_t *r;
		struct stash_rec x;
		if (!has_key) {
			reply_error(out, id, "Invalid stash request: get needs "
			    "a key", NULL, 0, NULL, 0);
			return;
		}
		if (t == NULL) {
			reply_error(out, id, "StashTableNotFoundError", table,
			    tn, NULL, 0);
			return;
		}
		if ((r = stash_table_get(t, key, kn)) == NULL) {
			reply_error(out, id, "StashKeyNotFoundError", table, tn,
			    key, kn);
			return;
		}
		stash_rec_read(r, &x);
		f = reply_begin(out, id);
		dirty_buf_append(out, x.value, x.valuelen);
		reply_end(out, f, id);
		return;
	}
	case DIRTY_STASH_DELETE:
		reply_bool(out, id, t != NULL && has_key &&
		    stash_table_delete(t, key, kn));
		return;
	case DIRTY_STASH_KEYS: {
		const char *pat = NULL;
		uint32_t pn;
		char *pattern = NULL;
		if (dirty_dict_lookup(payload, len, "pattern", &c, &why) == 0 &&
		    dirty_peek_type(&c) == DIRTY_TLV_STRING &&
		    dirty_get_string(&c, &pat, &pn) == 0) {
			pattern = xmalloc(pn + 1);
			memcpy(pattern, pat, pn);
			pattern[pn] = '\0';
		}
		reply_keys(out, id, t, pattern);
		free(pattern);
		return;
	}
	case DIRTY_STASH_CLEAR:
		if (t != NULL)
			stash_table_clear(t);
		reply_bool(out, id, 1);
		return;
	case DIRTY_STASH_INFO:
		if (t == NULL) {
			reply_error(out, id, "StashTableNotFoundError", table,
			    tn, NULL, 0);
			return;
		}
		f = reply_begin(out, id);
		dirty_put_dict(out, 2);
		dirty_put_cstring(out, "size");
		dirty_put_int64(out, t->live);
		dirty_put_cstring(out, "table");
		dirty_put_string(out, table, tn);
		reply_end(out, f, id);
		return;
	case DIRTY_STASH_ENSURE:
		if (t == NULL && stash_ntables() >= TABLES_MAX) {
			reply_too_many_tables(out, id);
			return;
		}
		if (t == NULL && stash_max_bytes() > 0 &&
		    stash_total_bytes() + stash_table_cost(tn) > stash_max_bytes()) {
			reply_full(out, id, stash_table_cost(tn));
			return;
		}
		stash_table_ensure(table, tn);
		reply_bool(out, id, 1);
		return;
	case DIRTY_STASH_DELETE_TABLE:
		if (t != NULL)
			stash_table_remove(t);
		reply_bool(out, id, t != NULL);
		return;
	case DIRTY_STASH_TABLES:
		f = reply_begin(out, id);
		dirty_put_list(out, (uint32_t)stash_ntables());
		for (size_t i = 0; i < stash_ntables(); i++)
			dirty_put_string(out, stash_table_at(i)->name,
			    stash_table_at(i)->name_len);
		reply_end(out, f, id);
		return;
	case DIRTY_STASH_EXISTS:
		reply_bool(out, id, t != NULL &&
		    (!has_key || stash_table_get(t, key, kn) != NULL));
		return;
	default:
		reply_error(out, id, "Invalid stash request: unknown op", NULL,
		    0, NULL, 0);
		return;
	}
}
