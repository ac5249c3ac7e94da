/*
 * access_log.c — gunicorn's access log, for every worker: the
 * access_log_format compiled once into segments (text, atoms such as
 * %(h)s, %({header}i)s, %({header}o)s, %({key}e)s), and one line
 * formatted per request from a struct access_log_facts (contract:
 * access_log.h).  The WSGI workers' facts come from the environ, as
 * gunicorn's glogging reads them (an app or middleware may have changed
 * it); the asgi worker fills them from the parsed head (asgi_alog.c).
 *
 * Owns: the compiled format and the facts it needs (read-only after
 * access_log_init, so every gthread thread may format), a per-thread
 * line buffer, the interned environ keys the atoms read.  Knows nothing
 * of a worker's own structs.
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
static unsigned needs;			/* ACCESS_LOG_* of its atoms */
/* The line being formatted: scratch, filled and written within one
 * access_log_line() call, so per thread (threads format at once without
 * a lock) rather than in a worker's request struct. */
static __thread struct buf logline;

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

static unsigned
atom_needs(char atom)
{
	switch (atom) {
	case 'h': return ACCESS_LOG_REMOTE_ADDR;
	case 'u': return ACCESS_LOG_AUTHORIZATION;
	case 'r': return ACCESS_LOG_METHOD | ACCESS_LOG_URI | ACCESS_LOG_PROTOCOL;
	case 'm': return ACCESS_LOG_METHOD;
	case 'U': return ACCESS_LOG_PATH;
	case 'q': return ACCESS_LOG_QUERY;
	case 'H': return ACCESS_LOG_PROTOCOL;
	case 'f': return ACCESS_LOG_REFERER;
	case 'a': return ACCESS_LOG_USER_AGENT;
	default: return 0;
	}
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
		if (bl == 1 && strchr("hlutrsmUqHbBfaTDMLp", buf[0])) {
			alog_add(AL_ATOM, buf[0], buf, bl);
			needs |= atom_needs(buf[0]);
		}
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
	if (alog != NULL)
		return;		/* once per process */
	alog_compile(format != NULL ? format :
	    "%(h)s %(l)s %(u)s %(t)s \"%(r)s\" %(s)s %(b)s \"%(f)s\" \"%(a)s\"");
}

