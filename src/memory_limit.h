/*
 * memory_limit.h — the memory a process may count on, for sizing its caps
 * of buffered peer data: the least of the machine's RAM, the memory limit
 * of its cgroup (a container's --memory, systemd's MemoryMax=) and its
 * data limit (RLIMIT_DATA).  In a container the kernel's OOM killer acts
 * on the cgroup's limit, which is usually far below the host's RAM.
 */
#ifndef CUNICORN_MEMORY_LIMIT_H
#define CUNICORN_MEMORY_LIMIT_H

#include <stdint.h>

/* The lowest memory limit of the cgroups this process is in and of their
 * ancestors (cgroup v2 memory.max, v1 memory.limit_in_bytes), in bytes;
 * 0 when there is none: "max", v1's huge "unlimited", no cgroup
 * filesystem, or anything that cannot be read or parsed.  `root` is the
 * directory that holds proc/self/cgroup and sys/fs/cgroup: "/" in the
 * server, a fake tree in the unit test.  Reads are bounded (fixed
 * buffers, PATH_MAX paths); a cgroup path with "." or ".." components or
 * a line longer than the buffer counts as no limit, never as a path
 * outside the cgroup mount.  Reads the files every call: no cache. */
uint64_t cgroup_memory_limit(const char *root);

/* The memory this process may count on, in bytes: the least of the
 * machine's RAM (sysconf), cgroup_memory_limit("/") and the data limit
 * it runs under (RLIMIT_DATA: ulimit -d, systemd's LimitDATA=, prlimit
 * --data); UINT64_MAX when none is known.  What a process sizes its caps
 * of buffered peer data from (a share of it, never all: other processes
 * and its own memory need the rest).  Logs the figure and where it comes
 * from at debug level ("memory limit 512 MiB (cgroup)"): call it once
 * per process start. */
uint64_t memory_limit(void);

#endif
