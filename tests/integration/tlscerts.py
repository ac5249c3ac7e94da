"""Test certificates made with the `openssl` CLI, for the TLS tests
(test_tls.py: sync and gthread; test_asgi_tls.py: asgi).

make_certs(directory) writes, in that directory (EC P-256 keys: quick to
make; valid for two days):
  ca.pem / ca.key          a self-signed CA
  other_ca.pem             another CA, that signed nothing here
  server.pem / server.key  a server certificate for 127.0.0.1 and
                           localhost, signed by the CA (serial 1001)
  server2.pem / .key       another one (serial 2002: certificate rotation)
  client.pem / client.key  a client certificate (CN=test-client,
                           clientAuth), signed by the CA
  other.key                a key that matches no certificate
  both.pem                 server.key and server.pem in one file
  server.ext               the server's extensions (a file that is no
                           PEM at all)
and returns their paths by file name ("server.pem", ...) and by role:
ca, ca_key, cert, key, client, client_key, other_ca, dir.  A session
fixture makes them once: `openssl` is a test dependency (Debian's
openssl package).

client_context(certs, client_cert=False) is an ssl.SSLContext for a
client that trusts the CA (and presents the client certificate when
asked).
"""

import os
import shutil
import ssl
import subprocess

EC = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


def _openssl(*args, cwd):
    subprocess.run(("openssl",) + args, cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _ca(d, name):
    _openssl("req", "-x509", *EC, "-days", "2",
             "-subj", "/CN=cunicorn test %s" % name, "-keyout", name + ".key",
             "-out", name + ".pem",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)


def _leaf(d, name, subject, serial, ext):
    _openssl("req", "-new", *EC, "-subj", subject,
             "-keyout", name + ".key", "-out", name + ".csr", cwd=d)
    _openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-set_serial", serial, "-days", "2", "-extfile", ext,
             "-out", name + ".pem", cwd=d)
    os.unlink(os.path.join(d, name + ".csr"))


def make_certs(d):
    if shutil.which("openssl") is None:
        raise AssertionError("the openssl CLI is missing (scripts/deps.sh test)")
    _ca(d, "ca")
    _ca(d, "other_ca")
    with open(os.path.join(d, "server.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    with open(os.path.join(d, "client.ext"), "w") as f:
        f.write("basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n")
    _leaf(d, "server", "/CN=localhost", "1001", "server.ext")
    _leaf(d, "server2", "/CN=localhost", "2002", "server.ext")
    _leaf(d, "client", "/CN=test-client", "3003", "client.ext")
    _openssl("genpkey", "-algorithm", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-out", "other.key", cwd=d)
    with open(os.path.join(d, "both.pem"), "w") as f:   # key and chain in one file
        for n in ("server.key", "server.pem"):
            with open(os.path.join(d, n)) as g:
                f.write(g.read())
    out = {n: os.path.join(d, n) for n in os.listdir(d)}
    p = lambda n: os.path.join(d, n)  # noqa: E731
    out.update({"ca": p("ca.pem"), "ca_key": p("ca.key"), "cert": p("server.pem"),
                "key": p("server.key"), "client": p("client.pem"),
                "client_key": p("client.key"), "other_ca": p("other_ca.pem"), "dir": d})
    return out


def client_context(certs, client_cert=False):
    ctx = ssl.create_default_context(cafile=certs["ca"])
    if client_cert:
        ctx.load_cert_chain(certs["client"], certs["client_key"])
    return ctx
