/*
 * dirty_wire.h — the dirty protocol codec: the one implementation of the
 * wire format, used by the dirty arbiter (C only), the dirty worker and the
 * Python extension (_cunicorn_dirty).  Interoperable with gunicorn 25+.
 *
 * Frame: a 16-byte header, then a payload of `length` bytes.
 *
 *   offset size field
 *   0      2    magic 0x47 0x44 ("GD")
 *   2      1    version 0x01
 *   3      1    type (enum dirty_msg_type)
 *   4      4    payload length, unsigned big-endian, <= DIRTY_MAX_PAYLOAD
 *   8      8    request id, unsigned big-endian
 *
 * Payload: exactly one TLV value (END and STATUS requests may be empty).
 *
 *   type byte        body
 *   0x00 None        (nothing)
 *   0x01 Bool        1 byte, 0 or 1
 *   0x05 Int64       8 bytes, signed, big-endian
 *   0x06 Float64     8 bytes IEEE-754, big-endian
 *   0x10 Bytes       u32 BE length, then bytes      (length <= 64 MiB)
 *   0x11 String      u32 BE length, then UTF-8      (length <= 64 MiB)
 *   0x20 List        u32 BE count, then count values (<= 1,048,576)
 *   0x21 Dict        u32 BE count, then count (String key, value) pairs
 *
 * Payload dicts per message type:
 *   REQUEST  {"app_path": str, "action": str, "args": list, "kwargs": dict}
 *   RESPONSE {"result": value}      CHUNK {"data": value}      END (empty)
 *   ERROR    {"error": {"error_type": str, "message": str, "details": dict}}
 *   STASH    {"op": int, "table": str, "key"?: v, "value"?: v, "pattern"?: str}
 *            op: put 1 get 2 delete 3 keys 4 clear 5 info 6 ensure 7
 *                delete_table 8 tables 9 exists 10
 *   MANAGE   {"op": int, "count": int}   op: add 1, remove 2
 *   STATUS   request: empty or {}; reply: RESPONSE {"result": {...}}
 *
 * Compatibility notes: cancelling a call adds nothing to the protocol.  A
 * client abandons a call by closing its connection (the Python asyncio
 * client gives each stream its own connection for this); the arbiter then
 * tells the worker through memory they share (dirty.h, the cancel ring),
 * never with a frame, so gunicorn peers see the protocol unchanged.
 *
 * Decoding is bounded: every length and count is checked against what is
 * left in the buffer and against the maxima before anything is allocated
 * or skipped; nesting is limited to DIRTY_MAX_DEPTH; strings and dict keys
 * must be valid UTF-8; trailing bytes after the one value are an error.
 * Nothing here allocates while decoding.
 */
#ifndef CUNICORN_DIRTY_WIRE_H
#define CUNICORN_DIRTY_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define DIRTY_HEADER_SIZE	16
#define DIRTY_MAGIC0		0x47
#define DIRTY_MAGIC1		0x44
#define DIRTY_VERSION		0x01
#define DIRTY_MAX_PAYLOAD	(64u * 1024 * 1024)
#define DIRTY_MAX_BLOB		(64u * 1024 * 1024)	/* Bytes / String */
#define DIRTY_MAX_COUNT		(1024u * 1024)		/* List / Dict items */
#define DIRTY_MAX_DEPTH		32

enum dirty_msg_type {
	DIRTY_MSG_REQUEST = 0x01,
	DIRTY_MSG_RESPONSE = 0x02,
	DIRTY_MSG_ERROR = 0x03,
	DIRTY_MSG_CHUNK = 0x04,
	DIRTY_MSG_END = 0x05,
	DIRTY_MSG_STASH = 0x10,
	DIRTY_MSG_STATUS = 0x11,
	DIRTY_MSG_MANAGE = 0x12,
};

enum dirty_tlv_type {
	DIRTY_TLV_NONE = 0x00,
	DIRTY_TLV_BOOL = 0x01,
	DIRTY_TLV_INT64 = 0x05,
	DIRTY_TLV_FLOAT64 = 0x06,
	DIRTY_TLV_BYTES = 0x10,
	DIRTY_TLV_STRING = 0x11,
	DIRTY_TLV_LIST = 0x20,
	DIRTY_TLV_DICT = 0x21,
};

enum dirty_stash_op {
	DIRTY_STASH_PUT = 1, DIRTY_STASH_GET = 2, DIRTY_STASH_DELETE = 3,
	DIRTY_STASH_KEYS = 4, DIRTY_STASH_CLEAR = 5, DIRTY_STASH_INFO = 6,
	DIRTY_STASH_ENSURE = 7, DIRTY_STASH_DELETE_TABLE = 8,
	DIRTY_STASH_TABLES = 9, DIRTY_STASH_EXISTS = 10,
};

enum dirty_manage_op { DIRTY_MANAGE_ADD = 1, DIRTY_MANAGE_REMOVE = 2 };

