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
 *     chunks of a dirty stream, which it also appends).
 * One count covers every buffer of the process: the bytes they hold,
 * not yet sent, whoever put them there.  Its maximum (the worker's
 * total) stops a writing thread from keeping more (it waits for its
 * socket instead) and the relay from converting more chunks (it leaves
 * its dirty stream unread): one figure bounds a process's unsent client
 * output, whatever path produced it.
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
/* The loop's side: room for n more bytes, whatever the total (the
 * caller decided they fit); the allocation grows by doubling, but not
 * past max(limit, what it must hold) when limit > 0.  Then
 * conn_out_commit. */
char *conn_out_space(struct conn_out *o, size_t n, size_t limit);
/* Nothing held: give back a buffer grown past its first allocation (a
 * drained buffer keeps no more than a small one). */
void conn_out_trim(struct conn_out *o);
/* The buffers of the process hold at least the total (never with no
 * total). */
int conn_out_over_total(void);
/* Write what the socket takes, without waiting: 0 all written (the
 * buffer is empty), 1 bytes left (EAGAIN), -1 error (errno). */
int conn_out_flush(struct conn_out *o, int fd);
/* Drop what is left and the memory. */
void conn_out_free(struct conn_out *o);

/* ---- the writing thread's side ---- */

/* The total: bytes held in every buffer of the process together past
 * which a writing thread keeps nothing more and waits, and the loop
 * converts no more relayed chunks (conn_out_over_total) (0: no total). */
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
/* Count the n bytes written at conn_out_room's or conn_out_space's
 * pointer as held (both sides). */
void conn_out_commit(struct conn_out *o, size_t n);
/* Wait (bounded) until everything held is written.  0 or -1 (errno). */
int conn_out_drain(struct conn_out *o, int fd);

#endif
