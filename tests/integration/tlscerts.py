"""Test certificates made with the `openssl` CLI, for the TLS tests.

make_certs(directory) writes, and returns the paths of:
  ca / ca_key          a self-signed CA
  cert / key           a server certificate for 127.0.0.1 and localhost,
                       signed by the CA
  client / client_key  a client certificate (CN=test-client, clientAuth),
                       signed by the CA
  other_ca             another CA, that signed nothing here
Each pair is RSA 2048 (quick to make), valid for a day.  A session
fixture makes them once: `openssl` is a test dependency (Debian's
openssl package).

client_context(certs, client_cert=False) is an ssl.SSLContext for a
client that trusts the CA (and presents the client certificate when
asked).
"""

import os
import ssl
import subprocess


def _openssl(*args, cwd):
    subprocess.run(("openssl",) + args, cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _ca(d, name):
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
             "-subj", "/CN=cunicorn test %s" % name, "-keyout", name + ".key",
             "-out", name + ".pem",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)


def _leaf(d, name, subject, ext):
    with open(os.path.join(d, name + ".ext"), "w") as f:
        f.write(ext)
    _openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", subject,
             "-keyout", name + ".key", "-out", name + ".csr", cwd=d)
    _openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "1", "-extfile", name + ".ext",
             "-out", name + ".pem", cwd=d)


def make_certs(d):
    _ca(d, "ca")
    _ca(d, "other_ca")
    _leaf(d, "server", "/CN=localhost",
          "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
          "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    _leaf(d, "client", "/CN=test-client",
          "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n")
    p = lambda n: os.path.join(d, n)  # noqa: E731
    return {"ca": p("ca.pem"), "ca_key": p("ca.key"), "cert": p("server.pem"),
            "key": p("server.key"), "client": p("client.pem"),
            "client_key": p("client.key"), "other_ca": p("other_ca.pem"),
            "dir": d}


def client_context(certs, client_cert=False):
    ctx = ssl.create_default_context(cafile=certs["ca"])
    if client_cert:
        ctx.load_cert_chain(certs["client"], certs["client_key"])
    return ctx
