"""For dirty apps that tamper with their own worker's channel to the
arbiter (tests only): the channel is the one unnamed AF_UNIX stream
socket a dirty worker holds."""
import os
import socket
import stat


def arbiter_channel_fd():
    """The descriptor of this dirty worker's channel to its arbiter, or None."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                continue
            s = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue
        try:
            if s.family == socket.AF_UNIX and s.getpeername() == "" and \
                    s.getsockname() == "":
                return fd
        finally:
            s.close()
    return None
