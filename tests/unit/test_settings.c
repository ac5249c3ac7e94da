/*
 * test_settings.c — unit tests of src/settings*.c: every command-line form,
 * GUNICORN_CMD_ARGS splitting, defaults and the environment variables
 * they read, the Python config file (values, hooks, errors), precedence
 * (file < env < command line), validation one-liners, settings_finalize,
 * --print-config's format and the Python view hooks see; gunicorn's
 * settings cunicorn does not implement (parsed as gunicorn's, refused or
 * warned about once their final value differs from gunicorn's default).
 *
 * Starts the embedded interpreter (Py_InitializeEx(0)) for the config
 * file tests; works in a private temporary directory.  Error lines are
 * captured by pointing fd 2 at a file.  Prints "N passed, M failed" and
 * exits non-zero on any failure.  Meant to run under ASan+UBSan.
 */
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "settings.h"
#include "check.h"

/*
 * LeakSanitizer: the interpreter keeps some allocations past
 * Py_FinalizeEx(); leaks whose stack is inside libpython are Python's.
 * Our own strings and lists (xmalloc from settings.c) are still checked.
 */
const char *__lsan_default_suppressions(void);
const char *
__lsan_default_suppressions(void)
{
	return "leak:libpython3\n";
}

static char tmpdir[256];

/* ---- capturing stderr ---- */

static int saved_stderr = -1;
static char captured[8192];

static void
capture_begin(void)
{
	char path[300];
	int fd;

	fflush(stderr);
	snprintf(path, sizeof(path), "%s/stderr.txt", tmpdir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd == -1)
		abort();
	saved_stderr = dup(2);
	dup2(fd, 2);
	close(fd);
}

static const char *
capture_end(void)
{
	char path[300];
	ssize_t n;
	int fd;

	fflush(stderr);
	dup2(saved_stderr, 2);
	close(saved_stderr);
	snprintf(path, sizeof(path), "%s/stderr.txt", tmpdir);
	fd = open(path, O_RDONLY);
	n = fd == -1 ? 0 : read(fd, captured, sizeof(captured) - 1);
	if (fd != -1)
		close(fd);
	captured[n > 0 ? n : 0] = '\0';
	return captured;
}

static int
count_lines(const char *s)
{
	int n = 0;

	for (; *s; s++)
		n += (*s == '\n');
	return n;
}

/* One "Error: ..." line mentioning `needle`. */
static int
one_error_line(const char *out, const char *needle)
{
	int ok = strncmp(out, "Error: ", 7) == 0 && count_lines(out) == 1 &&
	    strstr(out, needle) != NULL;
	if (!ok)
		fprintf(stderr, "  (stderr was: %s; wanted '%s')\n", out, needle);
	return ok;
}

/* ---- helpers ---- */

/* parse_args on the NULL-terminated list in ap (argv[0] added). */
static int
parse_va(struct settings *s, va_list ap)
{
	char *argv[128];
	int argc = 0;

	argv[argc++] = "cunicorn";
	for (char *a; (a = va_arg(ap, char *)) != NULL;)
		argv[argc++] = a;
	argv[argc] = NULL;
	return settings_parse_args(s, argc, argv);
}

/* parse_args on a NULL-terminated list (argv[0] added). */
static int
parse(struct settings *s, ...)
{
	va_list ap;
	int rc;

	va_start(ap, s);
	rc = parse_va(s, ap);
	va_end(ap);
	return rc;
}

/* Parse argv expecting a failure; returns the captured stderr. */
static const char *
parse_fails(int *rc, ...)
{
	struct settings s;
	va_list ap;

	settings_defaults(&s);
	capture_begin();
	va_start(ap, rc);
	*rc = parse_va(&s, ap);
	va_end(ap);
	capture_end();
	settings_free(&s);
	return captured;
}

/*
 * Parse the NULL-terminated args (which must parse), then finalize: true
 * if finalize fails with one "Error: " line containing `error` (else the
 * stderr seen is printed).
 */
static int
finalize_fails(const char *error, ...)
{
	struct settings s;
	va_list ap;
	int parsed, rc;

	settings_defaults(&s);
	va_start(ap, error);
	parsed = parse_va(&s, ap);
	va_end(ap);
	capture_begin();
	rc = settings_finalize(&s);
	capture_end();
	settings_free(&s);
	if (parsed != 0 || rc != -1) {
		fprintf(stderr, "  (parse %d, finalize %d; wanted 0, -1)\n", parsed, rc);
		return 0;
	}
	return one_error_line(captured, error);
}

static void
write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	if (f == NULL)
		abort();
	fputs(text, f);
	fclose(f);
}

static char *
conf_path(const char *name)
{
	static char path[512];

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	return path;
}

/* Load a config file with this text; returns rc, stderr in captured. */
static int
load_text(struct settings *s, const char *text)
{
	int rc;

	write_file(conf_path("conf.py"), text);
	capture_begin();
	rc = settings_load_file(s, conf_path("conf.py"));
	capture_end();
	return rc;
}

static char *
print_to_string(const struct settings *s)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	settings_print(s, f);
	fclose(f);
	return buf;
}

/* The value printed for `name` (points into text, up to end of line). */
static int
printed_is(const char *text, const char *name, const char *value)
{
	char want[1024];
	const char *p = text;
	size_t nl = strlen(name);

	snprintf(want, sizeof(want), " = %s\n", value);
	while (p != NULL && *p) {
		if (strncmp(p, name, nl) == 0 && p[nl] == ' ') {
			const char *eq = strstr(p, " = ");
			const char *end = strchr(p, '\n');
			if (eq != NULL && end != NULL &&
			    strncmp(eq, want, (size_t)(end - eq + 1)) == 0 &&
			    strlen(want) == (size_t)(end - eq + 1))
				return 1;
			fprintf(stderr, "  (printed: %.*s)\n",
			    end ? (int)(end - p) : 80, p);
			return 0;
		}
		p = strchr(p, '\n');
		if (p != NULL)
			p++;
	}
	fprintf(stderr, "  (%s not printed)\n", name);
	return 0;
}

/* ---- tests ---- */

static void
test_defaults(void)
{
	struct settings s;
	char *cwd = getcwd(NULL, 0);

	unsetenv("PORT");
	unsetenv("WEB_CONCURRENCY");
	unsetenv("FORWARDED_ALLOW_IPS");
	unsetenv("VIRTUAL_ENV");
	settings_defaults(&s);
	CHECK(s.bind.len == 1);
	CHECK_STR(s.bind.items[0], "127.0.0.1:8000");
	CHECK(s.workers == 1);
	CHECK_STR(s.worker_class, "sync");
	CHECK(s.threads == 1);
	CHECK(s.worker_connections == 1000);
	CHECK(s.backlog == 2048);
	CHECK(s.timeout == 30);
	CHECK(s.graceful_timeout == 30);
	CHECK(s.keepalive == 2);
	CHECK(s.max_requests == 0 && s.max_requests_jitter == 0);
	CHECK(s.limit_request_line == 4094);
	CHECK(s.limit_request_fields == 100);
	CHECK(s.limit_request_field_size == 8190);
	CHECK(s.loglevel == LOG_INFO);
	CHECK_STR(s.errorlog, "-");
	CHECK(s.accesslog == NULL);
	CHECK_STR(s.access_log_format,
	    "%(h)s %(l)s %(u)s %(t)s \"%(r)s\" %(s)s %(b)s \"%(f)s\" \"%(a)s\"");
	CHECK(s.forwarded_allow_ips.len == 2);
	CHECK_STR(s.forwarded_allow_ips.items[0], "127.0.0.1");
	CHECK_STR(s.forwarded_allow_ips.items[1], "::1");
	CHECK(s.secure_scheme_names.len == 3 && s.secure_scheme_values.len == 3);
	CHECK_STR(s.secure_scheme_names.items[1], "X-FORWARDED-PROTO");
	CHECK_STR(s.secure_scheme_values.items[1], "https");
	CHECK(s.dirty_timeout == 300 && s.dirty_graceful_timeout == 30);
	CHECK(s.dirty_threads == 1 && s.dirty_workers == 0);
	CHECK(s.dirty_apps.len == 0 && s.raw_env.len == 0);
	CHECK(s.pythonpath.len == 0);
	CHECK(s.worker_tmp_dir == NULL && s.pidfile == NULL);
	CHECK(s.proc_name == NULL && s.user == NULL && s.group == NULL);
	CHECK(s.umask == 0);
	CHECK(s.uid == geteuid() && s.gid == getegid());
	CHECK_STR(s.chdir, cwd);
	CHECK(s.virtualenv == NULL && s.config == NULL);
	CHECK(!s.preload_app && !s.daemon && !s.reuse_port && !s.capture_output);
	CHECK(!s.check_config && !s.print_config);
	CHECK(!s.reload && s.reload_extra_files.len == 0);
	CHECK_STR(s.reload_engine, "auto");
	for (int i = 0; i < HOOK_COUNT; i++)
		CHECK(s.hooks[i] == NULL);
	settings_free(&s);

	setenv("PORT", "9123", 1);
	setenv("WEB_CONCURRENCY", "5", 1);
	setenv("FORWARDED_ALLOW_IPS", "*", 1);
	setenv("VIRTUAL_ENV", "/opt/venv", 1);
	settings_defaults(&s);
	CHECK(s.bind.len == 1);
	CHECK_STR(s.bind.items[0], "0.0.0.0:9123");
	CHECK(s.workers == 5);
	CHECK(s.forwarded_allow_ips.len == 1);
	CHECK_STR(s.forwarded_allow_ips.items[0], "*");
	CHECK_STR(s.virtualenv, "/opt/venv");
	/* the command line still wins over $PORT / $WEB_CONCURRENCY */
	CHECK(parse(&s, "-b", "unix:/tmp/x.sock", "-w", "2", NULL) == 0);
	CHECK(s.bind.len == 1);
	CHECK_STR(s.bind.items[0], "unix:/tmp/x.sock");
	CHECK(s.workers == 2);
	settings_free(&s);

	/* a broken WEB_CONCURRENCY is not fatal: warned, default kept */
	setenv("WEB_CONCURRENCY", "lots", 1);
	capture_begin();
	settings_defaults(&s);
	capture_end();
	CHECK(s.workers == 1);
	CHECK(strstr(captured, "WEB_CONCURRENCY") != NULL);
	settings_free(&s);

	unsetenv("PORT");
	unsetenv("WEB_CONCURRENCY");
	unsetenv("FORWARDED_ALLOW_IPS");
	unsetenv("VIRTUAL_ENV");
	free(cwd);
}

