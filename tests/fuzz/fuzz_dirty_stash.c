/*
 * fuzz_dirty_stash.c — libFuzzer target for the arbiter's STASH handler:
 * the input is a sequence of STASH payloads (u16 BE length, bytes); each
 * one that dirty_validate() accepts (as the arbiter requires before it
 * calls the stash) is executed against one persistent set of tables, and
 * every reply must be one well-formed frame, and what the cap counts
 * (dirty_stash_max_bytes) must stay the sum over the tables and entries
 * held, within the cap when one is set (an odd first byte of the first
 * input after a reset sets a 4 KiB cap).  Links dirty_stash.c like any
 * other caller (the Makefile's FUZZ_DEPS) and uses only its API.
 */
#include "dirty_stash.h"
#include "dirty_wire.h"

#include <assert.h>
#include <stddef.h>
#include <stdint.h>

/* Inputs between two resets: the tables persist across inputs (so a PUT
 * in one and a GET in the next meet), and memory stays bounded: at most
 * this many inputs of -max_len bytes each, whatever the cap counts. */
#define RUNS_PER_RESET	256

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static unsigned long runs;
	struct dirty_buf out;
	struct dirty_header h;
	const char *why;

	dirty_buf_init(&out);
	if (runs % RUNS_PER_RESET == 0)
		dirty_stash_set_max_bytes(size > 0 && (data[0] & 1) ? 4096 : 0);
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
			assert(dirty_stash_check() == 0);
		}
		data += n;
		size -= n;
	}
	dirty_buf_free(&out);
	if (++runs % RUNS_PER_RESET == 0)
		dirty_stash_reset();
	return 0;
}
