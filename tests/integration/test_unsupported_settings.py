"""gunicorn's settings that cunicorn does not implement, through the real
build/cunicorn, from the command line, GUNICORN_CMD_ARGS and the config file:

- their flags parse exactly as gunicorn's (a flag, a flag with a value, a
  repeatable one, -R), so the app named after them is still the app;
- h2c and the ssl_context hook are refused at start with
  one "Error: <setting>: <why>" line and a non-zero exit (ignoring them would
  silently change security or the wire), nothing left running;
- the others start, with one "[WARNING] Setting '<name>' is not supported by
  cunicorn; ignored" line each;
- either only when the final value differs from gunicorn's default
  (`http2_cleartext = "off"` is fine);
- truly unknown flags still fail; unknown names in a config file are
  ignored, as gunicorn does;
- the ones that cunicorn now honours: sendfile (--no-sendfile, $SENDFILE),
  initgroups, reload / reload_engine / reload_extra_files and
  proxy_protocol / proxy_allow_ips, protocol / uwsgi_allow_ips, paste /
  raw_paste_global_conf (no warning
  here; what they do is tests/integration/test_reload.py's,
  test_proxy_protocol.py's, test_uwsgi_protocol.py's and test_paste.py's).

Every run is in its own session and working directory; ports are ephemeral.
"""

import grp
import json
import os
import pwd
import re
import socket
import textwrap

import pytest

from conftest import ROOT, free_port, http_get, wait_for
from conftest import run_to_exit as run

HELLO = textwrap.dedent("""\
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"hello"]
""")

# /file answers with wsgi.file_wrapper over a real file whose read() counts
# its calls; /reads tells the count (one worker: the same process).  With
# sendfile(2) the body goes out without a single read().
FILES = textwrap.dedent("""\
    import io, os
    DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data.bin")
    READS = [0]

    class CountingFile(io.FileIO):
        def read(self, n=-1):
            READS[0] += 1
            return super().read(n)

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/reads":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [str(READS[0]).encode()]
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](CountingFile(DATA), 8192)
""")
DATA = bytes(range(256)) * 400          # 100 kB

H2C_LINE = ("Error: http2_cleartext: cleartext HTTP/2 is not supported by cunicorn; "
            "it speaks HTTP/1.x only")
WARNING = re.compile(r"\[WARNING\] Setting '(\w+)' is not supported by cunicorn; ignored$")


def warned(text):
    """The settings warned about, each with how many times."""
    names = {}
    for line in text.splitlines():
        m = WARNING.search(line)
        if m:
            names[m.group(1)] = names.get(m.group(1), 0) + 1
    return names


def assert_refused(rc, err, needle):
    assert rc != 0, "expected a failure exit status"
    assert "Traceback" not in err, err
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), err
    assert needle in lines[0], "%r not in %r" % (needle, lines[0])


@pytest.fixture
def appdir(tmp_path):
    (tmp_path / "hello.py").write_text(HELLO)
    (tmp_path / "files.py").write_text(FILES)
    (tmp_path / "data.bin").write_bytes(DATA)
    return tmp_path


# ---- accepted with a warning ---------------------------------------------------

def test_reload_and_an_ignored_setting_start_serve_and_warn(make_server, appdir):
    """gunicorn users' `--reload --logger-class X` start, serve, and say
    once what is ignored: logger_class; --reload is honoured, so not a word
    of it (nor of statsd or syslog: test_statsd.py, test_syslog.py)."""
    s = make_server("--reload", "--logger-class", "my.Logger", "--chdir", str(appdir),
                    "hello:app", cwd=str(appdir))
    status, _, body = http_get(s.port, "/")
    assert (status, body) == (200, b"hello")
    log = s.log()
    assert warned(log) == {"logger_class": 1}, log[-3000:]
    assert "Error" not in log and "Traceback" not in log
    assert s.stop() == 0


