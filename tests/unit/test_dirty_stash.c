/*
 * test_dirty_stash.c — unit tests for src/dirty_stash.c and the pid-file
 * rules of src/dirty_runtime.c, under ASan+UBSan.
 *
 * Stash: every op once with its reply checked, then 200,000 random
 * put/get/delete/exists/keys/info ops on a small key space checked against
 * a trivial model (insertion-ordered array), so the hash index, tombstones
 * and rehashing are exercised.  Runtime: a forked "arbiter" that holds the
 * pid-file lock while its recorded master (us) is alive and its parent is
 * a live sibling: left alone, the next master takes <name>.2; an
 * "arbiter" whose recorded master died (an orphan, in <name>.2) is found
 * and killed by dirty_runtime_prepare(); a pid file naming a live process
 * that holds no lock is removed and that process is NOT signalled; one
 * recording a live master other than us is left alone; a symlink in place
 * of the directory is refused.
 * Prints "N passed, M failed"; exits non-zero on any failure.
 */
#include "dirty_runtime.h"
#include "dirty_stash.h"
#include "dirty_wire.h"
#include "log.h"
#include "settings.h"
#include "check.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

/* ---- stash helpers: request {"op", "table", ["key": int], ["value": int]} */

struct reply {
	int type;		/* RESPONSE or ERROR */
	int tlv;		/* type of result */
	int64_t i;		/* Int64 or Bool result */
	uint32_t count;		/* List/Dict count */
	char error_type[64];
	int64_t keys[4096];	/* int keys of a keys() list */
	struct dirty_buf raw;
};

static void do_payload(struct reply *, const uint8_t *, size_t);

static void
do_op(struct reply *r, int op, const char *table, const int64_t *key,
    const int64_t *value, const char *pattern)
{
	struct dirty_buf p;
	uint32_t n = 2 + (key != NULL) + (value != NULL) + (pattern != NULL);

	dirty_buf_init(&p);
	dirty_put_dict(&p, n);
	dirty_put_cstring(&p, "op");
	dirty_put_int64(&p, op);
	dirty_put_cstring(&p, "table");
	dirty_put_cstring(&p, table);
	if (key != NULL) {
		dirty_put_cstring(&p, "key");
		dirty_put_int64(&p, *key);
	}
	if (value != NULL) {
		dirty_put_cstring(&p, "value");
		dirty_put_int64(&p, *value);
	}
	if (pattern != NULL) {
		dirty_put_cstring(&p, "pattern");
		dirty_put_cstring(&p, pattern);
	}
	do_payload(r, p.data, p.len);
	dirty_buf_free(&p);
}

/* Run one STASH payload; parse its reply into r (any malformed frame is
 * a failure). */
static void
do_payload(struct reply *r, const uint8_t *payload, size_t len)
{
	struct dirty_cursor c;
	struct dirty_header h;
	const char *why;

	dirty_buf_reset(&r->raw);
	dirty_stash_handle(payload, len, 99, &r->raw);

	memset(r->error_type, 0, sizeof(r->error_type));
	r->type = r->tlv = -1;
	if (r->raw.len < DIRTY_HEADER_SIZE ||
	    dirty_header_decode(r->raw.data, &h, &why) == -1 || h.id != 99 ||
	    h.length != r->raw.len - DIRTY_HEADER_SIZE ||
	    dirty_validate(r->raw.data + DIRTY_HEADER_SIZE, h.length, 0, &why)) {
		CHECK_MSG(0, "bad reply frame");
		return;
	}
	r->type = h.type;
	const uint8_t *pl = r->raw.data + DIRTY_HEADER_SIZE;
	if (h.type == DIRTY_MSG_ERROR) {
		const char *s;
		uint32_t sn;
		uint32_t cnt;
		if (dirty_dict_lookup(pl, h.length, "error", &c, &why) == 0 &&
		    dirty_get_dict(&c, &cnt) == 0) {
			for (uint32_t i = 0; i < cnt; i++) {
				const char *k;
				uint32_t kn;
				dirty_get_string(&c, &k, &kn);
				if (kn == 10 && memcmp(k, "error_type", 10) == 0 &&
				    dirty_get_string(&c, &s, &sn) == 0) {
					snprintf(r->error_type, sizeof(r->error_type),
					    "%.*s", (int)sn, s);
				} else
					dirty_skip(&c);
			}
		}
		return;
	}
	if (dirty_dict_lookup(pl, h.length, "result", &c, &why) != 0)
		CHECK_MSG(0, "no result");
	r->tlv = dirty_peek_type(&c);
	if (r->tlv == DIRTY_TLV_BOOL) {
		int b;
		dirty_get_bool(&c, &b);
		r->i = b;
	} else if (r->tlv == DIRTY_TLV_INT64)
		dirty_get_int64(&c, &r->i);
	else if (r->tlv == DIRTY_TLV_LIST) {
		dirty_get_list(&c, &r->count);
		for (uint32_t i = 0; i < r->count && i < 4096; i++) {
			if (dirty_peek_type(&c) == DIRTY_TLV_INT64)
				dirty_get_int64(&c, &r->keys[i]);
			else {
				dirty_skip(&c);
				r->keys[i] = -1;
			}
		}
	} else if (r->tlv == DIRTY_TLV_DICT)
		dirty_get_dict(&c, &r->count);	/* fields: see info_size() */
}

