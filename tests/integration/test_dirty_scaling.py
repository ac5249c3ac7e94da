"""Dirty worker scaling and introspection against the real binary (issue 5,
"Scaling and introspection"): SIGTTIN / SIGTTOU to the dirty arbiter (its
pid found by its process title) and MANAGE add/remove (sent with the raw
client, dirty_raw.py) change the number of dirty workers while calls and
streams keep running, with no failed call, never below the largest app
allocation (SPEC §3 warning line); STATUS reports the arbiter pid, each
worker's pid, apps, calls in flight and calls served.

Apps: tests/integration/apps/stream_apps.py (Stasher limited to 2 workers).
"""
import signal
import threading
import time
import os

from conftest import proc_title, wait_for
from streamkit import (STASHER, STREAMER, arbiter_pid, client, dirty_workers,
                       start, status)
import dirty_raw as d

APPS = (STREAMER, STASHER + ":2")


class Load:
    """Threads making calls and streams without pause until stop()."""

    def __init__(self, s, callers=4, streamers=2):
        self.s = s
        self.errors = []
        self.calls = 0
        self.streams = 0
        self.pids = set()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.threads = ([threading.Thread(target=self._call) for _ in range(callers)] +
                        [threading.Thread(target=self._stream) for _ in range(streamers)])
        for t in self.threads:
            t.start()

    def _call(self):
        c = client(self.s, timeout=30)
        while not self._stop.is_set():
            try:
                pid = c.execute(STREAMER, "sleep", 0.005)
                with self._lock:
                    self.calls += 1
                    self.pids.add(pid)
            except Exception as e:   # noqa: BLE001 - every failure counts
                self.errors.append(repr(e))

    def _stream(self):
        c = client(self.s, timeout=30)
        while not self._stop.is_set():
            try:
                got = [ch["i"] for ch in c.stream(STREAMER, "slow", 5, 0.01)]
                assert got == [0, 1, 2, 3, 4], got
                with self._lock:
                    self.streams += 1
            except Exception as e:   # noqa: BLE001
                self.errors.append(repr(e))

    def wait_for_some(self, calls=20, streams=5):
        """Wait until the load has made more than that many calls and
        streams (the test asserts it did: a slow machine needs longer)."""
        wait_for(lambda: self.calls > calls and self.streams > streams or self.errors, 30,
                 what="more than %d calls and %d streams" % (calls, streams))

    def stop(self):
        self._stop.set()
        for t in self.threads:
            t.join(60)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def assert_clean(self, what):
        """After stop(): no call or stream failed, and there were more than
        wait_for_some()'s counts of them; prints the figures."""
        assert self.errors == []
        print("%s under load: %d calls, %d streams, 0 failed"
              % (what, self.calls, self.streams))
        assert self.calls > 20 and self.streams > 5


def settle(s, n):
    wait_for(lambda: len(dirty_workers(s)) == n and
             len([w for w in status(s)["workers"] if w["state"] == "alive"]) == n,
             20, what="%d dirty workers" % n)


def manage(s, rid, op, count):
    c = d.Conn(s.sock)
    try:
        c.send(d.frame(d.MANAGE, rid, {"op": op, "count": count}))
        t, got, v = c.recv_frame()
        assert (t, got) == (d.RESPONSE, rid), (t, got, v)
        return v["result"]
    finally:
        c.close()


def test_ttin_ttou_under_load_no_failed_call(make_server):
    s = start(make_server, "sig", workers=2, apps=APPS)
    arb = arbiter_pid(s)
    assert proc_title(arb).startswith("cunicorn: dirty-arbiter [")
    first = set(dirty_workers(s))
    with Load(s) as load:
        time.sleep(0.3)
        # one signal at a time: a signal sent while the same one is still
        # pending is merged with it (by the kernel, as for any process)
        os.kill(arb, signal.SIGTTIN)
        settle(s, 3)
        os.kill(arb, signal.SIGTTIN)
        settle(s, 4)
        s.wait_log("SIGTTIN: Increasing dirty workers to 4")
        new = set(dirty_workers(s)) - first
        wait_for(lambda: new & load.pids, 10, what="a new worker to serve calls")
        os.kill(arb, signal.SIGTTOU)
        settle(s, 3)
        os.kill(arb, signal.SIGTTOU)
        settle(s, 2)
        os.kill(arb, signal.SIGTTOU)        # the floor: Stasher needs 2
        s.wait_log("SIGTTOU: Cannot decrease below 2 workers (required by app specs)")
        time.sleep(0.5)
        assert len(dirty_workers(s)) == 2
        calls_before = load.calls
        wait_for(lambda: load.calls > calls_before, 10, what="calls still served")
        load.wait_for_some()
    load.assert_clean("scaling by signal")
    # the limited app is still on exactly 2 workers
    c = client(s)
    assert {c.execute(STASHER, "pid") for _ in range(8)} == set(dirty_workers(s))