/* The error_type strings of ERROR payloads. */
#define DIRTY_E_ERROR		"DirtyError"
#define DIRTY_E_TIMEOUT		"DirtyTimeoutError"
#define DIRTY_E_CONNECTION	"DirtyConnectionError"
#define DIRTY_E_WORKER		"DirtyWorkerError"
#define DIRTY_E_APP		"DirtyAppError"
#define DIRTY_E_APP_NOT_FOUND	"DirtyAppNotFoundError"
#define DIRTY_E_NO_WORKERS	"DirtyNoWorkersAvailableError"
#define DIRTY_E_PROTOCOL	"DirtyProtocolError"

struct dirty_header {
	uint8_t type;
	uint32_t length;
	uint64_t id;
};

/* Validate and decode a header (magic, version, known type, length <=
 * DIRTY_MAX_PAYLOAD).  Returns 0, or -1 with *why set to a static text. */
int dirty_header_decode(const uint8_t buf[DIRTY_HEADER_SIZE],
    struct dirty_header *h, const char **why);
void dirty_header_encode(uint8_t buf[DIRTY_HEADER_SIZE], uint8_t type,
    uint32_t length, uint64_t id);
/* Rewrite only the id field of an encoded header (the arbiter's routing). */
void dirty_header_set_id(uint8_t buf[DIRTY_HEADER_SIZE], uint64_t id);

/* ---- encoding: into the tree's one growable buffer (buf.h) ----
 * The codec's callers keep their names for it: `struct dirty_buf` is
 * `struct buf`, and dirty_buf_*() are buf_*() (aborts on OOM via
 * xrealloc). */
#define dirty_buf buf

static inline void dirty_buf_init(struct buf *b) { buf_init(b); }
static inline void dirty_buf_free(struct buf *b) { buf_free(b); }
static inline void dirty_buf_reset(struct buf *b) { buf_reset(b); }	/* len = 0, keeps memory */
static inline void dirty_buf_reserve(struct buf *b, size_t extra) { buf_reserve(b, extra); }
static inline void dirty_buf_append(struct buf *b, const void *p, size_t n) { buf_append(b, p, n); }
/* Drop the first n bytes (consumed input). */
static inline void dirty_buf_consume(struct buf *b, size_t n) { buf_consume(b, n); }

/* Start a frame (writes a header with length 0); returns its offset.
 * dirty_frame_end patches the length; returns -1 if payload too large. */
size_t dirty_frame_begin(struct dirty_buf *b, uint8_t type, uint64_t id);
int dirty_frame_end(struct dirty_buf *b, size_t frame_offset);

void dirty_put_none(struct dirty_buf *b);
void dirty_put_bool(struct dirty_buf *b, int v);
void dirty_put_int64(struct dirty_buf *b, int64_t v);
void dirty_put_float64(struct dirty_buf *b, double v);
void dirty_put_bytes(struct dirty_buf *b, const void *p, uint32_t n);
void dirty_put_string(struct dirty_buf *b, const char *s, uint32_t n);
void dirty_put_cstring(struct dirty_buf *b, const char *s);
void dirty_put_list(struct dirty_buf *b, uint32_t count);	/* then count values */
void dirty_put_dict(struct dirty_buf *b, uint32_t count);	/* then count key,value */

/* A whole ERROR frame: {"error": {"error_type", "message", "details": {}}} */
void dirty_put_error_frame(struct dirty_buf *b, uint64_t id,
    const char *error_type, const char *message);
/* The same with details: "traceback" and "exception_type" when
 * exception_type is non-NULL, then "app_path" and "action" when app_path
 * is non-NULL (counted strings, borrowed; message and traceback cut to
 * DIRTY_MAX_BLOB).  A frame that would exceed DIRTY_MAX_PAYLOAD is sent
 * as the plain form with the message "error too large". */
struct dirty_error_details {
	const char *traceback;
	size_t traceback_len;
	const char *exception_type;
	const char *app_path;
	size_t app_path_len;
	const char *action;
	size_t action_len;
};
void dirty_put_error_frame_details(struct dirty_buf *b, uint64_t id,
    const char *error_type, const char *message, size_t message_len,
    const struct dirty_error_details *d);

/* A dirty_apps entry, "module:Class" or "module:Class:N" (N: how many
 * dirty workers load the app).  Sets *path_len to the length of the
 * "module:Class" part (the REQUEST's app_path) and *limit to N, 0 without
 * one.  Returns 0, or -1 when malformed (no ':', an empty module or
 * class, N not a decimal 1..999999999 or another ':'): *path_len is then
 * the whole length and *limit 0.  The one parser of the settings check,
 * the arbiter and the dirty worker. */
int dirty_app_spec_split(const char *spec, size_t *path_len, int *limit);

