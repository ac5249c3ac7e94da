/*
 * test_http_conn.c — unit tests for src/http_conn.c, the connection layer
 * every worker type shares: the limits (clamped as gunicorn's parser, the
 * head deadline), a connection's buffer over a real socketpair (a head in
 * pieces, growth up to the limit, 431 past it), pipelined requests kept
 * across http_conn_shift, the error page byte for byte, bounded waits
 * (ETIMEDOUT at a deadline), the non-blocking sendfile step (all, a
 * full socket, a file shorter than said, a peer gone), and the peer
 * formatting.  Owns its sockets;
 * prints "N passed, M failed".
 */
#include "http_conn.h"
#include "check.h"

#include <errno.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>

#include "settings.h"
#include "util.h"

static struct settings
cfg_with(int line, int fields, int fsize, int timeout)
{
	struct settings s;

	memset(&s, 0, sizeof(s));
	s.limit_request_line = line;
	s.limit_request_fields = fields;
	s.limit_request_field_size = fsize;
	s.timeout = timeout;
	return s;
}

static void
test_limits(void)
{
	struct http_conn_limits l;
	struct settings s = cfg_with(4094, 100, 8190, 30);

	http_conn_limits_init(&l, &s);
	CHECK(l.parse.request_line == 4094);
	CHECK(l.parse.fields == 100);
	CHECK(l.parse.field_size == 8190);
	CHECK(l.max_headers == 101);
	CHECK(l.head_max == 4094 + 2 + 100 * (8190 + 2) + 4);
	CHECK(l.head_timeout_ms == 10000);	/* half of 30 s, 10 s at most */

	http_conn_limits_free(&l);
	s = cfg_with(0, 0, 0, 4);		/* 0: gunicorn's maxima */
	http_conn_limits_init(&l, &s);
	CHECK(l.parse.request_line == 0 && l.parse.fields == 0);
	CHECK(l.max_headers == 32769);
	CHECK(l.head_max == 16 * 1024 * 1024);	/* capped */
	CHECK(l.head_timeout_ms == 2000);

	http_conn_limits_free(&l);
	s = cfg_with(100, 2, 50, 1);
	http_conn_limits_init(&l, &s);
	CHECK(l.head_timeout_ms == 1000);	/* 1 s at least */
	http_conn_limits_free(&l);
	s.timeout = 0;
	http_conn_limits_init(&l, &s);
	CHECK(l.head_timeout_ms == 10000);
	http_conn_limits_free(&l);
}

static void
pair(int sv[2])
{
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == -1)
		abort();
}

static void
test_head_in_pieces_and_pipelining(void)
{
	struct settings s = cfg_with(4094, 100, 8190, 30);
	struct http_conn_limits l;
	struct http_conn c;
	struct http_error err;
	int sv[2];
	const char *stream = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
	    "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
	    "GET /c HTTP/1.0\r\n\r\n";

	http_conn_limits_init(&l, &s);
	pair(sv);
	memset(&c, 0, sizeof(c));
	c.fd = sv[0];
	http_conn_alloc(&c, &l, 16);		/* tiny: grows */
	CHECK(c.cap == 16);
	CHECK(http_conn_read_some(&c, &l) == -1 && errno == EAGAIN);
	CHECK(write(sv[1], stream, 10) == 10);
	CHECK(http_conn_read_some(&c, &l) == 10);
	CHECK(http_conn_parse(&c, &l, &err) == HTTP_HEAD_MORE);
	CHECK(write(sv[1], stream + 10, strlen(stream) - 10) == (ssize_t)(strlen(stream) - 10));
	while (http_conn_read_some(&c, &l) > 0)
		;
	CHECK(c.len == strlen(stream));
	CHECK(c.cap >= c.len);
	CHECK(http_conn_parse(&c, &l, &err) == HTTP_HEAD_READY);
	CHECK(c.req.path_len == 2 && memcmp(c.req.path, "/a", 2) == 0);
	c.next = c.req.head_len;
	http_conn_shift(&c);
	CHECK(http_conn_parse(&c, &l, &err) == HTTP_HEAD_READY);
	CHECK(c.req.body == HTTP_BODY_LENGTH && c.req.content_length == 3);
	CHECK(memcmp(c.buf + c.req.head_len, "abc", 3) == 0);
	c.next = c.req.head_len + 3;
	http_conn_shift(&c);
	CHECK(http_conn_parse(&c, &l, &err) == HTTP_HEAD_READY);
	CHECK(c.req.version_minor == 0 && !c.req.keep_alive);
	c.next = c.req.head_len;
	http_conn_shift(&c);
	CHECK(c.len == 0);
	close(sv[1]);
	CHECK(http_conn_read_some(&c, &l) == 0);	/* EOF */
	http_conn_free_buffers(&c);
	CHECK(c.buf == NULL && c.headers == NULL);
	close(sv[0]);
	http_conn_limits_free(&l);
}

