/*
 * settings.h — every setting cunicorn honours, with gunicorn's names,
 * flags, defaults and precedence:
 *     command line > GUNICORN_CMD_ARGS > config file > defaults.
 *
 * One table (settings_table.c) describes each setting (name, flags, type,
 * default, validator); the command line, GUNICORN_CMD_ARGS, the config
 * file and --print-config all go through it (the module's files are
 * listed in settings_int.h).  The C struct below is what
 * the rest of the program reads; nothing else parses options.
 *
 * gunicorn's settings that cunicorn does not implement are parsed as
 * gunicorn parses them and have no field here: settings_finalize()
 * refuses the few whose absence would change security or the wire
 * (ssl_context, h2c) and warns about the others,
 * each only when its final value differs from gunicorn's default.
 *
 * The config file is ordinary Python, executed by the embedded interpreter
 * (which must be initialised before settings_load_file() is called); hooks
 * found there are kept as Python callables in hooks[] (opaque here, so
 * that C code that never calls Python need not include Python.h).
 */
#ifndef CUNICORN_SETTINGS_H
#define CUNICORN_SETTINGS_H

#include <stddef.h>
#include <sys/types.h>

enum hook_id {
	HOOK_ON_STARTING,	/* (server) */
	HOOK_ON_RELOAD,		/* (server) */
	HOOK_WHEN_READY,	/* (server) */
	HOOK_PRE_FORK,		/* (server, worker) */
	HOOK_POST_FORK,		/* (server, worker) */
	HOOK_POST_WORKER_INIT,	/* (worker) */
	HOOK_WORKER_INT,	/* (worker) */
	HOOK_WORKER_ABORT,	/* (worker) */
	HOOK_PRE_EXEC,		/* (server) */
	HOOK_PRE_REQUEST,	/* (worker, req) */
	HOOK_POST_REQUEST,	/* (worker, req, environ, resp) */
	HOOK_CHILD_EXIT,	/* (server, worker) */
	HOOK_WORKER_EXIT,	/* (server, worker) */
	HOOK_NWORKERS_CHANGED,	/* (server, new_value, old_value) */
	HOOK_ON_EXIT,		/* (server) */
	HOOK_ON_DIRTY_STARTING,	/* (arbiter) */
	HOOK_DIRTY_POST_FORK,	/* (arbiter, worker) */
	HOOK_DIRTY_WORKER_INIT,	/* (worker) */
	HOOK_DIRTY_WORKER_EXIT,	/* (arbiter, worker) */
	HOOK_COUNT
};

/* A list of strings (bind, raw_env, dirty_apps, ...).  Owns its items. */
struct strlist {
	char **items;
	size_t len;
};

struct settings {
	/* what to run */
	char *app_uri;			/* "module:callable" (positional) */
	char *config;			/* -c FILE, or NULL */
	char *wsgi_app;			/* wsgi_app setting (used when no positional) */
	int check_config;		/* --check-config */
	int print_config;		/* --print-config */
	char *virtualenv;		/* --virtualenv PATH, else $VIRTUAL_ENV, else NULL */

	/* server socket */
	struct strlist bind;		/* default ["127.0.0.1:8000"] or 0.0.0.0:$PORT */
	int backlog;			/* 2048 */
	int reuse_port;			/* 0 */

	/* worker processes */
	int workers;			/* 1 or $WEB_CONCURRENCY */
	char *worker_class;		/* "sync" */
	int threads;			/* 1 */
	int worker_connections;		/* 1000 */
	int max_requests;		/* 0 = off */
	int max_requests_jitter;	/* 0 */
	int timeout;			/* 30 s; 0 = off */
	int graceful_timeout;		/* 30 s */
	int keepalive;			/* 2 s */
	char *asgi_loop;		/* "auto": uvloop when installed; asyncio; uvloop */
	char *asgi_lifespan;		/* "auto", "on", "off" */
	int asgi_disconnect_grace_period; /* 3 s: the app's task after its client left; 0 = cancel at once */
	char *root_path;		/* "": the ASGI scope's root_path */

	/* security */
	int limit_request_line;		/* 4094; 0 = unlimited (capped at 8190 as gunicorn) */
	int limit_request_fields;	/* 100 (capped at 32768) */
	int limit_request_field_size;	/* 8190; 0 = unlimited */

