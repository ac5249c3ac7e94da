/*
 * settings.c — every setting cunicorn honours, in one table (see settings.h).
 *
 * Each row of settings_table names a setting (gunicorn's name), its flags,
 * its type, its default and its field in struct settings.  All four
 * sources go through that table and through one setter, set_value():
 *   defaults        the row's default string (plus $PORT, $WEB_CONCURRENCY,
 *                   $FORWARDED_ALLOW_IPS, $VIRTUAL_ENV, the cwd);
 *   command line    parsed into a list of (row, value) operations;
 *   GUNICORN_CMD_ARGS  split like shlex.split(), parsed the same way;
 *   config file     Python, executed by the embedded interpreter; every
 *                   module-level name that is a row's name is converted
 *                   to the row's text form and fed to set_value().
 * Precedence (command line > env > file > defaults) comes from replaying
 * the recorded env and command-line operations after the file.  A list
 * setting (bind, raw_env, dirty_apps) given by a source replaces the
 * list, as gunicorn's argparse "append" does.
 *
 * gunicorn's other settings, the ones cunicorn does not implement, live in
 * a second table (unsupported_table, below the first): their flags parse
 * exactly as gunicorn's, all four sources may give them, and
 * settings_finalize() refuses the few whose absence would change security
 * or the wire (TLS, ...) and warns about the others -- each only when its
 * final value differs from gunicorn's default.
 *
 * Owns: every string and list in struct settings, the hook references,
 * the recorded operations (s->priv).  Never: logs through log.h before
 * the logs are open except for warnings (which go to stderr then), calls
 * exit() other than for -h/--help and -v/--version, or leaves a Python
 * exception set on return.
 *
 * Errors are one line on stderr, "Error: ...", naming the setting.
 */
#include <Python.h>

#include "settings.h"
#include "dirty_wire.h"
#include "log.h"

#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef CUNICORN_VERSION
#define CUNICORN_VERSION	"0.1.0"
#endif
#define GUNICORN_COMPAT_VERSION	"25.0"

enum setting_type {
	T_INT,		/* non-negative int, >= min */
	T_INT64,	/* non-negative long long, >= min (sizes in bytes) */
	T_BOOL,		/* flag without value on the command line */
	T_STR,		/* string (stripped) */
	T_LIST,		/* string list; the flag may be repeated */
	T_CSV,		/* comma-separated string -> list */
	T_UMASK,	/* int, octal accepted ("0022", "0o22", "0x12", "18") */
	T_LEVEL,	/* log level name -> LOG_* */
	T_CHDIR,	/* existing directory, made absolute */
	T_USER,		/* user name or uid (resolved by settings_finalize) */
	T_GROUP,	/* group name or gid (ditto) */
	T_SCHEME,	/* dict of header -> value (config file only) */
	T_HOOK,		/* Python callable (config file only) */
	T_HELP,
	T_VERSION,
};

#define F_NULLABLE	0x01	/* None / unset is a valid value */
#define F_NOFILE	0x02	/* not taken from a config file */
#define F_JOINED	0x04	/* T_CSV seen as its comma-joined string (pythonpath) */
#define F_NOPRINT	0x08	/* not a setting: -h, -v */
#define F_STORE_FALSE	0x10	/* T_BOOL whose flag means False (--no-sendfile) */

struct setting_def {
	const char *name;		/* gunicorn's setting name */
	const char *short_flag;		/* "-w" or NULL */
	const char *long_flag;		/* "--workers" or NULL */
	const char *alias_flag;		/* another long spelling, or NULL */
	enum setting_type type;
	size_t off;			/* field in struct settings */
	int min;			/* T_INT: smallest value allowed */
	unsigned flags;
	/* default as text for set_value(); for T_HOOK, the name gunicorn's
	 * --print-config shows for its default callable */
	const char *dflt;
	/* T_LIST / T_CSV items, T_STR values: NULL when valid, else why not */
	const char *(*check)(const char *item);
	int hook;			/* T_HOOK: enum hook_id */
	int arity;			/* T_HOOK: positional arguments */
	const char *meta;		/* value name in --help */
	const char *help;
};

static const char *check_bind(const char *);
static const char *check_env(const char *);
static const char *check_dirty_app(const char *);
static const char *check_reload_engine(const char *);
static const char *check_file_exists(const char *);
static const char *check_asgi_loop(const char *);
static const char *check_asgi_lifespan(const char *);

#define OFF(field)	offsetof(struct settings, field)
#define HOOK(n, id, ar, dfl, h) \
	{ n, NULL, NULL, NULL, T_HOOK, 0, 0, F_NULLABLE, dfl, NULL, id, ar, NULL, h }

