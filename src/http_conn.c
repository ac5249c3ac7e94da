/*
 * http_conn.c — the HTTP connection layer (contract: http_conn.h).
 *
 * Owns: request limits (the one place that clamps them), a connection's
 * buffer and head parsing, pipelined bytes, socket I/O with bounded
 * waits, gunicorn's error page and the Date header.  Never: calls Python
 * (waits call the hooks the app glue registered, which release the GIL),
 * decides keep-alive, or blocks without a timeout.
 */
#include "http_conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/sendfile.h>
#include <sys/socket.h>

#include "log.h"
#include "settings.h"
#include "tls.h"
#include "util.h"

#define HEAD_MAX_CAP	(16 * 1024 * 1024)
#define BODY_ROOM	(64 * 1024)
#define LINGER_MS	500
#define HEAD_TIMEOUT_MAX_MS	10000
#define LINGER_BYTES	(1u << 20)

/* ---- limits ---- */

void
http_conn_limits_init(struct http_conn_limits *l, const struct settings *cfg)
{
	/* gunicorn: limit_request_line 0 or > 8190 means 8190; fields 0 or
	 * > 32768 means 32768; field_size 0 means unlimited (8190 for the
	 * buffer estimate) */
	size_t line = cfg->limit_request_line > 0 && cfg->limit_request_line <= 8190 ?
	    (size_t)cfg->limit_request_line : 8190;
	size_t fields = cfg->limit_request_fields > 0 && cfg->limit_request_fields <= 32768 ?
	    (size_t)cfg->limit_request_fields : 32768;
	size_t fsize = cfg->limit_request_field_size > 0 ?
	    (size_t)cfg->limit_request_field_size : 8190;

	memset(l, 0, sizeof(*l));
	l->parse.request_line = (size_t)(cfg->limit_request_line > 0 ? cfg->limit_request_line : 0);
	l->parse.fields = (size_t)(cfg->limit_request_fields > 0 ? cfg->limit_request_fields : 0);
	l->parse.field_size = (size_t)(cfg->limit_request_field_size > 0 ?
	    cfg->limit_request_field_size : 0);
	l->head_max = line + 2 + fields * (fsize + 2) + 4;
	if (l->head_max > HEAD_MAX_CAP)
		l->head_max = HEAD_MAX_CAP;
	l->max_headers = fields + 1;
	l->body_room = BODY_ROOM;
	/* One total deadline for a head, whatever the client's pace: half
	 * the worker timeout, 10 s at most, 1 s at least.  A sync worker is
	 * busy meanwhile, so it stays far below `timeout` (the master never
	 * kills a worker for a slow client). */
	l->head_timeout_ms = cfg->timeout > 0 ? cfg->timeout * 500 : HEAD_TIMEOUT_MAX_MS;
	if (l->head_timeout_ms > HEAD_TIMEOUT_MAX_MS)
		l->head_timeout_ms = HEAD_TIMEOUT_MAX_MS;
	if (l->head_timeout_ms < 1000)
		l->head_timeout_ms = 1000;
	l->proxy_mode = proxy_mode_parse(cfg->proxy_protocol);
	if (l->proxy_mode < 0)		/* settings_finalize refused it already */
		l->proxy_mode = PROXY_MODE_OFF;
	ip_allow_init(&l->proxy_allow, &cfg->proxy_allow_ips);
	l->uwsgi = cfg->protocol != NULL && strcmp(cfg->protocol, "uwsgi") == 0;
	ip_allow_init(&l->uwsgi_allow, &cfg->uwsgi_allow_ips);
}

void
http_conn_limits_free(struct http_conn_limits *l)
{
	ip_allow_free(&l->proxy_allow);
	ip_allow_free(&l->uwsgi_allow);
}

/* ---- a connection's buffer and head ---- */

void
http_conn_alloc(struct http_conn *c, const struct http_conn_limits *l, size_t initial)
{
	size_t full = l->head_max + l->body_room;

	c->cap = initial > 0 && initial < full ? initial : full;
	c->buf = xmalloc(c->cap);
	c->len = 0;
	c->headers = xcalloc(l->max_headers, sizeof(*c->headers));
}

void
http_conn_free_buffers(struct http_conn *c)
{
	free(c->buf);
	free(c->headers);
	conn_out_free(&c->out);
	c->buf = NULL;
	c->headers = NULL;
	c->len = c->cap = 0;
}

