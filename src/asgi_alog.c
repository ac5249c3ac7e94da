/*
 * asgi_alog.c — the asgi worker's access log lines (part of
 * _cunicorn_asgi; asgi_int.h names the files): the request's facts for
 * access_log.c, the one formatter every worker uses, and its statsd
 * request metrics (statsd.c), sent where the line is made.
 *
 * The request head is copied when the request starts (only when an
 * access log is configured: asgi_alog_keep_head) and parsed again when
 * the line is written, so the hot path keeps no pointers into a buffer
 * it recycles.  %({key}e)s shows "-": an ASGI app has no WSGI environ.
 *
 * Owns: the header array that second parse fills.  Never: fails or
 * changes a request (what cannot be read shows "-").
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "asgi_alog.h"

#include <stdio.h>
#include <string.h>

#include "access_log.h"
#include "asgi_int.h"
#include "http_conn.h"
#include "http_parser.h"
#include "log.h"
#include "statsd.h"

static int enabled;
static const struct http_conn_limits *lim;
static struct http_header *hdrs;

void
asgi_alog_init(const char *fmt, const struct http_conn_limits *limits)
{
	enabled = log_access_enabled();
	if (!enabled)
		return;
	lim = limits;
	hdrs = xcalloc(limits->max_headers, sizeof(*hdrs));
	access_log_init(fmt);
}

int
asgi_alog_enabled(void)
{
	return enabled;
}

/* A request (or a websocket's handshake) starts: its time, and its head
 * for the access log. */
void
asgi_alog_keep_head(Proto *p)
{
	const struct http_request *q = &p->c.req;

	if (!enabled && !statsd_enabled())
		return;
	p->alog_start_us = asgi_realtime_us();
	if (!enabled)
		return;
	if (q->head_len > p->alog_head_cap) {
		p->alog_head = xrealloc(p->alog_head, q->head_len);
		p->alog_head_cap = q->head_len;
	}
	memcpy(p->alog_head, p->c.buf, q->head_len);
	p->alog_head_len = q->head_len;
}

static struct access_log_str
str_of(const char *s, size_t n)
{
	return (struct access_log_str){ s, n };
}

static struct access_log_str
header_of(const struct http_request *q, const char *name)
{
	const struct http_header *h = q != NULL ? http_header_find(q, name) : NULL;

	return h != NULL ? str_of(h->value, h->value_len) : str_of(NULL, 0);
}

/* The line, from the kept head (spent by it). */
static void
alog_line(Proto *p, int status, uint64_t elapsed_us)
{
	struct http_request req, *q = NULL;
	struct http_error err;
	const char *client = NULL;
	char proto[16];

	if (http_parse_request(p->alog_head, p->alog_head_len, &lim->parse, &req, hdrs,
	    lim->max_headers, &err) == HTTP_PARSE_OK)
		q = &req;
	if (p->client != NULL && PyTuple_Check(p->client) &&
	    PyUnicode_Check(PyTuple_GET_ITEM(p->client, 0)))
		client = PyUnicode_AsUTF8(PyTuple_GET_ITEM(p->client, 0));
	PyErr_Clear();
	int pl = q ? snprintf(proto, sizeof(proto), "HTTP/%d.%d", q->version_major,
	    q->version_minor) : 0;
	struct access_log_facts f = {
		.remote_addr = str_of(client, client ? strlen(client) : 0),
		.method = q ? str_of(q->method, q->method_len) : str_of(NULL, 0),
		.uri = q ? str_of(q->target, q->target_len) : str_of(NULL, 0),
		.protocol = q ? str_of(proto, (size_t)pl) : str_of(NULL, 0),
		.path = q ? str_of(q->path, q->path_len) : str_of(NULL, 0),
		.query = q ? str_of(q->query ? q->query : "", q->query_len) : str_of(NULL, 0),
		.referer = header_of(q, "referer"),
		.user_agent = header_of(q, "user-agent"),
		.authorization = header_of(q, "authorization"),
		.req = q,
		.environ = NULL,
		.status = status,
		.sent = p->resp_sent,
		.resp_headers = p->rhead,
		.resp_headers_len = p->rhead_len,
		.elapsed_us = elapsed_us,
	};
	access_log_write(&f);
	p->alog_head_len = 0;
}

/* The request just answered with status: its access log line and its
 * statsd metrics (once; a websocket sends no metrics, as gunicorn's asgi
 * worker, and its whole life would skew the requests' durations), then
 * the post_request hook (asgi_hooks.c), as gunicorn orders them. */
void
asgi_access_log(Proto *p, int status)
{
	if (p->alog_start_us != 0) {
		uint64_t now = asgi_realtime_us();
		uint64_t elapsed = now > p->alog_start_us ? now - p->alog_start_us : 0;

		if (enabled && p->alog_head_len != 0)
			alog_line(p, status, elapsed);
		if (!p->is_ws)
			statsd_request(status, elapsed);
		p->alog_start_us = 0;
	}
	asgi_hook_post_request(p, status);
}
