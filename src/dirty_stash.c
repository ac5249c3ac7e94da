/*
 * dirty_stash.c — the stash tables of the dirty arbiter (see dirty_stash.h).
 *
 * Owns every table and entry.  A table is an insertion-ordered array of
 * entries (so keys() lists keys in the order they were first put, as a
 * Python dict would) plus an open-addressing index of entry numbers keyed
 * by a hash of the key's encoded TLV bytes.  Deleted entries leave a
 * tombstone in the array until the next rebuild.
 *
 * Keys and values are stored as the exact encoded TLV bytes received, and
 * sent back byte for byte; two keys are the same key when their encodings
 * are equal.  glob patterns (keys op) match String keys with fnmatch(3).
 *
 * Errors are answered with ERROR frames whose error_type the Python stash
 * client maps to its exceptions: StashTableNotFoundError (details
 * {"table_name"}), StashKeyNotFoundError (details {"table_name", "key"}),
 * DirtyError for a request missing op or table.
 *
 * Runs only in the dirty arbiter; never calls Python.
 */
#include "dirty_stash.h"
#include "dirty_wire.h"
#include "log.h"

#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct stash_entry {
	uint8_t *key;		/* encoded TLV; NULL: deleted */
	uint32_t keylen;
	uint8_t *value;		/* encoded TLV */
	uint32_t valuelen;
	uint32_t hash;
};

struct stash_table {
	char *name;
	struct stash_entry *entries;
	uint32_t nentries;	/* used slots, tombstones included */
	uint32_t cap;
	uint32_t live;
	uint32_t *index;	/* entry number + 1; 0 = empty */
	uint32_t index_cap;	/* power of two */
};

static struct stash_table *tables;
static size_t ntables;

static uint32_t
hash_bytes(const uint8_t *p, size_t n)
{
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 16777619u;
	}
	return h;
}

static void
table_free(struct stash_table *t)
{
	for (uint32_t i = 0; i < t->nentries; i++) {
		free(t->entries[i].key);
		free(t->entries[i].value);
	}
	free(t->entries);
	free(t->index);
	free(t->name);
	memset(t, 0, sizeof(*t));
}

void
dirty_stash_init(void)
{
	tables = NULL;
	ntables = 0;
}

void
dirty_stash_reset(void)
{
	for (size_t i = 0; i < ntables; i++)
		table_free(&tables[i]);
	free(tables);
	dirty_stash_init();
}

static struct stash_table *
table_find(const char *name, uint32_t n)
{
	for (size_t i = 0; i < ntables; i++)
		if (strlen(tables[i].name) == n &&
		    memcmp(tables[i].name, name, n) == 0)
			return &tables[i];
	return NULL;
}

static struct stash_table *
table_ensure(const char *name, uint32_t n)
{
	struct stash_table *t = table_find(name, n);

	if (t != NULL)
		return t;
	tables = xreallocarray(tables, ntables + 1, sizeof(*tables));
	t = &tables[ntables++];
	memset(t, 0, sizeof(*t));
	t->name = xmalloc(n + 1);
	memcpy(t->name, name, n);
	t->name[n] = '\0';
	return t;
}

static void
table_remove(struct stash_table *t)
{
	size_t i = (size_t)(t - tables);

	table_free(t);
	memmove(&tables[i], &tables[i + 1], (ntables - i - 1) * sizeof(*tables));
	ntables--;
}

/* Rebuild the index (and drop tombstones) with room for `want` entries. */
static void
table_rehash(struct stash_table *t, uint32_t want)
{
	uint32_t j = 0, cap = 8;

	for (uint32_t i = 0; i < t->nentries; i++)
		if (t->entries[i].key != NULL)
			t->entries[j++] = t->entries[i];
	t->nentries = j;
	while (cap < want * 2)
		cap *= 2;
	free(t->index);
	t->index = xcalloc(cap, sizeof(*t->index));
	t->index_cap = cap;
	for (uint32_t i = 0; i < t->nentries; i++) {
		uint32_t s = t->entries[i].hash & (cap - 1);
		while (t->index[s] != 0)
			s = (s + 1) & (cap - 1);
		t->index[s] = i + 1;
	}
}

/* The index slot holding key, or the empty slot where it would go. */
static uint32_t
table_slot(const struct stash_table *t, const uint8_t *key, uint32_t n,
    uint32_t h)
{
	uint32_t s = h & (t->index_cap - 1);

	for (;;) {
		uint32_t e = t->index[s];
		if (e == 0)
			return s;
		const struct stash_entry *en = &t->entries[e - 1];
		if (en->key != NULL && en->hash == h && en->keylen == n &&
		    memcmp(en->key, key, n) == 0)
			return s;
		s = (s + 1) & (t->index_cap - 1);
	}
}