	/* server mechanics */
	int preload_app;		/* 0 */
	char *chdir;			/* cwd at start */
	int daemon;			/* 0 */
	struct strlist raw_env;		/* -e K=V */
	char *pidfile;			/* NULL */
	mode_t umask;			/* 0 */
	char *user;			/* NULL: do not change */
	char *group;			/* NULL: do not change */
	int initgroups;			/* 0: workers keep only gid as group */
	uid_t uid;			/* resolved from user, else geteuid() */
	gid_t gid;			/* resolved from group, else getegid() */
	char *worker_tmp_dir;		/* NULL: default (/dev/shm, else /tmp) */
	int sendfile;			/* 1 ($SENDFILE); --no-sendfile: 0 */
	struct strlist pythonpath;	/* --pythonpath a,b */
	char *proc_name;		/* -n; NULL: default_proc_name */
	char *default_proc_name;	/* the app uri, set by main */
	struct strlist forwarded_allow_ips;	/* "127.0.0.1,::1" ('*' = all) */
	char *proxy_protocol;		/* "off"; v1, v2, auto (proxy_proto.h) */
	struct strlist proxy_allow_ips;	/* "127.0.0.1,::1": may send a PROXY preamble */
	char *protocol;			/* "http"; "uwsgi": uWSGI packets (uwsgi_proto.h) */
	char *paste;			/* --paste FILE[#NAME]: a PasteDeploy app */
	struct strlist raw_paste_global_conf;	/* --paste-global KEY=VALUE */
	struct strlist uwsgi_allow_ips;	/* "127.0.0.1,::1": may send uWSGI requests */
	/* request headers with '_' honoured from forwarded_allow_ips peers */
	struct strlist forwarder_headers;	/* "SCRIPT_NAME,PATH_INFO" */
	/* secure_scheme_headers: names[i] (upper case) must equal values[i] */
	struct strlist secure_scheme_names;
	struct strlist secure_scheme_values;

	/* TLS (tls.c): on when certfile is set; the master builds the
	 * context from these at start and on HUP */
	char *certfile;			/* NULL: plain HTTP; the PEM chain (may hold the key too) */
	char *keyfile;			/* NULL: the key is in certfile */
	char *ca_certs;			/* NULL: the system's CAs verify client certificates */
	int cert_reqs;			/* 0 CERT_NONE, 1 CERT_OPTIONAL, 2 CERT_REQUIRED */
	int ssl_version;		/* the ssl module's PROTOCOL_*: SETTINGS_SSL_* */
	char *ciphers;			/* NULL: OpenSSL's default (TLS 1.2 cipher list) */
	int suppress_ragged_eofs;	/* 1: an EOF without close_notify is an EOF */
	int do_handshake_on_connect;	/* 0; accepted: the handshake starts at once anyway */

	/* logging */
	int loglevel;			/* LOG_* from log.h; default info */
	char *errorlog;			/* "-" */
	char *accesslog;		/* NULL = off; "-" = stdout */
	char *access_log_format;
	int capture_output;		/* 0 */
	int syslog;			/* 0: --log-syslog sends the logs' lines there too */
	char *syslog_addr;		/* "udp://localhost:514" (log_syslog.h) */
	char *syslog_prefix;		/* NULL: proc_name */
	char *syslog_facility;		/* "user" */
	int disable_redirect_access_to_syslog;	/* 0: access lines go too */

	/* statsd (statsd.c) */
	char *statsd_host;		/* NULL / "": off; HOST:PORT, unix:PATH */
	char *statsd_prefix;		/* "" */
	char *dogstatsd_tags;		/* "" */
	int enable_backlog_metric;	/* 0: the master sends gunicorn.backlog */

	/* debugging: --reload (the sync worker polls the files' mtimes) */
	int reload;			/* 0 */
	char *reload_engine;		/* "auto"; auto, poll, inotify: all poll */
	struct strlist reload_extra_files;	/* files watched beside the modules */

	/* dirty arbiter */
	struct strlist dirty_apps;	/* "module:Class" or "module:Class:N" */
	int dirty_workers;		/* 0 = no dirty arbiter */
	int dirty_timeout;		/* 300 s */
	int dirty_threads;		/* 1 */
	int dirty_graceful_timeout;	/* 30 s */
	long long dirty_stash_max_bytes;	/* 0 = no cap */

