/*
 * settings_int.h — what the settings files share and nobody else sees.
 *
 * The settings module is six files (see settings.h for its API):
 *   settings_table.c   the two tables: settings cunicorn honours, and
 *                      gunicorn's settings it does not implement;
 *   settings.c         one setter for every row (settings_set_value),
 *                      defaults, validation, finalize, free;
 *   settings_cli.c     the command line and GUNICORN_CMD_ARGS;
 *   settings_file.c    the Python config file (with cunicorn/_config.py);
 *   settings_print.c   --print-config, the one-line description, and the
 *                      Python view hooks see as cfg;
 *   settings_tls.c     ssl_version's spellings, the TLS settings checked
 *                      together.
 * This header holds the row types of the two tables, the recorded
 * command-line operations, and the few helpers one of those files lends
 * another.  Never included outside src/settings*.c.
 */
#ifndef CUNICORN_SETTINGS_INT_H
#define CUNICORN_SETTINGS_INT_H

#include <stddef.h>

#include "settings.h"

enum setting_type {
	T_INT,		/* non-negative int, >= min */
	T_INT64,	/* non-negative long long, >= min (sizes in bytes) */
	T_BOOL,		/* flag without value on the command line */
	T_STR,		/* string (stripped) */
	T_STATSD,	/* statsd_host: a T_STR that Python (cfg, --print-config)
			 * sees as gunicorn parsed it: (host, port) or a path */
	T_LIST,		/* string list; the flag may be repeated */
	T_CSV,		/* comma-separated string -> list */
	T_UMASK,	/* int, octal accepted ("0022", "0o22", "0x12", "18") */
	T_LEVEL,	/* log level name -> LOG_* */
	T_CHDIR,	/* existing directory, made absolute */
	T_USER,		/* user name or uid (resolved by settings_finalize) */
	T_GROUP,	/* group name or gid (ditto) */
	T_SSLVER,	/* ssl_version: an int or a name -> SETTINGS_SSL_* */
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
/* a reload (HUP) keeps the running value: the processes were built from it
 * (the dirty arbiter and its workers, the runtime dir named after
 * proc_name, the privileges dropped) -- see settings_restart_only() */
#define F_RESTART	0x20
#define F_OPTVAL	0x40	/* T_STR: --flag [CHOICE]; alone, the first of choices */

struct setting_def {
	const char *name;		/* gunicorn's setting name */
	const char *short_flag;		/* "-w" or NULL */
	const char *long_flag;		/* "--workers" or NULL */
	const char *alias_flag;		/* another long spelling, or NULL */
	enum setting_type type;
	size_t off;			/* field in struct settings */
	int min;			/* T_INT: smallest value allowed */
	int max;			/* T_INT: largest value allowed; 0: INT_MAX */
	unsigned flags;
	/* default as text for settings_set_value(); for T_HOOK, the name
	 * gunicorn's --print-config shows for its default callable */
	const char *dflt;
	/* T_LIST / T_CSV items, T_STR values: NULL when valid, else why not */
	const char *(*check)(const char *item);
	const char *choices;		/* F_OPTVAL: '|'-separated words the
					   flag takes as its value */
	int hook;			/* T_HOOK: enum hook_id */
	int arity;			/* T_HOOK: positional arguments */
	const char *meta;		/* value name in --help */
	const char *help;
};

#define OFF(field)	offsetof(struct settings, field)
#define FIELD(s, d, type)	((type *)(void *)((char *)(s) + (d)->off))

/*
 * gunicorn's settings that cunicorn does not implement (gunicorn 20 to 26).
 * Each flag takes a value or not exactly as gunicorn's does, so the word
 * after "--spew" is still the app and the one after "--log-syslog-to" is
 * not.  What counts is the value a setting ends up with once every source
 * is applied in its precedence; when it differs from gunicorn's default,
 * settings_finalize() acts on the row's policy:
 *   REFUSE  "Error: NAME: WHY" and a failed start: ignoring it would
 *           silently change security or the protocol on the wire;
 *   WARN    one "Setting 'NAME' is not supported by cunicorn; ignored";
 *   QUIET   nothing: cunicorn already does what any value asks (there is
 *           no control socket to disable).
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

/* The rows of each table; settings_table.c asserts the counts. */
#define NSETTINGS	99
#define NUNSUPPORTED	25
extern const struct setting_def settings_table[NSETTINGS];
extern const struct unsupported_def unsupported_table[NUNSUPPORTED];

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

/* settings.c: errors, lists, the setter, defaults */
void settings_error(const char *fmt, ...)
    __attribute__((format(printf,
    1, 2)));
int settings_invalid(const struct setting_def *d, const char *value,
    const char *why);
void strlist_clear(struct strlist *l);
void strlist_push(struct strlist *l, const char *item);
char *settings_strip_dup(const char *v);
int settings_parse_int(const char *v, long long *out);
const char *settings_level_name(int level);
int settings_set_value(struct settings *s, const struct setting_def *d,
    const char *value, int append);
const struct setting_def *settings_find(const char *name);
int settings_sendfile_default(void);
void settings_unsupported_set(struct settings *s,
    const struct unsupported_def *u, const char *value);

/* settings.c: the validators the table's rows name (NULL: valid) */
const char *settings_check_bind(const char *v);
const char *settings_check_env(const char *v);
const char *settings_check_dirty_app(const char *v);
const char *settings_check_reload_engine(const char *v);
const char *settings_check_asgi_loop(const char *v);
const char *settings_check_asgi_lifespan(const char *v);
const char *settings_check_proxy_protocol(const char *v);
const char *settings_check_protocol(const char *v);
const char *settings_check_file_exists(const char *v);
/* statsd.h: statsd_check_host, statsd_check_prefix, statsd_check_tags */
const char *settings_check_syslog_addr(const char *v);
const char *settings_check_syslog_facility(const char *v);
const char *settings_check_syslog_prefix(const char *v);

/* settings_tls.c: certfile/keyfile and what may not go with them, at
 * finalize (-1: settings_error said why) */
int settings_tls_check(struct settings *s);

/* settings_cli.c */
void settings_ops_clear(struct option_ops *o);

/* settings_file.c: a function of cunicorn._config (borrowed; NULL with an
 * exception set when the module cannot be imported) */
void *settings_config_helper(const char *name);

#endif
