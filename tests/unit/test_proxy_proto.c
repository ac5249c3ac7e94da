/*
 * test_proxy_proto.c — the PROXY protocol preamble decoder
 * (src/proxy_proto.c) and the trusted-peer lists (src/ip_allow.c).
 *
 * Valid v1 lines and v2 headers decode to the addresses they carry, at
 * every split point (each shorter prefix asks for more, never decodes or
 * fails); every malformed form is refused with a reason and never read
 * past its bound; sniffing tells a preamble from a request at the first
 * differing byte; the setting's spellings parse; allow lists match
 * addresses, networks, '*' and unix peers.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ip_allow.h"
#include "proxy_proto.h"
#include "settings.h"

static const char V2_SIG[12] = "\r\n\r\n\0\r\nQUIT\n";

/* A v2 header: signature, ver/cmd, family/proto, length, body. */
static size_t
v2(char *out, int ver, int cmd, int fam, const void *body, size_t n)
{
	memcpy(out, V2_SIG, 12);
	out[12] = (char)(ver << 4 | cmd);
	out[13] = (char)fam;
	out[14] = (char)(n >> 8);
	out[15] = (char)(n & 0xff);
	memcpy(out + 16, body, n);
	return 16 + n;
}

static void
text_of(const struct sockaddr_storage *ss, char *buf, size_t len, int *port)
{
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
		inet_ntop(AF_INET, &in->sin_addr, buf, (socklen_t)len);
		*port = ntohs(in->sin_port);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
		inet_ntop(AF_INET6, &in6->sin6_addr, buf, (socklen_t)len);
		*port = ntohs(in6->sin6_port);
	} else {
		buf[0] = '\0';
		*port = -1;
	}
}

/* Decode pre (+ trailing request bytes): every shorter prefix is MORE
 * (sniff or parse), the whole is OK and uses exactly plen bytes. */
static void
check_ok(const char *pre, size_t plen, int mode, int kind, const char *src,
    int sport, const char *dst, int dport)
{
	char buf[8192], text[64];
	struct proxy_info info;
	const char *why;
	size_t used;
	int version = 0, port;

	memcpy(buf, pre, plen);
	memcpy(buf + plen, "GET / HTTP/1.1\r\n\r\n", 18);
	for (size_t n = 0; n < plen; n++) {
		int r = proxy_sniff(buf, n, mode, &version);
		if (r == PROXY_FOUND)
			r = proxy_parse(buf, n, version, &info, &used, &why);
		CHECK_MSG(r == PROXY_MORE, "prefix %zu of %.20s: %d", n, pre, r);
	}
	CHECK(proxy_sniff(buf, plen + 18, mode, &version) == PROXY_FOUND);
	int r = proxy_parse(buf, plen + 18, version, &info, &used, &why);
	CHECK_MSG(r == PROXY_OK, "%.30s: %d %s", pre, r, why ? why : "");
	if (r != PROXY_OK)
		return;
	CHECK(used == plen);
	CHECK(info.kind == kind);
	if (src != NULL) {
		text_of(&info.src, text, sizeof(text), &port);
		CHECK_STR(text, src);
		CHECK(port == sport);
		text_of(&info.dst, text, sizeof(text), &port);
		CHECK_STR(text, dst);
		CHECK(port == dport);
	}
}

static void
check_bad(const char *pre, size_t plen, const char *reason)
{
	struct proxy_info info;
	const char *why = NULL;
	size_t used = 0;
	int version = 0;

	CHECK_MSG(proxy_sniff(pre, plen, PROXY_MODE_AUTO, &version) == PROXY_FOUND,
	    "not sniffed: %.20s", pre);
	int r = proxy_parse(pre, plen, version, &info, &used, &why);
	CHECK_MSG(r == PROXY_BAD && why != NULL && strstr(why, reason) != NULL,
	    "%.40s: %d (%s), want %s", pre, r, why ? why : "-", reason);
}

