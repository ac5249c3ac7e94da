/*
 * tls.c — TLS for the sync and gthread workers' client connections, with
 * OpenSSL (the contract is in tls.h).
 *
 * Owns: the process's SSL_CTX (built by the master at start and on HUP,
 * inherited by the workers forked after), the BIO method that puts
 * OpenSSL's bytes on a socket with MSG_NOSIGNAL, and in a worker the
 * descriptor-indexed table of sessions (nginx's connection array: sized
 * from RLIMIT_NOFILE, allocated only when TLS is on; an idle keep-alive
 * connection holds no record buffers: SSL_MODE_RELEASE_BUFFERS).
 *
 * Never: waits (every call is non-blocking; the callers own the waits and
 * deadlines), logs above debug for what one client did (a plain HTTP
 * request on the TLS port, a failed handshake: the connection closes, the
 * worker goes on), is used by the dirty arbiter or its workers, or by the
 * asgi worker (its transports are Python's).
 */
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "settings.h"
#include "tls.h"
#include "util.h"

#define RECORD_MAX	16384		/* TLS's largest plaintext record */
#define TABLE_MAX	(1u << 22)	/* descriptors with a slot, at most */

struct tls_conn *tls_fds;
size_t tls_nfds;

static SSL_CTX *ctx;
static BIO_METHOD *socket_bio;

/* ---- the BIO: a socket, MSG_NOSIGNAL (the app may set SIGPIPE back to
 * SIG_DFL; OpenSSL's socket BIO writes with write()) ---- */

static int
bio_write(BIO *b, const char *p, int n)
{
	int fd = (int)(intptr_t)BIO_get_data(b);
	ssize_t w;

	BIO_clear_retry_flags(b);
	do
		w = send(fd, p, (size_t)n, MSG_NOSIGNAL);
	while (w == -1 && errno == EINTR);
	if (w == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
		BIO_set_retry_write(b);
	return (int)w;
}

static int
bio_read(BIO *b, char *p, int n)
{
	int fd = (int)(intptr_t)BIO_get_data(b);
	ssize_t r;

	BIO_clear_retry_flags(b);
	do
		r = recv(fd, p, (size_t)n, 0);
	while (r == -1 && errno == EINTR);
	if (r == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
		BIO_set_retry_read(b);
	if (r == 0)	/* BIO_eof() says so: OpenSSL tells a ragged EOF by it */
		BIO_set_flags(b, BIO_FLAGS_IN_EOF);
	return (int)r;
}

static int
bio_puts(BIO *b, const char *s)
{
	return bio_write(b, s, (int)strlen(s));
}

static long
bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	switch (cmd) {
	case BIO_CTRL_FLUSH:
		return 1;
	case BIO_CTRL_EOF:
		return BIO_test_flags(b, BIO_FLAGS_IN_EOF) != 0;
	default:
		return 0;
	}
}

static int
bio_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

static int
bio_destroy(BIO *b)
{
	return 1;	/* the descriptor is the connection layer's to close */
}

static BIO_METHOD *
socket_bio_method(void)
{
	BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
	    "cunicorn socket");

	if (m == NULL || !BIO_meth_set_write(m, bio_write) ||
	    !BIO_meth_set_read(m, bio_read) || !BIO_meth_set_puts(m, bio_puts) ||
	    !BIO_meth_set_ctrl(m, bio_ctrl) || !BIO_meth_set_create(m, bio_create) ||
	    !BIO_meth_set_destroy(m, bio_destroy))
		fatalx("OpenSSL: cannot make the socket BIO");
	return m;
}

/* ---- the context (master) ---- */

/* OpenSSL's first queued error as text (the queue is cleared). */
static void
ssl_reason(char *out, size_t len)
{
	unsigned long e = ERR_peek_error();
	const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;

	if (e != 0 && ERR_GET_LIB(e) == ERR_LIB_SYS)
		r = strerror(ERR_GET_REASON(e));
	snprintf(out, len, "%s", r != NULL ? r : "unknown OpenSSL error");
	ERR_clear_error();
}

/* A file the setting names must be readable: said plainly, before
 * OpenSSL's wording of the same. */
static int
readable(const char *setting, const char *path, char *why, size_t len)
{
	FILE *f = fopen(path, "r");

	if (f == NULL) {
		snprintf(why, len, "%s: %s: %s", setting, path, strerror(errno));
		return -1;
	}
	fclose(f);
	return 0;
}

/* A failed step of the build: why = what + OpenSSL's reason; c freed. */
static int
fail(SSL_CTX *c, char *why, size_t len, const char *what)
{
	char reason[200];

	ssl_reason(reason, sizeof(reason));
	snprintf(why, len, "%s (%s)", what, reason);
	SSL_CTX_free(c);
	return -1;
}

