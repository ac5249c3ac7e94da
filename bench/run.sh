#!/usr/bin/env bash
# run.sh — every benchmark, one after the other: installs the peers (uWSGI,
# Debian's gunicorn, wrk) if missing, builds, then prints the figures of
# bench/http.py, bench/keepalive.py, bench/tls.py, bench/sse.py, bench/websocket.py, bench/dirty.py,
# bench/stream_stash.py and bench/lifecycle.py
# (root only).
# Benchmarks print; they never assert timings.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh build bench
make -j2 >/dev/null
echo "## HTTP"; /usr/bin/python3 bench/http.py "$@"
echo; echo "## keep-alive (gthread)"; /usr/bin/python3 bench/keepalive.py "$@"
echo; echo "## HTTPS"; /usr/bin/python3 bench/tls.py "$@"
echo; echo "## SSE streams from dirty generators: relayed by the gthread loop; FastAPI + stream_async on the asgi worker"
/usr/bin/python3 bench/sse.py 1000 10 0.2 gthread burst
/usr/bin/python3 bench/sse.py 1000 10 0.2 gthread spread
/usr/bin/python3 bench/sse.py 1000 10 0.2 asgi spread
/usr/bin/python3 bench/sse.py 1000 10 0.2 asgi-raw spread
echo; echo "## websocket echo, permessage-deflate on and off"; /usr/bin/python3 bench/websocket.py "$@"
echo; echo "## memory"; /usr/bin/python3 bench/memory.py
echo; echo "## dirty calls"; /usr/bin/python3 bench/dirty.py
echo; echo "## streaming and stash"; /usr/bin/python3 bench/stream_stash.py
echo; echo "## lifecycle"
if [ "$(id -u)" -eq 0 ]; then /usr/bin/python3 bench/lifecycle.py; else echo "n/a (needs root for the PID-namespace sandbox)"; fi
