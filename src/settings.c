/*
 * settings.c — every setting cunicorn honours goes through here (see
 * settings.h; the module's files are listed in settings_int.h).
 *
 * Each row of settings_table (settings_table.c) names a setting
 * (gunicorn's name), its flags, its type, its default and its field in
 * struct settings.  All four sources go through that table and through
 * one setter, settings_set_value():
 *   defaults        the row's default string (plus $PORT, $WEB_CONCURRENCY,
 *                   $FORWARDED_ALLOW_IPS, $VIRTUAL_ENV, the cwd): here;
 *   command line and GUNICORN_CMD_ARGS: settings_cli.c;
 *   config file     Python: settings_file.c.
 * Precedence (command line > env > file > defaults) comes from replaying
 * the recorded env and command-line operations after the file.  A list
 * setting (bind, raw_env, dirty_apps) given by a source replaces the
 * list, as gunicorn's argparse "append" does.
 *
 * gunicorn's other settings, the ones cunicorn does not implement, live in
 * a second table (unsupported_table): their flags parse exactly as
 * gunicorn's, all four sources may give them, and settings_finalize()
 * refuses the few whose absence would change security or the wire (TLS,
 * ...) and warns about the others -- each only when its final value
 * differs from gunicorn's default.
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
#include "settings_int.h"
#include "proxy_proto.h"
#include "dirty_wire.h"	/* dirty_app_spec_split */
#include "log.h"
#include "log_syslog.h"
#include "util.h"

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

void
settings_error(const char *fmt, ...)
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

int
settings_invalid(const struct setting_def *d, const char *value,
    const char *why)
{
	char *shown = NULL;

	/* one line: control characters of the value as escapes */
	if (value != NULL) {
		size_t n = 0;

		shown = xmalloc(4 * strlen(value) + 1);
		for (const unsigned char *p = (const unsigned char *)value; *p; p++)
			if (*p == '\n')
				n += (size_t)sprintf(shown + n, "\\n");
			else if (*p < 0x20 || *p == 0x7f)
				n += (size_t)sprintf(shown + n, "\\x%02x", *p);
			else
				shown[n++] = (char)*p;
		shown[n] = '\0';
	}
	settings_error("Invalid value for %s: %s (%s)", d->name,
	    shown != NULL ? shown : "None", why);
	free(shown);
	return -1;
}

/* ---- string lists ---- */

void
strlist_clear(struct strlist *l)
{
	for (size_t i = 0; i < l->len; i++)
		free(l->items[i]);
	free(l->items);
	l->items = NULL;
	l->len = 0;
}

void
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
char *
settings_strip_dup(const char *v)
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

const char *
settings_check_bind(const char *v)
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

const char *
settings_check_env(const char *v)
{
	return strchr(v, '=') != NULL && v[0] != '=' ? NULL :
	    "expected KEY=VALUE";
}

const char *
settings_check_dirty_app(const char *v)
{
	size_t path_len;
	int limit;

	if (dirty_app_spec_split(v, &path_len, &limit) == -1)
		return "expected module:Class or module:Class:N with N >= 1";
	return NULL;
}

/* NULL when v is one of words ('|'-separated), else why. */
static const char *
check_choice(const char *v, const char *words, const char *why)
{
	size_t len = strlen(v);

	for (const char *w = words; *w != '\0'; ) {
		size_t n = strcspn(w, "|");
		if (n == len && strncmp(w, v, n) == 0)
			return NULL;
		w += n + (w[n] == '|');
	}
	return why;
}

/* gunicorn's engines: cunicorn polls for all three (no inotify). */
const char *
settings_check_reload_engine(const char *v)
{
	return check_choice(v, "auto|poll|inotify", "expected auto, poll or inotify");
}

const char *
settings_check_asgi_loop(const char *v)
{
	return check_choice(v, "auto|asyncio|uvloop", "expected auto, asyncio or uvloop");
}

const char *
settings_check_asgi_lifespan(const char *v)
{
	return check_choice(v, "auto|on|off", "expected auto, on or off");
}

/* gunicorn 24+: off, v1, v2, auto, or a boolean (True: auto). */
const char *
settings_check_proxy_protocol(const char *v)
{
	return proxy_mode_parse(v) < 0 ? "expected off, v1, v2 or auto" : NULL;
}