unsigned
access_log_needs(void)
{
	return needs;
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

/* The user name of an "Authorization: Basic <base64>" value, decoded
 * into out (at most cap bytes), as gunicorn's _get_user; its length, 0
 * for none. */
static size_t
basic_user(const char *v, size_t n, char *out, size_t cap)
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

static void
add_str(struct access_log_str v)
{
	if (v.s != NULL)
		buf_append(&logline, v.s, v.n);
	else
		buf_appends(&logline, "-");
}

/* The value of the last line named name (len bytes) in "Name: value\r\n"
 * lines, or NULL. */
static const char *
resp_header(const char *p, size_t n, const char *name, size_t len, size_t *vlen)
{
	const char *end = p + n, *val = NULL;

	while (p != NULL && p < end) {
		const char *colon = memchr(p, ':', (size_t)(end - p));
		const char *eol = memchr(p, '\r', (size_t)(end - p));
		if (colon == NULL || eol == NULL || colon > eol)
			break;
		if ((size_t)(colon - p) == len && strncasecmp(p, name, len) == 0) {
			val = colon + 2;
			*vlen = (size_t)(eol - colon - 2);
		}
		p = eol + 2;
	}
	return val;
}

/* %({key}e)s: the environ's value for key, compared without case. */
static void
add_env(PyObject *env, const struct alog_seg *s)
{
	PyObject *k, *v, *str = NULL;
	Py_ssize_t pos = 0, kl;
	const char *ks, *vs;

	while (env != NULL && PyDict_Next(env, &pos, &k, &v))
		if (PyUnicode_Check(k) && (ks = PyUnicode_AsUTF8AndSize(k, &kl)) != NULL &&
		    (size_t)kl == s->len && strncasecmp(ks, s->text, s->len) == 0)
			Py_XSETREF(str, PyObject_Str(v));
	vs = str ? PyUnicode_AsUTF8AndSize(str, &kl) : NULL;
	if (vs)
		buf_append(&logline, vs, (size_t)kl);
	else
		buf_appends(&logline, "-");
	Py_XDECREF(str);
	PyErr_Clear();
}

void
access_log_write(const struct access_log_facts *f)
{
	uint64_t us = f->elapsed_us;

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
			case 'h': add_str(f->remote_addr); break;
			case 'l': buf_appends(&logline, "-"); break;
			case 'u': {
				char out[512];
				size_t n = f->authorization.s == NULL ? 0 :
				    basic_user(f->authorization.s, f->authorization.n, out, sizeof(out));
				if (n == 0)
					buf_appends(&logline, "-");
				else
					buf_append(&logline, out, n);
				break;
			}
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
				add_str(f->method);
				buf_appends(&logline, " ");
				add_str(f->uri);
				buf_appends(&logline, " ");
				add_str(f->protocol);
				break;
			case 's': buf_printf(&logline, "%d", f->status); break;
			case 'm': add_str(f->method); break;
			case 'U': add_str(f->path); break;
			case 'q': add_str(f->query); break;
			case 'H': add_str(f->protocol); break;
			case 'b':
			case 'B': buf_printf(&logline, "%llu", (unsigned long long)f->sent); break;
			case 'f': add_str(f->referer); break;
			case 'a': add_str(f->user_agent); break;
			case 'T': buf_printf(&logline, "%llu", (unsigned long long)(us / 1000000)); break;
			case 'D': buf_printf(&logline, "%llu", (unsigned long long)us); break;
			case 'M': buf_printf(&logline, "%llu", (unsigned long long)(us / 1000)); break;
			case 'L': buf_printf(&logline, "%llu.%06llu", (unsigned long long)(us / 1000000),
			    (unsigned long long)(us % 1000000)); break;
			case 'p': buf_printf(&logline, "<%ld>", (long)getpid()); break;
			}
			break;
		case AL_REQ_HEADER: {
			const struct http_header *found = NULL;
			for (size_t j = 0; f->req != NULL && j < f->req->nheaders; j++)
				if (f->req->headers[j].name_len == s->len &&
				    strncasecmp(f->req->headers[j].name, s->text, s->len) == 0)
					found = &f->req->headers[j];
			if (found)
				buf_append(&logline, found->value, found->value_len);
			else
				buf_appends(&logline, "-");
			break;
		}
		case AL_RESP_HEADER: {
			size_t vlen = 0;
			const char *val = resp_header(f->resp_headers, f->resp_headers_len, s->text,
			    s->len, &vlen);
			if (val)
				buf_append(&logline, val, vlen);
			else
				buf_appends(&logline, "-");
			break;
		}
		case AL_ENV:
			add_env(f->environ, s);
			break;
		}
	}
	buf_append(&logline, "\n", 1);
	log_access_write(logline.chars, logline.len);
}

/* ---- the WSGI workers' facts: the environ, as gunicorn reads it ---- */

static struct access_log_str
env_str(PyObject *env, PyObject *key, unsigned bit)
{
	struct access_log_str v = { NULL, 0 };
	PyObject *o;
	Py_ssize_t n;

	if (env == NULL || !(needs & bit))
		return v;
	o = PyDict_GetItemWithError(env, key);
	if (o != NULL && PyUnicode_Check(o) && (v.s = PyUnicode_AsUTF8AndSize(o, &n)) != NULL)
		v.n = (size_t)n;
	PyErr_Clear();
	return v;
}

void
access_log_line(const struct http_request *q, void *env_obj,
    const struct access_log_response *r, uint64_t elapsed_us)
{
	PyObject *env = env_obj;
	struct access_log_facts f = {
		.remote_addr = env_str(env, k_remote_addr, ACCESS_LOG_REMOTE_ADDR),
		.method = env_str(env, k_request_method, ACCESS_LOG_METHOD),
		.uri = env_str(env, k_raw_uri, ACCESS_LOG_URI),
		.protocol = env_str(env, k_server_protocol, ACCESS_LOG_PROTOCOL),
		.path = env_str(env, k_path_info, ACCESS_LOG_PATH),
		.query = env_str(env, k_query_string, ACCESS_LOG_QUERY),
		.referer = env_str(env, k_http_referer, ACCESS_LOG_REFERER),
		.user_agent = env_str(env, k_http_user_agent, ACCESS_LOG_USER_AGENT),
		.authorization = env_str(env, k_http_authorization, ACCESS_LOG_AUTHORIZATION),
		.req = q,
		.environ = env,
		.status = r->status,
		.sent = r->sent,
		.resp_headers = r->headers,
		.resp_headers_len = r->headers_len,
		.elapsed_us = elapsed_us,
	};

	access_log_write(&f);
}
