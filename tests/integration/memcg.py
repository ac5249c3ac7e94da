"""Memory cgroups of a test's own, for running the real binary under a
container-like memory limit (a container's --memory, systemd's
MemoryMax=): cgroup v1's memory hierarchy, or v2 with the memory
controller enabled for its root's children.  We run as root here.

memory_cgroup() makes one (optionally with a child the server goes into,
so that the limit is a parent's) and removes it once the processes in it
are gone; in_cgroup() wraps a server's argv so that the master moves
itself in and then execs: its whole tree is in the cgroup.

Owns the cgroup directories it makes.  Used by test_dirty_hardening.py
and test_memory_cgroup.py.
"""
import contextlib
import os
import uuid

import pytest

from conftest import wait_for


def cgroup_root():
    """(where a memory cgroup can be made, its limit file's name), or
    (None, why not)."""
    v1 = "/sys/fs/cgroup/memory"
    if os.path.exists(os.path.join(v1, "memory.limit_in_bytes")):
        if os.access(v1, os.W_OK):
            return v1, "memory.limit_in_bytes"
        return None, "%s is not writable" % v1
    try:
        with open("/sys/fs/cgroup/cgroup.subtree_control") as f:
            if "memory" in f.read().split():
                if os.access("/sys/fs/cgroup", os.W_OK):
                    return "/sys/fs/cgroup", "memory.max"
                return None, "/sys/fs/cgroup is not writable"
    except OSError:
        pass
    return None, "no memory cgroup hierarchy (v1 memory or v2 with memory delegated) on this machine"


@contextlib.contextmanager
def memory_cgroup(limit, child=False):
    """A fresh memory cgroup limited to `limit` bytes; with child=True,
    yields an unlimited child of it instead (the limit is the parent's).
    Skips the test when no cgroup can be made here."""
    root, limit_file = cgroup_root()
    if root is None:
        pytest.skip(limit_file)
    path = os.path.join(root, "cunicorn-memcg-%d-%s" % (os.getpid(), uuid.uuid4().hex[:8]))
    try:
        os.mkdir(path)
    except OSError as e:
        pytest.skip("cannot make a memory cgroup: %s" % e)
    made = [path]
    try:
        with open(os.path.join(path, limit_file), "w") as f:
            f.write(str(limit))
        if child:
            made.append(os.path.join(path, "server"))
            os.mkdir(made[-1])
        yield made[-1]
    finally:
        def empty(p):
            with open(os.path.join(p, "cgroup.procs")) as f:
                return not f.read().strip()
        for p in reversed(made):
            if os.path.isdir(p):
                wait_for(lambda: empty(p), 15, what="the cgroup's processes to exit")
                os.rmdir(p)


def in_cgroup(path, argv):
    """argv run in the cgroup `path`: the shell moves itself in, then
    execs the server, so the master and all it forks are in it."""
    return ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', path] + list(argv)