static const struct setting_def settings_table[] = {
	{ "access_log_format", NULL, "--access-logformat", NULL, T_STR,
	  OFF(access_log_format), 0, 0,
	  "%(h)s %(l)s %(u)s %(t)s \"%(r)s\" %(s)s %(b)s \"%(f)s\" \"%(a)s\"",
	  NULL, 0, 0, "STRING", "The access log format." },
	{ "accesslog", NULL, "--access-logfile", NULL, T_STR, OFF(accesslog),
	  0, F_NULLABLE, NULL, NULL, 0, 0, "FILE",
	  "The access log file to write to ('-' = stdout)." },
	{ "asgi_lifespan", NULL, "--asgi-lifespan", NULL, T_STR,
	  OFF(asgi_lifespan), 0, 0, "auto", check_asgi_lifespan, 0, 0,
	  "STRING", "ASGI lifespan: auto, on or off (-k asgi)." },
	{ "asgi_loop", NULL, "--asgi-loop", NULL, T_STR, OFF(asgi_loop), 0, 0,
	  "auto", check_asgi_loop, 0, 0, "STRING",
	  "The ASGI worker's event loop: auto (uvloop if installed), asyncio, uvloop." },
	{ "backlog", NULL, "--backlog", NULL, T_INT, OFF(backlog), 0, 0,
	  "2048", NULL, 0, 0, "INT", "The maximum number of pending connections." },
	{ "bind", "-b", "--bind", NULL, T_LIST, OFF(bind), 0, 0,
	  "127.0.0.1:8000", check_bind, 0, 0, "ADDRESS",
	  "The socket to bind (repeatable): HOST:PORT, unix:PATH, fd://FD." },
	{ "capture_output", NULL, "--capture-output", NULL, T_BOOL,
	  OFF(capture_output), 0, 0, NULL, NULL, 0, 0, NULL,
	  "Redirect stdout/stderr to the error log." },
	{ "chdir", NULL, "--chdir", NULL, T_CHDIR, OFF(chdir), 0, 0, NULL,
	  NULL, 0, 0, "CHDIR", "Change directory before loading apps." },
	{ "check_config", NULL, "--check-config", NULL, T_BOOL,
	  OFF(check_config), 0, 0, NULL, NULL, 0, 0, NULL,
	  "Check the configuration and exit." },
	HOOK("child_exit", HOOK_CHILD_EXIT, 2, "ChildExit.child_exit", NULL),
	{ "config", "-c", "--config", NULL, T_STR, OFF(config), 0,
	  F_NULLABLE | F_NOFILE, NULL, NULL, 0, 0, "CONFIG",
	  "The config file: PATH, file:PATH or python:MODULE." },
	{ "daemon", "-D", "--daemon", NULL, T_BOOL, OFF(daemon), 0, 0, NULL,
	  NULL, 0, 0, NULL, "Daemonize the process." },
	{ "default_proc_name", NULL, NULL, NULL, T_STR, OFF(default_proc_name),
	  0, F_NULLABLE, NULL, NULL, 0, 0, NULL, NULL },
	{ "dirty_apps", NULL, "--dirty-app", NULL, T_LIST, OFF(dirty_apps),
	  0, 0, NULL, check_dirty_app, 0, 0, "STRING",
	  "A dirty app, module:Class or module:Class:N (repeatable)." },
	{ "dirty_graceful_timeout", NULL, "--dirty-graceful-timeout", NULL,
	  T_INT, OFF(dirty_graceful_timeout), 0, 0, "30", NULL, 0, 0, "INT",
	  "Graceful shutdown timeout for dirty workers." },
	HOOK("dirty_post_fork", HOOK_DIRTY_POST_FORK, 2,
	  "DirtyPostFork.dirty_post_fork", NULL),
	{ "dirty_stash_max_bytes", NULL, "--dirty-stash-max-bytes", NULL,
	  T_INT64, OFF(dirty_stash_max_bytes), 0, 0, "0", NULL, 0, 0, "INT",
	  "Cap on the stash's encoded keys and values, in bytes (0 = no cap)." },
	{ "dirty_threads", NULL, "--dirty-threads", NULL, T_INT,
	  OFF(dirty_threads), 1, 0, "1", NULL, 0, 0, "INT",
	  "Threads per dirty worker." },
	{ "dirty_timeout", NULL, "--dirty-timeout", NULL, T_INT,
	  OFF(dirty_timeout), 0, 0, "300", NULL, 0, 0, "INT",
	  "Dirty task timeout in seconds (0 = off)." },
	HOOK("dirty_worker_exit", HOOK_DIRTY_WORKER_EXIT, 2,
	  "DirtyWorkerExit.dirty_worker_exit", NULL),
	HOOK("dirty_worker_init", HOOK_DIRTY_WORKER_INIT, 1,
	  "DirtyWorkerInit.dirty_worker_init", NULL),
	{ "dirty_workers", NULL, "--dirty-workers", NULL, T_INT,
	  OFF(dirty_workers), 0, 0, "0", NULL, 0, 0, "INT",
	  "Number of dirty workers (0 = no dirty arbiter)." },
	{ "errorlog", NULL, "--error-logfile", "--log-file", T_STR,
	  OFF(errorlog), 0, 0, "-", NULL, 0, 0, "FILE",
	  "The error log file to write to ('-' = stderr)." },
	{ "forwarded_allow_ips", NULL, "--forwarded-allow-ips", NULL, T_CSV,
	  OFF(forwarded_allow_ips), 0, 0, "127.0.0.1,::1", NULL, 0, 0,
	  "STRING", "Front-end IPs allowed to set secure headers ('*' = all)." },
	{ "forwarder_headers", NULL, "--forwarder-headers", NULL, T_CSV,
	  OFF(forwarder_headers), 0, 0, "SCRIPT_NAME,PATH_INFO", NULL, 0, 0,
	  "STRING", "Headers with '_' a forwarded_allow_ips peer may set ('*' = any)." },
	{ "graceful_timeout", NULL, "--graceful-timeout", NULL, T_INT,
	  OFF(graceful_timeout), 0, 0, "30", NULL, 0, 0, "INT",
	  "Timeout for graceful workers restart." },
	{ "group", "-g", "--group", NULL, T_GROUP, OFF(group), 0, F_NULLABLE,
	  NULL, NULL, 0, 0, "GROUP", "Switch worker processes to this group." },
	{ "initgroups", NULL, "--initgroups", NULL, T_BOOL, OFF(initgroups), 0,
	  0, NULL, NULL, 0, 0, NULL,
	  "Give workers the user's supplementary groups (else only GROUP)." },
	{ "keepalive", NULL, "--keep-alive", NULL, T_INT, OFF(keepalive), 0, 0,
	  "2", NULL, 0, 0, "INT",
	  "Seconds to wait for requests on a Keep-Alive connection." },
	{ "limit_request_field_size", NULL, "--limit-request-field_size",
	  "--limit-request-field-size", T_INT, OFF(limit_request_field_size),
	  0, 0, "8190", NULL, 0, 0, "INT",
	  "Limit the size of an HTTP request header field (0 = unlimited)." },
	{ "limit_request_fields", NULL, "--limit-request-fields", NULL, T_INT,
	  OFF(limit_request_fields), 0, 0, "100", NULL, 0, 0, "INT",
	  "Limit the number of HTTP header fields in a request." },
	{ "limit_request_line", NULL, "--limit-request-line", NULL, T_INT,
	  OFF(limit_request_line), 0, 0, "4094", NULL, 0, 0, "INT",
	  "The maximum size of the HTTP request line (0 = unlimited)." },
	{ "loglevel", NULL, "--log-level", NULL, T_LEVEL, OFF(loglevel), 0, 0,
	  "info", NULL, 0, 0, "LEVEL",
	  "debug, info, warning, error or critical." },
	{ "max_requests", NULL, "--max-requests", NULL, T_INT,
	  OFF(max_requests), 0, 0, "0", NULL, 0, 0, "INT",
	  "Requests a worker serves before restarting (0 = off)." },
	{ "max_requests_jitter", NULL, "--max-requests-jitter", NULL, T_INT,
	  OFF(max_requests_jitter), 0, 0, "0", NULL, 0, 0, "INT",
	  "The maximum jitter to add to max_requests." },
	HOOK("nworkers_changed", HOOK_NWORKERS_CHANGED, 3,
	  "NumWorkersChanged.nworkers_changed", NULL),
	HOOK("on_dirty_starting", HOOK_ON_DIRTY_STARTING, 1,
	  "OnDirtyStarting.on_dirty_starting", NULL),
	HOOK("on_exit", HOOK_ON_EXIT, 1, "OnExit.on_exit", NULL),
	HOOK("on_reload", HOOK_ON_RELOAD, 1, "OnReload.on_reload", NULL),
	HOOK("on_starting", HOOK_ON_STARTING, 1, "OnStarting.on_starting", NULL),
	{ "pidfile", "-p", "--pid", NULL, T_STR, OFF(pidfile), 0, F_NULLABLE,
	  NULL, NULL, 0, 0, "FILE", "A filename to use for the PID file." },
	HOOK("post_fork", HOOK_POST_FORK, 2, "Postfork.post_fork", NULL),
	HOOK("post_request", HOOK_POST_REQUEST, 4, "PostRequest.post_request",
	  NULL),
	HOOK("post_worker_init", HOOK_POST_WORKER_INIT, 1,
	  "PostWorkerInit.post_worker_init", NULL),
	HOOK("pre_exec", HOOK_PRE_EXEC, 1, "PreExec.pre_exec", NULL),
	HOOK("pre_fork", HOOK_PRE_FORK, 2, "Prefork.pre_fork", NULL),
	HOOK("pre_request", HOOK_PRE_REQUEST, 2, "PreRequest.pre_request", NULL),
	{ "preload_app", NULL, "--preload", NULL, T_BOOL, OFF(preload_app), 0,
	  0, NULL, NULL, 0, 0, NULL,
	  "Load application code before the worker processes are forked." },
	{ "print_config", NULL, "--print-config", NULL, T_BOOL,
	  OFF(print_config), 0, 0, NULL, NULL, 0, 0, NULL,
	  "Print the resolved configuration and exit." },
	{ "proc_name", "-n", "--name", NULL, T_STR, OFF(proc_name), 0,
	  F_NULLABLE, NULL, NULL, 0, 0, "STRING",
	  "A base to use for process titles." },
	{ "pythonpath", NULL, "--pythonpath", NULL, T_CSV, OFF(pythonpath), 0,
	  F_NULLABLE | F_JOINED, NULL, NULL, 0, 0, "STRING",
	  "Comma-separated directories to add to the Python path." },
	{ "raw_env", "-e", "--env", NULL, T_LIST, OFF(raw_env), 0, 0, NULL,
	  check_env, 0, 0, "ENV", "Set an environment variable KEY=VALUE (repeatable)." },
	{ "reload", NULL, "--reload", NULL, T_BOOL, OFF(reload), 0, 0, NULL,
	  NULL, 0, 0, NULL,
	  "Restart workers when their code changes (for development)." },
	{ "reload_engine", NULL, "--reload-engine", NULL, T_STR,
	  OFF(reload_engine), 0, 0, "auto", check_reload_engine, 0, 0,
	  "STRING", "auto, poll or inotify (cunicorn polls mtimes for all)." },
	{ "reload_extra_files", NULL, "--reload-extra-file", NULL, T_LIST,
	  OFF(reload_extra_files), 0, 0, NULL, check_file_exists, 0, 0,
	  "FILES", "Another file --reload watches (repeatable)." },
	{ "reuse_port", NULL, "--reuse-port", NULL, T_BOOL, OFF(reuse_port),
	  0, 0, NULL, NULL, 0, 0, NULL,
	  "Set SO_REUSEPORT on the listening socket." },
	{ "root_path", NULL, "--root-path", NULL, T_STR, OFF(root_path), 0, 0,
	  "", NULL, 0, 0, "STRING",
	  "The ASGI root_path: the path the app is mounted at behind a proxy." },
	{ "secure_scheme_headers", NULL, NULL, NULL, T_SCHEME, 0, 0, 0, NULL,
	  NULL, 0, 0, NULL, NULL },
	/* default: $SENDFILE (y, 1, yes, true), else on -- see sendfile_default() */
	{ "sendfile", NULL, "--no-sendfile", NULL, T_BOOL, OFF(sendfile), 0,
	  F_NULLABLE | F_STORE_FALSE, NULL, NULL, 0, 0, NULL,
	  "Send wsgi.file_wrapper files with read/write, not sendfile(2)." },
	{ "threads", NULL, "--threads", NULL, T_INT, OFF(threads), 1, 0, "1",
	  NULL, 0, 0, "INT", "The number of worker threads." },
	{ "timeout", "-t", "--timeout", NULL, T_INT, OFF(timeout), 0, 0, "30",
	  NULL, 0, 0, "INT", "Workers silent for this many seconds are restarted (0 = off)." },
	{ "umask", "-m", "--umask", NULL, T_UMASK, OFF(umask), 0, 0, "0",
	  NULL, 0, 0, "INT", "A bit mask for the file mode of files written." },
	{ "user", "-u", "--user", NULL, T_USER, OFF(user), 0, F_NULLABLE,
	  NULL, NULL, 0, 0, "USER", "Switch worker processes to this user." },
	{ "virtualenv", NULL, "--virtualenv", NULL, T_STR, OFF(virtualenv), 0,
	  F_NULLABLE | F_NOFILE, NULL, NULL, 0, 0, "PATH",
	  "Virtualenv whose site-packages to use (default $VIRTUAL_ENV)." },
	HOOK("when_ready", HOOK_WHEN_READY, 1, "WhenReady.when_ready", NULL),
	HOOK("worker_abort", HOOK_WORKER_ABORT, 1, "WorkerAbort.worker_abort",
	  NULL),
	{ "worker_class", "-k", "--worker-class", NULL, T_STR,
	  OFF(worker_class), 0, 0, "sync", NULL, 0, 0, "STRING",
	  "The type of workers to use: sync, gthread or asgi." },
	{ "worker_connections", NULL, "--worker-connections", NULL, T_INT,
	  OFF(worker_connections), 1, 0, "1000", NULL, 0, 0, "INT",
	  "The maximum number of simultaneous clients." },
	HOOK("worker_exit", HOOK_WORKER_EXIT, 2, "WorkerExit.worker_exit", NULL),
	HOOK("worker_int", HOOK_WORKER_INT, 1, "WorkerInt.worker_int", NULL),
	{ "worker_tmp_dir", NULL, "--worker-tmp-dir", NULL, T_STR,
	  OFF(worker_tmp_dir), 0, F_NULLABLE, NULL, NULL, 0, 0, "DIR",
	  "A directory for the worker heartbeat files." },
	{ "workers", "-w", "--workers", NULL, T_INT, OFF(workers), 1, 0, "1",
	  NULL, 0, 0, "INT", "The number of worker processes." },
	{ "wsgi_app", NULL, NULL, NULL, T_STR, OFF(wsgi_app), 0, F_NULLABLE,
	  NULL, NULL, 0, 0, NULL, NULL },
	{ "help", "-h", "--help", NULL, T_HELP, 0, 0, F_NOPRINT | F_NOFILE,
	  NULL, NULL, 0, 0, NULL, "Show this help message and exit." },
	{ "version", "-v", "--version", NULL, T_VERSION, 0, 0,
	  F_NOPRINT | F_NOFILE, NULL, NULL, 0, 0, NULL,
	  "Show the version and exit." },
};
#define NSETTINGS	(sizeof(settings_table) / sizeof(settings_table[0]))

/*
 * gunicorn's settings that cunicorn does not implement (gunicorn 20 to 26).
 * Each flag takes a value or not exactly as gunicorn's does, so the word
 * after "--spew" is still the app and the one after "--statsd-host" is
 * not.  What counts is the value a setting ends up with once every source
 * is applied in its precedence; when it differs from gunicorn's default,
 * settings_finalize() acts on the row's policy:
 *   REFUSE  "Error: NAME: WHY" and a failed start: ignoring it would
 *           silently change security or the protocol on the wire;
 *   WARN    one "Setting 'NAME' is not supported by cunicorn; ignored";
 *   QUIET   nothing: cunicorn already does what any value asks (there is
 *           no control socket, no syslog to keep access lines out of).
 * A value is gunicorn's default when it is None, empty while the default
 * is None or empty, or one of dflt's '|'-separated spellings (compared
 * without case; as integers for U_NUMBER; item by item for U_LIST).
 */
enum unsupported_policy { REFUSE, WARN, QUIET };

enum unsupported_kind {
	U_FLAG,		/* --flag (store_true): True */
	U_VALUE,	/* --flag VALUE */
	U_APPEND,	/* --flag VALUE, repeatable: a list */
	U_OPTIONAL,	/* --flag [CHOICE]: the next word only if it is a choice */
	U_FILE,		/* config file only */
};

#define U_NUMBER	0x01	/* an integer: "0600" == 384 */
#define U_LIST		0x02	/* a comma-separated list: "a, b" == ["a", "b"] */

struct unsupported_def {
	const char *name;		/* gunicorn's setting name */
	const char *flag;		/* its long flag; NULL: config file only */
	const char *alias;		/* another spelling: "--paster", "-R" */
	enum unsupported_kind kind;
	const char *choices;		/* U_OPTIONAL: '|'-separated; the first
					 * is what the bare flag means */
	const char *dflt;		/* gunicorn's default; NULL: None */
	unsigned compare;		/* U_NUMBER, U_LIST */
	enum unsupported_policy policy;
	const char *why;		/* REFUSE: the end of the error line */
};

#define NO_TLS	"TLS is not supported by cunicorn; terminate TLS in front of it"

