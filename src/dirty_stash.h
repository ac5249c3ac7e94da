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

struct dirty_buf;

void dirty_stash_init(void);
/* dirty_stash_max_bytes: cap on the live keys' + values' encoded bytes of
 * all tables (0 = no cap); a put beyond it gets a StashError. */
void dirty_stash_set_max_bytes(uint64_t max);
/* Execute one validated STASH payload; append the reply frame (RESPONSE
 * or ERROR, with `id`) to out. */
void dirty_stash_handle(const uint8_t *payload, size_t len, uint64_t id,
    struct dirty_buf *out);
/* Drop every table (tests). */
void dirty_stash_reset(void);

#endif
