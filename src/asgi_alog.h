/*
 * asgi_alog.h — the asgi worker's side of the access log: the facts of
 * a request and its response, read from a copy of the request head the
 * protocol kept, handed to the one formatter (access_log.c).  The per
 * request calls (keep the head, write the line) take a Proto and are
 * declared in asgi_int.h.
 */
#ifndef CUNICORN_ASGI_ALOG_H
#define CUNICORN_ASGI_ALOG_H

struct http_conn_limits;

/* Compile fmt (NULL: gunicorn's default) once, when an access log is
 * configured (asgi_alog_enabled() says so). */
void asgi_alog_init(const char *fmt, const struct http_conn_limits *limits);
int asgi_alog_enabled(void);

#endif
