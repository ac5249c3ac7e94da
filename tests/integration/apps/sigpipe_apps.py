"""Apps that set SIGPIPE back to SIG_DFL, as some libraries do, for
tests/integration/test_sigpipe.py: a socket write of ours to a peer that
left must then still be an EPIPE, never the process's death.

  sigpipe_apps:application   WSGI; SIGPIPE is SIG_DFL from its import and
                             each request on (from the main thread)
      /big     8 MiB body (written with writev/sendmsg)
      /file    8 MiB wsgi.file_wrapper body of a real file (sendfile)
      /pid     the worker's pid
  sigpipe_apps:Dirty         dirty app; SIGPIPE is SIG_DFL from init()
      cut()    stops the arbiter (SIGSTOP), shuts its channel to it for
               writing, then returns: the reply write meets EPIPE
"""
import os
import signal
import socket
import tempfile

from gunicorn.dirty import DirtyApp

from arbiter_channel import arbiter_channel_fd

signal.signal(signal.SIGPIPE, signal.SIG_DFL)

BIG = b"x" * (8 * 1024 * 1024)
_file = tempfile.TemporaryFile()
_file.write(BIG)
_file.flush()


def application(environ, start_response):
    try:        # again: the sync worker set its own dispositions after the import
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    except ValueError:
        pass    # not the main thread (gthread's pool): the import's stands
    path = environ["PATH_INFO"]
    if path == "/pid":
        body = str(os.getpid()).encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]
    if path == "/file":
        _file.seek(0)
        start_response("200 OK", [("Content-Length", str(len(BIG)))])
        return environ["wsgi.file_wrapper"](os.fdopen(os.dup(_file.fileno()), "rb"))
    start_response("200 OK", [("Content-Length", str(len(BIG)))])
    return [BIG]


class Dirty(DirtyApp):
    def init(self):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)

    def pid(self):
        return os.getpid()

    def cut(self):
        """Stop the arbiter (the test resumes it: it must not see the
        EOF and kill us before our reply is written), then shut this
        worker's channel to it (the only unnamed AF_UNIX stream socket
        the process holds) for writing."""
        os.kill(os.getppid(), signal.SIGSTOP)
        fd = arbiter_channel_fd()
        if fd is not None:
            with socket.socket(fileno=os.dup(fd)) as s:
                s.shutdown(socket.SHUT_WR)
            return "cut"
        return "no channel found"
