"""Tests of the _cunicorn_dirty extension module (src/dirty_pyext.c).

Run after `make ext`, with PYTHONPATH=build/python:
    /usr/bin/python3 -m pytest tests/integration/test_dirty_codec_ext.py

Covers: round trips of Python values, byte-exact frames against an
independent pure-Python encoder written here from the spec, errors on
malformed bytes, and the C Connection against a fake dirty arbiter (a
thread serving a Unix socket in this process, or a child process for the
round-trip measurement).  Run as a script (`python3 THIS --serve PATH`) it
is that fake arbiter.
"""

import contextlib
import math
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "build", "python"))

import _cunicorn_dirty as d  # noqa: E402
# dirty_raw (this folder) is the oracle: the TLV encoding written from
# SPEC.md §5 in plain Python, shared with the raw-socket arbiter tests.
from dirty_raw import header, tlv as oracle_encode, untlv as oracle_decode  # noqa: E402

if __name__ != "__main__":
    import pytest

    pytestmark = pytest.mark.nosan(
        reason="tests the standalone extension inside this Python process; the "
               "sanitized server binary is never started, so a second run adds nothing")

# ---------------------------------------------------------------------------
# An independent oracle: the wire format written from SPEC.md §5 in Python
# (dirty_raw.py's tlv/untlv, and the frame header here).

HDR = struct.Struct(">2sBBIQ")


def oracle_frame(mtype, rid, payload):
    body = b"" if payload is None else oracle_encode(payload)
    return header(mtype, len(body), rid) + body


# ---------------------------------------------------------------------------
# The fake dirty arbiter.

def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


RECEIVED = []     # (action, args) of every request the fake got, in order


def serve_conn(sock):
    """Answer frames on one connection; the action says how."""
    try:
        while True:
            hdr = recv_exact(sock, 16)
            if hdr is None:
                return
            magic, ver, mtype, length, rid = HDR.unpack(hdr)
            body = recv_exact(sock, length) if length else b""
            if body is None:
                return
            payload = oracle_decode(body)[0] if body else None
            if mtype == d.MSG_TYPE_STATUS:
                sock.sendall(oracle_frame(d.MSG_TYPE_RESPONSE, rid,
                                          {"result": {"workers": 2}}))
                continue
            if mtype == d.MSG_TYPE_STASH:
                sock.sendall(oracle_frame(d.MSG_TYPE_RESPONSE, rid,
                                          {"result": payload}))
                continue
            if mtype == d.MSG_TYPE_MANAGE:
                sock.sendall(oracle_frame(d.MSG_TYPE_ERROR, rid, {"error": {
                    "error_type": "DirtyError", "message": "no manage",
                    "details": {}}}))
                continue
            action, args, kwargs = (payload["action"], payload["args"],
                                    payload["kwargs"])
            RECEIVED.append((action, args))
            if action == "echo":
                sock.sendall(oracle_frame(d.MSG_TYPE_RESPONSE, rid, {
                    "result": {"app": payload["app_path"], "args": args,
                               "kwargs": kwargs}}))
            elif action == "ret":
                sock.sendall(oracle_frame(d.MSG_TYPE_RESPONSE, rid,
                                          {"result": args[0]}))
            elif action == "fail":
                sock.sendall(oracle_frame(d.MSG_TYPE_ERROR, rid, {"error": {
                    "error_type": "DirtyAppError", "message": "boom",
                    "details": {"traceback": "Traceback: line 1"}}}))
            elif action == "stream":
                out = b"".join(oracle_frame(d.MSG_TYPE_CHUNK, rid,
                                            {"data": x}) for x in args)
                sock.sendall(out + oracle_frame(d.MSG_TYPE_END, rid, None))
            elif action == "stream_fail":
                sock.sendall(oracle_frame(d.MSG_TYPE_CHUNK, rid,
                                          {"data": "first"}))
                sock.sendall(oracle_frame(d.MSG_TYPE_ERROR, rid, {"error": {
                    "error_type": "DirtyAppError", "message": "mid-stream",
                    "details": {}}}))
            elif action == "stale":
                # a reply to some other id, then ours, in one write
                sock.sendall(oracle_frame(d.MSG_TYPE_RESPONSE, rid + 1000,
                                          {"result": "wrong"}) +
                             oracle_frame(d.MSG_TYPE_RESPONSE, rid,
                                          {"result": "right"}))
            elif action == "split":
                frame = oracle_frame(d.MSG_TYPE_RESPONSE, rid,
                                     {"result": args[0]})
                for i in range(len(frame)):
                    sock.sendall(frame[i:i + 1])
                    if i % 7 == 0:
                        time.sleep(0.001)
            elif action == "sleep":
                time.sleep(args[0])
                sock.sendall(oracle_frame(d.MSG_TYPE_RESPONSE, rid,
                                          {"result": "late"}))
            elif action == "close":
                return
            elif action == "half":
                frame = oracle_frame(d.MSG_TYPE_RESPONSE, rid,
                                     {"result": "x" * 100})
                sock.sendall(frame[:40])
                return
            elif action == "garbage":
                sock.sendall(b"XX" + b"\x00" * 14)
            elif action == "bad_utf8":
                body = b"\x21\x00\x00\x00\x01\x11\x00\x00\x00\x06result" \
                       b"\x11\x00\x00\x00\x02\xed\xa0"
                sock.sendall(HDR.pack(b"GD", 1, d.MSG_TYPE_RESPONSE,
                                      len(body), rid) + body)
            else:
                sock.sendall(oracle_frame(d.MSG_TYPE_ERROR, rid, {"error": {
                    "error_type": "DirtyAppNotFoundError",
                    "message": "no action %s" % action, "details": {}}}))
    except (ConnectionError, OSError):
        return
    finally:
        sock.close()


