"""Settings as gunicorn users meet them, through the real build/cunicorn:
--check-config and --print-config, precedence (config file < GUNICORN_CMD_ARGS
< command line), ./gunicorn.conf.py, and the one-line errors for an unknown
option, a bad value, a broken config file, a missing or unimportable app and
a port already in use -- each with a non-zero exit, no traceback and no
process left behind.

Every run is in its own session (process group) and working directory;
ports are ephemeral.
"""

import os
import socket
import textwrap

import pytest

from conftest import COMPAT_BINARY, free_port
from conftest import run_to_exit as run

APP = textwrap.dedent("""\
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"hello"]
    application = app
""")


def printed(out):
    """--print-config output as {name: value-text}."""
    cfg = {}
    for line in out.splitlines():
        if " = " in line:
            k, v = line.split(" = ", 1)
            cfg[k.strip()] = v
    return cfg


def error_lines(err):
    return [l for l in err.splitlines() if l.strip()]


def assert_one_error(rc, err, *needles):
    assert rc != 0, "expected a failure exit status"
    assert "Traceback" not in err, err
    lines = [l for l in error_lines(err) if l.startswith("Error:")]
    assert len(lines) == 1, "expected one Error: line, got:\n" + err
    for n in needles:
        assert n in lines[0], "%r not in %r" % (n, lines[0])


@pytest.fixture
def appdir(tmp_path):
    (tmp_path / "hello.py").write_text(APP)
    return tmp_path


# ---- --check-config / --print-config ----------------------------------------

def test_check_config_good_file(appdir):
    (appdir / "conf.py").write_text("workers = 3\ntimeout = 12\nbind = '127.0.0.1:%d'\n"
                                    "def on_starting(server):\n    pass\n" % free_port())
    rc, out, err, left = run(["--check-config", "-c", "conf.py", "hello:app"], appdir)
    assert rc == 0, err
    assert "Error" not in err and "Traceback" not in err
    assert not left


def test_check_config_bad_app_fails(appdir):
    rc, out, err, left = run(["--check-config", "hello:nosuchcallable"], appdir)
    assert rc != 0
    assert "nosuchcallable" in err
    assert not left


@pytest.mark.parametrize("text,needles", [
    ("workers = 2\nbind = [\n", ["config file", "conf.py", "SyntaxError", "(line 2)"]),
    ("workers = 2\n\nraise RuntimeError('no config for you')\n",
     ["config file", "RuntimeError: no config for you", "(line 3)"]),
    ("import no_such_module_for_cfg\n", ["ModuleNotFoundError", "no_such_module_for_cfg"]),
    ("workers = 'many'\n", ["Invalid value for workers: many"]),
    ("bind = 8000\n", ["Invalid value for bind"]),
    ("loglevel = 'chatty'\n", ["Invalid value for loglevel: chatty"]),
    ("def when_ready():\n    pass\n", ["Invalid value for when_ready"]),
    ("post_fork = 3\n", ["Invalid value for post_fork", "not callable"]),
    ("dirty_apps = ['mod:Cls:0']\n", ["Invalid value for dirty_apps"]),
])
def test_check_config_bad_file(appdir, text, needles):
    (appdir / "conf.py").write_text(text)
    rc, out, err, left = run(["--check-config", "-c", "conf.py", "hello:app"], appdir)
    assert_one_error(rc, err, *needles)
    assert not left


def test_missing_config_file(appdir):
    rc, out, err, left = run(["--check-config", "-c", "nope.py", "hello:app"], appdir)
    assert_one_error(rc, err, "nope.py")


def test_print_config_precedence(appdir):
    (appdir / "conf.py").write_text(textwrap.dedent("""\
        workers = 4
        timeout = 11
        keepalive = 9
        proc_name = "from-file"
        bind = ["127.0.0.1:1111", "127.0.0.1:2222"]
        raw_env = ["FROM=file"]
        umask = 0o22
        def post_fork(server, worker):
            pass
    """))
    rc, out, err, left = run(
        ["--print-config", "-c", "conf.py", "-w", "6", "-b", "127.0.0.1:3333", "hello:app"],
        appdir, {"GUNICORN_CMD_ARGS": "--timeout 22 --workers 5 --name 'from env'"})
    assert rc == 0, err
    cfg = printed(out)
    assert cfg["workers"] == "6"                     # command line
    assert cfg["timeout"] == "22"                    # env over file
    assert cfg["proc_name"] == "from env"            # env over file
    assert cfg["keepalive"] == "9"                   # file over default
    assert cfg["bind"] == "['127.0.0.1:3333']"       # command-line list replaces
    assert cfg["raw_env"] == "['FROM=file']"
    assert cfg["umask"] == "18"
    assert cfg["post_fork"] == "<post_fork()>"
    assert cfg["graceful_timeout"] == "30"           # default
    assert cfg["dirty_timeout"] == "300"
    assert cfg["loglevel"] == "info"
    assert cfg["accesslog"] == "None"
    assert cfg["errorlog"] == "-"
    assert cfg["secure_scheme_headers"] == ("{'X-FORWARDED-PROTOCOL': 'ssl', "
                                            "'X-FORWARDED-PROTO': 'https', 'X-FORWARDED-SSL': 'on'}")
    # gunicorn's layout: sorted names, "=" aligned
    lines = [l for l in out.splitlines() if " = " in l]
    names = [l.split(" ", 1)[0] for l in lines]
    assert names == sorted(names)
    assert len({l.index(" = ") for l in lines}) == 1
    assert not left


