"""Drop-in fidelity with gunicorn, through the real build/cunicorn: the
interpreter an app sees (sys.executable runs Python, multiprocessing's
spawn works, sys.argv is the command line), an installed gunicorn's
modules importable beside cunicorn's `gunicorn` package, gunicorn's exit
code and lines for an app that fails to load (with --preload: before the
port is bound), and gunicorn's debug lines, nworkers_changed at start,
one log record per traceback, --print-config listing every setting.

Every server runs in its own session on an ephemeral port; nothing sleeps
and then asserts: the server is polled with generous bounds.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap

import pytest

from conftest import BINARY, COMPAT_BINARY, ROOT, free_port, http_get, wait_for
from conftest import run_to_exit as run

APPS = os.path.join(ROOT, "tests", "integration", "apps")
PY_VERSION = None   # the embedded interpreter's X.Y, read from the binary's app


def get_json(port, path="/", timeout=60.0):
    status, _, body = http_get(port, path, timeout=timeout)
    assert status == 200, body
    return json.loads(body)


def records(log):
    """The error log as records: a record starts with '[YYYY-MM-DD '."""
    out = []
    for line in log.splitlines():
        if re.match(r"\[\d{4}-\d\d-\d\d ", line) or not out:
            out.append(line)
        else:
            out[-1] += "\n" + line
    return out


# ---- sys.executable, sys.argv ------------------------------------------------

def test_sys_executable_runs_the_system_python(make_server):
    s = make_server("--chdir", APPS, "dropin_apps:interpreter")
    info = get_json(s.port)
    version = info["version"]
    assert info["executable"] == "/usr/bin/python" + version, info
    assert info["base_executable"] == info["executable"], info
    # `sys.executable -c ...` is Python of the same version, not cunicorn
    assert info["child_rc"] == 0, info["child_err"]
    assert info["child_out"] == ["/usr", version], info
    # sys.argv is cunicorn's own command line, as gunicorn's is its own
    assert info["argv"] == s.argv, info


def test_sys_argv_names_the_compatibility_binary(make_server):
    s = make_server("--chdir", APPS, "dropin_apps:interpreter", binary=COMPAT_BINARY)
    info = get_json(s.port)
    assert info["argv"][0] == COMPAT_BINARY and info["argv"][1:] == s.argv[1:], info


def test_sys_argv_zero_is_found_in_path(tmp_path):
    """A bare command name (found through $PATH by the shell) becomes the
    full path, as gunicorn's sys.argv[0] is its script's path."""
    conf = tmp_path / "conf.py"
    conf.write_text(textwrap.dedent("""\
        import sys
        print("ARGV=" + repr(sys.argv), flush=True)
    """))
    (tmp_path / "hello.py").write_text("def app(e, s):\n    return []\n")
    env = {"PATH": os.path.dirname(BINARY) + os.pathsep + os.environ.get("PATH", "")}
    p = subprocess.run(["cunicorn", "--check-config", "-c", str(conf), "hello:app"],
                       cwd=str(tmp_path), env=dict(os.environ, **env),
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert "ARGV=%r" % [BINARY, "--check-config", "-c", str(conf), "hello:app"] in p.stdout, \
        p.stdout + p.stderr


def test_sys_executable_is_the_virtualenvs_python(make_server, tmp_path):
    version = "%d.%d" % sys.version_info[:2]
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "lib" / ("python" + version) / "site-packages").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text(
        "home = /usr/bin\ninclude-system-site-packages = false\nversion = %s\n" % version)
    os.symlink("/usr/bin/python" + version, str(venv / "bin" / ("python" + version)))
    s = make_server("--virtualenv", str(venv), "--chdir", APPS, "dropin_apps:interpreter")
    info = get_json(s.port)
    assert info["version"] == version, "the test's Python must be the embedded one"
    assert info["executable"] == str(venv / "bin" / ("python" + version)), info
    assert info["base_executable"] == "/usr/bin/python" + version, info
    # the child is that virtualenv's interpreter
    assert info["child_rc"] == 0, info["child_err"]
    assert info["child_out"] == [str(venv), version], info


def test_multiprocessing_spawn_works(make_server):
    s = make_server("--chdir", APPS, "-t", "120", "dropin_apps:spawn_pool")
    status, _, body = http_get(s.port, "/", timeout=90)
    assert status == 200, body
    assert json.loads(body) == [0, 1, 4, 9, 16]
    assert "WORKER TIMEOUT" not in s.log()


# ---- an installed gunicorn stays importable ----------------------------------

INSTALLED = "/usr/lib/python3/dist-packages/gunicorn"


def test_config_file_imports_installed_gunicorn_modules(make_server, tmp_path):
    assert os.path.exists(os.path.join(INSTALLED, "glogging.py")), \
        "python3-gunicorn must be installed for this test"
    conf = tmp_path / "conf.py"
    conf.write_text(textwrap.dedent("""\
        from gunicorn import glogging
        import gunicorn
        import gunicorn.dirty
        raw_env = [
            "CUNI_GLOGGING=" + glogging.__file__,
            "CUNI_LOGGER=" + glogging.Logger.__name__,
            "CUNI_DIRTY=" + gunicorn.dirty.__file__,
            "CUNI_VERSION=" + gunicorn.__version__,
        ]
    """))
    s = make_server("-c", str(conf), "--chdir", APPS, "dropin_apps:environ_echo")
    env = get_json(s.port)
    assert env["CUNI_GLOGGING"] == os.path.join(INSTALLED, "glogging.py"), env
    assert env["CUNI_LOGGER"] == "Logger"
    # gunicorn.dirty and the package itself stay cunicorn's
    assert env["CUNI_DIRTY"] == os.path.join(ROOT, "python", "gunicorn", "dirty",
                                             "__init__.py"), env
    assert env["CUNI_VERSION"] == "25.0.0"


# ---- an app that fails to load -----------------------------------------------

BROKEN = {
    # an ImportError raised inside the app's module
    "broken_import": "import no_such_module_inside_the_app\n",
    "hello": "def app(environ, start_response):\n    return []\n",
}


@pytest.fixture
def brokendir(tmp_path):
    for name, text in BROKEN.items():
        (tmp_path / (name + ".py")).write_text(text)
    return tmp_path


def assert_app_failed_to_load(rc, err, left):
    assert rc == 4, "exit %s, expected gunicorn's APP_LOAD_ERROR 4:\n%s" % (rc, err[-3000:])
    assert "Reason: App failed to load." in err, err[-3000:]
    assert "Worker failed to boot." not in err
    assert not left, "processes left behind: %s" % left


APP_ERRORS = ["no_such_module_xyz:app", "broken_import:app", "hello:no_such_callable"]


@pytest.mark.parametrize("app", APP_ERRORS)
def test_app_load_error_exits_4(brokendir, app):
    rc, out, err, left = run(["-b", "127.0.0.1:%d" % free_port(), app], brokendir,
                             timeout=40)
    assert_app_failed_to_load(rc, err, left)


@pytest.mark.parametrize("app", APP_ERRORS)
def test_preload_app_load_error_exits_4_before_binding(brokendir, app):
    # the port is taken: a server that bound before loading the app would
    # fail on the bind ("in use"); gunicorn never gets that far
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        pidfile = brokendir / "app.pid"
        rc, out, err, left = run(["-b", "127.0.0.1:%d" % port, "--preload",
                                  "-p", str(pidfile), app], brokendir, timeout=40)
    assert_app_failed_to_load(rc, err, left)
    assert "in use" not in err.lower() and "Listening at" not in err, err
    assert "Booting worker" not in err
    assert not pidfile.exists()
    # one record: the reason after gunicorn's "Shutting down: Master"
    recs = records(err)
    i = [n for n, r in enumerate(recs) if "Shutting down: Master" in r]
    assert i and "Reason: App failed to load." in recs[i[-1] + 1], err


def test_preload_import_error_is_one_record_with_its_traceback(brokendir):
    rc, out, err, left = run(["-b", "127.0.0.1:%d" % free_port(), "--preload",
                              "broken_import:app"], brokendir, timeout=40)
    assert rc == 4
    tb = [r for r in records(err) if "Traceback (most recent call last)" in r]
    assert len(tb) == 1, err
    head = tb[0].splitlines()[0]
    assert "[ERROR]" in head and "No module named 'no_such_module_inside_the_app'" in head, tb[0]
    assert tb[0].endswith(
        "ModuleNotFoundError: No module named 'no_such_module_inside_the_app'"), tb[0]


# ---- logging -------------------------------------------------------------------

HOOKS = textwrap.dedent("""\
    def nworkers_changed(server, new_value, old_value):
        server.log.info("NWORKERS %r %r" % (new_value, old_value))

    def when_ready(server):
        raise RuntimeError("when-ready-boom")
