/*
 * access_log.h — gunicorn's access log (access_log_format and its atoms):
 * ONE formatter for every worker, over a small struct of what is known
 * about a request and its response.  The WSGI workers hand it the
 * environ (access_log_line), the asgi worker the parsed head
 * (asgi_alog.c); both end in access_log_write().  Called with the GIL
 * held, from any thread of the worker.
 */
#ifndef CUNICORN_ACCESS_LOG_H
#define CUNICORN_ACCESS_LOG_H

#include <stddef.h>
#include <stdint.h>

struct http_request;

/* A string the line may show; s == NULL shows "-". */
struct access_log_str {
	const char *s;
	size_t n;
};

/* Everything an atom can show, borrowed for the call. */
struct access_log_facts {
	struct access_log_str remote_addr;	/* %(h)s */
	struct access_log_str method;		/* %(m)s; %(r)s */
	struct access_log_str uri;		/* the raw target: %(r)s */
	struct access_log_str protocol;		/* "HTTP/1.1": %(H)s; %(r)s */
	struct access_log_str path;		/* %(U)s */
	struct access_log_str query;		/* %(q)s */
	struct access_log_str referer;		/* %(f)s */
	struct access_log_str user_agent;	/* %(a)s */
	struct access_log_str authorization;	/* %(u)s: its Basic user */
	const struct http_request *req;		/* %({name}i)s; NULL: "-" */
	void *environ;				/* %({key}e)s: a dict; NULL: "-" */
	int status;				/* %(s)s */
	uint64_t sent;				/* body bytes: %(b)s, %(B)s */
	const char *resp_headers;		/* "Name: value\r\n"...: %({name}o)s */
	size_t resp_headers_len;
	uint64_t elapsed_us;			/* %(T)s %(D)s %(M)s %(L)s */
};

/* Which facts the format shows (so a caller fills only those). */
enum {
	ACCESS_LOG_REMOTE_ADDR = 1 << 0, ACCESS_LOG_METHOD = 1 << 1,
	ACCESS_LOG_URI = 1 << 2, ACCESS_LOG_PROTOCOL = 1 << 3,
	ACCESS_LOG_PATH = 1 << 4, ACCESS_LOG_QUERY = 1 << 5,
	ACCESS_LOG_REFERER = 1 << 6, ACCESS_LOG_USER_AGENT = 1 << 7,
	ACCESS_LOG_AUTHORIZATION = 1 << 8,
};

/* The environ keys the atoms read, interned once (in the master before
 * fork, so that workers share them; access_log_init does it otherwise). */
void access_log_prepare(void);
/* Compile the format (NULL: gunicorn's default), once per worker with
 * the GIL held.  Aborts when memory runs out. */
void access_log_init(const char *format);
/* The ACCESS_LOG_* bits of the facts the compiled format shows. */
unsigned access_log_needs(void);

/* Format one line from f and write it with log_access_write(). */
void access_log_write(const struct access_log_facts *f);

/* What a WSGI worker knows after a response. */
struct access_log_response {
	int status;		/* %(s)s */
	uint64_t sent;		/* body bytes sent: %(b)s, %(B)s */
	const char *headers;	/* the app's headers as sent, "Name: value\r\n"...: %({name}o)s */
	size_t headers_len;
};

/* One line for a WSGI request: the facts from env (the request's
 * environ, borrowed; NULL when it could not be built), as gunicorn reads
 * them, then access_log_write(). */
void access_log_line(const struct http_request *q, void *env,
    const struct access_log_response *r, uint64_t elapsed_us);

#endif
