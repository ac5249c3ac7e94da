/*
 * fuzz_dirty_stash.c — libFuzzer target for the arbiter's STASH handler:
 * the input is a sequence of STASH payloads (u16 BE length, bytes); each
 * one that dirty_validate() accepts (as the arbiter requires before it
 * calls the stash) is executed against one persistent set of tables, and
 * every reply must be one well-formed frame, and what the cap counts
 * (dirty_stash_max_bytes) must stay the sum over the tables and entries
 * held, within the cap when one is set (an odd first byte sets a 4 KiB
 * cap for the run).  dirty_stash.c is compiled
 * in here (the Makefile's FUZZ_DEPS lists only the shared codec).
 */
#include "../../src/dirty_stash.c"

#include <assert.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* total_bytes recomputed from the tables themselves. */
static uint64_t
counted_bytes(void)
{
	uint64_t sum = 0;
	struct rec x;

	for (size_t i = 0; i < ntables; i++) {
		uint64_t tb = 0;
		sum += table_cost(tables[i].name_len);
		for (uint32_t j = 0; j < tables[i].nrecs; j++) {
			if (tables[i].recs[j] == NULL)
				continue;
			rec_read(tables[i].recs[j], &x);
			tb += entry_cost(x.keylen, x.valuelen);
		}
		assert(tb == tables[i].bytes);
		sum += tb;
	}
	return sum;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dirty_buf out;
	struct dirty_header h;
	const char *why;

	dirty_buf_init(&out);
	if (size > 0 && (data[0] & 1) && ntables == 0)
		dirty_stash_set_max_bytes(4096);
	else if (ntables == 0)
		dirty_stash_set_max_bytes(0);
	while (size >= 2) {
		size_t n = ((size_t)data[0] << 8) | data[1];
		data += 2;
		size -= 2;
		if (n > size)
			n = size;
		if (dirty_validate(data, n, 0, &why) == 0) {
			dirty_buf_reset(&out);
			dirty_stash_handle(data, n, 7, &out);
			assert(out.len >= DIRTY_HEADER_SIZE);
			assert(dirty_header_decode(out.data, &h, &why) == 0);
			assert(h.id == 7 && h.length == out.len - DIRTY_HEADER_SIZE);
			assert(dirty_validate(out.data + DIRTY_HEADER_SIZE, h.length,
			    0, &why) == 0);
			assert(counted_bytes() == total_bytes);
			assert(max_bytes == 0 || total_bytes <= max_bytes);
		}
		data += n;
		size -= n;
	}
	dirty_buf_free(&out);
	/* keep memory bounded across runs */
	if (ntables > 64)
		dirty_stash_reset();
	return 0;
}
