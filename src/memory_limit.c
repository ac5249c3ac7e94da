/*
 * memory_limit.c — see memory_limit.h.
 *
 * Owns reading /proc/self/cgroup and the cgroup limit files.  Every read
 * is bounded (one fixed line buffer, one fixed value buffer, PATH_MAX
 * paths) and nothing is allocated from what is read; any failure counts
 * as "no cgroup limit", never as an error: the machine's RAM and the data
 * limit still bound the figure.  It never walks outside the cgroup mount:
 * a path from /proc/self/cgroup with an empty, "." or ".." component (a
 * process outside its cgroup namespace sees "/../x") is not used.
 */
#include "memory_limit.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/resource.h>

/* A limit at or above this is none: v1 says "unlimited" with LONG_MAX
 * rounded down to a page (9223372036854771712). */
#define CGROUP_NO_LIMIT (1ULL << 62)

/* One limit file: a byte count; 0 for "max" (v2), a huge value (v1), or
 * anything but decimal digits and a newline (a file longer than the
 * buffer included: it would be read cut). */
static uint64_t
cgroup_limit_file(const char *path)
{
	char buf[32], *end;
	unsigned long long v;
	ssize_t n;

	n = read_small_file(path, buf, sizeof(buf));
	if (n == -1 || (size_t)n >= sizeof(buf) - 1 || buf[0] < '0' || buf[0] > '9')
		return 0;
	errno = 0;
	v = strtoull(buf, &end, 10);
	if (errno != 0 || (*end != '\0' && strcmp(end, "\n") != 0) ||
	    v >= CGROUP_NO_LIMIT)
		return 0;
	return (uint64_t)v;
}

/* Whether `rel`, a cgroup path as /proc/self/cgroup names it, is "/" or
 * "/" and components none of which is empty, "." or "..". */
static int
cgroup_path_ok(const char *rel)
{
	const char *p = rel, *next;
	size_t n;

	if (rel[0] != '/')
		return 0;
	if (rel[1] == '\0')
		return 1;
	while (*p == '/') {
		p++;
		next = strchrnul(p, '/');
		n = (size_t)(next - p);
		if (n == 0 || (n == 1 && p[0] == '.') ||
		    (n == 2 && p[0] == '.' && p[1] == '.'))
			return 0;
		p = next;
	}
	return 1;
}

/* The lowest limit in `file` on the path from the cgroup `rel` up to the
 * hierarchy's root, the hierarchy mounted at `root` (its first `rootlen`
 * bytes) + `mount`: a parent may hold the limit.  A directory missing on
 * the way (a container that sees only its own part of the tree, mounted
 * as the root) is skipped: the root's file is then the container's. */
static uint64_t
cgroup_limit_walk(const char *root, size_t rootlen, const char *mount,
    const char *rel, const char *file)
{
	char path[PATH_MAX], dir[PATH_MAX];
	size_t len = strlen(rel);
	uint64_t low = 0, v;
	int n;

	if (len >= sizeof(dir) || !cgroup_path_ok(rel))
		return 0;
	memcpy(dir, rel, len + 1);
	if (len == 1)
		dir[0] = '\0';		/* "/": the root is the empty suffix */
	for (;;) {
		n = snprintf(path, sizeof(path), "%.*s%s%s/%s", (int)rootlen,
		    root, mount, dir, file);
		if (n > 0 && (size_t)n < sizeof(path) &&
		    (v = cgroup_limit_file(path)) != 0 && (low == 0 || v < low))
			low = v;
		if (dir[0] == '\0')
			return low;
		*strrchr(dir, '/') = '\0';
	}
}

/* The limit one line of /proc/self/cgroup points to, 0 for none:
 * "0::/path" (v2: the unified mount, or beside v1 in a hybrid layout) or
 * "N:ctl,ctl:/path" (v1: only the memory controller's). */
static uint64_t
cgroup_line_limit(const char *root, size_t rootlen, char *line)
{
	char *ctl, *rel, *tok, *save = NULL;
	uint64_t low = 0, v;

	if ((ctl = strchr(line, ':')) == NULL ||
	    (rel = strchr(ctl + 1, ':')) == NULL)
		return 0;
	*rel++ = '\0';
	ctl++;
	if (*ctl == '\0') {
		low = cgroup_limit_walk(root, rootlen, "/sys/fs/cgroup", rel,
		    "memory.max");
		v = cgroup_limit_walk(root, rootlen, "/sys/fs/cgroup/unified",
		    rel, "memory.max");
		return v != 0 && (low == 0 || v < low) ? v : low;
	}
	for (tok = strtok_r(ctl, ",", &save); tok != NULL;
	    tok = strtok_r(NULL, ",", &save))
		if (strcmp(tok, "memory") == 0)
			return cgroup_limit_walk(root, rootlen,
			    "/sys/fs/cgroup/memory", rel,
			    "memory.limit_in_bytes");
	return 0;
}

uint64_t
cgroup_memory_limit(const char *root)
{
	char path[PATH_MAX], line[PATH_MAX + 64];
	size_t rootlen = strlen(root), n;
	uint64_t low = 0, v;
	int tail = 0, whole, len;
	FILE *f;

	while (rootlen > 0 && root[rootlen - 1] == '/')
		rootlen--;
	len = snprintf(path, sizeof(path), "%.*s/proc/self/cgroup",
	    (int)rootlen, root);
	if (len < 0 || (size_t)len >= sizeof(path) ||
	    (f = fopen(path, "re")) == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		n = strlen(line);
		whole = (n > 0 && line[n - 1] == '\n') || feof(f);
		/* a line longer than the buffer is not read at all: neither
		 * its start (a path cut short) nor its tail (as a line) */
		if (tail || !whole) {
			tail = !whole;
			continue;
		}
		if (n > 0 && line[n - 1] == '\n')
			line[n - 1] = '\0';
		v = cgroup_line_limit(root, rootlen, line);
		if (v != 0 && (low == 0 || v < low))
			low = v;
	}
	fclose(f);
	return low;
}

uint64_t
memory_limit(void)
{
	long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
	uint64_t low = UINT64_MAX, cgroup = cgroup_memory_limit("/");
	const char *from = NULL;
	struct rlimit rl;

	if (pages > 0 && page > 0) {
		low = (uint64_t)pages * (uint64_t)page;
		from = "RAM";
	}
	if (cgroup != 0 && cgroup < low) {
		low = cgroup;
		from = "cgroup";
	}
	if (getrlimit(RLIMIT_DATA, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    (uint64_t)rl.rlim_cur < low) {
		low = (uint64_t)rl.rlim_cur;
		from = "data limit";
	}
	if (from == NULL)
		log_debug("memory limit unknown");
	else
		log_debug("memory limit %llu MiB (%s)",
		    (unsigned long long)(low >> 20), from);
	return low;
}