static void
test_cli_forms(void)
{
	struct settings s;
	char *tmpreal = realpath(tmpdir, NULL);

	/* -wN, -w N, -w=N, --workers=N, --workers N */
	const char *forms[][3] = {
		{ "-w7", NULL }, { "-w", "7" }, { "-w=7", NULL },
		{ "--workers=7", NULL }, { "--workers", "7" },
	};
	for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
		settings_defaults(&s);
		CHECK(parse(&s, forms[i][0], forms[i][1], NULL) == 0);
		CHECK(s.workers == 7);
		settings_free(&s);
	}

	settings_defaults(&s);
	CHECK(parse(&s,
	    "-b", "127.0.0.1:1", "--bind=[::1]:2", "-b", "unix:/tmp/s",
	    "-k", "sync", "--threads", "1", "--worker-connections", "50",
	    "--backlog", "64", "-t", "9", "--graceful-timeout", "8",
	    "--keep-alive", "7", "--max-requests", "1000",
	    "--max-requests-jitter", "50", "--limit-request-line", "0",
	    "--limit-request-fields", "20", "--limit-request-field_size", "99",
	    "--preload", "--chdir", tmpdir, "-D", "-e", "A=1", "--env=B=x=y",
	    "-p", "/tmp/p.pid", "-m", "0027", "-u", "nobody", "-g", "0",
	    "--worker-tmp-dir", "/dev/shm", "--pythonpath", "a, b,,c",
	    "-n", "myname", "--forwarded-allow-ips", "10.0.0.1,10.0.0.2",
	    "--log-level", "DEBUG", "--log-file", "/tmp/err.log",
	    "--access-logfile", "-", "--access-logformat", "%(h)s %(r)s",
	    "--capture-output", "--reuse-port", "--check-config",
	    "--print-config", "-c", "conf.py", "--virtualenv", "/venv",
	    "--dirty-app", "m.ml:Model", "--dirty-app", "m.img:Img:2",
	    "--dirty-workers", "3", "--dirty-timeout", "11",
	    "--dirty-threads", "2", "--dirty-graceful-timeout", "4",
	    "app.wsgi:application", NULL) == 0);
	CHECK(s.bind.len == 3);
	CHECK_STR(s.bind.items[1], "[::1]:2");
	CHECK_STR(s.bind.items[2], "unix:/tmp/s");
	CHECK(s.worker_connections == 50 && s.backlog == 64);
	CHECK(s.timeout == 9 && s.graceful_timeout == 8 && s.keepalive == 7);
	CHECK(s.max_requests == 1000 && s.max_requests_jitter == 50);
	CHECK(s.limit_request_line == 0 && s.limit_request_fields == 20);
	CHECK(s.limit_request_field_size == 99);
	CHECK(s.preload_app && s.daemon && s.capture_output && s.reuse_port);
	CHECK(s.check_config && s.print_config);
	CHECK_STR(s.chdir, tmpreal);
	CHECK(s.raw_env.len == 2);
	CHECK_STR(s.raw_env.items[1], "B=x=y");
	CHECK_STR(s.pidfile, "/tmp/p.pid");
	CHECK(s.umask == 027);
	CHECK_STR(s.user, "nobody");
	CHECK_STR(s.group, "0");
	CHECK_STR(s.worker_tmp_dir, "/dev/shm");
	CHECK(s.pythonpath.len == 3);
	CHECK_STR(s.pythonpath.items[1], "b");
	CHECK_STR(s.pythonpath.items[2], "c");
	CHECK_STR(s.proc_name, "myname");
	CHECK(s.forwarded_allow_ips.len == 2);
	CHECK(s.loglevel == LOG_DEBUG);
	CHECK_STR(s.errorlog, "/tmp/err.log");
	CHECK_STR(s.accesslog, "-");
	CHECK_STR(s.access_log_format, "%(h)s %(r)s");
	CHECK_STR(s.config, "conf.py");
	CHECK_STR(s.virtualenv, "/venv");
	CHECK(s.dirty_apps.len == 2);
	CHECK_STR(s.dirty_apps.items[1], "m.img:Img:2");
	CHECK(s.dirty_workers == 3 && s.dirty_timeout == 11);
	CHECK(s.dirty_threads == 2 && s.dirty_graceful_timeout == 4);
	CHECK_STR(s.app_uri, "app.wsgi:application");
	CHECK(settings_finalize(&s) == 0);
	CHECK(s.uid == 65534 && s.gid == 0);
	CHECK_STR(s.default_proc_name, "app.wsgi:application");
	CHECK_STR(settings_proc_name(&s), "myname");
	settings_free(&s);

	/* umask spellings (gunicorn's auto_int) */
	const char *umasks[][2] = {
		{ "0022", "18" }, { "0o22", "18" }, { "0x12", "18" },
		{ "18", "18" }, { "0", "0" }, { "077", "63" },
	};
	for (size_t i = 0; i < sizeof(umasks) / sizeof(umasks[0]); i++) {
		settings_defaults(&s);
		CHECK(parse(&s, "-m", umasks[i][0], NULL) == 0);
		CHECK((int)s.umask == atoi(umasks[i][1]));
		settings_free(&s);
	}

	/* "-" is a value, "--" ends the options, a negative number is a
	 * value (rejected by the validator, not as a missing argument) */
	settings_defaults(&s);
	CHECK(parse(&s, "--error-logfile", "-", "--", "-weird:app", NULL) == 0);
	CHECK_STR(s.errorlog, "-");
	CHECK_STR(s.app_uri, "-weird:app");
	settings_free(&s);

	/* short flags grouped, the last one taking the rest as value */
	settings_defaults(&s);
	CHECK(parse(&s, "-Dw4", "-Db=127.0.0.1:9", "-Dt", "5", NULL) == 0);
	CHECK(s.daemon && s.workers == 4 && s.timeout == 5);
	CHECK(s.bind.len == 1);
	CHECK_STR(s.bind.items[0], "127.0.0.1:9");
	settings_free(&s);
	{
		int rc;
		const char *out = parse_fails(&rc, "-DZ", NULL);
		CHECK(rc == -1 && one_error_line(out,
		    "unrecognized arguments: -DZ"));
	}

	/* a unique prefix of a long option, as argparse allows */
	settings_defaults(&s);
	CHECK(parse(&s, "--graceful", "3", "--max-requests-j=4", NULL) == 0);
	CHECK(s.graceful_timeout == 3 && s.max_requests_jitter == 4);
	settings_free(&s);

	/* the alias of --limit-request-field_size */
	settings_defaults(&s);
	CHECK(parse(&s, "-D", "--limit-request-field-size", "5", NULL) == 0);
	CHECK(s.daemon && s.limit_request_field_size == 5);
	settings_free(&s);

	free(tmpreal);
}

/* Command lines refused with one "Error: " line containing `error`. */
static const struct {
	const char *args[3];	/* NULL-terminated, argv[0] left out */
	const char *error;
} cli_errors[] = {
	{ { "--foo", "app:app" }, "unrecognized arguments: --foo" },
	{ { "-Z" }, "unrecognized arguments: -Z" },
	{ { "-w", "abc" }, "Invalid value for workers: abc" },
	{ { "-w", "-1" }, "Invalid value for workers: -1" },
	{ { "-w", "0" }, "workers" },
	{ { "--timeout", "99999999999" }, "timeout" },
	{ { "app:app", "-w" }, "-w/--workers: expected one argument" },
	{ { "-b", "--preload" }, "-b/--bind: expected one argument" },
	{ { "--preload=yes" }, "--preload" },
	{ { "a:app", "b:app" }, "unrecognized arguments: b:app" },
	{ { "--log-level", "loud" }, "Invalid value for loglevel: loud" },
	{ { "-m", "9z" }, "Invalid value for umask" },
	{ { "-m", "0999" }, "umask" },
	{ { "-m", "01777" }, "umask" },
	{ { "--chdir", "/nonexistent/dir" }, "can't chdir" },
	{ { "-b", "127.0.0.1:http" }, "Invalid value for bind" },
	{ { "-b", "127.0.0.1:70000" }, "bind" },
	{ { "-b", "fd://x" }, "bind" },
	{ { "--dirty-app", "nomodule" }, "Invalid value for dirty_apps" },
	{ { "--dirty-app", "m:C:0" }, "dirty_apps" },
	{ { "--dirty-app", "m:C:x" }, "dirty_apps" },
	{ { "--dirty-workers", "-2" }, "dirty_workers" },
	{ { "-e", "NOEQUALS" }, "Invalid value for raw_env" },
	{ { "--w", "3" }, "ambiguous option: --w" },
	{ { "--threads", "0" }, "threads" },
	/* syslog: gunicorn's address forms and facility names */
	{ { "--log-syslog-facility", "loud" },
	  "Invalid value for syslog_facility: loud (unknown facility name)" },
	{ { "--log-syslog-to", "ftp://h:514" }, "not a syslog address" },
	{ { "--log-syslog-to", "localhost:514" }, "not a syslog address" },
	{ { "--log-syslog-to", "udp://h:port" }, "syslog_addr" },
	{ { "--log-syslog-to", "udp://h:0" }, "syslog_addr" },
	{ { "--log-syslog-to", "udp://h:65536" }, "syslog_addr" },
	{ { "--log-syslog-to", "tcp://h:" }, "syslog_addr" },
	{ { "--log-syslog-to", "udp://[::1:514" }, "syslog_addr" },
	{ { "--log-syslog-to", "udp://[::1]514" }, "syslog_addr" },
	{ { "--log-syslog-to", "unix://" }, "syslog_addr" },
	{ { "--log-syslog-to", "unix://#dgram" }, "syslog_addr" },
};

