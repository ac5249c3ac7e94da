/*
 * access_log.h — gunicorn's access log (access_log_format and its atoms),
 * formatted in C from the parsed request, the environ and the response.
 * Called with the GIL held, from any thread of the worker.
 */
#ifndef CUNICORN_ACCESS_LOG_H
#define CUNICORN_ACCESS_LOG_H

#include <stddef.h>
#include <stdint.h>

struct http_request;

/* What the line says about the response. */
struct access_log_response {
	int status;		/* %(s)s */
	uint64_t sent;		/* body bytes sent: %(b)s, %(B)s */
	const char *headers;	/* the app's headers as sent, "Name: value\r\n"...: %({name}o)s */
	size_t headers_len;
};

/* The environ keys the atoms read, interned once (in the master before
 * fork, so that workers share them; access_log_init does it otherwise). */
void access_log_prepare(void);
/* Compile the format (NULL: gunicorn's default), once per worker with
 * the GIL held.  Aborts when memory runs out. */
void access_log_init(const char *format);

/* Format one line and write it with log_access_write().  env: the
 * request's environ (borrowed; NULL when it could not be built). */
void access_log_line(const struct http_request *q, void *env,
    const struct access_log_response *r, uint64_t elapsed_us);

/* The user name of an "Authorization: Basic <base64>" value, decoded
 * into out (at most cap bytes); its length, 0 for none.  No Python: the
 * asgi worker's access log uses it too. */
size_t access_log_basic_user(const char *v, size_t n, char *out, size_t cap);

#endif
