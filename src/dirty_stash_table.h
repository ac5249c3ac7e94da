/*
 * dirty_stash_table.h — the stash's storage, internal to the stash: the
 * tables and their records (dirty_stash_table.c), used by the request
 * handler (dirty_stash.c).  Included by nothing else.
 */
#ifndef CUNICORN_DIRTY_STASH_TABLE_H
#define CUNICORN_DIRTY_STASH_TABLE_H

#include <stddef.h>
#include <stdint.h>

#pragma GCC visibility push(hidden)

/* One table (the handler only reads it). */
struct stash_table {
	char *name;		/* name_len bytes (may hold NULs), then a NUL */
	uint32_t name_len;
	uint8_t **recs;		/* records in insertion order; NULL: deleted */
	uint32_t nrecs;		/* used slots, tombstones included */
	uint32_t cap;
	uint32_t live;
	uint32_t *index;	/* entry number + 1; 0 = empty */
	uint32_t index_cap;	/* power of two */
	uint8_t **blocks;	/* the arena */
	uint32_t nblocks;
	size_t cur_used, cur_cap;	/* of the last block */
	size_t dead;		/* bytes of dead records in the arena */
	size_t arena_live;	/* bytes of live records in the arena */
	uint64_t bytes;		/* entry_cost() of the live entries */
};

/* A record, as stash_rec_read() decodes it: pointers into the record. */
struct stash_rec {
	const uint8_t *key, *value;
	uint32_t keylen, valuelen;
	size_t size;		/* the whole record */
};

void	 stash_rec_read(const uint8_t *, struct stash_rec *);
/* What a table of that name costs against dirty_stash_max_bytes. */
uint64_t stash_table_cost(uint32_t);
/* By name (name_len bytes), or NULL. */
struct stash_table *stash_table_find(const char *, uint32_t);
/* By name, created when missing (the caller checked the cap). */
struct stash_table *stash_table_ensure(const char *, uint32_t);
void	 stash_table_remove(struct stash_table *);
/* The record of a key (its encoded bytes), or NULL. */
uint8_t	*stash_table_get(const struct stash_table *, const uint8_t *, uint32_t);
/* What a put would add to the counted bytes (may be < 0); table NULL:
 * the put would create it, named with that many bytes. */
int64_t	 stash_table_put_delta(const struct stash_table *, uint32_t,
	    const uint8_t *, uint32_t, uint32_t);
void	 stash_table_put(struct stash_table *, const uint8_t *, uint32_t,
	    const uint8_t *, uint32_t);
/* 1 if the key was there. */
int	 stash_table_delete(struct stash_table *, const uint8_t *, uint32_t);
/* Drop every entry, keep the table. */
void	 stash_table_clear(struct stash_table *);
/* The tables in creation order, and the cap's counts. */
size_t	 stash_ntables(void);
const struct stash_table *stash_table_at(size_t);
uint64_t stash_max_bytes(void);
uint64_t stash_total_bytes(void);

#pragma GCC visibility pop

#endif
