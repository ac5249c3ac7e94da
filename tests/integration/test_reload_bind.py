"""HUP with a changed `bind` (and `pidfile`), as gunicorn's reload does it:
new addresses are bound, addresses no longer asked for are closed (their
unix socket files removed), and an address kept keeps its very socket, so
no connection to it is refused during the reload.  A reload whose new
addresses cannot be bound keeps serving on the old ones.

The master is started with the addresses in its config file (the command
line would win over the file); the file is rewritten, then SIGHUP.
"""

import os
import signal
import socket

from conftest import (free_port, http_get, listening_inodes, loopback_listener, pid_alive,
                      unix_request, wait_for)

APPS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "apps")


def start(make_server, conf, port, binds, extra=""):
    conf.write_text("bind = %r\n%s" % (binds, extra))
    return make_server("-c", str(conf), "--chdir", APPS, "master_app:hello",
                       port=port, bind=False)


def hup(s, conf, binds, extra=""):
    """Rewrite the config with `binds` and reload; returns once the reload
    has been logged as done (the next workers are booting)."""
    before = s.log().count("Hang up: Master")
    conf.write_text("bind = %r\n%s" % (binds, extra))
    s.send(signal.SIGHUP)
    wait_for(lambda: s.log().count("Hang up: Master") > before, 10, what="the reload")


def refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return False
    except ConnectionRefusedError:
        return True


def test_hup_moves_to_a_new_port(make_server, tmp_path):
    a, b = free_port(), free_port()
    conf = tmp_path / "conf.py"
    s = start(make_server, conf, a, ["127.0.0.1:%d" % a])
    assert http_get(a, "/")[2] == b"OK"
    hup(s, conf, ["127.0.0.1:%d" % b])
    s.wait_log("Listening at: http://127.0.0.1:%d (%d)" % (b, s.pid))
    assert http_get(b, "/", timeout=10)[2] == b"OK"
    assert wait_for(lambda: refused(a), 10, what="the old port closed")
    assert "Error" not in s.log() and "need a restart" not in s.log()
    assert s.stop() == 0
    assert refused(b)


def test_hup_adding_a_port_keeps_the_first_socket(make_server, tmp_path):
    a, b = free_port(), free_port()
    conf = tmp_path / "conf.py"
    s = start(make_server, conf, a, ["127.0.0.1:%d" % a])
    inode = listening_inodes(a)
    assert len(inode) == 1
    hup(s, conf, ["127.0.0.1:%d" % a, "127.0.0.1:%d" % b])
    s.wait_log("Listening at: http://127.0.0.1:%d (%d)" % (b, s.pid))
    # the same socket, never closed: nothing queued on it was lost
    assert listening_inodes(a) == inode
    assert http_get(a, "/", timeout=10)[2] == b"OK"
    assert http_get(b, "/", timeout=10)[2] == b"OK"


def test_hup_moves_a_unix_socket(make_server, tmp_path):
    p1, p2 = str(tmp_path / "one.sock"), str(tmp_path / "two.sock")
    a = free_port()
    conf = tmp_path / "conf.py"
    s = start(make_server, conf, a, ["127.0.0.1:%d" % a, "unix:" + p1])
    assert unix_request(p1).endswith(b"OK")
    hup(s, conf, ["127.0.0.1:%d" % a, "unix:" + p2])
    s.wait_log("Listening at: unix:%s (%d)" % (p2, s.pid))
    assert not os.path.exists(p1)
    assert unix_request(p2).endswith(b"OK")
    assert s.stop() == 0
    assert not os.path.exists(p2)


def test_hup_to_a_taken_port_keeps_the_old_listeners(make_server, tmp_path):
    a, b = free_port(), free_port()
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    taken = busy.getsockname()[1]
    try:
        conf = tmp_path / "conf.py"
        s = start(make_server, conf, a, ["127.0.0.1:%d" % a])
        inode = listening_inodes(a)
        # b could be bound, taken cannot: all or nothing
        hup(s, conf, ["127.0.0.1:%d" % b, "127.0.0.1:%d" % taken])
        s.wait_log("Reload: cannot bind the new addresses")
        assert "Connection in use: ('127.0.0.1', %d)" % taken in s.log()
        assert listening_inodes(a) == inode
        assert http_get(a, "/", timeout=10)[2] == b"OK"
        assert refused(b)
        assert pid_alive(s.pid) and s.proc.poll() is None
    finally:
        busy.close()


def test_hup_moves_the_pidfile(make_server, tmp_path):
    a = free_port()
    p1, p2 = tmp_path / "one.pid", tmp_path / "two.pid"
    conf = tmp_path / "conf.py"
    binds = ["127.0.0.1:%d" % a]
    s = start(make_server, conf, a, binds, "pidfile = %r\n" % str(p1))
    assert int(p1.read_text()) == s.pid
    hup(s, conf, binds, "pidfile = %r\n" % str(p2))
    wait_for(lambda: p2.exists(), 10, what="the new pid file")
    assert int(p2.read_text()) == s.pid
    assert not p1.exists()
    assert s.stop() == 0
    assert not p2.exists()


def test_hup_keeps_an_inherited_fd_when_the_new_bind_fails(make_server, tmp_path):
    """fd://N names the listener's very descriptor: a reload that fails on
    another address must not close it (the next workers would inherit a
    closed fd)."""
    lsock = loopback_listener()
    port, fd = lsock.getsockname()[1], lsock.fileno()
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        conf = tmp_path / "conf.py"
        conf.write_text("bind = ['fd://%d']\n" % fd)
        s = make_server("-c", str(conf), "--chdir", APPS, "master_app:hello",
                        port=port, bind=False, pass_fds=(fd,))
        lsock.close()
        old = wait_for(lambda: s.pids_titled("worker"), what="a worker")
        hup(s, conf, ["fd://%d" % fd, "127.0.0.1:%d" % busy.getsockname()[1]])
        s.wait_log("Reload: cannot bind the new addresses")
        # served by the workers booted after the reload, once the old retired
        wait_for(lambda: not any(pid_alive(p) for p in old), 15, what="old workers gone")
        for _ in range(3):
            assert http_get(port, "/", timeout=10)[2] == b"OK"
        assert "non-socket" not in s.log() and "Bad file descriptor" not in s.log()
    finally:
        busy.close()

