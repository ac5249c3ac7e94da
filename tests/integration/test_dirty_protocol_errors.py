"""Malformed frames sent to the dirty arbiter over raw sockets (frames
built by hand with struct): each gets ERROR DirtyProtocolError (with the
frame's id when its header was readable, else 0) and only that connection
is closed; the arbiter and every other connection carry on, including a
call in flight on another connection at the same moment (SPEC §5).
"""
import os
import signal
import struct
import threading

import pytest

from conftest import pid_alive, wait_for
import dirty_raw as d
from test_dirty_arbiter import ECHO, arbiter_pid, start, unique_name


def nested_list(depth):
    return b"\x20\x00\x00\x00\x01" * depth + b"\x00"


def req(payload, rid):
    return d.header(d.REQUEST, len(payload), rid) + payload


GOOD = d.tlv({"app_path": ECHO, "action": "echo", "args": [1], "kwargs": {}})

# name -> (bytes to send, expected id in the ERROR, half-close after sending)
CASES = {
    "bad magic": (b"XY" + bytes([1, 1]) + struct.pack(">IQ", 0, 41), 0, False),
    "bad version": (b"GD" + bytes([9, 1]) + struct.pack(">IQ", 0, 42), 0, False),
    "unknown type": (d.header(0x7F, len(GOOD), 43) + GOOD, 43, False),
    "reply type from a client": (d.header(d.RESPONSE, len(GOOD), 44) + GOOD, 44, False),
    "oversize length": (d.header(d.REQUEST, 0xFFFFFFFF, 45), 45, False),
    "just over 64 MiB": (d.header(d.REQUEST, 64 * 1024 * 1024 + 1, 46), 46, False),
    "truncated frame": (d.header(d.REQUEST, len(GOOD), 47) + GOOD[:10], 47, True),
    "truncated header": (d.header(d.REQUEST, len(GOOD), 48)[:9], 0, True),
    "truncated value": (d.header(d.REQUEST, 5, 49) + b"\x11\x00\x00\x00\x09", 49, False),
    "trailing bytes": (d.header(d.REQUEST, len(GOOD) + 1, 50) + GOOD + b"\x00", 50, False),
    "over-deep nesting": (req(b"\x21\x00\x00\x00\x01" + d.tlv("app_path") + nested_list(40), 51),
                          51, False),
    "invalid utf-8": (req(b"\x21\x00\x00\x00\x01" + d.tlv("app_path") +
                          b"\x11\x00\x00\x00\x02\xc3\x28", 52), 52, False),
    "surrogate in utf-8": (req(b"\x21\x00\x00\x00\x01" + d.tlv("action") +
                               b"\x11\x00\x00\x00\x03\xed\xa0\x80", 53), 53, False),
    "bad tlv type": (d.header(d.REQUEST, 2, 54) + b"\x99\x00", 54, False),
    "bool not 0/1": (req(b"\x21\x00\x00\x00\x01" + d.tlv("x") + b"\x01\x07", 55), 55, False),
    "count larger than the payload": (d.header(d.REQUEST, 5, 56) + b"\x20\x00\x10\x00\x00", 56, False),
    "request without app_path": (req(d.tlv({"action": "echo", "args": [], "kwargs": {}}), 57),
                                 57, False),
    "request not a dict": (req(d.tlv([1, 2]), 58), 58, False),
    "empty request": (d.header(d.REQUEST, 0, 59), 59, False),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from conftest import Server
    import test_dirty_arbiter as t
    s = Server(*t.dirty_args(unique_name("proto"), 2), binary=t.BIN,
               workdir=str(tmp_path_factory.mktemp("proto")))
    s.start()
    try:
        s.arbiter = wait_for(lambda: arbiter_pid(s), 10, what="the dirty arbiter")
        wait_for(lambda: len(t.dirty_workers(s)) == 2, 15, what="2 dirty workers")
        s.sock = t.socket_path(s)
        yield s
    finally:
        s.cleanup()


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_frame(server, case):
    data, rid, half_close = CASES[case]
    bystander = d.Conn(server.sock)
    # a call in flight on another connection while the bad frame arrives
    bystander.send(d.request(7, ECHO, "sleep", 0.3))
    bad = d.Conn(server.sock)
    # a good call first on the same connection: answered normally
    assert d.result(bad.call(1, ECHO, "echo", "before")) == "before"
    bad.send(data)
    if half_close:
        bad.s.shutdown(1)
    t, got_id, v = bad.recv_frame()
    assert t == d.ERROR, (case, v)
    assert v["error"]["error_type"] == "DirtyProtocolError", v
    assert got_id == rid
    assert bad.at_eof(), "the connection must be closed after a protocol error"
    bad.close()
    t, got_id, v = bystander.recv_frame()
    assert (t, got_id) == (d.RESPONSE, 7) and v["result"]["slept"] == 0.3
    assert d.result(bystander.call(8, ECHO, "echo", case)) == case
    bystander.close()
    assert arbiter_pid(server) == server.arbiter


def test_garbage_storm_while_clients_are_served(server):
    stop = threading.Event()
    failures = []

    def good_client(k):
        c = d.Conn(server.sock)
        i = 0
        while not stop.is_set():
            i += 1
            try:
                if d.result(c.call(i, ECHO, "echo", [k, i])) != [k, i]:
                    failures.append((k, i))
            except Exception as e:   # any failure of a good client counts
                failures.append((k, i, repr(e)))
                return
        c.close()

    threads = [threading.Thread(target=good_client, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    rnd = __import__("random").Random(1234)
    for n in range(300):
        data = CASES[sorted(CASES)[n % len(CASES)]][0]
        if n % 3 == 0:   # random bytes after a valid header prefix
            data = d.header(d.REQUEST, 64, n) + bytes(rnd.randrange(256) for _ in range(64))
        c = d.Conn(server.sock)
        try:
            c.send(data)
            c.s.shutdown(1)
            c.at_eof(2.0)
        except OSError:
            pass
        c.close()
    stop.set()
    for t in threads:
        t.join(10)
    assert failures == []
    assert arbiter_pid(server) == server.arbiter


def test_misbehaving_worker_is_replaced(server):
    """A worker that writes garbage on its channel to the arbiter is killed
    and replaced; its call in flight gets DirtyWorkerError; the arbiter and
    the other worker carry on.  The app's `sabotage` action writes a bad
    header on the worker's own socketpair end."""
    import test_dirty_arbiter as t
    before = set(t.dirty_workers(server))
    c = d.Conn(server.sock)
    tp, v = c.call(1, ECHO, "sabotage")
    assert tp == d.ERROR and v["error"]["error_type"] == "DirtyWorkerError", v
    victim = int(v["error"]["message"].split("pid: ")[1].split(")")[0])
    assert victim in before
    server.wait_log("Dirty worker (pid: %d) sent a malformed message" % victim)
    wait_for(lambda: len(t.dirty_workers(server)) == 2 and victim not in t.dirty_workers(server),
             10, what="a replacement worker")
    # killed: a process that is still exiting has lost its title already
    wait_for(lambda: not pid_alive(victim), 10, what="the killed worker gone")
    assert d.result(c.call(2, ECHO, "echo", "fine")) == "fine"
    assert arbiter_pid(server) == server.arbiter
