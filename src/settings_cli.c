/*
 * settings_cli.c — the command line and GUNICORN_CMD_ARGS, parsed as
 * gunicorn's argparse parses them.
 *
 * Both sources become a list of (row, value) operations kept in s->priv;
 * settings_apply_overrides() replays them (env, then command line) after
 * the config file, which gives gunicorn's precedence.  Long flags may be
 * abbreviated when unambiguous; a flag of unsupported_table takes a
 * value or not exactly as gunicorn's does.  GUNICORN_CMD_ARGS is split
 * as shlex.split() splits.  Also -h/--help and -v/--version.
 *
 * Owns: the recorded operations (freed by settings_ops_clear()).  Never:
 * touches Python, or exits other than for -h and -v.
 */
#include "settings.h"
#include "settings_int.h"
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
	    "command line wins.\ngunicorn's other settings (--log-config, "
	    "--spew, ...) are accepted and\nignored with a warning; "
	    "TLS and HTTP/2 are refused.\n");
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

void
settings_ops_clear(struct option_ops *o)
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
	return settings_parse_int(a, &n) == -1;
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
				settings_error("unrecognized arguments: %s", a);
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
					settings_error("ambiguous option: %.*s",
					    eq ? (int)(eq - a) : (int)strlen(a),
					    a);
				else
					settings_error("unrecognized arguments: %s",
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
					settings_error("unrecognized arguments: %s",
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
				settings_error("argument %s: ignored explicit "
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
		if (!has_value && d != NULL && (d->flags & F_OPTVAL)) {
			/* as U_OPTIONAL below: a choice, or the first one */
			char first[32];
			snprintf(first, sizeof(first), "%.*s",
			    (int)strcspn(d->choices, "|"), d->choices);
			if (i + 1 < nwords && is_choice(d->choices, words[i + 1]))
				ops_push(o, d, words[++i]);
			else
				ops_push(o, d, first);
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
				settings_error("argument %s: expected one argument",
				    flag_names(&row, fb, sizeof(fb)));
				return -1;
			}
			value = words[++i];
		}
		ops_push_row(o, d, u, value);
	}
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
			settings_unsupported_set(s, o->ops[i].unsupported,
			    o->ops[i].value);
			continue;
		}
		idx = (size_t)(d - settings_table);
		if (d->type == T_LIST) {
			append = seen[idx];
			seen[idx] = 1;
		}
		if (settings_set_value(s, d, o->ops[i].value, append) == -1)
			return -1;
	}
	return 0;
}

int
settings_parse_args(struct settings *s, int argc, char **argv)
{
	struct settings_private *p = s->priv;

	settings_ops_clear(&p->cli);
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
				settings_error("GUNICORN_CMD_ARGS: No escaped "
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
	settings_error("GUNICORN_CMD_ARGS: No closing quotation");
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

	settings_ops_clear(&p->env);
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
