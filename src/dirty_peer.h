/*
 * dirty_peer.h — one end of a dirty-protocol stream as the dirty arbiter
 * holds it: a client connection or a dirty worker's socketpair end.  The
 * same object for both (the model is OpenSMTPD's ioev/imsgbuf): a
 * descriptor, a generation, an input side that reassembles frames (the
 * codec's dirty_reader) and hands each whole one to the peer's on-frame
 * callback, an output queue, and the peer's place in the epoll set.
 *
 * dirty_peer.c also owns what every peer shares: the arbiter's epoll
 * descriptor (dirty_peer_setup), one 64 KiB scratch buffer all reads go
 * through (whole frames are handled from it without a copy; only a
 * partial frame is kept per peer), and the flush list (peers with output
 * queued this round, flushed once at the end of the round).
 *
 * What a peer IS (a client, a worker) and what its frames mean stays with
 * its owner (dirty_route.c, dirty_pool.c); this file never looks inside a
 * frame beyond its header, and never calls Python.  Arbiter only; one
 * thread.
 */
#ifndef CUNICORN_DIRTY_PEER_H
#define CUNICORN_DIRTY_PEER_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "dirty_wire.h"

#pragma GCC visibility push(hidden)

/* An epoll key: what an event is about.  Peers' keys carry their slot
 * and generation, so an event for a closed and reused slot is ignored. */
enum ev_kind { EV_LISTEN = 1, EV_SIGNAL, EV_PIDFD, EV_TIMER, EV_CLIENT, EV_WORKER };

#define EV_KEY(kind, gen, idx) \
	(((uint64_t)(kind) << 56) | ((uint64_t)((gen) & 0xffffffu) << 32) | \
	 (uint32_t)(idx))
#define EV_KIND(k)	((int)((k) >> 56))
#define EV_GEN(k)	((uint32_t)(((k) >> 32) & 0xffffffu))
#define EV_IDX(k)	((uint32_t)(k))

#define PEER_READ_CHUNK		(64 * 1024)

struct dirty_peer;

/* What differs between kinds of peer. */
struct dirty_peer_ops {
	int kind;		/* EV_CLIENT, EV_WORKER */
	int read_rounds;	/* reads of PEER_READ_CHUNK per readiness event */
	size_t in_keep;		/* an idle input buffer above this is freed */
	/* One whole frame (header included; h decoded and checked, the
	 * payload not yet).  0: go on; -1: stop reading (the peer was
	 * closed, or will be). */
	int (*frame)(struct dirty_peer *, const struct dirty_header *h,
	    const uint8_t *frame);
	/* Output queued by dirty_peer_queue_flush() may now be sent. */
	void (*flush)(struct dirty_peer *);
};

struct dirty_peer {
	int fd;			/* -1: closed (a free slot) */
	uint32_t gen;		/* the slot's generation, set by its owner */
	uint32_t idx;		/* the slot's index in its owner's table */
	uint32_t events;	/* current epoll mask */
	int flush_queued;
	const struct dirty_peer_ops *ops;
	struct dirty_reader in;
	struct buf out;		/* [out_off, out.len) still to be sent */
	size_t out_off;
	uint64_t out_sent;	/* bytes handed to the kernel since open: the
				 * stream offset of out.data[out_off] */
};

/* Why dirty_peer_read() stopped. */
enum dirty_peer_read {
	PEER_READ_DONE,		/* nothing more to read now, or a round cap */
	PEER_READ_STOPPED,	/* the frame callback said stop */
	PEER_READ_EOF,		/* orderly end of stream */
	PEER_READ_LOST,		/* a read error (errno) */
	PEER_READ_BAD,		/* a bad header: *why; the stream is done */
};

void	 dirty_peer_setup(int epfd);
uint64_t dirty_peer_key(const struct dirty_peer *);

/* A slot's peer: closed, with its ops (once, when the slot is made). */
void	 dirty_peer_init(struct dirty_peer *, const struct dirty_peer_ops *,
	    uint32_t idx);
/* Take fd (nonblocking) and start watching it for input: 0, or -1 (fd
 * is then closed and the peer stays closed). */
int	 dirty_peer_open(struct dirty_peer *, int fd);
/* Stop watching, close the descriptor, drop both buffers. */
void	 dirty_peer_close(struct dirty_peer *);

/* Read and hand whole frames to ops->frame until the socket is drained
 * (or read_rounds reads).  On EOF with a partial frame held, *unread
 * says how many bytes it had (dirty_peer_unread() shows them). */
enum dirty_peer_read dirty_peer_read(struct dirty_peer *, const char **why);
const uint8_t *dirty_peer_unread(const struct dirty_peer *, size_t *n);
/* Drop the rest of the input (a peer no longer trusted). */
void	 dirty_peer_drop_input(struct dirty_peer *);

/* Output: append to p->out, then dirty_peer_queue_flush(). */
size_t	 dirty_peer_pending(const struct dirty_peer *);
/* The stream offset (bytes since open) the next appended byte gets. */
uint64_t dirty_peer_out_end(const struct dirty_peer *);
/* Send what the socket takes now: 0, or -1 when the peer is gone. */
int	 dirty_peer_send(struct dirty_peer *);
/* The epoll mask: EPOLLIN if want_input, EPOLLOUT while output is
 * pending. */
void	 dirty_peer_watch(struct dirty_peer *, int want_input);
void	 dirty_peer_queue_flush(struct dirty_peer *);
/* At the end of a round: ops->flush for every queued peer still there
 * (lookup: the peer a key names, or NULL). */
void	 dirty_peer_flush_all(struct dirty_peer *(*lookup)(uint64_t key));

/* The epoll set, for the arbiter's other descriptors (listener, signals,
 * timer, pidfd). */
int	 dirty_peer_ep_add(int fd, uint32_t events, uint64_t key);
void	 dirty_peer_ep_del(int fd);

#pragma GCC visibility pop

#endif /* CUNICORN_DIRTY_PEER_H */