static int64_t
info_size(struct reply *r)
{
	struct dirty_cursor c, v;
	struct dirty_header h;
	const char *why;
	int64_t size = -1;

	dirty_header_decode(r->raw.data, &h, &why);
	dirty_dict_lookup(r->raw.data + DIRTY_HEADER_SIZE, h.length, "result",
	    &c, &why);
	/* result is itself a dict: look "size" up inside its bytes */
	const uint8_t *start = c.p;
	if (dirty_skip(&c) == 0 &&
	    dirty_dict_lookup(start, (size_t)(c.p - start), "size", &v,
	    &why) == 0)
		dirty_get_int64(&v, &size);
	return size;
}

/* ---- the model ---- */
#define NKEYS 64
static int64_t model_order[NKEYS];
static int64_t model_value[NKEYS];
static int model_present[NKEYS];
static int model_n;

static void
model_put(int64_t k, int64_t v)
{
	if (!model_present[k]) {
		model_present[k] = 1;
		model_order[model_n++] = k;
	}
	model_value[k] = v;
}

static int
model_delete(int64_t k)
{
	if (!model_present[k])
		return 0;
	model_present[k] = 0;
	for (int i = 0; i < model_n; i++)
		if (model_order[i] == k) {
			memmove(&model_order[i], &model_order[i + 1],
			    (size_t)(model_n - i - 1) * sizeof(int64_t));
			model_n--;
			break;
		}
	return 1;
}