void
http_conn_begin(struct http_conn *c, const struct http_conn_limits *l)
{
	c->proxy_expect = l->proxy_mode != PROXY_MODE_OFF;
	memset(&c->proxy, 0, sizeof(c->proxy));
	c->has_client = 0;
	c->https = 0;
}

/* The PROXY preamble at the start of buf, if any: HTTP_HEAD_READY once
 * there is none or it was taken out of buf, HTTP_HEAD_MORE, or
 * HTTP_HEAD_BAD.  As gunicorn: a preamble is optional, and a peer not in
 * proxy_allow_ips that sends one is refused as soon as its signature is
 * seen. */
static int
take_preamble(struct http_conn *c, const struct http_conn_limits *l,
    struct http_error *err)
{
	const char *why;
	size_t used;
	int version, r;

	r = proxy_sniff(c->buf, c->len, l->proxy_mode, &version);
	if (r == PROXY_MORE)
		return HTTP_HEAD_MORE;
	if (r == PROXY_ABSENT) {
		c->proxy_expect = 0;
		return HTTP_HEAD_READY;
	}
	if (!ip_allow_match(&l->proxy_allow, &c->peer)) {
		c->proxy_expect = 0;
		err->status = 403;
		err->reason = "Request forbidden: a PROXY preamble from a peer not in proxy_allow_ips";
		return HTTP_HEAD_BAD;
	}
	r = proxy_parse(c->buf, c->len, version, &c->proxy, &used, &why);
	if (r == PROXY_MORE)
		return HTTP_HEAD_MORE;
	c->proxy_expect = 0;
	if (r == PROXY_BAD) {
		memset(&c->proxy, 0, sizeof(c->proxy));
		err->status = 400;
		err->reason = why;
		return HTTP_HEAD_BAD;
	}
	memmove(c->buf, c->buf + used, c->len - used);
	c->len -= used;
	if (c->proxy.kind == PROXY_TCP4 || c->proxy.kind == PROXY_TCP6) {
		c->client = c->proxy.src;
		c->has_client = 1;
	}
	return HTTP_HEAD_READY;
}

/* The head a uWSGI packet stands for is written here first (the packet
 * is read from the connection's buffer, which the head then replaces):
 * per thread, grown up to the head limit, kept. */
static __thread char *uwsgi_scratch;
static __thread size_t uwsgi_scratch_cap;

/* The uWSGI packet at the start of buf, replaced by its HTTP head (the
 * body bytes behind it kept): HTTP_HEAD_READY, _MORE or _BAD. */
static int
take_uwsgi(struct http_conn *c, const struct http_conn_limits *l,
    struct http_error *err)
{
	struct uwsgi_meta meta;
	const char *why;
	size_t used, need;
	int r;

	if (c->len == 0)
		return HTTP_HEAD_MORE;
	if (!ip_allow_match(&l->uwsgi_allow, &c->peer)) {
		err->status = 403;
		err->reason = "Request forbidden: a uWSGI request from a peer not in uwsgi_allow_ips";
		return HTTP_HEAD_BAD;
	}
	for (;;) {
		r = uwsgi_head(c->buf, c->len, uwsgi_scratch, uwsgi_scratch_cap, &used,
		    &need, &meta, &why);
		if (r != UWSGI_TOO_BIG || need > l->head_max)
			break;
		uwsgi_scratch = xrealloc(uwsgi_scratch, need);
		uwsgi_scratch_cap = need;
	}
	switch (r) {
	case UWSGI_MORE:
		if (c->len >= l->head_max) {	/* a vars block past the head limit */
			err->status = 431;
			err->reason = "Error parsing headers: 'limit request headers fields size'";
			return HTTP_HEAD_BAD;
		}
		return HTTP_HEAD_MORE;
	case UWSGI_BAD:
		err->status = 400;
		err->reason = why;
		return HTTP_HEAD_BAD;
	case UWSGI_TOO_BIG:
		err->status = 431;
		err->reason = "Error parsing headers: 'limit request headers fields size'";
		return HTTP_HEAD_BAD;
	default:
		break;
	}
	/* the head in the packet's place; the body's bytes read so far after
	 * it.  The buffer grows by exactly what the head adds to the packet
	 * (need <= head_max, and a head is most often shorter than its
	 * packet), never by doubling: the bytes already read are the body's
	 * and never count against the head's limit (the asgi worker reads up
	 * to 256 KiB at once) */
	size_t rest = c->len - used;
	if (need + rest > c->cap) {
		c->cap = need + rest;
		c->buf = xrealloc(c->buf, c->cap);
	}
	memmove(c->buf + need, c->buf + used, rest);
	memcpy(c->buf, uwsgi_scratch, need);
	c->len = need + rest;
	c->https = meta.https;
	if (meta.has_remote) {
		c->client = meta.remote;
		c->has_client = 1;
	} else if (c->proxy.kind == PROXY_TCP4 || c->proxy.kind == PROXY_TCP6) {
		c->client = c->proxy.src;
		c->has_client = 1;
	} else
		c->has_client = 0;
	return HTTP_HEAD_READY;
}