static void
check_bad_text(const char *line, const char *reason)
{
	check_bad(line, strlen(line), reason);
}

static void
test_v1(void)
{
	const char *l;

	l = "PROXY TCP4 192.0.2.7 198.51.100.1 40001 443\r\n";
	check_ok(l, strlen(l), PROXY_MODE_AUTO, PROXY_TCP4, "192.0.2.7", 40001,
	    "198.51.100.1", 443);
	check_ok(l, strlen(l), PROXY_MODE_V1, PROXY_TCP4, "192.0.2.7", 40001,
	    "198.51.100.1", 443);
	l = "PROXY TCP6 2001:db8::5 ::1 0 65535\r\n";
	check_ok(l, strlen(l), PROXY_MODE_AUTO, PROXY_TCP6, "2001:db8::5", 0, "::1", 65535);
	l = "PROXY UNKNOWN\r\n";
	check_ok(l, strlen(l), PROXY_MODE_AUTO, PROXY_UNKNOWN, NULL, 0, NULL, 0);
	l = "PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n";
	check_ok(l, strlen(l), PROXY_MODE_AUTO, PROXY_UNKNOWN, NULL, 0, NULL, 0);
	/* the longest valid line: 107 bytes */
	char longest[128];
	snprintf(longest, sizeof(longest), "PROXY TCP6 %s %s 65535 65535\r\n",
	    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
	    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
	CHECK(strlen(longest) == PROXY_V1_MAX - 3);	/* with "PROXY UNKNOWN" padding: 107 */
	check_ok(longest, strlen(longest), PROXY_MODE_AUTO, PROXY_TCP6,
	    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535,
	    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
	char unknown107[PROXY_V1_MAX + 1];
	memset(unknown107, 'x', sizeof(unknown107));
	memcpy(unknown107, "PROXY UNKNOWN ", 14);
	memcpy(unknown107 + PROXY_V1_MAX - 2, "\r\n", 2);
	check_ok(unknown107, PROXY_V1_MAX, PROXY_MODE_AUTO, PROXY_UNKNOWN, NULL, 0, NULL, 0);

	check_bad_text("PROXY TCP4 192.0.2.7 198.51.100.1 40001 65536\r\n", "bad port");
	check_bad_text("PROXY TCP4 192.0.2.7 198.51.100.1 4a001 443\r\n", "bad port");
	check_bad_text("PROXY TCP4 192.0.2.7 198.51.100.1 400010 443\r\n", "bad port");
	check_bad_text("PROXY TCP4 192.0.2.7 198.51.100.1 -1 443\r\n", "bad port");
	check_bad_text("PROXY TCP4 192.0.2.7 198.51.100.1 40001 443 \r\n", "expected");
	check_bad_text("PROXY TCP4 192.0.2.7 198.51.100.1 40001\r\n", "expected");
	check_bad_text("PROXY TCP4 192.0.2.7  198.51.100.1 40001 443\r\n", "expected");
	check_bad_text("PROXY TCP4 2001:db8::1 198.51.100.1 1 2\r\n", "bad address");
	check_bad_text("PROXY TCP6 192.0.2.7 ::1 1 2\r\n", "bad address");
	check_bad_text("PROXY TCP4 192.0.2.7x 198.51.100.1 1 2\r\n", "bad address");
	check_bad_text("PROXY tcp4 192.0.2.7 198.51.100.1 1 2\r\n", "protocol");
	check_bad_text("PROXY UNKNOWNX\r\n", "expected");
	check_bad_text("PROXY TCP4 192.0.2.7 198.51.100.1 1 2\n", "CRLF");
	check_bad_text("PROXY \n", "CRLF");
	check_bad("PROXY TCP4 192.0.2.7\0zz 198.51.100.1 1 2\r\n", 42, "control character");
	check_bad_text("PROXY UNKNOWN \x01\r\n", "control character");
	check_bad_text("PROXY TCP4 192.0.2.7\t198.51.100.1 1 2\r\n", "control character");
	check_bad_text("PROXY \r\n", "expected");
	/* no LF within 107 bytes: refused at 107, never waited for beyond */
	char big[200];
	memset(big, 'A', sizeof(big));
	memcpy(big, "PROXY ", 6);
	check_bad(big, PROXY_V1_MAX, "longer than 107");
	check_bad(big, sizeof(big), "longer than 107");
	struct proxy_info info;
	const char *why;
	size_t used;
	CHECK(proxy_parse(big, PROXY_V1_MAX - 1, 1, &info, &used, &why) == PROXY_MORE);
	/* a LF just past the bound does not count */
	big[PROXY_V1_MAX - 1] = '\r';
	big[PROXY_V1_MAX] = '\n';
	check_bad(big, PROXY_V1_MAX + 1, "longer than 107");
}

static void
test_v2(void)
{
	char h[PROXY_V2_MAX + 64];
	unsigned char a4[12] = { 192, 0, 2, 7, 198, 51, 100, 1, 0x9c, 0x41, 0x01, 0xbb };
	unsigned char a6[36 + 8] = { 0 };
	size_t n;

	n = v2(h, 2, 1, 0x11, a4, sizeof(a4));
	check_ok(h, n, PROXY_MODE_AUTO, PROXY_TCP4, "192.0.2.7", 40001, "198.51.100.1", 443);
	check_ok(h, n, PROXY_MODE_V2, PROXY_TCP4, "192.0.2.7", 40001, "198.51.100.1", 443);
	a6[15] = 1;			/* src ::1 */
	a6[16] = 0x20; a6[17] = 0x01; a6[18] = 0x0d; a6[19] = 0xb8; a6[31] = 2;
	a6[32] = 0x00; a6[33] = 0x50; a6[34] = 0x01; a6[35] = 0xbb;
	memcpy(a6 + 36, "\x04\x00\x05hello", 8);	/* a TLV, skipped */
	n = v2(h, 2, 1, 0x21, a6, sizeof(a6));
	check_ok(h, n, PROXY_MODE_AUTO, PROXY_TCP6, "::1", 80, "2001:db8::2", 443);
	n = v2(h, 2, 0, 0x11, a4, sizeof(a4));		/* LOCAL */
	check_ok(h, n, PROXY_MODE_AUTO, PROXY_LOCAL, NULL, 0, NULL, 0);
	n = v2(h, 2, 0, 0x00, "", 0);			/* LOCAL, nothing */
	check_ok(h, n, PROXY_MODE_AUTO, PROXY_LOCAL, NULL, 0, NULL, 0);
	n = v2(h, 2, 1, 0x00, "", 0);			/* PROXY, UNSPEC */
	check_ok(h, n, PROXY_MODE_AUTO, PROXY_UNKNOWN, NULL, 0, NULL, 0);
	char unixaddr[216] = { 0 };
	n = v2(h, 2, 1, 0x31, unixaddr, sizeof(unixaddr));	/* unix: no usable address */
	check_ok(h, n, PROXY_MODE_AUTO, PROXY_UNKNOWN, NULL, 0, NULL, 0);
	/* the largest accepted: 4096 bytes after the header */
	static char body[4096];
	memcpy(body, a4, sizeof(a4));
	n = v2(h, 2, 1, 0x11, body, sizeof(body));
	CHECK(n == PROXY_V2_MAX);
	check_ok(h, n, PROXY_MODE_AUTO, PROXY_TCP4, "192.0.2.7", 40001, "198.51.100.1", 443);

	n = v2(h, 1, 1, 0x11, a4, sizeof(a4));
	check_bad(h, n, "version not 2");
	n = v2(h, 3, 1, 0x11, a4, sizeof(a4));
	check_bad(h, n, "version not 2");
	n = v2(h, 2, 2, 0x11, a4, sizeof(a4));
	check_bad(h, n, "command");
	n = v2(h, 2, 1, 0x12, a4, sizeof(a4));
	check_bad(h, n, "not a stream");
	n = v2(h, 2, 1, 0x10, a4, sizeof(a4));
	check_bad(h, n, "not a stream");
	n = v2(h, 2, 1, 0x11, a4, 11);
	check_bad(h, n, "short IPv4");
	n = v2(h, 2, 1, 0x21, a6, 35);
	check_bad(h, n, "short IPv6");
	n = v2(h, 2, 1, 0x41, a4, sizeof(a4));
	check_bad(h, n, "unknown address family");
	/* a length over the bound: refused from the 16 header bytes alone */
	n = v2(h, 2, 1, 0x11, a4, sizeof(a4));
	h[14] = (char)0x10;
	h[15] = (char)0x01;			/* 4097 */
	check_bad(h, 16, "longer than 4112");
	h[14] = h[15] = (char)0xff;
	check_bad(h, 16, "longer than 4112");
}

static void
test_sniff(void)
{
	int v = 0;

	CHECK(proxy_sniff("", 0, PROXY_MODE_AUTO, &v) == PROXY_MORE);
	CHECK(proxy_sniff("P", 1, PROXY_MODE_AUTO, &v) == PROXY_MORE);
	CHECK(proxy_sniff("PROXY", 5, PROXY_MODE_AUTO, &v) == PROXY_MORE);
	CHECK(proxy_sniff("PROXY ", 6, PROXY_MODE_AUTO, &v) == PROXY_FOUND && v == 1);
	CHECK(proxy_sniff("PROXYX", 6, PROXY_MODE_AUTO, &v) == PROXY_ABSENT);
	CHECK(proxy_sniff("G", 1, PROXY_MODE_AUTO, &v) == PROXY_ABSENT);
	CHECK(proxy_sniff("GET / HTTP/1.1\r\n", 16, PROXY_MODE_AUTO, &v) == PROXY_ABSENT);
	CHECK(proxy_sniff("\r\n\r\n", 4, PROXY_MODE_AUTO, &v) == PROXY_MORE);
	CHECK(proxy_sniff(V2_SIG, 12, PROXY_MODE_AUTO, &v) == PROXY_FOUND && v == 2);
	CHECK(proxy_sniff("\r\n\r\n\0\r\nQUIT\r", 12, PROXY_MODE_AUTO, &v) == PROXY_ABSENT);
	/* each mode looks only for its own */
	CHECK(proxy_sniff("PROXY ", 6, PROXY_MODE_V2, &v) == PROXY_ABSENT);
	CHECK(proxy_sniff(V2_SIG, 12, PROXY_MODE_V1, &v) == PROXY_ABSENT);
	CHECK(proxy_sniff("\r\n", 2, PROXY_MODE_V1, &v) == PROXY_ABSENT);
	CHECK(proxy_sniff("PRO", 3, PROXY_MODE_V2, &v) == PROXY_ABSENT);
	CHECK(proxy_sniff("PROXY ", 6, PROXY_MODE_OFF, &v) == PROXY_ABSENT);
}

static void
test_mode_parse(void)
{
	CHECK(proxy_mode_parse(NULL) == PROXY_MODE_OFF);
	CHECK(proxy_mode_parse("off") == PROXY_MODE_OFF);
	CHECK(proxy_mode_parse("False") == PROXY_MODE_OFF);
	CHECK(proxy_mode_parse("none") == PROXY_MODE_OFF);
	CHECK(proxy_mode_parse("") == PROXY_MODE_OFF);
	CHECK(proxy_mode_parse("auto") == PROXY_MODE_AUTO);
	CHECK(proxy_mode_parse("True") == PROXY_MODE_AUTO);
	CHECK(proxy_mode_parse("1") == PROXY_MODE_AUTO);
	CHECK(proxy_mode_parse("V1") == PROXY_MODE_V1);
	CHECK(proxy_mode_parse("v2") == PROXY_MODE_V2);
	CHECK(proxy_mode_parse("v3") == -1);
	CHECK(proxy_mode_parse("autox") == -1);
	CHECK_STR(proxy_kind_name(PROXY_TCP4), "TCP4");
	CHECK_STR(proxy_kind_name(PROXY_LOCAL), "LOCAL");
	CHECK(proxy_kind_name(PROXY_NONE) == NULL);
}

static struct sockaddr_storage
addr(const char *text)
{
	struct sockaddr_storage ss;

	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, text, &((struct sockaddr_in *)&ss)->sin_addr) == 1)
		ss.ss_family = AF_INET;
	else if (inet_pton(AF_INET6, text, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1)
		ss.ss_family = AF_INET6;
	else
		ss.ss_family = AF_UNIX;
	return ss;
}

static int
allowed(const char *list, const char *peer)
{
	char copy[256], *items[16], *save = NULL;
	struct strlist l = { items, 0 };
	struct ip_allow a;
	struct sockaddr_storage ss = addr(peer);

	snprintf(copy, sizeof(copy), "%s", list);
	for (char *t = strtok_r(copy, ",", &save); t && l.len < 16; t = strtok_r(NULL, ",", &save))
		items[l.len++] = t;
	ip_allow_init(&a, &l);
	int r = ip_allow_match(&a, &ss);
	ip_allow_free(&a);
	return r;
}

static void
test_allow(void)
{
	CHECK(allowed("127.0.0.1,::1", "127.0.0.1"));
	CHECK(allowed("127.0.0.1,::1", "::1"));
	CHECK(!allowed("127.0.0.1,::1", "127.0.0.2"));
	CHECK(allowed("10.0.0.0/8", "10.255.1.2"));
	CHECK(!allowed("10.0.0.0/8", "11.0.0.1"));
	CHECK(allowed("10.1.2.3/8", "10.9.9.9"));		/* host bits masked */
	CHECK(allowed("192.0.2.128/25", "192.0.2.200"));
	CHECK(!allowed("192.0.2.128/25", "192.0.2.100"));
	CHECK(allowed("0.0.0.0/0", "203.0.113.1"));
	CHECK(!allowed("0.0.0.0/0", "2001:db8::1"));		/* families apart */
	CHECK(allowed("2001:db8::/32", "2001:db8:ffff::1"));
	CHECK(!allowed("2001:db8::/32", "2001:db9::1"));
	CHECK(!allowed("::ffff:0:0/96", "127.0.0.1"));	/* as Python's ipaddress */
	CHECK(allowed("::ffff:0:0/96", "::ffff:127.0.0.1"));
	CHECK(allowed("*", "203.0.113.1"));
	CHECK(allowed("10.0.0.1,*", "::2"));
	CHECK(allowed("10.0.0.1", "unix"));			/* a unix peer: no address */
	{
		/* an unknown peer (AF_UNSPEC): trusted by '*' only */
		char item[] = "10.0.0.1", star[] = "*", *items[] = { item }, *stars[] = { star };
		struct strlist l = { items, 1 }, all = { stars, 1 };
		struct sockaddr_storage ss;
		struct ip_allow a;
		memset(&ss, 0, sizeof(ss));
		ip_allow_init(&a, &l);
		CHECK(!ip_allow_match(&a, &ss));
		ip_allow_free(&a);
		ip_allow_init(&a, &all);
		CHECK(ip_allow_match(&a, &ss));
		ip_allow_free(&a);
	}
	CHECK(!allowed("10.0.0.0/33,bogus,10.0.0.1/x", "10.0.0.1"));
	CHECK(allowed("bogus,10.0.0.1", "10.0.0.1"));
	CHECK(!allowed("", "10.0.0.1"));
}

int
main(void)
{
	test_v1();
	test_v2();
	test_sniff();
	test_mode_parse();
	test_allow();
	return check_summary("test_proxy_proto");
}
