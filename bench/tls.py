"""HTTPS: cunicorn's TLS beside the peers that terminate TLS themselves, in
one run, on this machine (figures printed; nothing asserted).

    /usr/bin/python3 bench/tls.py [SECONDS]

hello world over TLS 1.3 (one self-signed P-256 certificate made for the
run with the openssl CLI), 2 workers, wrk -t2 -c32 with keep-alive, every
server up at once and measured in turns (median of 3 rounds, with the
server's whole-process-tree CPU per request):
  - cunicorn gthread --threads 4, and -k asgi on the raw ASGI hello;
  - cunicorn sync (it closes after each response: every request is a new
    connection and a full handshake, so it measures handshakes);
  - uWSGI --https-socket, Debian's gunicorn gthread --threads 4 with
    certfile, uvicorn (httptools) with --ssl-certfile, nginx serving the
    same body from a static file with ssl.
Then the plain-HTTP gthread hello of the same run, for the cost of TLS.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time

from common import BUILD, BENCH, PYTHON, Proc, free_port, in_turn, nginx_conf, print_in_turn

SECONDS = int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ.get("BENCH_SECONDS", "5"))
CUN = os.path.join(os.environ.get("CUNICORN_BIN_DIR", BUILD), "cunicorn")


def have_module(name):
    # from /, not from bench/: bench/http.py would shadow the standard
    # library's http package
    return subprocess.run([PYTHON, "-c", "import " + name], cwd="/",
                          capture_output=True).returncode == 0


def make_cert(d):
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
                    "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    os.chmod(d, 0o755)
    os.chmod(key, 0o644)        # nginx's and uWSGI's workers may read it unprivileged
    return cert, key


def peers(port, d, root, cert, key):
    bind = "127.0.0.1:%d" % port
    tls = ["--certfile", cert, "--keyfile", key]
    out = [("cunicorn gthread -t4", [CUN, "-w", "2", "-k", "gthread", "--threads", "4",
                                      "-b", bind] + tls + ["hello:application"]),
           ("cunicorn sync (handshakes)", [CUN, "-w", "2", "-b", bind] + tls
            + ["hello:application"])]
    if have_module("fastapi"):
        out.append(("cunicorn asgi raw", [CUN, "-w", "2", "-k", "asgi", "-b", bind] + tls
                    + ["asgi_app:hello"]))
    if shutil.which("uwsgi"):
        out.append(("uWSGI https-socket", ["uwsgi", "--plugin", "python3", "--master",
                                            "--processes", "2", "--https-socket",
                                            "%s,%s,%s" % (bind, cert, key), "--wsgi-file",
                                            "hello.py", "--disable-logging", "--die-on-term",
                                            "--need-app"]))
    if have_module("gunicorn"):
        out.append(("gunicorn 20.1 gthread -t4", [PYTHON, "-m", "gunicorn", "-w", "2", "-k",
                                                   "gthread", "--threads", "4", "-b", bind]
                    + tls + ["hello:application"]))
    if have_module("uvicorn") and have_module("fastapi"):
        out.append(("uvicorn raw (httptools)", [PYTHON, "-m", "uvicorn", "--workers", "2",
                                                 "--http", "httptools", "--no-access-log",
                                                 "--host", "127.0.0.1", "--port", str(port),
                                                 "--ssl-certfile", cert, "--ssl-keyfile", key,
                                                 "asgi_app:hello"]))
    if os.path.exists("/usr/sbin/nginx"):
        nd, conf = nginx_conf(port, root, (cert, key))
        out.append(("nginx static", ["/usr/sbin/nginx", "-c", conf, "-p", nd]))
    out.append(("cunicorn gthread -t4 plain", [CUN, "-w", "2", "-k", "gthread", "--threads",
                                                "4", "-b", bind, "hello:application"]))
    return out


def main():
    d = tempfile.mkdtemp(prefix="cunicorn-bench-tls-")
    root = os.path.join(d, "www")
    appdir = os.path.join(d, "app")     # the apps alone (see have_module)
    for sub in (root, appdir):
        os.mkdir(sub)
        os.chmod(sub, 0o755)
    for name in ("hello.py", "asgi_app.py"):
        shutil.copy(os.path.join(BENCH, name), appdir)
    cert, key = make_cert(d)
    procs, notes, figures, cpu = [], {}, {}, {}
    try:
        for name, _ in peers(0, d, root, cert, key):
            port = free_port()
            p = Proc(dict(peers(port, d, root, cert, key))[name], port, cwd=appdir)
            if not p.ok:
                notes[name] = "did not start: " + p.log()[-200:].replace("\n", " | ")
                p.stop()
                continue
            scheme = "http" if name.endswith("plain") else "https"
            procs.append((name, p, "%s://127.0.0.1:%d/" % (scheme, port)))
        # the port opens before every worker has imported the app: an
        # early client's connections would all land in the first one up
        time.sleep(3)
        figures = in_turn(procs, 3, SECONDS, notes, cpu)
    finally:
        for _, p, _ in procs:
            p.stop()
        shutil.rmtree(d, ignore_errors=True)
        for n in os.listdir("/tmp"):
            if n.startswith("cunicorn-bench-nginx-"):
                shutil.rmtree(os.path.join("/tmp", n), ignore_errors=True)
    print("hello world over TLS 1.3 (P-256), 2 workers, wrk -t2 -c32 -d%ds, keep-alive "
          "client, loopback; median of 3 rounds, peers measured in turn" % SECONDS)
    print_in_turn(procs, figures, notes, "cunicorn gthread -t4", "cunicorn gthread -t4",
                  width=28, cpu=cpu)


if __name__ == "__main__":
    main()