def serve(path, ready=None, stop=None):
    lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lsock.bind(path)
    lsock.listen(64)
    lsock.settimeout(0.1)
    if ready is not None:
        ready.set()
    threads = []
    try:
        while stop is None or not stop.is_set():
            try:
                c, _ = lsock.accept()
            except socket.timeout:
                continue
            c.settimeout(None)
            t = threading.Thread(target=serve_conn, args=(c,), daemon=True)
            t.start()
            threads.append(t)
    finally:
        lsock.close()


@contextlib.contextmanager
def arbiter_process(prefix):
    """The fake arbiter in a child process (this file run as a script),
    listening in a new temporary directory named prefix*: yields its
    socket's path once it exists, then kills the child and removes the
    directory (socket included)."""
    tmp = tempfile.mkdtemp(prefix=prefix)
    path = os.path.join(tmp, "arbiter.sock")
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__),
                             "--serve", path], start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(path):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.01)
        yield path
    finally:
        os.killpg(proc.pid, 9)
        proc.wait()
        shutil.rmtree(tmp)


if __name__ != "__main__":
    @pytest.fixture
    def arbiter():
        tmp = tempfile.mkdtemp(prefix="cunicorn-dirty-test-")
        path = os.path.join(tmp, "arbiter.sock")
        ready, stop = threading.Event(), threading.Event()
        t = threading.Thread(target=serve, args=(path, ready, stop),
                             daemon=True)
        t.start()
        assert ready.wait(5)
        yield path
        stop.set()
        t.join(5)
        os.unlink(path)
        os.rmdir(tmp)

# ---------------------------------------------------------------------------
# Codec


SAMPLES = [
    None, True, False, 0, 1, -1, 2 ** 63 - 1, -2 ** 63, 1.5, -0.0, 1e308,
    float("inf"), float("-inf"), b"", b"\x00\xff" * 100, "", "h\u00e9llo \U0001F984",
    "x" * 10000, [], [1, [2, [3, [None]]]], {}, {"a": {"b": {"c": []}}},
    {"": None, "k\u00e9y": [b"1", 2, 3.0, "4", True]},
]


def test_round_trip_samples():
    for v in SAMPLES:
        enc = d.encode(v)
        assert enc == oracle_encode(v), v
        back = d.decode(enc)
        assert back == v and type(back) is type(v), v


def test_round_trip_conversions():
    assert d.decode(d.encode((1, 2, (3,)))) == [1, 2, [3]]
    assert d.decode(d.encode(bytearray(b"ab"))) == b"ab"
    assert d.decode(d.encode(memoryview(b"abc")[1:])) == b"bc"
    nan = d.decode(d.encode(float("nan")))
    assert math.isnan(nan)
    assert math.copysign(1, d.decode(d.encode(-0.0))) == -1

    class S(str):
        pass

    class I(int):
        pass

    class L(list):
        pass

    class D(dict):
        pass

    v = D({S("k"): L([I(5), S("s")])})
    assert d.decode(d.encode(v)) == {"k": [5, "s"]}
    assert d.encode(True) == b"\x01\x01"      # bool is not encoded as int
    assert d.encode(I(7)) == oracle_encode(7)


