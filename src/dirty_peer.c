/*
 * dirty_peer.c — the dirty arbiter's peers: one read loop, one output
 * queue, one way into the epoll set, for clients and workers alike (see
 * dirty_peer.h).  Owns the epoll registrations of peers, the one scratch
 * buffer every read goes through, and the flush list.  Never interprets a
 * frame beyond its header (dirty_reader does that part); never calls
 * Python.
 */
#include "dirty_peer.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#define OUT_KEEP	(256 * 1024)	/* free an idle output buffer above this */

static int epfd = -1;
/* One read buffer for every peer: the loop is single-threaded, and only
 * a partial frame is kept per peer (in its reader). */
static uint8_t scratch[PEER_READ_CHUNK];
/* Keys of the peers with output queued this round. */
static uint64_t *flush;
static size_t nflush, flush_cap;

void
dirty_peer_setup(int fd)
{
	epfd = fd;
}

uint64_t
dirty_peer_key(const struct dirty_peer *p)
{
	return EV_KEY(p->ops->kind, p->gen, p->idx);
}

int
dirty_peer_ep_add(int fd, uint32_t events, uint64_t key)
{
	struct epoll_event ev = { .events = events, .data.u64 = key };

	if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) == -1) {
		log_warn("dirty: epoll_ctl ADD");
		return -1;
	}
	return 0;
}

void
dirty_peer_ep_del(int fd)
{
	epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
}

void
dirty_peer_init(struct dirty_peer *p, const struct dirty_peer_ops *ops,
    uint32_t idx)
{
	memset(p, 0, sizeof(*p));
	p->fd = -1;
	p->ops = ops;
	p->idx = idx;
}

int
dirty_peer_open(struct dirty_peer *p, int fd)
{
	p->fd = fd;
	p->events = EPOLLIN;
	p->flush_queued = 0;
	dirty_reader_init(&p->in);
	buf_init(&p->out);
	p->out_off = 0;
	p->out_sent = 0;
	if (dirty_peer_ep_add(fd, EPOLLIN, dirty_peer_key(p)) == -1) {
		close(fd);
		p->fd = -1;
		return -1;
	}
	return 0;
}

void
dirty_peer_close(struct dirty_peer *p)
{
	if (p->fd != -1) {
		dirty_peer_ep_del(p->fd);
		close(p->fd);
		p->fd = -1;
	}
	dirty_reader_free(&p->in);
	buf_free(&p->out);
	p->out_off = 0;
}

/* ---- input ---- */

static enum dirty_peer_read
peer_frames(struct dirty_peer *p, const char **why)
{
	struct dirty_header h;
	const uint8_t *frame;
	int got;

	while ((got = dirty_reader_next(&p->in, &h, &frame, why)) != 0) {
		if (got == -1)
			return PEER_READ_BAD;
		if (p->ops->frame(p, &h, frame) == -1 || p->fd == -1)
			return PEER_READ_STOPPED;
	}
	return PEER_READ_DONE;
}

enum dirty_peer_read
dirty_peer_read(struct dirty_peer *p, const char **why)
{
	for (int round = 0; round < p->ops->read_rounds; round++) {
		ssize_t n = recv(p->fd, scratch, sizeof(scratch),
		    MSG_DONTWAIT);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			return PEER_READ_LOST;
		}
		if (n == 0)
			return PEER_READ_EOF;
		/* the common case, whole frames, is handled from scratch
		 * without a copy */
		dirty_reader_feed(&p->in, scratch, (size_t)n);
		enum dirty_peer_read r = peer_frames(p, why);
		/* the rest of scratch (a partial frame, a bad header) is
		 * copied out before scratch is reused; a no-op once the
		 * callback closed the peer (its reader is freed) */
		dirty_reader_keep(&p->in);
		if (r != PEER_READ_DONE)
			return r;
		dirty_reader_trim(&p->in, p->ops->in_keep);
		if ((size_t)n < sizeof(scratch))
			break;
	}
	return PEER_READ_DONE;
}

const uint8_t *
dirty_peer_unread(const struct dirty_peer *p, size_t *n)
{
	return dirty_reader_peek(&p->in, n);
}

void
dirty_peer_drop_input(struct dirty_peer *p)
{
	dirty_reader_free(&p->in);
}

/* ---- output ---- */

size_t
dirty_peer_pending(const struct dirty_peer *p)
{
	return p->out.len - p->out_off;
}

uint64_t
dirty_peer_out_end(const struct dirty_peer *p)
{
	return p->out_sent + dirty_peer_pending(p);
}

int
dirty_peer_send(struct dirty_peer *p)
{
	struct buf *b = &p->out;

	while (dirty_peer_pending(p) > 0) {
		ssize_t n = send(p->fd, b->data + p->out_off,
		    dirty_peer_pending(p), MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			return -1;
		}
		p->out_off += (size_t)n;
		p->out_sent += (uint64_t)n;
	}
	if (p->out_off == b->len) {
		p->out_off = 0;
		if (b->cap > OUT_KEEP)
			buf_free(b);
		else
			buf_reset(b);
	} else if (p->out_off > OUT_KEEP && p->out_off > b->len / 2) {
		buf_consume(b, p->out_off);
		p->out_off = 0;
	}
	return 0;
}

void
dirty_peer_watch(struct dirty_peer *p, int want_input)
{
	uint32_t want = 0;

	if (want_input)
		want |= EPOLLIN;
	if (dirty_peer_pending(p) > 0)
		want |= EPOLLOUT;
	if (p->events == want)
		return;
	struct epoll_event ev = { .events = want,
	    .data.u64 = dirty_peer_key(p) };
	if (epoll_ctl(epfd, EPOLL_CTL_MOD, p->fd, &ev) == -1)
		log_warn("dirty: epoll_ctl MOD");
	p->events = want;
}

void
dirty_peer_queue_flush(struct dirty_peer *p)
{
	if (p->flush_queued)
		return;
	if (nflush == flush_cap) {
		flush_cap = flush_cap ? flush_cap * 2 : 64;
		flush = xreallocarray(flush, flush_cap, sizeof(*flush));
	}
	flush[nflush++] = dirty_peer_key(p);
	p->flush_queued = 1;
}

void
dirty_peer_flush_all(struct dirty_peer *(*lookup)(uint64_t key))
{
	/* the list may grow while we flush (a closed worker fails calls) */
	for (size_t i = 0; i < nflush; i++) {
		struct dirty_peer *p = lookup(flush[i]);
		if (p != NULL) {
			p->flush_queued = 0;
			p->ops->flush(p);
		}
	}
	nflush = 0;
}