def test_print_config_defaults_from_environment(appdir):
    port = free_port()
    rc, out, err, left = run(["--print-config", "hello:app"], appdir,
                             {"PORT": str(port), "WEB_CONCURRENCY": "3"})
    assert rc == 0, err
    cfg = printed(out)
    assert cfg["bind"] == "['0.0.0.0:%d']" % port
    assert cfg["workers"] == "3"
    assert cfg["chdir"] == os.path.realpath(str(appdir))


def test_default_config_file_in_cwd(appdir):
    (appdir / "gunicorn.conf.py").write_text("workers = 7\nwsgi_app = 'hello:app'\n")
    rc, out, err, left = run(["--print-config"], appdir)
    assert rc == 0, err
    cfg = printed(out)
    assert cfg["workers"] == "7"
    assert cfg["wsgi_app"] == "hello:app"
    # an explicit -c wins over ./gunicorn.conf.py
    (appdir / "other.py").write_text("workers = 2\n")
    rc, out, err, left = run(["--print-config", "-c", "other.py", "hello:app"], appdir)
    assert rc == 0, err
    assert printed(out)["workers"] == "2"


# ---- command-line errors ------------------------------------------------------

@pytest.mark.parametrize("args,needles", [
    (["--foo", "hello:app"], ["unrecognized arguments: --foo"]),
    (["-w", "abc", "hello:app"], ["Invalid value for workers: abc"]),
    (["-w", "-2", "hello:app"], ["workers"]),
    (["--timeout"], ["--timeout", "expected one argument"]),
    (["--log-level", "loud", "hello:app"], ["loglevel"]),
    (["-m", "0999", "hello:app"], ["umask"]),
    (["--preload=yes", "hello:app"], ["--preload"]),
    (["-b", "127.0.0.1:notaport", "hello:app"], ["bind"]),
    (["--dirty-app", "justamodule", "hello:app"], ["dirty_apps"]),
    (["--chdir", "/no/such/dir", "hello:app"], ["chdir"]),
    (["-u", "no_such_user_xyz", "hello:app"], ["No such user"]),
    (["hello:app", "second:app"], ["unrecognized arguments: second:app"]),
])
def test_bad_command_line(appdir, args, needles):
    rc, out, err, left = run(args, appdir)
    assert_one_error(rc, err, *needles)
    assert len(error_lines(err)) == 1, err
    assert not left


def test_bad_gunicorn_cmd_args(appdir):
    rc, out, err, left = run(["hello:app"], appdir, {"GUNICORN_CMD_ARGS": "--workers=lots"})
    assert_one_error(rc, err, "workers")
    rc, out, err, left = run(["hello:app"], appdir, {"GUNICORN_CMD_ARGS": "--name 'unclosed"})
    assert_one_error(rc, err, "quotation")
    assert not left


def test_missing_app_module(appdir):
    rc, out, err, left = run(["-b", "127.0.0.1:%d" % free_port()], appdir)
    assert_one_error(rc, err, "No application module specified.")
    assert not left


def test_unimportable_app_module(appdir):
    port = free_port()
    rc, out, err, left = run(["-b", "127.0.0.1:%d" % port, "no_such_module_xyz:app"],
                             appdir, timeout=40)
    assert rc != 0
    assert "no_such_module_xyz" in err
    assert not left, "processes left behind: %s" % left
    # and nothing listens on the port any more
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_port_in_use(appdir):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        rc, out, err, left = run(["-b", "127.0.0.1:%d" % port, "hello:app"], appdir, timeout=40)
    assert rc != 0
    assert "Traceback" not in err
    low = err.lower()
    assert "in use" in low and str(port) in err, err
    assert not left


# ---- help and version ---------------------------------------------------------

def test_version_and_help(appdir):
    rc, out, err, left = run(["--version"], appdir)
    assert rc == 0 and out.startswith("cunicorn (version "), out
    rc, out, err, left = run(["-v"], appdir, binary=COMPAT_BINARY)
    assert rc == 0 and out.startswith("gunicorn (version "), out
    rc, out, err, left = run(["-h"], appdir)
    assert rc == 0
    for flag in ("--bind", "--workers", "--limit-request-field_size", "--keep-alive",
                 "--dirty-app", "--dirty-workers", "--print-config", "--check-config",
                 "--access-logformat", "--log-file", "--virtualenv"):
        assert flag in out, flag


# ---- what hooks see ------------------------------------------------------------

def test_hooks_see_cfg(make_server, appdir):
    """Hooks read settings as gunicorn's do: server.cfg.workers,
    worker.cfg.proc_name, ... with the command line winning over the file."""
    (appdir / "conf.py").write_text(textwrap.dedent("""\
        import sys
        workers = 2
        proc_name = "cfgtest"
        raw_env = ["CFG_TEST=1"]
        def on_starting(server):
            c = server.cfg
            print("ON_STARTING workers=%r proc_name=%r timeout=%r env=%r bind_is_list=%r"
                  % (c.workers, c.proc_name, c.timeout, c.env, isinstance(c.bind, list)),
                  file=sys.stderr, flush=True)
        def post_worker_init(worker):
            print("POST_WORKER_INIT proc_name=%r" % (worker.cfg.proc_name,),
                  file=sys.stderr, flush=True)
    """))
    s = make_server("-c", str(appdir / "conf.py"), "-w", "1", "--timeout", "17",
                    "--chdir", str(appdir), "hello:app", cwd=str(appdir))
    s.wait_log("POST_WORKER_INIT")
    log = s.log()
    assert ("ON_STARTING workers=1 proc_name='cfgtest' timeout=17 "
            "env={'CFG_TEST': '1'} bind_is_list=True") in log, log[-3000:]
    assert "POST_WORKER_INIT proc_name='cfgtest'" in log
    assert s.stop() is not None
