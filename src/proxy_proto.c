/*
 * proxy_proto.c — the PROXY protocol preamble decoder (contract:
 * proxy_proto.h).
 *
 * Owns: recognising a v1 line or a v2 header at the start of a
 * connection's bytes and decoding the addresses it carries.  Never: reads
 * a socket, allocates, trusts a length it has not bounded, or decides
 * whether the peer may send a preamble (http_conn.c does, with
 * proxy_allow_ips).
 */
#include "proxy_proto.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <strings.h>

static const char V1_SIG[] = "PROXY ";
#define V1_SIG_LEN	6
static const char V2_SIG[] = "\r\n\r\n\0\r\nQUIT\n";
#define V2_SIG_LEN	12

int
proxy_mode_parse(const char *s)
{
	static const char *const off[] = { "off", "false", "0", "no", "none", "", NULL };
	static const char *const on[] = { "auto", "true", "1", "yes", NULL };

	if (s == NULL)
		return PROXY_MODE_OFF;
	for (size_t i = 0; off[i] != NULL; i++)
		if (strcasecmp(s, off[i]) == 0)
			return PROXY_MODE_OFF;
	for (size_t i = 0; on[i] != NULL; i++)
		if (strcasecmp(s, on[i]) == 0)
			return PROXY_MODE_AUTO;
	if (strcasecmp(s, "v1") == 0)
		return PROXY_MODE_V1;
	if (strcasecmp(s, "v2") == 0)
		return PROXY_MODE_V2;
	return -1;
}

const char *
proxy_kind_name(int kind)
{
	switch (kind) {
	case PROXY_TCP4:
		return "TCP4";
	case PROXY_TCP6:
		return "TCP6";
	case PROXY_UNKNOWN:
		return "UNKNOWN";
	case PROXY_LOCAL:
		return "LOCAL";
	default:
		return NULL;
	}
}

/* buf[0..len) against sig: 1 all of sig is there, 0 a prefix of it (too
 * short to tell), -1 not it. */
static int
sig_match(const char *buf, size_t len, const char *sig, size_t siglen)
{
	size_t n = len < siglen ? len : siglen;

	if (memcmp(buf, sig, n) != 0)
		return -1;
	return len >= siglen ? 1 : 0;
}

int
proxy_sniff(const char *buf, size_t len, int mode, int *version)
{
	int more = 0, m;

	if (mode & PROXY_MODE_V2) {
		if ((m = sig_match(buf, len, V2_SIG, V2_SIG_LEN)) == 1) {
			*version = 2;
			return PROXY_FOUND;
		}
		more |= m == 0;
	}
	if (mode & PROXY_MODE_V1) {
		if ((m = sig_match(buf, len, V1_SIG, V1_SIG_LEN)) == 1) {
			*version = 1;
			return PROXY_FOUND;
		}
		more |= m == 0;
	}
	return more ? PROXY_MORE : PROXY_ABSENT;
}

/* ---- version 1: "PROXY TCP4 src dst sport dport\r\n" ---- */

/* A decimal port, 0..65535, 1 to 5 digits. */
static int
v1_port(const char *s, size_t n, unsigned *port)
{
	unsigned v = 0;

	if (n == 0 || n > 5)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v > 65535)
		return -1;
	*port = v;
	return 0;
}

static int
v1_addr(const char *s, size_t n, int family, unsigned port, struct sockaddr_storage *out)
{
	char text[INET6_ADDRSTRLEN];

	if (n == 0 || n >= sizeof(text))
		return -1;
	memcpy(text, s, n);
	text[n] = '\0';
	memset(out, 0, sizeof(*out));
	if (family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)out;
		if (inet_pton(AF_INET, text, &in->sin_addr) != 1)
			return -1;
		in->sin_family = AF_INET;
		in->sin_port = htons((unsigned short)port);
	} else {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)out;
		if (inet_pton(AF_INET6, text, &in6->sin6_addr) != 1)
			return -1;
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((unsigned short)port);
	}
	return 0;
}

