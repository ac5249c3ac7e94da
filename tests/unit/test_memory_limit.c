/*
 * test_memory_limit.c — the cgroup memory limit (src/memory_limit.c)
 * read from fake trees of proc/self/cgroup and sys/fs/cgroup under a
 * temporary directory: cgroup v2 with the limit at the leaf or at a
 * parent, "max" everywhere, the hybrid layout's unified mount; v1 with a
 * number and with its huge "unlimited"; a container that sees only its
 * own part of the tree; missing files, garbage values, paths with "." or
 * ".." components (never followed out of the mount), overlong lines and
 * paths (never cut into a shorter path or a line of their own).
 */
#include "memory_limit.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"

#define MiB (1024ULL * 1024)

static char top[64];		/* the temporary directory */
static int case_no;
static char root[128];		/* this case's tree: top/N */

/* A fresh, empty tree for the next case. */
static void
tree_new(void)
{
	snprintf(root, sizeof(root), "%s/%d", top, ++case_no);
	if (mkdir(root, 0700) == -1) {
		perror(root);
		exit(2);
	}
}

/* root/rel with its parent directories, holding len bytes of text. */
static void
put_bytes(const char *rel, const char *text, size_t len)
{
	char path[PATH_MAX];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", root, rel);
	for (char *p = path + strlen(root) + 1; (p = strchr(p, '/')) != NULL; p++) {
		*p = '\0';
		if (mkdir(path, 0700) == -1 && errno != EEXIST) {
			perror(path);
			exit(2);
		}
		*p = '/';
	}
	if ((f = fopen(path, "w")) == NULL) {
		perror(path);
		exit(2);
	}
	fwrite(text, 1, len, f);
	fclose(f);
}

static void
put(const char *rel, const char *text)
{
	put_bytes(rel, text, strlen(text));
}

static int
remove_tree(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", top);
	return system(cmd);
}

/* v2: the limit at the leaf, at a parent, the lowest on the way. */
static void
test_v2(void)
{
	tree_new();
	put("proc/self/cgroup", "0::/a/b\n");
	put("sys/fs/cgroup/a/b/memory.max", "268435456\n");
	put("sys/fs/cgroup/a/memory.max", "max\n");
	CHECK(cgroup_memory_limit(root) == 256 * MiB);

	tree_new();
	put("proc/self/cgroup", "0::/a/b\n");
	put("sys/fs/cgroup/a/b/memory.max", "max\n");
	put("sys/fs/cgroup/a/memory.max", "134217728\n");
	CHECK(cgroup_memory_limit(root) == 128 * MiB);

	tree_new();			/* both: the lower, here the parent's */
	put("proc/self/cgroup", "0::/a/b/c\n");
	put("sys/fs/cgroup/a/b/c/memory.max", "536870912\n");
	put("sys/fs/cgroup/a/b/memory.max", "max\n");
	put("sys/fs/cgroup/a/memory.max", "134217728\n");
	CHECK(cgroup_memory_limit(root) == 128 * MiB);

	tree_new();			/* "max" everywhere: none */
	put("proc/self/cgroup", "0::/a/b\n");
	put("sys/fs/cgroup/a/b/memory.max", "max\n");
	put("sys/fs/cgroup/a/memory.max", "max\n");
	put("sys/fs/cgroup/memory.max", "max\n");
	CHECK(cgroup_memory_limit(root) == 0);

	tree_new();			/* the process at the root */
	put("proc/self/cgroup", "0::/\n");
	put("sys/fs/cgroup/memory.max", "1048576\n");
	CHECK(cgroup_memory_limit(root) == 1 * MiB);

	tree_new();			/* a namespaced container: "/" is its own */
	put("proc/self/cgroup", "0::/docker/abc\n");
	put("sys/fs/cgroup/memory.max", "536870912\n");
	CHECK(cgroup_memory_limit(root) == 512 * MiB);

	tree_new();			/* hybrid: v2 under unified, beside v1 */
	put("proc/self/cgroup", "1:name=systemd:/s\n0::/s\n");
	put("sys/fs/cgroup/unified/s/memory.max", "67108864\n");
	CHECK(cgroup_memory_limit(root) == 64 * MiB);

	tree_new();			/* the root given with a trailing slash */
	put("proc/self/cgroup", "0::/a\n");
	put("sys/fs/cgroup/a/memory.max", "67108864");
	{
		char slash[sizeof(root) + 2];
		snprintf(slash, sizeof(slash), "%s//", root);
		CHECK(cgroup_memory_limit(slash) == 64 * MiB);
	}

	tree_new();			/* the last line without its newline */
	put("proc/self/cgroup", "0::/a");
	put("sys/fs/cgroup/a/memory.max", "67108864\n");
	CHECK(cgroup_memory_limit(root) == 64 * MiB);
}