static int
build(const struct settings *s, char *why, size_t len)
{
	const char *keyfile = s->keyfile != NULL ? s->keyfile : s->certfile;
	uint64_t opts = SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
	    SSL_OP_CIPHER_SERVER_PREFERENCE;
	char what[PATH_MAX + 100];
	SSL_CTX *c;

	if (s->certfile == NULL) {
		SSL_CTX_free(ctx);
		ctx = NULL;
		return 0;
	}
	if (readable("certfile", s->certfile, why, len) == -1 ||
	    (s->keyfile != NULL && readable("keyfile", s->keyfile, why, len) == -1) ||
	    (s->ca_certs != NULL && readable("ca_certs", s->ca_certs, why, len) == -1))
		return -1;
	if (socket_bio == NULL)
		socket_bio = socket_bio_method();
	ERR_clear_error();
	if ((c = SSL_CTX_new(TLS_server_method())) == NULL)
		return fail(NULL, why, len, "certfile: cannot make a TLS context");
	/* TLS 1.2 and newer; ssl_version TLSv1_2 pins 1.2 */
	SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
	if (s->ssl_version == SETTINGS_SSL_TLSv1_2)
		SSL_CTX_set_max_proto_version(c, TLS1_2_VERSION);
	/* suppress_ragged_eofs: a close without close_notify is an EOF */
	if (s->suppress_ragged_eofs)
		opts |= SSL_OP_IGNORE_UNEXPECTED_EOF;
	SSL_CTX_set_options(c, opts);
	SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS |
	    SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	/* resumption by tickets only: their keys are made here, before the
	 * fork, so every worker takes the others' tickets; no per-process
	 * session cache to grow */
	SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_session_id_context(c, (const unsigned char *)"cunicorn", 8);

	if (SSL_CTX_use_certificate_chain_file(c, s->certfile) != 1) {
		snprintf(what, sizeof(what), "certfile: %s: not a PEM "
		    "certificate chain", s->certfile);
		return fail(c, why, len, what);
	}
	if (SSL_CTX_use_PrivateKey_file(c, keyfile, SSL_FILETYPE_PEM) != 1) {
		unsigned long e = ERR_peek_last_error();
		if (ERR_GET_LIB(e) == ERR_LIB_X509 &&
		    ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH)
			snprintf(what, sizeof(what), "keyfile: %s does not match "
			    "the certificate of certfile %s", keyfile, s->certfile);
		else
			snprintf(what, sizeof(what), s->keyfile != NULL ?
			    "keyfile: %s: not a PEM private key" :
			    "certfile: %s: no private key in it, and no keyfile",
			    keyfile);
		return fail(c, why, len, what);
	}
	if (SSL_CTX_check_private_key(c) != 1) {
		snprintf(what, sizeof(what), "keyfile: %s does not match the "
		    "certificate of certfile %s", keyfile, s->certfile);
		return fail(c, why, len, what);
	}
	if (s->ciphers != NULL && SSL_CTX_set_cipher_list(c, s->ciphers) != 1) {
		snprintf(what, sizeof(what), "ciphers: '%.200s': no usable cipher",
		    s->ciphers);
		return fail(c, why, len, what);
	}
	if (s->ca_certs != NULL) {
		STACK_OF(X509_NAME) *names;
		if (SSL_CTX_load_verify_locations(c, s->ca_certs, NULL) != 1) {
			snprintf(what, sizeof(what), "ca_certs: %s: no PEM CA "
			    "certificate in it", s->ca_certs);
			return fail(c, why, len, what);
		}
		/* the CAs a client's certificate may be from, told to it */
		if ((names = SSL_load_client_CA_file(s->ca_certs)) != NULL)
			SSL_CTX_set_client_CA_list(c, names);
	} else if (s->cert_reqs > 0 && SSL_CTX_set_default_verify_paths(c) != 1)
		return fail(c, why, len, "ca_certs: the system's CAs cannot be loaded");
	/* as Python's CERT_OPTIONAL and CERT_REQUIRED: a certificate sent is
	 * verified; 2 also fails a client that sends none */
	if (s->cert_reqs > 0)
		SSL_CTX_set_verify(c, SSL_VERIFY_PEER | (s->cert_reqs == 2 ?
		    SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0), NULL);
	ERR_clear_error();
	SSL_CTX_free(ctx);
	ctx = c;
	return 0;
}

/*
 * The files are read with the workers' user, group and groups when the
 * master runs as root and user or group is set: the workers hold the
 * context, key included, so a path the workers' user may change must not
 * let it have the master read a file only root may (another service's
 * key, behind a symlink) into their memory.  gunicorn's workers read the
 * files after dropping privileges; so do we, in effect, before the fork.
 */
struct as_workers {
	int switched;
	gid_t egid;
	int ngroups;
	gid_t *groups;		/* the master's groups, to restore (owned) */
};