static const struct unsupported_def unsupported_table[] = {
	/* refused: security or the protocol on the wire */
	{ .name = "ca_certs", .flag = "--ca-certs", .kind = U_VALUE,
	  .policy = REFUSE, .why = NO_TLS },
	{ .name = "cert_reqs", .flag = "--cert-reqs", .kind = U_VALUE,
	  .dflt = "0", .compare = U_NUMBER, .policy = REFUSE, .why = NO_TLS },
	{ .name = "certfile", .flag = "--certfile", .kind = U_VALUE,
	  .policy = REFUSE, .why = NO_TLS },
	{ .name = "ciphers", .flag = "--ciphers", .kind = U_VALUE,
	  .policy = REFUSE, .why = NO_TLS },
	{ .name = "do_handshake_on_connect", .flag = "--do-handshake-on-connect",
	  .kind = U_FLAG, .dflt = "False", .policy = REFUSE, .why = NO_TLS },
	{ .name = "http2_cleartext", .flag = "--http2-cleartext",
	  .kind = U_VALUE, .dflt = "off", .policy = REFUSE,
	  .why = "cleartext HTTP/2 is not supported by cunicorn; it speaks "
	  "HTTP/1.x only" },
	{ .name = "keyfile", .flag = "--keyfile", .kind = U_VALUE,
	  .policy = REFUSE, .why = NO_TLS },
	{ .name = "paste", .flag = "--paste", .alias = "--paster",
	  .kind = U_VALUE, .policy = REFUSE,
	  .why = "PasteDeploy apps are not supported by cunicorn; give the app "
	  "as module:callable" },
	{ .name = "protocol", .flag = "--protocol", .kind = U_VALUE,
	  .dflt = "http", .policy = REFUSE,
	  .why = "the uWSGI protocol is not supported by cunicorn; it speaks "
	  "HTTP only" },
	{ .name = "proxy_protocol", .flag = "--proxy-protocol",
	  .kind = U_OPTIONAL, .choices = "auto|off|v1|v2",
	  .dflt = "False|off", .policy = REFUSE,
	  .why = "the PROXY protocol is not supported by cunicorn; pass the "
	  "client address in X-Forwarded-For instead" },
	{ .name = "ssl_context", .kind = U_FILE, .policy = REFUSE,
	  .why = NO_TLS },
	{ .name = "ssl_version", .flag = "--ssl-version", .kind = U_VALUE,
	  .dflt = "2|TLS|SSLv23|PROTOCOL_TLS|PROTOCOL_SSLv23", .policy = REFUSE,
	  .why = NO_TLS },
	{ .name = "suppress_ragged_eofs", .flag = "--suppress-ragged-eofs",
	  .kind = U_FLAG, .dflt = "True", .policy = REFUSE, .why = NO_TLS },

	/* accepted with a warning */
	{ .name = "asgi_disconnect_grace_period",
	  .flag = "--asgi-disconnect-grace-period", .kind = U_VALUE,
	  .dflt = "3", .compare = U_NUMBER, .policy = WARN },
	{ .name = "casefold_http_method", .flag = "--casefold-http-method",
	  .kind = U_FLAG, .dflt = "False", .policy = WARN },
	/* its default depends on $XDG_RUNTIME_DIR / $HOME: any path warns */
	{ .name = "control_socket", .flag = "--control-socket",
	  .kind = U_VALUE, .policy = WARN },
	{ .name = "control_socket_mode", .flag = "--control-socket-mode",
	  .kind = U_VALUE, .dflt = "0o600", .compare = U_NUMBER,
	  .policy = WARN },
	{ .name = "dogstatsd_tags", .flag = "--dogstatsd-tags", .kind = U_VALUE,
	  .dflt = "", .policy = WARN },
	{ .name = "enable_backlog_metric", .flag = "--enable-backlog-metric",
	  .kind = U_FLAG, .dflt = "False", .policy = WARN },
	{ .name = "enable_stdio_inheritance",
	  .flag = "--enable-stdio-inheritance", .alias = "-R", .kind = U_FLAG,
	  .dflt = "False", .policy = WARN },
	{ .name = "header_map", .flag = "--header-map", .kind = U_VALUE,
	  .dflt = "drop", .policy = WARN },
	{ .name = "http2_initial_window_size",
	  .flag = "--http2-initial-window-size", .kind = U_VALUE,
	  .dflt = "65535", .compare = U_NUMBER, .policy = WARN },
	{ .name = "http2_max_concurrent_streams",
	  .flag = "--http2-max-concurrent-streams", .kind = U_VALUE,
	  .dflt = "100", .compare = U_NUMBER, .policy = WARN },
	{ .name = "http2_max_frame_size", .flag = "--http2-max-frame-size",
	  .kind = U_VALUE, .dflt = "16384", .compare = U_NUMBER,
	  .policy = WARN },
	{ .name = "http2_max_header_list_size",
	  .flag = "--http2-max-header-list-size", .kind = U_VALUE,
	  .dflt = "65536", .compare = U_NUMBER, .policy = WARN },
	{ .name = "http_parser", .flag = "--http-parser", .kind = U_VALUE,
	  .dflt = "auto", .policy = WARN },
	/* h2 needs TLS (refused above), so without it gunicorn speaks h1 too */
	{ .name = "http_protocols", .flag = "--http-protocols", .kind = U_VALUE,
	  .dflt = "h1", .compare = U_LIST, .policy = WARN },
	{ .name = "logconfig", .flag = "--log-config", .kind = U_VALUE,
	  .policy = WARN },
	{ .name = "logconfig_dict", .kind = U_FILE, .policy = WARN },
	{ .name = "logconfig_json", .flag = "--log-config-json",
	  .kind = U_VALUE, .policy = WARN },
	{ .name = "logger_class", .flag = "--logger-class", .kind = U_VALUE,
	  .dflt = "gunicorn.glogging.Logger|simple", .policy = WARN },
	{ .name = "permit_obsolete_folding", .flag = "--permit-obsolete-folding",
	  .kind = U_FLAG, .dflt = "False", .policy = WARN },
	{ .name = "permit_unconventional_http_method",
	  .flag = "--permit-unconventional-http-method", .kind = U_FLAG,
	  .dflt = "False", .policy = WARN },
	{ .name = "permit_unconventional_http_version",
	  .flag = "--permit-unconventional-http-version", .kind = U_FLAG,
	  .dflt = "False", .policy = WARN },
	{ .name = "proxy_allow_ips", .flag = "--proxy-allow-from",
	  .kind = U_VALUE, .dflt = "127.0.0.1,::1|127.0.0.1", .compare = U_LIST,
	  .policy = WARN },
	{ .name = "raw_paste_global_conf", .flag = "--paste-global",
	  .kind = U_APPEND, .policy = WARN },
	{ .name = "spew", .flag = "--spew", .kind = U_FLAG, .dflt = "False",
	  .policy = WARN },
	{ .name = "statsd_host", .flag = "--statsd-host", .kind = U_VALUE,
	  .policy = WARN },
	{ .name = "statsd_prefix", .flag = "--statsd-prefix", .kind = U_VALUE,
	  .dflt = "", .policy = WARN },
	{ .name = "strip_header_spaces", .flag = "--strip-header-spaces",
	  .kind = U_FLAG, .dflt = "False", .policy = WARN },
	{ .name = "syslog", .flag = "--log-syslog", .kind = U_FLAG,
	  .dflt = "False", .policy = WARN },
	/* gunicorn's default depends on the platform: any of them */
	{ .name = "syslog_addr", .flag = "--log-syslog-to", .kind = U_VALUE,
	  .dflt = "udp://localhost:514|unix:///dev/log|unix:///var/run/log|"
	  "unix:///var/run/syslog", .policy = WARN },
	{ .name = "syslog_facility", .flag = "--log-syslog-facility",
	  .kind = U_VALUE, .dflt = "user", .policy = WARN },
	{ .name = "syslog_prefix", .flag = "--log-syslog-prefix",
	  .kind = U_VALUE, .policy = WARN },
	{ .name = "tmp_upload_dir", .kind = U_FILE, .policy = WARN },
	{ .name = "tolerate_dangerous_framing",
	  .flag = "--tolerate-dangerous-framing", .kind = U_FLAG,
	  .dflt = "False", .policy = WARN },
	{ .name = "uwsgi_allow_ips", .flag = "--uwsgi-allow-from",
	  .kind = U_VALUE, .dflt = "127.0.0.1,::1", .compare = U_LIST,
	  .policy = WARN },

	/* accepted silently: cunicorn already does what the value asks */
	{ .name = "control_socket_disable", .flag = "--no-control-socket",
	  .kind = U_FLAG, .dflt = "False", .policy = QUIET },
	{ .name = "disable_redirect_access_to_syslog",
	  .flag = "--disable-redirect-access-to-syslog", .kind = U_FLAG,
	  .dflt = "False", .policy = QUIET },
};
#define NUNSUPPORTED	(sizeof(unsupported_table) / sizeof(unsupported_table[0]))

/* One option found on the command line or in GUNICORN_CMD_ARGS: a
 * setting cunicorn honours (def) or one it does not (unsupported). */
struct option_op {
	const struct setting_def *def;
	const struct unsupported_def *unsupported;
	char *value;			/* NULL for a flag */
};

struct option_ops {
	struct option_op *ops;
	size_t len;
};

struct settings_private {
	struct option_ops cli;
	struct option_ops env;
	/* per unsupported_table row: its value now differs from gunicorn's
	 * default (the last source to give it decides) */
	unsigned char unsupported_given[NUNSUPPORTED];
};

#define FIELD(s, d, type)	((type *)(void *)((char *)(s) + (d)->off))

static void
error_line(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fputs("Error: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fflush(stderr);
}

static int
invalid(const struct setting_def *d, const char *value, const char *why)
{
	error_line("Invalid value for %s: %s (%s)", d->name,
	    value != NULL ? value : "None", why);
	return -1;
}

/* ---- string lists ---- */

static void
strlist_clear(struct strlist *l)
{
	for (size_t i = 0; i < l->len; i++)
		free(l->items[i]);
	free(l->items);
	l->items = NULL;
	l->len = 0;
}

static void
strlist_push(struct strlist *l, const char *item)
{
	l->items = xreallocarray(l->items, l->len + 1, sizeof(*l->items));
	l->items[l->len++] = xstrdup(item);
}

int
strlist_equal(const struct strlist *a, const struct strlist *b)
{
	if (a->len != b->len)
		return 0;
	for (size_t i = 0; i < a->len; i++)
		if (strcmp(a->items[i], b->items[i]) != 0)
			return 0;
	return 1;
}

void
strlist_assign(struct strlist *dst, const struct strlist *src)
{
	strlist_clear(dst);
	for (size_t i = 0; i < src->len; i++)
		strlist_push(dst, src->items[i]);
}

/* A copy of v without leading and trailing white space. */
static char *
strip_dup(const char *v)
{
	size_t len;
	char *r;

	while (isspace((unsigned char)*v))
		v++;
	len = strlen(v);
	while (len > 0 && isspace((unsigned char)v[len - 1]))
		len--;
	r = xmalloc(len + 1);
	memcpy(r, v, len);
	r[len] = '\0';
	return r;
}

/* ---- item validators ---- */

static int
all_digits(const char *p, size_t n)
{
	if (n == 0)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!isdigit((unsigned char)p[i]))
			return 0;
	return 1;
}

static const char *
check_bind(const char *v)
{
	const char *port;

	if (*v == '\0')
		return "empty address";
	if (strncmp(v, "unix:", 5) == 0)
		return v[5] != '\0' ? NULL : "unix: needs a path";
	if (strncmp(v, "fd://", 5) == 0)
		return all_digits(v + 5, strlen(v + 5)) ? NULL :
		    "fd:// needs a descriptor number";
	if (v[0] == '[') {
		const char *end = strchr(v, ']');
		if (end == NULL)
			return "unterminated [IPv6] address";
		if (end[1] == '\0')
			return NULL;
		if (end[1] != ':')
			return "expected [HOST]:PORT";
		port = end + 2;
	} else if ((port = strrchr(v, ':')) == NULL)
		return NULL;		/* HOST alone: port 8000 */
	else if (strchr(v, ':') != port)
		return NULL;		/* bare IPv6 address, no port */
	else
		port++;
	if (!all_digits(port, strlen(port)) || strlen(port) > 5 ||
	    atoi(port) > 65535)
		return "not a valid port number";
	return NULL;
}

static const char *
check_env(const char *v)
{
	return strchr(v, '=') != NULL && v[0] != '=' ? NULL :
	    "expected KEY=VALUE";
}

static const char *
check_dirty_app(const char *v)
{
	size_t path_len;
	int limit;

	if (dirty_app_spec_split(v, &path_len, &limit) == -1)
		return "expected module:Class or module:Class:N with N >= 1";
	return NULL;
}

/* gunicorn's engines: cunicorn polls for all three (no inotify). */
static const char *
check_reload_engine(const char *v)
{
	return strcmp(v, "auto") == 0 || strcmp(v, "poll") == 0 ||
	    strcmp(v, "inotify") == 0 ? NULL : "expected auto, poll or inotify";
}

