/*
 * wsgi_environ.c — the WSGI environ (PEP 3333, as gunicorn fills it;
 * interface: wsgi_int.h).
 *
 * Owns: the constant part of every environ (base_env) and the interned
 * keys and values, the cache of header name -> HTTP_* key, the trusted
 * proxies (forwarded_allow_ips as addresses and CIDR networks), SCRIPT_NAME,
 * SERVER_NAME/PORT per listener, wsgi.errors, the gunicorn.socket object
 * per fd.  In the request slot (struct wsgi_req): the peer's printed
 * address, the fd of the request's gunicorn.socket, why a request was
 * refused.  Per thread: a scratch buffer (see below).
 *
 * gunicorn behaviours matched: headers with '_' in their name are dropped
 * (header_map = "drop") but for forwarder_headers sent by a trusted peer;
 * duplicate headers are joined with ','; SCRIPT_NAME comes from the
 * environment (or a trusted SCRIPT_NAME header) and must prefix the path;
 * wsgi.url_scheme from secure_scheme_headers of a trusted peer.
 *
 * Never: trusts a forwarded header from a peer outside
 * forwarded_allow_ips, lets a gunicorn.socket close the connection's fd or
 * outlive it, or writes to the client (a refused request goes back to
 * wsgi.c as *bad_request).
 */
#include "wsgi_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "ip_allow.h"
#include "listen.h"
#include "settings.h"
#include "tls.h"
#include "util.h"

#define SERVER_SOFTWARE	"cunicorn/0.1.0"

static struct settings *cfg;
static PyObject *base_env;		/* constant part of every environ */
static char *script_name;		/* $SCRIPT_NAME or "" */
static size_t script_name_len;

/* interned keys and constant values */
static PyObject *k_request_method, *k_script_name, *k_path_info,
    *k_query_string, *k_raw_uri, *k_server_name, *k_server_port,
    *k_server_protocol, *k_remote_addr, *k_remote_port, *k_content_type,
    *k_content_length, *k_url_scheme, *k_input, *k_early_hints, *k_socket,
    *k_proxy_protocol, *k_proxy_addr, *k_proxy_port;
static PyObject *v_http, *v_https, *v_http11, *v_http10, *v_empty;
static PyObject *v_methods[10];
static const char *const method_names[10] = {
	"GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH",
	"CONNECT", "TRACE", NULL
};
/* SERVER_NAME / SERVER_PORT per listener (NULL for unix listeners) */
static PyObject **srv_name, **srv_port;
static const struct listener *listeners;
static size_t nlisteners;

/* ---- header name -> environ key cache ---- */

#define KEYCACHE_SLOTS	512
#define KEYCACHE_NAME	64

struct keycache_entry {
	uint32_t hash;
	uint8_t len;
	char name[KEYCACHE_NAME];
	PyObject *key;
};
static struct keycache_entry keycache[KEYCACHE_SLOTS];
static size_t keycache_used;

/* name: upper-cased, '-' already turned to '_'. Borrowed reference. */
static PyObject *
env_key(const char *name, size_t len)
{
	uint32_t h = 2166136261u;
	char tmp[KEYCACHE_NAME + 8];
	PyObject *key;

	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char)name[i]) * 16777619u;
	if (len < KEYCACHE_NAME) {
		for (size_t i = h & (KEYCACHE_SLOTS - 1), n = 0; n < 8;
		    i = (i + 1) & (KEYCACHE_SLOTS - 1), n++) {
			struct keycache_entry *e = &keycache[i];
			if (e->key == NULL) {
				if (keycache_used >= KEYCACHE_SLOTS / 2)
					break;
				if (len == 12 && memcmp(name, "CONTENT_TYPE", 12) == 0)
					key = Py_NewRef(k_content_type);
				else if (len == 14 && memcmp(name, "CONTENT_LENGTH", 14) == 0)
					key = Py_NewRef(k_content_length);
				else {
					memcpy(tmp, "HTTP_", 5);
					memcpy(tmp + 5, name, len);
					tmp[5 + len] = '\0';
					key = PyUnicode_InternFromString(tmp);
					if (key == NULL)
						return NULL;
				}
				e->hash = h;
				e->len = (uint8_t)len;
				memcpy(e->name, name, len);
				e->key = key;
				keycache_used++;
				return key;
			}
			if (e->hash == h && e->len == len &&
			    memcmp(e->name, name, len) == 0)
				return e->key;
		}
	}
	return NULL;	/* not cacheable: caller builds its own */
}