/* gunicorn's syslog settings: its address forms taken as they are. */
static void
test_syslog_forms(void)
{
	struct settings s;
	const char *addrs[] = {
		"udp://localhost:514", "udp://", "udp://LOGHOST", "udp://h:1",
		"udp://h:65535", "tcp://127.0.0.1:601", "udp://[::1]",
		"udp://[::1]:514", "unix:///dev/log", "unix:///dev/log#dgram",
		"unix:///run/x.sock#stream",
	};

	settings_defaults(&s);
	CHECK(s.syslog == 0 && s.disable_redirect_access_to_syslog == 0);
	CHECK_STR(s.syslog_addr, "udp://localhost:514");
	CHECK_STR(s.syslog_facility, "user");
	CHECK(s.syslog_prefix == NULL);
	CHECK(parse(&s, "--log-syslog", "--log-syslog-to", "unix:///dev/log",
	    "--log-syslog-prefix", "web", "--log-syslog-facility", "local3",
	    "--disable-redirect-access-to-syslog", "a:b", NULL) == 0);
	CHECK(s.syslog == 1 && s.disable_redirect_access_to_syslog == 1);
	CHECK_STR(s.syslog_addr, "unix:///dev/log");
	CHECK_STR(s.syslog_prefix, "web");
	CHECK_STR(s.syslog_facility, "local3");
	settings_free(&s);
	for (size_t i = 0; i < sizeof(addrs) / sizeof(addrs[0]); i++) {
		settings_defaults(&s);
		CHECK_MSG(parse(&s, "--log-syslog-to", addrs[i], "a:b", NULL) == 0,
		    "%s", addrs[i]);
		settings_free(&s);
	}
}

static void
test_cli_errors(void)
{
	for (size_t i = 0; i < sizeof(cli_errors) / sizeof(cli_errors[0]); i++) {
		const char *const *a = cli_errors[i].args;
		int rc;
		const char *out = parse_fails(&rc, a[0], a[1], NULL);

		CHECK_MSG(rc == -1 && one_error_line(out, cli_errors[i].error),
		    "cli_errors[%zu] (%s %s): rc %d", i, a[0],
		    a[1] ? a[1] : "", rc);
	}
}

static void
test_env(void)
{
	struct settings s;

	settings_defaults(&s);
	CHECK(settings_parse_env(&s,
	    "  --access-logformat '%(h)s \"%(r)s\"'  -w 3 --name \"my app\" "
	    "-e A=b\\ c -e 'Q=' --preload --pythonpath=\"x,y\" ignored:app")
	    == 0);
	CHECK_STR(s.access_log_format, "%(h)s \"%(r)s\"");
	CHECK(s.workers == 3);
	CHECK_STR(s.proc_name, "my app");
	CHECK(s.raw_env.len == 2);
	CHECK_STR(s.raw_env.items[0], "A=b c");
	CHECK_STR(s.raw_env.items[1], "Q=");
	CHECK(s.preload_app);
	CHECK(s.pythonpath.len == 2);
	CHECK(s.app_uri == NULL);	/* positional words in env are ignored */
	settings_free(&s);

	/* env over defaults, command line over env (lists replaced) */
	settings_defaults(&s);
	CHECK(parse(&s, "-w", "2", "-b", "127.0.0.1:3", NULL) == 0);
	CHECK(settings_parse_env(&s, "-w 5 -t 44 -b 127.0.0.1:1 -b 127.0.0.1:2")
	    == 0);
	CHECK(s.workers == 2);
	CHECK(s.timeout == 44);
	CHECK(s.bind.len == 1);
	CHECK_STR(s.bind.items[0], "127.0.0.1:3");
	settings_free(&s);

	settings_defaults(&s);
	capture_begin();
	CHECK(settings_parse_env(&s, "-w '3") == -1);
	capture_end();
	CHECK(one_error_line(captured, "No closing quotation"));
	capture_begin();
	CHECK(settings_parse_env(&s, "--bogus") == -1);
	capture_end();
	CHECK(one_error_line(captured, "unrecognized arguments: --bogus"));
	capture_begin();
	CHECK(settings_parse_env(&s, "--workers=many") == -1);
	capture_end();
	CHECK(one_error_line(captured, "Invalid value for workers: many"));
	settings_free(&s);
}

/* Odd GUNICORN_CMD_ARGS never crash: each either parses or fails with
 * one line; the expected outcome is listed. */
