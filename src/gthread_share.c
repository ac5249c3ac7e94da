/*
 * gthread_share.c — sharing new connections with the sibling workers
 * (contract: gthread_share.h).
 *
 * Every worker is woken for a new connection and the first to call
 * accept() gets it: one worker could take nearly all of a burst (wrk's 32
 * connections: 30 and 2 were seen), and one process runs Python on one
 * CPU at a time.  So each worker publishes how many connections it holds
 * (the master's shared slots), and one that holds more than a live
 * sibling lets it accept first: it leaves the next connection alone for
 * SHARE_DEFER_MS, at most MAX_DEFERS times in a row (a sibling that does
 * not take it is busy or gone: then it accepts).
 *
 * Owns: the count of deferrals in a row.  Never: accepts, blocks, or
 * writes a slot but its own.
 */
#include "gthread_share.h"

#include "http_worker.h"

#define MAX_DEFERS	3
#define LIVE_MS		3000	/* a heartbeat this old: not a live sibling */

static int defers;		/* deferred accepts in a row */
static uint64_t last_defer_ms;

void
share_publish(const struct http_worker_ctx *ctx, size_t nconns)
{
	if (ctx->loads != NULL)
		ctx->loads[ctx->slot] = nconns;
}

static int
sibling_less_loaded(const struct http_worker_ctx *ctx, int workers, size_t nconns,
    uint64_t now)
{
	int scan;

	if (ctx->loads == NULL || ctx->heartbeats == NULL)
		return 0;
	/* the master hands out the lowest free slots */
	scan = 2 * (workers > 0 ? workers : 1) + 16;
	if (scan > ctx->nslots)
		scan = ctx->nslots;
	for (int j = 0; j < scan; j++) {
		uint64_t hb;
		if (j == ctx->slot)
			continue;
		hb = ctx->heartbeats[j];
		if (hb == 0 || (hb < now && now - hb > LIVE_MS))
			continue;
		if (ctx->loads[j] < nconns)
			return 1;
	}
	return 0;
}

int
share_defer(const struct http_worker_ctx *ctx, int workers, size_t nconns,
    uint64_t now)
{
	if (now - last_defer_ms > 5 * SHARE_DEFER_MS)
		defers = 0;
	if (defers < MAX_DEFERS && sibling_less_loaded(ctx, workers, nconns, now)) {
		defers++;
		last_defer_ms = now;
		return 1;
	}
	defers = 0;
	return 0;
}
