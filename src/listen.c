/*
 * listen.c — bind the HTTP listeners (see listen.h).
 *
 * Owns the listening sockets and the unix socket files it created.  Each
 * failure is logged as one line naming the address ("Connection in use:
 * ('127.0.0.1', 8000)" like gunicorn) and nothing is left open.
 */
#include "listen.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "settings.h"
#include "util.h"

/*
 * Listeners handed over by a previous master on SIGUSR2 (binary upgrade):
 * $GUNICORN_FD lists their numbers, as gunicorn's.  A bind entry whose
 * address matches one is served by it (never re-bound, so the port never
 * closes); the ones nobody asks for are closed.  listeners_rebind() (HUP)
 * puts duplicates of the current listeners there the same way.
 *
 * Only a listening stream socket (SO_ACCEPTCONN) of a family we serve is
 * taken: any other entry (a pipe, a file, a connected or datagram socket,
 * a number that is not open) fails the start with one line.  Taking it
 * and closing it as "matching no bind" once closed the error log and the
 * master's signal pipe, and the master busy-looped.
 */
#define MAX_INHERITED 64
static int inherited[MAX_INHERITED];
static size_t ninherited;

/* Why fd cannot be an inherited listener, or NULL when it can. */
static const char *
inherited_refusal(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int type, accepting;

	if (fcntl(fd, F_GETFD) == -1)
		return "is not an open descriptor";
	len = sizeof(type);
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == -1)
		return "is not a socket";
	if (type != SOCK_STREAM)
		return "is not a stream socket";
	len = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &len) == -1 ||
	    (ss.ss_family != AF_INET && ss.ss_family != AF_INET6 &&
	    ss.ss_family != AF_UNIX))
		return "is not an IPv4, IPv6 or unix socket";
	len = sizeof(accepting);
	if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) == -1 ||
	    !accepting)
		return "is not a listening socket";
	return NULL;
}

/*
 * The descriptors $GUNICORN_FD lists, into fds[] (at most MAX_INHERITED),
 * each checked by inherited_refusal().  0 (also when the variable is not
 * set), or -1 with the reason in why ("fd 5 is not a socket").
 */
static int
inherited_parse(int *fds, size_t *n, char *why, size_t whylen)
{
	const char *env = getenv("GUNICORN_FD");
	char *copy, *tok, *save = NULL;
	int rc = 0;

	*n = 0;
	if (env == NULL)
		return 0;
	copy = xstrdup(env);
	for (tok = strtok_r(copy, ",", &save); tok != NULL;
	    tok = strtok_r(NULL, ",", &save)) {
		const char *refusal;
		char *end;
		long fd = strtol(tok, &end, 10);

		if (*tok == '\0' || *end != '\0' || fd < 3 || fd > 65535) {
			snprintf(why, whylen, "'%s' is not a descriptor number "
			    "(3 or more)", tok);
			rc = -1;
			break;
		}
		if ((refusal = inherited_refusal((int)fd)) != NULL) {
			snprintf(why, whylen, "fd %ld %s", fd, refusal);
			rc = -1;
			break;
		}
		if (*n == MAX_INHERITED) {
			snprintf(why, whylen, "more than %d descriptors",
			    MAX_INHERITED);
			rc = -1;
			break;
		}
		fds[(*n)++] = (int)fd;
	}
	free(copy);
	return rc;
}

int
listeners_check_inherited(void)
{
	int fds[MAX_INHERITED];
	char why[160];
	size_t n;

	if (inherited_parse(fds, &n, why, sizeof(why)) == -1) {
		fprintf(stderr, "Error: GUNICORN_FD: %s\n", why);
		return -1;
	}
	return 0;
}

static int
inherited_load(void)
{
	char why[160];

	ninherited = 0;
	if (inherited_parse(inherited, &ninherited, why, sizeof(why)) == -1) {
		log_errorx("Error: GUNICORN_FD: %s", why);
		ninherited = 0;
		return -1;
	}
	for (size_t i = 0; i < ninherited; i++)
		fd_set_cloexec(inherited[i], 1);
	unsetenv("GUNICORN_FD");
	return 0;
}

