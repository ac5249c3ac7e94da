/*
 * dirty_stash.c — the stash tables of the dirty arbiter (see dirty_stash.h).
 * First version: every operation answers DirtyError until the tables land.
 * Never calls Python.
 */
#include "dirty_stash.h"
#include "dirty_wire.h"

void
dirty_stash_init(void)
{
}

void
dirty_stash_reset(void)
{
}

void
dirty_stash_handle(const uint8_t *payload, size_t len, uint64_t id,
    struct dirty_buf *out)
{
	(void)payload;
	(void)len;
	dirty_put_error_frame(out, id, DIRTY_E_ERROR,
	    "stash is not available yet");
}
