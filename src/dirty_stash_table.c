/*
 * dirty_stash_table.c — the stash's storage: its tables, their records,
 * indexes and arenas, and the count dirty_stash_max_bytes caps.  The
 * request handler (dirty_stash.c) decodes STASH messages and calls in
 * here (dirty_stash_table.h); this file knows nothing of messages and
 * replies, and never refuses anything: the handler checks the cap first.
 *
 * Owns every table and entry.  Keys and values are stored as the exact
 * encoded TLV bytes received, and handed back byte for byte; two keys are
 * the same key when their encodings are equal.
 *
 * Memory (lean on purpose: a million small keys must cost less than twice
 * their encoded size).  A record is varint(keylen) varint(valuelen), the
 * key bytes, the value bytes.  Small records are appended to the table's
 * arena (blocks growing from 4 KiB to 1 MiB, no per-record malloc
 * header); a record larger than RECORD_LARGE is malloc'ed alone (its size
 * says so, no flag needed) and freed as soon as it dies.  A table is then:
 *   recs[]   one pointer per entry, in insertion order (keys() lists keys
 *            in the order they were first put, as a Python dict would);
 *            NULL = deleted (a tombstone until the next rebuild)
 *   index[]  open addressing (linear probing, load <= 3/4) of entry
 *            number + 1, by a hash of the key bytes (no hash stored: the
 *            key is compared, the hash recomputed on rebuild)
 * Tables themselves are found through a second index of the same kind
 * (by name, see stash_table_find()).
 * The hash is SipHash-1-3 keyed with 16 random bytes drawn from
 * getrandom() when the stash starts (each arbiter has its own key), so a
 * client cannot choose keys that all land in one probe chain: unkeyed,
 * 65,536 crafted keys cost every put a walk over all of them.
 * An overwrite with a value of the same length is done in place; other
 * overwrites and deletes leave dead bytes in the arena, reclaimed by a
 * compaction (copy of the live records) once they outweigh the live ones.
 *
 * What dirty_stash_max_bytes counts:
 *   per table  its name's bytes + TABLE_COST (the table's own state)
 *   per entry  its key's and value's encoded bytes + ENTRY_COST (the
 *              record's length prefixes, its recs[] pointer and its
 *              share of the index, rounded up)
 * so neither long table names nor many tiny entries get past the cap.
 *
 * Runs only in the dirty arbiter; never calls Python.
 */
#include "dirty_stash.h"
#include "dirty_stash_table.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/random.h>

#define BLOCK_MIN	(4u * 1024)
#define BLOCK_MAX	(1024u * 1024)
#define RECORD_LARGE	(64u * 1024)	/* larger records are malloc'ed alone */
#define COMPACT_MIN	(64u * 1024)	/* dead arena bytes worth a compaction */
/* What dirty_stash_max_bytes charges beyond the encoded keys and values
 * (see the top of this file): a table's struct and slot in tables[] is
 * about 100 bytes; an entry's two length varints (2-10 bytes), recs[]
 * pointer (8, up to 12 with the 1.5x growth slack) and index slots (4
 * bytes at a load of 3/8 to 3/4: 5-11) come to 15-33, 24 typical. */
#define TABLE_COST	128u
#define ENTRY_COST	24u

static struct stash_table *tables;
static size_t ntables, tables_cap;	/* tables[] grows by doubling */
static uint32_t *tables_index;		/* see stash_table_find() */
static size_t tables_index_cap;		/* power of two, or 0 */
static uint64_t total_bytes, max_bytes;	/* as counted for the cap */
static uint8_t hash_key[16];		/* SipHash key, random per arbiter */

static uint64_t
entry_cost(uint32_t kn, uint32_t vn)
{
	return (uint64_t)kn + vn + ENTRY_COST;
}

uint64_t
stash_table_cost(uint32_t name_len)
{
	return (uint64_t)name_len + TABLE_COST;
}

/* ---- records ---- */