static void
test_env_edges(void)
{
	static const struct {
		const char *in;
		int rc;
	} cases[] = {
		{ "", 0 }, { "   \t ", 0 }, { "\\", -1 }, { "'", -1 },
		{ "\"\\", -1 }, { "\"\\\"\"", 0 }, { "-", 0 }, { "--", 0 },
		{ "--=x", -1 }, { "-=", -1 }, { "-w", -1 }, { "''", 0 },
		{ "--name ''", 0 }, { "--bind", -1 }, { "-Dw", -1 },
		{ "--workers= 3", -1 }, { "-- --workers 3", 0 },
		{ "--name=\"a b\"'c d'e\\ f", 0 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct settings s;
		int rc;

		settings_defaults(&s);
		capture_begin();
		rc = settings_parse_env(&s, cases[i].in);
		capture_end();
		CHECK(rc == cases[i].rc);
		if (rc != cases[i].rc)
			fprintf(stderr, "  (input <%s>: %s)\n", cases[i].in, captured);
		CHECK(rc == 0 ? captured[0] == '\0' :
		    one_error_line(captured, ""));
		if (i == sizeof(cases) / sizeof(cases[0]) - 1)
			CHECK_STR(s.proc_name, "a bc de f");
		settings_free(&s);
	}
}

static void
test_file_precedence(void)
{
	struct settings s;

	unsetenv("PORT");
	settings_defaults(&s);
	CHECK(parse(&s, "-w", "2", "--timeout", "33", "-b", "127.0.0.1:3",
	    "app:app", NULL) == 0);
	CHECK(settings_parse_env(&s, "--name envname --timeout 22") == 0);
	CHECK(load_text(&s,
	    "import os\n"
	    "workers = 4\n"
	    "timeout = 11\n"
	    "proc_name = 'file'\n"
	    "loglevel = 'warning'\n"
	    "bind = ['127.0.0.1:1', '127.0.0.1:2']\n"
	    "raw_env = ['A=1', 'B=2']\n"
	    "dirty_apps = 'mod:Cls:2'\n"
	    "dirty_workers = '2'\n"
	    "preload_app = True\n"
	    "daemon = 'false'\n"
	    "umask = 0o22\n"
	    "user = 65534\n"
	    "pythonpath = 'x,y'\n"
	    "forwarded_allow_ips = ['1.2.3.4', ' 5.6.7.8 ']\n"
	    "secure_scheme_headers = {'x-proto': 'https'}\n"
	    "accesslog = None\n"
	    "wsgi_app = 'other:app'\n"
	    "some_unknown_name = object()\n"
	    "config = 'ignored.py'\n"
	    "def on_starting(server):\n"
	    "    pass\n"
	    "def post_request(worker, req):\n"
	    "    pass\n"
	    "def nworkers_changed(server, new, old=None):\n"
	    "    pass\n"
	    "worker_int = lambda *args: None\n"
	    "when_ready = 'os.path.exists'\n") == 0);
	CHECK(captured[0] == '\0');
	if (captured[0] != '\0')
		fprintf(stderr, "  (stderr was: %s)\n", captured);
	CHECK(s.workers == 2);			/* command line */
	CHECK(s.timeout == 33);			/* command line over env */
	CHECK_STR(s.proc_name, "envname");	/* env over file */
	CHECK(s.loglevel == LOG_WARNING);	/* file */
	CHECK(s.bind.len == 1);			/* command-line list replaces */
	CHECK_STR(s.bind.items[0], "127.0.0.1:3");
	CHECK(s.raw_env.len == 2);
	CHECK_STR(s.raw_env.items[1], "B=2");
	CHECK(s.dirty_apps.len == 1);
	CHECK_STR(s.dirty_apps.items[0], "mod:Cls:2");
	CHECK(s.dirty_workers == 2);
	CHECK(s.preload_app && !s.daemon);
	CHECK(s.umask == 022);
	CHECK_STR(s.user, "65534");
	CHECK(s.pythonpath.len == 2);
	CHECK(s.forwarded_allow_ips.len == 2);
	CHECK_STR(s.forwarded_allow_ips.items[1], "5.6.7.8");
	CHECK(s.secure_scheme_names.len == 1);
	CHECK_STR(s.secure_scheme_names.items[0], "X-PROTO");
	CHECK_STR(s.secure_scheme_values.items[0], "https");
	CHECK(s.accesslog == NULL);
	CHECK_STR(s.wsgi_app, "other:app");
	CHECK_STR(s.config, conf_path("conf.py"));
	CHECK(s.hooks[HOOK_ON_STARTING] != NULL);
	CHECK(s.hooks[HOOK_POST_REQUEST] != NULL);
	CHECK(s.hooks[HOOK_NWORKERS_CHANGED] != NULL);
	CHECK(s.hooks[HOOK_WORKER_INT] != NULL);
	CHECK(s.hooks[HOOK_WHEN_READY] != NULL);
	CHECK(s.hooks[HOOK_PRE_FORK] == NULL);
	/* a 2-argument post_request is adapted to gunicorn's 4 arguments */
	{
		PyObject *r = PyObject_CallFunction(
		    (PyObject *)s.hooks[HOOK_POST_REQUEST], "iiii", 1, 2, 3, 4);
		CHECK(r == Py_None);
		Py_XDECREF(r);
		PyErr_Clear();
	}
	CHECK(settings_finalize(&s) == 0);
	CHECK_STR(s.app_uri, "app:app");	/* positional over wsgi_app */
	CHECK(s.uid == 65534);
	settings_free(&s);

	/* without a command line the file's values stand; wsgi_app is used */
	settings_defaults(&s);
	CHECK(parse(&s, NULL) == 0);
	CHECK(load_text(&s, "workers = 6\nbind = '127.0.0.1:5'\n"
	    "wsgi_app = 'pkg.mod:app'\nthreads = 2\nworker_class = 'gevent'\n")
	    == 0);
	CHECK(s.workers == 6);
	CHECK(s.bind.len == 1);
	CHECK_STR(s.bind.items[0], "127.0.0.1:5");
	capture_begin();
	CHECK(settings_finalize(&s) == 0);
	capture_end();
	CHECK_STR(s.app_uri, "pkg.mod:app");
	/* gevent (many connections per worker) runs gthread, with a warning */
	CHECK_STR(s.worker_class, "gthread");
	CHECK(strstr(captured, "worker class gevent not available; "
	    "running gthread workers") != NULL);
	CHECK(count_lines(captured) == 1);
	settings_free(&s);

	/* "file:" prefix and a module ("python:") */
	settings_defaults(&s);
	write_file(conf_path("cfgmod_test.py"), "workers = 9\n");
	{
		char loc[600];
		snprintf(loc, sizeof(loc), "file:%s", conf_path("cfgmod_test.py"));
		CHECK(settings_load_file(&s, loc) == 0);
		CHECK(s.workers == 9);
		PyRun_SimpleString("import sys\n");
		{
			char code[700];
			snprintf(code, sizeof(code), "sys.path.insert(0, %s%s%s)\n",
			    "'", tmpdir, "'");
			PyRun_SimpleString(code);
		}
		write_file(conf_path("cfgmod_test2.py"), "workers = 8\n");
		CHECK(settings_load_file(&s, "python:cfgmod_test2") == 0);
		CHECK(s.workers == 8);
	}
	settings_free(&s);
}

static void
test_file_errors(void)
{
	struct settings s;
	struct {
		const char *text;
		const char *needle;
	} cases[] = {
		{ "workers = 2\nbind = [\n", "SyntaxError" },
		{ "workers = 2\nx = 1\nraise ValueError('boom')\n",
		  "ValueError: boom (line 3)" },
		{ "def f():\n    return 1 / 0\nf()\n",
		  "ZeroDivisionError: division by zero (line 2)" },
		{ "import no_such_module_xyz\n",
		  "ModuleNotFoundError: No module named 'no_such_module_xyz' (line 1)" },
		{ "import sys\nsys.exit(3)\n", "SystemExit: 3 (line 2)" },
		{ "workers = 'abc'\n", "Invalid value for workers: abc" },
		{ "workers = 2.5\n", "Invalid value for workers: 2.5" },
		{ "workers = -3\n", "Invalid value for workers: -3" },
		{ "timeout = None\n", "Invalid value for timeout: None" },
		{ "preload_app = 1\n", "Invalid value for preload_app: 1" },
		{ "bind = 5\n", "Invalid value for bind: 5" },
		{ "bind = ['127.0.0.1:1', 7]\n", "Invalid value for bind" },
		{ "raw_env = ['NOEQ']\n", "Invalid value for raw_env: NOEQ" },
		{ "loglevel = 'loud'\n", "Invalid value for loglevel: loud" },
		{ "umask = 'x'\n", "Invalid value for umask: x" },
		{ "proc_name = 3\n", "Invalid value for proc_name: 3" },
		{ "secure_scheme_headers = ['a']\n",
		  "Invalid value for secure_scheme_headers" },
		{ "chdir = '/nonexistent/x'\n", "can't chdir" },
		{ "on_starting = 5\n", "Invalid value for on_starting: 5 (not callable)" },
		{ "def when_ready(a, b):\n    pass\n",
		  "Invalid value for when_ready" },
		{ "def post_request(a):\n    pass\n",
		  "Invalid value for post_request" },
		{ "pre_fork = 'nomodule_xyz.f'\n", "Invalid value for pre_fork" },
		{ "dirty_apps = ['a:B:0']\n", "Invalid value for dirty_apps: a:B:0" },
		{ "bind = '\\udcff'\n", "Invalid value for bind" },
		{ "workers = '\\udcff'\n", "Invalid value for workers" },
		{ "bind = ['\\udcff']\n", "Invalid value for bind" },
		{ "secure_scheme_headers = {'A': 1}\n",
		  "Invalid value for secure_scheme_headers" },
		{ "syslog_facility = 'loud'\n", "Invalid value for syslog_facility" },
		{ "syslog_addr = 'udp//h'\n", "Invalid value for syslog_addr" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		settings_defaults(&s);
		CHECK(load_text(&s, cases[i].text) == -1);
		CHECK(one_error_line(captured, cases[i].needle));
		CHECK(!PyErr_Occurred());
		CHECK(s.workers == 1);	/* a bad value is not half-applied */
		settings_free(&s);
	}
	/* the syntax error names the file and the line */
	settings_defaults(&s);
	CHECK(load_text(&s, "workers = 2\nbind = [\n") == -1);
	CHECK(strstr(captured, "config file '") != NULL);
	CHECK(strstr(captured, "conf.py") != NULL);
	CHECK(strstr(captured, "(line 2)") != NULL);
	settings_free(&s);

	settings_defaults(&s);
	capture_begin();
	CHECK(settings_load_file(&s, conf_path("missing.py")) == -1);
	capture_end();
	CHECK(one_error_line(captured, "doesn't exist"));
	settings_free(&s);
}

static void
test_finalize(void)
{
	struct settings s;

	CHECK(finalize_fails("No application module specified.", NULL));
	CHECK(finalize_fails("No such user: 'no_such_user_xyz'",
	    "-u", "no_such_user_xyz", "a:b", NULL));
	CHECK(finalize_fails("No such group: 'no_such_group_xyz'",
	    "-g", "no_such_group_xyz", "a:b", NULL));

	settings_defaults(&s);
	CHECK(parse(&s, "-u", "nobody", "-g", "nogroup", "--threads", "4",
	    "--limit-request-line", "9000", "--limit-request-fields", "0",
	    "--print-config", "a:b", NULL) == 0);
	capture_begin();
	CHECK(settings_finalize(&s) == 0);
	capture_end();
	/* sync with --threads 4 is gthread, silently, as in gunicorn */
	CHECK_STR(s.worker_class, "gthread");
	CHECK(strstr(captured, "worker class") == NULL);
	CHECK(s.uid == 65534 && s.gid == 65534);
	CHECK(s.limit_request_line == 8190);
	CHECK(s.limit_request_fields == 32768);
	CHECK(!s.check_config);	/* printed as given, as gunicorn does */
	settings_free(&s);
}

static void
test_print(void)
{
	struct settings s;
	char *text, *prev = NULL;
	int width = -1, sorted = 1, aligned = 1;

	settings_defaults(&s);
	CHECK(parse(&s, "-w", "4", "-b", "127.0.0.1:1", "-b", "[::1]:2",
	    "-m", "0022", "--pythonpath", "a,b", "-n", "it's", "app:app",
	    NULL) == 0);
	CHECK(load_text(&s, "def on_starting(server):\n    pass\n") == 0);
	CHECK(settings_finalize(&s) == 0);
	text = print_to_string(&s);

	/* sorted, every "=" in the same column */
	for (char *line = text, *nl; (nl = strchr(line, '\n')) != NULL;
	    line = nl + 1) {
		char *eq = strstr(line, " = ");
		char name[64];
		if (eq == NULL || eq > nl) {
			aligned = 0;
			break;
		}
		if (width == -1)
			width = (int)(eq - line);
		aligned &= (int)(eq - line) == width;
		snprintf(name, sizeof(name), "%.*s", (int)strcspn(line, " "), line);
		if (prev != NULL && strcmp(prev, name) >= 0)
			sorted = 0;
		free(prev);
		prev = xstrdup(name);
	}
	free(prev);
	CHECK(sorted);
	CHECK(aligned);
	/* the longest name is one of gunicorn's that cunicorn does not
	 * implement: they are printed too, with gunicorn's default */
	CHECK(width == (int)strlen("permit_unconventional_http_version"));
	CHECK(printed_is(text, "syslog_prefix", "None"));
	CHECK(printed_is(text, "spew", "False"));
	CHECK(printed_is(text, "logconfig_dict", "{}"));
	CHECK(printed_is(text, "raw_paste_global_conf", "[]"));
	CHECK(printed_is(text, "forwarder_headers", "['SCRIPT_NAME', 'PATH_INFO']"));
	CHECK(printed_is(text, "control_socket_mode", "384"));
	CHECK(printed_is(text, "cert_reqs", "0"));
	CHECK(printed_is(text, "syslog_addr", "udp://localhost:514"));
	CHECK(printed_is(text, "workers", "4"));
	CHECK(printed_is(text, "bind", "['127.0.0.1:1', '[::1]:2']"));
	CHECK(printed_is(text, "umask", "18"));
	CHECK(printed_is(text, "pythonpath", "a,b"));
	CHECK(printed_is(text, "proc_name", "it's"));
	CHECK(printed_is(text, "default_proc_name", "app:app"));
	CHECK(printed_is(text, "accesslog", "None"));
	CHECK(printed_is(text, "loglevel", "info"));
	CHECK(printed_is(text, "preload_app", "False"));
	CHECK(printed_is(text, "raw_env", "[]"));
	CHECK(printed_is(text, "forwarded_allow_ips", "['127.0.0.1', '::1']"));
	CHECK(printed_is(text, "secure_scheme_headers",
	    "{'X-FORWARDED-PROTOCOL': 'ssl', 'X-FORWARDED-PROTO': 'https', "
	    "'X-FORWARDED-SSL': 'on'}"));
	CHECK(printed_is(text, "access_log_format",
	    "%(h)s %(l)s %(u)s %(t)s \"%(r)s\" %(s)s %(b)s \"%(f)s\" \"%(a)s\""));
	CHECK(printed_is(text, "on_starting", "<on_starting()>"));
	CHECK(printed_is(text, "when_ready", "<WhenReady.when_ready()>"));
	CHECK(printed_is(text, "dirty_timeout", "300"));
	CHECK(printed_is(text, "config", conf_path("conf.py")));
	CHECK(strstr(text, "\nhelp ") == NULL && strstr(text, "\nversion ") == NULL);
	free(text);

	/* the same rows for the debug dump: "  name: value", no last newline */
	text = settings_describe(&s);
	CHECK(strncmp(text, "  access_log_format: %(h)s", 26) == 0);
	CHECK(strstr(text, "\n  workers: 4\n") != NULL);
	CHECK(strstr(text, "\n  syslog_prefix: None\n") != NULL);
	CHECK(strstr(text, " = ") == NULL);
	CHECK(text[strlen(text) - 1] != '\n');
	free(text);

	/* Python's repr of awkward strings in lists */
	settings_free(&s);
	settings_defaults(&s);
	CHECK(parse(&s, "-e", "A=it's", "-e", "B=\"q\"'", "-e", "C=t\tb\\",
	    NULL) == 0);
	text = print_to_string(&s);
	CHECK(printed_is(text, "config", "./gunicorn.conf.py"));
	CHECK(printed_is(text, "raw_env",
	    "[\"A=it's\", 'B=\"q\"\\'', 'C=t\\tb\\\\']"));
	free(text);
	settings_free(&s);
}

/*
 * Run `code`, Python assert statements, with `cfg` bound to
 * settings_to_python(s) and `a` to the string a (unless NULL): true if
 * every assertion held, else false with the traceback printed.
 */
static int
python_asserts(struct settings *s, const char *a, const char *code)
{
	PyObject *cfg, *g, *r;
	int ok;

	cfg = settings_to_python(s);
	if (cfg == NULL) {
		PyErr_Print();
		return 0;
	}
	g = PyDict_New();
	PyDict_SetItemString(g, "cfg", cfg);
	if (a != NULL) {
		r = PyUnicode_FromString(a);
		PyDict_SetItemString(g, "a", r);
		Py_XDECREF(r);
	}
	PyDict_SetItemString(g, "__builtins__", PyEval_GetBuiltins());
	r = PyRun_String(code, Py_file_input, g, g);
	ok = r != NULL;
	if (!ok)
		PyErr_Print();
	Py_XDECREF(r);
	Py_DECREF(g);
	Py_DECREF(cfg);
	return ok;
}

static void
test_to_python(void)
{
	struct settings s;

	settings_defaults(&s);
	CHECK(parse(&s, "-w", "3", "-e", "K=V", "--pythonpath", "p,q",
	    "app:app", NULL) == 0);
	CHECK(load_text(&s, "def on_starting(server):\n    return 42\n") == 0);
	CHECK(settings_finalize(&s) == 0);
	CHECK(python_asserts(&s, NULL,
	    "assert cfg.workers == 3, cfg.workers\n"
	    "assert cfg.bind == ['127.0.0.1:8000'], cfg.bind\n"
	    "assert cfg.proc_name == 'app:app', cfg.proc_name\n"
	    "assert cfg.default_proc_name == 'app:app'\n"
	    "assert cfg.env == {'K': 'V'}, cfg.env\n"
	    "assert cfg.raw_env == ['K=V']\n"
	    "assert cfg.pythonpath == 'p,q'\n"
	    "assert cfg.loglevel == 'info'\n"
	    "assert cfg.timeout == 30 and cfg.keepalive == 2\n"
	    "assert cfg.preload_app is False\n"
	    "assert cfg.accesslog is None and cfg.errorlog == '-'\n"
	    "assert cfg.secure_scheme_headers['X-FORWARDED-SSL'] == 'on'\n"
	    "assert cfg.forwarded_allow_ips == ['127.0.0.1', '::1']\n"
	    "assert cfg.on_starting(None) == 42\n"
	    "assert cfg.when_ready(None) is None\n"
	    "assert cfg.dirty_timeout == 300 and cfg.dirty_apps == []\n"
	    "assert isinstance(cfg.uid, int) and cfg.user == cfg.uid\n"
	    "assert cfg.worker_class_str == 'sync'\n"));
	settings_free(&s);
}

static void
test_default_config_path(void)
{
	char *old = getcwd(NULL, 0);
	char sub[300];

	snprintf(sub, sizeof(sub), "%s/cwdtest", tmpdir);
	mkdir(sub, 0700);
	CHECK(chdir(sub) == 0);
	CHECK(settings_default_config_path() == NULL);
	write_file("gunicorn.conf.py", "workers = 2\n");
	CHECK_STR(settings_default_config_path(), "gunicorn.conf.py");
	unlink("gunicorn.conf.py");
	CHECK(chdir(old) == 0);
	rmdir(sub);
	free(old);
}

/* The settings a reload keeps (the master's list), and only those. */
static void
test_restart_only(void)
{
	static const char *const kept[] = { "proc_name", "user", "group",
	    "dirty_apps", "dirty_workers", "dirty_threads" };

	for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++)
		CHECK(settings_restart_only(kept[i]));
	CHECK(!settings_restart_only("workers"));
	CHECK(!settings_restart_only("bind"));
	CHECK(!settings_restart_only("dirty_timeout"));
	CHECK(!settings_restart_only("help"));
	CHECK(!settings_restart_only("no_such_setting"));
}

/* A reload keeps the restart-only values (the ids from user and group
 * with them), names what it kept, and leaves every other setting new. */
static void
test_keep_restart_only(void)
{
	struct settings old, ns;
	char app[] = "mod:App", *apps[] = { app }, *names;

	settings_defaults(&old);
	settings_defaults(&ns);
	CHECK(settings_keep_restart_only(&ns, &old) == NULL);

	old.dirty_workers = 2;
	old.uid = 1234;
	ns.workers = 7;
	ns.dirty_threads = 4;
	free(ns.proc_name);
	ns.proc_name = xstrdup("renamed");
	strlist_assign(&ns.dirty_apps, &(struct strlist){ apps, 1 });
	names = settings_keep_restart_only(&ns, &old);
	CHECK(names != NULL && strcmp(names,
	    "dirty_apps, dirty_threads, dirty_workers, proc_name, user") == 0);
	CHECK(ns.dirty_workers == 2 && ns.dirty_threads == old.dirty_threads);
	CHECK(ns.dirty_apps.len == 0 && ns.uid == 1234);
	CHECK(ns.proc_name == NULL ? old.proc_name == NULL
	    : old.proc_name != NULL && strcmp(ns.proc_name, old.proc_name) == 0);
	CHECK(ns.workers == 7);
	free(names);
	CHECK(settings_keep_restart_only(&ns, &old) == NULL);
	settings_free(&ns);
	settings_free(&old);
}

/* settings_finalize() with stderr captured; returns its rc. */
static int
finalize_captured(struct settings *s)
{
	int rc;

	capture_begin();
	rc = settings_finalize(s);
	capture_end();
	return rc;
}

/* captured holds exactly one warning, for setting `name`. */
static int
warned_once(const char *name)
{
	char want[128];
	const char *hit;
	int ok;

	snprintf(want, sizeof(want), "[WARNING] Setting '%s' is not supported "
	    "by cunicorn; ignored\n", name);
	hit = strstr(captured, want);
	ok = hit != NULL && strstr(hit + 1, want) == NULL;
	if (!ok)
		fprintf(stderr, "  (stderr was: %s; wanted one '%s')\n",
		    captured, want);
	return ok;
}

static void
test_unsupported_cli(void)
{
	struct settings s;
	int rc;

	/* flags that take no value leave the app alone; values are taken */
	static const struct {
		const char *args[6];
		const char *warned;	/* NULL: nothing at all on stderr */
	} accepted[] = {
		{ { "--spew", "a:b" }, "spew" },
		{ { "--logger-class", "my.Logger", "a:b" }, "logger_class" },
		{ { "--logger-class=my.Logger", "a:b" }, "logger_class" },
		{ { "-R", "a:b" }, "enable_stdio_inheritance" },
		{ { "--enable-stdio-inheritance", "a:b" },
		  "enable_stdio_inheritance" },
		{ { "--control-socket-mode", "0660", "a:b" },
		  "control_socket_mode" },
		{ { "--tolerate-dangerous-framing", "a:b" },
		  "tolerate_dangerous_framing" },
		{ { "--http-protocols", "h2,h1", "a:b" }, "http_protocols" },
		/* gunicorn's defaults, however spelled: silent */
		{ { "--suppress-ragged-eofs", "a:b" }, NULL },
		{ { "--proxy-protocol", "off", "a:b" }, NULL },
		{ { "--proxy-protocol=off", "a:b" }, NULL },
		{ { "--ssl-version", "TLS", "--cert-reqs", "0", "a:b" }, NULL },
		{ { "--control-socket-mode", "0600", "a:b" }, NULL },
		{ { "--control-socket-mode", "0o600", "a:b" }, NULL },
		{ { "--forwarder-headers", " SCRIPT_NAME , PATH_INFO", "a:b" },
		  NULL },
		/* honoured: silent */
		{ { "--log-syslog-to", "udp://h:514", "--log-syslog", "a:b" }, NULL },
		{ { "--log-syslog-facility", "LOCAL7", "a:b" }, NULL },
		{ { "--header-map", "DROP", "--statsd-prefix=", "a:b" }, NULL },
		{ { "--certfile=", "a:b" }, NULL },
		/* cunicorn already does what they ask, or honours them */
		{ { "--no-control-socket", "--disable-redirect-access-to-syslog",
		    "a:b" }, NULL },
	};
	for (size_t i = 0; i < sizeof(accepted) / sizeof(accepted[0]); i++) {
		const char *const *a = accepted[i].args;
		settings_defaults(&s);
		CHECK(parse(&s, a[0], a[1], a[2], a[3], a[4], a[5]) == 0);
		CHECK_STR(s.app_uri, "a:b");
		CHECK(finalize_captured(&s) == 0);
		if (accepted[i].warned != NULL) {
			CHECK(warned_once(accepted[i].warned));
			CHECK(count_lines(captured) == 1);
		} else {
			CHECK(captured[0] == '\0');
			if (captured[0] != '\0')
				fprintf(stderr, "  (case %zu, stderr was: %s)\n",
				    i, captured);
		}
		settings_free(&s);
	}

	/* several at once: one line each, in the table's order; the reload
	 * settings among them are honoured, not warned about */
	settings_defaults(&s);
	CHECK(parse(&s, "-DR", "--spew", "--reload", "--log-syslog",
	    "--log-syslog-prefix", "h", "--reload-engine", "poll", "a:b",
	    NULL) == 0);
	CHECK(s.daemon == 1 && s.reload == 1);
	CHECK_STR(s.reload_engine, "poll");
	CHECK(finalize_captured(&s) == 0);
	CHECK(count_lines(captured) == 2);
	CHECK(warned_once("enable_stdio_inheritance") && warned_once("spew"));
	CHECK(strstr(captured, "'syslog") == NULL);	/* honoured */
	CHECK(strstr(captured, "'reload") == NULL);
	settings_free(&s);

	/* refused: one Error line naming the setting, whatever the source */
	static const struct {
		const char *args[4];
		const char *error;
	} refused[] = {
		{ { "--http2-cleartext", "prior-knowledge", "a:b" },
		  "Error: http2_cleartext: cleartext HTTP/2 is not supported "
		  "by cunicorn; it speaks HTTP/1.x only" },
		{ { "--http2-cleartext=upgrade", "a:b" }, "http2_cleartext:" },
		{ { "--http2-cleartext", "upgrade", "a:b" }, "http2_cleartext:" },
	};
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		const char *const *a = refused[i].args;
		settings_defaults(&s);
		CHECK(parse(&s, a[0], a[1], a[2], a[3]) == 0);
		CHECK_STR(s.app_uri, "a:b");
		CHECK(finalize_captured(&s) == -1);
		CHECK(one_error_line(captured, refused[i].error));
		settings_free(&s);
	}
	/* a refused setting wins over the warnings: only its line */
	settings_defaults(&s);
	CHECK(parse(&s, "--spew", "--http2-cleartext", "upgrade", "a:b",
	    NULL) == 0);
	CHECK(finalize_captured(&s) == -1);
	CHECK(one_error_line(captured, "http2_cleartext"));
	settings_free(&s);
	/* from GUNICORN_CMD_ARGS too */
	settings_defaults(&s);
	CHECK(parse(&s, "a:b", NULL) == 0);
	CHECK(settings_parse_env(&s, "--http2-cleartext upgrade --spew") == 0);
	CHECK(finalize_captured(&s) == -1);
	CHECK(one_error_line(captured, "http2_cleartext: cleartext"));
	settings_free(&s);

	/* parsing errors stay argparse's */
	CHECK(parse_fails(&rc, "--reload=yes", "a:b", NULL) != NULL && rc == -1);
	CHECK(one_error_line(captured, "argument --reload: ignored explicit "
	    "argument 'yes'"));
	parse_fails(&rc, "a:b", "--statsd-host", NULL);
	CHECK(rc == -1 && one_error_line(captured,
	    "argument --statsd-host: expected one argument"));
	parse_fails(&rc, "--enable-stdio-inheritance=1", "a:b", NULL);
	CHECK(rc == -1 && one_error_line(captured,
	    "argument -R/--enable-stdio-inheritance: ignored explicit"));
	/* prefixes: gunicorn's own flags make "--re" ambiguous */
	parse_fails(&rc, "--re", "a:b", NULL);
	CHECK(rc == -1 && one_error_line(captured, "ambiguous option: --re"));
	parse_fails(&rc, "--reu", "a:b", NULL);
	CHECK(rc == 0 && captured[0] == '\0');
	parse_fails(&rc, "--statsd-h", "x:1", "a:b", NULL);
	CHECK(rc == 0 && captured[0] == '\0');
	/* truly unknown flags */
	parse_fails(&rc, "--no-such-flag", "a:b", NULL);
	CHECK(rc == -1 && one_error_line(captured,
	    "unrecognized arguments: --no-such-flag"));
	parse_fails(&rc, "-Z", "a:b", NULL);
	CHECK(rc == -1 && one_error_line(captured, "unrecognized arguments: -Z"));
}