static void
test_head_too_long(void)
{
	struct settings s = cfg_with(100, 2, 50, 30);
	struct http_conn_limits l;
	struct http_conn c;
	struct http_error err;
	char junk[4096];
	int sv[2], r = HTTP_HEAD_MORE;

	http_conn_limits_init(&l, &s);
	pair(sv);
	memset(&c, 0, sizeof(c));
	c.fd = sv[0];
	http_conn_alloc(&c, &l, 8);
	/* a request line within its limit, then header bytes without end */
	CHECK(write(sv[1], "GET / HTTP/1.1\r\nX-A: ", 21) == 21);
	memset(junk, 'a', sizeof(junk));
	(void)!write(sv[1], junk, sizeof(junk));
	while (r == HTTP_HEAD_MORE && http_conn_read_some(&c, &l) > 0)
		r = http_conn_parse(&c, &l, &err);
	CHECK(r == HTTP_HEAD_BAD);
	CHECK(err.status == 431 || err.status == 400);
	CHECK(c.cap <= l.head_max + l.body_room);
	http_conn_free_buffers(&c);
	close(sv[0]);
	close(sv[1]);
	http_conn_limits_free(&l);
}

static void
test_error_page(void)
{
	char buf[4096];
	int sv[2];
	ssize_t n;

	pair(sv);
	http_write_error(sv[0], 400, "Bad Request", "a <b> & \"c\"");
	n = read(sv[1], buf, sizeof(buf) - 1);
	CHECK(n > 0);
	buf[n > 0 ? n : 0] = '\0';
	CHECK(strncmp(buf, "HTTP/1.1 400 Bad Request\r\nConnection: close\r\n", 45) == 0);
	CHECK(strstr(buf, "a &lt;b&gt; &amp; &quot;c&quot;") != NULL);
	CHECK(strstr(buf, "<title>Bad Request</title>") != NULL);
	const char *body = strstr(buf, "\r\n\r\n");
	const char *cl = strstr(buf, "Content-Length: ");
	CHECK(body != NULL && cl != NULL &&
	    (size_t)atoi(cl + 16) == strlen(body + 4));
	close(sv[0]);
	close(sv[1]);
}

static void
test_bounded_waits(void)
{
	struct http_io_hooks h = { .timeout_ms = 5000 };
	char b[8];
	int sv[2];
	uint64_t t0;

	http_io_configure(&h);
	pair(sv);
	t0 = monotonic_ms();
	errno = 0;
	CHECK(http_io_recv_until(sv[0], b, sizeof(b), monotonic_ms() + 100) == -1);
	CHECK(errno == ETIMEDOUT);
	CHECK(monotonic_ms() - t0 < 2000);
	h.timeout_ms = 100;
	http_io_configure(&h);
	errno = 0;
	CHECK(http_io_recv(sv[0], b, sizeof(b)) == -1 && errno == ETIMEDOUT);
	CHECK(write(sv[1], "hi", 2) == 2);
	CHECK(http_io_recv(sv[0], b, sizeof(b)) == 2);
	close(sv[0]);
	close(sv[1]);
}