static void
test_stash_ops(void)
{
	static struct reply r;
	int64_t k = 1, v = 42;

	dirty_buf_init(&r.raw);
	dirty_stash_init();
	do_op(&r, DIRTY_STASH_GET, "t", &k, NULL, NULL);
	CHECK_MSG(r.type == DIRTY_MSG_ERROR &&
	    strcmp(r.error_type, "StashTableNotFoundError") == 0,
	    "get on a missing table: %s", r.error_type);
	do_op(&r, DIRTY_STASH_PUT, "t", &k, &v, NULL);
	CHECK_MSG(r.type == DIRTY_MSG_RESPONSE && r.tlv == DIRTY_TLV_BOOL && r.i == 1,
	    "put");
	do_op(&r, DIRTY_STASH_GET, "t", &k, NULL, NULL);
	CHECK_MSG(r.tlv == DIRTY_TLV_INT64 && r.i == 42, "get");
	k = 2;
	do_op(&r, DIRTY_STASH_GET, "t", &k, NULL, NULL);
	CHECK_MSG(strcmp(r.error_type, "StashKeyNotFoundError") == 0, "missing key");
	do_op(&r, DIRTY_STASH_EXISTS, "t", NULL, NULL, NULL);
	CHECK_MSG(r.i == 1, "table exists");
	do_op(&r, DIRTY_STASH_EXISTS, "u", NULL, NULL, NULL);
	CHECK_MSG(r.i == 0, "table u does not exist");
	do_op(&r, DIRTY_STASH_ENSURE, "u", NULL, NULL, NULL);
	do_op(&r, DIRTY_STASH_TABLES, "", NULL, NULL, NULL);
	CHECK_MSG(r.tlv == DIRTY_TLV_LIST && r.count == 2, "two tables");
	do_op(&r, DIRTY_STASH_INFO, "t", NULL, NULL, NULL);
	CHECK_MSG(info_size(&r) == 1, "info size 1");
	do_op(&r, DIRTY_STASH_CLEAR, "t", NULL, NULL, NULL);
	do_op(&r, DIRTY_STASH_INFO, "t", NULL, NULL, NULL);
	CHECK_MSG(info_size(&r) == 0, "info size 0 after clear");
	do_op(&r, DIRTY_STASH_DELETE_TABLE, "t", NULL, NULL, NULL);
	CHECK_MSG(r.i == 1, "delete_table");
	do_op(&r, DIRTY_STASH_DELETE_TABLE, "t", NULL, NULL, NULL);
	CHECK_MSG(r.i == 0, "delete_table twice");
	do_op(&r, 77, "t", NULL, NULL, NULL);
	CHECK_MSG(r.type == DIRTY_MSG_ERROR, "unknown op");
	do_op(&r, DIRTY_STASH_PUT, "t", &k, NULL, NULL);
	CHECK_MSG(r.type == DIRTY_MSG_ERROR, "put without a value");

	/* random ops against the model */
	uint64_t seed = 0x9e3779b97f4a7c15ull;
	int mismatches = 0;
	for (int i = 0; i < 200000; i++) {
		seed ^= seed << 13; seed ^= seed >> 7; seed ^= seed << 17;
		int64_t key = (int64_t)(seed % NKEYS), val = (int64_t)(seed >> 20);
		switch ((seed >> 8) % 6) {
		case 0: case 1:
			model_put(key, val);
			do_op(&r, DIRTY_STASH_PUT, "m", &key, &val, NULL);
			break;
		case 2:
			do_op(&r, DIRTY_STASH_DELETE, "m", &key, NULL, NULL);
			mismatches += r.i != model_delete(key);
			break;
		case 3:
			do_op(&r, DIRTY_STASH_GET, "m", &key, NULL, NULL);
			if (model_present[key])
				mismatches += r.tlv != DIRTY_TLV_INT64 ||
				    r.i != model_value[key];
			else
				mismatches += r.type != DIRTY_MSG_ERROR;
			break;
		case 4:
			do_op(&r, DIRTY_STASH_EXISTS, "m", &key, NULL, NULL);
			mismatches += r.i != model_present[key];
			break;
		case 5:
			do_op(&r, DIRTY_STASH_KEYS, "m", NULL, NULL, NULL);
			mismatches += r.count != (uint32_t)model_n ||
			    memcmp(r.keys, model_order,
			    (size_t)model_n * sizeof(int64_t)) != 0;
			break;
		}
	}
	CHECK_MSG(mismatches == 0, "%d mismatches against the model", mismatches);
	do_op(&r, DIRTY_STASH_INFO, "m", NULL, NULL, NULL);
	CHECK_MSG(info_size(&r) == model_n, "final size %lld vs %d",
	    (long long)info_size(&r), model_n);
	dirty_stash_reset();
	dirty_buf_free(&r.raw);
}

/* ---- runtime: lock holder killed, stale pid file harmless ---- */

static pid_t
fork_lock_holder(void)
{
	int p[2];
	char c;
	pid_t pid;

	if (pipe(p) == -1)
		abort();
	pid = fork();
	if (pid == 0) {
		int fd = dirty_runtime_lock_pidfile();
		c = fd >= 0 ? 'y' : 'n';
		if (write(p[1], &c, 1) != 1)
			_exit(2);
		for (;;)
			pause();
	}
	close(p[1]);
	if (read(p[0], &c, 1) != 1 || c != 'y')
		CHECK_MSG(0, "child could not take the lock");
	close(p[0]);
	return pid;
}

/* An orphaned "arbiter": it takes the lock while its parent (the master
 * it records) lives, then that parent exits; we are its subreaper. */
static pid_t
fork_orphan_holder(void)
{
	int up[2], out[2];
	pid_t mid, pid = 0;
	char c;

	if (pipe(up) == -1 || pipe(out) == -1)
		abort();
	mid = fork();
	if (mid == 0) {
		pid_t g = fork();
		if (g == 0) {
			c = dirty_runtime_lock_pidfile() >= 0 ? 'y' : 'n';
			if (write(up[1], &c, 1) != 1)
				_exit(2);
			for (;;)
				pause();
		}
		if (read(up[0], &c, 1) != 1 || c != 'y')
			g = -1;
		if (write(out[1], &g, sizeof(g)) != sizeof(g))
			_exit(2);
		_exit(0);	/* the "master" dies: g is an orphan now */
	}
	close(up[1]);
	close(out[1]);
	if (read(out[0], &pid, sizeof(pid)) != sizeof(pid) || pid <= 0)
		CHECK_MSG(0, "orphan could not take the lock");
	close(up[0]);
	close(out[0]);
	waitpid(mid, NULL, 0);
	return pid;
}

static int
ends_with(const char *s, const char *tail)
{
	size_t n = strlen(s), m = strlen(tail);

	return n >= m && strcmp(s + n - m, tail) == 0;
}

