/*
 * http_conn.h — the HTTP connection layer every worker type shares.
 * No Python here (wsgi.c is the only place that calls the app).
 *
 * A connection owns its read buffer: the request head is parsed in place
 * (http_parser.c), the body reader (wsgi.c) decodes from the same buffer,
 * and what follows the body — the next pipelined request — stays there
 * for the next round (http_conn_shift).  The layer also owns the socket
 * I/O with bounded waits, gunicorn's error page, the Date header and the
 * request limits, clamped in one place.
 *
 * Worker types (http_worker.c: sync; gthread_worker.c: keep-alive, event
 * loop and threads) decide when to read, which deadline applies and what
 * happens after a response; this file decides nothing of the kind.
 */
#ifndef CUNICORN_HTTP_CONN_H
#define CUNICORN_HTTP_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "conn_out.h"
#include "http_drain.h"
#include "http_parser.h"
#include "ip_allow.h"
#include "proxy_proto.h"
#include "uwsgi_proto.h"

struct settings;
struct listener;

/* Request limits from the settings, clamped as gunicorn's parser does. */
struct http_conn_limits {
	struct http_limits parse;	/* what http_parse_request enforces */
	size_t head_max;		/* a head longer than this is refused (431) */
	size_t max_headers;		/* header slots per connection */
	size_t body_room;		/* buffer space after the head for body reads */
	int head_timeout_ms;		/* a whole head must arrive within this,
					   counted from the accept (or from the end
					   of the previous response) */
	int proxy_mode;			/* proxy_protocol: enum proxy_mode */
	struct ip_allow proxy_allow;	/* proxy_allow_ips */
	int uwsgi;			/* protocol = "uwsgi": every request is a
					   uWSGI packet (uwsgi_proto.h) */
	struct ip_allow uwsgi_allow;	/* uwsgi_allow_ips */
};

void http_conn_limits_init(struct http_conn_limits *l, const struct settings *cfg);
/* What init allocated (the proxy_allow_ips list). */
void http_conn_limits_free(struct http_conn_limits *l);

/* A request body must keep coming: one total deadline that starts at the
 * head's (limits.head_timeout_ms) and grows by a second for every
 * HTTP_BODY_MIN_RATE bytes, so that a big upload at a sane pace goes
 * through and a trickle is cut (the body reader's rule: wsgi_input.c). */
#define HTTP_BODY_MIN_RATE	(64 * 1024)

/* How long `left` more body bytes may take, from now, by that rule. */
static inline uint64_t
http_body_rest_ms(int base_ms, uint64_t left)
{
	return (uint64_t)(base_ms > 0 ? base_ms : 0) + left * 1000 / HTTP_BODY_MIN_RATE;
}

/* A response body the worker's loop relays from a dirty stream after the
 * app's thread returned (gthread): the connection to the arbiter with the
 * call under way.  Made by wsgi.c, owned by the worker from then on. */
struct http_relay {
	int fd;				/* to the dirty arbiter */
	uint64_t id;			/* the call's request id */
	char *pending;			/* bytes already read from fd (owned) */
	size_t pending_len;
	unsigned idle_ms, total_ms;	/* between chunks / whole stream; 0: none */
};

struct http_conn {
	int fd;
	const struct listener *listener;
	struct sockaddr_storage peer;
	socklen_t peerlen;
	char *buf;			/* owned by whoever set it up; cap bytes */
	size_t len;			/* bytes read so far: buf[0..len) */
	size_t cap;			/* up to head_max + body_room, and up to
					   head_max more when a uWSGI head is
					   larger than its packet */
	int read_full;			/* http_conn_read_some's last read filled
					   the room it had: the socket may hold
					   more */
	struct http_header *headers;	/* max_headers slots */
	struct http_request req;	/* after a parsed head: points into buf */
	/* The PROXY protocol (proxy_proto.h): a preamble may still come
	 * (http_conn_begin sets it when the setting is on), and what the
	 * connection's preamble said, for every request on it. */
	int proxy_expect;
	struct proxy_info proxy;
	/* The client, when not the peer: a PROXY preamble's (the whole
	 * connection), a uWSGI request's REMOTE_ADDR (that request); and a
	 * uWSGI request's HTTPS. */
	int has_client;
	struct sockaddr_storage client;
	int https;

	/* Per request, for and from the app glue (wsgi.c): */
	int keepalive;		/* in: this response may leave the connection open;
				   out: it did, another request may follow */
	size_t next;		/* out, keepalive: the next request starts at buf[next] */
	struct http_drain drain;	/* out, keepalive: the rest of the body, not
				   here yet, to read and drop before the next
				   request (gthread's loop: CS_DRAIN,
				   gthread_drain.c); inactive: none */
	int body_unread;	/* out, closing: request bytes may be unread (linger) */
	struct http_relay *relay;	/* out: the body is still to come (relay) */
	/* Response bytes the socket did not take yet (conn_out.h): the
	 * writing thread keeps up to out_cap bytes there instead of waiting
	 * (0: it waits; the sync worker), the gthread loop writes them on. */
	struct conn_out out;
	size_t out_cap;

