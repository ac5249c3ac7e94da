"""Server-sent event streams from dirty generators: N concurrent token
streams on ONE HTTP worker, either a WSGI app returning client.stream(...)
under the gthread worker (--threads 4; the loop relays the stream) or a
FastAPI endpoint returning StreamingResponse(client.stream_async(...))
under the asgi worker.  Prints how many completed, and the delay from each
token's production (a timestamp the generator puts in it) to its arrival
at the client: the first token's and all tokens' median / p99 / max.
Nothing asserted.

    /usr/bin/python3 bench/sse.py [STREAMS] [TOKENS] [DELAY] [gthread|asgi|asgi-raw] [burst|spread]
"""
import os
import selectors
import shutil
import socket
import sys
import tempfile
import time

from common import BENCH, BUILD, Proc, children, cpu_seconds, free_port, title

N = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
TOKENS = int(sys.argv[2]) if len(sys.argv) > 2 else 10
DELAY = float(sys.argv[3]) if len(sys.argv) > 3 else 0.2
WORKER = sys.argv[4] if len(sys.argv) > 4 else "gthread"
# "burst": every stream opens at once, so every generator yields at the
# same instant (the worst case: N tokens to relay together); "spread": the
# streams open evenly over half a stream's life (TOKENS x DELAY / 2), as
# independent clients would, so that all N are open during its second half
OPENING = sys.argv[5] if len(sys.argv) > 5 else "burst"


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))] if xs else float("nan")


def one_round(port, workers):
    """Open N streams, read them to their end; the delays seen, how many
    completed, and the HTTP worker's CPU time over the round."""
    cpu0 = sum(cpu_seconds(c) for c in workers)
    sel = selectors.DefaultSelector()
    req = b"GET /?n=%d&delay=%s HTTP/1.1\r\nHost: x\r\n\r\n" % (TOKENS, str(DELAY).encode())
    state = {}
    t0 = time.time()
    span = TOKENS * DELAY / 2 if OPENING == "spread" else 0.0
    opened, open_at = 0, None
    first, alltok, done, failed = [], [], 0, []
    deadline = t0 + span + TOKENS * DELAY + 60
    # connections are opened from the loop that reads them: a token is
    # never left waiting in a socket because the client was busy opening
    while (opened < N or state) and time.time() < deadline:
        while opened < N and time.time() >= t0 + span * opened / N:
            s = socket.create_connection(("127.0.0.1", port))
            s.setblocking(False)
            s.sendall(req)
            state[s] = [b"", 0, b""]    # buffer, tokens seen, the first bytes
            sel.register(s, selectors.EVENT_READ)
            opened += 1
        if opened == N and open_at is None:
            open_at = time.time() - t0
        wait = 1.0 if opened == N else max(0.0, t0 + span * opened / N - time.time())
        for key, _ in sel.select(wait):
            s = key.fileobj
            try:
                d = s.recv(65536)
            except BlockingIOError:
                continue
            now = time.time()
            st = state[s]
            if not d:
                failed.append(st[2] or b"(closed before any byte)")
                sel.unregister(s)
                s.close()
                del state[s]
                continue
            if not st[2]:
                st[2] = d[:120]
            st[0] += d
            while b"data: " in st[0]:
                i = st[0].index(b"data: ")
                j = st[0].find(b"\n\n", i)
                if j < 0:
                    break
                _, stamp = st[0][i + 6:j].split()
                lag = (now - float(stamp)) * 1000
                if st[1] == 0:
                    first.append(lag)
                alltok.append(lag)
                st[1] += 1
                st[0] = st[0][j + 2:]
            if st[1] == TOKENS and st[0].endswith(b"0\r\n\r\n"):
                done += 1
                sel.unregister(s)
                s.close()
                del state[s]
    cpu = sum(cpu_seconds(c) for c in workers) - cpu0
    for s in list(state):
        s.close()
    sel.close()
    return {"failed": failed, "done": done, "open_at": float("nan") if open_at is None else open_at, "first": first, "all": alltok, "cpu": cpu}


def main():
    port = free_port()
    dirty_threads = (N + 3) // 4 + 8
    if WORKER == "asgi":
        kind, what = ["-k", "asgi"], "1 HTTP worker, -k asgi, FastAPI + stream_async()"
        app = "sse_app:api"
    elif WORKER == "asgi-raw":
        kind, what = ["-k", "asgi"], "1 HTTP worker, -k asgi, a bare ASGI app + stream_async()"
        app = "sse_app:raw"
    else:
        kind, what = ["-k", "gthread", "--threads", "4"], "1 HTTP worker, --threads 4"
        app = "sse_app:application"
    # the app runs from a directory holding only it: bench/http.py would
    # shadow the standard library's http package (FastAPI imports it)
    appdir = tempfile.mkdtemp(prefix="cunicorn-bench-sse-")
    shutil.copy(os.path.join(BENCH, "sse_app.py"), appdir)
    p = Proc([os.path.join(BUILD, "cunicorn"), "-w", "1"] + kind +
             ["--worker-connections", str(N + 100), "-b", "127.0.0.1:%d" % port,
              "--dirty-app", "sse_app:Tokens", "--dirty-workers", "4",
              "--dirty-threads", str(dirty_threads), "--timeout", "120",
              app], port, cwd=appdir)
    if not p.ok:
        print("cunicorn did not start:", p.log()[-500:])
        p.stop()
        shutil.rmtree(appdir, ignore_errors=True)
        return 1
    try:
        time.sleep(2.0)      # dirty workers up
        workers = [c for c in children(p.p.pid) if "worker" in title(c) and "dirty" not in title(c)]
        print("%d concurrent SSE streams of %d tokens (%.0f ms apart), %s; connections "
              "opened %s" % (N, TOKENS, DELAY * 1000, what,
                             "at once" if OPENING == "burst" else "evenly over %.0f ms"
                             % (TOKENS * DELAY / 2 * 1000)))
        # two rounds on the same server: the first grows the worker's memory
        # (page faults, first allocations), the second is the steady state
        for name in ("first round (cold)", "second round"):
            r = one_round(port, workers)
            print("  %s: streams complete %d / %d; connections opened in %.2f s"
                  % (name, r["done"], N, r["open_at"]))
            first, alltok = r["first"], r["all"]
            if r["failed"]:
                print("    %d ended early; the first's first bytes: %r"
                      % (len(r["failed"]), r["failed"][0]))
            print("    token production -> arrival, first token: median %.2f ms, "
                  "p99 %.2f ms, max %.2f ms" % (pct(first, 0.5), pct(first, 0.99),
                                                max(first) if first else float("nan")))
            print("    every token: median %.2f ms, p99 %.2f ms (%d tokens)"
                  % (pct(alltok, 0.5), pct(alltok, 0.99), len(alltok)))
            print("    the HTTP worker's CPU time: %.0f ms in all, %.0f us per stream "
                  "(request, %d tokens, end)" % (r["cpu"] * 1000, r["cpu"] * 1e6 / max(N, 1),
                                                TOKENS))
    finally:
        p.stop()
        shutil.rmtree(appdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