static int
same_address(const struct sockaddr *a, const struct sockaddr *b)
{
	if (a->sa_family != b->sa_family)
		return 0;
	if (a->sa_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
		return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	if (a->sa_family == AF_INET6) {
		const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
		return x->sin6_port == y->sin6_port &&
		    memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
	}
	if (a->sa_family == AF_UNIX)
		return strcmp(((const struct sockaddr_un *)a)->sun_path,
		    ((const struct sockaddr_un *)b)->sun_path) == 0;
	return 0;
}

/* The inherited listener bound to addr, taken out of the list; or -1. */
static int
inherited_take(const struct sockaddr *addr)
{
	for (size_t i = 0; i < ninherited; i++) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		if (inherited[i] == -1 ||
		    getsockname(inherited[i], (struct sockaddr *)&ss, &len) == -1)
			continue;
		if (same_address((struct sockaddr *)&ss, addr)) {
			int fd = inherited[i];
			inherited[i] = -1;
			return fd;
		}
	}
	return -1;
}

static void
inherited_close_rest(void)
{
	for (size_t i = 0; i < ninherited; i++)
		if (inherited[i] != -1)
			close(inherited[i]);
	ninherited = 0;
}

static void
listener_free(struct listener *l)
{
	if (l->fd != -1)
		close(l->fd);
	free(l->name);
	free(l->host);
	free(l->unix_path);
}

static int
open_fd(const char *spec, struct listener *l)
{
	struct sockaddr_storage ss;
	socklen_t slen = sizeof(ss);
	char *endp;
	long fd;
	int type, family;
	socklen_t olen = sizeof(type);

	fd = strtol(spec, &endp, 10);
	if (*spec == '\0' || *endp != '\0' || fd < 0 || fd > 65535) {
		log_errorx("Invalid bind fd: fd://%s", spec);
		return -1;
	}
	if (getsockopt((int)fd, SOL_SOCKET, SO_TYPE, &type, &olen) == -1 ||
	    type != SOCK_STREAM || getsockname((int)fd, (struct sockaddr *)&ss, &slen) == -1) {
		log_errorx("fd://%ld is not a listening stream socket", fd);
		return -1;
	}
	family = ss.ss_family;
	l->fd = (int)fd;
	l->family = family;
	fd_set_cloexec(l->fd, 1);
	if (family == AF_UNIX) {
		struct sockaddr_un *sun = (struct sockaddr_un *)&ss;
		l->host = xstrdup(sun->sun_path);
		l->name = xasprintf("unix:%s", sun->sun_path);
	} else {
		char host[INET6_ADDRSTRLEN];
		void *addr = family == AF_INET ? (void *)&((struct sockaddr_in *)&ss)->sin_addr
		    : (void *)&((struct sockaddr_in6 *)&ss)->sin6_addr;
		inet_ntop(family, addr, host, sizeof(host));
		l->port = ntohs(family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
		    : ((struct sockaddr_in6 *)&ss)->sin6_port);
		l->host = xstrdup(host);
		l->name = family == AF_INET ? xasprintf("http://%s:%d", host, l->port)
		    : xasprintf("http://[%s]:%d", host, l->port);
	}
	if (listen(l->fd, 2048) == -1) {	/* harmless if already listening */
		log_error("fd://%ld: listen", fd);
		return -1;
	}
	return 0;
}

static int
open_unix(const struct settings *s, const char *path, struct listener *l)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct stat st;

	if (strlen(path) >= sizeof(sun.sun_path)) {
		log_errorx("unix socket path too long: %s", path);
		return -1;
	}
	strcpy(sun.sun_path, path);
	if ((l->fd = inherited_take((struct sockaddr *)&sun)) != -1) {
		l->reused = 1;
		goto named;
	}
	/* a stale socket file from a dead server is replaced; anything else
	 * at that path is an error */
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			log_errorx("unix:%s exists and is not a socket", path);
			return -1;
		}
		unlink(path);
	}
	l->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (l->fd == -1 || bind(l->fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		log_error("Can't bind unix:%s", path);
		return -1;
	}
	if (s->uid != geteuid() || s->gid != getegid())
		if (chown(path, s->uid, s->gid) == -1)
			log_warn("chown unix:%s", path);
	if (listen(l->fd, s->backlog) == -1) {
		log_error("listen unix:%s", path);
		return -1;
	}
named:
	l->family = AF_UNIX;
	l->unix_path = xstrdup(path);
	l->host = xstrdup(path);
	l->name = xasprintf("unix:%s", path);
	return 0;
}

