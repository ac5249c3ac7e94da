/*
 * fuzz_http_conn.c — libFuzzer target for the connection layer
 * (src/http_conn.c) over a byte stream of pipelined requests.
 *
 * The input is what a client sends on one keep-alive connection, arriving
 * in pieces whose sizes the first byte chooses.  The target does what a
 * worker does: read into the connection's buffer (growing it as
 * http_conn_read_some does), parse a head, walk its body (Content-Length
 * or chunked), mark where the next request begins, shift, repeat.  It
 * checks that a request never reaches past the bytes read, that the
 * buffer never grows past the limit, and that the same stream delivered
 * in one piece gives the same requests (count and targets).  The first
 * byte's top bit turns the PROXY protocol on (auto; alone, from a peer
 * not allowed to send one, so a preamble is refused): the stream
 * may then start with a v1 line or a v2 header (proxy_proto.c), whose
 * outcome must not depend on the pieces either; the next bit makes every
 * request a uWSGI packet (uwsgi_proto.c), turned into its head in the
 * buffer before it is parsed.
 */
#include "http_conn.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "settings.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define ASSERT(c)	do { if (!(c)) abort(); } while (0)
#define MAX_REQS	64

struct outcome {
	int nreq;
	size_t target_len[MAX_REQS];
	uint64_t target_hash[MAX_REQS];
	int error;
	struct proxy_info proxy;
};

static uint64_t
hash(const char *p, size_t n)
{
	uint64_t h = 1469598103934665603ULL;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)p[i]) * 1099511628211ULL;
	return h;
}

/* Walk the body of c->req from c->req.head_len; the offset after it, or
 * 0 when it needs more bytes, or (size_t)-1 on a framing error. */
static size_t
body_end(struct http_conn *c)
{
	size_t pos = c->req.head_len;

	if (c->req.body == HTTP_BODY_LENGTH) {
		if (c->req.content_length > c->len - pos)
			return 0;
		return pos + (size_t)c->req.content_length;
	}
	if (c->req.body == HTTP_BODY_CHUNKED) {
		struct http_chunked ch;
		http_chunked_init(&ch);
		while (!ch.done) {
			size_t used = 0, dlen = 0;
			const char *d;
			struct http_error err;
			int r = http_chunked_next(&ch, c->buf + pos, c->len - pos, &used, &d,
			    &dlen, &err);
			ASSERT(used <= c->len - pos);
			if (dlen > 0)
				ASSERT(d >= c->buf && d + dlen <= c->buf + c->len);
			pos += used;
			if (r == HTTP_PARSE_ERROR)
				return (size_t)-1;
			if (r == HTTP_PARSE_INCOMPLETE && !ch.done)
				return 0;
		}
		return pos;
	}
	return pos;
}

/* Deliver data through a socketpair in pieces of `piece` bytes. */
static void
run(const uint8_t *data, size_t size, size_t piece, const struct http_conn_limits *l,
    struct outcome *o)
{
	int sv[2];
	struct http_conn c;
	size_t sent = 0;
	int have = 0;

