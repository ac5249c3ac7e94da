"""Server-sent event streams relayed by the gthread worker: N concurrent
token streams from dirty generators on ONE HTTP worker with --threads 4.
Prints how many completed, and the delay from each token's production (a
timestamp the generator puts in it) to its arrival at the client: the
first token's and all tokens' median / p99 / max.  Nothing asserted.

    /usr/bin/python3 bench/sse.py [STREAMS] [TOKENS] [DELAY]
"""
import os
import selectors
import socket
import sys
import time

from common import BENCH, BUILD, Proc, free_port

N = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
TOKENS = int(sys.argv[2]) if len(sys.argv) > 2 else 10
DELAY = float(sys.argv[3]) if len(sys.argv) > 3 else 0.2


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))] if xs else float("nan")


def main():
    port = free_port()
    dirty_threads = (N + 3) // 4 + 8
    p = Proc([os.path.join(BUILD, "cunicorn"), "-w", "1", "-k", "gthread", "--threads", "4",
              "--worker-connections", str(N + 100), "-b", "127.0.0.1:%d" % port,
              "--dirty-app", "sse_app:Tokens", "--dirty-workers", "4",
              "--dirty-threads", str(dirty_threads), "--timeout", "120",
              "sse_app:application"], port, cwd=BENCH)
    if not p.ok:
        print("cunicorn did not start:", p.log()[-500:])
        p.stop()
        return 1
    try:
        time.sleep(2.0)      # dirty workers up
        sel = selectors.DefaultSelector()
        req = b"GET /?n=%d&delay=%s HTTP/1.1\r\nHost: x\r\n\r\n" % (TOKENS, str(DELAY).encode())
        state = {}
        t0 = time.time()
        for _ in range(N):
            s = socket.create_connection(("127.0.0.1", port))
            s.setblocking(False)
            s.sendall(req)
            state[s] = [b"", 0, []]    # buffer, tokens seen, delays
            sel.register(s, selectors.EVENT_READ)
        open_at = time.time() - t0
        first, alltok, done = [], [], 0
        deadline = time.time() + TOKENS * DELAY + 60
        while state and time.time() < deadline:
            for key, _ in sel.select(1.0):
                s = key.fileobj
                try:
                    d = s.recv(65536)
                except BlockingIOError:
                    continue
                now = time.time()
                st = state[s]
                if not d:
                    sel.unregister(s)
                    s.close()
                    del state[s]
                    continue
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
        for s in list(state):
            s.close()
        print("%d concurrent SSE streams of %d tokens (%.0f ms apart), 1 HTTP worker, "
              "--threads 4; connections opened in %.2f s" % (N, TOKENS, DELAY * 1000, open_at))
        print("  streams complete: %d / %d" % (done, N))
        print("  token production -> arrival, first token: median %.2f ms, p99 %.2f ms, max %.2f ms"
              % (pct(first, 0.5), pct(first, 0.99), max(first) if first else float("nan")))
        print("  every token: median %.2f ms, p99 %.2f ms (%d tokens)"
              % (pct(alltok, 0.5), pct(alltok, 0.99), len(alltok)))
    finally:
        p.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