static void
test_unsupported_file(void)
{
	struct settings s;

	/* gunicorn's defaults written out, and unknown names: silent */
	settings_defaults(&s);
	CHECK(parse(&s, "a:b", NULL) == 0);
	CHECK(load_text(&s,
	    "import ssl\n"
	    "certfile = None\n"
	    "keyfile = ''\n"
	    "ca_certs = None\n"
	    "ciphers = None\n"
	    "ssl_version = ssl.PROTOCOL_TLS\n"
	    "cert_reqs = ssl.CERT_NONE\n"
	    "do_handshake_on_connect = False\n"
	    "suppress_ragged_eofs = True\n"
	    "ssl_context = None\n"
	    "proxy_protocol = False\n"
	    "paste = None\n"
	    "protocol = 'http'\n"
	    "reload = False\n"
	    "reload_extra_files = []\n"
	    "statsd_host = None\n"
	    "statsd_prefix = ''\n"
	    "logconfig_dict = {}\n"
	    "http_protocols = ['h1']\n"
	    "forwarder_headers = ['SCRIPT_NAME', 'PATH_INFO']\n"
	    "proxy_allow_ips = '127.0.0.1, ::1'\n"
	    "control_socket_mode = 0o600\n"
	    "control_socket_disable = True\n"
	    "logger_class = 'gunicorn.glogging.Logger'\n"
	    "some_unknown_name = object()\n") == 0);
	CHECK(captured[0] == '\0');
	CHECK(finalize_captured(&s) == 0);
	CHECK(captured[0] == '\0');
	if (captured[0] != '\0')
		fprintf(stderr, "  (stderr was: %s)\n", captured);
	settings_free(&s);

	/* set to something else: one warning each, at finalize */
	settings_defaults(&s);
	CHECK(parse(&s, "a:b", NULL) == 0);
	CHECK(load_text(&s,
	    "spew = True\n"
	    "logger_class = 'my.Logger'\n"
	    "logconfig_dict = {'version': 1}\n"
	    "tmp_upload_dir = '/tmp'\n"
	    "casefold_http_method = True\n") == 0);
	CHECK(captured[0] == '\0');
	CHECK(finalize_captured(&s) == 0);
	CHECK(count_lines(captured) == 5);
	CHECK(warned_once("spew") && warned_once("logger_class") &&
	    warned_once("logconfig_dict") && warned_once("tmp_upload_dir") &&
	    warned_once("casefold_http_method"));
	settings_free(&s);

	/* refused from the file */
	static const struct {
		const char *text;
		const char *error;
	} refused[] = {
		{ "http2_cleartext = 'upgrade'\n",
		  "http2_cleartext: cleartext HTTP/2 is not supported" },
		{ "ssl_context = lambda conf, factory: factory()\n",
		  "ssl_context: a Python SSLContext hook is not supported" },
		{ "def ssl_context(conf, factory):\n    return factory()\n",
		  "use certfile, keyfile, ca_certs, cert_reqs, ciphers and "
		  "ssl_version" },
	};
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		settings_defaults(&s);
		CHECK(parse(&s, "a:b", NULL) == 0);
		CHECK(load_text(&s, refused[i].text) == 0);
		CHECK(finalize_captured(&s) == -1);
		CHECK(one_error_line(captured, refused[i].error));
		settings_free(&s);
	}

	/* precedence: the final value decides, not who mentioned it */
	settings_defaults(&s);
	CHECK(parse(&s, "--http2-cleartext=off", "--header-map", "drop",
	    "a:b", NULL) == 0);
	CHECK(load_text(&s, "http2_cleartext = 'upgrade'\n"
	    "header_map = 'refuse'\nreload = False\n") == 0);
	CHECK(finalize_captured(&s) == 0);
	CHECK(captured[0] == '\0');
	settings_free(&s);
	settings_defaults(&s);
	CHECK(parse(&s, "--spew", "a:b", NULL) == 0);
	CHECK(load_text(&s, "spew = False\n") == 0);
	CHECK(finalize_captured(&s) == 0);
	CHECK(warned_once("spew") && count_lines(captured) == 1);
	settings_free(&s);
	settings_defaults(&s);
	CHECK(parse(&s, "a:b", NULL) == 0);
	CHECK(settings_parse_env(&s, "--proxy-protocol=off") == 0);
	CHECK(load_text(&s, "proxy_protocol = True\n") == 0);
	CHECK(finalize_captured(&s) == 0);
	CHECK(captured[0] == '\0');
	CHECK_STR(s.proxy_protocol, "off");	/* the environment wins over the file */
	settings_free(&s);
}