/* ---- wsgi.errors ---- */

static PyObject *
errors_write(PyObject *self, PyObject *arg)
{
	Py_ssize_t n;
	const char *s;

	if (PyBytes_Check(arg)) {
		s = PyBytes_AS_STRING(arg);
		n = PyBytes_GET_SIZE(arg);
	} else if ((s = PyUnicode_AsUTF8AndSize(arg, &n)) == NULL)
		return NULL;
	/* Without the GIL: a stalled error-log reader may hold this write
	 * for up to a second (log.c), the other threads must not wait with
	 * it.  No copy: s is the immutable bytes' or str's own buffer, alive
	 * while the reference held here is. */
	Py_INCREF(arg);
	Py_BEGIN_ALLOW_THREADS
	log_error_write(s, (size_t)n);
	Py_END_ALLOW_THREADS
	Py_DECREF(arg);
	return PyLong_FromSsize_t(n);
}

static PyObject *
errors_writelines(PyObject *self, PyObject *seq)
{
	PyObject *it = PyObject_GetIter(seq), *item;

	if (it == NULL)
		return NULL;
	while ((item = PyIter_Next(it)) != NULL) {
		PyObject *r = errors_write(self, item);
		Py_DECREF(item);
		if (r == NULL) {
			Py_DECREF(it);
			return NULL;
		}
		Py_DECREF(r);
	}
	Py_DECREF(it);
	if (PyErr_Occurred())
		return NULL;
	Py_RETURN_NONE;
}

static PyObject *
errors_flush(PyObject *self, PyObject *unused)
{
	Py_RETURN_NONE;
}

static PyMethodDef errors_methods[] = {
	{ "write", errors_write, METH_O, NULL },
	{ "writelines", errors_writelines, METH_O, NULL },
	{ "flush", errors_flush, METH_NOARGS, NULL },
	{ NULL, NULL, 0, NULL },
};

static PyTypeObject ErrorsType = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "cunicorn.Errors",
	.tp_basicsize = sizeof(PyObject),
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_doc = "wsgi.errors: writes go to the error log",
	.tp_methods = errors_methods,
};

/* ---- environ ---- */

/* Percent-decoding, header keys: filled and read within one call, never
 * across a wait, so a per-thread cache rather than request state (it
 * keeps its allocation from request to request without a parameter). */
static __thread struct buf scratch;

static void
format_peer(struct wsgi_req *q, struct http_conn *c)
{
	q->peer_port = http_peer_format(http_conn_client(c), q->peer_text, sizeof(q->peer_text));
}

const char *
wsgi_peer_text(struct wsgi_req *q, struct http_conn *c)
{
	format_peer(q, c);
	return q->peer_text;
}

/* What the connection's PROXY preamble said, as gunicorn's environ has
 * it: PROXY_PROTOCOL (TCP4, TCP6; here also UNKNOWN and LOCAL, where the
 * peer's own address stays REMOTE_ADDR), PROXY_ADDR and PROXY_PORT (the
 * address the client reached). */
static int
proxy_environ(PyObject *env, struct http_conn *c)
{
	char text[INET6_ADDRSTRLEN];
	int port;

	if (py_dict_set_new(env, k_proxy_protocol,
	    PyUnicode_FromString(proxy_kind_name(c->proxy.kind))) == -1)
		return -1;
	if (c->proxy.kind != PROXY_TCP4 && c->proxy.kind != PROXY_TCP6)
		return 0;
	port = http_peer_format(&c->proxy.dst, text, sizeof(text));
	if (py_dict_set_new(env, k_proxy_addr, PyUnicode_FromString(text)) == -1 ||
	    py_dict_set_new(env, k_proxy_port, PyUnicode_FromFormat("%d", port)) == -1)
		return -1;
	return 0;
}

/* forwarded_allow_ips, parsed once (ip_allow.h); read-only after init,
 * so every gthread thread may match against it.  Trust is the socket
 * peer's, never a PROXY preamble's client: as in gunicorn. */