	/* hooks: borrowed-then-owned Python callables (PyObject *), or NULL */
	void *hooks[HOOK_COUNT];

	/* private to settings.c: the recorded command-line and
	 * GUNICORN_CMD_ARGS options, re-applied over the config file, and
	 * which gunicorn settings cunicorn does not implement were given */
	void *priv;
};

/* ssl_version values cunicorn accepts (the ssl module's numbers; names
 * map to them; SSLv2/SSLv3/TLSv1/TLSv1_1 are refused as obsolete). */
#define SETTINGS_SSL_TLS	2	/* PROTOCOL_TLS = PROTOCOL_SSLv23: TLS 1.2+ */
#define SETTINGS_SSL_TLSv1_2	5	/* PROTOCOL_TLSv1_2: TLS 1.2 only */
#define SETTINGS_SSL_TLS_SERVER	17	/* PROTOCOL_TLS_SERVER: TLS 1.2+ */

/* ssl_version's text (an int or a name, "PROTOCOL_" optional) to one of
 * SETTINGS_SSL_*; -1 with *why set when refused. */
int settings_ssl_version_parse(const char *text, const char **why);

/* String lists: equal item by item; dst becomes a copy of src. */
int strlist_equal(const struct strlist *a, const struct strlist *b);
void strlist_assign(struct strlist *dst, const struct strlist *src);

/* The name a proc_name-derived title uses: proc_name, else default. */
const char *settings_proc_name(const struct settings *s);

/* Fill *s with every default (reads $PORT, $WEB_CONCURRENCY). */
void settings_defaults(struct settings *s);
void settings_free(struct settings *s);

/*
 * Parse argv (argv[0] excluded by the caller passing argc-1/argv+1 is NOT
 * done: pass main's argc/argv).  Options found are recorded so that they
 * can be re-applied over the config file (precedence).  Handles
 * -h/--help and -v/--version itself (prints, exits 0).  On a bad option
 * or value prints one line "Error: ..." to stderr and returns -1.
 */
int settings_parse_args(struct settings *s, int argc, char **argv);
/* Same, for the words of $GUNICORN_CMD_ARGS (shell-like splitting). */
int settings_parse_env(struct settings *s, const char *cmd_args);

/*
 * Execute the config file as Python (interpreter already initialised),
 * apply every module-level name that is a known setting, keep hooks.
 * Then re-apply GUNICORN_CMD_ARGS and command-line values on top.
 * Returns 0, or -1 after printing one "Error: ..." line naming the
 * setting or the file (no traceback wall).
 */
int settings_load_file(struct settings *s, const char *path);
/* Re-apply env and command-line values (used when there is no file). */
int settings_apply_overrides(struct settings *s);
/* "gunicorn.conf.py" when that file exists in the working directory
 * (gunicorn loads it when no -c is given), else NULL. */
const char *settings_default_config_path(void);

/* Cross-setting checks and resolutions (user/group -> uid/gid, ...);
 * refuses or warns about the gunicorn settings given that cunicorn does
 * not implement (warnings through log_warnx).
 * Returns 0 or -1 after printing one "Error: ..." line. */
int settings_finalize(struct settings *s);
/* Whether setting name (gunicorn's name) needs a restart: a reload (HUP)
 * keeps its running value.  0 for a name that is not a setting. */
int settings_restart_only(const char *name);
/* A reload: every restart-only setting (and the uid/gid resolved from
 * user and group) that differs in ns gets old's value back.  Returns the
 * names of those that differed, ", "-separated (a new string), or NULL. */
char *settings_keep_restart_only(struct settings *ns, const struct settings *old);

/* --print-config: every setting gunicorn has as "name = value", sorted
 * by name; the ones cunicorn does not implement show gunicorn's default
 * (the value that runs). */
void settings_print(const struct settings *s, void *out /* FILE* */);
/* The same rows as "  name: value" lines, joined by newlines (gunicorn's
 * debug "Current configuration:" dump).  A new string; the caller frees. */
char *settings_describe(const struct settings *s);

/* A Python object with every setting as attribute (worker.cfg in hooks).
 * Returns a new reference (PyObject *), NULL with a Python error set. */
void *settings_to_python(const struct settings *s);

#endif