static int
open_tcp(const struct settings *s, const char *spec, struct listener *l)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *res = NULL;
	char host[256], port[16];
	const char *colon;
	int one = 1, rc;

	/* [v6]:port, host:port, host (port 8000), :port */
	if (spec[0] == '[') {
		const char *close_br = strchr(spec, ']');
		if (close_br == NULL || (size_t)(close_br - spec - 1) >= sizeof(host)) {
			log_errorx("Invalid bind address: %s", spec);
			return -1;
		}
		memcpy(host, spec + 1, (size_t)(close_br - spec - 1));
		host[close_br - spec - 1] = '\0';
		colon = close_br[1] == ':' ? close_br + 1 : NULL;
		if (close_br[1] != '\0' && colon == NULL) {
			log_errorx("Invalid bind address: %s", spec);
			return -1;
		}
	} else {
		colon = strrchr(spec, ':');
		size_t hl = colon ? (size_t)(colon - spec) : strlen(spec);
		if (hl >= sizeof(host)) {
			log_errorx("Invalid bind address: %s", spec);
			return -1;
		}
		memcpy(host, spec, hl);
		host[hl] = '\0';
	}
	snprintf(port, sizeof(port), "%s", colon ? colon + 1 : "8000");
	{
		char *endp;
		long p = strtol(port, &endp, 10);
		if (port[0] == '\0' || *endp != '\0' || p < 0 || p > 65535) {
			log_errorx("Invalid bind port: %s", spec);
			return -1;
		}
	}
	rc = getaddrinfo(host[0] ? host : "0.0.0.0", port, &hints, &res);
	if (rc != 0 || res == NULL) {
		log_errorx("Invalid bind address: %s (%s)", spec, gai_strerror(rc));
		return -1;
	}
	l->family = res->ai_family;
	if ((l->fd = inherited_take(res->ai_addr)) != -1) {
		l->reused = 1;
		freeaddrinfo(res);
		goto named;
	}
	l->fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (l->fd == -1) {
		log_error("socket for %s", spec);
		freeaddrinfo(res);
		return -1;
	}
	setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (s->reuse_port)
		setsockopt(l->fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	if (res->ai_family == AF_INET6)
		setsockopt(l->fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(l->fd, res->ai_addr, res->ai_addrlen) == -1) {
		if (errno == EADDRINUSE)
			log_errorx("Connection in use: ('%s', %s)", host, port);
		else
			log_error("Can't bind %s", spec);
		freeaddrinfo(res);
		return -1;
	}
	freeaddrinfo(res);
	if (listen(l->fd, s->backlog) == -1) {
		log_error("listen %s", spec);
		return -1;
	}
named:
	{
		struct sockaddr_storage ss;
		socklen_t slen = sizeof(ss);
		char h[INET6_ADDRSTRLEN];
		getsockname(l->fd, (struct sockaddr *)&ss, &slen);
		if (ss.ss_family == AF_INET) {
			inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, h, sizeof(h));
			l->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
			l->name = xasprintf("http://%s:%d", h, l->port);
		} else {
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, h, sizeof(h));
			l->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
			l->name = xasprintf("http://[%s]:%d", h, l->port);
		}
		l->host = xstrdup(h);
	}
	return 0;
}

/* Bind s->bind, taking sockets from inherited[] where the address
 * matches; closes the inherited ones left over.  On failure nothing of
 * `keep` (the listeners serving now, on HUP) is closed: fd://N names
 * their very descriptor. */