/* proxy_protocol (gunicorn 24+): --proxy-protocol [MODE], a boolean or a
 * mode in the file; proxy_allow_ips a list. */
static void
test_proxy_protocol(void)
{
	struct settings s;

	settings_defaults(&s);
	CHECK_STR(s.proxy_protocol, "off");
	CHECK(s.proxy_allow_ips.len == 2 && strcmp(s.proxy_allow_ips.items[1], "::1") == 0);
	CHECK(parse(&s, "--proxy-protocol", "a:b", NULL) == 0);
	CHECK_STR(s.proxy_protocol, "auto");	/* alone: auto; the app stays the app */
	CHECK_STR(s.app_uri, "a:b");
	settings_free(&s);
	settings_defaults(&s);
	CHECK(parse(&s, "--proxy-protocol", "v2", "--proxy-allow-from", "10.0.0.0/8, ::1",
	    "a:b", NULL) == 0);
	CHECK_STR(s.proxy_protocol, "v2");
	CHECK(s.proxy_allow_ips.len == 2 && strcmp(s.proxy_allow_ips.items[0], "10.0.0.0/8") == 0);
	CHECK(finalize_captured(&s) == 0 && captured[0] == '\0');
	settings_free(&s);
	settings_defaults(&s);
	CHECK(parse(&s, "--proxy-protocol=v1", "a:b", NULL) == 0);
	CHECK_STR(s.proxy_protocol, "v1");
	settings_free(&s);
	settings_defaults(&s);
	CHECK(parse(&s, "--proxy-protocol=v3", "a:b", NULL) == -1);
	settings_free(&s);
	static const struct { const char *text, *want; } files[] = {
		{ "proxy_protocol = True\n", "auto" },
		{ "proxy_protocol = False\n", "off" },
		{ "proxy_protocol = 'v2'\n", "v2" },
		{ "proxy_protocol = 'auto'\n", "auto" },
	};
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		settings_defaults(&s);
		CHECK(parse(&s, "a:b", NULL) == 0);
		CHECK(load_text(&s, files[i].text) == 0);
		CHECK_STR(s.proxy_protocol, files[i].want);
		settings_free(&s);
	}
	settings_defaults(&s);
	CHECK(parse(&s, "a:b", NULL) == 0);
	CHECK(load_text(&s, "proxy_protocol = 'v3'\n") == -1);
	settings_free(&s);

	/* protocol (gunicorn 25+): http or uwsgi; uwsgi_allow_ips a list */
	settings_defaults(&s);
	CHECK_STR(s.protocol, "http");
	CHECK(s.uwsgi_allow_ips.len == 2);
	CHECK(parse(&s, "--protocol", "uwsgi", "--uwsgi-allow-from", "10.0.0.0/8", "a:b",
	    NULL) == 0);
	CHECK_STR(s.protocol, "uwsgi");
	CHECK(s.uwsgi_allow_ips.len == 1 && strcmp(s.uwsgi_allow_ips.items[0], "10.0.0.0/8") == 0);
	CHECK(finalize_captured(&s) == 0 && captured[0] == '\0');
	settings_free(&s);
	settings_defaults(&s);
	CHECK(parse(&s, "--protocol", "fastcgi", "a:b", NULL) == -1);
	settings_free(&s);
	settings_defaults(&s);
	CHECK(parse(&s, "a:b", NULL) == 0);
	CHECK(load_text(&s, "protocol = 'uwsgi'\n") == 0);
	CHECK_STR(s.protocol, "uwsgi");
	settings_free(&s);
}