static struct ip_allow forwarded_allow;

static int
peer_trusted(struct http_conn *c)
{
	return ip_allow_match(&forwarded_allow, &c->peer);
}

/* A header whose name has '_' that forwarder_headers lets a trusted peer set. */
static int
is_forwarder_header(const char *name, size_t len)
{
	const struct strlist *l = &cfg->forwarder_headers;

	for (size_t i = 0; i < l->len; i++)
		if (strcmp(l->items[i], "*") == 0 ||
		    (strlen(l->items[i]) == len && strncasecmp(l->items[i], name, len) == 0))
			return 1;
	return 0;
}

/* urllib.parse.unquote_to_bytes(s).decode('latin-1') */
static PyObject *
unquote_latin1(const char *s, size_t n)
{
	if (memchr(s, '%', n) == NULL)
		return PyUnicode_DecodeLatin1(s, (Py_ssize_t)n, NULL);
	scratch.len = 0;
	buf_reserve(&scratch, n);
	for (size_t i = 0; i < n; i++) {
		int hi, lo;
		if (s[i] == '%' && i + 2 < n && (hi = hex_digit(s[i + 1])) >= 0 &&
		    (lo = hex_digit(s[i + 2])) >= 0) {
			scratch.chars[scratch.len++] = (char)(hi * 16 + lo);
			i += 2;
		} else
			scratch.chars[scratch.len++] = s[i];
	}
	return PyUnicode_DecodeLatin1(scratch.chars, (Py_ssize_t)scratch.len, NULL);
}

static PyObject *
method_object(const char *m, size_t len)
{
	for (int i = 0; method_names[i]; i++)
		if (strlen(method_names[i]) == len && memcmp(method_names[i], m, len) == 0)
			return Py_NewRef(v_methods[i]);
	return PyUnicode_DecodeLatin1(m, (Py_ssize_t)len, NULL);
}

/*
 * gunicorn.socket: a socket.socket on the client's fd.  Making one costs
 * ~3.5 us (Python __init__, getsockname), too much for every request, and
 * a plain dict cannot make it on first access.  So one object per fd
 * number is kept (fds are recycled: the sync worker sees the same number
 * for every connection) and reused while nobody else holds it.  It never
 * owns the fd: a request that ends with the object kept elsewhere (the
 * app stored it) detaches it -- later calls fail with EBADF instead of
 * touching another connection -- and the next request makes a new one.
 * Its class turns close() into a detach that also forgets the object.
 * Only touched under the GIL.
 */
static PyObject *socket_type;		/* socket.socket */
static PyObject **sock_by_fd;		/* [fd]: our reference */
static int *sock_family;		/* [fd]: the family it was made for */
static size_t sock_slots;

static void
sock_drop(int fd)
{
	PyObject *s = sock_by_fd[fd], *r;

	sock_by_fd[fd] = NULL;
	if ((r = PyObject_CallMethod(s, "detach", NULL)) == NULL)
		PyErr_Clear();
	Py_XDECREF(r);
	Py_DECREF(s);
}

/* ClientSocket.close(): the app is done with the object; the next
 * request on this fd gets a fresh one. */
static PyObject *
sock_forget(PyObject *self, PyObject *args)
{
	PyObject *obj;
	int fd;

	if (!PyArg_ParseTuple(args, "iO", &fd, &obj))
		return NULL;
	if (fd >= 0 && (size_t)fd < sock_slots && sock_by_fd[fd] == obj) {
		sock_by_fd[fd] = NULL;
		Py_DECREF(obj);		/* the caller still holds it */
	}
	Py_RETURN_NONE;
}

static PyMethodDef sock_forget_def = {
	"_forget", sock_forget, METH_VARARGS, NULL
};