def test_manage_add_remove_under_load_no_failed_call(make_server):
    s = start(make_server, "mng", workers=2, apps=APPS)
    with Load(s) as load:
        r = manage(s, 1, 1, 3)
        assert r == {"success": True, "added": 3, "num_workers": 5}
        settle(s, 5)
        r = manage(s, 2, 2, 2)
        assert r == {"success": True, "removed": 2, "num_workers": 3}
        settle(s, 3)
        r = manage(s, 3, 2, 5)               # only 1 above the floor
        assert r == {"success": False, "removed": 1, "num_workers": 2}
        settle(s, 2)
        assert "MANAGE: decreasing dirty workers to 2" in s.log()
        st = status(s)
        assert st["num_workers"] == 2 and st["min_workers"] == 2
        load.wait_for_some()
    load.assert_clean("scaling by MANAGE")


def test_manage_add_and_ttin_have_a_ceiling(make_server):
    """MANAGE add (and TTIN) stop at 16 x dirty_workers, at most 1024
    (README, Decisions): one client asking for 1024 workers at a time
    used to get them all, again and again (issue 8)."""
    s = start(make_server, "ceil", workers=1)
    r = manage(s, 1, 1, 20)
    assert r == {"success": False, "added": 15, "num_workers": 16}, r
    r = manage(s, 2, 1, 1)
    assert r == {"success": False, "added": 0, "num_workers": 16}, r
    s.wait_log("MANAGE: cannot increase above 16 dirty workers", count=2)
    os.kill(s.arbiter, signal.SIGTTIN)
    s.wait_log("SIGTTIN: Cannot increase above 16 dirty workers")
    assert status(s)["num_workers"] == 16
    r = manage(s, 3, 2, 15)
    assert r == {"success": True, "removed": 15, "num_workers": 1}, r
    r = manage(s, 4, 1, 1)                  # room again below the ceiling
    assert r == {"success": True, "added": 1, "num_workers": 2}, r
    settle(s, 2)


def test_status_reports_pids_apps_in_flight_and_served(make_server):
    s = start(make_server, "stat", workers=2, apps=APPS)
    c = client(s)
    before = status(s)
    for _ in range(10):
        c.execute(STREAMER, "pid")
    # one call held in flight on a known worker
    done = threading.Event()
    holder = {}
    def hold():
        holder["pid"] = client(s).execute(STREAMER, "sleep", 1.0)
        done.set()
    th = threading.Thread(target=hold)
    th.start()
    st = wait_for(lambda: (lambda x: x if x["in_flight"] == 1 else None)(status(s)), 5,
                  what="one call in flight")
    assert st["arbiter_pid"] == arbiter_pid(s)
    workers = {w["pid"]: w for w in st["workers"]}
    assert sorted(workers) == dirty_workers(s)
    busy = [p for p, w in workers.items() if w["in_flight"] == 1]
    assert len(busy) == 1
    for w in workers.values():
        assert set(w["apps"]) == {STREAMER, STASHER}     # both workers: 2 of 2
        assert w["state"] == "alive"
    assert {a["app_path"]: a["worker_count"] for a in st["apps"]} == {STREAMER: None, STASHER: 2}
    # served: 10 calls more than before, spread over both workers
    assert st["served"] - before["served"] == 10
    assert sum(w["served"] for w in st["workers"]) == st["served"]
    assert all(w["served"] >= 5 for w in st["workers"]), st["workers"]
    th.join(10)
    assert holder["pid"] == busy[0]
    st = status(s)
    assert st["in_flight"] == 0 and st["served"] - before["served"] == 11
