"""The dirty arbiter under a hostile or starved client (issue 8, section 2),
against the real binary with raw frames (dirty_raw.py):

- reply amplification: sixteen stash GETs of a 40 MiB value in one write
  from a client that reads nothing.  The per-client output cap (256 MiB)
  is checked at each frame, so the arbiter drops the client after the
  seventh reply instead of queueing all sixteen (640 MiB).

Apps: tests/integration/apps/dirty_apps.py (Echo).
"""
from conftest import wait_for
import dirty_raw as d
from test_dirty_arbiter import ECHO, connect, start, unique_name, vm_kb

MiB = 1024 * 1024


def test_reply_amplification_is_capped_per_frame(make_server):
    s = start(make_server, unique_name("amp"), workers=1)
    c = connect(s)
    c.s.settimeout(60)
    value = b"v" * (40 * MiB)
    c.send(d.frame(d.STASH, 1, {"op": 1, "table": "amp", "key": "big", "value": value}))
    assert c.recv_frame()[:2] == (d.RESPONSE, 1)
    del value
    hwm0 = vm_kb(s.arbiter, "VmHWM")
    # sixteen GETs in one write, and no reading
    c.send(b"".join(d.frame(d.STASH, 100 + i, {"op": 2, "table": "amp", "key": "big"})
                    for i in range(16)))
    wait_for(lambda: "does not read its replies" in s.log(), 30,
             what="the client to be dropped")
    assert c.at_eof(30)                     # what the socket held, then EOF
    hwm = vm_kb(s.arbiter, "VmHWM")
    print("arbiter peak RSS %d kB -> %d kB (+%d MiB)" % (hwm0, hwm, (hwm - hwm0) // 1024))
    # at most the cap (256 MiB) plus one reply; all sixteen would be 640
    assert (hwm - hwm0) * 1024 < 330 * MiB, (hwm0, hwm)
    c.close()
    # the arbiter carries on, the stash intact
    c = connect(s)
    try:
        c.send(d.frame(d.STASH, 2, {"op": 6, "table": "amp"}))
        t, rid, v = c.recv_frame()
        assert (t, rid) == (d.RESPONSE, 2) and v["result"]["size"] == 1
        assert d.result(c.call(3, ECHO, "echo", "after")) == "after"
    finally:
        c.close()