static void
test_peer(void)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *in = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
	char buf[64];

	memset(&ss, 0, sizeof(ss));
	in->sin_family = AF_INET;
	in->sin_port = htons(4242);
	inet_pton(AF_INET, "10.1.2.3", &in->sin_addr);
	CHECK(http_peer_format(&ss, buf, sizeof(buf)) == 4242);
	CHECK_STR(buf, "10.1.2.3");
	memset(&ss, 0, sizeof(ss));
	in6->sin6_family = AF_INET6;
	in6->sin6_port = htons(1);
	inet_pton(AF_INET6, "::1", &in6->sin6_addr);
	CHECK(http_peer_format(&ss, buf, sizeof(buf)) == 1);
	CHECK_STR(buf, "::1");
	ss.ss_family = AF_UNIX;
	CHECK(http_peer_format(&ss, buf, sizeof(buf)) == -1);
	CHECK_STR(buf, "");
}

/* http_io_sendfile_nowait over a non-blocking socketpair: what fits
 * goes, FULL with the offset and the rest moved, SENT once the reader
 * drained it, SHORT past the file's end, -1 EPIPE once the peer left. */
static void
test_sendfile_nowait(void)
{
	char path[] = "/tmp/cunicorn-unit-XXXXXX", buf[65536];
	size_t size = 4u << 20, got = 0;
	uint64_t left = size;
	off_t pos = 0;
	int sv[2], fd = mkstemp(path), r;
	char *data = malloc(size);

	if (fd == -1 || data == NULL)
		abort();
	unlink(path);
	for (size_t i = 0; i < size; i++)
		data[i] = (char)(i * 7 + (i >> 11));
	CHECK(write_full(fd, data, size) == 0);
	pair(sv);
	r = http_io_sendfile_nowait(sv[0], fd, &pos, &left);
	CHECK(r == HTTP_FILE_FULL);
	CHECK(left > 0 && left < size && (uint64_t)pos == size - left);
	int ok = 1;
	while (r != HTTP_FILE_SENT) {
		ssize_t n = read(sv[1], buf, sizeof(buf));
		if (n > 0) {
			ok &= memcmp(buf, data + got, (size_t)n) == 0;
			got += (size_t)n;
		}
		r = http_io_sendfile_nowait(sv[0], fd, &pos, &left);
		if (r == -1 || (n <= 0 && r == HTTP_FILE_FULL && got == 0))
			break;
	}
	CHECK(r == HTTP_FILE_SENT && left == 0 && (uint64_t)pos == size);
	while (got < size) {
		ssize_t n = read(sv[1], buf, sizeof(buf));
		if (n <= 0)
			break;
		ok &= memcmp(buf, data + got, (size_t)n) == 0;
		got += (size_t)n;
	}
	CHECK(ok && got == size);
	/* asked for more than the file has: SHORT, what there was sent */
	pos = (off_t)size - 10;
	left = 100;
	CHECK(http_io_sendfile_nowait(sv[0], fd, &pos, &left) == HTTP_FILE_SHORT);
	CHECK(left == 90 && (uint64_t)pos == size);
	CHECK(read(sv[1], buf, sizeof(buf)) == 10 && memcmp(buf, data + size - 10, 10) == 0);
	/* the peer left: EPIPE, and no SIGPIPE (it would end this test) */
	close(sv[1]);
	pos = 0;
	left = 10;
	CHECK(http_io_sendfile_nowait(sv[0], fd, &pos, &left) == -1 && errno == EPIPE);
	close(sv[0]);
	close(fd);
	free(data);
}

int
main(void)
{
	test_limits();
	test_head_in_pieces_and_pipelining();
	test_head_too_long();
	test_error_page();
	test_bounded_waits();
	test_sendfile_nowait();
	test_peer();
	return check_summary("test_http_conn");
}
