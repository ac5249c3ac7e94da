/*
 * test_dirty_calls.c — unit tests of the dirty arbiter's table of calls in
 * flight (dirty_calls.c): ids unique while a slot is reused, a stale id
 * never finds the slot's next call, iteration survives freeing the call
 * it just returned, and the counts of calls in flight and answered.
 *
 * Runs standalone; prints "N passed, M failed"; exits non-zero on any
 * failure.  Meant to run under ASan+UBSan.
 */
#include <stdint.h>
#include <stdio.h>

#include "dirty_calls.h"
#include "check.h"

#define N	300	/* more than the first table (64): it grows */

static void
test_alloc_lookup_free(void)
{
	struct call *k[N];
	uint64_t id[N];

	for (int i = 0; i < N; i++) {
		k[i] = calls_alloc(&id[i]);
		k[i]->client_id = (uint64_t)i;
	}
	CHECK(calls_inflight() == N);
	/* the table grew: look calls up again by id, not by pointer */
	for (int i = 0; i < N; i++) {
		struct call *c = calls_lookup(id[i]);
		CHECK_MSG(c != NULL && c->client_id == (uint64_t)i,
		    "call %d not found by its id", i);
		CHECK(c != NULL && calls_id(c) == id[i]);
	}
	for (int i = 0; i < N; i++)
		for (int j = i + 1; j < N && j < i + 8; j++)
			CHECK(id[i] != id[j]);

	/* free one: its id is dead, and the slot's next call has another */
	struct call *c = calls_lookup(id[7]);
	calls_free(c, 1);
	CHECK(calls_lookup(id[7]) == NULL);
	CHECK(calls_answered() == 1);
	uint64_t again;
	struct call *d = calls_alloc(&again);
	CHECK((uint32_t)again == (uint32_t)id[7]);	/* the same slot */
	CHECK(again != id[7]);				/* another generation */
	CHECK(calls_lookup(id[7]) == NULL);
	CHECK(calls_lookup(again) == d);
	CHECK(calls_lookup(again ^ ((uint64_t)1 << 40)) == NULL);
	CHECK(calls_lookup(0xffffffffu) == NULL);	/* no such slot */

	/* iterate and free everything; each call seen once */
	uint32_t cursor = 0;
	int seen = 0;
	while ((c = calls_next(&cursor)) != NULL) {
		seen++;
		calls_free(c, 0);
	}
	CHECK_MSG(seen == N, "iterated %d calls, want %d", seen, N);
	CHECK(calls_inflight() == 0);
	CHECK(calls_answered() == 1);
	cursor = 0;
	CHECK(calls_next(&cursor) == NULL);
}

int
main(void)
{
	test_alloc_lookup_free();
	return check_summary("test_dirty_calls");
}
