/*
 * ip_allow.c — trusted-peer lists (contract: ip_allow.h).
 *
 * Owns: parsing a list of addresses and CIDR networks once, matching a
 * peer's binary address against it.  Never: resolves names, calls Python,
 * or allocates while matching.
 */
#include "ip_allow.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "settings.h"

static void
mask_addr(unsigned char *a, size_t len, int prefix)
{
	for (size_t i = 0; i < len; i++) {
		int bits = prefix - (int)i * 8;
		a[i] &= bits >= 8 ? 0xff : bits <= 0 ? 0 : (unsigned char)(0xff << (8 - bits));
	}
}

/* "addr" or "addr/bits" into n; 0, or -1 when it is neither (text). */
static int
parse_net(struct ip_net *n, const char *item)
{
	char buf[INET6_ADDRSTRLEN + 8], *slash, *end;
	long bits = -1;

	if (strlen(item) >= sizeof(buf))
		return -1;
	strcpy(buf, item);
	if ((slash = strchr(buf, '/')) != NULL) {
		*slash = '\0';
		errno = 0;
		bits = strtol(slash + 1, &end, 10);
		if (errno || end == slash + 1 || *end || bits < 0)
			return -1;
	}
	if (inet_pton(AF_INET, buf, n->addr) == 1) {
		if (bits > 32)
			return -1;
		n->family = AF_INET;
		n->prefix = bits < 0 ? 32 : (int)bits;
		mask_addr(n->addr, 4, n->prefix);
		return 0;
	}
	if (inet_pton(AF_INET6, buf, n->addr) == 1) {
		if (bits > 128)
			return -1;
		n->family = AF_INET6;
		n->prefix = bits < 0 ? 128 : (int)bits;
		mask_addr(n->addr, 16, n->prefix);
		return 0;
	}
	return -1;
}

void
ip_allow_init(struct ip_allow *a, const struct strlist *l)
{
	memset(a, 0, sizeof(*a));
	a->nets = xcalloc(l->len + 1, sizeof(*a->nets));
	for (size_t i = 0; i < l->len; i++) {
		struct ip_net *n = &a->nets[a->n++];

		if (strcmp(l->items[i], "*") == 0)
			a->all = 1;
		n->text = l->items[i];
		if (parse_net(n, n->text) == -1) {
			memset(n->addr, 0, sizeof(n->addr));
			n->family = 0;
			a->has_text = 1;
		}
	}
}

void
ip_allow_free(struct ip_allow *a)
{
	free(a->nets);
	memset(a, 0, sizeof(*a));
}

static int
addr_in_net(const unsigned char *addr, const struct ip_net *n)
{
	int full = n->prefix / 8, rest = n->prefix % 8;

	if (memcmp(addr, n->addr, (size_t)full) != 0)
		return 0;
	return rest == 0 ||
	    (addr[full] & (unsigned char)(0xff << (8 - rest))) == n->addr[full];
}

int
ip_allow_match(const struct ip_allow *a, const struct sockaddr_storage *peer)
{
	const unsigned char *addr;
	char text[INET6_ADDRSTRLEN];
	int family = peer->ss_family;

	if (a->all)
		return 1;
	if (family == AF_INET)
		addr = (const unsigned char *)&((const struct sockaddr_in *)peer)->sin_addr;
	else if (family == AF_INET6)
		addr = ((const struct sockaddr_in6 *)peer)->sin6_addr.s6_addr;
	else if (family == AF_UNIX)
		return 1;	/* a unix socket's peer: no address to check */
	else
		return 0;	/* unknown: not trusted */
	text[0] = '\0';
	if (a->has_text && inet_ntop(family, addr, text, sizeof(text)) == NULL)
		text[0] = '\0';
	for (size_t i = 0; i < a->n; i++) {
		const struct ip_net *n = &a->nets[i];
		if (n->family == 0 ? text[0] != '\0' && strcmp(n->text, text) == 0 :
		    n->family == family && addr_in_net(addr, n))
			return 1;
	}
	return 0;
}
