/*
 * access_log.c — gunicorn's access log: the access_log_format compiled
 * once into segments (text, atoms such as %(h)s, %({header}i)s,
 * %({header}o)s, %({key}e)s), and one line formatted per request
 * (contract: access_log.h).
 *
 * Owns: the compiled format (read-only after access_log_init, so every
 * gthread thread may format), a per-thread line buffer, the interned
 * environ keys the atoms read.  Knows nothing of WSGI's own structs: the
 * caller hands it the parsed request, the environ and what was sent.
 *
 * Never: fails or changes a request (a missing or odd value logs "-", a
 * Python error while reading the environ is cleared), calls the app, or
 * writes anywhere but log_access_write().
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "access_log.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "http_parser.h"
#include "log.h"

enum alog_kind { AL_TEXT, AL_ATOM, AL_REQ_HEADER, AL_RESP_HEADER, AL_ENV, AL_NONE };

struct alog_seg {
	enum alog_kind kind;
	char atom;
	char *text;		/* AL_TEXT: literal; others: lower-cased name */
	size_t len;
};

static struct alog_seg *alog;		/* the compiled format, read-only after init */
static size_t nalog;
static __thread struct buf logline;	/* the line being formatted (per thread) */

/* environ keys the atoms read (interned: the environ uses the same objects) */
static PyObject *k_remote_addr, *k_request_method, *k_raw_uri,
    *k_server_protocol, *k_path_info, *k_query_string, *k_http_referer,
    *k_http_user_agent, *k_http_authorization;

static void
alog_add(enum alog_kind kind, char atom, const char *text, size_t len)
{
	alog = xreallocarray(alog, nalog + 1, sizeof(*alog));
	alog[nalog].kind = kind;
	alog[nalog].atom = atom;
	alog[nalog].text = xmalloc(len + 1);
	memcpy(alog[nalog].text, text, len);
	alog[nalog].text[len] = '\0';
	alog[nalog].len = len;
	nalog++;
}

/* Python %-format with a mapping: "%(name)s" (any conversion letter
 * treated as s), "%%". */
static void
alog_compile(const char *fmt)
{
	const char *p = fmt, *lit = fmt;

	while (*p) {
		if (p[0] != '%') {
			p++;
			continue;
		}
		if (p[1] == '%') {
			alog_add(AL_TEXT, 0, lit, (size_t)(p - lit) + 1);
			p += 2;
			lit = p;
			continue;
		}
		const char *close;
		if (p[1] != '(' || (close = strchr(p + 2, ')')) == NULL) {
			p++;
			continue;
		}
		if (p > lit)
			alog_add(AL_TEXT, 0, lit, (size_t)(p - lit));
		const char *name = p + 2;
		size_t nlen = (size_t)(close - name);
		const char *after = close + 1;
		while (*after && strchr("#0- +123456789.", *after))	/* flags, width */
			after++;
		if (*after)
			after++;	/* conversion letter */
		char buf[256];
		size_t bl = nlen < sizeof(buf) - 1 ? nlen : sizeof(buf) - 1;
		for (size_t i = 0; i < bl; i++)
			buf[i] = (char)(name[0] == '{' ? tolower((unsigned char)name[i]) : name[i]);
		buf[bl] = '\0';
		if (bl == 1 && strchr("hlutrsmUqHbBfaTDMLp", buf[0]))
			alog_add(AL_ATOM, buf[0], buf, bl);
		else if (bl > 3 && buf[0] == '{' && buf[bl - 2] == '}' && strchr("ioe", buf[bl - 1])) {
			enum alog_kind k = buf[bl - 1] == 'i' ? AL_REQ_HEADER :
			    buf[bl - 1] == 'o' ? AL_RESP_HEADER : AL_ENV;
			alog_add(k, 0, buf + 1, bl - 3);
		} else
			alog_add(AL_NONE, 0, buf, bl);
		p = after;
		lit = p;
	}
	if (p > lit)
		alog_add(AL_TEXT, 0, lit, (size_t)(p - lit));
}