def test_round_trip_random():
    rnd = random.Random(1234)

    def value(depth):
        k = rnd.randrange(9 if depth < 6 else 7)
        if k == 0:
            return None
        if k == 1:
            return rnd.random() < 0.5
        if k == 2:
            return rnd.randrange(-2 ** 63, 2 ** 63)
        if k == 3:
            return rnd.uniform(-1e9, 1e9)
        if k == 4:
            return bytes(rnd.randrange(256) for _ in range(rnd.randrange(20)))
        if k == 5 or k == 6:
            return "".join(chr(rnd.choice([rnd.randrange(32, 127),
                                           rnd.randrange(0xA0, 0xD7FF),
                                           rnd.randrange(0x10000, 0x10FFFF)]))
                           for _ in range(rnd.randrange(12)))
        if k == 7:
            return [value(depth + 1) for _ in range(rnd.randrange(5))]
        return {"k%d" % i: value(depth + 1)
                for i in range(rnd.randrange(5))}

    for _ in range(500):
        v = value(0)
        enc = d.encode(v)
        assert enc == oracle_encode(v)
        assert d.decode(enc) == v
        assert oracle_decode(enc)[0] == v


def test_encode_errors():
    with pytest.raises(OverflowError):
        d.encode(2 ** 63)
    with pytest.raises(OverflowError):
        d.encode(-2 ** 63 - 1)
    with pytest.raises(TypeError):
        d.encode({1: "int key"})
    with pytest.raises(TypeError):
        d.encode({"ok": {b"bytes key": 1}})
    for bad in (set(), object(), 1j, frozenset(), d.encode):
        with pytest.raises(TypeError):
            d.encode(bad)
    with pytest.raises(TypeError):
        d.encode([1, 2, object()])
    with pytest.raises(UnicodeEncodeError):
        d.encode("lone \ud800 surrogate")
    # nesting: MAX_DEPTH containers ok, one more refused
    v = []
    for _ in range(d.MAX_DEPTH - 1):
        v = [v]
    assert d.decode(d.encode(v)) == v
    with pytest.raises(ValueError):
        d.encode([v])
    # self-reference does not recurse forever
    loop = []
    loop.append(loop)
    with pytest.raises(ValueError):
        d.encode(loop)


def test_encode_limits():
    assert d.MAX_BLOB == 64 * 1024 * 1024 == d.MAX_PAYLOAD
    with pytest.raises(ValueError):
        d.encode(b"x" * (d.MAX_BLOB + 1))
    with pytest.raises(ValueError):
        d.encode([None] * (d.MAX_COUNT + 1))
    assert len(d.encode([None] * d.MAX_COUNT)) == 5 + d.MAX_COUNT
    # a RESPONSE payload of exactly MAX_PAYLOAD bytes, and one byte more
    overhead = 5 + (5 + 6) + 5          # dict, "result" key, bytes header
    blob = b"x" * (d.MAX_PAYLOAD - overhead)
    f = d.encode_frame(d.MSG_TYPE_RESPONSE, 1, {"result": blob})
    assert d.decode_header(f[:16]) == (d.MSG_TYPE_RESPONSE, d.MAX_PAYLOAD, 1)
    with pytest.raises(ValueError):
        d.encode_frame(d.MSG_TYPE_RESPONSE, 1, {"result": blob + b"y"})


BAD_PAYLOADS = [
    (b"", "empty"),
    (b"\x00\x00", "trailing"),
    (b"\x02", "unknown type"),
    (b"\x22\x00\x00\x00\x00", "unknown type"),
    (b"\x01", "truncated bool"),
    (b"\x01\x02", "bool 2"),
    (b"\x05\x00\x00", "truncated int"),
    (b"\x06\x00", "truncated float"),
    (b"\x10\x00\x00\x00\x05abc", "truncated bytes"),
    (b"\x11\x00\x00", "truncated string length"),
    (b"\x11\x04\x00\x00\x01" + b"a" * 16, "string over max"),
    (b"\x20\x00\x00\x00\x03\x00\x00", "truncated list"),
    (b"\x20\x00\x10\x00\x01" + b"\x00" * 64, "list over max"),
    (b"\x21\x00\x00\x00\x01\x05" + b"\x00" * 8 + b"\x00", "int key"),
    (b"\x21\x00\x00\x00\x01\x00\x00", "None key"),
    (b"\x21\x00\x00\x00\x01\x11\x00\x00\x00\x01k", "dict missing value"),
    (b"\x11\x00\x00\x00\x02\xc0\xaf", "overlong"),
    (b"\x11\x00\x00\x00\x03\xe0\x80\xaf", "overlong 3"),
    (b"\x11\x00\x00\x00\x03\xed\xa0\x80", "surrogate"),
    (b"\x11\x00\x00\x00\x04\xf4\x90\x80\x80", "above U+10FFFF"),
    (b"\x11\x00\x00\x00\x01\x80", "lone continuation"),
    (b"\x20\x00\x00\x00\x01" * (d.MAX_DEPTH + 1) + b"\x00", "too deep"),
]