static size_t
varint_put(uint8_t *p, uint32_t v)
{
	size_t n = 0;

	while (v >= 0x80) {
		p[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (uint8_t)v;
	return n;
}

static size_t
varint_len(uint32_t v)
{
	size_t n = 1;

	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

static const uint8_t *
varint_get(const uint8_t *p, uint32_t *v)
{
	uint32_t r = 0;
	int shift = 0;

	for (;;) {
		uint8_t b = *p++;
		r |= (uint32_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			break;
		shift += 7;
	}
	*v = r;
	return p;
}

void
stash_rec_read(const uint8_t *r, struct stash_rec *out)
{
	const uint8_t *p = varint_get(r, &out->keylen);

	p = varint_get(p, &out->valuelen);
	out->key = p;
	out->value = p + out->keylen;
	out->size = (size_t)(out->value + out->valuelen - r);
}

static size_t
rec_size(uint32_t kn, uint32_t vn)
{
	return varint_len(kn) + varint_len(vn) + kn + vn;
}

static void
rec_write(uint8_t *r, const uint8_t *key, uint32_t kn, const uint8_t *value,
    uint32_t vn)
{
	r += varint_put(r, kn);
	r += varint_put(r, vn);
	memcpy(r, key, kn);
	memcpy(r + kn, value, vn);
}

/* Room for a record of `size` bytes: in the arena, or alone if large. */
static uint8_t *
rec_alloc(struct stash_table *t, size_t size)
{
	if (size > RECORD_LARGE)
		return xmalloc(size);
	if (t->nblocks == 0 || t->cur_cap - t->cur_used < size) {
		size_t cap = t->cur_cap ? t->cur_cap * 2 : BLOCK_MIN;
		if (cap > BLOCK_MAX)
			cap = BLOCK_MAX;
		t->blocks = xreallocarray(t->blocks, t->nblocks + 1,
		    sizeof(*t->blocks));
		t->blocks[t->nblocks++] = xmalloc(cap);
		t->cur_cap = cap;
		t->cur_used = 0;
	}
	uint8_t *r = t->blocks[t->nblocks - 1] + t->cur_used;
	t->cur_used += size;
	t->arena_live += size;
	return r;
}

/* A record is no longer referenced. */
static void
rec_release(struct stash_table *t, uint8_t *r)
{
	struct stash_rec x;

	stash_rec_read(r, &x);
	t->bytes -= entry_cost(x.keylen, x.valuelen);
	total_bytes -= entry_cost(x.keylen, x.valuelen);
	if (x.size > RECORD_LARGE)
		free(r);
	else {
		t->dead += x.size;
		t->arena_live -= x.size;
	}
}

/* ---- tables ---- */

/* SipHash (Aumasson and Bernstein), written from the paper's
 * description: four 64-bit lanes, message words read little-endian,
 * c_rounds per word and d_rounds to finish.  The stash uses 1-3. */
#define ROTL64(x, b)	(((x) << (b)) | ((x) >> (64 - (b))))

static inline uint64_t
le64_get(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static inline void
sip_rounds(uint64_t v[4], int n)
{
	while (n-- > 0) {
		v[0] += v[1]; v[1] = ROTL64(v[1], 13); v[1] ^= v[0];
		v[0] = ROTL64(v[0], 32);
		v[2] += v[3]; v[3] = ROTL64(v[3], 16); v[3] ^= v[2];
		v[0] += v[3]; v[3] = ROTL64(v[3], 21); v[3] ^= v[0];
		v[2] += v[1]; v[1] = ROTL64(v[1], 17); v[1] ^= v[2];
		v[2] = ROTL64(v[2], 32);
	}
}

uint64_t
dirty_stash_siphash(const uint8_t key[16], const void *data, size_t n,
    int c_rounds, int d_rounds)
{
	const uint8_t *p = data;
	uint64_t k0 = le64_get(key), k1 = le64_get(key + 8);
	uint64_t v[4] = {
		k0 ^ 0x736f6d6570736575ull, k1 ^ 0x646f72616e646f6dull,
		k0 ^ 0x6c7967656e657261ull, k1 ^ 0x7465646279746573ull,
	};
	uint64_t m;
	size_t i;

	for (i = 0; i + 8 <= n; i += 8) {
		m = le64_get(p + i);
		v[3] ^= m;
		sip_rounds(v, c_rounds);
		v[0] ^= m;
	}
	m = (uint64_t)(n & 0xff) << 56;
	for (size_t j = 0; i + j < n; j++)
		m |= (uint64_t)p[i + j] << (8 * j);
	v[3] ^= m;
	sip_rounds(v, c_rounds);
	v[0] ^= m;
	v[2] ^= 0xff;
	sip_rounds(v, d_rounds);
	return v[0] ^ v[1] ^ v[2] ^ v[3];
}

static uint32_t
hash_bytes(const uint8_t *p, size_t n)
{
	return (uint32_t)dirty_stash_siphash(hash_key, p, n, 1, 3);
}

/* A fresh random hash key.  getrandom() cannot fail on Linux >= 3.17 for
 * 16 bytes once the pool is ready; should it, the clock and pid still
 * make the key differ per arbiter (a warning says so). */
static void
hash_key_init(void)
{
	ssize_t got = 0;

	while (got < (ssize_t)sizeof(hash_key)) {
		ssize_t n = getrandom(hash_key + got, sizeof(hash_key) -
		    (size_t)got, 0);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += n;
	}
	if (got < (ssize_t)sizeof(hash_key)) {
		struct timespec ts;
		log_warn("dirty: getrandom (stash hash key from the clock)");
		clock_gettime(CLOCK_REALTIME, &ts);
		uint64_t a = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30);
		uint64_t b = (uint64_t)getpid() * 0x9e3779b97f4a7c15ull ^
		    (uint64_t)(uintptr_t)&ts;
		memcpy(hash_key, &a, 8);
		memcpy(hash_key + 8, &b, 8);
	}
}

void
dirty_stash_set_hash_key(const uint8_t key[16])
{
	memcpy(hash_key, key, sizeof(hash_key));
}

static void
arena_free(uint8_t **blocks, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		free(blocks[i]);
	free(blocks);
}

static void
table_free(struct stash_table *t)
{
	for (uint32_t i = 0; i < t->nrecs; i++)
		if (t->recs[i] != NULL)
			rec_release(t, t->recs[i]);
	arena_free(t->blocks, t->nblocks);
	free(t->recs);
	free(t->index);
	free(t->name);
	memset(t, 0, sizeof(*t));
}

void
dirty_stash_init(void)
{
	tables = NULL;
	ntables = tables_cap = 0;
	total_bytes = 0;
	hash_key_init();
}

void
dirty_stash_set_max_bytes(uint64_t max)
{
	max_bytes = max;
}

int
dirty_stash_check(void)
{
	uint64_t sum = 0;
	struct stash_rec x;

	for (size_t i = 0; i < ntables; i++) {
		uint64_t tb = 0;
		sum += stash_table_cost(tables[i].name_len);
		for (uint32_t j = 0; j < tables[i].nrecs; j++) {
			if (tables[i].recs[j] == NULL)
				continue;
			stash_rec_read(tables[i].recs[j], &x);
			tb += entry_cost(x.keylen, x.valuelen);
		}
		if (tb != tables[i].bytes)
			return -1;
		sum += tb;
	}
	if (sum != total_bytes || (max_bytes != 0 && total_bytes > max_bytes))
		return -1;
	return 0;
}

void
dirty_stash_reset(void)
{
	for (size_t i = 0; i < ntables; i++)
		table_free(&tables[i]);
	free(tables);
	free(tables_index);
	tables_index = NULL;
	tables_index_cap = 0;
	dirty_stash_init();
}

/* The tables are found through their own index: open addressing of
 * table number + 1 by the keyed hash of the name, like the entries (a
 * linear scan made each op cost O(tables): a client creating a million
 * tables stalled the arbiter for hours).  Rebuilt on growth and after a
 * delete_table (tables[] is kept dense, so the numbers move). */

static void
tables_index_insert(size_t i)
{
	size_t mask = tables_index_cap - 1;
	size_t slot = hash_bytes((const uint8_t *)tables[i].name,
	    tables[i].name_len) & mask;

	while (tables_index[slot] != 0)
		slot = (slot + 1) & mask;
	tables_index[slot] = (uint32_t)i + 1;
}

static void
tables_index_rebuild(void)
{
	size_t cap = 8;

	while (cap * 3 < (ntables + 1) * 4)
		cap *= 2;
	free(tables_index);
	tables_index = xcalloc(cap, sizeof(*tables_index));
	tables_index_cap = cap;
	for (size_t i = 0; i < ntables; i++)
		tables_index_insert(i);
}

struct stash_table *
stash_table_find(const char *name, uint32_t n)
{
	if (tables_index_cap == 0)
		return NULL;
	size_t mask = tables_index_cap - 1;
	size_t slot = hash_bytes((const uint8_t *)name, n) & mask;

	for (uint32_t e; (e = tables_index[slot]) != 0;
	    slot = (slot + 1) & mask) {
		struct stash_table *t = &tables[e - 1];
		if (t->name_len == n && memcmp(t->name, name, n) == 0)
			return t;
	}
	return NULL;
}

struct stash_table *
stash_table_ensure(const char *name, uint32_t n)
{
	struct stash_table *t = stash_table_find(name, n);

	if (t != NULL)
		return t;
	if (ntables == tables_cap) {
		tables_cap = tables_cap ? tables_cap * 2 : 8;
		tables = xreallocarray(tables, tables_cap, sizeof(*tables));
	}
	t = &tables[ntables++];
	memset(t, 0, sizeof(*t));
	total_bytes += stash_table_cost(n);
	t->name_len = n;
	t->name = xmalloc(n + 1);
	memcpy(t->name, name, n);
	t->name[n] = '\0';
	if (ntables * 4 > tables_index_cap * 3)
		tables_index_rebuild();
	else
		tables_index_insert(ntables - 1);
	return t;
}

void
stash_table_remove(struct stash_table *t)
{
	size_t i = (size_t)(t - tables);

	total_bytes -= stash_table_cost(t->name_len);
	table_free(t);
	memmove(&tables[i], &tables[i + 1], (ntables - i - 1) * sizeof(*tables));
	ntables--;
	tables_index_rebuild();
}

/* Copy the live arena records into fresh blocks (insertion order kept). */
static void
table_compact(struct stash_table *t)
{
	uint8_t **old = t->blocks;
	uint32_t nold = t->nblocks;
	struct stash_rec x;

	t->blocks = NULL;
	t->nblocks = 0;
	t->cur_used = t->cur_cap = 0;
	t->dead = t->arena_live = 0;
	for (uint32_t i = 0; i < t->nrecs; i++) {
		if (t->recs[i] == NULL)
			continue;
		stash_rec_read(t->recs[i], &x);
		if (x.size > RECORD_LARGE)
			continue;
		uint8_t *r = rec_alloc(t, x.size);
		memcpy(r, t->recs[i], x.size);
		t->recs[i] = r;
	}
	arena_free(old, nold);
}

/* Rebuild the index (and drop tombstones) with room for `want` entries. */
static void
table_rehash(struct stash_table *t, uint32_t want)
{
	uint32_t j = 0, cap = 8;
	struct stash_rec x;

	for (uint32_t i = 0; i < t->nrecs; i++)
		if (t->recs[i] != NULL)
			t->recs[j++] = t->recs[i];
	t->nrecs = j;
	while ((uint64_t)cap * 3 < (uint64_t)want * 4)
		cap *= 2;
	free(t->index);
	t->index = xcalloc(cap, sizeof(*t->index));
	t->index_cap = cap;
	for (uint32_t i = 0; i < t->nrecs; i++) {
		stash_rec_read(t->recs[i], &x);
		uint32_t s = hash_bytes(x.key, x.keylen) & (cap - 1);
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
	struct stash_rec x;

	for (;;) {
		uint32_t e = t->index[s];
		if (e == 0)
			return s;
		const uint8_t *r = t->recs[e - 1];
		if (r != NULL) {
			stash_rec_read(r, &x);
			if (x.keylen == n && memcmp(x.key, key, n) == 0)
				return s;
		}
		s = (s + 1) & (t->index_cap - 1);
	}
}

/* The record of key, or NULL. */
uint8_t *
stash_table_get(const struct stash_table *t, const uint8_t *key, uint32_t n)
{
	if (t->index_cap == 0)
		return NULL;
	uint32_t e = t->index[table_slot(t, key, n, hash_bytes(key, n))];
	return e != 0 ? t->recs[e - 1] : NULL;
}

/* What a put of key/value would add to the counted bytes (may be < 0):
 * t is the table, NULL when the put would create it (named with
 * name_len bytes). */
int64_t
stash_table_put_delta(const struct stash_table *t, uint32_t name_len,
    const uint8_t *key, uint32_t n, uint32_t vn)
{
	int64_t d = (int64_t)entry_cost(n, vn);
	const uint8_t *r;
	struct stash_rec x;

	if (t == NULL)
		d += (int64_t)stash_table_cost(name_len);
	else if ((r = stash_table_get(t, key, n)) != NULL) {
		stash_rec_read(r, &x);
		d -= (int64_t)entry_cost(x.keylen, x.valuelen);
	}
	return d;
}

void
stash_table_put(struct stash_table *t, const uint8_t *key, uint32_t n,
    const uint8_t *value, uint32_t vn)
{
	uint32_t h = hash_bytes(key, n);
	size_t size = rec_size(n, vn);
	struct stash_rec x;

	if (t->index_cap == 0 ||
	    (uint64_t)(t->nrecs + 1) * 4 > (uint64_t)t->index_cap * 3)
		table_rehash(t, t->live + 1);
	uint32_t s = table_slot(t, key, n, h);
	uint32_t e = t->index[s];
	if (e != 0) {
		uint8_t *old = t->recs[e - 1];
		stash_rec_read(old, &x);
		if (x.valuelen == vn) {		/* same size: in place */
			memcpy((uint8_t *)x.value, value, vn);
			return;
		}
		rec_release(t, old);
	} else {
		if (t->nrecs == t->cap) {
			/* 1.5x: less slack than doubling for big tables */
			t->cap = t->cap ? t->cap + t->cap / 2 : 8;
			t->recs = xreallocarray(t->recs, t->cap,
			    sizeof(*t->recs));
		}
		e = ++t->nrecs;
		t->index[s] = e;
		t->live++;
	}
	uint8_t *r = rec_alloc(t, size);
	rec_write(r, key, n, value, vn);
	t->recs[e - 1] = r;
	t->bytes += entry_cost(n, vn);
	total_bytes += entry_cost(n, vn);
	if (t->dead > COMPACT_MIN && t->dead > t->arena_live)
		table_compact(t);
}

int
stash_table_delete(struct stash_table *t, const uint8_t *key, uint32_t n)
{
	if (t->index_cap == 0)
		return 0;
	uint32_t s = table_slot(t, key, n, hash_bytes(key, n));
	uint32_t e = t->index[s];

	if (e == 0)
		return 0;
	rec_release(t, t->recs[e - 1]);
	t->recs[e - 1] = NULL;
	t->live--;
	/* The index keeps pointing at the tombstone, so probes continue past
	 * it; the next growth rehash drops it. */
	if (t->dead > COMPACT_MIN && t->dead > t->arena_live)
		table_compact(t);
	return 1;
}

void
stash_table_clear(struct stash_table *t)
{
	char *name = t->name;
	uint32_t name_len = t->name_len;

	t->name = NULL;
	table_free(t);
	t->name = name;
	t->name_len = name_len;
}

size_t
stash_ntables(void)
{
	return ntables;
}

const struct stash_table *
stash_table_at(size_t i)
{
	return &tables[i];
}

uint64_t
stash_max_bytes(void)
{
	return max_bytes;
}

uint64_t
stash_total_bytes(void)
{
	return total_bytes;
}