/* The TLS settings: gunicorn's names, flags, defaults and types; the
 * ssl_version mapping; the combinations refused. */
static void
test_tls(void)
{
	struct settings s;
	const char *why = NULL;
	int rc;

	settings_defaults(&s);
	CHECK(s.certfile == NULL && s.keyfile == NULL && s.ca_certs == NULL &&
	    s.ciphers == NULL);
	CHECK(s.cert_reqs == 0 && s.ssl_version == SETTINGS_SSL_TLS);
	CHECK(s.suppress_ragged_eofs == 1 && s.do_handshake_on_connect == 0);
	CHECK(parse(&s, "--certfile", "c.pem", "--keyfile=k.pem", "--ca-certs",
	    "ca.pem", "--cert-reqs", "2", "--ciphers", "ECDHE+AESGCM",
	    "--ssl-version", "TLSv1_2", "--suppress-ragged-eofs",
	    "--do-handshake-on-connect", "a:b", NULL) == 0);
	CHECK_STR(s.certfile, "c.pem");
	CHECK_STR(s.keyfile, "k.pem");
	CHECK_STR(s.ca_certs, "ca.pem");
	CHECK_STR(s.ciphers, "ECDHE+AESGCM");
	CHECK(s.cert_reqs == 2 && s.ssl_version == SETTINGS_SSL_TLSv1_2);
	CHECK(s.suppress_ragged_eofs == 1 && s.do_handshake_on_connect == 1);
	CHECK(finalize_captured(&s) == 0 && captured[0] == '\0');
	CHECK(python_asserts(&s, NULL,
	    "assert cfg.is_ssl is True\n"
	    "assert cfg.certfile == 'c.pem' and cfg.keyfile == 'k.pem'\n"
	    "assert cfg.cert_reqs == 2 and cfg.ssl_version == 5\n"
	    "assert cfg.suppress_ragged_eofs is True\n"));
	settings_free(&s);

	/* ssl_version: every negotiate spelling, TLS 1.2 pinned, the rest
	 * refused with a reason */
	static const struct { const char *text; int want; } versions[] = {
		{ "TLS", 2 }, { "SSLv23", 2 }, { "PROTOCOL_TLS", 2 },
		{ "PROTOCOL_SSLv23", 2 }, { "2", 2 }, { "TLS_SERVER", 17 },
		{ "PROTOCOL_TLS_SERVER", 17 }, { "17", 17 }, { "TLSv1_2", 5 },
		{ "PROTOCOL_TLSv1_2", 5 }, { "5", 5 }, { "tls", 2 },
		{ "TLSv1", -1 }, { "TLSv1_1", -1 }, { "SSLv3", -1 },
		{ "SSLv2", -1 }, { "3", -1 }, { "4", -1 }, { "1", -1 },
		{ "TLS_CLIENT", -1 }, { "16", -1 }, { "TLSv1_3", -1 },
		{ "99", -1 }, { "-2", -1 }, { "", -1 },
	};
	for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]); i++) {
		int got = settings_ssl_version_parse(versions[i].text, &why);
		CHECK(got == versions[i].want);
		if (got != versions[i].want)
			fprintf(stderr, "  (ssl_version %s: %d)\n",
			    versions[i].text, got);
	}
	CHECK(settings_ssl_version_parse("TLSv1", &why) == -1 &&
	    strstr(why, "obsolete") != NULL);
	parse_fails(&rc, "--ssl-version", "TLSv1_1", "a:b", NULL);
	CHECK(rc == -1 && one_error_line(captured, "Invalid value for "
	    "ssl_version: TLSv1_1 (obsolete and insecure"));

	/* cert_reqs: 0, 1, 2 only */
	parse_fails(&rc, "--cert-reqs", "3", "a:b", NULL);
	CHECK(rc == -1 && one_error_line(captured,
	    "cert_reqs: 3 (must be between 0 and 2)"));

	/* the config file: the ssl module's IntEnums are their numbers */
	settings_defaults(&s);
	CHECK(parse(&s, "a:b", NULL) == 0);
	CHECK(load_text(&s, "import ssl\ncertfile = 'c.pem'\n"
	    "cert_reqs = ssl.CERT_REQUIRED\n"
	    "ssl_version = ssl.PROTOCOL_TLS_SERVER\n"
	    "suppress_ragged_eofs = False\n") == 0);
	CHECK(s.cert_reqs == 2 && s.ssl_version == 17);
	CHECK(s.suppress_ragged_eofs == 0);
	settings_free(&s);
	settings_defaults(&s);
	CHECK(parse(&s, "a:b", NULL) == 0);
	CHECK(load_text(&s, "import ssl\nssl_version = ssl.PROTOCOL_TLSv1\n")
	    == -1);
	CHECK(one_error_line(captured, "ssl_version: 3 (obsolete"));
	settings_free(&s);

	/* keyfile alone is an error; certfile alone holds the key; "" is None */
	settings_defaults(&s);
	CHECK(parse(&s, "--keyfile", "k.pem", "a:b", NULL) == 0);
	CHECK(finalize_captured(&s) == -1);
	CHECK(one_error_line(captured, "Error: keyfile: set without certfile"));
	settings_free(&s);
	settings_defaults(&s);
	CHECK(parse(&s, "--certfile", "both.pem", "a:b", NULL) == 0);
	CHECK(finalize_captured(&s) == 0 && s.keyfile == NULL);
	settings_free(&s);
	settings_defaults(&s);
	CHECK(parse(&s, "--certfile=", "--keyfile=", "a:b", NULL) == 0);
	CHECK(finalize_captured(&s) == 0 && s.certfile == NULL &&
	    s.keyfile == NULL);
	CHECK(python_asserts(&s, NULL, "assert cfg.is_ssl is False\n"));
	settings_free(&s);

	/* a PROXY preamble or uWSGI before the handshake: refused */
	settings_defaults(&s);
	CHECK(parse(&s, "--certfile", "c.pem", "--proxy-protocol", "v1", "a:b",
	    NULL) == 0);
	CHECK(finalize_captured(&s) == -1);
	CHECK(one_error_line(captured, "Error: certfile: TLS with "
	    "proxy_protocol is not supported"));
	settings_free(&s);
	settings_defaults(&s);
	CHECK(parse(&s, "--certfile", "c.pem", "--protocol", "uwsgi", "a:b",
	    NULL) == 0);
	CHECK(finalize_captured(&s) == -1);
	CHECK(one_error_line(captured, "Error: certfile: TLS with protocol "
	    "uwsgi"));
	settings_free(&s);
}