int
http_conn_parse(struct http_conn *c, const struct http_conn_limits *l,
    struct http_error *err)
{
	int r;

	if (c->proxy_expect && (r = take_preamble(c, l, err)) != HTTP_HEAD_READY)
		return r;
	if (l->uwsgi && (r = take_uwsgi(c, l, err)) != HTTP_HEAD_READY)
		return r;
	r = http_parse_request(c->buf, c->len, &l->parse, &c->req,
	    c->headers, l->max_headers, err);

	if (r == HTTP_PARSE_OK)
		return HTTP_HEAD_READY;
	if (r == HTTP_PARSE_ERROR)
		return HTTP_HEAD_BAD;
	if (c->len >= l->head_max) {
		err->status = 431;
		err->reason = "Error parsing headers: 'limit request headers fields size'";
		return HTTP_HEAD_BAD;
	}
	return HTTP_HEAD_MORE;
}

/* Double the buffer, up to head_max + body_room (never shrinking one a
 * uWSGI head made larger).  Only while no parsed request points into it. */
static void
grow(struct http_conn *c, const struct http_conn_limits *l)
{
	size_t full = l->head_max + l->body_room, ncap = c->cap * 2;

	if (c->cap >= full)
		return;
	c->cap = ncap < full ? ncap : full;
	c->buf = xrealloc(c->buf, c->cap);
}

ssize_t
http_conn_read_some(struct http_conn *c, const struct http_conn_limits *l)
{
	ssize_t n;

	c->read_full = 0;
	/* a PROXY preamble still to come may take room beyond the head's */
	if (c->len >= l->head_max + (c->proxy_expect ? PROXY_V2_MAX : 0)) {
		errno = ENOBUFS;
		return -1;
	}
	if (c->len == c->cap)
		grow(c, l);
	if (c->len == c->cap) {
		errno = ENOBUFS;
		return -1;
	}
	do
		n = tls_io_read(c->fd, c->buf + c->len, c->cap - c->len);
	while (n == -1 && errno == EINTR);
	if (n > 0) {
		c->len += (size_t)n;
		/* the socket may hold more (an edge-triggered loop must read
		 * on); and a head that ends exactly here would leave its body
		 * no room: grow now, while nothing points into the buffer */
		if (c->len == c->cap) {
			c->read_full = 1;
			grow(c, l);
		}
	}
	return n;
}

void
http_conn_shift(struct http_conn *c)
{
	size_t keep = c->next < c->len ? c->len - c->next : 0;

	if (keep > 0 && c->next > 0)
		memmove(c->buf, c->buf + c->next, keep);
	c->len = keep;
	c->next = 0;
}

/* ---- socket I/O ---- */

static struct http_io_hooks io = { .timeout_ms = -1 };

void
http_io_configure(const struct http_io_hooks *h)
{
	io = *h;
}