/* Borrowed reference, or NULL with an exception. */
static PyObject *
client_socket(struct wsgi_req *q, struct http_conn *c)
{
	int fd = c->fd, family = c->peer.ss_family;

	if (fd < 0) {
		PyErr_SetString(PyExc_OSError, "no client socket");
		return NULL;
	}
	if ((size_t)fd >= sock_slots) {
		size_t n = sock_slots ? sock_slots : 64;
		while (n <= (size_t)fd)
			n *= 2;
		sock_by_fd = xrealloc(sock_by_fd, n * sizeof(*sock_by_fd));
		sock_family = xrealloc(sock_family, n * sizeof(*sock_family));
		memset(sock_by_fd + sock_slots, 0, (n - sock_slots) * sizeof(*sock_by_fd));
		sock_slots = n;
	}
	if (sock_by_fd[fd] != NULL && (Py_REFCNT(sock_by_fd[fd]) > 1 ||
	    sock_family[fd] != family))
		sock_drop(fd);
	if (sock_by_fd[fd] == NULL) {
		sock_by_fd[fd] = PyObject_CallFunction(socket_type, "iiii",
		    family, SOCK_STREAM, 0, fd);
		if (sock_by_fd[fd] == NULL)
			return NULL;
		sock_family[fd] = family;
	}
	q->sock_fd = fd;
	return sock_by_fd[fd];
}

void
wsgi_client_socket_release(struct wsgi_req *q)
{
	int fd = q->sock_fd;

	q->sock_fd = -1;
	if (fd >= 0 && sock_by_fd[fd] != NULL && Py_REFCNT(sock_by_fd[fd]) > 1)
		sock_drop(fd);
}