const char *
settings_check_protocol(const char *v)
{
	return check_choice(v, "http|uwsgi", "expected http or uwsgi");
}

/* gunicorn checks these when it sets up syslog; here for any source, a
 * bad one named at start even while syslog is off. */
const char *
settings_check_syslog_addr(const char *v)
{
	return log_syslog_check_addr(v);
}

const char *
settings_check_syslog_facility(const char *v)
{
	return log_syslog_facility(v) == -1 ? "unknown facility name" : NULL;
}

/* As statsd_prefix: it goes into every message's tag. */
const char *
settings_check_syslog_prefix(const char *v)
{
	return log_syslog_check_prefix(v);
}

/* As gunicorn's validate_file_exists: any kind of file, as of now. */
const char *
settings_check_file_exists(const char *v)
{
	struct stat st;

	return stat(v, &st) == 0 ? NULL : "no such file";
}

/* ---- scalar parsers ---- */

/* Decimal integer with optional sign and surrounding blanks. */
int
settings_parse_int(const char *v, long long *out)
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
	char *t = settings_strip_dup(v), *p = t, *end;
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

const char *
settings_level_name(int level)
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
int
settings_set_value(struct settings *s, const struct setting_def *d,
    const char *value, int append)
{
	long long n;
	char *t;
	const char *why;

	switch (d->type) {
	case T_INT:
		if (value == NULL || settings_parse_int(value, &n) == -1)
			return settings_invalid(d, value, "not an integer");
		if (n < d->min || n > INT_MAX)
			return settings_invalid(d, value, d->min > 0 ?
			    "must be a positive integer" :
			    "must be a non-negative integer");
		if (d->max > 0 && n > d->max) {
			char range[64];
			snprintf(range, sizeof(range), "must be between %d and %d",
			    d->min, d->max);
			return settings_invalid(d, value, range);
		}
		*FIELD(s, d, int) = (int)n;
		return 0;
	case T_SSLVER: {
		int v;
		t = value != NULL ? settings_strip_dup(value) : NULL;
		why = "a value is required";
		v = t != NULL ? settings_ssl_version_parse(t, &why) : -1;
		free(t);
		if (v == -1)
			return settings_invalid(d, value, why);
		*FIELD(s, d, int) = v;
		return 0;
	}
	case T_INT64:
		if (value == NULL || settings_parse_int(value, &n) == -1)
			return settings_invalid(d, value, "not an integer");
		if (n < d->min)
			return settings_invalid(d, value, "must be a non-negative integer");
		*FIELD(s, d, long long) = n;
		return 0;
	case T_BOOL:
		if (value == NULL) {
			*FIELD(s, d, int) = 1;
			return 0;
		}
		t = settings_strip_dup(value);
		if (strcasecmp(t, "true") == 0)
			*FIELD(s, d, int) = 1;
		else if (strcasecmp(t, "false") == 0)
			*FIELD(s, d, int) = 0;
		else {
			free(t);
			return settings_invalid(d, value, "expected True or False");
		}
		free(t);
		return 0;
	case T_STR:
	case T_STATSD:
	case T_USER:
	case T_GROUP:
		if (value == NULL && !(d->flags & F_NULLABLE))
			return settings_invalid(d, value, "a value is required");
		t = value != NULL ? settings_strip_dup(value) : NULL;
		if (t != NULL && (d->type == T_USER || d->type == T_GROUP) &&
		    *t == '\0') {
			free(t);
			return settings_invalid(d, value, "empty name");
		}
		if (t != NULL && d->check != NULL && (why = d->check(t)) != NULL) {
			free(t);
			return settings_invalid(d, value, why);
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
			t = settings_strip_dup(value);
			if (d->check != NULL && (why = d->check(t)) != NULL) {
				free(t);
				return settings_invalid(d, value, why);
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
				t = settings_strip_dup(tok);
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
			return settings_invalid(d, value,
			    "not an integer; use octal such as 0022");
		if (n < 0 || n > 0777)
			return settings_invalid(d, value, "must be between 0 and 0777");
		*FIELD(s, d, mode_t) = (mode_t)n;
		return 0;
	case T_LEVEL: {
		int level;
		t = value != NULL ? settings_strip_dup(value) : NULL;
		level = t != NULL ? log_level_parse(t) : -1;
		free(t);
		if (level == -1)
			return settings_invalid(d, value,
			    "expected debug, info, warning, error or critical");
		*FIELD(s, d, int) = level;
		return 0;
	}
	case T_CHDIR:
		if (value == NULL)
			return settings_invalid(d, value, "a directory is required");
		t = settings_strip_dup(value);
		{
			char *dir = resolve_dir(t);
			if (dir == NULL) {
				settings_error("Invalid value for %s: %s "
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
	return settings_invalid(d, value, "cannot be set here");
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

const struct setting_def *
settings_find(const char *name)
{
	for (size_t i = 0; i < NSETTINGS; i++)
		if (!(settings_table[i].flags & F_NOPRINT) &&
		    strcmp(settings_table[i].name, name) == 0)
			return &settings_table[i];
	return NULL;
}

int
settings_restart_only(const char *name)
{
	const struct setting_def *d = settings_find(name);

	return d != NULL && (d->flags & F_RESTART);
}

static int
same_str(const char *a, const char *b)
{
	return (a == NULL || b == NULL) ? a == b : strcmp(a, b) == 0;
}

/* Row d's value in ns back to old's; 1 when it differed. */
static int
keep_value(struct settings *ns, const struct settings *old,
    const struct setting_def *d)
{
	switch (d->type) {
	case T_INT: case T_BOOL: case T_LEVEL: case T_SSLVER:
		if (*FIELD(ns, d, int) == *FIELD(old, d, int))
			return 0;
		*FIELD(ns, d, int) = *FIELD(old, d, int);
		return 1;
	case T_UMASK:
		if (*FIELD(ns, d, mode_t) == *FIELD(old, d, mode_t))
			return 0;
		*FIELD(ns, d, mode_t) = *FIELD(old, d, mode_t);
		return 1;
	case T_INT64:
		if (*FIELD(ns, d, long long) == *FIELD(old, d, long long))
			return 0;
		*FIELD(ns, d, long long) = *FIELD(old, d, long long);
		return 1;
	case T_STR: case T_STATSD: case T_CHDIR: case T_USER: case T_GROUP: {
		char **dst = FIELD(ns, d, char *), *src = *FIELD(old, d, char *);
		/* the ids resolved from user and group go with them */
		int changed = !same_str(*dst, src) ||
		    (d->type == T_USER && ns->uid != old->uid) ||
		    (d->type == T_GROUP && ns->gid != old->gid);

		if (!changed)
			return 0;
		free(*dst);
		*dst = src != NULL ? xstrdup(src) : NULL;
		if (d->type == T_USER)
			ns->uid = old->uid;
		if (d->type == T_GROUP)
			ns->gid = old->gid;
		return 1;
	}
	case T_LIST: case T_CSV:
		if (strlist_equal(FIELD(ns, d, struct strlist), FIELD(old, d, struct strlist)))
			return 0;
		strlist_assign(FIELD(ns, d, struct strlist), FIELD(old, d, struct strlist));
		return 1;
	case T_SCHEME: case T_HOOK: case T_HELP: case T_VERSION:
		break;
	}
	fatalx("setting %s: a restart-only row of a type that cannot be kept", d->name);
}

char *
settings_keep_restart_only(struct settings *ns, const struct settings *old)
{
	char *names = NULL;

	for (size_t i = 0; i < NSETTINGS; i++) {
		const struct setting_def *d = &settings_table[i];
		char *more;

		if (!(d->flags & F_RESTART) || !keep_value(ns, old, d))
			continue;
		more = names == NULL ? xstrdup(d->name)
		    : xasprintf("%s, %s", names, d->name);
		free(names);
		names = more;
	}
	return names;
}

/* gunicorn's sendfile when no source sets it: $SENDFILE if set (y, 1,
 * yes, true: on; anything else: off), else on. */
int
settings_sendfile_default(void)
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
			(void)settings_set_value(s, d, d->dflt, 0);
	}
	scheme_defaults(s);
	s->sendfile = settings_sendfile_default();
	s->uid = geteuid();
	s->gid = getegid();
	if ((cwd = getcwd(NULL, 0)) != NULL) {
		s->chdir = cwd;
	}

	if ((env = getenv("PORT")) != NULL) {
		char *b = xasprintf("0.0.0.0:%s", env);
		if (settings_set_value(s, settings_find("bind"), b, 0) == -1)
			(void)settings_set_value(s, settings_find("bind"),
			    "127.0.0.1:8000", 0);
		free(b);
	}
	if ((env = getenv("WEB_CONCURRENCY")) != NULL &&
	    settings_set_value(s, settings_find("workers"), env, 0) == -1)
		fprintf(stderr, "Warning: ignoring WEB_CONCURRENCY=%s\n", env);
	if ((env = getenv("FORWARDED_ALLOW_IPS")) != NULL)
		(void)settings_set_value(s, settings_find("forwarded_allow_ips"), env, 0);
	if ((env = getenv("VIRTUAL_ENV")) != NULL && *env != '\0')
		s->virtualenv = xstrdup(env);
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
		char *t = settings_strip_dup(tok);
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
	v = (u->compare & U_LIST) ? list_canonical(value) : settings_strip_dup(value);
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
void
settings_unsupported_set(struct settings *s, const struct unsupported_def *u,
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
			settings_error("%s: %s", unsupported_table[i].name,
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


/* ---- finalize ---- */

static int
resolve_id(const char *name, int is_group, unsigned *out)
{
	if (all_digits(name, strlen(name))) {
		long long n;
		if (settings_parse_int(name, &n) == -1 || n > UINT_MAX - 1)
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

/*
 * --paste FILE[#NAME] (gunicorn's PasteDeploy loader): the app is
 * "paste:<absolute FILE>[#NAME]" (cunicorn._hooks.load_app reads it with
 * paste.deploy.loadapp, raw_paste_global_conf as its global_conf), in place
 * of any APP_MODULE, as in gunicorn; the default proc_name is the file.
 * A [loggers] section would make gunicorn configure logging from the file
 * (logconfig); cunicorn's logs keep gunicorn's format, so it says so.
 */
static int
paste_app(struct settings *s)
{
	const char *hash = strchr(s->paste, '#');
	size_t flen = hash != NULL ? (size_t)(hash - s->paste) : strlen(s->paste);
	char *file = xasprintf("%.*s", (int)flen, s->paste), *abs;
	char line[256];
	FILE *f;

	abs = realpath(file, NULL);
	if (abs == NULL || (f = fopen(abs, "r")) == NULL) {
		settings_error("'%s' not found", abs != NULL ? abs : file);
		free(file);
		free(abs);
		return -1;
	}
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, "[loggers]", 9) == 0) {
			log_warnx("%s configures logging ([loggers]); cunicorn does not "
			    "apply it (logconfig is not supported): its logs keep "
			    "gunicorn's default format", abs);
			break;
		}
	fclose(f);
	free(s->app_uri);
	s->app_uri = xasprintf("paste:%s%s", abs, hash != NULL ? hash : "");
	free(s->default_proc_name);
	s->default_proc_name = xstrdup(abs);
	free(file);
	free(abs);
	return 0;
}

int
settings_finalize(struct settings *s)
{
	unsigned id;

	if (unsupported_check(s) == -1)
		return -1;
	if (s->paste != NULL && *s->paste != '\0' && paste_app(s) == -1)
		return -1;
	if (s->app_uri == NULL && s->wsgi_app != NULL && *s->wsgi_app != '\0')
		s->app_uri = xstrdup(s->wsgi_app);
	if (s->app_uri == NULL || *s->app_uri == '\0') {
		settings_error("No application module specified.");
		return -1;
	}
	if (s->default_proc_name == NULL)
		s->default_proc_name = xstrdup(s->app_uri);

	if (s->user != NULL) {
		if (resolve_id(s->user, 0, &id) == -1) {
			settings_error("No such user: '%s'", s->user);
			return -1;
		}
		s->uid = (uid_t)id;
	} else
		s->uid = geteuid();
	if (s->group != NULL) {
		if (resolve_id(s->group, 1, &id) == -1) {
			settings_error("No such group: '%s'", s->group);
			return -1;
		}
		s->gid = (gid_t)id;
	} else
		s->gid = getegid();

	if (s->bind.len == 0) {
		settings_error("Invalid value for bind: [] (no address to bind)");
		return -1;
	}
	if (worker_class_resolve(s) == -1)
		return -1;
	if (settings_tls_check(s) == -1)
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
		case T_STR: case T_STATSD: case T_CHDIR: case T_USER: case T_GROUP:
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
		settings_ops_clear(&p->cli);
		settings_ops_clear(&p->env);
		free(p);
		s->priv = NULL;
	}
}