static int
as_workers_begin(const struct settings *s, struct as_workers *w, char *why, size_t len)
{
	w->switched = 0;
	if (geteuid() != 0 || (s->user == NULL && s->group == NULL) ||
	    (s->uid == 0 && s->gid == 0))
		return 0;
	w->egid = getegid();
	w->ngroups = getgroups(0, NULL);
	w->groups = xcalloc(w->ngroups > 0 ? (size_t)w->ngroups : 1, sizeof(gid_t));
	if (w->ngroups == -1 || (w->ngroups = getgroups(w->ngroups, w->groups)) == -1) {
		snprintf(why, len, "certfile: getgroups: %s", strerror(errno));
		free(w->groups);
		return -1;
	}
	struct passwd *pw = s->initgroups && s->user != NULL ? getpwuid(s->uid) : NULL;
	if ((pw != NULL ? initgroups(pw->pw_name, s->gid) : setgroups(1, &s->gid)) == -1 ||
	    setegid(s->gid) == -1 || seteuid(s->uid) == -1) {
		snprintf(why, len, "certfile: cannot take the workers' user %d and "
		    "group %d to read the TLS files: %s", (int)s->uid, (int)s->gid,
		    strerror(errno));
		(void)seteuid(0);
		(void)setegid(w->egid);
		(void)setgroups((size_t)w->ngroups, w->groups);
		free(w->groups);
		return -1;
	}
	w->switched = 1;
	return 0;
}

static void
as_workers_end(const struct as_workers *w)
{
	if (!w->switched)
		return;
	/* back to root: failing here would leave the master unable to bind,
	 * fork or signal as it must */
	if (seteuid(0) == -1 || setegid(w->egid) == -1 ||
	    setgroups((size_t)w->ngroups, w->groups) == -1)
		fatal("restoring the master's privileges after reading the TLS files");
	free(w->groups);
}

int
tls_context_build(const struct settings *s, char *why, size_t len)
{
	struct as_workers w;
	int rc;

	if (s->certfile == NULL)
		return build(s, why, len);
	if (as_workers_begin(s, &w, why, len) == -1)
		return -1;
	rc = build(s, why, len);
	as_workers_end(&w);
	if (rc == -1 && w.switched && strlen(why) + 64 < len)
		snprintf(why + strlen(why), len - strlen(why),
		    " (read as the workers' user %d, group %d)", (int)s->uid, (int)s->gid);
	return rc;
}

int
tls_enabled(void)
{
	return ctx != NULL;
}

/* ---- the sessions (a worker) ---- */

void
tls_worker_init(void)
{
	struct rlimit rl;
	size_t n = 1024;

	if (ctx == NULL || tls_fds != NULL)
		return;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
		n = rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > TABLE_MAX ?
		    TABLE_MAX : (size_t)rl.rlim_cur;
	/* untouched pages cost nothing: a slot is written when its
	 * descriptor is accepted */
	tls_fds = xcalloc(n, sizeof(*tls_fds));
	tls_nfds = n;
}

int
tls_conn_begin(int fd)
{
	SSL *ssl;
	BIO *bio;

	if (tls_fds == NULL)
		return 0;
	if (fd < 0 || (size_t)fd >= tls_nfds) {
		log_warnx("TLS: descriptor %d beyond the table of %zu (RLIMIT_NOFILE "
		    "raised after the start?): connection closed", fd, tls_nfds);
		return -1;
	}
	ERR_clear_error();
	if ((ssl = SSL_new(ctx)) == NULL || (bio = BIO_new(socket_bio)) == NULL) {
		char reason[200];
		ssl_reason(reason, sizeof(reason));
		log_warnx("TLS: cannot start a session: %s", reason);
		SSL_free(ssl);
		return -1;
	}
	BIO_set_data(bio, (void *)(intptr_t)fd);
	SSL_set_bio(ssl, bio, bio);
	SSL_set_accept_state(ssl);
	tls_fds[fd] = (struct tls_conn){ .ssl = ssl };
	return 0;
}

void
tls_conn_end(int fd)
{
	struct tls_conn *t = tls_of(fd);
	SSL *ssl;

	if (t == NULL)
		return;
	ssl = t->ssl;
	/* never after a fatal error (OpenSSL forbids it), never waiting:
	 * what the socket does not take now is not sent */
	if (!t->failed && SSL_is_init_finished(ssl)) {
		ERR_clear_error();
		(void)SSL_shutdown(ssl);
	}
	SSL_free(ssl);
	ERR_clear_error();
	*t = (struct tls_conn){ .ssl = NULL };
}

/*
 * After an OpenSSL call returned r <= 0: -1 with errno (EAGAIN and t->want
 * set when it waits for the socket), or 0 for an EOF.
 */