PyObject *
wsgi_build_environ(struct wsgi_req *q, struct http_conn *c, const char **bad_request)
{
	const struct http_request *hr = &c->req;
	PyObject *env, *key, *val, *old;
	const char *host = NULL;
	size_t host_len = 0;
	int trusted = -1, scheme = -1;	/* -1 unknown, 0 http, 1 https */
	char kbuf[KEYCACHE_NAME + 8];
	const char *sn = script_name, *fwd_script = NULL;
	size_t sn_len = script_name_len, fwd_script_len = 0;

	*bad_request = NULL;
	if ((env = PyDict_Copy(base_env)) == NULL)
		return NULL;
	if (py_dict_set_new(env, k_request_method, method_object(hr->method, hr->method_len)) == -1 ||
	    py_dict_set_new(env, k_query_string, hr->query_len ? PyUnicode_DecodeLatin1(hr->query,
	        (Py_ssize_t)hr->query_len, NULL) : Py_NewRef(v_empty)) == -1 ||
	    py_dict_set_new(env, k_raw_uri, PyUnicode_DecodeLatin1(hr->target,
	        (Py_ssize_t)hr->target_len, NULL)) == -1 ||
	    PyDict_SetItem(env, k_server_protocol,
	        hr->version_minor == 0 ? v_http10 : v_http11) == -1)
		goto fail;
	if (hr->version_major != 1 || hr->version_minor > 1) {
		char proto[32];
		snprintf(proto, sizeof(proto), "HTTP/%d.%d", hr->version_major, hr->version_minor);
		if (py_dict_set_new(env, k_server_protocol, PyUnicode_FromString(proto)) == -1)
			goto fail;
	}

	for (size_t i = 0; i < hr->nheaders; i++) {
		const struct http_header *h = &hr->headers[i];
		if (memchr(h->name, '_', h->name_len) != NULL) {
			/* gunicorn's header_map = "drop", but for the
			 * forwarder_headers a trusted proxy sends */
			if (!is_forwarder_header(h->name, h->name_len))
				continue;
			if (trusted == -1)
				trusted = peer_trusted(c);
			if (!trusted)
				continue;
			if (h->name_len == 11 && strncasecmp(h->name, "script_name", 11) == 0) {
				fwd_script = h->value;
				fwd_script_len = h->value_len;
			}
		}
		if (h->name_len == 4 && strncasecmp(h->name, "host", 4) == 0) {
			host = h->value;
			host_len = h->value_len;
		}
		for (size_t j = 0; j < cfg->secure_scheme_names.len; j++) {
			const char *scheme_name = cfg->secure_scheme_names.items[j];
			if (strlen(scheme_name) != h->name_len || strncasecmp(scheme_name, h->name, h->name_len) != 0)
				continue;
			if (trusted == -1)
				trusted = peer_trusted(c);
			if (!trusted)
				break;
			const char *sv = cfg->secure_scheme_values.items[j];
			int https = strlen(sv) == h->value_len &&
			    memcmp(sv, h->value, h->value_len) == 0;
			if (scheme != -1 && scheme != https) {
				*bad_request = "Contradictory scheme headers";
				goto fail;
			}
			scheme = https;
		}
		key = NULL;
		if (h->name_len < KEYCACHE_NAME) {
			for (size_t j = 0; j < h->name_len; j++) {
				unsigned char ch = (unsigned char)h->name[j];
				kbuf[j] = ch == '-' ? '_' : (ch >= 'a' && ch <= 'z') ? ch - 32 : ch;
			}
			key = env_key(kbuf, h->name_len);
			if (key != NULL)
				Py_INCREF(key);
			else if (PyErr_Occurred())
				goto fail;
		}
		if (key == NULL) {
			scratch.len = 0;
			buf_appends(&scratch, "HTTP_");
			for (size_t j = 0; j < h->name_len; j++) {
				unsigned char ch = (unsigned char)h->name[j];
				char u = ch == '-' ? '_' : (ch >= 'a' && ch <= 'z') ? ch - 32 : ch;
				buf_append(&scratch, &u, 1);
			}
			if (scratch.len == 17 && memcmp(scratch.chars + 5, "CONTENT_TYPE", 12) == 0)
				key = Py_NewRef(k_content_type);
			else if (scratch.len == 19 && memcmp(scratch.chars + 5, "CONTENT_LENGTH", 14) == 0)
				key = Py_NewRef(k_content_length);
			else if ((key = PyUnicode_DecodeLatin1(scratch.chars,
			    (Py_ssize_t)scratch.len, NULL)) == NULL)
				goto fail;
		}
		if ((val = PyUnicode_DecodeLatin1(h->value, (Py_ssize_t)h->value_len, NULL)) == NULL) {
			Py_DECREF(key);
			goto fail;
		}
		if (key != k_content_type && key != k_content_length &&
		    (old = PyDict_GetItemWithError(env, key)) != NULL) {
			PyObject *joined = PyUnicode_FromFormat("%U,%U", old, val);
			Py_DECREF(val);
			val = joined;
		}
		if (val == NULL || PyDict_SetItem(env, key, val) == -1) {
			Py_XDECREF(val);
			Py_DECREF(key);
			goto fail;
		}
		Py_DECREF(val);
		Py_DECREF(key);
	}

	if (c->https)		/* a uWSGI request's HTTPS */
		scheme = 1;
	/* gunicorn: https on a TLS listener, unless a trusted peer's
	 * secure_scheme_headers said otherwise */
	if (scheme == -1 && tls_enabled())
		scheme = 1;
	if (PyDict_SetItem(env, k_url_scheme, scheme == 1 ? v_https : v_http) == -1)
		goto fail;

	/* REMOTE_*: the client a uWSGI request or a PROXY preamble named,
	 * else the peer */
	format_peer(q, c);
	if (c->proxy.kind != PROXY_NONE && proxy_environ(env, c) == -1)
		goto fail;
	if (http_conn_client(c)->ss_family == AF_UNIX) {
		if (PyDict_SetItem(env, k_remote_addr, v_empty) == -1)
			goto fail;
	} else if (py_dict_set_new(env, k_remote_addr, PyUnicode_FromString(q->peer_text)) == -1 ||
	    py_dict_set_new(env, k_remote_port, PyUnicode_FromFormat("%d", q->peer_port)) == -1)
		goto fail;

	/* SERVER_* : the listener's address, or the Host header for unix */
	size_t li = (size_t)(c->listener - listeners);
	if (li < nlisteners && srv_name[li] != NULL) {
		if (PyDict_SetItem(env, k_server_name, srv_name[li]) == -1 ||
		    PyDict_SetItem(env, k_server_port, srv_port[li]) == -1)
			goto fail;
	} else if (host != NULL) {
		const char *colon = memchr(host, ':', host_len);
		size_t nlen = colon ? (size_t)(colon - host) : host_len;
		if (py_dict_set_new(env, k_server_name, PyUnicode_DecodeLatin1(host, (Py_ssize_t)nlen, NULL)) == -1)
			goto fail;
		if (colon) {
			const char *p = colon + 1, *e = memchr(p, ':', host_len - nlen - 1);
			size_t plen = e ? (size_t)(e - p) : host_len - nlen - 1;
			val = PyUnicode_DecodeLatin1(p, (Py_ssize_t)plen, NULL);
		} else
			val = PyUnicode_FromString(scheme == 1 ? "443" : "80");
		if (py_dict_set_new(env, k_server_port, val) == -1)
			goto fail;
	} else {
		const char *name = c->listener ? c->listener->host : "";
		if (py_dict_set_new(env, k_server_name, PyUnicode_DecodeFSDefault(name ? name : "")) == -1 ||
		    PyDict_SetItem(env, k_server_port, v_empty) == -1)
			goto fail;
	}

	/* SCRIPT_NAME (in base_env, or a trusted proxy's header) and PATH_INFO */
	const char *path = hr->path;
	size_t path_len = hr->path_len;
	if (fwd_script != NULL) {
		sn = fwd_script;
		sn_len = fwd_script_len;
		if (py_dict_set_new(env, k_script_name, PyUnicode_DecodeLatin1(sn,
		    (Py_ssize_t)sn_len, NULL)) == -1)
			goto fail;
	}
	if (sn_len > 0) {
		if (path_len < sn_len || memcmp(path, sn, sn_len) != 0) {
			snprintf(q->bad_request, sizeof(q->bad_request),
			    "Configuration problem: Request path '%.*s' does not start with SCRIPT_NAME '%.*s'",
			    (int)(path_len > 200 ? 200 : path_len), path,
			    (int)(sn_len > 200 ? 200 : sn_len), sn);
			*bad_request = q->bad_request;
			goto fail;
		}
		path += sn_len;
		path_len -= sn_len;
	}
	if (py_dict_set_new(env, k_path_info, unquote_latin1(path, path_len)) == -1)
		goto fail;

	if ((val = wsgi_input_object(q)) == NULL ||
	    PyDict_SetItem(env, k_input, val) == -1 ||
	    (val = wsgi_early_hints_object(q)) == NULL ||
	    PyDict_SetItem(env, k_early_hints, val) == -1 ||
	    (val = client_socket(q, c)) == NULL ||
	    PyDict_SetItem(env, k_socket, val) == -1)
		goto fail;
	return env;
fail:
	Py_DECREF(env);
	return NULL;
}