static PyObject *
access_log_key(const char *s)
{
	PyObject *o = PyUnicode_InternFromString(s);
	if (o == NULL)
		fatalx("cannot intern %s", s);
	return o;
}

void
access_log_prepare(void)
{
	if (k_remote_addr != NULL)
		return;
	k_remote_addr = access_log_key("REMOTE_ADDR");
	k_request_method = access_log_key("REQUEST_METHOD");
	k_raw_uri = access_log_key("RAW_URI");
	k_server_protocol = access_log_key("SERVER_PROTOCOL");
	k_path_info = access_log_key("PATH_INFO");
	k_query_string = access_log_key("QUERY_STRING");
	k_http_referer = access_log_key("HTTP_REFERER");
	k_http_user_agent = access_log_key("HTTP_USER_AGENT");
	k_http_authorization = access_log_key("HTTP_AUTHORIZATION");
}

void
access_log_init(const char *format)
{
	access_log_prepare();
	alog_compile(format != NULL ? format :
	    "%(h)s %(l)s %(u)s %(t)s \"%(r)s\" %(s)s %(b)s \"%(f)s\" \"%(a)s\"");
}

static void
log_add_env(PyObject *env, PyObject *key, const char *dflt)
{
	PyObject *v = env ? PyDict_GetItemWithError(env, key) : NULL;
	Py_ssize_t n;
	const char *s;

	if (v != NULL && PyUnicode_Check(v) && (s = PyUnicode_AsUTF8AndSize(v, &n)) != NULL) {
		buf_append(&logline, s, (size_t)n);
		return;
	}
	PyErr_Clear();
	buf_appends(&logline, dflt);
}

static int
b64val(int c)
{
	if (c >= 'A' && c <= 'Z') return c - 'A';
	if (c >= 'a' && c <= 'z') return c - 'a' + 26;
	if (c >= '0' && c <= '9') return c - '0' + 52;
	if (c == '+') return 62;
	if (c == '/') return 63;
	return -1;
}

size_t
access_log_basic_user(const char *v, size_t n, char *out, size_t cap)
{
	const char *sp, *end = v + n;
	size_t o = 0;
	unsigned acc = 0;
	int bits = 0;

	if (n < 5 || strncasecmp(v, "basic", 5) != 0 ||
	    (sp = memchr(v, ' ', n)) == NULL)
		return 0;
	for (sp++; sp < end && o < cap; sp++) {
		int d = b64val((unsigned char)*sp);
		if (d < 0)
			continue;
		acc = (acc << 6) | (unsigned)d;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (char)((acc >> bits) & 0xff);
		}
	}
	const char *colon = memchr(out, ':', o);
	return colon == NULL ? 0 : (size_t)(colon - out);
}

/* The user of "Authorization: Basic ...", as gunicorn's _get_user. */
static void
log_add_user(PyObject *env)
{
	PyObject *v = env ? PyDict_GetItemWithError(env, k_http_authorization) : NULL;
	const char *s;
	Py_ssize_t len;
	char out[512];
	size_t n = 0;

	if (v != NULL && PyUnicode_Check(v) && (s = PyUnicode_AsUTF8AndSize(v, &len)) != NULL)
		n = access_log_basic_user(s, (size_t)len, out, sizeof(out));
	PyErr_Clear();
	if (n == 0)
		buf_appends(&logline, "-");
	else
		buf_append(&logline, out, n);
}

