/*
 * uwsgi_proto.c — uWSGI request packets as HTTP heads (contract:
 * uwsgi_proto.h).
 *
 * Owns: decoding a packet's variables with bounds on every length, and
 * writing the head they stand for.  Never: reads a socket, allocates,
 * writes past its output's capacity, or lets a variable's bytes forge a
 * header line.
 */
#include "uwsgi_proto.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <strings.h>

struct var {
	const char *key, *val;
	size_t klen, vlen;
};

/* A bounded writer: once full, it only counts. */
struct out {
	char *p;
	size_t cap, len;
};

static void
put(struct out *o, const char *s, size_t n)
{
	if (o->len + n <= o->cap)
		memcpy(o->p + o->len, s, n);
	o->len += n;
}

static void
put_str(struct out *o, const char *s)
{
	put(o, s, strlen(s));
}

static int
key_is(const struct var *v, const char *name)
{
	size_t n = strlen(name);

	return v->klen == n && memcmp(v->key, name, n) == 0;
}

static int
has_line_break(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0')
			return 1;
	return 0;
}

/* The next variable at block[*pos..n): 1, 0 at the end, -1 truncated. */
static int
next_var(const unsigned char *block, size_t n, size_t *pos, struct var *v)
{
	size_t p = *pos;

	if (p == n)
		return 0;
	if (n - p < 2)
		return -1;
	v->klen = (size_t)block[p] | (size_t)block[p + 1] << 8;
	p += 2;
	if (n - p < v->klen)
		return -1;
	v->key = (const char *)block + p;
	p += v->klen;
	if (n - p < 2)
		return -1;
	v->vlen = (size_t)block[p] | (size_t)block[p + 1] << 8;
	p += 2;
	if (n - p < v->vlen)
		return -1;
	v->val = (const char *)block + p;
	p += v->vlen;
	*pos = p;
	return 1;
}

/* PATH_INFO as a request-target: what may stand in a path as is, the
 * rest percent-encoded (PATH_INFO is the decoded path). */
static void
put_path(struct out *o, const char *s, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";

	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		static const char keep[] = "-._~!$&'()*+,;=:@/";
		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || memchr(keep, ch, sizeof(keep) - 1) != NULL) {
			put(o, (const char *)&ch, 1);
		} else {
			char e[3] = { '%', hex[ch >> 4], hex[ch & 15] };
			put(o, e, 3);
		}
	}
}