/*
 * The worker-independent part, made once in the master before forking
 * (wsgi_prepare()), so that workers share its pages.
 */
int
wsgi_environ_prepare(void)
{
	if (PyType_Ready(&ErrorsType) < 0)
		return -1;
	k_request_method = wsgi_intern("REQUEST_METHOD");
	k_script_name = wsgi_intern("SCRIPT_NAME");
	k_path_info = wsgi_intern("PATH_INFO");
	k_query_string = wsgi_intern("QUERY_STRING");
	k_raw_uri = wsgi_intern("RAW_URI");
	k_server_name = wsgi_intern("SERVER_NAME");
	k_server_port = wsgi_intern("SERVER_PORT");
	k_server_protocol = wsgi_intern("SERVER_PROTOCOL");
	k_remote_addr = wsgi_intern("REMOTE_ADDR");
	k_remote_port = wsgi_intern("REMOTE_PORT");
	k_proxy_protocol = wsgi_intern("PROXY_PROTOCOL");
	k_proxy_addr = wsgi_intern("PROXY_ADDR");
	k_proxy_port = wsgi_intern("PROXY_PORT");
	k_content_type = wsgi_intern("CONTENT_TYPE");
	k_content_length = wsgi_intern("CONTENT_LENGTH");
	k_url_scheme = wsgi_intern("wsgi.url_scheme");
	k_input = wsgi_intern("wsgi.input");
	k_early_hints = wsgi_intern("wsgi.early_hints");
	k_socket = wsgi_intern("gunicorn.socket");
	v_http = wsgi_intern("http");
	v_https = wsgi_intern("https");
	v_http11 = wsgi_intern("HTTP/1.1");
	v_http10 = wsgi_intern("HTTP/1.0");
	v_empty = wsgi_intern("");
	for (int i = 0; method_names[i]; i++)
		v_methods[i] = wsgi_intern(method_names[i]);

	/* gunicorn.socket's class, made here so that workers share it: a
	 * socket.socket whose close() gives the fd back instead of closing
	 * it -- the worker closes the connection, and an fd number closed
	 * twice could be another connection's by then */
	static const char sock_src[] =
	    "import socket\n"
	    "class ClientSocket(socket.socket):\n"
	    "    # the connection's socket, owned by the worker\n"
	    "    __slots__ = ()\n"
	    "    def _real_close(self, _ss=socket._socket.socket, _forget=_forget):\n"
	    "        if self.fileno() >= 0:\n"
	    "            _forget(self.fileno(), self)\n"
	    "            _ss.detach(self)\n"
	    "    def close(self):\n"
	    "        self._closed = True\n"
	    "        if self._io_refs <= 0:\n"
	    "            self._real_close()\n";
	PyObject *globals = PyDict_New(), *res = NULL;
	if (globals == NULL || PyDict_SetItemString(globals, "__builtins__",
	    PyEval_GetBuiltins()) == -1 ||
	    PyDict_SetItemString(globals, "__name__", v_empty) == -1 ||
	    (res = PyCFunction_New(&sock_forget_def, NULL)) == NULL ||
	    PyDict_SetItemString(globals, "_forget", res) == -1) {
		Py_XDECREF(globals);
		return -1;
	}
	Py_DECREF(res);
	res = PyRun_String(sock_src, Py_file_input, globals, globals);
	Py_XDECREF(res);
	socket_type = res ? PyDict_GetItemString(globals, "ClientSocket") : NULL;
	Py_XINCREF(socket_type);
	Py_DECREF(globals);
	if (socket_type == NULL)
		return -1;
	return 0;
}

