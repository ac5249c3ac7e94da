/*
 * asgi_alog.c — the asgi worker's access log (contract: asgi_alog.h).
 *
 * gunicorn's atoms: h l u t r s m U q H b B f a T D M L p, {header}i,
 * {header}o; {var}e is "-" (an ASGI app has no WSGI environ).  The
 * format is compiled once into segments; a line is built in one buffer
 * and written whole.  The request head is parsed again from the copy the
 * protocol kept (only when an access log is configured), so the hot path
 * keeps no pointers into a buffer it recycles.
 */
#include "asgi_alog.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "http_conn.h"
#include "http_parser.h"
#include "access_log.h"
#include "log.h"

enum seg_kind { SEG_TEXT, SEG_ATOM, SEG_REQ, SEG_RESP, SEG_NONE };

struct seg {
	enum seg_kind kind;
	char atom;
	char *text;
	size_t len;
};

static struct seg *segs;
static size_t nsegs;
static int enabled;
static const struct http_conn_limits *lim;
static struct http_header *hdrs;
static char *line;
static size_t line_len, line_cap;

static void
seg_add(enum seg_kind kind, char atom, const char *text, size_t len)
{
	segs = xreallocarray(segs, nsegs + 1, sizeof(*segs));
	segs[nsegs].kind = kind;
	segs[nsegs].atom = atom;
	segs[nsegs].text = xmalloc(len + 1);
	memcpy(segs[nsegs].text, text, len);
	segs[nsegs].text[len] = '\0';
	segs[nsegs].len = len;
	nsegs++;
}

void
asgi_alog_init(const char *fmt, const struct http_conn_limits *limits)
{
	const char *p, *lit;

	enabled = log_access_enabled();
	if (!enabled)
		return;
	lim = limits;
	hdrs = xcalloc(limits->max_headers, sizeof(*hdrs));
	if (fmt == NULL)
		fmt = "%(h)s %(l)s %(u)s %(t)s \"%(r)s\" %(s)s %(b)s \"%(f)s\" \"%(a)s\"";
	/* Python %-format with a mapping: "%(name)s", "%%" */
	for (p = lit = fmt; *p;) {
		const char *close;
		if (p[0] != '%') {
			p++;
			continue;
		}
		if (p[1] == '%') {
			seg_add(SEG_TEXT, 0, lit, (size_t)(p - lit) + 1);
			p += 2;
			lit = p;
			continue;
		}
		if (p[1] != '(' || (close = strchr(p + 2, ')')) == NULL) {
			p++;
			continue;
		}
		if (p > lit)
			seg_add(SEG_TEXT, 0, lit, (size_t)(p - lit));
		const char *name = p + 2, *after = close + 1;
		size_t n = (size_t)(close - name);
		while (*after && strchr("#0- +123456789.", *after))
			after++;
		if (*after)
			after++;
		if (n == 1 && strchr("hlutrsmUqHbBfaTDMLp", name[0]))
			seg_add(SEG_ATOM, name[0], name, 1);
		else if (n > 3 && name[0] == '{' && name[n - 2] == '}' &&
		    (name[n - 1] == 'i' || name[n - 1] == 'o'))
			seg_add(name[n - 1] == 'i' ? SEG_REQ : SEG_RESP, 0, name + 1, n - 3);
		else
			seg_add(SEG_NONE, 0, name, n);
		p = lit = after;
	}
	if (p > lit)
		seg_add(SEG_TEXT, 0, lit, (size_t)(p - lit));
}

int
asgi_alog_enabled(void)
{
	return enabled;
}

static void
add(const char *s, size_t n)
{
	if (line_len + n > line_cap) {
		size_t want = line_cap ? line_cap * 2 : 512;
		while (want < line_len + n)
			want *= 2;
		line = xrealloc(line, want);
		line_cap = want;
	}
	memcpy(line + line_len, s, n);
	line_len += n;
}

static void
adds(const char *s)
{
	add(s, strlen(s));
}

static void __attribute__((format(printf, 1, 2)))
addf(const char *fmt, ...)
{
	char b[64];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(b, sizeof(b), fmt, ap);
	va_end(ap);
	if (n > 0)
		add(b, (size_t)n < sizeof(b) ? (size_t)n : sizeof(b) - 1);
}