static const char *
check_asgi_loop(const char *v)
{
	return strcmp(v, "auto") == 0 || strcmp(v, "asyncio") == 0 ||
	    strcmp(v, "uvloop") == 0 ? NULL : "expected auto, asyncio or uvloop";
}

static const char *
check_asgi_lifespan(const char *v)
{
	return strcmp(v, "auto") == 0 || strcmp(v, "on") == 0 ||
	    strcmp(v, "off") == 0 ? NULL : "expected auto, on or off";
}

/* As gunicorn's validate_file_exists: any kind of file, as of now. */
static const char *
check_file_exists(const char *v)
{
	struct stat st;

	return stat(v, &st) == 0 ? NULL : "no such file";
}

/* ---- scalar parsers ---- */

/* Decimal integer with optional sign and surrounding blanks. */
static int
parse_int(const char *v, long long *out)
{
	char *end;

	errno = 0;
	*out = strtoll(v, &end, 10);
	if (end == v || errno != 0)
		return -1;
	while (isspace((unsigned char)*end))
		end++;
	return *end == '\0' ? 0 : -1;
}

/* gunicorn's auto_int: "0022" octal, "0o22", "0x12", "0b1", "18". */
static int
parse_auto_int(const char *v, long long *out)
{
	char *t = strip_dup(v), *p = t, *end;
	int base = 10, neg = 0, rc = -1;

	if (*p == '+' || *p == '-')
		neg = (*p++ == '-');
	if (p[0] == '0' && p[1] != '\0') {
		switch (p[1]) {
		case 'o': case 'O': base = 8; p += 2; break;
		case 'x': case 'X': base = 16; p += 2; break;
		case 'b': case 'B': base = 2; p += 2; break;
		default: base = 8; p += 1; break;
		}
	}
	if (*p != '\0' && *p != '-' && *p != '+' && !isspace((unsigned char)*p)) {
		errno = 0;
		*out = strtoll(p, &end, base);
		if (errno == 0 && *end == '\0') {
			if (neg)
				*out = -*out;
			rc = 0;
		}
	}
	free(t);
	return rc;
}

static const char *
level_to_name(int level)
{
	switch (level) {
	case LOG_DEBUG: return "debug";
	case LOG_INFO: return "info";
	case LOG_WARNING: return "warning";
	case LOG_ERROR: return "error";
	case LOG_CRITICAL: return "critical";
	}
	return "info";
}

/* An absolute, existing directory for chdir, or NULL. */
static char *
resolve_dir(const char *v)
{
	char *path, *res;
	struct stat st;

	if (v[0] == '/')
		path = xstrdup(v);
	else {
		char *cwd = getcwd(NULL, 0);
		if (cwd == NULL)
			return NULL;
		path = xasprintf("%s/%s", cwd, v);
		free(cwd);
	}
	res = realpath(path, NULL);
	free(path);
	if (res != NULL && (stat(res, &st) == -1 || !S_ISDIR(st.st_mode))) {
		free(res);
		res = NULL;
	}
	return res;
}

/*
 * The one setter.  value is text (NULL: a flag given without value, or
 * None from a config file).  append: add one item to a list instead of
 * replacing it (repeated -b; items of a Python list).  Prints one error
 * line and returns -1 on a bad value; *s is then unchanged.
 */
static int
set_value(struct settings *s, const struct setting_def *d, const char *value,
    int append)
{
	long long n;
	char *t;
	const char *why;

	switch (d->type) {
	case T_INT:
		if (value == NULL || parse_int(value, &n) == -1)
			return invalid(d, value, "not an integer");
		if (n < d->min || n > INT_MAX)
			return invalid(d, value, d->min > 0 ?
			    "must be a positive integer" :
			    "must be a non-negative integer");
		*FIELD(s, d, int) = (int)n;
		return 0;
	case T_INT64:
		if (value == NULL || parse_int(value, &n) == -1)
			return invalid(d, value, "not an integer");
		if (n < d->min)
			return invalid(d, value, "must be a non-negative integer");
		*FIELD(s, d, long long) = n;
		return 0;
	case T_BOOL:
		if (value == NULL) {
			*FIELD(s, d, int) = 1;
			return 0;
		}
		t = strip_dup(value);
		if (strcasecmp(t, "true") == 0)
			*FIELD(s, d, int) = 1;
		else if (strcasecmp(t, "false") == 0)
			*FIELD(s, d, int) = 0;
		else {
			free(t);
			return invalid(d, value, "expected True or False");
		}
		free(t);
		return 0;
	case T_STR:
	case T_USER:
	case T_GROUP:
		if (value == NULL && !(d->flags & F_NULLABLE))
			return invalid(d, value, "a value is required");
		t = value != NULL ? strip_dup(value) : NULL;
		if (t != NULL && (d->type == T_USER || d->type == T_GROUP) &&
		    *t == '\0') {
			free(t);
			return invalid(d, value, "empty name");
		}
		if (t != NULL && d->check != NULL && (why = d->check(t)) != NULL) {
			free(t);
			return invalid(d, value, why);
		}
		free(*FIELD(s, d, char *));
		*FIELD(s, d, char *) = t;
		return 0;
	case T_LIST:
	case T_CSV:
		if (!append)
			strlist_clear(FIELD(s, d, struct strlist));
		if (value == NULL)
			return 0;
		if (d->type == T_LIST || append) {
			t = strip_dup(value);
			if (d->check != NULL && (why = d->check(t)) != NULL) {
				free(t);
				return invalid(d, value, why);
			}
			strlist_push(FIELD(s, d, struct strlist), t);
			free(t);
			return 0;
		}
		/* a comma-separated string */
		{
			char *copy = xstrdup(value), *save = NULL, *tok;
			for (tok = strtok_r(copy, ",", &save); tok != NULL;
			    tok = strtok_r(NULL, ",", &save)) {
				t = strip_dup(tok);
				if (*t != '\0')
					strlist_push(FIELD(s, d,
					    struct strlist), t);
				free(t);
			}
			free(copy);
		}
		return 0;
	case T_UMASK:
		if (value == NULL || parse_auto_int(value, &n) == -1)
			return invalid(d, value,
			    "not an integer; use octal such as 0022");
		if (n < 0 || n > 0777)
			return invalid(d, value, "must be between 0 and 0777");
		*FIELD(s, d, mode_t) = (mode_t)n;
		return 0;
	case T_LEVEL: {
		int level;
		t = value != NULL ? strip_dup(value) : NULL;
		level = t != NULL ? log_level_parse(t) : -1;
		free(t);
		if (level == -1)
			return invalid(d, value,
			    "expected debug, info, warning, error or critical");
		*FIELD(s, d, int) = level;
		return 0;
	}
	case T_CHDIR:
		if (value == NULL)
			return invalid(d, value, "a directory is required");
		t = strip_dup(value);
		{
			char *dir = resolve_dir(t);
			if (dir == NULL) {
				error_line("Invalid value for %s: %s "
				    "(can't chdir to '%s')", d->name, value, t);
				free(t);
				return -1;
			}
			free(t);
			free(*FIELD(s, d, char *));
			*FIELD(s, d, char *) = dir;
		}
		return 0;
	case T_SCHEME:
	case T_HOOK:
	case T_HELP:
	case T_VERSION:
		break;
	}
	return invalid(d, value, "cannot be set here");
}

/* ---- defaults ---- */

static void
scheme_defaults(struct settings *s)
{
	strlist_clear(&s->secure_scheme_names);
	strlist_clear(&s->secure_scheme_values);
	strlist_push(&s->secure_scheme_names, "X-FORWARDED-PROTOCOL");
	strlist_push(&s->secure_scheme_values, "ssl");
	strlist_push(&s->secure_scheme_names, "X-FORWARDED-PROTO");
	strlist_push(&s->secure_scheme_values, "https");
	strlist_push(&s->secure_scheme_names, "X-FORWARDED-SSL");
	strlist_push(&s->secure_scheme_values, "on");
}

static const struct setting_def *
find_setting(const char *name)
{
	for (size_t i = 0; i < NSETTINGS; i++)
		if (!(settings_table[i].flags & F_NOPRINT) &&
		    strcmp(settings_table[i].name, name) == 0)
			return &settings_table[i];
	return NULL;
}

/* gunicorn's sendfile when no source sets it: $SENDFILE if set (y, 1,
 * yes, true: on; anything else: off), else on. */
static int
sendfile_default(void)
{
	const char *env = getenv("SENDFILE");

	if (env == NULL)
		return 1;
	return strcasecmp(env, "y") == 0 || strcmp(env, "1") == 0 ||
	    strcasecmp(env, "yes") == 0 || strcasecmp(env, "true") == 0;
}

void
settings_defaults(struct settings *s)
{
	const char *env;
	char *cwd;

	memset(s, 0, sizeof(*s));
	s->priv = xcalloc(1, sizeof(struct settings_private));
	for (size_t i = 0; i < NSETTINGS; i++) {
		const struct setting_def *d = &settings_table[i];
		if (d->dflt != NULL && d->type != T_HOOK)
			(void)set_value(s, d, d->dflt, 0);
	}
	scheme_defaults(s);
	s->sendfile = sendfile_default();
	s->uid = geteuid();
	s->gid = getegid();
	if ((cwd = getcwd(NULL, 0)) != NULL) {
		s->chdir = cwd;
	}

	if ((env = getenv("PORT")) != NULL) {
		char *b = xasprintf("0.0.0.0:%s", env);
		if (set_value(s, find_setting("bind"), b, 0) == -1)
			(void)set_value(s, find_setting("bind"),
			    "127.0.0.1:8000", 0);
		free(b);
	}
	if ((env = getenv("WEB_CONCURRENCY")) != NULL &&
	    set_value(s, find_setting("workers"), env, 0) == -1)
		fprintf(stderr, "Warning: ignoring WEB_CONCURRENCY=%s\n", env);
	if ((env = getenv("FORWARDED_ALLOW_IPS")) != NULL)
		(void)set_value(s, find_setting("forwarded_allow_ips"), env, 0);
	if ((env = getenv("VIRTUAL_ENV")) != NULL && *env != '\0')
		s->virtualenv = xstrdup(env);
}

/* ---- command line ---- */

static void
print_help(const char *prog)
{
	printf("usage: %s [OPTIONS] [APP_MODULE]\n\n"
	    "APP_MODULE is module:callable (callable defaults to "
	    "'application').\n\noptions:\n", prog);
	for (size_t i = 0; i < NSETTINGS; i++) {
		const struct setting_def *d = &settings_table[i];
		char flags[128];
		int len = 0;

		if (d->long_flag == NULL)
			continue;
		if (d->short_flag != NULL)
			len += snprintf(flags + len, sizeof(flags) - len,
			    "%s%s%s, ", d->short_flag, d->meta ? " " : "",
			    d->meta ? d->meta : "");
		len += snprintf(flags + len, sizeof(flags) - len, "%s%s%s",
		    d->long_flag, d->meta ? " " : "", d->meta ? d->meta : "");
		if (d->alias_flag != NULL)
			snprintf(flags + len, sizeof(flags) - len, ", %s",
			    d->alias_flag);
		if (strlen(flags) > 30)
			printf("  %s\n  %-30s  %s", flags, "", d->help);
		else
			printf("  %-30s  %s", flags, d->help);
		if (d->dflt != NULL)
			printf(" [%s]", d->dflt);
		putchar('\n');
	}
	printf("\n--log-file is an alias of --error-logfile.  Settings may also "
	    "come from\nGUNICORN_CMD_ARGS and a Python config file (-c); the "
	    "command line wins.\ngunicorn's other settings (--statsd-host, "
	    "--spew, ...) are accepted and\nignored with a warning; "
	    "TLS, the PROXY protocol, uWSGI and --paste are refused.\n");
}

static const char *
prog_name(const char *argv0)
{
	const char *p;

	if (argv0 == NULL)
		return "cunicorn";
	p = strrchr(argv0, '/');
	return p != NULL ? p + 1 : argv0;
}