/* v1: the memory controller's line only; "unlimited" is none. */
static void
test_v1(void)
{
	tree_new();
	put("proc/self/cgroup",
	    "9:name=systemd:/x\n5:cpu,cpuacct:/x\n4:memory:/x/y\n0::/\n");
	put("sys/fs/cgroup/memory/x/y/memory.limit_in_bytes", "536870912\n");
	put("sys/fs/cgroup/memory/x/memory.limit_in_bytes",
	    "9223372036854771712\n");
	put("sys/fs/cgroup/memory/memory.limit_in_bytes",
	    "9223372036854771712\n");
	/* another controller's directory holds no memory limit */
	put("sys/fs/cgroup/cpu,cpuacct/x/memory.limit_in_bytes", "4096\n");
	CHECK(cgroup_memory_limit(root) == 512 * MiB);

	tree_new();			/* at a parent; "memory" among others */
	put("proc/self/cgroup", "3:cpu,memory:/x/y\n");
	put("sys/fs/cgroup/memory/x/y/memory.limit_in_bytes",
	    "9223372036854771712\n");
	put("sys/fs/cgroup/memory/x/memory.limit_in_bytes", "268435456\n");
	CHECK(cgroup_memory_limit(root) == 256 * MiB);

	tree_new();			/* unlimited everywhere */
	put("proc/self/cgroup", "4:memory:/x\n");
	put("sys/fs/cgroup/memory/x/memory.limit_in_bytes",
	    "9223372036854771712\n");
	put("sys/fs/cgroup/memory/memory.limit_in_bytes",
	    "9223372036854771712\n");
	CHECK(cgroup_memory_limit(root) == 0);

	tree_new();			/* "memory" only as a whole name */
	put("proc/self/cgroup", "4:memoryx,xmemory:/x\n");
	put("sys/fs/cgroup/memory/x/memory.limit_in_bytes", "268435456\n");
	CHECK(cgroup_memory_limit(root) == 0);

	tree_new();			/* v1 and v2 both limit: the lower */
	put("proc/self/cgroup", "4:memory:/x\n0::/y\n");
	put("sys/fs/cgroup/memory/x/memory.limit_in_bytes", "268435456\n");
	put("sys/fs/cgroup/unified/y/memory.max", "134217728\n");
	CHECK(cgroup_memory_limit(root) == 128 * MiB);
}

/* Missing files: no limit, no error. */
static void
test_missing(void)
{
	tree_new();			/* no proc/self/cgroup */
	put("sys/fs/cgroup/memory.max", "1048576\n");
	CHECK(cgroup_memory_limit(root) == 0);

	tree_new();			/* no cgroup filesystem */
	put("proc/self/cgroup", "0::/a\n4:memory:/a\n");
	CHECK(cgroup_memory_limit(root) == 0);

	tree_new();			/* an empty limit file and an empty list */
	put("proc/self/cgroup", "");
	CHECK(cgroup_memory_limit(root) == 0);
	put("proc/self/cgroup", "0::/a\n");
	put("sys/fs/cgroup/a/memory.max", "");
	CHECK(cgroup_memory_limit(root) == 0);

	CHECK(cgroup_memory_limit("/nonexistent-cunicorn-root") == 0);
}

/* Values that are not a plain decimal byte count are no limit. */
static void
test_garbage_values(void)
{
	static const char *const bad[] = {
		"12abc\n", "abc\n", "-1\n", " 1048576\n", "+1048576\n",
		"0x100000\n", "1048576 \n", "1048576\n\n", "1048576\nx",
		"99999999999999999999999\n",	/* past 64 bits */
		"4611686018427387904\n",	/* 2^62: as good as none */
		"0\n",
		/* longer than the value buffer: would be read cut */
		"00000000000000000000000010485760\n",
		"\n", "max", "max\n1048576\n",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		tree_new();
		put("proc/self/cgroup", "0::/a\n");
		put("sys/fs/cgroup/a/memory.max", bad[i]);
		CHECK_MSG(cgroup_memory_limit(root) == 0, "value \"%s\"", bad[i]);
	}
	/* a garbage leaf does not hide a good parent */
	tree_new();
	put("proc/self/cgroup", "0::/a\n");
	put("sys/fs/cgroup/a/memory.max", "lots\n");
	put("sys/fs/cgroup/memory.max", "2097152\n");
	CHECK(cgroup_memory_limit(root) == 2 * MiB);
	/* a directory where a file should be */
	tree_new();
	put("proc/self/cgroup", "0::/a\n");
	put("sys/fs/cgroup/a/memory.max/x", "1\n");
	CHECK(cgroup_memory_limit(root) == 0);
}

/* Lines of /proc/self/cgroup that are not "ID:controllers:/path". */
static void
test_garbage_lines(void)
{
	static const char *const bad[] = {
		"garbage\n", "0:\n", "0::\n", ":\n", "::\n", "0::a\n",
		"4:memory:\n", "4:memory:x\n", "\n\n\n", "0:: /a\n",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		tree_new();
		put("proc/self/cgroup", bad[i]);
		put("sys/fs/cgroup/a/memory.max", "1048576\n");
		put("sys/fs/cgroup/memory/x/memory.limit_in_bytes", "1048576\n");
		/* the mounts' roots have none: only a bad line could find one */
		CHECK_MSG(cgroup_memory_limit(root) == 0, "line \"%s\"", bad[i]);
	}
	/* a NUL in a line: not read as the shorter line before it */
	tree_new();
	put_bytes("proc/self/cgroup", "0::/a\0/b\n", 9);
	put("sys/fs/cgroup/a/memory.max", "1048576\n");
	CHECK(cgroup_memory_limit(root) == 0);
	/* a bad line does not hide a good one */
	tree_new();
	put("proc/self/cgroup", "nonsense\n0::/a\n");
	put("sys/fs/cgroup/a/memory.max", "1048576\n");
	CHECK(cgroup_memory_limit(root) == 1 * MiB);
}

