"""--paste FILE[#NAME] (gunicorn's PasteDeploy loader) through the real
build/cunicorn, with Debian's python3-pastedeploy:

- the app comes from the file's [app:main] section (or NAME's), its
  factory given the section's settings and the global conf (`here`, and
  --paste-global KEY=VALUE); no APP_MODULE needed;
- the default proc_name is the file, as in gunicorn;
- from the config file (`paste = ...`) too, and with the gthread worker;
- a missing file is one clear error and nothing left running; a file
  that configures logging starts with a warning that cunicorn keeps its
  own log format.
"""

import json
import os
import textwrap

import pytest

from conftest import http_get, proc_title, start_to_exit, wait_for

INI = textwrap.dedent("""\
    [app:main]
    use = call:tests.integration.apps.paste_apps:make_app
    greeting = hello from main

    [app:other]
    use = call:tests.integration.apps.paste_apps:make_app
    greeting = hello from %(who)s
""")


@pytest.fixture
def ini(tmp_path):
    p = tmp_path / "site.ini"
    p.write_text(INI)
    return p


@pytest.mark.parametrize("worker", ["sync", "gthread"])
def test_the_app_comes_from_the_file(make_server, ini, worker):
    s = make_server("-k", worker, "-w", "1", "--paste", str(ini), "--paste-global", "who=ops")
    status, _, body = http_get(s.port, "/")
    assert status == 200
    d = json.loads(body)
    assert d == {"greeting": "hello from main", "global": "ops", "here": str(ini.parent)}
    # gunicorn's default proc_name is the file
    assert wait_for(lambda: "[%s]" % ini in (proc_title(s.pid) or ""), 5), proc_title(s.pid)


def test_a_named_section_and_the_config_file(make_server, ini, tmp_path):
    conf = tmp_path / "conf.py"
    conf.write_text("paste = %r\nraw_paste_global_conf = ['who=the file']\n" % (str(ini) + "#other"))
    s = make_server("-c", str(conf), "-w", "1")
    status, _, body = http_get(s.port, "/")
    assert status == 200 and json.loads(body)["greeting"] == "hello from the file"
    # --paster is gunicorn's other spelling
    s2 = make_server("-w", "1", "--paster", str(ini) + "#other", "--paste-global", "who=cli")
    status, _, body = http_get(s2.port, "/")
    assert json.loads(body)["greeting"] == "hello from cli"


def test_a_missing_file_and_a_missing_section(make_server, ini, tmp_path):
    rc, log, left = start_to_exit("--paste", str(tmp_path / "nope.ini"))
    assert rc != 0 and "'%s' not found" % (tmp_path / "nope.ini") in log, log
    assert not left
    rc, log, left = start_to_exit("--paste", str(ini) + "#absent", "--preload")
    assert rc != 0 and "absent" in log, log
    assert not left


def test_a_logging_section_is_not_applied_and_says_so(make_server, tmp_path):
    p = tmp_path / "logging.ini"
    p.write_text(INI + textwrap.dedent("""\

        [loggers]
        keys = root

        [handlers]
        keys = console

        [formatters]
        keys = plain

        [logger_root]
        handlers = console

        [handler_console]
        class = StreamHandler
        args = (sys.stderr,)
        formatter = plain

        [formatter_plain]
        format = %(message)s
    """))
    s = make_server("-w", "1", "--paste", str(p), "--paste-global", "who=x")
    status, _, _ = http_get(s.port, "/")
    assert status == 200
    assert "configures logging ([loggers]); cunicorn does not apply it" in s.log()
    assert "Traceback" not in s.log()