def test_decode_malformed():
    assert issubclass(d.ProtocolError, ValueError)
    for data, why in BAD_PAYLOADS:
        with pytest.raises(d.ProtocolError):
            d.decode(data)
            pytest.fail(why)
    # the deepest accepted nesting decodes
    ok = b"\x20\x00\x00\x00\x01" * (d.MAX_DEPTH - 1) + b"\x20\x00\x00\x00\x00"
    v = d.decode(ok)
    for _ in range(d.MAX_DEPTH - 1):
        v = v[0]
    assert v == []
    # any buffer is accepted as input
    assert d.decode(bytearray(b"\x05" + b"\x00" * 7 + b"\x2a")) == 42
    assert d.decode(memoryview(b"\x00")) is None


def test_truncations_of_valid_payload_fail():
    enc = d.encode({"a": [1, "two", b"three", 4.0, None, True, {"x": "y"}]})
    for i in range(len(enc)):
        with pytest.raises(d.ProtocolError):
            d.decode(enc[:i])


def test_mutated_payloads_decode_or_raise_protocol_error():
    """Random byte flips, cuts and insertions: decode() returns a value the
    oracle agrees with, or raises ProtocolError — never anything else."""
    rnd = random.Random(99)
    bases = [d.encode(v) for v in SAMPLES if v not in ([], {})] + [
        d.encode({"app_path": "a:B", "action": "x", "args": [1, "\u00e9"],
                  "kwargs": {"k": [b"v", 2.5, None]}})]
    accepted = rejected = 0
    for _ in range(4000):
        b = bytearray(rnd.choice(bases))
        for _ in range(rnd.randrange(1, 4)):
            op = rnd.randrange(3)
            i = rnd.randrange(len(b) + 1)
            if op == 0 and i < len(b):
                b[i] = rnd.choice([0, 1, 2, 0x11, 0x20, 0x21, 0x80, 0xed,
                                   0xff, rnd.randrange(256)])
            elif op == 1:
                del b[i:i + rnd.randrange(1, 4)]
            else:
                b[i:i] = bytes([rnd.randrange(256)])
        try:
            v = d.decode(bytes(b))
        except d.ProtocolError:
            rejected += 1
            continue
        accepted += 1
        ov, end = oracle_decode(bytes(b))
        assert end == len(b)
        if not (isinstance(v, float) and math.isnan(v)):
            assert d.encode(v) == bytes(b)
    assert accepted > 100 and rejected > 100


# ---------------------------------------------------------------------------
# Frames

REQUEST_HEX = (
    "4744" "01" "01" "00000060" "0000000000000001"
    "2100000004"
    "1100000008" + b"app_path".hex() +
    "1100000010" + b"app:TestDirtyApp".hex() +
    "1100000006" + b"action".hex() +
    "1100000004" + b"echo".hex() +
    "1100000004" + b"args".hex() +
    "2000000001" "1100000002" + b"hi".hex() +
    "1100000006" + b"kwargs".hex() +
    "2100000000")

ERROR_HEX = (
    "4744" "01" "03" "0000005b" "0102030405060708"
    "2100000001" "1100000005" + b"error".hex() +
    "2100000003"
    "110000000a" + b"error_type".hex() + "110000000d" + b"DirtyAppError".hex() +
    "1100000007" + b"message".hex() + "1100000004" + b"boom".hex() +
    "1100000007" + b"details".hex() + "2100000000")


def test_frame_vectors():
    want = bytes.fromhex(REQUEST_HEX)
    assert d.encode_request(1, "app:TestDirtyApp", "echo", ["hi"], {}) == want
    assert d.encode_request(1, "app:TestDirtyApp", "echo", ("hi",)) == want
    assert d.encode_frame(d.MSG_TYPE_REQUEST, 1, {
        "app_path": "app:TestDirtyApp", "action": "echo", "args": ["hi"],
        "kwargs": {}}) == want
    assert d.decode_header(want[:16]) == (d.MSG_TYPE_REQUEST, 0x60, 1)
    assert d.decode_frame(want) == (d.MSG_TYPE_REQUEST, 1, {
        "app_path": "app:TestDirtyApp", "action": "echo", "args": ["hi"],
        "kwargs": {}})

    want = bytes.fromhex(ERROR_HEX)
    assert d.encode_frame(d.MSG_TYPE_ERROR, 0x0102030405060708, {"error": {
        "error_type": "DirtyAppError", "message": "boom",
        "details": {}}}) == want

    end = d.encode_frame(d.MSG_TYPE_END, 2 ** 64 - 1, None)
    assert end == bytes.fromhex("4744010500000000ffffffffffffffff")
    assert d.decode_frame(end) == (d.MSG_TYPE_END, 2 ** 64 - 1, None)
    assert d.decode_header(end + b"extra") == (d.MSG_TYPE_END, 0, 2 ** 64 - 1)


