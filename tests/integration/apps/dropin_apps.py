"""Apps for test_dropin.py: what a real app does with the interpreter
(sys.executable, sys.argv, multiprocessing) and what a config file sees."""
import json
import multiprocessing
import os
import subprocess
import sys


def interpreter(environ, start_response):
    """sys.executable, sys.argv, and what `sys.executable -c ...` prints."""
    child = subprocess.run(
        [sys.executable, "-c",
         "import sys; print(sys.prefix); print('%d.%d' % sys.version_info[:2])"],
        capture_output=True, text=True, timeout=30)
    body = json.dumps({
        "executable": sys.executable,
        "base_executable": getattr(sys, "_base_executable", None),
        "argv": sys.argv,
        "child_rc": child.returncode,
        "child_out": child.stdout.split(),
        "child_err": child.stderr[-2000:],
        "version": "%d.%d" % sys.version_info[:2],
    }).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


def square(n):
    return n * n


def spawn_pool(environ, start_response):
    """A multiprocessing pool with the spawn start method: its processes
    are sys.executable running multiprocessing's bootstrap."""
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        result = pool.map(square, range(5))
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(result).encode()]


def environ_echo(environ, start_response):
    """The CUNI_* environment variables (set by a config file's raw_env)."""
    body = json.dumps({k: v for k, v in os.environ.items() if k.startswith("CUNI_")})
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body.encode()]
