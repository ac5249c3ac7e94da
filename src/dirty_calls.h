/*
 * dirty_calls.h — the dirty arbiter's calls in flight: each links a
 * client's request (the client's slot and generation, and the id the
 * client gave it) to the dirty worker serving it (the worker's slot and
 * generation).  The call's arbiter-wide id, the one the worker sees, is
 * its slot | generation << 32, so a late reply to a forgotten call is
 * recognised and dropped.
 *
 * dirty_calls.c owns the table and the counts of calls in flight and
 * answered; it knows nothing of clients or workers beyond the numbers
 * above (dirty_route.c keeps their counts in step).  Arbiter only; never
 * calls Python.
 */
#ifndef CUNICORN_DIRTY_CALLS_H
#define CUNICORN_DIRTY_CALLS_H

#include <stdint.h>

#pragma GCC visibility push(hidden)

struct call {
	uint32_t gen;		/* high half of the arbiter id */
	int in_use;
	uint32_t client, client_gen;
	uint64_t client_id;
	uint32_t worker, worker_gen;
	uint32_t app;		/* the app it was routed for */
	uint64_t wire_at;	/* its request's offset in the worker's stream
				 * (dirty_peer.out_sent): a request not wholly
				 * sent when the worker is lost may go to
				 * another (dirty_route.c, worker_lost) */
	uint64_t start_ms;	/* the call's start, or its stream's last chunk */
};

/* A new call (its fields to be filled by the caller); *id is the
 * arbiter-wide id to put in the frame sent to the worker. */
struct call	*calls_alloc(uint64_t *id);
uint64_t	 calls_id(const struct call *);
/* The call an id from a worker names, or NULL (answered, forgotten). */
struct call	*calls_lookup(uint64_t id);
/* Forget a call; answered: it got its final reply (counted). */
void		 calls_free(struct call *, int answered);
/* Every call in flight: start with *cursor = 0; NULL at the end.  A
 * call may be freed while iterating. */
struct call	*calls_next(uint32_t *cursor);
uint64_t	 calls_inflight(void);
uint64_t	 calls_answered(void);

#pragma GCC visibility pop

#endif /* CUNICORN_DIRTY_CALLS_H */
