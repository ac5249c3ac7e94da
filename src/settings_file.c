/*
 * settings_file.c — the Python config file (gunicorn.conf.py, -c FILE,
 * -c python:module).
 *
 * python/cunicorn/_config.py runs the file as gunicorn does and hands back
 * its namespace; every module-level name that is a row's name is
 * converted to the row's text form and fed to settings_set_value(), so a
 * value from the file is checked exactly as one from the command line.
 * Hooks are kept as Python callables, their arity checked.  Names of
 * unsupported_table are recorded for settings_finalize().
 *
 * Owns: the reference to cunicorn._config's globals.  Never: leaves a
 * Python exception set on return, or lets one escape as more than one
 * "Error: config file ..." line.
 */
#include <Python.h>

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

/* The helpers that are simpler in Python (loading the file like gunicorn,
 * an exception as one line, a hook's arity, the no-op hook) live in
 * python/cunicorn/_config.py; imported on first use. */
static PyObject *helpers;	/* cunicorn._config's globals (dict) */

void *
settings_config_helper(const char *name)
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

	settings_invalid(d, t, why);
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
	fn = settings_config_helper("describe");
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
	if ((fn = settings_config_helper("hook")) == NULL ||
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
		up = settings_strip_dup(k);
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

/* A str value: its text to the setter. */
static int
set_str_py(struct settings *s, const struct setting_def *d, PyObject *v)
{
	const char *u = PyUnicode_AsUTF8(v);

	if (u == NULL) {
		PyErr_Clear();
		return invalid_py(d, v, "not valid text");
	}
	return settings_set_value(s, d, u, 0);
}

/* A list setting from a str (one item / comma list), None, or a
 * sequence of str. */
static int
set_list_py(struct settings *s, const struct setting_def *d, PyObject *v)
{
	struct strlist *l = FIELD(s, d, struct strlist), saved = *l;
	PyObject *seq;
	Py_ssize_t n;

	if (PyUnicode_Check(v))
		return set_str_py(s, d, v);
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
		if (settings_set_value(s, d, u, 1) == -1)
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
			s->sendfile = settings_sendfile_default();	/* gunicorn's None */
			return 0;
		}
		if (d->type == T_BOOL)
			return settings_set_value(s, d, "false", 0);
		if (d->flags & F_NULLABLE)
			return settings_set_value(s, d, NULL, 0);
		return invalid_py(d, v, "a value is required");
	}
	if (PyBool_Check(v)) {
		if (d->type == T_BOOL)
			return settings_set_value(s, d, v == Py_True ? "true" : "false", 0);
		if (d->flags & F_OPTVAL) {	/* True: as the flag alone; False: off */
			char first[32];
			snprintf(first, sizeof(first), "%.*s",
			    (int)strcspn(d->choices, "|"), d->choices);
			return settings_set_value(s, d, v == Py_True ? first : "off", 0);
		}
		if (d->type != T_INT && d->type != T_INT64)
			return invalid_py(d, v, d->type == T_UMASK ?
			    "expected an integer" : "expected a string");
		return settings_set_value(s, d, v == Py_True ? "1" : "0", 0);
	}
	if (PyLong_Check(v)) {
		long long n;
		switch (d->type) {
		case T_INT: case T_INT64: case T_UMASK: case T_USER:
		case T_GROUP: case T_SSLVER:
			break;
		case T_BOOL:
			return invalid_py(d, v, "expected True or False");
		default:
			return invalid_py(d, v, "expected a string");
		}
		/* as a number: an IntEnum (ssl.CERT_REQUIRED, ssl.PROTOCOL_TLS)
		 * is its value, whatever its str() says */
		n = PyLong_AsLongLong(v);
		if (n == -1 && PyErr_Occurred()) {
			PyErr_Clear();
			text = py_text(v);
		} else
			text = xasprintf("%lld", n);
		rc = settings_set_value(s, d, text, 0);
		free(text);
		return rc;
	}
	if (PyUnicode_Check(v))
		return set_str_py(s, d, v);
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
		settings_error("config file '%s' doesn't exist", fs);
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

	if ((fn = settings_config_helper("load")) == NULL ||
	    (ns = PyObject_CallFunction(fn, "s", path)) == NULL) {
		char *line = exception_line(path);
		settings_error("config file '%s': %s", fs, line);
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
		settings_unsupported_set(s, &unsupported_table[i], text);
		free(text);
	}
	Py_DECREF(ns);
	rc = settings_apply_overrides(s);
out:
	free(path);
	return rc;
}
