/*
 * uwsgi_proto.h — the uWSGI binary protocol's request packet (what
 * nginx's uwsgi_pass sends; gunicorn 25+'s `protocol = "uwsgi"`), turned
 * into the HTTP/1.1 head it stands for, so that one parser, one set of
 * limits and one body reader serve both protocols.
 *
 * The packet: modifier1 (1 byte, 0 = a WSGI request), datasize (2 bytes,
 * little-endian), modifier2 (1 byte), then datasize bytes of variables,
 * each a 2-byte little-endian length and a key, a 2-byte length and a
 * value; the body follows (CONTENT_LENGTH bytes).  The response is plain
 * HTTP.
 *
 * A pure translator: no socket, no allocation, nothing kept between
 * calls.  The connection layer (http_conn.c) runs it on every request of
 * a uwsgi connection, checks the peer against uwsgi_allow_ips, and puts
 * the head it writes in the packet's place.
 */
#ifndef CUNICORN_UWSGI_PROTO_H
#define CUNICORN_UWSGI_PROTO_H

#include <stddef.h>
#include <sys/socket.h>

#define UWSGI_MAX_VARS	1000		/* as gunicorn */

/* What the variables say beside the head. */
struct uwsgi_meta {
	int https;			/* HTTPS on, or UWSGI_SCHEME / wsgi.url_scheme https */
	int has_remote;			/* REMOTE_ADDR parsed */
	struct sockaddr_storage remote;	/* REMOTE_ADDR, REMOTE_PORT */
};

enum uwsgi_result {
	UWSGI_MORE,		/* the packet is not all here yet */
	UWSGI_OK,		/* out[0..*outlen) holds the head; *used bytes were the packet */
	UWSGI_BAD,		/* malformed: *why says how (400) */
	UWSGI_TOO_BIG,		/* the head would pass cap bytes: *outlen says
				   how many it needs */
};

/* Translate the packet at buf[0..len) into "METHOD TARGET HTTP/1.0\r\n"
 * and a header line per HTTP_* variable (and CONTENT_TYPE,
 * CONTENT_LENGTH), then "\r\n", written to out (cap bytes).  The target
 * is REQUEST_URI when given (what the client sent), else PATH_INFO
 * (percent-encoded again) and QUERY_STRING.  HTTP/1.0, so that a response
 * of unknown length is delimited by the close, never chunked (nginx's
 * uwsgi module does not decode chunked responses); the client's
 * Connection header (HTTP_CONNECTION) still asks for keep-alive.  A
 * variable holding CR, LF or NUL is refused: it would forge a header. */
int uwsgi_head(const char *buf, size_t len, char *out, size_t cap, size_t *used,
    size_t *outlen, struct uwsgi_meta *meta, const char **why);

#endif