static ssize_t
ssl_failed(struct tls_conn *t, int r)
{
	int saved = errno, e = SSL_get_error(t->ssl, r);
	unsigned long code;
	char reason[200];

	switch (e) {
	case SSL_ERROR_WANT_READ:
		t->want = POLLIN;
		errno = EAGAIN;
		return -1;
	case SSL_ERROR_WANT_WRITE:
		t->want = POLLOUT;
		errno = EAGAIN;
		return -1;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	case SSL_ERROR_SYSCALL:
		t->failed = 1;
		ERR_clear_error();
		errno = saved != 0 && saved != EAGAIN ? saved : ECONNRESET;
		return -1;
	default:
		t->failed = 1;
		code = ERR_peek_error();
		ssl_reason(reason, sizeof(reason));
		if (ERR_GET_REASON(code) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
			/* suppress_ragged_eofs False: the peer closed without
			 * close_notify (a truncation attack, or a careless client) */
			errno = ECONNRESET;
			return -1;
		}
		log_debug("TLS: %s%s", SSL_is_init_finished(t->ssl) ? "" :
		    "handshake failed: ", reason);
		errno = EPROTO;
		return -1;
	}
}

ssize_t
tls_read(struct tls_conn *t, void *buf, size_t n)
{
	size_t got = 0;
	ssize_t r;

	/* until the buffer is full or the socket has nothing more: a short
	 * read means drained, as read() on an edge-triggered socket */
	while (got < n) {
		size_t want = n - got > INT_MAX ? INT_MAX : n - got;
		int k;

		ERR_clear_error();
		errno = 0;
		k = SSL_read(t->ssl, (char *)buf + got, (int)want);
		if (k > 0) {
			got += (size_t)k;
			t->want = 0;
			continue;
		}
		if (got > 0) {	/* the bytes first; the EOF or error comes
				 * again with the next call */
			(void)ssl_failed(t, k);
			break;
		}
		if ((r = ssl_failed(t, k)) == 0)
			t->want = 0;
		return r;
	}
	return (ssize_t)got;
}

ssize_t
tls_write(struct tls_conn *t, const void *p, size_t n)
{
	int k;

	if (n == 0)
		return 0;
	ERR_clear_error();
	errno = 0;
	/* partial writes: a record at a time; a record the socket did not
	 * take whole stays in OpenSSL and goes with the retry, which starts
	 * with the same bytes (the caller kept them) */
	k = SSL_write(t->ssl, p, n > INT_MAX ? INT_MAX : (int)n);
	if (k > 0) {
		t->want = 0;
		return k;
	}
	if (ssl_failed(t, k) == 0) {	/* close_notify came: no more output */
		errno = EPIPE;
		t->failed = 1;
	}
	return -1;
}

ssize_t
tls_writev(struct tls_conn *t, const struct iovec *iov, int iovcnt)
{
	char record[RECORD_MAX];
	size_t total = 0, skip = 0;
	int i = 0;

	/* records of RECORD_MAX bytes gathered from the iovs (a record per
	 * tiny iov would cost 22+ bytes and a MAC each); an iov that is a
	 * record or more on its own goes straight from the caller's memory.
	 * The same iovs again give the same records: a retry after EAGAIN
	 * starts with the bytes OpenSSL holds. */
	while (i < iovcnt) {
		const char *from;
		size_t len = 0;
		ssize_t w;

		if (iov[i].iov_len - skip >= RECORD_MAX) {
			from = (const char *)iov[i].iov_base + skip;
			len = iov[i].iov_len - skip;
		} else {
			int j = i;
			size_t off = skip;
			while (j < iovcnt && len < RECORD_MAX) {
				size_t take = iov[j].iov_len - off;
				if (take > RECORD_MAX - len)
					take = RECORD_MAX - len;
				memcpy(record + len, (const char *)iov[j].iov_base + off, take);
				len += take;
				off += take;
				if (off == iov[j].iov_len) {
					j++;
					off = 0;
				}
			}
			from = record;
		}
		if (len == 0) {		/* empty iovs */
			i++;
			skip = 0;
			continue;
		}
		w = tls_write(t, from, len);
		if (w <= 0)
			return total > 0 ? (ssize_t)total : w;
		total += (size_t)w;
		/* past the w bytes taken */
		for (size_t done = (size_t)w; done > 0 && i < iovcnt;) {
			size_t rest = iov[i].iov_len - skip;
			if (done < rest) {
				skip += done;
				done = 0;
			} else {
				done -= rest;
				i++;
				skip = 0;
			}
		}
		while (i < iovcnt && iov[i].iov_len == skip) {
			i++;
			skip = 0;
		}
		if ((size_t)w < len && (size_t)w < RECORD_MAX)
			break;	/* the socket took part: the rest waits */
	}
	return (ssize_t)total;
}

int
tls_pending(const struct tls_conn *t)
{
	return SSL_pending(t->ssl) > 0 || SSL_has_pending(t->ssl);
}