static int
parse_v1(const char *buf, size_t len, struct proxy_info *info, size_t *used,
    const char **why)
{
	size_t scan = len < PROXY_V1_MAX ? len : PROXY_V1_MAX;
	const char *nl = memchr(buf, '\n', scan), *tok[6], *p, *end;
	size_t toklen[6], ntok = 0;
	unsigned sport, dport;
	int family;

	if (nl == NULL) {
		if (len >= PROXY_V1_MAX) {
			*why = "Invalid PROXY line: longer than 107 bytes";
			return PROXY_BAD;
		}
		return PROXY_MORE;
	}
	if (nl == buf || nl[-1] != '\r') {
		*why = "Invalid PROXY line: not ended by CRLF";
		return PROXY_BAD;
	}
	end = nl - 1;
	for (p = buf; p < end; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f) {
			*why = "Invalid PROXY line: a control character";
			return PROXY_BAD;
		}
	/* "PROXY UNKNOWN", then anything up to the CRLF (the spec: ignored) */
	if ((size_t)(end - buf) >= 13 && memcmp(buf + 6, "UNKNOWN", 7) == 0 &&
	    (end - buf == 13 || buf[13] == ' ')) {
		memset(info, 0, sizeof(*info));
		info->kind = PROXY_UNKNOWN;
		info->version = 1;
		*used = (size_t)(nl + 1 - buf);
		return PROXY_OK;
	}
	/* else exactly six words between single spaces */
	for (p = buf; ntok < 6; ntok++) {
		const char *sp = memchr(p, ' ', (size_t)(end - p));
		tok[ntok] = p;
		toklen[ntok] = (size_t)((sp ? sp : end) - p);
		if (sp == NULL) {
			ntok++;
			break;
		}
		p = sp + 1;
	}
	if (ntok != 6 || tok[5] + toklen[5] != end) {
		*why = "Invalid PROXY line: expected PROXY TCP4|TCP6 SRC DST SPORT DPORT";
		return PROXY_BAD;
	}
	if (toklen[1] == 4 && memcmp(tok[1], "TCP4", 4) == 0)
		family = AF_INET;
	else if (toklen[1] == 4 && memcmp(tok[1], "TCP6", 4) == 0)
		family = AF_INET6;
	else {
		*why = "Invalid PROXY line: protocol not TCP4, TCP6 or UNKNOWN";
		return PROXY_BAD;
	}
	if (v1_port(tok[4], toklen[4], &sport) == -1 || v1_port(tok[5], toklen[5], &dport) == -1) {
		*why = "Invalid PROXY line: bad port";
		return PROXY_BAD;
	}
	memset(info, 0, sizeof(*info));
	if (v1_addr(tok[2], toklen[2], family, sport, &info->src) == -1 ||
	    v1_addr(tok[3], toklen[3], family, dport, &info->dst) == -1) {
		*why = "Invalid PROXY line: bad address";
		return PROXY_BAD;
	}
	info->kind = family == AF_INET ? PROXY_TCP4 : PROXY_TCP6;
	info->version = 1;
	*used = (size_t)(nl + 1 - buf);
	return PROXY_OK;
}

/* ---- version 2: a 16-byte header, then addresses and TLVs ---- */

static unsigned
be16(const unsigned char *p)
{
	return (unsigned)p[0] << 8 | p[1];
}

static int
parse_v2(const char *buf, size_t len, struct proxy_info *info, size_t *used,
    const char **why)
{
	const unsigned char *b = (const unsigned char *)buf;
	size_t total;
	int family, proto, cmd;

	if (len < 16)
		return PROXY_MORE;
	if ((b[12] >> 4) != 2) {
		*why = "Invalid PROXY header: version not 2";
		return PROXY_BAD;
	}
	cmd = b[12] & 0x0f;
	if (cmd != 0 && cmd != 1) {
		*why = "Invalid PROXY header: command neither LOCAL nor PROXY";
		return PROXY_BAD;
	}
	total = 16 + (size_t)be16(b + 14);
	if (total > PROXY_V2_MAX) {
		*why = "Invalid PROXY header: longer than 4112 bytes";
		return PROXY_BAD;
	}
	if (len < total)
		return PROXY_MORE;
	memset(info, 0, sizeof(*info));
	info->version = 2;
	*used = total;
	if (cmd == 0) {			/* LOCAL: the addresses are not a client's */
		info->kind = PROXY_LOCAL;
		return PROXY_OK;
	}
	family = b[13] >> 4;
	proto = b[13] & 0x0f;
	if (family == 0 || family == 3) {	/* UNSPEC, UNIX: no usable address */
		info->kind = PROXY_UNKNOWN;
		return PROXY_OK;
	}
	if (family != 1 && family != 2) {
		*why = "Invalid PROXY header: unknown address family";
		return PROXY_BAD;
	}
	if (proto != 1) {
		*why = "Invalid PROXY header: not a stream (TCP) connection";
		return PROXY_BAD;
	}
	if (family == 1) {
		struct sockaddr_in *s = (struct sockaddr_in *)&info->src;
		struct sockaddr_in *d = (struct sockaddr_in *)&info->dst;
		if (total < 16 + 12) {
			*why = "Invalid PROXY header: short IPv4 addresses";
			return PROXY_BAD;
		}
		s->sin_family = d->sin_family = AF_INET;
		memcpy(&s->sin_addr, b + 16, 4);
		memcpy(&d->sin_addr, b + 20, 4);
		memcpy(&s->sin_port, b + 24, 2);	/* both in network order */
		memcpy(&d->sin_port, b + 26, 2);
		info->kind = PROXY_TCP4;
	} else {
		struct sockaddr_in6 *s = (struct sockaddr_in6 *)&info->src;
		struct sockaddr_in6 *d = (struct sockaddr_in6 *)&info->dst;
		if (total < 16 + 36) {
			*why = "Invalid PROXY header: short IPv6 addresses";
			return PROXY_BAD;
		}
		s->sin6_family = d->sin6_family = AF_INET6;
		memcpy(&s->sin6_addr, b + 16, 16);
		memcpy(&d->sin6_addr, b + 32, 16);
		memcpy(&s->sin6_port, b + 48, 2);
		memcpy(&d->sin6_port, b + 50, 2);
		info->kind = PROXY_TCP6;
	}
	return PROXY_OK;
}

int
proxy_parse(const char *buf, size_t len, int version, struct proxy_info *info,
    size_t *used, const char **why)
{
	*used = 0;
	*why = NULL;
	return version == 2 ? parse_v2(buf, len, info, used, why) :
	    parse_v1(buf, len, info, used, why);
}