def test_frame_errors():
    good = d.encode_frame(d.MSG_TYPE_RESPONSE, 5, {"result": 1})
    with pytest.raises(d.ProtocolError):
        d.decode_header(good[:15])
    for i, b in ((0, 0x48), (1, 0x00), (2, 0x02), (3, 0x06), (3, 0x00),
                 (4, 0x04)):
        bad = bytearray(good)
        bad[i] = b
        with pytest.raises(d.ProtocolError):
            d.decode_header(bytes(bad))
        with pytest.raises(d.ProtocolError):
            d.decode_frame(bytes(bad))
    with pytest.raises(d.ProtocolError):
        d.decode_frame(good[:-1])
    with pytest.raises(d.ProtocolError):
        d.decode_frame(good + b"\x00")
    with pytest.raises(ValueError):
        d.encode_frame(0x42, 1, None)
    with pytest.raises(OverflowError):
        d.encode_frame(d.MSG_TYPE_END, -1, None)
    with pytest.raises(OverflowError):
        d.encode_frame(d.MSG_TYPE_END, 2 ** 64, None)
    with pytest.raises(TypeError):
        d.encode_request(1, "a:B", "x", "not a list")
    with pytest.raises(TypeError):
        d.encode_request(1, "a:B", "x", [], ["not a dict"])


def test_frame_reader_cuts_any_split_of_a_stream():
    frames = [d.encode_frame(d.MSG_TYPE_RESPONSE, 1, {"result": "x" * 70000}),
              d.encode_frame(d.MSG_TYPE_CHUNK, 2, {"data": b"\x00abc"}),
              d.encode_frame(d.MSG_TYPE_END, 2, None),
              d.encode_frame(d.MSG_TYPE_ERROR, 3, {"error": {"message": "m"}})]
    want = [d.decode_frame(f) for f in frames]
    stream = b"".join(frames)
    rnd = random.Random(7)
    for cuts in ([1] * 40 + [len(stream)], [len(stream)], [16, 1, 70000, 3, 10 ** 6],
                 [rnd.randrange(1, 5000) for _ in range(200)]):
        r, got, pos = d.FrameReader(), [], 0
        for n in cuts:
            if pos >= len(stream):
                break
            got += r.feed(memoryview(stream)[pos:pos + n])
            pos += n
            # what was fed and is not a whole frame yet is kept, no more
            assert r.pending == min(pos, len(stream)) - sum(
                len(f) for f in frames[:len(got)])
        assert got == want
        assert r.pending == 0


def test_frame_reader_refuses_a_stream_after_a_bad_header():
    good = d.encode_frame(d.MSG_TYPE_RESPONSE, 5, {"result": 1})
    r = d.FrameReader()
    bad = bytearray(good)
    bad[0] = 0x48                    # not the magic
    with pytest.raises(d.ProtocolError):
        r.feed(good + bytes(bad))    # the good frame goes with the stream
    with pytest.raises(d.ProtocolError):
        r.feed(good)
    # a header announcing more than MAX_PAYLOAD is refused before any
    # byte of it is kept
    huge = bytearray(good[:16])
    huge[4:8] = struct.pack(">I", d.MAX_PAYLOAD + 1)
    r = d.FrameReader()
    with pytest.raises(d.ProtocolError):
        r.feed(bytes(huge))
    assert r.pending == 0
    # a payload that does not decode: ProtocolError, and refused after
    r = d.FrameReader()
    junk = bytearray(good)
    junk[16] = 0xEE
    with pytest.raises(d.ProtocolError):
        r.feed(bytes(junk))
    with pytest.raises(d.ProtocolError):
        r.feed(good)
    with pytest.raises(TypeError):
        d.FrameReader(1)


