/*
 * dirty_stash.h — the stash: named tables of key -> value held by the
 * dirty arbiter in C, reached by STASH messages (see dirty_wire.h for the
 * payload).  Keys and values are kept as their encoded TLV bytes, so any
 * wire value can be stored and is returned byte for byte.
 *
 * Used only by the dirty arbiter; never calls Python.
 */
#ifndef CUNICORN_DIRTY_STASH_H
#define CUNICORN_DIRTY_STASH_H

#include <stddef.h>
#include <stdint.h>

struct buf;	/* buf.h; dirty_wire.h calls it struct dirty_buf */

/* Start empty, with a fresh random hash key (getrandom()). */
void dirty_stash_init(void);
/* dirty_stash_max_bytes: cap on what the stash holds (0 = no cap): every
 * table's name plus a fixed cost, every entry's encoded key and value
 * plus a fixed cost (dirty_stash.c says how much); a put or an ensure
 * beyond it gets a StashError. */
void dirty_stash_set_max_bytes(uint64_t max);
/* Execute one validated STASH payload; append the reply frame (RESPONSE
 * or ERROR, with `id`) to out. */
void dirty_stash_handle(const uint8_t *payload, size_t len, uint64_t id,
    struct buf *out);
/* Drop every table (tests). */
void dirty_stash_reset(void);
/* Tests and fuzzing: recount what every table holds; 0 when it equals
 * what the cap counts and is within the cap, else -1. */
int dirty_stash_check(void);
/* SipHash-c-d of data under a 16-byte key (the stash's index hash is
 * SipHash-1-3 under the arbiter's random key); exposed for the tests'
 * reference vectors. */
uint64_t dirty_stash_siphash(const uint8_t key[16], const void *data,
    size_t n, int c_rounds, int d_rounds);
/* Replace the random hash key (tests: a known key). */
void dirty_stash_set_hash_key(const uint8_t key[16]);

#endif