static void
test_runtime(void)
{
	struct settings s;
	char tmpl[] = "/tmp/cu-unit-XXXXXX";
	int status;

	if (mkdtemp(tmpl) == NULL)
		abort();
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	setenv("XDG_RUNTIME_DIR", tmpl, 1);
	memset(&s, 0, sizeof(s));
	s.proc_name = "unit test/../name";
	s.uid = geteuid();
	s.gid = getegid();
	CHECK_MSG(dirty_runtime_prepare(&s) == 0, "prepare");
	CHECK_MSG(strncmp(dirty_runtime_dir(), tmpl, strlen(tmpl)) == 0 &&
	    strstr(dirty_runtime_dir(), "/../") == NULL, "dir %s",
	    dirty_runtime_dir());
	CHECK_MSG(getenv("GUNICORN_DIRTY_SOCKET") != NULL &&
	    strcmp(getenv("GUNICORN_DIRTY_SOCKET"), dirty_runtime_socket()) == 0,
	    "GUNICORN_DIRTY_SOCKET exported");
	struct stat st;
	CHECK_MSG(lstat(dirty_runtime_dir(), &st) == 0 &&
	    (st.st_mode & 07777) == 0700, "mode 0700");
	char *base = xstrdup(dirty_runtime_dir());
	char *base_pidfile = xstrdup(dirty_runtime_pidfile());

	/* a live sibling (its recorded master, us, is its parent): left
	 * alone, the next master uses <name>.2 */
	pid_t sibling = fork_lock_holder();
	CHECK_MSG(dirty_runtime_lock_holder() == sibling, "holder is %d",
	    (int)sibling);
	CHECK_MSG(dirty_runtime_prepare(&s) == 0, "prepare with a sibling");
	CHECK_MSG(ends_with(dirty_runtime_dir(), ".2") &&
	    strncmp(dirty_runtime_dir(), base, strlen(base)) == 0,
	    "sibling: dir %s", dirty_runtime_dir());
	CHECK_MSG(waitpid(sibling, &status, WNOHANG) == 0, "sibling alive");
	CHECK_MSG(access(base_pidfile, F_OK) == 0, "sibling's pid file kept");
	char *second = xstrdup(dirty_runtime_dir());

	/* an orphan in <name>.2 (its recorded master died) is found and
	 * killed by the next master, even though <name> is free again */
	pid_t orphan = fork_orphan_holder();
	CHECK_MSG(dirty_runtime_lock_holder() == orphan, "orphan holds .2");
	kill(sibling, SIGKILL);
	waitpid(sibling, NULL, 0);
	CHECK_MSG(dirty_runtime_prepare(&s) == 0, "prepare with an orphan");
	CHECK_MSG(waitpid(orphan, &status, 0) == orphan && WIFSIGNALED(status) &&
	    WTERMSIG(status) == SIGTERM, "orphan got SIGTERM");
	CHECK_MSG(strcmp(dirty_runtime_dir(), base) == 0, "back to %s, got %s",
	    base, dirty_runtime_dir());
	CHECK_MSG(access(second, F_OK) == -1 && errno == ENOENT, "%s removed",
	    second);
	CHECK_MSG(dirty_runtime_lock_holder() == 0, "no holder left");
	free(second);
	free(base_pidfile);
	free(base);

	pid_t bystander = fork();
	if (bystander == 0) {
		for (;;)
			pause();
	}
	char buf[32];
	int fd = open(dirty_runtime_pidfile(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
	snprintf(buf, sizeof(buf), "%d\n", (int)bystander);
	CHECK_MSG(fd >= 0 && write(fd, buf, strlen(buf)) > 0, "write stale pid");
	close(fd);
	CHECK_MSG(dirty_runtime_prepare(&s) == 0, "prepare with a stale pid file");
	/* replaced by our claim, "0 <our pid>" */
	char claim[32], want[32];
	fd = open(dirty_runtime_pidfile(), O_RDONLY);
	ssize_t got = fd >= 0 ? read(fd, claim, sizeof(claim) - 1) : -1;
	claim[got > 0 ? got : 0] = '\0';
	close(fd);
	snprintf(want, sizeof(want), "0 %d\n", (int)getpid());
	CHECK_MSG(strcmp(claim, want) == 0, "stale pid file replaced by the "
	    "claim: \"%s\"", claim);
	CHECK_MSG(waitpid(bystander, &status, WNOHANG) == 0, "bystander alive");

	/* unlocked, recording a live master other than us (a sibling
	 * between two arbiters): neither removed nor signalled */
	fd = open(dirty_runtime_pidfile(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
	snprintf(buf, sizeof(buf), "0 %d\n", (int)bystander);
	CHECK_MSG(fd >= 0 && write(fd, buf, strlen(buf)) > 0, "write claim");
	close(fd);
	char *claimed = xstrdup(dirty_runtime_pidfile());
	CHECK_MSG(dirty_runtime_prepare(&s) == 0, "prepare with a claim");
	CHECK_MSG(ends_with(dirty_runtime_dir(), ".2"), "claimed: dir %s",
	    dirty_runtime_dir());
	CHECK_MSG(access(claimed, F_OK) == 0, "claim kept");
	CHECK_MSG(waitpid(bystander, &status, WNOHANG) == 0, "bystander alive");
	kill(bystander, SIGKILL);
	waitpid(bystander, NULL, 0);
	dirty_runtime_master_cleanup();
	CHECK_MSG(dirty_runtime_prepare(&s) == 0, "prepare, claim now stale");
	CHECK_MSG(!ends_with(dirty_runtime_dir(), ".2") &&
	    access(claimed, F_OK) == 0, "stale claim's dir reused");
	free(claimed);

	/* a symlink where the directory should be: refused */
	dirty_runtime_master_cleanup();
	char *dir = xstrdup(dirty_runtime_dir());
	CHECK_MSG(access(dir, F_OK) == -1, "master cleanup removed %s", dir);
	char *top = xstrdup(dir);
	*strrchr(top, '/') = '\0';
	mkdir(top, 0700);
	CHECK_MSG(symlink(tmpl, dir) == 0, "symlink");
	CHECK_MSG(dirty_runtime_prepare(&s) == -1, "symlinked dir refused");
	unlink(dir);
	free(dir);
	rmdir(top);
	free(top);
	rmdir(tmpl);
	CHECK_MSG(access(tmpl, F_OK) == -1, "nothing left in %s", tmpl);
}

/* ---- hardening: reply bounds, the keyed hash, what the cap counts ---- */

/* A STASH payload {"op", "table": <tn bytes of tc>, ["key": Bytes of kn
 * bytes of kc], ["value": Int64 1]}; the caller frees p. */
static void
build_payload(struct dirty_buf *p, int op, char tc, size_t tn, char kc,
    size_t kn, int with_value)
{
	char *t = malloc(tn + 1), *k = NULL;

	memset(t, tc, tn);
	t[tn] = '\0';
	dirty_buf_init(p);
	dirty_put_dict(p, 2 + (kn > 0) + (with_value != 0));
	dirty_put_cstring(p, "op");
	dirty_put_int64(p, op);
	dirty_put_cstring(p, "table");
	dirty_put_string(p, t, (uint32_t)tn);
	if (kn > 0) {
		k = malloc(kn);
		memset(k, kc, kn);
		dirty_put_cstring(p, "key");
		dirty_put_bytes(p, k, (uint32_t)kn);
	}
	if (with_value) {
		dirty_put_cstring(p, "value");
		dirty_put_int64(p, 1);
	}
	free(t);
	free(k);
}

static void
do_built(struct reply *r, int op, char tc, size_t tn, char kc, size_t kn,
    int with_value)
{
	struct dirty_buf p;

	build_payload(&p, op, tc, tn, kc, kn, with_value);
	do_payload(r, p.data, p.len);
	dirty_buf_free(&p);
}

/* Replies that cannot be one frame are a short StashError, never a frame
 * whose length does not match its payload (issue 8: a length of 0 with
 * the raw payload after it desynchronised the stream). */
static void
test_reply_bounds(void)
{
	static struct reply r;
	const size_t big = 40u * 1024 * 1024;

	dirty_buf_init(&r.raw);
	dirty_stash_init();
	/* keys() whose list is over 64 MiB: two 40 MiB keys */
	do_built(&r, DIRTY_STASH_PUT, 't', 1, 'a', big, 1);
	CHECK_MSG(r.type == DIRTY_MSG_RESPONSE, "put a 40 MiB key");
	do_built(&r, DIRTY_STASH_PUT, 't', 1, 'b', big, 1);
	CHECK_MSG(r.type == DIRTY_MSG_RESPONSE, "put another 40 MiB key");
	do_op(&r, DIRTY_STASH_KEYS, "t", NULL, NULL, NULL);
	CHECK_MSG(r.type == DIRTY_MSG_ERROR &&
	    strcmp(r.error_type, "StashError") == 0,
	    "keys over 64 MiB: %d %s", r.type, r.error_type);
	CHECK_MSG(r.raw.len < 4096, "the error is short: %zu bytes", r.raw.len);
	/* a missing key of 64 MiB - 64: the error quoting it is over 64 MiB */
	do_built(&r, DIRTY_STASH_GET, 't', 1, 'c',
	    DIRTY_MAX_PAYLOAD - 64, 0);
	CHECK_MSG(r.type == DIRTY_MSG_ERROR &&
	    strcmp(r.error_type, "StashError") == 0,
	    "key-not-found quoting a 64 MiB key: %d %s", r.type, r.error_type);
	dirty_stash_reset();

	/* tables() over 64 MiB: two tables named with 33 MiB each */
	do_built(&r, DIRTY_STASH_ENSURE, 'x', 33u * 1024 * 1024, 0, 0, 0);
	do_built(&r, DIRTY_STASH_ENSURE, 'y', 33u * 1024 * 1024, 0, 0, 0);
	do_op(&r, DIRTY_STASH_TABLES, "", NULL, NULL, NULL);
	CHECK_MSG(r.type == DIRTY_MSG_ERROR &&
	    strcmp(r.error_type, "StashError") == 0,
	    "tables over 64 MiB: %d %s", r.type, r.error_type);
	dirty_stash_reset();

	/* keys() of more than DIRTY_MAX_COUNT keys: StashError; a pattern
	 * that narrows it down still works */
	for (int64_t k = 0; k <= (int64_t)DIRTY_MAX_COUNT; k++) {
		int64_t v = k;
		do_op(&r, DIRTY_STASH_PUT, "many", &k, &v, NULL);
	}
	do_op(&r, DIRTY_STASH_INFO, "many", NULL, NULL, NULL);
	CHECK_MSG(info_size(&r) == (int64_t)DIRTY_MAX_COUNT + 1, "1M + 1 keys");
	do_op(&r, DIRTY_STASH_KEYS, "many", NULL, NULL, NULL);
	CHECK_MSG(r.type == DIRTY_MSG_ERROR &&
	    strcmp(r.error_type, "StashError") == 0,
	    "keys over the count limit: %d %s", r.type, r.error_type);
	int64_t one = 1;
	do_op(&r, DIRTY_STASH_DELETE, "many", &one, NULL, NULL);
	do_op(&r, DIRTY_STASH_KEYS, "many", NULL, NULL, NULL);
	CHECK_MSG(r.type == DIRTY_MSG_RESPONSE && r.count == DIRTY_MAX_COUNT,
	    "exactly the count limit is one list: %d %u", r.type, r.count);
	dirty_stash_reset();
	dirty_buf_free(&r.raw);
}

/* SipHash-2-4 reference vectors (key 00..0f, message 00..n-1), from the
 * SipHash paper's appendix and its reference implementation. */
static void
test_siphash_vectors(void)
{
	uint8_t key[16], msg[16];

	for (int i = 0; i < 16; i++)
		key[i] = msg[i] = (uint8_t)i;
	CHECK_MSG(dirty_stash_siphash(key, msg, 0, 2, 4) == 0x726fdb47dd0e0e31ull,
	    "siphash-2-4 of the empty message");
	CHECK_MSG(dirty_stash_siphash(key, msg, 1, 2, 4) == 0x74f839c593dc67fdull,
	    "siphash-2-4 of 1 byte");
	CHECK_MSG(dirty_stash_siphash(key, msg, 15, 2, 4) == 0xa129ca6149be45e5ull,
	    "siphash-2-4 of 15 bytes");
	uint8_t key2[16] = { 1 };
	CHECK_MSG(dirty_stash_siphash(key, msg, 15, 1, 3) !=
	    dirty_stash_siphash(key2, msg, 15, 1, 3), "the key matters");
}

/* 32,768 keys that all share the low 17 bits of their unkeyed FNV-1a
 * hash (the old index hash: every one of them in one probe chain, so the
 * n-th put compared n keys) must cost about what random keys cost. */
#define FLOOD_N		32768
#define FLOOD_KEYLEN	12	/* Bytes TLV: 0x10, u32 length 7, 7 bytes */
static uint8_t flood_keys[FLOOD_N][FLOOD_KEYLEN];

static uint32_t
fnv1a(const uint8_t *p, size_t n)
{
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 16777619u;
	return h;
}

static void
flood_make_keys(void)
{
	const uint32_t P = 16777619u, M = (1u << 17) - 1, T = 0x1d2a5;
	uint32_t pinv = P;
	int n = 0;

	for (int i = 0; i < 5; i++)		/* Newton: P * pinv == 1 mod 2^32 */
		pinv *= 2 - P * pinv;
	uint32_t want = (T * pinv) & M;	/* what (h ^ b3) must be, mod 2^17 */
	for (uint32_t prefix = 0; n < FLOOD_N; prefix++) {
		uint8_t k[FLOOD_KEYLEN] = { 0x10, 0, 0, 0, 7,
		    (uint8_t)(prefix >> 24), (uint8_t)(prefix >> 16),
		    (uint8_t)(prefix >> 8), (uint8_t)prefix };
		uint32_t s = fnv1a(k, 9);
		for (uint32_t b1 = 0; b1 < 256 && n < FLOOD_N; b1++) {
			uint32_t h1 = (s ^ b1) * P;
			for (uint32_t b2 = 0; b2 < 256 && n < FLOOD_N; b2++) {
				uint32_t h2 = (h1 ^ b2) * P;
				uint32_t b3 = (want ^ h2) & M;
				if (b3 > 255)
					continue;
				k[9] = (uint8_t)b1;
				k[10] = (uint8_t)b2;
				k[11] = (uint8_t)b3;
				memcpy(flood_keys[n++], k, FLOOD_KEYLEN);
			}
		}
	}
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Put every key (as a raw Bytes key) into table `table`; seconds taken. */
static double
flood_put_all(struct reply *r, const char *table)
{
	double t0 = now_s();
	struct dirty_buf p;

	dirty_buf_init(&p);
	for (int i = 0; i < FLOOD_N; i++) {
		dirty_buf_reset(&p);
		dirty_put_dict(&p, 4);
		dirty_put_cstring(&p, "op");
		dirty_put_int64(&p, DIRTY_STASH_PUT);
		dirty_put_cstring(&p, "table");
		dirty_put_cstring(&p, table);
		dirty_put_cstring(&p, "key");
		dirty_buf_append(&p, flood_keys[i], FLOOD_KEYLEN);
		dirty_put_cstring(&p, "value");
		dirty_put_int64(&p, i);
		do_payload(r, p.data, p.len);
	}
	dirty_buf_free(&p);
	return now_s() - t0;
}

static void
test_hash_flooding(void)
{
	static struct reply r;
	int colliding = 0;

	flood_make_keys();
	for (int i = 0; i < FLOOD_N; i++)
		colliding += (fnv1a(flood_keys[i], FLOOD_KEYLEN) &
		    ((1u << 17) - 1)) == 0x1d2a5;
	CHECK_MSG(colliding == FLOOD_N, "the crafted keys collide under FNV-1a");
	dirty_buf_init(&r.raw);
	dirty_stash_init();
	double crafted = flood_put_all(&r, "crafted");
	/* the same number of keys, ordinary ones: the crafted keys with
	 * their prefix scrambled */
	for (int i = 0; i < FLOOD_N; i++) {
		uint32_t x = (uint32_t)i * 2654435761u;
		memcpy(&flood_keys[i][5], &x, 4);
	}
	double ordinary = flood_put_all(&r, "ordinary");
	do_op(&r, DIRTY_STASH_INFO, "crafted", NULL, NULL, NULL);
	CHECK_MSG(info_size(&r) == FLOOD_N, "every crafted key stored");
	printf("hash flooding: %d crafted keys %.3f s, ordinary %.3f s\n",
	    FLOOD_N, crafted, ordinary);
	CHECK_MSG(crafted < 4 * ordinary + 0.25,
	    "crafted keys cost %.3f s, ordinary %.3f s", crafted, ordinary);
	dirty_stash_reset();
	dirty_buf_free(&r.raw);
}

/* dirty_stash_max_bytes counts table names and per-entry overhead
 * (issue 8: ten ENSUREs with 10 MiB names passed a 1 MiB cap). */
static void
test_cap_counts_everything(void)
{
	static struct reply r;
	int ok = 0;

	dirty_buf_init(&r.raw);
	dirty_stash_init();
	dirty_stash_set_max_bytes(1024 * 1024);
	for (int i = 0; i < 10; i++) {
		do_built(&r, DIRTY_STASH_ENSURE, (char)('a' + i),
		    2 * 1024 * 1024, 0, 0, 0);
		ok += r.type == DIRTY_MSG_RESPONSE;
	}
	CHECK_MSG(ok == 0, "%d tables with 2 MiB names fit in a 1 MiB cap", ok);
	CHECK_MSG(strcmp(r.error_type, "StashError") == 0, "ensure refused: %s",
	    r.error_type);
	/* a put creating a table with a long name is refused the same way */
	do_built(&r, DIRTY_STASH_PUT, 'p', 2 * 1024 * 1024, 'k', 1, 1);
	CHECK_MSG(r.type == DIRTY_MSG_ERROR &&
	    strcmp(r.error_type, "StashError") == 0, "put into a new table "
	    "with a 2 MiB name: %d %s", r.type, r.error_type);
	do_op(&r, DIRTY_STASH_TABLES, "", NULL, NULL, NULL);
	CHECK_MSG(r.tlv == DIRTY_TLV_LIST && r.count == 0, "no table created");

	/* many tiny entries: 18 encoded bytes each, but each costs more */
	dirty_stash_set_max_bytes(100000);
	int64_t k;
	for (k = 0; k < 100000; k++) {
		do_op(&r, DIRTY_STASH_PUT, "tiny", &k, &k, NULL);
		if (r.type != DIRTY_MSG_RESPONSE)
			break;
	}
	CHECK_MSG(k > 1000 && k * (18 + 16) < 100000, "%lld tiny entries fit in "
	    "100000 bytes", (long long)k);
	/* deleting the table gives everything back */
	do_op(&r, DIRTY_STASH_DELETE_TABLE, "tiny", NULL, NULL, NULL);
	int64_t again;
	for (again = 0; again < 100000; again++) {
		do_op(&r, DIRTY_STASH_PUT, "tiny2", &again, &again, NULL);
		if (r.type != DIRTY_MSG_RESPONSE)
			break;
	}
	CHECK_MSG(again == k, "after delete_table: %lld fit again (was %lld)",
	    (long long)again, (long long)k);
	dirty_stash_set_max_bytes(0);
	dirty_stash_reset();
	dirty_buf_free(&r.raw);
}

/* Tables are found by a hash index, not a scan: the last 10,000 of
 * 100,000 ENSUREs cost about what the first 10,000 did (a scan made them
 * ~19x dearer), and the index stays right through delete_table. */
static void
test_many_tables(void)
{
	static struct reply r;
	char name[32];
	double t[2] = { 0, 0 };
	const int n = 100000, part = 10000;
	int wrong = 0;

	dirty_buf_init(&r.raw);
	dirty_stash_init();
	for (int i = 0; i < n; i++) {
		double t0 = (i < part || i >= n - part) ? now_s() : 0;
		snprintf(name, sizeof(name), "table-%06d", i);
		do_op(&r, DIRTY_STASH_ENSURE, name, NULL, NULL, NULL);
		if (i < part)
			t[0] += now_s() - t0;
		else if (i >= n - part)
			t[1] += now_s() - t0;
	}
	printf("100,000 tables: first 10,000 ensures %.3f s, last %.3f s\n",
	    t[0], t[1]);
	CHECK_MSG(t[1] < 4 * t[0] + 0.05, "ensure slows with the table count: "
	    "%.3f s then %.3f s", t[0], t[1]);
	for (int i = 0; i < 600; i += 3) {
		snprintf(name, sizeof(name), "table-%06d", i);
		do_op(&r, DIRTY_STASH_DELETE_TABLE, name, NULL, NULL, NULL);
		wrong += r.i != 1;
	}
	for (int i = 0; i < 600; i++) {
		snprintf(name, sizeof(name), "table-%06d", i);
		do_op(&r, DIRTY_STASH_EXISTS, name, NULL, NULL, NULL);
		wrong += r.i != (i % 3 != 0);
	}
	int64_t k = 5, v = 6;
	do_op(&r, DIRTY_STASH_PUT, "table-099999", &k, &v, NULL);
	do_op(&r, DIRTY_STASH_GET, "table-099999", &k, NULL, NULL);
	wrong += r.tlv != DIRTY_TLV_INT64 || r.i != 6;
	do_op(&r, DIRTY_STASH_TABLES, "", NULL, NULL, NULL);
	CHECK_MSG(wrong == 0 && r.count == (uint32_t)(n - 200),
	    "%d wrong answers, %u tables", wrong, r.count);
	dirty_stash_reset();
	dirty_buf_free(&r.raw);
}

int
main(void)
{
	log_set_level(LOG_CRITICAL);	/* the expected warnings are noise */
	test_stash_ops();
	test_reply_bounds();
	test_siphash_vectors();
	test_hash_flooding();
	test_cap_counts_everything();
	test_many_tables();
	test_runtime();
	return check_summary("test_dirty_stash");
}