def test_worker_side_builders():
    # the C API the dirty worker uses, through its Python wrappers
    assert d.encode_response(7, [1, "a"]) == oracle_frame(
        d.MSG_TYPE_RESPONSE, 7, {"result": [1, "a"]})
    assert d.encode_chunk(8, b"x") == oracle_frame(d.MSG_TYPE_CHUNK, 8,
                                                   {"data": b"x"})
    assert d.encode_end(9) == oracle_frame(d.MSG_TYPE_END, 9, None)
    assert d.encode_error(0x0102030405060708, "DirtyAppError",
                          "boom") == bytes.fromhex(ERROR_HEX)
    tb = {"traceback": "Traceback (most recent call last):\n  ...\n"}
    assert d.encode_error(3, "DirtyAppError", "m\u00e9", tb) == oracle_frame(
        d.MSG_TYPE_ERROR, 3, {"error": {"error_type": "DirtyAppError",
                                        "message": "m\u00e9", "details": tb}})
    # unencodable details are sent as {} rather than failing
    assert d.decode_frame(d.encode_error(4, "DirtyError", "x",
                                         {"bad": object()}))[2] == {
        "error": {"error_type": "DirtyError", "message": "x", "details": {}}}
    # a result that cannot be encoded raises, and nothing is half-built
    with pytest.raises(TypeError):
        d.encode_response(1, {"x": object()})
    with pytest.raises(ValueError):
        nested = []
        for _ in range(d.MAX_DEPTH - 1):  # 32 lists + the payload dict
            nested = [nested]
        d.encode_response(1, nested)
    nested = nested[0]
    assert d.decode_frame(d.encode_response(1, nested))[2]["result"] == nested

    req = d.encode_request(5, "app:X", "go", [1, [2]], {"k": None})
    assert d.parse_request(req[16:]) == ("app:X", "go", (1, [2]),
                                         {"k": None})
    # gunicorn may omit nothing, but a missing args/kwargs is tolerated
    assert d.parse_request(oracle_encode({"app_path": "a:B",
                                          "action": "x"})) == (
        "a:B", "x", (), {})
    for bad in ({"action": "x"}, {"app_path": "a:B", "action": 1},
                {"app_path": "a:B", "action": "x", "args": {}},
                {"app_path": "a:B", "action": "x", "kwargs": []}, [1]):
        with pytest.raises(d.ProtocolError):
            d.parse_request(oracle_encode(bad))
    with pytest.raises(d.ProtocolError):
        d.parse_request(req[16:-1])


# ---------------------------------------------------------------------------
# Connection against the fake arbiter


def test_request_response(arbiter):
    with d.Connection(arbiter, timeout=5) as c:
        assert c.fileno() >= 0 and not c.closed and c.timeout == 5.0
        r = c.request("app:TestDirtyApp", "echo", ["hi", 1, None],
                      {"k": b"v"})
        assert r == {"app": "app:TestDirtyApp", "args": ["hi", 1, None],
                     "kwargs": {"k": b"v"}}
        # many calls on one connection, each matched to its own reply
        for i in range(200):
            assert c.request("a:B", "ret", [i]) == i
        assert c.request("a:B", "ret", args=("x" * 300000,)) == "x" * 300000
        big = os.urandom(5 * 1024 * 1024)
        assert c.request("a:B", "ret", [big]) == big
        assert c.request("a:B", "echo")["args"] == []
    assert c.closed and c.fileno() == -1
    with pytest.raises(ConnectionError):
        c.request("a:B", "ret", [1])


def test_stale_and_split_frames(arbiter):
    c = d.Connection(arbiter, timeout=5)
    assert c.request("a:B", "stale") == "right"
    value = {"nested": ["x" * 50, 3.5, {"y": None}]}
    assert c.request("a:B", "split", [value]) == value
    assert c.request("a:B", "ret", [7]) == 7
    c.close()


def test_remote_error(arbiter):
    c = d.Connection(arbiter, timeout=5)
    with pytest.raises(d.RemoteError) as ei:
        c.request("a:B", "fail")
    e = ei.value
    assert e.error_type == "DirtyAppError"
    assert e.message == "boom"
    assert e.details == {"traceback": "Traceback: line 1"}
    assert e.args == ("DirtyAppError", "boom",
                      {"traceback": "Traceback: line 1"})
    with pytest.raises(d.RemoteError) as ei:
        c.request("a:B", "nope")
    assert ei.value.error_type == "DirtyAppNotFoundError"
    # the connection is still usable after an ERROR reply
    assert c.request("a:B", "ret", ["ok"]) == "ok"
    c.close()


def test_stream(arbiter):
    c = d.Connection(arbiter, timeout=5)
    rid = c.stream_start("a:B", "stream", ["a", b"b", {"c": 3}])
    got = []
    while True:
        kind, value = c.stream_next(rid)
        if kind == d.MSG_TYPE_END:
            assert value is None
            break
        assert kind == d.MSG_TYPE_CHUNK
        got.append(value)
    assert got == ["a", b"b", {"c": 3}]

    rid = c.stream_start("a:B", "stream_fail")
    assert c.stream_next(rid) == (d.MSG_TYPE_CHUNK, "first")
    with pytest.raises(d.RemoteError) as ei:
        c.stream_next(rid)
    assert ei.value.message == "mid-stream"

    # a non-streaming reply to stream_start
    rid = c.stream_start("a:B", "ret", [5])
    assert c.stream_next(rid) == (d.MSG_TYPE_RESPONSE, 5)
    c.close()


