/*
 * proxy_proto.h — the PROXY protocol preamble (HAProxy's spec, versions 1
 * and 2) that a load balancer in TCP mode (HAProxy, AWS NLB, ...) sends
 * before the first request of a connection to say whose it is.
 *
 * A pure decoder over the bytes read so far: no socket, no allocation,
 * nothing kept between calls.  The connection layer (http_conn.c) runs it
 * on a connection's first bytes when the proxy_protocol setting asks for
 * it, checks the peer against proxy_allow_ips, and drops the preamble
 * from the buffer.
 *
 * Bounds: a v1 line is at most 107 bytes with its CRLF (the spec's
 * maximum); a v2 header at most PROXY_V2_MAX bytes (16 + addresses and
 * TLVs; the spec allows 64 KiB, load balancers send a few hundred).
 * Longer is malformed, never waited for.
 */
#ifndef CUNICORN_PROXY_PROTO_H
#define CUNICORN_PROXY_PROTO_H

#include <stddef.h>
#include <sys/socket.h>

#define PROXY_V1_MAX	107
#define PROXY_V2_MAX	(16 + 4096)

/* The proxy_protocol setting: which preambles are looked for. */
enum proxy_mode {
	PROXY_MODE_OFF = 0,
	PROXY_MODE_V1 = 1,
	PROXY_MODE_V2 = 2,
	PROXY_MODE_AUTO = 3,	/* either */
};

/* "off", "v1", "v2", "auto", or a boolean as gunicorn takes it ("true",
 * "1", "yes": auto; "false", "0", "no", "none", "": off), without case;
 * -1 for anything else. */
int proxy_mode_parse(const char *s);

/* What a preamble said. */
enum proxy_kind {
	PROXY_NONE = 0,		/* no preamble on this connection */
	PROXY_TCP4,		/* src/dst hold the client's and the proxy's addresses */
	PROXY_TCP6,
	PROXY_UNKNOWN,		/* v1 UNKNOWN, v2 without usable addresses:
				   the connection's own peer stands */
	PROXY_LOCAL,		/* v2 LOCAL: the proxy's own connection
				   (a health check); its peer stands */
};

struct proxy_info {
	int kind;			/* enum proxy_kind */
	int version;			/* 1 or 2 */
	struct sockaddr_storage src;	/* TCP4/TCP6: the client */
	struct sockaddr_storage dst;	/* TCP4/TCP6: the address it reached */
};

/* PROXY_KIND's name as gunicorn's PROXY_PROTOCOL environ value gives it:
 * "TCP4", "TCP6", "UNKNOWN", "LOCAL"; NULL for PROXY_NONE. */
const char *proxy_kind_name(int kind);

enum proxy_result {
	PROXY_ABSENT,		/* these bytes do not start a preamble */
	PROXY_MORE,		/* they may: more bytes are needed to tell or finish */
	PROXY_FOUND,		/* a preamble starts here (proxy_sniff) */
	PROXY_OK,		/* *info filled, *used bytes are the preamble */
	PROXY_BAD,		/* a malformed preamble; *why says how */
};

/* Does buf[0..len) start with a preamble mode looks for?  PROXY_ABSENT,
 * PROXY_MORE (a prefix of a signature, too short to tell) or PROXY_FOUND
 * (*version set). */
int proxy_sniff(const char *buf, size_t len, int mode, int *version);

/* Decode the preamble at buf[0..len) (proxy_sniff found it): PROXY_OK,
 * PROXY_MORE (incomplete, within the bounds) or PROXY_BAD. */
int proxy_parse(const char *buf, size_t len, int version, struct proxy_info *info,
    size_t *used, const char **why);

#endif
