"""The memory figure caps are sized from follows the server's cgroup (a
container's --memory), not the machine's RAM, with the real binary in a
real memory cgroup (memcg.py; skipped where none can be made):

- a gthread worker in a 512 MiB cgroup logs the figure and its source
  at debug level ("memory limit 512 MiB (cgroup)") and caps its total of
  unsent output at a quarter of it (128 MiB, not 256);
- the limit held by a parent cgroup (the server in an unlimited child,
  as in a pod whose container has no limit of its own) counts too: the
  kernel applies it, so the figure walks up to it.

What the cap then does under load is test_dirty_hardening.py's
(test_unread_replies_are_capped_across_clients[cgroup]: the arbiter drops
the client holding the most unread replies at a quarter of the cgroup's
limit) and test_gthread_behind.py / test_gthread_relay.py's (the total).

Apps: tests/integration/apps/gthread_apps.py (hello).
"""
import pytest

from conftest import http_get
import memcg

MiB = 1 << 20
APP = "tests.integration.apps.gthread_apps:hello"


@pytest.fixture
def cgroup_512():
    """Requested before make_server, so it is removed after the server."""
    with memcg.memory_cgroup(512 * MiB) as path:
        yield path


@pytest.fixture
def child_of_384():
    with memcg.memory_cgroup(384 * MiB, child=True) as path:
        yield path


def _serve_in(make_server, cgroup):
    s = make_server("-k", "gthread", "--threads", "2", "--log-level", "debug", APP,
                    start=False)
    s.argv = memcg.in_cgroup(cgroup, s.argv)
    s.start()
    status, _, body = http_get(s.port, "/x")
    assert (status, body) == (200, b"hello /x")
    return s


def test_gthread_total_follows_the_cgroup_limit(cgroup_512, make_server):
    s = _serve_in(make_server, cgroup_512)
    s.wait_log("memory limit 512 MiB (cgroup)")
    s.wait_log("gthread: unsent output capped at 131072 KiB in all")


def test_a_parent_cgroups_limit_counts(child_of_384, make_server):
    s = _serve_in(make_server, child_of_384)
    s.wait_log("memory limit 384 MiB (cgroup)")
    s.wait_log("gthread: unsent output capped at 98304 KiB in all")