def test_raw_messages(arbiter):
    c = d.Connection(arbiter, timeout=5)
    rid = c.send_raw(d.MSG_TYPE_STASH, {"op": d.STASH_OP_PUT, "table": "t",
                                        "key": "k", "value": [1, 2]})
    t, payload = c.recv_reply(rid)
    assert t == d.MSG_TYPE_RESPONSE
    assert payload == {"result": {"op": 1, "table": "t", "key": "k",
                                  "value": [1, 2]}}
    rid2 = c.send_raw(d.MSG_TYPE_STATUS, None)
    assert rid2 != rid
    assert c.recv_reply(rid2) == (d.MSG_TYPE_RESPONSE,
                                  {"result": {"workers": 2}})
    rid3 = c.send_raw(d.MSG_TYPE_MANAGE, {"op": d.MANAGE_OP_ADD, "count": 1})
    t, payload = c.recv_reply(rid3)
    assert t == d.MSG_TYPE_ERROR
    assert payload["error"]["message"] == "no manage"
    c.close()


def test_eof_mid_call(arbiter):
    c = d.Connection(arbiter, timeout=5)
    with pytest.raises(ConnectionError):
        c.request("a:B", "close")
    assert c.closed
    c = d.Connection(arbiter, timeout=5)
    with pytest.raises(ConnectionError):
        c.request("a:B", "half")      # EOF inside a frame
    assert c.closed


def test_malformed_reply_closes(arbiter):
    c = d.Connection(arbiter, timeout=5)
    with pytest.raises(d.ProtocolError):
        c.request("a:B", "garbage")
    assert c.closed
    c = d.Connection(arbiter, timeout=5)
    with pytest.raises(d.ProtocolError):
        c.request("a:B", "bad_utf8")
    assert c.closed


def test_timeout(arbiter):
    c = d.Connection(arbiter, timeout=0.2)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        c.request("a:B", "sleep", [2.0])
    elapsed = time.monotonic() - t0
    assert 0.19 <= elapsed < 1.5, elapsed    # at the timeout, not at the 2 s reply
    # the late reply is dropped as stale; the next call gets its own
    c.timeout = 5
    assert c.request("a:B", "ret", ["after"]) == "after"
    c.timeout = None
    assert c.timeout is None
    assert c.request("a:B", "ret", [1]) == 1
    with pytest.raises(ValueError):
        c.timeout = -1
    c.close()


def test_connect_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        d.Connection(str(tmp_path / "missing.sock"))
    with pytest.raises(ValueError):
        d.Connection("/" + "x" * 200)
    with pytest.raises(ValueError):
        d.Connection(str(tmp_path / "s"), timeout=-1)


def test_threads_gil_released(arbiter):
    # the fake arbiter runs in this process: a call holding the GIL while
    # it waits would never be answered.  Two slow calls on two connections
    # overlap.
    conns = [d.Connection(arbiter, timeout=5) for _ in range(2)]
    results = []

    def call(c):
        results.append(c.request("a:B", "sleep", [1.0]))

    t0 = time.monotonic()
    ts = [threading.Thread(target=call, args=(c,)) for c in conns]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert results == ["late", "late"]
    assert time.monotonic() - t0 < 1.8      # together ~1 s; one after the other 2 s
    for c in conns:
        c.close()


def test_busy_and_close_from_other_thread(arbiter):
    c = d.Connection(arbiter, timeout=5)
    errors = []

    def slow():
        try:
            c.request("a:B", "sleep", [10, "busy-close"])
        except Exception as e:      # noqa: BLE001
            errors.append(e)

    t = threading.Thread(target=slow)
    t.start()
    # the fake has the request: the other thread is inside the call
    deadline = time.monotonic() + 10
    while ("sleep", [10, "busy-close"]) not in RECEIVED:
        assert time.monotonic() < deadline, "the slow call never reached the fake arbiter"
        time.sleep(0.005)
    with pytest.raises(RuntimeError):
        c.request("a:B", "ret", [1])
    t0 = time.monotonic()
    c.close()                       # wakes the blocked call
    t.join(5)
    assert not t.is_alive()
    assert time.monotonic() - t0 < 5        # woken by close, not by the reply at 10 s
    assert len(errors) == 1 and isinstance(errors[0], ConnectionError)
    assert c.closed


