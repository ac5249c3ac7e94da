/*
 * dirty_calls.c — the table of calls in flight (see dirty_calls.h): slots
 * reused through a free list, each with a generation that makes its id
 * unique for as long as replies can still come.  Owns the table and its
 * counters; never touches a client or a worker; never calls Python.
 */
#include "dirty_calls.h"
#include "log.h"

#include <string.h>

static struct call *calls;
static uint32_t nslots;
static uint32_t *free_slots;
static uint32_t nfree;
static uint64_t inflight;
static uint64_t answered;	/* calls that got their final reply */

struct call *
calls_alloc(uint64_t *id)
{
	if (nfree == 0) {
		uint32_t n = nslots ? nslots * 2 : 64;
		calls = xreallocarray(calls, n, sizeof(*calls));
		memset(calls + nslots, 0, (n - nslots) * sizeof(*calls));
		free_slots = xreallocarray(free_slots, n, sizeof(*free_slots));
		for (uint32_t i = n; i > nslots; i--)
			free_slots[nfree++] = i - 1;
		nslots = n;
	}
	struct call *k = &calls[free_slots[--nfree]];
	k->gen++;
	if (k->gen == 0)
		k->gen = 1;
	k->in_use = 1;
	inflight++;
	*id = calls_id(k);
	return k;
}

uint64_t
calls_id(const struct call *k)
{
	return ((uint64_t)k->gen << 32) | (uint32_t)(k - calls);
}

struct call *
calls_lookup(uint64_t id)
{
	uint32_t slot = (uint32_t)id;

	if (slot >= nslots)
		return NULL;
	struct call *k = &calls[slot];
	if (!k->in_use || k->gen != (uint32_t)(id >> 32))
		return NULL;
	return k;
}

void
calls_free(struct call *k, int final_reply)
{
	k->in_use = 0;
	free_slots[nfree++] = (uint32_t)(k - calls);
	inflight--;
	if (final_reply)
		answered++;
}

struct call *
calls_next(uint32_t *cursor)
{
	while (*cursor < nslots) {
		struct call *k = &calls[(*cursor)++];
		if (k->in_use)
			return k;
	}
	return NULL;
}

uint64_t
calls_inflight(void)
{
	return inflight;
}

uint64_t
calls_answered(void)
{
	return answered;
}
