#!/usr/bin/env bash
# The README's first command: install what is missing, build, and serve the
# bundled example (1 HTTP worker, 1 dirty worker) on 127.0.0.1:8000, in the
# foreground (Ctrl-C stops it).  Extra arguments go to cunicorn.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh build
make -j"$(nproc)" >/dev/null
exec build/cunicorn -c examples/gunicorn_conf.py --chdir examples "$@" app:application