static void
remote_of(const struct var *addr, const struct var *port, struct uwsgi_meta *m)
{
	char text[INET6_ADDRSTRLEN];
	unsigned p = 0;

	if (addr == NULL || addr->vlen == 0 || addr->vlen >= sizeof(text))
		return;
	memcpy(text, addr->val, addr->vlen);
	text[addr->vlen] = '\0';
	if (port != NULL && port->vlen > 0 && port->vlen <= 5) {
		for (size_t i = 0; i < port->vlen; i++) {
			if (port->val[i] < '0' || port->val[i] > '9')
				return;
			p = p * 10 + (unsigned)(port->val[i] - '0');
		}
		if (p > 65535)
			return;
	}
	memset(&m->remote, 0, sizeof(m->remote));
	struct sockaddr_in *in = (struct sockaddr_in *)&m->remote;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&m->remote;
	if (inet_pton(AF_INET, text, &in->sin_addr) == 1) {
		in->sin_family = AF_INET;
		in->sin_port = htons((unsigned short)p);
	} else if (inet_pton(AF_INET6, text, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((unsigned short)p);
	} else
		return;
	m->has_remote = 1;
}

static int
is_on(const struct var *v)
{
	static const char *const on[] = { "on", "1", "true", NULL };

	for (size_t i = 0; on[i] != NULL; i++)
		if (v->vlen == strlen(on[i]) && strncasecmp(v->val, on[i], v->vlen) == 0)
			return 1;
	return 0;
}

int
uwsgi_head(const char *buf, size_t len, char *outp, size_t cap, size_t *used,
    size_t *outlen, struct uwsgi_meta *meta, const char **why)
{
	const unsigned char *b = (const unsigned char *)buf;
	const unsigned char *block;
	struct var v, method = { 0 }, uri = { 0 }, path = { 0 }, query = { 0 };
	struct var raddr = { 0 }, rport = { 0 };
	struct out o = { outp, cap, 0 };
	size_t datasize, pos, nvars = 0;
	int r;

	memset(meta, 0, sizeof(*meta));
	*used = *outlen = 0;
	*why = NULL;
	if (len < 4)
		return UWSGI_MORE;
	if (b[0] != 0) {
		*why = "Invalid uWSGI packet: modifier1 is not 0 (a WSGI request)";
		return UWSGI_BAD;
	}
	datasize = (size_t)b[1] | (size_t)b[2] << 8;
	if (len - 4 < datasize)
		return UWSGI_MORE;
	block = b + 4;

	/* pass 1: the variables that make the request line */
	for (pos = 0; (r = next_var(block, datasize, &pos, &v)) == 1;) {
		if (++nvars > UWSGI_MAX_VARS) {
			*why = "Invalid uWSGI packet: more than 1000 variables";
			return UWSGI_BAD;
		}
		if (key_is(&v, "REQUEST_METHOD"))
			method = v;
		else if (key_is(&v, "REQUEST_URI"))
			uri = v;
		else if (key_is(&v, "PATH_INFO"))
			path = v;
		else if (key_is(&v, "QUERY_STRING"))
			query = v;
		else if (key_is(&v, "REMOTE_ADDR"))
			raddr = v;
		else if (key_is(&v, "REMOTE_PORT"))
			rport = v;
		else if (key_is(&v, "HTTPS"))
			meta->https |= is_on(&v);
		else if (key_is(&v, "UWSGI_SCHEME") || key_is(&v, "wsgi.url_scheme"))
			meta->https |= v.vlen == 5 && memcmp(v.val, "https", 5) == 0;
		if (has_line_break(v.key, v.klen) || has_line_break(v.val, v.vlen)) {
			*why = "Invalid uWSGI packet: a variable holds CR, LF or NUL";
			return UWSGI_BAD;
		}
	}
	if (r == -1) {
		*why = "Invalid uWSGI packet: a variable runs past the block";
		return UWSGI_BAD;
	}

	/* the request line */
	if (method.vlen > 0) {
		if (memchr(method.val, ' ', method.vlen) != NULL) {
			*why = "Invalid uWSGI packet: bad REQUEST_METHOD";
			return UWSGI_BAD;
		}
		put(&o, method.val, method.vlen);
	} else
		put_str(&o, "GET");
	put_str(&o, " ");
	if (uri.vlen > 0) {
		if (memchr(uri.val, ' ', uri.vlen) != NULL) {
			*why = "Invalid uWSGI packet: bad REQUEST_URI";
			return UWSGI_BAD;
		}
		put(&o, uri.val, uri.vlen);
	} else {
		if (path.vlen > 0)
			put_path(&o, path.val, path.vlen);
		else
			put_str(&o, "/");
		if (query.vlen > 0) {
			if (memchr(query.val, ' ', query.vlen) != NULL) {
				*why = "Invalid uWSGI packet: bad QUERY_STRING";
				return UWSGI_BAD;
			}
			put_str(&o, "?");
			put(&o, query.val, query.vlen);
		}
	}
	/* HTTP/1.0: a response of unknown length then ends with the
	 * connection, never chunked -- nginx's uwsgi module passes a chunked
	 * body's framing through to its client as data */
	put_str(&o, " HTTP/1.0\r\n");

	/* pass 2: the headers; the body's framing is CONTENT_LENGTH's alone */
	for (pos = 0; next_var(block, datasize, &pos, &v) == 1;) {
		const char *name;
		size_t nlen;
		if (key_is(&v, "CONTENT_TYPE") || key_is(&v, "CONTENT_LENGTH")) {
			if (v.vlen == 0)
				continue;
			name = v.key;
			nlen = v.klen;
		} else if (v.klen > 5 && memcmp(v.key, "HTTP_", 5) == 0) {
			name = v.key + 5;
			nlen = v.klen - 5;
			for (size_t i = 0; i < nlen; i++)
				if (!((name[i] >= 'A' && name[i] <= 'Z') ||
				    (name[i] >= '0' && name[i] <= '9') || name[i] == '_')) {
					/* what nginx sends: upper case, '-' as '_' */
					*why = "Invalid uWSGI packet: an HTTP_ variable's name is not [A-Z0-9_]";
					return UWSGI_BAD;
				}
			if ((nlen == 14 && memcmp(name, "CONTENT_LENGTH", 14) == 0) ||
			    (nlen == 12 && memcmp(name, "CONTENT_TYPE", 12) == 0) ||
			    (nlen == 17 && memcmp(name, "TRANSFER_ENCODING", 17) == 0))
				continue;
		} else
			continue;
		for (size_t i = 0; i < nlen; i++) {
			char ch = name[i] == '_' ? '-' : name[i];
			put(&o, &ch, 1);
		}
		put_str(&o, ": ");
		put(&o, v.val, v.vlen);
		put_str(&o, "\r\n");
	}
	put_str(&o, "\r\n");
	*outlen = o.len;
	if (o.len > cap)
		return UWSGI_TOO_BIG;
	remote_of(raddr.vlen > 0 ? &raddr : NULL, rport.vlen > 0 ? &rport : NULL, meta);
	*used = 4 + datasize;
	return UWSGI_OK;
}