/* Wait for events, at most the I/O timeout and until deadline (0: none). */
static int
wait_until(int fd, short events, uint64_t deadline)
{
	struct pollfd p = { .fd = fd, .events = events };
	int n, saved;

	for (;;) {
		int ms = io.timeout_ms;
		if (deadline != 0) {
			uint64_t now = monotonic_ms();
			if (now >= deadline) {
				errno = ETIMEDOUT;
				return -1;
			}
			if (ms < 0 || deadline - now < (uint64_t)ms)
				ms = (int)(deadline - now);
		}
		void *token = io.unlock ? io.unlock() : NULL;
		n = poll(&p, 1, ms);
		saved = errno;
		if (io.relock)
			io.relock(token);
		errno = saved;
		if (n > 0)
			return 0;
		if (n == 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		if (errno != EINTR)
			return -1;
		http_io_interrupted();
	}
}

int
http_io_wait(int fd, short events)
{
	return wait_until(fd, events, 0);
}

ssize_t
http_io_recv_until(int fd, void *buf, size_t n, uint64_t deadline)
{
	for (;;) {
		ssize_t r = tls_io_read(fd, buf, n);
		if (r >= 0)
			return r;
		if (errno == EINTR) {
			http_io_interrupted();
			continue;
		}
		if (errno != EAGAIN)
			return -1;
		if (wait_until(fd, tls_io_events(fd, POLLIN), deadline) == -1)
			return -1;
	}
}

ssize_t
http_io_recv(int fd, void *buf, size_t n)
{
	return http_io_recv_until(fd, buf, n, 0);
}

/* Drop the first `done` bytes of an iov array (after a short writev). */
static void
iov_advance(struct iovec **iovp, int *iovcnt, size_t done)
{
	struct iovec *iov = *iovp;
	int n = *iovcnt;

	while (n > 0 && done >= iov->iov_len) {
		done -= iov->iov_len;
		iov++;
		n--;
	}
	if (n > 0) {
		iov->iov_base = (char *)iov->iov_base + done;
		iov->iov_len -= done;
	}
	*iovp = iov;
	*iovcnt = n;
}

int
http_io_writev_nowait(int fd, struct iovec **iov, int *iovcnt)
{
	while (*iovcnt > 0) {
		/* sendmsg, not writev: MSG_NOSIGNAL (util.h, send_full); under
		 * TLS the iovs become whole records (tls.h) */
		ssize_t w = tls_io_sendmsg(fd, *iov, *iovcnt > IOV_MAX ? IOV_MAX : *iovcnt);
		if (w == -1) {
			if (errno == EINTR) {
				http_io_interrupted();
				continue;
			}
			return errno == EAGAIN ? 1 : -1;
		}
		iov_advance(iov, iovcnt, (size_t)w);
	}
	return 0;
}

int
http_io_send_iov(int fd, struct iovec *iov, int iovcnt)
{
	for (;;) {
		int r = http_io_writev_nowait(fd, &iov, &iovcnt);
		if (r <= 0)
			return r;
		if (http_io_wait(fd, tls_io_events(fd, POLLOUT)) == -1)
			return -1;
	}
}

/* sendfile(2) cannot encrypt (no kTLS here): the file's bytes are read
 * and written through TLS, a record at a time.  What the socket does not
 * take is read again at the same offset next time: the same bytes, as
 * OpenSSL's retry needs. */
static int
sendfile_tls(int sock, int file, off_t *pos, uint64_t *left)
{
	char chunk[16384];

	while (*left > 0) {
		size_t n = *left < sizeof(chunk) ? (size_t)*left : sizeof(chunk);
		ssize_t r = pread(file, chunk, n, *pos), w;
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1)
			return -1;
		if (r == 0)
			return HTTP_FILE_SHORT;
		w = tls_io_send(sock, chunk, (size_t)r);
		if (w == -1 && errno == EINTR) {
			http_io_interrupted();
			continue;
		}
		if (w == -1)
			return errno == EAGAIN ? HTTP_FILE_FULL : -1;
		*pos += w;
		*left -= (uint64_t)w;
	}
	return HTTP_FILE_SENT;
}

int
http_io_sendfile_nowait(int sock, int file, off_t *pos, uint64_t *left)
{
	sigset_t saved;
	int rc = HTTP_FILE_SENT, err = 0;

	if (tls_of(sock) != NULL)
		return sendfile_tls(sock, file, pos, left);
	/* sendfile has no MSG_NOSIGNAL: an app that set SIGPIPE back to
	 * SIG_DFL must not die of a client that left (util.h) */
	nosigpipe_begin(&saved);
	while (*left > 0) {
		size_t n = *left > 0x3fffffff ? 0x3fffffff : (size_t)*left;
		ssize_t w = sendfile(sock, file, pos, n);
		if (w > 0) {
			*left -= (uint64_t)w;
			continue;
		}
		if (w == 0) {
			rc = HTTP_FILE_SHORT;
			break;
		}
		if (errno == EINTR) {
			http_io_interrupted();
			continue;
		}
		if (errno == EAGAIN) {
			rc = HTTP_FILE_FULL;
			break;
		}
		err = errno != 0 ? errno : EIO;
		rc = -1;
		break;
	}
	nosigpipe_end(&saved, err == EPIPE);
	if (rc == -1)
		errno = err;
	return rc;
}