def test_hooks_read_ignored_settings_as_what_runs(make_server, appdir):
    """A gunicorn hook reading server.cfg.<setting> of one cunicorn ignores
    gets the value that runs (gunicorn's default, with gunicorn's type),
    not an AttributeError; one it honours (reload), the value given."""
    out = appdir / "cfg.json"
    (appdir / "conf.py").write_text(textwrap.dedent("""\
        import json
        def when_ready(server):
            c = server.cfg
            names = ["reload", "syslog_prefix", "proxy_allow_ips", "reload_extra_files",
                     "control_socket_mode", "http2_cleartext", "syslog_facility", "workers"]
            with open(%r + ".tmp", "w") as f:
                json.dump({n: getattr(c, n) for n in names}, f)
            import os
            os.rename(%r + ".tmp", %r)
    """) % (str(out), str(out), str(out)))
    s = make_server("-c", str(appdir / "conf.py"), "--reload", "--chdir", str(appdir),
                    "hello:app", cwd=str(appdir))
    got = wait_for(lambda: out.exists() and json.loads(out.read_text()), 10,
                   what="when_ready's cfg dump")
    assert got == {"reload": True, "syslog_prefix": None,
                   "proxy_allow_ips": ["127.0.0.1", "::1"], "reload_extra_files": [],
                   "control_socket_mode": 0o600, "http2_cleartext": "off",
                   "syslog_facility": "user", "workers": 1}, got
    assert "Traceback" not in s.log()


def test_a_value_holding_itself_is_no_crash(appdir):
    """A config value that contains itself (logger_class = [logger_class])
    is shown without recursing: a warning, not a crash."""
    (appdir / "conf.py").write_text("logger_class = []\nlogger_class.append(logger_class)\n")
    rc, out, err, left = run(["-c", str(appdir / "conf.py"), "--check-config", "hello:app"],
                             appdir)
    assert rc == 0, err
    assert warned(err) == {"logger_class": 1}, err
    assert not left


@pytest.mark.parametrize("args,names", [
    # honoured (a flag, then flags with values): silent, and the app is the app
    (["--reload", "hello:app"], set()),
    (["hello:app", "--reload"], set()),
    (["--reload-extra-file", "files.py", "--reload-extra-file=data.bin", "--reload-engine",
      "poll", "hello:app"], set()),
    (["--logger-class", "my.Logger", "hello:app"], {"logger_class"}),
    (["--logger-class=my.Logger", "--log-config", "log.ini", "hello:app"],
     {"logger_class", "logconfig"}),
    # syslog is honoured now: silent (test_syslog.py)
    (["--log-syslog-prefix=web", "--log-syslog-facility", "local0", "hello:app"], set()),
    # statsd is honoured now: silent (test_statsd.py)
    (["--statsd-host", "127.0.0.1:9", "--statsd-prefix", "web", "--dogstatsd-tags",
      "a:b", "--enable-backlog-metric", "hello:app"], set()),
    (["--spew", "--log-syslog", "--log-syslog-to", "udp://10.0.0.1:514", "hello:app"],
     {"spew"}),
    (["-R", "hello:app"], {"enable_stdio_inheritance"}),
    (["--paste-global", "K=V", "--paste-global=L=W", "--reload-engine", "inotify",
      "hello:app"], set()),
    (["--log-config", "log.ini", "--log-config-json", "log.json", "--logger-class",
      "my.Logger", "hello:app"], {"logconfig", "logconfig_json", "logger_class"}),
    (["--paste-global", "K=V", "--header-map", "refuse", "--forwarder-headers",
      "SCRIPT_NAME,REMOTE_USER", "hello:app"],
     {"header_map"}),
    (["--permit-obsolete-folding", "--strip-header-spaces", "--casefold-http-method",
      "--permit-unconventional-http-method", "--permit-unconventional-http-version",
      "--tolerate-dangerous-framing", "hello:app"],
     {"permit_obsolete_folding", "strip_header_spaces", "casefold_http_method",
      "permit_unconventional_http_method", "permit_unconventional_http_version",
      "tolerate_dangerous_framing"}),
    (["--http-protocols", "h2,h1", "--http2-max-concurrent-streams", "200",
      "--control-socket", "/tmp/x.ctl", "hello:app"],
     {"http_protocols", "http2_max_concurrent_streams", "control_socket"}),
    # gunicorn's defaults, however spelled, and what cunicorn already does: silent
    (["--proxy-protocol", "off", "hello:app"], set()),
    (["--http2-cleartext", "off", "hello:app"], set()),
    (["--header-map", "drop", "--forwarder-headers", "SCRIPT_NAME, PATH_INFO",
      "--control-socket-mode", "0600", "--log-syslog-facility", "user", "hello:app"],
     set()),
    (["--no-control-socket", "--disable-redirect-access-to-syslog", "hello:app"], set()),
])
def test_command_line_accepted(appdir, args, names):
    """--check-config loads the app: a flag that swallowed it, or a value
    taken for the app, would fail here."""
    rc, out, err, left = run(["--check-config"] + args, appdir)
    assert rc == 0, err
    assert "Error" not in err and "Traceback" not in err, err
    assert warned(err) == {n: 1 for n in names}, err
    assert not left


