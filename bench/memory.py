#!/usr/bin/python3
"""Memory of each process role for an app that imports nothing
(bench/trivial.py), so that the figures are cunicorn's own:

  - the master's RSS (issue 2 target: <= 12 MB);
  - an idle HTTP worker's private memory (Private_Clean + Private_Dirty of
    smaps_rollup, after 200 requests), with the app preloaded in the master
    (what forking costs) and imported in the worker (the same plus what
    importing the app there costs: importlib's caches, the module);
    issue 2 target: <= 2 MB beyond what the imported app needs;
  - beside them, uWSGI's and Debian's gunicorn's workers on the same app.

Prints figures; asserts nothing.
"""
import os
import sys
import socket
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import BUILD, Proc, children, fmt, free_port, have, memory  # noqa: E402

BINARY = os.path.join(BUILD, "cunicorn")


def get(port):
    with socket.create_connection(("127.0.0.1", port)) as c:
        c.sendall(b"GET / HTTP/1.0\r\n\r\n")
        while c.recv(65536):
            pass


def measure(argv, port, env=None):
    p = Proc(argv, port, env=env)
    try:
        if not p.ok:
            return None
        for _ in range(200):
            get(port)
        time.sleep(0.3)
        master = p.p.pid
        kids = children(master)
        worker = kids[0] if kids else None
        return memory(master), memory(worker) if worker else (None, None)
    finally:
        p.stop()


def main():
    rows = []
    port = free_port()
    rows.append(("cunicorn, app imported in the worker",
                 measure([BINARY, "-w", "1", "-b", "127.0.0.1:%d" % port, "trivial:application"], port)))
    port = free_port()
    rows.append(("cunicorn, app preloaded (--preload)",
                 measure([BINARY, "--preload", "-w", "1", "-b", "127.0.0.1:%d" % port,
                          "trivial:application"], port)))
    if have("uwsgi"):
        port = free_port()
        rows.append(("uWSGI 2.0 (--master, 1 process)",
                     measure(["uwsgi", "--plugin", "python3", "--master", "--processes", "1",
                              "--http-socket", "127.0.0.1:%d" % port, "--wsgi-file", "trivial.py",
                              "--disable-logging"], port)))
    else:
        rows.append(("uWSGI", None))
    port = free_port()
    rows.append(("gunicorn 20.1 (Debian)",
                 measure(["/usr/bin/python3", "-m", "gunicorn", "-w", "1", "-b",
                          "127.0.0.1:%d" % port, "trivial:application"], port)))
    print("memory, app importing nothing (bench/trivial.py), 1 worker, after 200 requests")
    print("%-40s %14s %14s %14s" % ("", "master RSS kB", "worker RSS kB", "worker priv kB"))
    for name, r in rows:
        if r is None:
            print("%-40s %14s %14s %14s" % (name, "n/a", "n/a", "n/a"))
            continue
        (m_hwm, _), (w_hwm, w_priv) = r
        print("%-40s %14s %14s %14s" % (name, fmt(m_hwm), fmt(w_hwm), fmt(w_priv)))


if __name__ == "__main__":
    main()