int
wsgi_environ_init(const struct wsgi_setup *setup)
{
	PyObject *errors, *v;

	cfg = setup->cfg;
	listeners = setup->listeners;
	nlisteners = setup->nlisteners;
	ip_allow_init(&forwarded_allow, &cfg->forwarded_allow_ips);
	const char *sn = getenv("SCRIPT_NAME");
	script_name = xstrdup(sn ? sn : "");
	script_name_len = strlen(script_name);

	srv_name = xcalloc(nlisteners + 1, sizeof(*srv_name));
	srv_port = xcalloc(nlisteners + 1, sizeof(*srv_port));
	for (size_t i = 0; i < nlisteners; i++) {
		if (listeners[i].family == AF_UNIX)
			continue;
		srv_name[i] = PyUnicode_DecodeFSDefault(listeners[i].host ? listeners[i].host : "");
		srv_port[i] = PyUnicode_FromFormat("%d", listeners[i].port);
		if (srv_name[i] == NULL || srv_port[i] == NULL)
			return -1;
	}

	if ((base_env = PyDict_New()) == NULL)
		return -1;
	if ((errors = PyObject_New(PyObject, &ErrorsType)) == NULL)
		return -1;
	if (PyDict_SetItemString(base_env, "wsgi.errors", errors) == -1)
		return -1;
	Py_DECREF(errors);
	if ((v = Py_BuildValue("(ii)", 1, 0)) == NULL ||
	    PyDict_SetItemString(base_env, "wsgi.version", v) == -1)
		return -1;
	Py_DECREF(v);
	/* gunicorn: multithread is threads > 1 */
	if (PyDict_SetItemString(base_env, "wsgi.multithread",
	        setup->threads > 1 ? Py_True : Py_False) == -1 ||
	    PyDict_SetItemString(base_env, "wsgi.multiprocess",
	        cfg->workers > 1 ? Py_True : Py_False) == -1 ||
	    PyDict_SetItemString(base_env, "wsgi.run_once", Py_False) == -1 ||
	    PyDict_SetItemString(base_env, "wsgi.file_wrapper", wsgi_file_wrapper_type()) == -1 ||
	    PyDict_SetItemString(base_env, "wsgi.input_terminated", Py_True) == -1)
		return -1;
	if ((v = PyUnicode_FromString(SERVER_SOFTWARE)) == NULL ||
	    PyDict_SetItemString(base_env, "SERVER_SOFTWARE", v) == -1)
		return -1;
	Py_DECREF(v);
	if ((v = PyUnicode_DecodeLatin1(script_name, (Py_ssize_t)script_name_len, NULL)) == NULL ||
	    PyDict_SetItem(base_env, k_script_name, v) == -1)
		return -1;
	Py_DECREF(v);
	return 0;
}