/* Paths that would leave the mount, or name it twice, are not used. */
static void
test_escape(void)
{
	static const char *const bad[] = {
		"0::/../escape\n", "0::/a/../../escape\n", "0::/..\n",
		"0::/a/..\n", "0::/./a\n", "0::/a/.\n", "0::/a//b\n",
		"0::/a/\n", "0::/../../../..\n",
		"4:memory:/../escape\n", "4:memory:/x/../../escape\n",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		tree_new();
		put("proc/self/cgroup", bad[i]);
		/* what the paths would reach if they were followed */
		put("sys/fs/escape/memory.max", "1048576\n");
		put("sys/fs/escape/memory.limit_in_bytes", "1048576\n");
		put("sys/fs/cgroup/escape/memory.max", "1048576\n");
		put("sys/fs/cgroup/a/memory.max", "1048576\n");
		put("sys/fs/cgroup/a/b/memory.max", "1048576\n");
		put("sys/fs/memory.max", "1048576\n");
		put("memory.max", "1048576\n");
		CHECK_MSG(cgroup_memory_limit(root) == 0, "line \"%s\"", bad[i]);
	}
	/* ".." inside a name is a name */
	tree_new();
	put("proc/self/cgroup", "0::/a..b/..c\n");
	put("sys/fs/cgroup/a..b/..c/memory.max", "1048576\n");
	CHECK(cgroup_memory_limit(root) == 1 * MiB);
}

/* A line longer than the reader's buffer is skipped whole: neither its
 * cut start nor its tail is taken for a line; the next line still is. */
static void
test_overlong(void)
{
	size_t line_buf = PATH_MAX + 64, len;
	char *text = malloc(3 * line_buf);

	/* a first line whose tail, where the buffer cuts it, reads as a v1
	 * memory line; its start is a v2 path that exists */
	tree_new();
	len = line_buf - 1;
	memset(text, 'a', len);
	memcpy(text, "0::/a/", 6);
	strcpy(text + len, "4:memory:/x\n");
	put("proc/self/cgroup", text);
	put("sys/fs/cgroup/memory/x/memory.limit_in_bytes", "1048576\n");
	put("sys/fs/cgroup/a/memory.max", "1048576\n");
	CHECK(cgroup_memory_limit(root) == 0);

	/* the same, then a good line: read */
	strcat(text, "0::/b\n");
	put("proc/self/cgroup", text);
	put("sys/fs/cgroup/b/memory.max", "2097152\n");
	CHECK(cgroup_memory_limit(root) == 2 * MiB);

	/* a line of twice the buffer and more */
	tree_new();
	memset(text, 'a', 2 * line_buf + 10);
	memcpy(text, "0::/", 4);
	strcpy(text + 2 * line_buf + 10, "\n0::/b\n");
	put("proc/self/cgroup", text);
	put("sys/fs/cgroup/b/memory.max", "2097152\n");
	CHECK(cgroup_memory_limit(root) == 2 * MiB);

	/* a path within the line buffer but past PATH_MAX */
	tree_new();
	memset(text, 'a', PATH_MAX + 10);
	memcpy(text, "0::/", 4);
	strcpy(text + PATH_MAX + 10, "\n");
	put("proc/self/cgroup", text);
	put("sys/fs/cgroup/memory.max", "max\n");
	CHECK(cgroup_memory_limit(root) == 0);

	/* a path that fits but whose file name would not */
	tree_new();
	memcpy(text, "0::", 3);
	for (len = 3; len + 2 <= PATH_MAX - 20; len += 2)
		memcpy(text + len, "/a", 2);
	strcpy(text + len, "\n");
	put("proc/self/cgroup", text);
	put("sys/fs/cgroup/memory.max", "3145728\n");
	/* only the mount's root is in reach: its limit */
	CHECK(cgroup_memory_limit(root) == 3 * MiB);
	free(text);
}

int
main(void)
{
	uint64_t m;

	snprintf(top, sizeof(top), "/tmp/test_memory_limit.XXXXXX");
	if (mkdtemp(top) == NULL) {
		perror("mkdtemp");
		return 2;
	}
	test_v2();
	test_v1();
	test_missing();
	test_garbage_values();
	test_garbage_lines();
	test_escape();
	test_overlong();

	/* the real figure: at most the machine's RAM, never zero */
	m = memory_limit();
	CHECK(m > 0);
	CHECK(m <= (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE));

	CHECK(remove_tree() == 0);
	return check_summary("test_memory_limit");
}
