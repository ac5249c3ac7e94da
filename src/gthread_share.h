/*
 * gthread_share.h — how the gthread workers share new connections: each
 * publishes how many it holds, and one that holds more than a live
 * sibling lets that sibling accept first (gthread_share.c says why).
 *
 * Used by gthread_worker.c only, from its loop thread; reads and writes
 * the master's shared slots (struct http_worker_ctx: loads, heartbeats).
 */
#ifndef CUNICORN_GTHREAD_SHARE_H
#define CUNICORN_GTHREAD_SHARE_H

#include <stddef.h>
#include <stdint.h>

struct http_worker_ctx;

#define SHARE_DEFER_MS	1	/* a connection left to a sibling this long */

/* This worker now holds nconns connections. */
void share_publish(const struct http_worker_ctx *ctx, size_t nconns);
/* A listener is readable: 1 when this worker leaves the connection to a
 * less loaded sibling (its listeners off for SHARE_DEFER_MS), 0 when it
 * accepts it.  workers: the configured number of workers. */
int share_defer(const struct http_worker_ctx *ctx, int workers, size_t nconns,
    uint64_t now);

#endif
