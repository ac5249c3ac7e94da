/*
 * conn_out.h — a client connection's output buffer: response bytes the
 * socket did not take yet, held in C and written as the socket drains.
 *
 * Two sides use it, never at once (only the owner of the connection
 * touches its buffer):
 *   - a thread writing a response (the gthread pool, wsgi_response.c):
 *     conn_out_send_iov() writes what the socket takes and keeps the rest
 *     here, up to a cap, instead of waiting for a slow reader; over the
 *     cap it waits (bounded, as http_io_send_iov does) until it fits;
 *   - the gthread worker's loop, which owns the connection afterwards:
 *     conn_out_flush() writes what the socket takes, never waiting
 *     (gthread_behind.c for a finished response, gthread_relay.c for the
 *     chunks of a dirty stream).
 * With cap 0 (the sync worker) conn_out_send_iov is http_io_send_iov.
 */
#ifndef CUNICORN_CONN_OUT_H
#define CUNICORN_CONN_OUT_H

#include <stddef.h>
#include <sys/uio.h>

struct conn_out {
	char *data;		/* owned; NULL until first used */
	size_t off, len;	/* data[off..len) is not sent yet */
	size_t alloc;
};

static inline size_t
conn_out_pending(const struct conn_out *o)
{
	return o->len - o->off;
}

/* Keep n more bytes (the loop's side: no cap). */
void conn_out_append(struct conn_out *o, const void *p, size_t n);
/* Write what the socket takes, without waiting: 0 all written (the
 * buffer is empty), 1 bytes left (EAGAIN), -1 error (errno). */
int conn_out_flush(struct conn_out *o, int fd);
/* Drop what is left and the memory. */
void conn_out_free(struct conn_out *o);

/* ---- the writing thread's side ---- */

/* Bytes held in every buffer of the process together past which a
 * writing thread keeps nothing more and waits (0: no such limit). */
void conn_out_set_total_max(size_t max);
/* Write every iov (the array is modified) to fd, after what o already
 * holds: what the socket refuses is kept in o while o then holds at most
 * cap bytes (and the process within its total), else the thread waits
 * for the socket until it fits.  cap 0: http_io_send_iov.  0, or -1
 * (errno; ETIMEDOUT after the I/O timeout without progress). */
int conn_out_send_iov(struct conn_out *o, int fd, size_t cap,
    struct iovec *iov, int iovcnt);
/* Room for n more bytes within cap and the total: where to put them
 * (then conn_out_commit), or NULL when they do not fit. */
char *conn_out_room(struct conn_out *o, size_t cap, size_t n);
void conn_out_commit(struct conn_out *o, size_t n);
/* Wait (bounded) until everything held is written.  0 or -1 (errno). */
int conn_out_drain(struct conn_out *o, int fd);

#endif
