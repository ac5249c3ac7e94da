/*
 * ip_allow.h — a list of trusted peers, as gunicorn's forwarded_allow_ips
 * and proxy_allow_ips settings give it: addresses, CIDR networks
 * ("10.0.0.0/8", "::1/128"), or "*" for every peer.
 *
 * Parsed once from the setting (ip_allow_init), then read-only: any thread
 * may match against it.  No Python, no allocation after init.
 */
#ifndef CUNICORN_IP_ALLOW_H
#define CUNICORN_IP_ALLOW_H

#include <stddef.h>
#include <sys/socket.h>

struct strlist;

struct ip_net {
	int family;			/* AF_INET, AF_INET6; 0: compared as text */
	int prefix;			/* network bits */
	unsigned char addr[16];		/* host bits cleared */
	const char *text;		/* the setting's item (borrowed) */
};

struct ip_allow {
	int all;			/* "*" was given */
	int has_text;			/* some items are neither address nor network */
	struct ip_net *nets;		/* owned */
	size_t n;
};

/* Parse l (borrowed: its items must outlive a).  An item that is neither
 * an address nor a network is kept and compared with the peer's printed
 * address, as gunicorn compares strings. */
void ip_allow_init(struct ip_allow *a, const struct strlist *l);
void ip_allow_free(struct ip_allow *a);

/* Is peer in the list?  A unix-socket peer (no address) always is, as in
 * gunicorn, where only a (host, port) peer is checked; a peer of any other
 * family (AF_UNSPEC: unknown) never is, unless the list has '*'. */
int ip_allow_match(const struct ip_allow *a, const struct sockaddr_storage *peer);

#endif
