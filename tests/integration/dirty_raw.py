"""A raw dirty-protocol client for tests, written from the SPEC (§5 wire
protocol) with struct, independent of cunicorn's codec: frames are built
and parsed by hand so tests can also send malformed ones.

Also finds a started server's dirty side (arbiter pid, workers, socket)
and asks its arbiter for STATUS.

Owns nothing but its sockets.  Used by the test_dirty_*.py files,
test_stash.py, test_process_hardening.py, streamkit.py and, as the TLV
oracle, test_dirty_codec_ext.py.
"""
import re
import socket
import struct

MAGIC = b"GD"
VERSION = 1
REQUEST, RESPONSE, ERROR, CHUNK, END = 1, 2, 3, 4, 5
STASH, STATUS, MANAGE = 0x10, 0x11, 0x12


def tlv(v):
    """Encode one Python value as a TLV value."""
    if v is None:
        return b"\x00"
    if v is True or v is False:
        return b"\x01" + (b"\x01" if v else b"\x00")
    if isinstance(v, int):
        return b"\x05" + struct.pack(">q", v)
    if isinstance(v, float):
        return b"\x06" + struct.pack(">d", v)
    if isinstance(v, (bytes, bytearray, memoryview)):
        v = bytes(v)
        return b"\x10" + struct.pack(">I", len(v)) + v
    if isinstance(v, str):
        b = v.encode()
        return b"\x11" + struct.pack(">I", len(b)) + b
    if isinstance(v, (list, tuple)):
        return b"\x20" + struct.pack(">I", len(v)) + b"".join(tlv(x) for x in v)
    if isinstance(v, dict):
        out = [b"\x21", struct.pack(">I", len(v))]
        for k, x in v.items():
            out.append(tlv(str(k)))
            out.append(tlv(x))
        return b"".join(out)
    raise TypeError(type(v))


def untlv(buf, off=0):
    """Decode one TLV value at buf[off:]; returns (value, new offset)."""
    t = buf[off]
    off += 1
    if t == 0x00:
        return None, off
    if t == 0x01:
        return bool(buf[off]), off + 1
    if t == 0x05:
        return struct.unpack_from(">q", buf, off)[0], off + 8
    if t == 0x06:
        return struct.unpack_from(">d", buf, off)[0], off + 8
    if t in (0x10, 0x11):
        n = struct.unpack_from(">I", buf, off)[0]
        off += 4
        b = bytes(buf[off:off + n])
        if len(b) != n:
            raise ValueError("truncated")
        return (b if t == 0x10 else b.decode()), off + n
    if t == 0x20:
        n = struct.unpack_from(">I", buf, off)[0]
        off += 4
        out = []
        for _ in range(n):
            v, off = untlv(buf, off)
            out.append(v)
        return out, off
    if t == 0x21:
        n = struct.unpack_from(">I", buf, off)[0]
        off += 4
        out = {}
        for _ in range(n):
            k, off = untlv(buf, off)
            if not isinstance(k, str):
                raise ValueError("map key of type %s" % type(k).__name__)
            v, off = untlv(buf, off)
            out[k] = v
        return out, off
    raise ValueError("bad tlv type %#x" % t)


def header(mtype, length, rid, magic=MAGIC, version=VERSION):
    return magic + bytes([version, mtype]) + struct.pack(">IQ", length, rid)


def frame(mtype, rid, payload_value=None, raw_payload=None):
    p = raw_payload if raw_payload is not None else (
        b"" if payload_value is None and mtype in (END, STATUS) else tlv(payload_value))
    return header(mtype, len(p), rid) + p


def request(rid, app_path, action, *args, **kwargs):
    return frame(REQUEST, rid, {"app_path": app_path, "action": action,
                                "args": list(args), "kwargs": kwargs})


class Conn:
    """One connection to the arbiter's socket."""

    def __init__(self, path, timeout=10.0):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        self.s.connect(path)
        self.buf = b""

    def close(self):
        self.s.close()

    def send(self, data):
        self.s.sendall(data)

    def _fill(self, n):
        while len(self.buf) < n:
            d = self.s.recv(65536)
            if not d:
                raise EOFError("connection closed with %d bytes buffered" % len(self.buf))
            self.buf += d

    def recv_frame(self):
        """(type, id, decoded payload or None)."""
        self._fill(16)
        assert self.buf[:3] == b"GD\x01", self.buf[:16]
        mtype = self.buf[3]
        length, rid = struct.unpack_from(">IQ", self.buf, 4)
        self._fill(16 + length)
        p = self.buf[16:16 + length]
        self.buf = self.buf[16 + length:]
        value = None
        if p:
            value, end = untlv(p)
            assert end == len(p), "trailing bytes in a reply"
        return mtype, rid, value

    def at_eof(self, timeout=5.0):
        """True if the peer closed the connection (after any pending data)."""
        self.s.settimeout(timeout)
        try:
            while True:
                d = self.s.recv(65536)
                if not d:
                    return True
                self.buf += d
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True

    def call(self, rid, app_path, action, *args, **kwargs):
        """One request; returns (type, payload) of the final reply; CHUNKs
        are collected into payload['chunks'] for streams."""
        self.send(request(rid, app_path, action, *args, **kwargs))
        chunks = []
        while True:
            t, i, v = self.recv_frame()
            assert i == rid, (i, rid)
            if t == CHUNK:
                chunks.append(v["data"])
                continue
            if t == END:
                return END, {"chunks": chunks}
            return t, v


def result(reply):
    t, v = reply
    assert t == RESPONSE, reply
    return v["result"]


def error_type(reply):
    t, v = reply
    assert t == ERROR, reply
    return v["error"]["error_type"]


# -- a started conftest.Server's dirty side --------------------------------

def arbiter_pid(s):
    """The dirty arbiter's pid, by its title; None unless exactly one."""
    p = s.pids_titled("dirty-arbiter")
    return p[0] if len(p) == 1 else None


def dirty_workers(s):
    return s.pids_titled("dirty-worker")


def socket_path(s):
    """The arbiter's socket, from the master's "Spawned dirty arbiter" line
    (waited for; the last one after a respawn)."""
    from conftest import wait_for
    m = wait_for(lambda: re.findall(r"Spawned dirty arbiter \(pid: \d+\) at (\S+)", s.log()),
                 10, what="the Spawned dirty arbiter line")
    return m[-1]


def status(path, rid=1):
    """The arbiter's STATUS result, asked on a new connection to `path`."""
    c = Conn(path)
    try:
        c.send(frame(STATUS, rid))
        t, got, v = c.recv_frame()
        assert (t, got) == (RESPONSE, rid), (t, got, v)
        return v["result"]
    finally:
        c.close()