/* -h and -v */
static void __attribute__((noreturn))
print_and_exit(const struct setting_def *d, const char *prog)
{
	if (d->type == T_HELP)
		print_help(prog);
	else
		printf("%s (version %s, gunicorn-compatible %s)\n", prog,
		    CUNICORN_VERSION, GUNICORN_COMPAT_VERSION);
	exit(0);
}

/* A flag's row: in settings_table (def) or in unsupported_table. */
struct flag_row {
	const struct setting_def *def;
	const struct unsupported_def *unsupported;
};

/* Whether flag f is name (exact), or starts with it (prefix). */
static int
flag_matches(const char *f, const char *name, size_t len, int prefix)
{
	if (f == NULL || f[1] != '-' || strncmp(f, name, len) != 0)
		return 0;
	return prefix || f[len] == '\0';
}

/*
 * The row whose long flag is name, in either table: an exact match, else
 * a unique prefix as argparse allows (prefixes of gunicorn's flags cunicorn
 * does not implement count, so "--re" is as ambiguous as in gunicorn).
 * Returns 0 with *row cleared when nothing matches; *ambiguous is set
 * when several rows do.
 */
static int
find_long(const char *name, size_t len, int *ambiguous, struct flag_row *row)
{
	int found = 0;

	*ambiguous = 0;
	memset(row, 0, sizeof(*row));
	for (int prefix = 0; prefix < 2 && !found; prefix++) {
		for (size_t i = 0; i < NSETTINGS; i++) {
			const struct setting_def *d = &settings_table[i];
			if ((flag_matches(d->long_flag, name, len, prefix) ||
			    flag_matches(d->alias_flag, name, len, prefix)) &&
			    row->def != d) {
				*ambiguous |= found;
				found = 1;
				row->def = d;
			}
		}
		for (size_t i = 0; i < NUNSUPPORTED; i++) {
			const struct unsupported_def *u = &unsupported_table[i];
			if ((flag_matches(u->flag, name, len, prefix) ||
			    flag_matches(u->alias, name, len, prefix)) &&
			    row->unsupported != u) {
				*ambiguous |= found;
				found = 1;
				row->unsupported = u;
			}
		}
	}
	if (*ambiguous)
		memset(row, 0, sizeof(*row));
	return found && !*ambiguous;
}

/* -c: a row of settings_table, else a flag of unsupported_table (-R). */
static int
find_short(char c, struct flag_row *row)
{
	memset(row, 0, sizeof(*row));
	for (size_t i = 0; i < NSETTINGS; i++) {
		const char *f = settings_table[i].short_flag;
		if (f != NULL && f[1] == c) {
			row->def = &settings_table[i];
			return 1;
		}
	}
	for (size_t i = 0; i < NUNSUPPORTED; i++) {
		const char *f = unsupported_table[i].alias;
		if (f != NULL && f[1] != '-' && f[1] == c) {
			row->unsupported = &unsupported_table[i];
			return 1;
		}
	}
	return 0;
}

static void
ops_push_row(struct option_ops *o, const struct setting_def *d,
    const struct unsupported_def *u, const char *v)
{
	o->ops = xreallocarray(o->ops, o->len + 1, sizeof(*o->ops));
	o->ops[o->len].def = d;
	o->ops[o->len].unsupported = u;
	o->ops[o->len].value = v != NULL ? xstrdup(v) : NULL;
	o->len++;
}

static void
ops_push(struct option_ops *o, const struct setting_def *d, const char *v)
{
	ops_push_row(o, d, NULL, v);
}

/* What a T_BOOL flag given alone means: True, or False (--no-sendfile). */
static const char *
bool_flag_value(const struct setting_def *d)
{
	return (d->flags & F_STORE_FALSE) ? "false" : NULL;
}

static void
ops_clear(struct option_ops *o)
{
	for (size_t i = 0; i < o->len; i++)
		free(o->ops[i].value);
	free(o->ops);
	o->ops = NULL;
	o->len = 0;
}

static const char *
flag_names(const struct flag_row *row, char *buf, size_t len)
{
	const struct setting_def *d = row->def;
	const struct unsupported_def *u = row->unsupported;

	if (u != NULL && u->alias != NULL && u->alias[1] != '-')
		snprintf(buf, len, "%s/%s", u->alias, u->flag);
	else if (u != NULL)
		snprintf(buf, len, "%s", u->flag);
	else if (d->short_flag != NULL)
		snprintf(buf, len, "%s/%s", d->short_flag, d->long_flag);
	else
		snprintf(buf, len, "%s", d->long_flag);
	return buf;
}

/* Whether word is one of the '|'-separated choices. */
static int
is_choice(const char *choices, const char *word)
{
	size_t n = strlen(word);

	for (const char *p = choices; p != NULL && *p != '\0';) {
		const char *end = strchr(p, '|');
		size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
		if (len == n && strncmp(p, word, n) == 0)
			return 1;
		p = end != NULL ? end + 1 : NULL;
	}
	return 0;
}

/* argparse takes "-1" as a value but "-x" as the next option. */
static int
looks_like_option(const char *a)
{
	long long n;

	if (a[0] != '-' || a[1] == '\0')
		return 0;
	return parse_int(a, &n) == -1;
}

/*
 * Turn words into operations.  Positional words go to *app (the first;
 * a second is an error) unless app is NULL (GUNICORN_CMD_ARGS: ignored,
 * as gunicorn does).  Handles -h and -v (print, exit 0).
 */
static int
parse_words(struct option_ops *o, int nwords, char **words, char **app,
    const char *prog)
{
	char fb[64];
	int only_positional = 0;

	for (int i = 0; i < nwords; i++) {
		const char *a = words[i], *value = NULL, *eq;
		const struct setting_def *d;
		const struct unsupported_def *u;
		struct flag_row row;
		int ambiguous, has_value = 0, is_flag;

		if (only_positional || a[0] != '-' || a[1] == '\0') {
			if (app == NULL)
				continue;
			if (*app != NULL) {
				error_line("unrecognized arguments: %s", a);
				return -1;
			}
			*app = xstrdup(a);
			continue;
		}
		if (strcmp(a, "--") == 0) {
			only_positional = 1;
			continue;
		}
		if (a[1] == '-') {
			eq = strchr(a, '=');
			if (!find_long(a, eq ? (size_t)(eq - a) : strlen(a),
			    &ambiguous, &row)) {
				if (ambiguous)
					error_line("ambiguous option: %.*s",
					    eq ? (int)(eq - a) : (int)strlen(a),
					    a);
				else
					error_line("unrecognized arguments: %s",
					    a);
				return -1;
			}
			if (eq != NULL) {
				value = eq + 1;
				has_value = 1;
			}
		} else {
			/* "-w4", "-w=4", "-w 4"; "-Dw4": flags, then one
			 * option that may take the rest as its value */
			const char *p = a + 1;
			for (;;) {
				if (!find_short(*p, &row)) {
					error_line("unrecognized arguments: %s",
					    a);
					return -1;
				}
				d = row.def;
				if (d != NULL && d->type != T_BOOL &&
				    d->type != T_HELP && d->type != T_VERSION) {
					if (p[1] != '\0') {
						value = p[1] == '=' ? p + 2 :
						    p + 1;
						has_value = 1;
					}
					break;
				}
				if (p[1] == '\0')
					break;
				if (d == NULL)		/* -R */
					ops_push_row(o, NULL, row.unsupported,
					    "True");
				else if (d->type == T_BOOL)
					ops_push(o, d, bool_flag_value(d));
				else
					print_and_exit(d, prog);
				p++;
			}
		}
		d = row.def;
		u = row.unsupported;

		if (d != NULL && (d->type == T_HELP || d->type == T_VERSION))
			print_and_exit(d, prog);
		is_flag = d != NULL ? d->type == T_BOOL : u->kind == U_FLAG;
		if (is_flag) {
			if (has_value) {
				error_line("argument %s: ignored explicit "
				    "argument '%s'", flag_names(&row, fb,
				    sizeof(fb)), value);
				return -1;
			}
			if (d != NULL)
				ops_push(o, d, bool_flag_value(d));
			else
				ops_push_row(o, NULL, u, "True");
			continue;
		}
		if (!has_value && u != NULL && u->kind == U_OPTIONAL) {
			/* the next word is its value only if it is a choice;
			 * alone, the flag means the first choice */
			char first[32];
			snprintf(first, sizeof(first), "%.*s",
			    (int)strcspn(u->choices, "|"), u->choices);
			if (i + 1 < nwords && is_choice(u->choices, words[i + 1]))
				ops_push_row(o, NULL, u, words[++i]);
			else
				ops_push_row(o, NULL, u, first);
			continue;
		}
		if (!has_value) {
			if (i + 1 >= nwords || looks_like_option(words[i + 1])) {
				error_line("argument %s: expected one argument",
				    flag_names(&row, fb, sizeof(fb)));
				return -1;
			}
			value = words[++i];
		}
		ops_push_row(o, d, u, value);
	}
	return 0;
}

/* ---- settings cunicorn does not implement ---- */

/* "a, b,,c" as "a,b,c" (new string). */
static char *
list_canonical(const char *v)
{
	char *copy = xstrdup(v), *out = xmalloc(strlen(v) + 1), *save = NULL;
	size_t len = 0;

	for (char *tok = strtok_r(copy, ",", &save); tok != NULL;
	    tok = strtok_r(NULL, ",", &save)) {
		char *t = strip_dup(tok);
		if (*t != '\0') {
			if (len > 0)
				out[len++] = ',';
			memcpy(out + len, t, strlen(t));
			len += strlen(t);
		}
		free(t);
	}
	out[len] = '\0';
	free(copy);
	return out;
}

/* Whether value (text; NULL for None) is gunicorn's default for u. */
static int
unsupported_is_default(const struct unsupported_def *u, const char *value)
{
	char *v, *alts, *save = NULL;
	int same = 0;

	if (value == NULL)
		return 1;
	v = (u->compare & U_LIST) ? list_canonical(value) : strip_dup(value);
	if (*v == '\0' && (u->dflt == NULL || *u->dflt == '\0'))
		same = 1;
	else if (u->dflt != NULL) {
		alts = xstrdup(u->dflt);
		for (char *alt = strtok_r(alts, "|", &save);
		    alt != NULL && !same; alt = strtok_r(NULL, "|", &save)) {
			long long a, b;
			if (u->compare & U_NUMBER)
				same = parse_auto_int(v, &a) == 0 &&
				    parse_auto_int(alt, &b) == 0 && a == b;
			else
				same = strcasecmp(v, alt) == 0;
		}
		free(alts);
	}
	free(v);
	return same;
}

/* A source gave u this value: the latest one decides (precedence). */
static void
unsupported_set(struct settings *s, const struct unsupported_def *u,
    const char *value)
{
	struct settings_private *p = s->priv;

	p->unsupported_given[u - unsupported_table] =
	    !unsupported_is_default(u, value);
}

/* Refuse or warn about the unsupported settings given (see the table). */
static int
unsupported_check(const struct settings *s)
{
	const struct settings_private *p = s->priv;

	for (size_t i = 0; i < NUNSUPPORTED; i++)
		if (p->unsupported_given[i] &&
		    unsupported_table[i].policy == REFUSE) {
			error_line("%s: %s", unsupported_table[i].name,
			    unsupported_table[i].why);
			return -1;
		}
	for (size_t i = 0; i < NUNSUPPORTED; i++)
		if (p->unsupported_given[i] &&
		    unsupported_table[i].policy == WARN)
			log_warnx("Setting '%s' is not supported by cunicorn; "
			    "ignored", unsupported_table[i].name);
	return 0;
}

