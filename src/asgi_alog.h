/*
 * asgi_alog.h — the asgi worker's access log: gunicorn's
 * access_log_format atoms over a request head (re-parsed from a copy the
 * protocol kept) and the response the protocol sent.  No Python.
 */
#ifndef CUNICORN_ASGI_ALOG_H
#define CUNICORN_ASGI_ALOG_H

#include <stddef.h>
#include <stdint.h>

struct http_conn_limits;

struct asgi_alog_entry {
	const char *head;		/* the request head as received */
	size_t head_len;
	const char *client;		/* "1.2.3.4", or NULL (unix) */
	int status;
	uint64_t sent;			/* body bytes */
	const char *resp_headers;	/* "Name: value\r\n"..., the app's */
	size_t resp_headers_len;
	uint64_t elapsed_us;
};

/* Compile fmt (NULL: gunicorn's default) once; 0 when no access log. */
void asgi_alog_init(const char *fmt, const struct http_conn_limits *limits);
int asgi_alog_enabled(void);
void asgi_alog_write(const struct asgi_alog_entry *e);

#endif