def test_blocked_call_burns_no_cpu(arbiter):
    """Waiting for a slow reply costs the caller's thread no CPU beyond the
    50 µs poll window: a 0.5 s call, a 0.5 s gap between stream chunks."""
    c = d.Connection(arbiter, timeout=5)
    assert c.request("a:B", "ret", [1]) == 1
    for timeout in (5, None):
        c.timeout = timeout
        t0 = time.thread_time()
        assert c.request("a:B", "sleep", [0.5]) == "late"
        cpu = time.thread_time() - t0
        assert cpu < 0.02, (timeout, cpu)
    c.close()


def _recv_polls(taskset, calls=20):
    """recvfrom calls that returned EAGAIN in a client making `calls` calls
    of 2 ms (strace), optionally pinned to one CPU."""
    with arbiter_process("cunicorn-dirty-spin-") as path:
        code = ("import sys; sys.path.insert(0, %r)\n"
                "import _cunicorn_dirty as d\n"
                "c = d.Connection(%r, timeout=10)\n"
                "for i in range(%d): c.request('a:B', 'sleep', [0.002])\n"
                % (os.path.join(ROOT, "build", "python"), path, calls))
        argv = ["strace", "-f", "-e", "trace=recvfrom", sys.executable, "-c", code]
        if taskset:
            argv = ["taskset", "-c", "0"] + argv
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr[-2000:]
        return out.stderr.count("EAGAIN")


def test_no_poll_window_on_one_cpu():
    if len(os.sched_getaffinity(0)) < 2 or not shutil.which("strace") \
            or not shutil.which("taskset"):
        pytest.skip("needs 2 CPUs, strace and taskset")
    spread = _recv_polls(taskset=False)
    pinned = _recv_polls(taskset=True)
    print("recv polls (EAGAIN) over 20 slow calls: 2 CPUs %d, pinned to 1 CPU %d"
          % (spread, pinned))
    assert spread >= 3           # the window is used (until it stops paying)
    assert pinned == 0           # and never on one CPU


def test_recv_polls_leaves_nothing_behind(monkeypatch):
    """The strace helper removes its fake arbiter's directory (issue 8,
    section 5: the suite left cunicorn-dirty-spin-* in /tmp)."""
    if not shutil.which("strace"):
        pytest.skip("needs strace")
    made = []
    real = tempfile.mkdtemp

    def recording(*a, **kw):
        made.append(real(*a, **kw))
        return made[-1]
    monkeypatch.setattr(tempfile, "mkdtemp", recording)
    _recv_polls(taskset=False, calls=2)
    assert made and not any(os.path.exists(p) for p in made), made


def test_poll_window_closes_when_replies_come_late():
    """The window is adaptive: when replies keep arriving after it (a busy
    machine, or slow calls), it stops opening but for a rare probe, so
    100 slow calls open a handful of windows, where a blind spin would poll
    at least once for each (strace makes each poll take about a window)."""
    if len(os.sched_getaffinity(0)) < 2 or not shutil.which("strace"):
        pytest.fail("needs 2 CPUs and strace")
    many = _recv_polls(taskset=False, calls=100)
    print("recv polls (EAGAIN) over 100 slow calls: %d" % many)
    assert 0 < many < 50


def test_round_trip_timing():
    """Informational: µs per request() against a fake arbiter in a child
    process (pure Python, so most of the time is the fake's)."""
    with arbiter_process("cunicorn-dirty-bench-") as path:
        c = d.Connection(path, timeout=10)
        for i in range(200):
            assert c.request("a:B", "ret", [i]) == i
        n = 3000
        t0 = time.perf_counter()
        for i in range(n):
            c.request("a:B", "ret", [i])
        dt = time.perf_counter() - t0
        # the same loop with a plain Python socket client, for scale
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        t1 = time.perf_counter()
        for i in range(n):
            s.sendall(oracle_frame(d.MSG_TYPE_REQUEST, i + 1, {
                "app_path": "a:B", "action": "ret", "args": [i],
                "kwargs": {}}))
            hdr = recv_exact(s, 16)
            body = recv_exact(s, HDR.unpack(hdr)[3])
            oracle_decode(body)
        dt_py = time.perf_counter() - t1
        s.close()
        c.close()
        print("\ndirty round trip vs Python fake arbiter: C Connection "
              "%.1f us/call, pure-Python client %.1f us/call"
              % (dt / n * 1e6, dt_py / n * 1e6))
        assert dt > 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        serve(sys.argv[2])
    else:
        sys.exit("usage: %s --serve PATH" % sys.argv[0])