def test_gunicorn_cmd_args_accepted(appdir):
    rc, out, err, left = run(["--check-config", "hello:app"], appdir,
                             {"GUNICORN_CMD_ARGS": "--reload --logger-class my.Logger -R"})
    assert rc == 0, err
    assert warned(err) == {"logger_class": 1, "enable_stdio_inheritance": 1}


def test_config_file_accepted_with_warnings(appdir):
    (appdir / "conf.py").write_text(textwrap.dedent("""\
        reload = True
        syslog_prefix = "web"
        logger_class = "my.Logger"
        statsd_host = "localhost:8125"
        logconfig_dict = {"version": 1}
        tmp_upload_dir = "/tmp"
        reload_extra_files = ["data.bin"]
    """))
    rc, out, err, left = run(["--check-config", "-c", "conf.py", "hello:app"], appdir)
    assert rc == 0, err
    assert warned(err) == {"logger_class": 1, "logconfig_dict": 1, "tmp_upload_dir": 1}, err


def test_final_value_decides(appdir):
    """Precedence first, then the check: the command line putting a setting
    back to gunicorn's default silences the file's value."""
    (appdir / "conf.py").write_text("logger_class = 'a'\nheader_map = 'refuse'\n"
                                    "http2_cleartext = 'upgrade'\nreload = False\n")
    rc, out, err, left = run(["--check-config", "-c", "conf.py", "--logger-class=simple",
                              "--header-map", "drop", "--http2-cleartext=off", "hello:app"],
                             appdir)
    assert rc == 0, err
    assert err == "", err
    rc, out, err, left = run(["--check-config", "-c", "conf.py", "--logger-class=simple",
                              "--header-map", "drop", "--http2-cleartext=off", "hello:app"],
                             appdir, {"GUNICORN_CMD_ARGS": "--spew"})
    assert rc == 0 and warned(err) == {"spew": 1}, err


# ---- refused -----------------------------------------------------------------

@pytest.mark.parametrize("args,needle", [
    (["--http2-cleartext", "prior-knowledge"], H2C_LINE),
    (["--http2-cleartext=upgrade"], "Error: http2_cleartext: cleartext HTTP/2"),
    (["--spew", "--http2-cleartext", "upgrade"], H2C_LINE),     # the refusal alone
])
def test_command_line_refused(appdir, args, needle):
    rc, out, err, left = run(["-b", "127.0.0.1:%d" % free_port()] + args + ["hello:app"],
                             appdir)
    assert_refused(rc, err, needle)
    assert not left


def test_gunicorn_cmd_args_refused(appdir):
    rc, out, err, left = run(["hello:app"], appdir,
                             {"GUNICORN_CMD_ARGS": "--http2-cleartext upgrade --spew"})
    assert_refused(rc, err, H2C_LINE)
    assert not left


@pytest.mark.parametrize("text,needle", [
    ('http2_cleartext = "upgrade"\n', H2C_LINE),
    ('http2_cleartext = "prior-knowledge"\nspew = True\n', H2C_LINE),
    ("def ssl_context(conf, default_ssl_context_factory):\n"
     "    return default_ssl_context_factory()\n",
     "Error: ssl_context: a Python SSLContext hook is not supported by cunicorn"),
    ("ssl_context = lambda conf, factory: factory()\n",
     "use certfile, keyfile, ca_certs, cert_reqs, ciphers and ssl_version"),
])
def test_config_file_refused_at_a_real_start(appdir, text, needle):
    """Not --check-config: a real start must not get as far as listening."""
    (appdir / "conf.py").write_text(text)
    port = free_port()
    rc, out, err, left = run(["-b", "127.0.0.1:%d" % port, "-c", "conf.py", "hello:app"],
                             appdir)
    assert_refused(rc, err, needle)
    assert not left
    with socket.socket() as s:          # nothing ever listened there
        s.bind(("127.0.0.1", port))