""")


def test_debug_lines_and_nworkers_changed_at_start(make_server, tmp_path):
    conf = tmp_path / "hooks.py"
    conf.write_text(HOOKS)
    s = make_server("-c", str(conf), "--log-level", "debug", "-w", "2",
                    "--chdir", APPS, "master_app:hello")
    s.wait_log("[DEBUG] 2 workers", timeout=20)
    s.wait_log("RuntimeError: when-ready-boom", timeout=20, count=2)
    log = s.err()
    recs = records(log)

    def index(text):
        found = [n for n, r in enumerate(recs) if text in r]
        assert found, "%r not in the log:\n%s" % (text, log[-4000:])
        return found[0]

    # gunicorn's Arbiter.setup(): nworkers_changed(server, 2, None), then
    # the configuration as one record of "  name: value" lines
    assert index("NWORKERS 2 None") < index("Starting ")
    conf_rec = recs[index("[DEBUG] Current configuration:")]
    lines = conf_rec.splitlines()[1:]
    assert "  workers: 2" in lines and "  loglevel: debug" in lines, conf_rec
    assert "  bind: ['127.0.0.1:%d']" % s.port in lines, conf_rec
    assert "  syslog_prefix: None" in lines, conf_rec  # gunicorn's, not ours
    assert all(l.startswith("  ") and ": " in l for l in lines), conf_rec
    assert index("Current configuration:") < index("Starting ")
    # "Arbiter booted" just before "Listening at"
    assert index("[DEBUG] Arbiter booted") + 1 == index("Listening at: ")

    # a traceback is one record with its line
    rec = recs[index("when-ready-boom")]
    assert rec.splitlines()[0].endswith(
        "[ERROR] Exception in when_ready hook: RuntimeError: when-ready-boom"), rec
    assert "\nTraceback (most recent call last):\n" in rec, rec
    assert rec.endswith("RuntimeError: when-ready-boom"), rec

    s.send(signal.SIGTTIN)
    s.wait_log("NWORKERS 3 2")
    s.wait_log("[DEBUG] 3 workers")
    assert s.log().count("[DEBUG] 2 workers") == 1   # logged when it changes
    # a reload logs the configuration again, as gunicorn's setup() does
    s.send(signal.SIGHUP)
    s.wait_log("[DEBUG] Current configuration:", count=2, timeout=20)


def test_no_debug_lines_at_info(make_server, tmp_path):
    s = make_server("--chdir", APPS, "master_app:hello")
    s.wait_log("Booting worker")
    assert http_get(s.port)[0] == 200
    log = s.log()
    assert "Current configuration" not in log and "Arbiter booted" not in log
    assert not re.search(r"\] \d+ workers", log), log


# ---- --print-config ---------------------------------------------------------------

def test_print_config_lists_every_gunicorn_setting(brokendir):
    rc, out, err, left = run(["--print-config", "hello:app"], brokendir)
    assert rc == 0, err
    cfg = {}
    for line in out.splitlines():
        k, v = line.split(" = ", 1)
        cfg[k.strip()] = v
    # every setting of the installed gunicorn (20.1 here) is listed
    g = subprocess.run(["/usr/bin/python3", "-m", "gunicorn", "--print-config", "hello:app"],
                       cwd=str(brokendir), capture_output=True, text=True, timeout=60)
    names = {l.split(" = ", 1)[0].strip() for l in g.stdout.splitlines() if " = " in l}
    assert len(names) > 80, g.stdout + g.stderr
    assert names <= set(cfg), sorted(names - set(cfg))
    # the ones cunicorn does not implement: gunicorn's defaults
    assert cfg["syslog_prefix"] == "None"
    assert cfg["spew"] == "False"
    assert cfg["logconfig_dict"] == "{}"
    assert cfg["raw_paste_global_conf"] == "[]"
    assert cfg["forwarder_headers"] == "['SCRIPT_NAME', 'PATH_INFO']"
    assert cfg["control_socket_mode"] == "384"
    assert cfg["syslog_addr"] == "udp://localhost:514"
    # gunicorn 24+'s spelling of its default (20.1's was False)
    assert cfg["proxy_protocol"] == "off"
    assert cfg["protocol"] == "http" and cfg["paste"] == "None"
    assert list(cfg) == sorted(cfg), "sorted by name"