/* Apply recorded operations; a list given by this source replaces. */
static int
replay(struct settings *s, const struct option_ops *o)
{
	unsigned char seen[NSETTINGS];

	memset(seen, 0, sizeof(seen));
	for (size_t i = 0; i < o->len; i++) {
		const struct setting_def *d = o->ops[i].def;
		size_t idx;
		int append = 0;

		if (o->ops[i].unsupported != NULL) {
			unsupported_set(s, o->ops[i].unsupported,
			    o->ops[i].value);
			continue;
		}
		idx = (size_t)(d - settings_table);
		if (d->type == T_LIST) {
			append = seen[idx];
			seen[idx] = 1;
		}
		if (set_value(s, d, o->ops[i].value, append) == -1)
			return -1;
	}
	return 0;
}

int
settings_parse_args(struct settings *s, int argc, char **argv)
{
	struct settings_private *p = s->priv;

	ops_clear(&p->cli);
	free(s->app_uri);
	s->app_uri = NULL;
	if (parse_words(&p->cli, argc - 1, argv + 1, &s->app_uri,
	    prog_name(argc > 0 ? argv[0] : NULL)) == -1)
		return -1;
	return replay(s, &p->cli);
}

/* shlex.split(): blanks separate words; '...' is literal; "..." knows
 * \\ \" \$ \` and \newline; a backslash outside quotes escapes. */
static int
split_words(const char *in, int *nout, char ***out)
{
	char **words = NULL, *buf = xmalloc(strlen(in) + 1);
	int n = 0, in_word = 0;
	size_t len = 0;
	const char *p = in;

	for (;;) {
		char c = *p;
		if (c == '\0' || isspace((unsigned char)c)) {
			if (in_word) {
				buf[len] = '\0';
				words = xreallocarray(words, n + 1,
				    sizeof(*words));
				words[n++] = xstrdup(buf);
				len = 0;
				in_word = 0;
			}
			if (c == '\0')
				break;
			p++;
			continue;
		}
		in_word = 1;
		if (c == '\'') {
			const char *end = strchr(p + 1, '\'');
			if (end == NULL)
				goto unclosed;
			memcpy(buf + len, p + 1, end - p - 1);
			len += end - p - 1;
			p = end + 1;
		} else if (c == '"') {
			for (p++; *p != '"'; p++) {
				if (*p == '\0')
					goto unclosed;
				if (*p == '\\' && p[1] != '\0' &&
				    strchr("\\\"$`\n", p[1]) != NULL)
					p++;
				buf[len++] = *p;
			}
			p++;
		} else if (c == '\\') {
			if (p[1] == '\0') {
				error_line("GUNICORN_CMD_ARGS: No escaped "
				    "character");
				goto fail;
			}
			buf[len++] = p[1];
			p += 2;
		} else
			buf[len++] = *p++;
	}
	free(buf);
	*nout = n;
	*out = words;
	return 0;
unclosed:
	error_line("GUNICORN_CMD_ARGS: No closing quotation");
fail:
	for (int i = 0; i < n; i++)
		free(words[i]);
	free(words);
	free(buf);
	return -1;
}

int
settings_parse_env(struct settings *s, const char *cmd_args)
{
	struct settings_private *p = s->priv;
	char **words;
	int n, rc;

	ops_clear(&p->env);
	if (split_words(cmd_args, &n, &words) == -1)
		return -1;
	rc = parse_words(&p->env, n, words, NULL, "cunicorn");
	for (int i = 0; i < n; i++)
		free(words[i]);
	free(words);
	if (rc == -1)
		return -1;
	return settings_apply_overrides(s);
}

int
settings_apply_overrides(struct settings *s)
{
	struct settings_private *p = s->priv;

	if (replay(s, &p->env) == -1)
		return -1;
	return replay(s, &p->cli);
}

const char *
settings_default_config_path(void)
{
	return access("gunicorn.conf.py", F_OK) == 0 ? "gunicorn.conf.py" :
	    NULL;
}

/* ---- config file (Python) ---- */

/* The helpers that are simpler in Python (loading the file like gunicorn,
 * an exception as one line, a hook's arity, the no-op hook) live in
 * python/cunicorn/_config.py; imported on first use. */
static PyObject *helpers;	/* cunicorn._config's globals (dict) */

static PyObject *
helper(const char *name)
{
	if (helpers == NULL) {
		PyObject *mod = PyImport_ImportModule("cunicorn._config");
		if (mod == NULL)
			return NULL;
		helpers = PyModule_GetDict(mod);	/* borrowed ... */
		Py_INCREF(helpers);			/* ... now ours */
		Py_DECREF(mod);
	}
	return PyDict_GetItemString(helpers, name);	/* borrowed */
}

/* str(o) as a C string (new), or "?" */
static char *
py_text(PyObject *o)
{
	PyObject *str = PyObject_Str(o);
	const char *u = str != NULL ? PyUnicode_AsUTF8(str) : NULL;
	char *r = xstrdup(u != NULL ? u : "?");

	Py_XDECREF(str);
	PyErr_Clear();
	return r;
}

static int
invalid_py(const struct setting_def *d, PyObject *v, const char *why)
{
	char *t = py_text(v);

	invalid(d, t, why);
	free(t);
	return -1;
}

/* The current exception as one line, cleared. */
static char *
exception_line(const char *location)
{
	PyObject *type, *value, *tb, *fn, *res;
	char *line;

	PyErr_Fetch(&type, &value, &tb);
	PyErr_NormalizeException(&type, &value, &tb);
	if (value == NULL)
		return xstrdup("unknown error");
	if (tb != NULL)
		PyException_SetTraceback(value, tb);
	fn = helper("describe");
	res = fn != NULL ? PyObject_CallFunction(fn, "Os", value, location) :
	    NULL;
	if (res != NULL && PyUnicode_Check(res))
		line = xstrdup(PyUnicode_AsUTF8(res));
	else
		line = py_text(value);
	Py_XDECREF(res);
	Py_XDECREF(type);
	Py_XDECREF(value);
	Py_XDECREF(tb);
	PyErr_Clear();
	return line;
}

static int
set_hook(struct settings *s, const struct setting_def *d, PyObject *v)
{
	PyObject *fn, *f;

	if (v == Py_None) {
		Py_XDECREF((PyObject *)s->hooks[d->hook]);
		s->hooks[d->hook] = NULL;
		return 0;
	}
	if ((fn = helper("hook")) == NULL ||
	    (f = PyObject_CallFunction(fn, "Ois", v, d->arity, d->name)) ==
	    NULL) {
		PyObject *type, *value, *tb;
		char *why;

		PyErr_Fetch(&type, &value, &tb);
		why = value != NULL ? py_text(value) : xstrdup("invalid hook");
		Py_XDECREF(type);
		Py_XDECREF(value);
		Py_XDECREF(tb);
		invalid_py(d, v, why);
		free(why);
		return -1;
	}
	Py_XDECREF((PyObject *)s->hooks[d->hook]);
	s->hooks[d->hook] = f;
	return 0;
}

static int
set_scheme(struct settings *s, const struct setting_def *d, PyObject *v)
{
	struct strlist names = { NULL, 0 }, values = { NULL, 0 };
	PyObject *key, *val;
	Py_ssize_t pos = 0;

	if (!PyDict_Check(v))
		return invalid_py(d, v, "expected a dict");
	while (PyDict_Next(v, &pos, &key, &val)) {
		const char *k, *x;
		char *up;

		if (!PyUnicode_Check(key) || !PyUnicode_Check(val) ||
		    (k = PyUnicode_AsUTF8(key)) == NULL ||
		    (x = PyUnicode_AsUTF8(val)) == NULL) {
			PyErr_Clear();
			strlist_clear(&names);
			strlist_clear(&values);
			return invalid_py(d, v, "keys and values must be strings");
		}
		up = strip_dup(k);
		for (char *c = up; *c; c++)
			*c = (char)toupper((unsigned char)*c);
		strlist_push(&names, up);
		strlist_push(&values, x);
		free(up);
	}
	strlist_clear(&s->secure_scheme_names);
	strlist_clear(&s->secure_scheme_values);
	s->secure_scheme_names = names;
	s->secure_scheme_values = values;
	return 0;
}

/* A list setting from a str (one item / comma list), None, or a
 * sequence of str. */
static int
set_list_py(struct settings *s, const struct setting_def *d, PyObject *v)
{
	struct strlist *l = FIELD(s, d, struct strlist), saved = *l;
	PyObject *seq;
	Py_ssize_t n;

	if (PyUnicode_Check(v)) {
		const char *u = PyUnicode_AsUTF8(v);
		if (u == NULL) {
			PyErr_Clear();
			return invalid_py(d, v, "not valid text");
		}
		return set_value(s, d, u, 0);
	}
	if (v == Py_None || v == Py_False) {
		strlist_clear(l);
		return 0;
	}
	if (PyBytes_Check(v) || PyDict_Check(v) ||
	    (seq = PySequence_Fast(v, "")) == NULL) {
		PyErr_Clear();
		return invalid_py(d, v, "expected a string or a list of strings");
	}
	l->items = NULL;
	l->len = 0;
	n = PySequence_Fast_GET_SIZE(seq);
	for (Py_ssize_t i = 0; i < n; i++) {
		PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
		const char *u;
		if (!PyUnicode_Check(item) ||
		    (u = PyUnicode_AsUTF8(item)) == NULL) {
			PyErr_Clear();
			invalid_py(d, v, "expected a list of strings");
			goto fail;
		}
		if (set_value(s, d, u, 1) == -1)
			goto fail;
	}
	Py_DECREF(seq);
	strlist_clear(&saved);
	return 0;
fail:
	Py_DECREF(seq);
	strlist_clear(l);
	*l = saved;
	return -1;
}

/* A config-file value: converted to the row's text form, then set. */
static int
set_from_python(struct settings *s, const struct setting_def *d, PyObject *v)
{
	char *text;
	int rc;

	switch (d->type) {
	case T_HOOK:
		return set_hook(s, d, v);
	case T_SCHEME:
		return set_scheme(s, d, v);
	case T_LIST:
	case T_CSV:
		return set_list_py(s, d, v);
	default:
		break;
	}
	if (v == Py_None) {
		if (d->type == T_BOOL && d->off == OFF(sendfile)) {
			s->sendfile = sendfile_default();	/* gunicorn's None */
			return 0;
		}
		if (d->type == T_BOOL)
			return set_value(s, d, "false", 0);
		if (d->flags & F_NULLABLE)
			return set_value(s, d, NULL, 0);
		return invalid_py(d, v, "a value is required");
	}
	if (PyBool_Check(v)) {
		if (d->type == T_BOOL)
			return set_value(s, d, v == Py_True ? "true" : "false", 0);
		if (d->type != T_INT && d->type != T_INT64)
			return invalid_py(d, v, d->type == T_UMASK ?
			    "expected an integer" : "expected a string");
		return set_value(s, d, v == Py_True ? "1" : "0", 0);
	}
	if (PyLong_Check(v)) {
		switch (d->type) {
		case T_INT: case T_INT64: case T_UMASK: case T_USER:
		case T_GROUP:
			break;
		case T_BOOL:
			return invalid_py(d, v, "expected True or False");
		default:
			return invalid_py(d, v, "expected a string");
		}
		text = py_text(v);
		rc = set_value(s, d, text, 0);
		free(text);
		return rc;
	}
	if (PyUnicode_Check(v)) {
		const char *u = PyUnicode_AsUTF8(v);
		if (u == NULL) {
			PyErr_Clear();
			return invalid_py(d, v, "not valid text");
		}
		return set_value(s, d, u, 0);
	}
	switch (d->type) {
	case T_INT: case T_INT64: case T_UMASK:
		return invalid_py(d, v, "expected an integer");
	case T_BOOL:
		return invalid_py(d, v, "expected True or False");
	default:
		return invalid_py(d, v, "expected a string");
	}
}

/*
 * A config-file value of a setting cunicorn does not implement, as the
 * text a command line would give (new string; NULL for None): True or
 * False, an integer in decimal (IntEnums too), a string, the items of a
 * list, tuple or set joined by commas, "" for an empty one or an empty
 * dict, "<object>" for anything else (a callable, a non-empty dict).
 */