	/* Worker bookkeeping (gthread_worker.c); unused by the sync worker. */
	int state;
	unsigned long served;		/* requests answered on this connection */
	uint64_t deadline_ms;		/* of the current state's timer */
	struct http_conn *tprev, *tnext;	/* timer list */
	struct http_conn *qnext;	/* hand-off queues */
};

/* Allocate buf (initial bytes, or 0: the most a request needs) and
 * headers for l; free them (and the output buffer's memory).  A smaller
 * buffer grows while a head is read (http_conn_read_some). */
void http_conn_alloc(struct http_conn *c, const struct http_conn_limits *l,
    size_t initial);
void http_conn_free_buffers(struct http_conn *c);

/* A connection was just accepted: what the layer keeps per connection
 * starts afresh (a PROXY preamble is looked for if l asks for one). */
void http_conn_begin(struct http_conn *c, const struct http_conn_limits *l);

/* The client's address: a uWSGI request's REMOTE_ADDR, else the one a
 * PROXY preamble gave, else the peer's. */
static inline const struct sockaddr_storage *
http_conn_client(const struct http_conn *c)
{
	return c->has_client ? &c->client : &c->peer;
}

enum http_head_result {
	HTTP_HEAD_READY,	/* c->req holds a request */
	HTTP_HEAD_MORE,		/* incomplete, within limits */
	HTTP_HEAD_BAD,		/* *err says what to answer */
};
/* Parse buf[0..len): first the connection's PROXY preamble, if one is
 * expected (dropped from buf once decoded; from a peer not in
 * proxy_allow_ips, 403), then, with protocol uwsgi, the request's packet
 * (replaced in buf by the HTTP head it stands for; from a peer not in
 * uwsgi_allow_ips, 403), then the head. */
int http_conn_parse(struct http_conn *c, const struct http_conn_limits *l,
    struct http_error *err);
/* One non-blocking read into buf[len..cap), growing buf first if it is
 * full and the head limit allows: >0 bytes, 0 EOF, -1
 * error (EAGAIN: nothing yet).  Never waits. */
ssize_t http_conn_read_some(struct http_conn *c, const struct http_conn_limits *l);
/* After a keep-alive response: drop the request just served, move the
 * pipelined bytes buf[next..len) to the front. */
void http_conn_shift(struct http_conn *c);

/* ---- socket I/O with bounded waits (any thread) ----
 * The fds are non-blocking; a wait longer than the configured timeout
 * fails with ETIMEDOUT.  on_eintr runs after a signal interrupted a wait
 * (the sync worker acts on urgent signals there).  unlock/relock, when
 * set, are called around every wait (the app glue releases the GIL). */
struct http_io_hooks {
	int timeout_ms;			/* -1: none */
	void (*on_eintr)(void);
	void *(*unlock)(void);
	void (*relock)(void *);
};
void http_io_configure(const struct http_io_hooks *h);
int http_io_wait(int fd, short events);
/* >0 bytes, 0 EOF, -1 error or stall (errno ETIMEDOUT) */
ssize_t http_io_recv(int fd, void *buf, size_t n);
/* The same, also failing with ETIMEDOUT at deadline (monotonic ms). */
ssize_t http_io_recv_until(int fd, void *buf, size_t n, uint64_t deadline);
/* Write every iov (the array is modified); 0 or -1 (errno set). */
int http_io_send_iov(int fd, struct iovec *iov, int iovcnt);
int http_io_send(int fd, const void *p, size_t n);
/* Write what the socket takes of the iovs, never waiting; *iov and
 * *iovcnt are moved past what was written.  0 all written, 1 the rest
 * waits (EAGAIN), -1 error (errno). */
int http_io_writev_nowait(int fd, struct iovec **iov, int *iovcnt);
/* Send what the socket takes of *left bytes of the file `file` from
 * offset *pos, with sendfile(2), never waiting (the WSGI workers'
 * file_wrapper, the asgi worker's http.response.pathsend): *pos and
 * *left move past what was sent.  0 all sent, 1 the socket is full
 * (EAGAIN), 2 the file ended first (it is shorter than was said),
 * -1 error (errno).  SIGPIPE cannot be raised by it (util.h). */
enum { HTTP_FILE_SENT, HTTP_FILE_FULL, HTTP_FILE_SHORT };
int http_io_sendfile_nowait(int sock, int file, off_t *pos, uint64_t *left);
/* The I/O timeout in ms (-1: none): a socket wait fails after it. */
int http_io_timeout_ms(void);
/* After EINTR outside these functions (sendfile): run the on_eintr hook. */
void http_io_interrupted(void);
/* Close; when request bytes may be left unread, half-close and drain a
 * little first so that the client reads the response, not a reset. */
void http_io_close(int fd, int linger);

/* gunicorn's error page: status line, Connection: close, text/html body
 * with the reason and the HTML-escaped message. */
void http_write_error(int fd, int status, const char *reason, const char *mesg);

/* The Date header's value, cached per second per thread. */
const char *http_date(void);

/* "1.2.3.4" / "::1" of a peer address ("" for unix); its port or -1. */
int http_peer_format(const struct sockaddr_storage *ss, char *buf, size_t len);

#endif