static const struct http_header *
req_header(const struct http_request *q, const char *name, size_t len)
{
	for (size_t i = 0; i < q->nheaders; i++)
		if (q->headers[i].name_len == len && strncasecmp(q->headers[i].name, name, len) == 0)
			return &q->headers[i];
	return NULL;
}

static void
add_header(const struct http_request *q, const char *name)
{
	const struct http_header *h = q ? req_header(q, name, strlen(name)) : NULL;

	if (h != NULL)
		add(h->value, h->value_len);
	else
		adds("-");
}

/* The user of "Authorization: Basic ..." (access_log.c decodes it). */
static void
add_user(const struct http_request *q)
{
	const struct http_header *h = q ? req_header(q, "authorization", 13) : NULL;
	char out[512];
	size_t n = h ? access_log_basic_user(h->value, h->value_len, out, sizeof(out)) : 0;

	if (n == 0)
		adds("-");
	else
		add(out, n);
}

void
asgi_alog_write(const struct asgi_alog_entry *e)
{
	struct http_request req, *q = NULL;
	struct http_error err;
	uint64_t us = e->elapsed_us;

	if (!enabled)
		return;
	if (http_parse_request(e->head, e->head_len, &lim->parse, &req, hdrs,
	    lim->max_headers, &err) == HTTP_PARSE_OK)
		q = &req;
	line_len = 0;
	for (size_t i = 0; i < nsegs; i++) {
		const struct seg *s = &segs[i];
		switch (s->kind) {
		case SEG_TEXT:
			add(s->text, s->len);
			break;
		case SEG_NONE:
			adds("-");
			break;
		case SEG_REQ:
			add_header(q, s->text);
			break;
		case SEG_RESP: {
			const char *p = e->resp_headers, *end = p + e->resp_headers_len;
			const char *val = NULL;
			size_t vlen = 0;
			while (p != NULL && p < end) {
				const char *colon = memchr(p, ':', (size_t)(end - p));
				const char *eol = memchr(p, '\r', (size_t)(end - p));
				if (colon == NULL || eol == NULL || colon > eol)
					break;
				if ((size_t)(colon - p) == s->len && strncasecmp(p, s->text, s->len) == 0) {
					val = colon + 2;
					vlen = (size_t)(eol - colon - 2);
				}
				p = eol + 2;
			}
			if (val != NULL)
				add(val, vlen);
			else
				adds("-");
			break;
		}
		case SEG_ATOM:
			switch (s->atom) {
			case 'h': adds(e->client ? e->client : "-"); break;
			case 'l': adds("-"); break;
			case 'u': add_user(q); break;
			case 't': {
				char tb[64];
				struct tm tm;
				time_t now = time(NULL);
				localtime_r(&now, &tm);
				strftime(tb, sizeof(tb), "[%d/%b/%Y:%H:%M:%S %z]", &tm);
				adds(tb);
				break;
			}
			case 'r':
				if (q == NULL) {
					adds("-");
					break;
				}
				add(q->method, q->method_len);
				adds(" ");
				add(q->target, q->target_len);
				addf(" HTTP/%d.%d", q->version_major, q->version_minor);
				break;
			case 's': addf("%d", e->status); break;
			case 'm': if (q) add(q->method, q->method_len); else adds("-"); break;
			case 'U': if (q) add(q->path, q->path_len); else adds("-"); break;
			case 'q': if (q) add(q->query, q->query_len); else adds("-"); break;
			case 'H':
				if (q)
					addf("HTTP/%d.%d", q->version_major, q->version_minor);
				else
					adds("-");
				break;
			case 'b':
			case 'B': addf("%llu", (unsigned long long)e->sent); break;
			case 'f': add_header(q, "referer"); break;
			case 'a': add_header(q, "user-agent"); break;
			case 'T': addf("%llu", (unsigned long long)(us / 1000000)); break;
			case 'D': addf("%llu", (unsigned long long)us); break;
			case 'M': addf("%llu", (unsigned long long)(us / 1000)); break;
			case 'L': addf("%llu.%06llu", (unsigned long long)(us / 1000000),
			    (unsigned long long)(us % 1000000)); break;
			case 'p': addf("<%ld>", (long)getpid()); break;
			}
			break;
		}
	}
	add("\n", 1);
	log_access_write(line, line_len);
}