static char *
unsupported_text(PyObject *v)
{
	PyObject *seq;
	const char *u;
	char *r;

	if (v == Py_None)
		return NULL;
	if (PyBool_Check(v))
		return xstrdup(v == Py_True ? "True" : "False");
	if (PyLong_Check(v)) {
		long long n = PyLong_AsLongLong(v);
		if (n == -1 && PyErr_Occurred()) {
			PyErr_Clear();
			return xstrdup("<object>");
		}
		return xasprintf("%lld", n);
	}
	if (PyUnicode_Check(v)) {
		if ((u = PyUnicode_AsUTF8(v)) != NULL)
			return xstrdup(u);
		PyErr_Clear();
		return xstrdup("<object>");
	}
	if (PyDict_Check(v))
		return xstrdup(PyDict_Size(v) == 0 ? "" : "<object>");
	if (!PyList_Check(v) && !PyTuple_Check(v) && !PyAnySet_Check(v))
		return xstrdup("<object>");
	if ((seq = PySequence_Fast(v, "")) == NULL) {
		PyErr_Clear();
		return xstrdup("<object>");
	}
	r = xstrdup("");
	for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
		PyObject *it = PySequence_Fast_GET_ITEM(seq, i);
		/* one level only: a list holding itself must not recurse */
		char *item = PyList_Check(it) || PyTuple_Check(it) ||
		    PyAnySet_Check(it) ? xstrdup("<object>") : unsupported_text(it);
		char *joined = xasprintf("%s%s%s", r, i > 0 ? "," : "",
		    item != NULL ? item : "None");
		free(item);
		free(r);
		r = joined;
	}
	Py_DECREF(seq);
	return r;
}

int
settings_load_file(struct settings *s, const char *location)
{
	PyObject *fn, *ns;
	/* a copy: location may be s->config, which the overrides replace */
	char *path = xstrdup(location);
	const char *fs = path;
	int rc = -1;

	if (strncmp(path, "file:", 5) == 0)
		fs = path + 5;
	if (strncmp(path, "python:", 7) != 0 && access(fs, F_OK) == -1) {
		error_line("config file '%s' doesn't exist", fs);
		goto out;
	}
	if (strncmp(path, "python:", 7) != 0 && strncmp(path, "file:", 5) != 0) {
		size_t n = strlen(path);
		if (n < 3 || strcmp(path + n - 3, ".py") != 0)
			fprintf(stderr, "Warning: configuration file should "
			    "have a valid Python extension.\n");
	}
	if (s->config == NULL)
		s->config = xstrdup(path);

	if ((fn = helper("load")) == NULL ||
	    (ns = PyObject_CallFunction(fn, "s", path)) == NULL) {
		char *line = exception_line(path);
		error_line("config file '%s': %s", fs, line);
		free(line);
		goto out;
	}
	for (size_t i = 0; i < NSETTINGS; i++) {
		const struct setting_def *d = &settings_table[i];
		PyObject *v;

		if (d->flags & F_NOPRINT)
			continue;
		if ((v = PyDict_GetItemString(ns, d->name)) == NULL)
			continue;
		if (d->flags & F_NOFILE) {
			if (strcmp(d->name, "virtualenv") == 0)
				fprintf(stderr, "Warning: virtualenv in a "
				    "config file has no effect; use "
				    "--virtualenv or $VIRTUAL_ENV\n");
			continue;
		}
		Py_INCREF(v);
		if (set_from_python(s, d, v) == -1) {
			Py_DECREF(v);
			Py_DECREF(ns);
			PyErr_Clear();
			goto out;
		}
		Py_DECREF(v);
	}
	for (size_t i = 0; i < NUNSUPPORTED; i++) {
		PyObject *v = PyDict_GetItemString(ns, unsupported_table[i].name);
		char *text;

		if (v == NULL)
			continue;
		text = unsupported_text(v);
		unsupported_set(s, &unsupported_table[i], text);
		free(text);
	}
	Py_DECREF(ns);
	rc = settings_apply_overrides(s);
out:
	free(path);
	return rc;
}

/* ---- finalize ---- */

static int
resolve_id(const char *name, int is_group, unsigned *out)
{
	if (all_digits(name, strlen(name))) {
		long long n;
		if (parse_int(name, &n) == -1 || n > UINT_MAX - 1)
			return -1;
		*out = (unsigned)n;
		return 0;
	}
	if (is_group) {
		struct group *gr = getgrnam(name);
		if (gr == NULL)
			return -1;
		*out = gr->gr_gid;
	} else {
		struct passwd *pw = getpwnam(name);
		if (pw == NULL)
			return -1;
		*out = pw->pw_uid;
	}
	return 0;
}

static int worker_class_resolve(struct settings *s);

int
settings_finalize(struct settings *s)
{
	unsigned id;

	if (unsupported_check(s) == -1)
		return -1;
	if (s->app_uri == NULL && s->wsgi_app != NULL && *s->wsgi_app != '\0')
		s->app_uri = xstrdup(s->wsgi_app);
	if (s->app_uri == NULL || *s->app_uri == '\0') {
		error_line("No application module specified.");
		return -1;
	}
	if (s->default_proc_name == NULL)
		s->default_proc_name = xstrdup(s->app_uri);

	if (s->user != NULL) {
		if (resolve_id(s->user, 0, &id) == -1) {
			error_line("No such user: '%s'", s->user);
			return -1;
		}
		s->uid = (uid_t)id;
	} else
		s->uid = geteuid();
	if (s->group != NULL) {
		if (resolve_id(s->group, 1, &id) == -1) {
			error_line("No such group: '%s'", s->group);
			return -1;
		}
		s->gid = (gid_t)id;
	} else
		s->gid = getegid();

	if (s->bind.len == 0) {
		error_line("Invalid value for bind: [] (no address to bind)");
		return -1;
	}
	if (worker_class_resolve(s) == -1)
		return -1;
	/* as gunicorn's HTTP parser does */
	if (s->limit_request_line > 8190)
		s->limit_request_line = 8190;
	if (s->limit_request_fields == 0 || s->limit_request_fields > 32768)
		s->limit_request_fields = 32768;
	return 0;
}

/*
 * worker_class to one of http_worker.c's worker types: "sync",
 * "gthread" or "asgi" (gunicorn's names, short or as a class path;
 * uvicorn's two gunicorn worker classes run asgi, with one info line).  As gunicorn,
 * sync with threads > 1 runs gthread.  gevent and eventlet (many
 * connections per worker) run gthread with a warning; other classes run
 * sync with a warning.
 */
static int
worker_class_resolve(struct settings *s)
{
	static const struct { const char *name, *type; } known[] = {
		{ "sync", "sync" },
		{ "gunicorn.workers.sync.SyncWorker", "sync" },
		{ "gthread", "gthread" },
		{ "gunicorn.workers.gthread.ThreadWorker", "gthread" },
		{ "asgi", "asgi" },
		{ "gunicorn.workers.gasgi.ASGIWorker", "asgi" },
	};
	/* uvicorn's gunicorn workers: the same app contract, run by ours */
	static const char *const uvicorn[] = {
		"uvicorn.workers.UvicornWorker",
		"uvicorn.workers.UvicornH11Worker",
	};
	const char *wc = s->worker_class, *type = NULL;

	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (strcmp(wc, known[i].name) == 0)
			type = known[i].type;
	for (size_t i = 0; type == NULL && i < sizeof(uvicorn) / sizeof(uvicorn[0]); i++)
		if (strcmp(wc, uvicorn[i]) == 0) {
			type = "asgi";
			log_info("worker class %s: running cunicorn's asgi worker", wc);
		}
	if (type == NULL) {
		int many = strstr(wc, "gevent") != NULL || strstr(wc, "eventlet") != NULL;
		type = many ? "gthread" : "sync";
		log_warnx("worker class %s not available; running %s workers", wc, type);
	}
	if (strcmp(type, "sync") == 0 && s->threads > 1)
		type = "gthread";
	if (strcmp(type, wc) != 0) {
		free(s->worker_class);
		s->worker_class = xstrdup(type);
	}
	return 0;
}

/* ---- printing and Python view ---- */

/* Python's repr() of a str (ASCII escapes; other text as is). */
static void
print_repr(FILE *f, const char *v)
{
	char q = (strchr(v, '\'') != NULL && strchr(v, '"') == NULL) ? '"' : '\'';

	fputc(q, f);
	for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
		switch (*p) {
		case '\\': fputs("\\\\", f); break;
		case '\n': fputs("\\n", f); break;
		case '\r': fputs("\\r", f); break;
		case '\t': fputs("\\t", f); break;
		default:
			if (*p == (unsigned char)q)
				fprintf(f, "\\%c", q);
			else if (*p < 0x20 || *p == 0x7f)
				fprintf(f, "\\x%02x", *p);
			else
				fputc(*p, f);
		}
	}
	fputc(q, f);
}

static void
print_list(FILE *f, const struct strlist *l)
{
	fputc('[', f);
	for (size_t i = 0; i < l->len; i++) {
		if (i > 0)
			fputs(", ", f);
		print_repr(f, l->items[i]);
	}
	fputc(']', f);
}

static void
print_value(FILE *f, const struct settings *s, const struct setting_def *d)
{
	switch (d->type) {
	case T_INT:
		fprintf(f, "%d", *FIELD(s, d, int));
		break;
	case T_INT64:
		fprintf(f, "%lld", *FIELD(s, d, long long));
		break;
	case T_BOOL:
		fputs(*FIELD(s, d, int) ? "True" : "False", f);
		break;
	case T_STR:
	case T_CHDIR: {
		const char *v = *FIELD(s, d, char *);
		/* gunicorn shows its default config path even when absent */
		if (v == NULL && d->off == OFF(config))
			v = "./gunicorn.conf.py";
		fputs(v != NULL ? v : "None", f);
		break;
	}
	case T_LIST:
		print_list(f, FIELD(s, d, struct strlist));
		break;
	case T_CSV: {
		const struct strlist *l = FIELD(s, d, struct strlist);
		if (!(d->flags & F_JOINED))
			print_list(f, l);
		else if (l->len == 0)
			fputs("None", f);
		else
			for (size_t i = 0; i < l->len; i++)
				fprintf(f, "%s%s", i ? "," : "", l->items[i]);
		break;
	}
	case T_UMASK:
		fprintf(f, "%u", (unsigned)*FIELD(s, d, mode_t));
		break;
	case T_LEVEL:
		fputs(level_to_name(*FIELD(s, d, int)), f);
		break;
	case T_USER:
		fprintf(f, "%u", (unsigned)s->uid);
		break;
	case T_GROUP:
		fprintf(f, "%u", (unsigned)s->gid);
		break;
	case T_SCHEME:
		fputc('{', f);
		for (size_t i = 0; i < s->secure_scheme_names.len; i++) {
			fputs(i ? ", " : "", f);
			print_repr(f, s->secure_scheme_names.items[i]);
			fputs(": ", f);
			print_repr(f, s->secure_scheme_values.items[i]);
		}
		fputc('}', f);
		break;
	case T_HOOK: {
		PyObject *h = s->hooks[d->hook], *q;
		if (h == NULL || !Py_IsInitialized()) {
			fprintf(f, "<%s()>", d->dflt);
			break;
		}
		q = PyObject_GetAttrString(h, "__qualname__");
		if (q != NULL && PyUnicode_Check(q))
			fprintf(f, "<%s()>", PyUnicode_AsUTF8(q));
		else
			fprintf(f, "<%s()>", d->name);
		Py_XDECREF(q);
		PyErr_Clear();
		break;
	}
	case T_HELP:
	case T_VERSION:
		break;
	}
}

/* gunicorn's default of a setting cunicorn does not implement, as
 * gunicorn's --print-config shows it: that is the value that runs. */