static struct stash_entry *
table_get(const struct stash_table *t, const uint8_t *key, uint32_t n)
{
	if (t->index_cap == 0)
		return NULL;
	uint32_t e = t->index[table_slot(t, key, n, hash_bytes(key, n))];
	return e != 0 ? &t->entries[e - 1] : NULL;
}

static void
table_put(struct stash_table *t, const uint8_t *key, uint32_t n,
    const uint8_t *value, uint32_t vn)
{
	uint32_t h = hash_bytes(key, n);
	struct stash_entry *en;

	if (t->index_cap == 0 || (t->nentries + 1) * 2 > t->index_cap)
		table_rehash(t, t->live + 1);
	uint32_t s = table_slot(t, key, n, h);
	if (t->index[s] != 0) {
		en = &t->entries[t->index[s] - 1];
		free(en->value);
	} else {
		if (t->nentries == t->cap) {
			t->cap = t->cap ? t->cap * 2 : 8;
			t->entries = xreallocarray(t->entries, t->cap,
			    sizeof(*t->entries));
		}
		en = &t->entries[t->nentries++];
		en->key = xmalloc(n ? n : 1);
		memcpy(en->key, key, n);
		en->keylen = n;
		en->hash = h;
		t->index[s] = t->nentries;
		t->live++;
	}
	en->value = xmalloc(vn ? vn : 1);
	memcpy(en->value, value, vn);
	en->valuelen = vn;
}

static int
table_delete(struct stash_table *t, const uint8_t *key, uint32_t n)
{
	struct stash_entry *en = table_get(t, key, n);

	if (en == NULL)
		return 0;
	free(en->key);
	free(en->value);
	en->key = en->value = NULL;
	t->live--;
	/* The index keeps pointing at the tombstone, so probes continue past
	 * it; the next growth rehash drops it. */
	return 1;
}

static void
table_clear(struct stash_table *t)
{
	char *name = t->name;

	t->name = NULL;
	table_free(t);
	t->name = name;
}

/* ---- replies ---- */

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
	dirty_frame_end(out, f);
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
	dirty_frame_end(out, f);
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

static void
reply_keys(struct dirty_buf *out, uint64_t id, const struct stash_table *t,
    const char *pattern)
{
	size_t f = reply_begin(out, id);
	size_t count_at;
	uint32_t count = 0;

	dirty_put_list(out, 0);
	count_at = out->len - 4;
	for (uint32_t i = 0; t != NULL && i < t->nentries; i++) {
		const struct stash_entry *en = &t->entries[i];
		if (en->key == NULL)
			continue;
		if (pattern != NULL) {
			struct dirty_cursor c;
			const char *s;
			uint32_t n;
			dirty_cursor_init(&c, en->key, en->keylen);
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
		dirty_buf_append(out, en->key, en->keylen);
		count++;
	}
	out->data[count_at] = (uint8_t)(count >> 24);
	out->data[count_at + 1] = (uint8_t)(count >> 16);
	out->data[count_at + 2] = (uint8_t)(count >> 8);
	out->data[count_at + 3] = (uint8_t)count;
	dirty_frame_end(out, f);
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
	t = table != NULL ? table_find(table, tn) : NULL;

	switch (op) {
	case DIRTY_STASH_PUT:
		if (!has_key || !has_value) {
			reply_error(out, id, "Invalid stash request: put needs "
			    "key and value", NULL, 0, NULL, 0);
			return;
		}
		table_put(table_ensure(table, tn), key, kn, value, vn);
		reply_bool(out, id, 1);
		return;
	case DIRTY_STASH_GET: {
		struct stash_entry *en;
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
		if ((en = table_get(t, key, kn)) == NULL) {
			reply_error(out, id, "StashKeyNotFoundError", table, tn,
			    key, kn);
			return;
		}
		f = reply_begin(out, id);
		dirty_buf_append(out, en->value, en->valuelen);
		dirty_frame_end(out, f);
		return;
	}
	case DIRTY_STASH_DELETE:
		reply_bool(out, id, t != NULL && has_key &&
		    table_delete(t, key, kn));
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
			table_clear(t);
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
		dirty_frame_end(out, f);
		return;
	case DIRTY_STASH_ENSURE:
		table_ensure(table, tn);
		reply_bool(out, id, 1);
		return;
	case DIRTY_STASH_DELETE_TABLE:
		if (t != NULL)
			table_remove(t);
		reply_bool(out, id, t != NULL);
		return;
	case DIRTY_STASH_TABLES:
		f = reply_begin(out, id);
		dirty_put_list(out, (uint32_t)ntables);
		for (size_t i = 0; i < ntables; i++)
			dirty_put_cstring(out, tables[i].name);
		dirty_frame_end(out, f);
		return;
	case DIRTY_STASH_EXISTS:
		reply_bool(out, id, t != NULL &&
		    (!has_key || table_get(t, key, kn) != NULL));
		return;
	default:
		reply_error(out, id, "Invalid stash request: unknown op", NULL,
		    0, NULL, 0);
		return;
	}
}