int
http_io_timeout_ms(void)
{
	return io.timeout_ms;
}

int
http_io_send(int fd, const void *p, size_t n)
{
	struct iovec iov = { .iov_base = (void *)p, .iov_len = n };
	return http_io_send_iov(fd, &iov, 1);
}

void
http_io_interrupted(void)
{
	if (io.on_eintr)
		io.on_eintr();
}

void
http_io_close(int fd, int linger)
{
	if (linger) {
		char sink[16384];
		size_t total = 0;
		uint64_t deadline = monotonic_ms() + LINGER_MS;
		struct pollfd p = { .fd = fd, .events = POLLIN };

		tls_conn_end(fd);	/* close_notify first; the rest is raw */
		shutdown(fd, SHUT_WR);
		while (total < LINGER_BYTES) {
			uint64_t now = monotonic_ms();
			if (now >= deadline)
				break;
			ssize_t r = read(fd, sink, sizeof(sink));
			if (r > 0) {
				total += (size_t)r;
				continue;
			}
			if (r == 0 || (errno != EAGAIN && errno != EINTR))
				break;
			if (errno == EAGAIN) {
				void *token = io.unlock ? io.unlock() : NULL;
				int k = poll(&p, 1, (int)(deadline - now));
				if (io.relock)
					io.relock(token);
				if (k <= 0)
					break;
			}
		}
	}
	tls_close(fd);
}

/* ---- error page ---- */

static size_t
html_escape(char *out, size_t cap, const char *s)
{
	size_t o = 0;

	for (; *s; s++) {
		const char *rep;
		char one[2] = { *s, '\0' };
		switch (*s) {
		case '&': rep = "&amp;"; break;
		case '<': rep = "&lt;"; break;
		case '>': rep = "&gt;"; break;
		case '"': rep = "&quot;"; break;
		case '\'': rep = "&#x27;"; break;
		default: rep = one;
		}
		size_t n = strlen(rep);
		if (o + n >= cap)
			break;
		memcpy(out + o, rep, n);
		o += n;
	}
	out[o] = '\0';
	return o;
}

void
http_write_error(int fd, int status, const char *reason, const char *mesg)
{
	char esc[4096], body[5120], head[256];
	int blen, hlen;

	html_escape(esc, sizeof(esc), mesg);
	blen = snprintf(body, sizeof(body), "<html>\n  <head>\n    <title>%s</title>\n"
	    "  </head>\n  <body>\n    <h1><p>%s</p></h1>\n    %s\n  </body>\n</html>\n",
	    reason, reason, esc);
	if (blen < 0)
		return;
	if ((size_t)blen >= sizeof(body))
		blen = (int)sizeof(body) - 1;
	hlen = snprintf(head, sizeof(head), "HTTP/1.1 %d %s\r\nConnection: close\r\n"
	    "Content-Type: text/html\r\nContent-Length: %d\r\n\r\n",
	    status, reason, blen);
	if (hlen < 0 || (size_t)hlen >= sizeof(head))
		return;
	struct iovec iov[2] = {
		{ .iov_base = head, .iov_len = (size_t)hlen },
		{ .iov_base = body, .iov_len = (size_t)blen },
	};
	if (http_io_send_iov(fd, iov, 2) == -1)
		log_debug("Failed to send error message.");
}

/* ---- Date ---- */

const char *
http_date(void)
{
	static __thread char buf[40];
	static __thread time_t last = -1;
	static const char days[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char mons[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
	    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	time_t now = time(NULL);
	struct tm tm;

	if (now != last) {
		gmtime_r(&now, &tm);
		snprintf(buf, sizeof(buf), "%s, %02d %s %04d %02d:%02d:%02d GMT",
		    days[tm.tm_wday], tm.tm_mday, mons[tm.tm_mon],
		    tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
		last = now;
	}
	return buf;
}

int
http_peer_format(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	buf[0] = '\0';
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
		inet_ntop(AF_INET, &in->sin_addr, buf, (socklen_t)len);
		return ntohs(in->sin_port);
	}
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
		inet_ntop(AF_INET6, &in6->sin6_addr, buf, (socklen_t)len);
		return ntohs(in6->sin6_port);
	}
	return -1;
}
