/*
 * settings_print.c — the settings as others see them: --print-config
 * (every gunicorn setting, ours and the ones we do not implement, in
 * gunicorn's format), the one-line description the master logs, and the
 * Python object hooks read as cfg.
 *
 * Owns nothing; reads struct settings only.  Never: changes a setting.
 */
#include <Python.h>

#include "settings.h"
#include "settings_int.h"
#include "log.h"
#include "pyutil.h"
#include "statsd.h"

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
	case T_SSLVER:
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
	case T_STATSD: {
		const char *v = *FIELD(s, d, char *);
		struct statsd_address a;
		const char *why;
		/* as gunicorn's validated value: ('host', port) or the path */
		if (v == NULL || *v == '\0' || statsd_parse_address(v, &a, &why) == -1)
			fputs("None", f);
		else if (a.unix_socket)
			fputs(a.path, f);
		else {
			fputc('(', f);
			print_repr(f, a.host);
			fprintf(f, ", %u)", a.port);
		}
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
		fputs(settings_level_name(*FIELD(s, d, int)), f);
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
	case T_SSLVER:
		return PyLong_FromLong(*FIELD(s, d, int));
	case T_INT64:
		return PyLong_FromLongLong(*FIELD(s, d, long long));
	case T_BOOL:
		return PyBool_FromLong(*FIELD(s, d, int));
	case T_STR:
	case T_CHDIR:
		return py_str_or_none(*FIELD(s, d, char *));
	case T_STATSD: {
		const char *v = *FIELD(s, d, char *);
		struct statsd_address a;
		const char *why;
		if (v == NULL || *v == '\0' || statsd_parse_address(v, &a, &why) == -1)
			Py_RETURN_NONE;
		if (a.unix_socket)
			return py_str_or_none(a.path);
		return Py_BuildValue("(sI)", a.host, a.port);
	}
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
		return PyUnicode_FromString(settings_level_name(*FIELD(s, d, int)));
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
			h = settings_config_helper("noop");
		Py_XINCREF(h);
		return h;
	}
	case T_HELP:
	case T_VERSION:
		break;
	}
	Py_RETURN_NONE;
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
		if (py_dict_set_new_str(kw, d->name, value_to_python(s, d)) == -1)
			goto out;
	}
	for (size_t i = 0; i < NUNSUPPORTED; i++)
		if (py_dict_set_new_str(kw, unsupported_table[i].name,
		    unsupported_default_to_python(&unsupported_table[i])) == -1)
			goto out;
	/* gunicorn's Config properties */
	if (py_dict_set_new_str(kw, "proc_name",
	    py_str_or_none(settings_proc_name(s))) == -1 ||
	    py_dict_set_new_str(kw, "uid", PyLong_FromUnsignedLong(s->uid)) == -1 ||
	    py_dict_set_new_str(kw, "gid", PyLong_FromUnsignedLong(s->gid)) == -1 ||
	    py_dict_set_new_str(kw, "worker_class_str",
	    py_str_or_none(s->worker_class)) == -1 ||
	    py_dict_set_new_str(kw, "is_ssl",
	    PyBool_FromLong(s->certfile != NULL && *s->certfile != '\0')) == -1 ||
	    py_dict_set_new_str(kw, "app_uri", py_str_or_none(s->app_uri)) == -1)
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
	if (py_dict_set_new_str(kw, "env", env) == -1)
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