/* ---- reading frames from a byte stream: the one reassembler ----
 *
 * A dirty_reader keeps the bytes of a stream that do not make a whole
 * frame yet, and hands out whole frames.  Filled one of two ways:
 *
 *   in place      dirty_reader_space() gives room at the end of its
 *                 buffer (enough for the rest of the frame being received
 *                 once its header is in); the caller reads into it and
 *                 calls dirty_reader_commit() with the count.
 *   from a chunk  the caller read into memory of its own (the arbiter's
 *                 one scratch buffer): dirty_reader_feed() borrows it, and
 *                 frames wholly inside it are handed out without a copy;
 *                 dirty_reader_keep() copies the unread rest before that
 *                 memory is reused.
 *
 * dirty_reader_next() returns 1 with the next whole frame (*h decoded,
 * *frame at its header, DIRTY_HEADER_SIZE + h->length bytes), 0 when more
 * bytes are needed, -1 when the next header is invalid (*why, static; the
 * reader stays at it: dirty_reader_peek() shows it; the stream cannot be
 * trusted any more).  A frame handed out stays valid until the reader is
 * next filled, kept, trimmed, reset or freed.  Bounded: nothing is
 * reserved for a frame before its header is validated (its length <=
 * DIRTY_MAX_PAYLOAD).  One owner, one thread; never does I/O.
 */
struct dirty_reader {
	struct buf held;	/* [pos, held.len): unread bytes kept */
	size_t pos;
	const uint8_t *chunk;	/* borrowed by dirty_reader_feed(), or NULL */
	size_t chunk_len, chunk_pos;
};

void	 dirty_reader_init(struct dirty_reader *r);
void	 dirty_reader_free(struct dirty_reader *r);
int	 dirty_reader_next(struct dirty_reader *r, struct dirty_header *h,
	    const uint8_t **frame, const char **why);
/* In place: room for at least min bytes (more when the frame being
 * received needs it); *room is the whole room at the returned pointer. */
uint8_t	*dirty_reader_space(struct dirty_reader *r, size_t min, size_t *room);
void	 dirty_reader_commit(struct dirty_reader *r, size_t n);
/* From a chunk (p borrowed until dirty_reader_keep()). */
void	 dirty_reader_feed(struct dirty_reader *r, const uint8_t *p, size_t n);
void	 dirty_reader_keep(struct dirty_reader *r);
/* The unread bytes (a partial frame, or a bad header). */
const uint8_t *dirty_reader_peek(const struct dirty_reader *r, size_t *len);
/* Drop every unread byte (the rest of a stream no longer trusted). */
void	 dirty_reader_reset(struct dirty_reader *r);
/* With nothing unread, release the buffer if it grew above keep bytes. */
void	 dirty_reader_trim(struct dirty_reader *r, size_t keep);

/* ---- decoding: a bounded cursor ---- */
struct dirty_cursor {
	const uint8_t *p;
	const uint8_t *end;
	int depth;		/* current nesting, bounded by DIRTY_MAX_DEPTH */
	const char *error;	/* static text of the first error, or NULL */
};

void dirty_cursor_init(struct dirty_cursor *c, const uint8_t *p, size_t len);
/* Peek the next value's type byte without consuming (-1 at end). */
int dirty_peek_type(const struct dirty_cursor *c);
/* Each reader checks the type byte and bounds; returns 0, or -1 and sets
 * c->error.  Strings are checked for valid UTF-8. */
int dirty_get_none(struct dirty_cursor *c);
int dirty_get_bool(struct dirty_cursor *c, int *v);
int dirty_get_int64(struct dirty_cursor *c, int64_t *v);
int dirty_get_float64(struct dirty_cursor *c, double *v);
int dirty_get_bytes(struct dirty_cursor *c, const uint8_t **p, uint32_t *n);
int dirty_get_string(struct dirty_cursor *c, const char **s, uint32_t *n);
/* Containers: read the count, then the caller reads the items and calls
 * dirty_leave() (which restores the depth). */
int dirty_get_list(struct dirty_cursor *c, uint32_t *count);
int dirty_get_dict(struct dirty_cursor *c, uint32_t *count);
void dirty_leave(struct dirty_cursor *c);
/* Skip one complete value of any type, validating it. */
int dirty_skip(struct dirty_cursor *c);
/* 0 when the cursor is exactly at the end, else -1 ("trailing bytes"). */
int dirty_end(struct dirty_cursor *c);

/* Validate a payload: exactly one well-formed value (or empty when
 * allow_empty).  Returns 0, or -1 with *why set. */
int dirty_validate(const uint8_t *p, size_t len, int allow_empty,
    const char **why);

/* In a payload that is a Dict, position *value at the value of key
 * (top level only).  Returns 0 found, 1 absent, -1 malformed (*why). */
int dirty_dict_lookup(const uint8_t *p, size_t len, const char *key,
    struct dirty_cursor *value, const char **why);

/* UTF-8 validity (strict: no overlongs, no surrogates, <= U+10FFFF). */
int dirty_utf8_valid(const uint8_t *s, size_t n);

#endif