def test_gunicorn_defaults_in_a_config_file_start_silently(make_server, appdir):
    (appdir / "conf.py").write_text(textwrap.dedent("""\
        import ssl
        certfile = None
        keyfile = None
        ca_certs = None
        ssl_version = ssl.PROTOCOL_TLS
        cert_reqs = ssl.CERT_NONE
        do_handshake_on_connect = False
        suppress_ragged_eofs = True
        proxy_protocol = False
        reload = False
        statsd_host = None
        logconfig_dict = {}
        reload_extra_files = []
        http_protocols = "h1"
        no_such_setting_anywhere = 1
    """))
    s = make_server("-c", str(appdir / "conf.py"), "--chdir", str(appdir), "hello:app",
                    cwd=str(appdir))
    status, _, body = http_get(s.port, "/")
    assert (status, body) == (200, b"hello")
    log = s.log()
    assert "WARNING" not in log and "Error" not in log, log[-3000:]
    assert s.stop() == 0


# ---- unknown stays unknown; --print-config stays valid -------------------------

def test_unknown_flags_still_fail(appdir):
    rc, out, err, left = run(["--no-such-flag", "hello:app"], appdir)
    assert_refused(rc, err, "Error: unrecognized arguments: --no-such-flag")
    # a prefix shared by gunicorn's flags is as ambiguous as in gunicorn
    rc, out, err, left = run(["--re", "hello:app"], appdir)
    assert_refused(rc, err, "Error: ambiguous option: --re")
    assert not left


def test_print_config_stays_valid(appdir):
    rc, out, err, left = run(["--print-config", "--reload", "--logger-class", "h",
                              "--no-sendfile", "--initgroups", "hello:app"], appdir)
    assert rc == 0, err
    lines = out.splitlines()
    assert lines and all(" = " in l for l in lines), out
    names = [l.split(" ", 1)[0] for l in lines]
    assert names == sorted(names)
    assert len({l.index(" = ") for l in lines}) == 1
    cfg = dict((k.strip(), v) for k, v in (l.split(" = ", 1) for l in lines))
    assert cfg["sendfile"] == "False" and cfg["initgroups"] == "True"
    assert cfg["reload"] == "True" and cfg["reload_engine"] == "auto"
    assert cfg["reload_extra_files"] == "[]"
    assert cfg["logger_class"] == "gunicorn.glogging.Logger"    # printed: what runs
    assert warned(err) == {"logger_class": 1}


# ---- honoured: sendfile, initgroups ------------------------------------------

@pytest.mark.parametrize("how", ["default", "flag", "env", "file", "env-on"])
def test_sendfile(make_server, appdir, how):
    args, env = ["-w", "1", "--chdir", str(appdir)], {}
    if how == "flag":
        args.append("--no-sendfile")
    elif how == "env":
        env["SENDFILE"] = "0"
    elif how == "env-on":
        env["SENDFILE"] = "yes"
    elif how == "file":
        (appdir / "conf.py").write_text("sendfile = False\n")
        args += ["-c", str(appdir / "conf.py")]
    s = make_server(*(args + ["files:app"]), cwd=str(appdir), env=env)
    status, headers, body = http_get(s.port, "/file")
    assert status == 200 and body == DATA
    reads = int(http_get(s.port, "/reads")[2])
    if how in ("default", "env-on"):
        assert reads == 0           # sendfile(2): the file object never read
    else:
        assert reads >= len(DATA) // 8192
    assert "WARNING" not in s.log()


def _user_with_supplementary_groups():
    """(name, uid, gid): a user some group lists as a member, if any; else
    nobody (then --initgroups gives only its own group, still checked)."""
    for g in grp.getgrall():
        for member in g.gr_mem:
            try:
                pw = pwd.getpwnam(member)
            except KeyError:
                continue
            if pw.pw_gid != g.gr_gid:
                return pw.pw_name, pw.pw_uid, pw.pw_gid
    pw = pwd.getpwnam("nobody")
    return pw.pw_name, pw.pw_uid, pw.pw_gid


@pytest.mark.parametrize("initgroups", [False, True])
def test_initgroups(make_server, initgroups):
    """Workers get the user's supplementary groups with --initgroups, only
    GROUP without it (gunicorn's setting; never the master's, root's)."""
    assert os.geteuid() == 0, "switching users needs root"
    name, uid, gid = _user_with_supplementary_groups()
    args = ["--chdir", os.path.join(ROOT, "tests", "integration", "apps"),
            "-u", name, "-g", str(gid)] + (["--initgroups"] if initgroups else [])
    s = make_server(*(args + ["master_app:info"]))
    status, _, body = http_get(s.port, "/")
    assert status == 200, body
    info = json.loads(body)
    assert (info["uid"], info["gid"]) == (uid, gid)
    want = sorted(set(os.getgrouplist(name, gid))) if initgroups else [gid]
    assert sorted(set(info["groups"])) == want
