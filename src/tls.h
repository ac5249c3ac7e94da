/*
 * tls.h — TLS on the client connections of the sync and gthread workers
 * (gunicorn's certfile, keyfile, ca_certs, cert_reqs, ciphers,
 * ssl_version, suppress_ragged_eofs), with OpenSSL.
 *
 * The master builds the one SSL_CTX from the settings at start and again
 * on HUP (tls_context_build); the workers forked after inherit it.  A
 * worker keeps one SSL per client connection in a table indexed by the
 * descriptor (tls_worker_init, tls_conn_begin / tls_conn_end), so that
 * the connection layer's descriptor-based I/O keeps its signatures: the
 * tls_io_* calls below are read(), send(MSG_NOSIGNAL) and
 * sendmsg(MSG_NOSIGNAL) when the descriptor has no TLS session (one
 * predictable branch while TLS is off: the table is NULL), and the same
 * contract through OpenSSL when it has one:
 *   - a read fills the buffer until it is full or nothing more can be
 *     had without waiting, so a short read still means "drained"; bytes
 *     OpenSSL holds already decrypted are reported by tls_io_pending, for
 *     edge-triggered loops that must not wait for an edge;
 *   - a write takes what it can; what it did not take stays with the
 *     caller, whose retry starts with the same bytes (OpenSSL needs that);
 *   - after EAGAIN, tls_io_events says what to wait for: POLLIN or
 *     POLLOUT (a read may need to write, rarely);
 *   - 0 is EOF: the peer's close_notify, or a close without one while
 *     suppress_ragged_eofs is True (else that is an error, ECONNRESET);
 *     a failed handshake or a protocol error is -1 with EPROTO.
 * The handshake happens inside the first read (SSL_set_accept_state), so
 * it is bounded by the head deadline like any first bytes.
 */
#ifndef CUNICORN_TLS_H
#define CUNICORN_TLS_H

#include <poll.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

struct settings;

/* ---- the master ---- */

/* Build the context from s (certfile NULL: no TLS, the current context
 * goes) and make it the process's.  A master running as root with user
 * or group set reads the files as the workers' user (tls.c says why).  -1 with why filled (one line naming
 * the setting and OpenSSL's reason) when a file cannot be read, the key
 * does not match, ciphers or ca_certs are bad: the current context stays. */
int tls_context_build(const struct settings *s, char *why, size_t len);
/* Whether this process has a context: its listeners speak TLS. */
int tls_enabled(void);

/* ---- a worker ---- */

/* Allocate the descriptor table when there is a context (sized from
 * RLIMIT_NOFILE).  The sync and gthread workers call it once. */
void tls_worker_init(void);
/* A client connection was just accepted on fd: its TLS session.  -1
 * when it cannot have one (the caller closes fd). */
int tls_conn_begin(int fd);
/* The connection is closing: a close_notify if the socket takes it now
 * (never waiting), the session freed.  Nothing for a plain fd.  Call it
 * before close(fd), and before anything reads fd's raw bytes. */
void tls_conn_end(int fd);

/* ---- the I/O (any thread; a connection is used by one at a time) ---- */

struct tls_conn {
	void *ssl;			/* SSL *; NULL: a plain descriptor */
	short want;			/* after EAGAIN: POLLIN or POLLOUT; 0 */
	unsigned char failed;		/* a fatal error: no close_notify */
};
extern struct tls_conn *tls_fds;	/* NULL: no TLS in this process */
extern size_t tls_nfds;

ssize_t tls_read(struct tls_conn *t, void *buf, size_t n);
ssize_t tls_write(struct tls_conn *t, const void *p, size_t n);
ssize_t tls_writev(struct tls_conn *t, const struct iovec *iov, int iovcnt);
int tls_pending(const struct tls_conn *t);

static inline struct tls_conn *
tls_of(int fd)
{
	if (__builtin_expect(tls_fds == NULL, 1))
		return NULL;
	return (size_t)fd < tls_nfds && tls_fds[fd].ssl != NULL ?
	    &tls_fds[fd] : NULL;
}

/* read(fd, buf, n) */
static inline ssize_t
tls_io_read(int fd, void *buf, size_t n)
{
	struct tls_conn *t = tls_of(fd);

	return t != NULL ? tls_read(t, buf, n) : read(fd, buf, n);
}

/* send(fd, p, n, MSG_NOSIGNAL) */
static inline ssize_t
tls_io_send(int fd, const void *p, size_t n)
{
	struct tls_conn *t = tls_of(fd);

	return t != NULL ? tls_write(t, p, n) : send(fd, p, n, MSG_NOSIGNAL);
}

/* sendmsg(fd, {iov, iovcnt}, MSG_NOSIGNAL); TLS coalesces small iovs
 * into full records */
static inline ssize_t
tls_io_sendmsg(int fd, struct iovec *iov, int iovcnt)
{
	struct tls_conn *t = tls_of(fd);
	struct msghdr m = { .msg_iov = iov, .msg_iovlen = (size_t)iovcnt };

	return t != NULL ? tls_writev(t, iov, iovcnt) : sendmsg(fd, &m, MSG_NOSIGNAL);
}

/* What to poll for after an EAGAIN of an operation that waits for
 * `events` on a plain socket. */
static inline short
tls_io_events(int fd, short events)
{
	struct tls_conn *t = tls_of(fd);

	return t != NULL && t->want != 0 ? t->want : events;
}

/* Request bytes OpenSSL already holds: a read now returns them without
 * the socket being readable (no epoll edge will say so). */
static inline int
tls_io_pending(int fd)
{
	struct tls_conn *t = tls_of(fd);

	return t != NULL && tls_pending(t);
}

/* tls_conn_end(fd), then close(fd). */
static inline void
tls_close(int fd)
{
	if (tls_of(fd) != NULL)
		tls_conn_end(fd);
	close(fd);
}

#endif