static void
print_unsupported_default(FILE *f, const struct unsupported_def *u)
{
	const char *v = u->dflt;
	size_t len;

	if (u->kind == U_APPEND) {
		fputs("[]", f);
		return;
	}
	if (v == NULL) {
		/* a dict setting: None is not gunicorn's default */
		fputs(strcmp(u->name, "logconfig_dict") == 0 ? "{}" : "None", f);
		return;
	}
	len = strcspn(v, "|");		/* the first spelling is gunicorn's */
	if (u->compare & U_NUMBER) {
		char buf[32], *end;
		long n;
		snprintf(buf, sizeof(buf), "%.*s", (int)len, v);
		n = strncmp(buf, "0o", 2) == 0 ? strtol(buf + 2, &end, 8)
		    : strtol(buf, &end, 0);
		fprintf(f, "%ld", n);
	} else if (u->compare & U_LIST) {
		fputc('[', f);
		for (size_t i = 0; i < len;) {
			size_t n = strcspn(v + i, ",|");
			char item[64];
			snprintf(item, sizeof(item), "%.*s", (int)n, v + i);
			fputs(i > 0 ? ", " : "", f);
			print_repr(f, item);
			i += n + 1;
		}
		fputc(']', f);
	} else
		fprintf(f, "%.*s", (int)len, v);
}

/* One printed row: a setting of settings_table or of unsupported_table. */
struct print_row {
	const char *name;
	const struct setting_def *def;
	const struct unsupported_def *unsupported;
};

static int
print_row_cmp(const void *a, const void *b)
{
	return strcmp(((const struct print_row *)a)->name,
	    ((const struct print_row *)b)->name);
}

/* Every setting gunicorn has (ours and the ones we do not implement),
 * sorted by name, each line "<prefix><name><sep><value>\n"; width pads
 * the name when not 0. */
static void
print_all(FILE *f, const struct settings *s, const char *prefix,
    const char *sep, int pad)
{
	struct print_row rows[NSETTINGS + NUNSUPPORTED];
	size_t n = 0;
	int width = 0;

	for (size_t i = 0; i < NSETTINGS; i++)
		if (!(settings_table[i].flags & F_NOPRINT))
			rows[n++] = (struct print_row){ settings_table[i].name,
			    &settings_table[i], NULL };
	for (size_t i = 0; i < NUNSUPPORTED; i++)
		rows[n++] = (struct print_row){ unsupported_table[i].name,
		    NULL, &unsupported_table[i] };
	qsort(rows, n, sizeof(rows[0]), print_row_cmp);
	for (size_t i = 0; pad && i < n; i++)
		if ((int)strlen(rows[i].name) > width)
			width = (int)strlen(rows[i].name);
	for (size_t i = 0; i < n; i++) {
		fprintf(f, "%s%-*s%s", prefix, width, rows[i].name, sep);
		if (rows[i].def != NULL)
			print_value(f, s, rows[i].def);
		else
			print_unsupported_default(f, rows[i].unsupported);
		fputc('\n', f);
	}
}

void
settings_print(const struct settings *s, void *out)
{
	print_all(out, s, "", " = ", 1);
	fflush(out);
}

char *
settings_describe(const struct settings *s)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	if (f == NULL)
		fatal("open_memstream");
	print_all(f, s, "  ", ": ", 0);
	if (fclose(f) != 0 || text == NULL)
		fatal("open_memstream");
	if (len > 0 && text[len - 1] == '\n')
		text[len - 1] = '\0';
	return text;
}

static PyObject *
py_str_or_none(const char *v)
{
	if (v == NULL)
		Py_RETURN_NONE;
	return PyUnicode_DecodeUTF8(v, strlen(v), "surrogateescape");
}

static PyObject *
py_list(const struct strlist *l)
{
	PyObject *list = PyList_New((Py_ssize_t)l->len);

	for (size_t i = 0; list != NULL && i < l->len; i++) {
		PyObject *item = py_str_or_none(l->items[i]);
		if (item == NULL) {
			Py_CLEAR(list);
			break;
		}
		PyList_SET_ITEM(list, (Py_ssize_t)i, item);
	}
	return list;
}

/* The value hooks see as cfg.<name>; a new reference. */
static PyObject *
value_to_python(const struct settings *s, const struct setting_def *d)
{
	switch (d->type) {
	case T_INT:
		return PyLong_FromLong(*FIELD(s, d, int));
	case T_INT64:
		return PyLong_FromLongLong(*FIELD(s, d, long long));
	case T_BOOL:
		return PyBool_FromLong(*FIELD(s, d, int));
	case T_STR:
	case T_CHDIR:
		return py_str_or_none(*FIELD(s, d, char *));
	case T_LIST:
		return py_list(FIELD(s, d, struct strlist));
	case T_CSV: {
		const struct strlist *l = FIELD(s, d, struct strlist);
		PyObject *r, *sep, *list;
		if (!(d->flags & F_JOINED))
			return py_list(l);
		if (l->len == 0)
			Py_RETURN_NONE;
		if ((list = py_list(l)) == NULL)
			return NULL;
		sep = PyUnicode_FromString(",");
		r = sep != NULL ? PyUnicode_Join(sep, list) : NULL;
		Py_XDECREF(sep);
		Py_DECREF(list);
		return r;
	}
	case T_UMASK:
		return PyLong_FromLong((long)*FIELD(s, d, mode_t));
	case T_LEVEL:
		return PyUnicode_FromString(level_to_name(*FIELD(s, d, int)));
	case T_USER:
		return PyLong_FromUnsignedLong(s->uid);
	case T_GROUP:
		return PyLong_FromUnsignedLong(s->gid);
	case T_SCHEME: {
		PyObject *dict = PyDict_New();
		for (size_t i = 0; dict != NULL &&
		    i < s->secure_scheme_names.len; i++) {
			PyObject *v = py_str_or_none(
			    s->secure_scheme_values.items[i]);
			if (v == NULL || PyDict_SetItemString(dict,
			    s->secure_scheme_names.items[i], v) == -1)
				Py_CLEAR(dict);
			Py_XDECREF(v);
		}
		return dict;
	}
	case T_HOOK: {
		PyObject *h = s->hooks[d->hook];
		if (h == NULL)
			h = helper("noop");
		Py_XINCREF(h);
		return h;
	}
	case T_HELP:
	case T_VERSION:
		break;
	}
	Py_RETURN_NONE;
}

static int
dict_set_new(PyObject *dict, const char *key, PyObject *v)
{
	int rc;

	if (v == NULL)
		return -1;
	rc = PyDict_SetItemString(dict, key, v);
	Py_DECREF(v);
	return rc;
}

/* What a hook reading cfg.<name> of a setting cunicorn ignores gets: the
 * value that runs, gunicorn's default (the first of its spellings), as
 * gunicorn's own type.  New reference, NULL with an exception set. */
static PyObject *
unsupported_default_to_python(const struct unsupported_def *u)
{
	const char *bar;
	PyObject *text, *v;

	if (u->kind == U_APPEND)
		return PyList_New(0);
	if (u->dflt == NULL)
		Py_RETURN_NONE;
	bar = strchr(u->dflt, '|');
	text = PyUnicode_FromStringAndSize(u->dflt,
	    bar != NULL ? bar - u->dflt : (Py_ssize_t)strlen(u->dflt));
	if (text == NULL)
		return NULL;
	if (u->kind == U_FLAG)
		v = PyBool_FromLong(PyUnicode_CompareWithASCIIString(text,
		    "True") == 0);
	else if (u->compare & U_NUMBER)
		v = PyLong_FromUnicodeObject(text, 0);
	else if (u->compare & U_LIST) {
		PyObject *comma = PyUnicode_FromString(",");
		v = comma != NULL ? PyUnicode_Split(text, comma, -1) : NULL;
		Py_XDECREF(comma);
	} else
		return text;
	Py_DECREF(text);
	return v;
}

void *
settings_to_python(const struct settings *s)
{
	PyObject *kw, *types = NULL, *ns_type = NULL, *ns = NULL, *env;

	if ((kw = PyDict_New()) == NULL)
		return NULL;
	for (size_t i = 0; i < NSETTINGS; i++) {
		const struct setting_def *d = &settings_table[i];
		if (d->flags & F_NOPRINT)
			continue;
		if (dict_set_new(kw, d->name, value_to_python(s, d)) == -1)
			goto out;
	}
	for (size_t i = 0; i < NUNSUPPORTED; i++)
		if (dict_set_new(kw, unsupported_table[i].name,
		    unsupported_default_to_python(&unsupported_table[i])) == -1)
			goto out;
	/* gunicorn's Config properties */
	if (dict_set_new(kw, "proc_name",
	    py_str_or_none(settings_proc_name(s))) == -1 ||
	    dict_set_new(kw, "uid", PyLong_FromUnsignedLong(s->uid)) == -1 ||
	    dict_set_new(kw, "gid", PyLong_FromUnsignedLong(s->gid)) == -1 ||
	    dict_set_new(kw, "worker_class_str",
	    py_str_or_none(s->worker_class)) == -1 ||
	    dict_set_new(kw, "is_ssl", PyBool_FromLong(0)) == -1 ||
	    dict_set_new(kw, "app_uri", py_str_or_none(s->app_uri)) == -1)
		goto out;
	if ((env = PyDict_New()) == NULL)
		goto out;
	for (size_t i = 0; i < s->raw_env.len; i++) {
		const char *e = s->raw_env.items[i], *eq = strchr(e, '=');
		PyObject *k, *v;
		if (eq == NULL)
			continue;
		k = PyUnicode_DecodeUTF8(e, eq - e, "surrogateescape");
		v = py_str_or_none(eq + 1);
		if (k == NULL || v == NULL || PyDict_SetItem(env, k, v) == -1) {
			Py_XDECREF(k);
			Py_XDECREF(v);
			Py_DECREF(env);
			goto out;
		}
		Py_DECREF(k);
		Py_DECREF(v);
	}
	if (dict_set_new(kw, "env", env) == -1)
		goto out;

	if ((types = PyImport_ImportModule("types")) == NULL ||
	    (ns_type = PyObject_GetAttrString(types, "SimpleNamespace")) == NULL)
		goto out;
	{
		PyObject *args = PyTuple_New(0);
		if (args != NULL)
			ns = PyObject_Call(ns_type, args, kw);
		Py_XDECREF(args);
	}
out:
	Py_XDECREF(types);
	Py_XDECREF(ns_type);
	Py_DECREF(kw);
	return ns;
}

const char *
settings_proc_name(const struct settings *s)
{
	if (s->proc_name != NULL)
		return s->proc_name;
	if (s->default_proc_name != NULL)
		return s->default_proc_name;
	return s->app_uri != NULL ? s->app_uri : "cunicorn";
}

void
settings_free(struct settings *s)
{
	struct settings_private *p = s->priv;

	for (size_t i = 0; i < NSETTINGS; i++) {
		const struct setting_def *d = &settings_table[i];
		switch (d->type) {
		case T_STR: case T_CHDIR: case T_USER: case T_GROUP:
			free(*FIELD(s, d, char *));
			*FIELD(s, d, char *) = NULL;
			break;
		case T_LIST: case T_CSV:
			strlist_clear(FIELD(s, d, struct strlist));
			break;
		default:
			break;
		}
	}
	free(s->app_uri);
	s->app_uri = NULL;
	strlist_clear(&s->secure_scheme_names);
	strlist_clear(&s->secure_scheme_values);
	if (Py_IsInitialized()) {
		for (int i = 0; i < HOOK_COUNT; i++)
			Py_XDECREF((PyObject *)s->hooks[i]);
	}
	memset(s->hooks, 0, sizeof(s->hooks));
	if (p != NULL) {
		ops_clear(&p->cli);
		ops_clear(&p->env);
		free(p);
		s->priv = NULL;
	}
}