void
access_log_line(const struct http_request *q, void *env_obj,
    const struct access_log_response *r, uint64_t elapsed_us)
{
	PyObject *env = env_obj;
	int status_code = r->status;

	logline.len = 0;
	for (size_t i = 0; i < nalog; i++) {
		const struct alog_seg *s = &alog[i];
		switch (s->kind) {
		case AL_TEXT:
			buf_append(&logline, s->text, s->len);
			break;
		case AL_NONE:
			buf_appends(&logline, "-");
			break;
		case AL_ATOM:
			switch (s->atom) {
			case 'h': log_add_env(env, k_remote_addr, "-"); break;
			case 'l': buf_appends(&logline, "-"); break;
			case 'u': log_add_user(env); break;
			case 't': {
				char tb[64];
				struct tm tm;
				time_t now = time(NULL);
				localtime_r(&now, &tm);
				strftime(tb, sizeof(tb), "[%d/%b/%Y:%H:%M:%S %z]", &tm);
				buf_appends(&logline, tb);
				break;
			}
			case 'r':
				log_add_env(env, k_request_method, "-");
				buf_appends(&logline, " ");
				log_add_env(env, k_raw_uri, "-");
				buf_appends(&logline, " ");
				log_add_env(env, k_server_protocol, "-");
				break;
			case 's': buf_printf(&logline, "%d", status_code); break;
			case 'm': log_add_env(env, k_request_method, "-"); break;
			case 'U': log_add_env(env, k_path_info, "-"); break;
			case 'q': log_add_env(env, k_query_string, "-"); break;
			case 'H': log_add_env(env, k_server_protocol, "-"); break;
			case 'b':
			case 'B': buf_printf(&logline, "%llu", (unsigned long long)r->sent); break;
			case 'f': log_add_env(env, k_http_referer, "-"); break;
			case 'a': log_add_env(env, k_http_user_agent, "-"); break;
			case 'T': buf_printf(&logline, "%llu", (unsigned long long)(elapsed_us / 1000000)); break;
			case 'D': buf_printf(&logline, "%llu", (unsigned long long)elapsed_us); break;
			case 'M': buf_printf(&logline, "%llu", (unsigned long long)(elapsed_us / 1000)); break;
			case 'L': buf_printf(&logline, "%llu.%06llu", (unsigned long long)(elapsed_us / 1000000),
			    (unsigned long long)(elapsed_us % 1000000)); break;
			case 'p': buf_printf(&logline, "<%ld>", (long)getpid()); break;
			}
			break;
		case AL_REQ_HEADER: {
			const struct http_header *found = NULL;
			for (size_t j = 0; j < q->nheaders; j++)
				if (q->headers[j].name_len == s->len &&
				    strncasecmp(q->headers[j].name, s->text, s->len) == 0)
					found = &q->headers[j];
			if (found)
				buf_append(&logline, found->value, found->value_len);
			else
				buf_appends(&logline, "-");
			break;
		}
		case AL_RESP_HEADER: {
			const char *p = r->headers, *end = p + r->headers_len;
			const char *val = NULL;
			size_t vlen = 0;
			while (p < end) {
				const char *colon = memchr(p, ':', (size_t)(end - p));
				const char *eol = memchr(p, '\r', (size_t)(end - p));
				if (colon == NULL || eol == NULL)
					break;
				if ((size_t)(colon - p) == s->len && strncasecmp(p, s->text, s->len) == 0) {
					val = colon + 2;
					vlen = (size_t)(eol - colon - 2);
				}
				p = eol + 2;
			}
			if (val)
				buf_append(&logline, val, vlen);
			else
				buf_appends(&logline, "-");
			break;
		}
		case AL_ENV: {
			PyObject *k, *v, *str = NULL;
			Py_ssize_t pos = 0;
			const char *ks;
			Py_ssize_t kl;
			while (env && PyDict_Next(env, &pos, &k, &v)) {
				if (PyUnicode_Check(k) && (ks = PyUnicode_AsUTF8AndSize(k, &kl)) != NULL &&
				    (size_t)kl == s->len && strncasecmp(ks, s->text, s->len) == 0) {
					Py_XSETREF(str, PyObject_Str(v));
				}
			}
			const char *vs = str ? PyUnicode_AsUTF8AndSize(str, &kl) : NULL;
			if (vs)
				buf_append(&logline, vs, (size_t)kl);
			else
				buf_appends(&logline, "-");
			Py_XDECREF(str);
			PyErr_Clear();
			break;
		}
		}
	}
	buf_append(&logline, "\n", 1);
	log_access_write(logline.chars, logline.len);
}