static int
listeners_open_from(const struct settings *s, struct listener **out, size_t *n,
    const struct listener *keep, size_t nkeep)
{
	struct listener *ls = xcalloc(s->bind.len ? s->bind.len : 1, sizeof(*ls));
	size_t i;

	for (i = 0; i < s->bind.len; i++) {
		const char *spec = s->bind.items[i];
		int rc;

		ls[i].fd = -1;
		if (strncmp(spec, "unix:", 5) == 0)
			rc = open_unix(s, spec + 5, &ls[i]);
		else if (strncmp(spec, "fd://", 5) == 0)
			rc = open_fd(spec + 5, &ls[i]);
		else if (strncmp(spec, "tcp://", 6) == 0)
			rc = open_tcp(s, spec + 6, &ls[i]);
		else
			rc = open_tcp(s, spec, &ls[i]);
		if (rc == -1) {
			/* a socket file another master (or we) still serve
			 * through a reused fd stays */
			for (size_t j = 0; j <= i; j++) {
				if (!ls[j].reused && ls[j].unix_path != NULL)
					unlink(ls[j].unix_path);
				for (size_t k = 0; k < nkeep; k++)
					if (ls[j].fd == keep[k].fd)
						ls[j].fd = -1;
				listener_free(&ls[j]);
			}
			free(ls);
			inherited_close_rest();
			return -1;
		}
		fd_set_nonblock(ls[i].fd, 1);
	}
	inherited_close_rest();
	*out = ls;
	*n = i;
	return 0;
}

int
listeners_open(const struct settings *s, struct listener **out, size_t *n)
{
	if (inherited_load() == -1)
		return -1;
	return listeners_open_from(s, out, n, NULL, 0);
}

void
listeners_close(struct listener *l, size_t n, int unlink_paths)
{
	if (l == NULL)
		return;
	for (size_t i = 0; i < n; i++) {
		if (unlink_paths && l[i].unix_path != NULL)
			unlink(l[i].unix_path);
		listener_free(&l[i]);
	}
	free(l);
}

int
listeners_rebind(const struct settings *s, struct listener **ls, size_t *n,
    int unlink_paths)
{
	struct listener *old = *ls, *fresh;
	size_t nold = *n, nfresh;

	/* what we serve now, offered to the new list like USR2's inherited
	 * fds; as duplicates, so that a failure leaves the old list whole */
	ninherited = 0;
	for (size_t i = 0; i < nold && ninherited < MAX_INHERITED; i++) {
		int fd = fcntl(old[i].fd, F_DUPFD_CLOEXEC, 3);
		if (fd == -1) {
			log_error("reload: dup listener %s", old[i].name);
			inherited_close_rest();
			return -1;
		}
		inherited[ninherited++] = fd;
	}
	if (listeners_open_from(s, &fresh, &nfresh, old, nold) == -1)
		return -1;
	/* a socket kept takes the new backlog */
	for (size_t j = 0; j < nfresh; j++)
		if (fresh[j].reused && listen(fresh[j].fd, s->backlog) == -1)
			log_warn("listen %s", fresh[j].name);
	/* the old sockets go; a socket file goes with its socket unless the
	 * new list serves the same path */
	for (size_t i = 0; i < nold; i++) {
		int kept = 0;
		for (size_t j = 0; j < nfresh && old[i].unix_path != NULL; j++)
			if (fresh[j].unix_path != NULL &&
			    strcmp(fresh[j].unix_path, old[i].unix_path) == 0)
				kept = 1;
		for (size_t j = 0; j < nfresh; j++)
			if (fresh[j].fd == old[i].fd)	/* fd://N: the same fd */
				old[i].fd = -1;
		if (!kept && unlink_paths && old[i].unix_path != NULL)
			unlink(old[i].unix_path);
		listener_free(&old[i]);
	}
	free(old);
	*ls = fresh;
	*n = nfresh;
	return 0;
}

int
listeners_backlog(const struct listener *l, size_t n)
{
	int total = 0;

	for (size_t i = 0; i < n; i++) {
		struct tcp_info ti;
		socklen_t len = sizeof(ti);

		if (l[i].family == AF_UNIX)
			continue;
		if (getsockopt(l[i].fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 &&
		    len >= offsetof(struct tcp_info, tcpi_unacked) + sizeof(ti.tcpi_unacked))
			total += (int)ti.tcpi_unacked;
	}
	return total;
}