	memset(o, 0, sizeof(*o));
	memset(&c, 0, sizeof(c));
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == -1)
		abort();
	c.fd = sv[0];
	/* a TCP peer, 127.0.0.1: some lists allow it, one does not (403) */
	struct sockaddr_in *in = (struct sockaddr_in *)&c.peer;
	in->sin_family = AF_INET;
	in->sin_addr.s_addr = htonl(0x7f000001);
	http_conn_alloc(&c, l, 64);	/* small: exercise the growth */
	http_conn_begin(&c, l);
	for (;;) {
		if (sent < size) {
			size_t n = size - sent < piece ? size - sent : piece;
			ssize_t w = write(sv[1], data + sent, n);
			if (w > 0)
				sent += (size_t)w;
			if (sent == size)
				shutdown(sv[1], SHUT_WR);
		} else if (size == 0)
			shutdown(sv[1], SHUT_WR);
		ssize_t r = http_conn_read_some(&c, l);
		/* a uWSGI head longer than its packet grows the buffer by the
		 * difference (http_conn.c: take_uwsgi) */
		ASSERT(c.len <= c.cap && c.cap <= l->head_max + l->body_room +
		    (l->uwsgi ? size + l->head_max : 0));
		ASSERT(c.proxy.kind >= PROXY_NONE && c.proxy.kind <= PROXY_LOCAL);
		if (r == 0 && sent == size)
			break;
		/* serve every complete request buffered */
		for (;;) {
			struct http_error err;
			/* a head parsed before, its body still coming: parsed again
			 * where it is (a worker keeps its request; the buffer may have
			 * moved), never given to http_conn_parse twice (a uWSGI
			 * packet is already its head) */
			int h = have ? (http_parse_request(c.buf, c.len, &l->parse, &c.req,
			    c.headers, l->max_headers, &err) == HTTP_PARSE_OK ?
			    HTTP_HEAD_READY : HTTP_HEAD_BAD) :
			    http_conn_parse(&c, l, &err);
			ASSERT(!have || h == HTTP_HEAD_READY);
			if (h == HTTP_HEAD_BAD) {
				ASSERT(err.status >= 400 && err.status < 600);
				o->error = 1;
				goto done;
			}
			if (h != HTTP_HEAD_READY)
				break;
			ASSERT(c.req.head_len <= c.len);
			ASSERT(c.req.target >= c.buf && c.req.target + c.req.target_len <= c.buf + c.len);
			size_t end = body_end(&c);
			if (end == (size_t)-1) {
				o->error = 1;
				goto done;
			}
			have = end == 0;
			if (end == 0)
				break;	/* the body is still coming */
			ASSERT(end <= c.len);
			if (o->nreq < MAX_REQS) {
				o->target_len[o->nreq] = c.req.target_len;
				o->target_hash[o->nreq] = hash(c.req.target, c.req.target_len);
			}
			o->nreq++;
			c.next = end;
			http_conn_shift(&c);
			if (c.len == 0)
				break;
		}
		if (r == -1 && c.len >= l->head_max)
			break;	/* a body larger than the buffer: a worker reads it apart */
	}
done:
	o->proxy = c.proxy;
	http_conn_free_buffers(&c);
	close(sv[0]);
	close(sv[1]);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct http_conn_limits limits, proxied, uwsgi, both;
	static char local[] = "127.0.0.0/8", other[] = "10.0.0.1";
	static char *locals[] = { local }, *others[] = { other };
	static int ready;
	struct outcome whole, split;

	if (!ready) {
		struct settings s;
		memset(&s, 0, sizeof(s));
		s.limit_request_line = 4094;
		s.limit_request_fields = 20;
		s.limit_request_field_size = 1024;
		s.timeout = 30;
		http_conn_limits_init(&limits, &s);
		s.proxy_protocol = (char *)"auto";
		/* proxied: a preamble from this peer is refused (403); a stream
		 * without one is served */
		s.proxy_allow_ips.items = others;
		s.proxy_allow_ips.len = 1;
		http_conn_limits_init(&proxied, &s);
		s.proxy_allow_ips.items = locals;
		s.protocol = (char *)"uwsgi";
		s.uwsgi_allow_ips.items = locals;
		s.uwsgi_allow_ips.len = 1;
		http_conn_limits_init(&both, &s);
		s.proxy_protocol = NULL;
		http_conn_limits_init(&uwsgi, &s);
		ready = 1;
	}
	if (size == 0 || size > 256 * 1024)
		return 0;
	size_t piece = 1 + (data[0] & 0x3f) % 61;
	const struct http_conn_limits *l = (data[0] & 0xc0) == 0xc0 ? &both :
	    data[0] & 0x80 ? &proxied : data[0] & 0x40 ? &uwsgi : &limits;
	run(data + 1, size - 1, size, l, &whole);
	run(data + 1, size - 1, piece, l, &split);
	ASSERT(whole.error == split.error);
	if (!whole.error && !split.error) {
		ASSERT(whole.proxy.kind == split.proxy.kind);
		ASSERT(memcmp(&whole.proxy.src, &split.proxy.src, sizeof(whole.proxy.src)) == 0);
		ASSERT(whole.nreq == split.nreq);
		for (int i = 0; i < whole.nreq && i < MAX_REQS; i++) {
			ASSERT(whole.target_len[i] == split.target_len[i]);
			ASSERT(whole.target_hash[i] == split.target_hash[i]);
		}
	}
	return 0;
}
