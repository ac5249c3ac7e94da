/*
 * dirty_control.c — the dirty arbiter's answers to the control requests
 * of its clients: STATUS (the pool, its apps and workers, the calls in
 * flight and answered) and MANAGE (add or remove dirty workers).  The
 * router (dirty_route.c) validates the frame and passes it here; the
 * reply frame is appended to the client's output buffer.
 *
 * Owns nothing: it reads the pool's state (arbiter.apps, arbiter.workers,
 * arbiter.target) and changes it only through dirty_pool.c's functions
 * (workers_increase(), workers_decrease(), workers_manage()).  It never
 * touches a socket, never calls into the router, and (like the whole
 * arbiter) never calls Python.
 */
#include "dirty_arbiter_int.h"
#include "dirty_wire.h"
#include "log.h"
#include "util.h"

#include <stdint.h>
#include <stddef.h>

static void
put_key(struct dirty_buf *b, const char *k)
{
	dirty_put_cstring(b, k);
}

/* Close the reply frame begun at f; one that would exceed a frame (only
 * an absurd configuration: thousands of apps with huge names) is taken
 * back and answered with a short error, never sent with a wrong length. */
static void
reply_end(struct dirty_buf *b, size_t f, uint64_t id)
{
	if (dirty_frame_end(b, f) == 0)
		return;
	b->len = f;
	dirty_put_error_frame(b, id, DIRTY_E_ERROR,
	    "reply too large for one message");
}

void
control_status_reply(struct dirty_buf *b, uint64_t id, uint64_t inflight,
    uint64_t answered)
{
	uint32_t n = 0;

	for (size_t i = 0; i < arbiter.nworkers_slots; i++)
		if (arbiter.workers[i].state != W_FREE && arbiter.workers[i].pid > 0)
			n++;
	size_t f = dirty_frame_begin(b, DIRTY_MSG_RESPONSE, id);
	dirty_put_dict(b, 1);
	put_key(b, "result");
	dirty_put_dict(b, 7);
	put_key(b, "arbiter_pid");
	dirty_put_int64(b, arbiter.pid);
	put_key(b, "num_workers");
	dirty_put_int64(b, arbiter.target);
	put_key(b, "min_workers");
	dirty_put_int64(b, workers_required());
	put_key(b, "in_flight");
	dirty_put_int64(b, (int64_t)inflight);
	put_key(b, "served");
	dirty_put_int64(b, (int64_t)answered);
	put_key(b, "apps");
	dirty_put_list(b, (uint32_t)arbiter.napps);
	for (size_t i = 0; i < arbiter.napps; i++) {
		uint32_t have = 0;
		for (size_t j = 0; j < arbiter.nworkers_slots; j++)
			if (arbiter.workers[j].state == W_ALIVE &&
			    arbiter.workers[j].apps[i])
				have++;
		dirty_put_dict(b, 3);
		put_key(b, "app_path");
		dirty_put_cstring(b, arbiter.apps[i].path);
		put_key(b, "worker_count");
		if (arbiter.apps[i].limit > 0)
			dirty_put_int64(b, arbiter.apps[i].limit);
		else
			dirty_put_none(b);
		put_key(b, "workers");
		dirty_put_int64(b, have);
	}
	put_key(b, "workers");
	dirty_put_list(b, n);
	for (size_t i = 0; i < arbiter.nworkers_slots; i++) {
		static const char *states[] = { "free", "alive", "retiring",
		    "stopping" };
		struct worker *w = &arbiter.workers[i];
		uint32_t na = 0;
		if (w->state == W_FREE || w->pid <= 0)
			continue;
		for (size_t j = 0; j < arbiter.napps; j++)
			na += w->apps[j] ? 1 : 0;
		dirty_put_dict(b, 7);
		put_key(b, "pid");
		dirty_put_int64(b, w->pid);
		put_key(b, "age");
		dirty_put_int64(b, w->age);
		put_key(b, "state");
		dirty_put_cstring(b, states[w->state]);
		put_key(b, "apps");
		dirty_put_list(b, na);
		for (size_t j = 0; j < arbiter.napps; j++)
			if (w->apps[j])
				dirty_put_cstring(b, arbiter.apps[j].path);
		put_key(b, "in_flight");
		dirty_put_int64(b, w->inflight);
		put_key(b, "served");
		dirty_put_int64(b, (int64_t)w->served);
		put_key(b, "last_heartbeat_ms_ago");
		dirty_put_int64(b, (int64_t)(monotonic_ms() - *w->heartbeat));
	}
	reply_end(b, f, id);
}

void
control_manage_reply(struct dirty_buf *b, const uint8_t *payload,
    const struct dirty_header *h)
{
	struct dirty_cursor v;
	const char *why;
	int64_t op = 0, count = 1;
	int done = 0;

	if (dirty_dict_lookup(payload, h->length, "op", &v, &why) != 0 ||
	    dirty_get_int64(&v, &op) == -1 ||
	    (op != DIRTY_MANAGE_ADD && op != DIRTY_MANAGE_REMOVE)) {
		dirty_put_error_frame(b, h->id, DIRTY_E_ERROR,
		    "MANAGE needs op 1 (add) or 2 (remove)");
		return;
	}
	if (dirty_dict_lookup(payload, h->length, "count", &v, &why) == 0 &&
	    dirty_get_int64(&v, &count) == -1)
		count = -1;
	if (count < 1 || count > 1024) {
		dirty_put_error_frame(b, h->id, DIRTY_E_ERROR,
		    "MANAGE count must be between 1 and 1024");
		return;
	}
	if (arbiter.stopping) {
		dirty_put_error_frame(b, h->id, DIRTY_E_ERROR,
		    "dirty arbiter is shutting down");
		return;
	}
	if (op == DIRTY_MANAGE_ADD) {
		done = workers_increase((int)count);
		if (done < (int)count)
			log_warnx("MANAGE: cannot increase above %d dirty workers "
			    "(the ceiling: 16 x dirty_workers, at most 1024)",
			    workers_ceiling());
		if (done > 0) {
			log_info("MANAGE: increasing dirty workers to %d",
			    arbiter.target);
			workers_manage();
		}
	} else {
		done = workers_decrease((int)count);
		log_info("MANAGE: decreasing dirty workers to %d", arbiter.target);
	}
	size_t f = dirty_frame_begin(b, DIRTY_MSG_RESPONSE, h->id);
	dirty_put_dict(b, 1);
	put_key(b, "result");
	dirty_put_dict(b, 3);
	put_key(b, "success");
	dirty_put_bool(b, done == (int)count);
	put_key(b, op == DIRTY_MANAGE_ADD ? "added" : "removed");
	dirty_put_int64(b, done);
	put_key(b, "num_workers");
	dirty_put_int64(b, arbiter.target);
	reply_end(b, f, h->id);
}