/* The two gunicorn settings cunicorn now honours: sendfile, initgroups. */
static void
test_sendfile_initgroups(void)
{
	struct settings s;
	char *text;

	unsetenv("SENDFILE");
	settings_defaults(&s);
	CHECK(s.sendfile == 1 && s.initgroups == 0);
	CHECK(parse(&s, "--no-sendfile", "--initgroups", "a:b", NULL) == 0);
	CHECK(s.sendfile == 0 && s.initgroups == 1);
	CHECK(finalize_captured(&s) == 0 && captured[0] == '\0');
	text = print_to_string(&s);
	CHECK(printed_is(text, "sendfile", "False"));
	CHECK(printed_is(text, "initgroups", "True"));
	free(text);
	settings_free(&s);

	/* $SENDFILE when nothing sets it, as gunicorn */
	setenv("SENDFILE", "0", 1);
	settings_defaults(&s);
	CHECK(s.sendfile == 0);
	settings_free(&s);
	setenv("SENDFILE", "Yes", 1);
	settings_defaults(&s);
	CHECK(s.sendfile == 1);
	CHECK(load_text(&s, "sendfile = False\n") == 0);
	CHECK(s.sendfile == 0);
	settings_free(&s);
	setenv("SENDFILE", "n", 1);
	settings_defaults(&s);
	CHECK(load_text(&s, "sendfile = True\ninitgroups = True\n") == 0);
	CHECK(s.sendfile == 1 && s.initgroups == 1);
	CHECK(load_text(&s, "sendfile = None\n") == 0);	/* back to $SENDFILE */
	CHECK(s.sendfile == 0);
	settings_free(&s);
	unsetenv("SENDFILE");

	/* a flag, not an option with a value */
	{
		int rc;
		parse_fails(&rc, "--no-sendfile=1", "a:b", NULL);
		CHECK(rc == -1 && one_error_line(captured,
		    "argument --no-sendfile: ignored explicit argument '1'"));
	}
}

/* gunicorn's reload, reload_engine, reload_extra_files: honoured (the
 * sync worker polls), from every source, printed, seen by hooks. */
static void
test_reload(void)
{
	struct settings s;
	char a[300], b[300], conf[900], *text;
	int rc;

	snprintf(a, sizeof(a), "%s/extra-a.txt", tmpdir);
	snprintf(b, sizeof(b), "%s/extra-b.txt", tmpdir);
	write_file(a, "a");
	write_file(b, "b");

	/* the command line: a flag, a choice, a repeatable existing file */
	{
		char eq[320];
		snprintf(eq, sizeof(eq), "--reload-extra-file=%s", b);
		settings_defaults(&s);
		CHECK(parse(&s, "--reload", "--reload-engine", "inotify",
		    "--reload-extra-file", a, eq, "a:b", NULL) == 0);
	}
	CHECK(s.reload == 1);
	CHECK_STR(s.reload_engine, "inotify");
	CHECK(s.reload_extra_files.len == 2);
	CHECK_STR(s.reload_extra_files.items[0], a);
	CHECK_STR(s.reload_extra_files.items[1], b);
	CHECK_STR(s.app_uri, "a:b");
	CHECK(finalize_captured(&s) == 0 && captured[0] == '\0');
	text = print_to_string(&s);
	CHECK(printed_is(text, "reload", "True"));
	CHECK(printed_is(text, "reload_engine", "inotify"));
	snprintf(conf, sizeof(conf), "['%s', '%s']", a, b);
	CHECK(printed_is(text, "reload_extra_files", conf));
	free(text);

	/* hooks read them as gunicorn's types */
	CHECK(python_asserts(&s, a,
	    "assert cfg.reload is True\n"
	    "assert cfg.reload_engine == 'inotify'\n"
	    "assert cfg.reload_extra_files[0] == a\n"
	    "assert len(cfg.reload_extra_files) == 2\n"));
	settings_free(&s);

	/* the config file, and the command line over it (a list given on
	 * the command line replaces the file's) */
	snprintf(conf, sizeof(conf), "reload = True\nreload_engine = 'poll'\n"
	    "reload_extra_files = ['%s', '%s']\n", a, b);
	settings_defaults(&s);
	CHECK(parse(&s, "a:b", NULL) == 0);
	CHECK(load_text(&s, conf) == 0 && captured[0] == '\0');
	CHECK(s.reload == 1 && s.reload_extra_files.len == 2);
	CHECK_STR(s.reload_engine, "poll");
	CHECK(finalize_captured(&s) == 0 && captured[0] == '\0');
	settings_free(&s);
	settings_defaults(&s);
	CHECK(parse(&s, "--reload-extra-file", b, "a:b", NULL) == 0);
	CHECK(settings_parse_env(&s, "--reload-engine auto") == 0);
	CHECK(load_text(&s, conf) == 0);
	CHECK(s.reload == 1 && s.reload_extra_files.len == 1);
	CHECK_STR(s.reload_extra_files.items[0], b);
	CHECK_STR(s.reload_engine, "auto");
	settings_free(&s);
	/* a string is one file, as gunicorn's validate_list_string */
	snprintf(conf, sizeof(conf), "reload_extra_files = '%s'\n", a);
	settings_defaults(&s);
	CHECK(load_text(&s, conf) == 0);
	CHECK(s.reload_extra_files.len == 1);
	CHECK_STR(s.reload_extra_files.items[0], a);
	settings_free(&s);

	/* bad values: one error line naming the setting, from every source */
	parse_fails(&rc, "--reload-engine", "fsevents", "a:b", NULL);
	CHECK(rc == -1 && one_error_line(captured,
	    "Invalid value for reload_engine: fsevents (expected auto, poll "
	    "or inotify)"));
	parse_fails(&rc, "--reload-engine", "POLL", "a:b", NULL);
	CHECK(rc == -1 && one_error_line(captured, "reload_engine: POLL"));
	parse_fails(&rc, "--reload-extra-file", "/no/such/file", "a:b", NULL);
	CHECK(rc == -1 && one_error_line(captured,
	    "Invalid value for reload_extra_files: /no/such/file (no such "
	    "file)"));
	parse_fails(&rc, "--reload-extra-file", "a:b", NULL);
	CHECK(rc == -1 && one_error_line(captured, "reload_extra_files: a:b"));
	parse_fails(&rc, "--reload-extra-file=", "a:b", NULL);
	CHECK(rc == -1 && one_error_line(captured, "reload_extra_files:  (no "
	    "such file)"));
	parse_fails(&rc, "--reload=yes", "a:b", NULL);
	CHECK(rc == -1 && one_error_line(captured,
	    "argument --reload: ignored explicit argument 'yes'"));
	parse_fails(&rc, "--reload-e", "poll", "a:b", NULL);
	CHECK(rc == -1 && one_error_line(captured,
	    "ambiguous option: --reload-e"));
	settings_defaults(&s);
	CHECK(load_text(&s, "reload_engine = 'kqueue'\n") == -1);
	CHECK(one_error_line(captured, "reload_engine: kqueue"));
	settings_free(&s);
	settings_defaults(&s);
	CHECK(load_text(&s, "reload_extra_files = ['/no/such/file']\n") == -1);
	CHECK(one_error_line(captured, "reload_extra_files: /no/such/file"));
	settings_free(&s);
	settings_defaults(&s);
	CHECK(load_text(&s, "reload = 'yes'\n") == -1);
	CHECK(one_error_line(captured, "Invalid value for reload: yes"));
	settings_free(&s);
	settings_defaults(&s);
	CHECK(parse(&s, "a:b", NULL) == 0);
	capture_begin();
	rc = settings_parse_env(&s, "--reload-engine nope");
	capture_end();
	CHECK(rc == -1 && one_error_line(captured, "reload_engine: nope"));
	settings_free(&s);
	unlink(a);
	unlink(b);
}

/* The cunicorn package (python/, two levels above build/unit/) on
 * sys.path, as python_init() puts it: settings_file.c imports cunicorn._config. */
static void
add_python_dir(void)
{
	char exe[PATH_MAX], cmd[PATH_MAX + 100];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	char *slash;

	if (n <= 0)
		abort();
	exe[n] = '\0';
	for (int i = 0; i < 3; i++) {
		if ((slash = strrchr(exe, '/')) == NULL)
			abort();
		*slash = '\0';
	}
	snprintf(cmd, sizeof(cmd), "import sys\nsys.path.insert(0, '%s/python')\n",
	    exe);
	if (PyRun_SimpleString(cmd) != 0)
		abort();
}

int
main(void)
{
	char cmd[400];

	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_settings.XXXXXX");
	if (mkdtemp(tmpdir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	setenv("PYTHONDONTWRITEBYTECODE", "1", 1);
	Py_InitializeEx(0);
	add_python_dir();

	test_defaults();
	test_cli_forms();
	test_cli_errors();
	test_syslog_forms();
	test_env();
	test_env_edges();
	test_file_precedence();
	test_file_errors();
	test_finalize();
	test_print();
	test_to_python();
	test_default_config_path();
	test_restart_only();
	test_keep_restart_only();
	test_unsupported_cli();
	test_unsupported_file();
	test_sendfile_initgroups();
	test_proxy_protocol();
	test_tls();
	test_reload();

	PyRun_SimpleString("import sys\nsys.modules.pop('__config__', None)\n");
	Py_FinalizeEx();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", tmpdir);
	return check_summary("test_settings");
}
