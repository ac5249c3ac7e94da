/*
 * listen.h — the HTTP listening sockets: bind every `bind` entry
 * (HOST:PORT for IPv4/IPv6, unix:PATH, fd://N), with backlog and
 * reuse_port.  Owned by the master, inherited by HTTP workers, closed by
 * the dirty arbiter right after fork.
 */
#ifndef CUNICORN_LISTEN_H
#define CUNICORN_LISTEN_H

#include <stddef.h>
#include <sys/socket.h>

struct settings;

struct listener {
	int fd;
	int family;		/* AF_INET, AF_INET6, AF_UNIX */
	char *name;		/* as logged: "http://127.0.0.1:8000", "unix:/p" */
	char *host;		/* SERVER_NAME: "127.0.0.1", "::1", or the path */
	int port;		/* SERVER_PORT (0 for unix) */
	char *unix_path;	/* unix sockets we serve (unlinked at exit) */
	int reused;		/* the fd came from an earlier set of listeners */
};

/* Check $GUNICORN_FD at start, before anything opens a descriptor: every
 * number it lists must be a listening stream socket (IPv4, IPv6, unix).
 * 0, or -1 after one "Error: GUNICORN_FD: ..." line on stderr. */
int listeners_check_inherited(void);
/* Bind all of s->bind.  On failure logs one clear line (address in use,
 * bad address, ...) and returns -1, having closed what it opened.
 * inherit: fds from a previous master (USR2 re-exec), reused by address. */
int listeners_open(const struct settings *s, struct listener **out, size_t *n);
/* Close all; unlink unix socket files when unlink_paths. */
void listeners_close(struct listener *l, size_t n, int unlink_paths);
/* HUP with a new bind list: replace *ls (n entries) by listeners for
 * s->bind.  An address served now keeps its socket (no connection is
 * refused meanwhile); the others are bound anew; the ones no longer asked
 * for are closed and their unix socket files removed (when unlink_paths:
 * not while another master serves them too).  On failure logs why and
 * returns -1 with *ls untouched and still serving. */
int listeners_rebind(const struct settings *s, struct listener **ls, size_t *n,
    int unlink_paths);
/* The connections waiting in the TCP listeners' accept queues, summed
 * (gunicorn's get_backlog: Linux reports a listening socket's queue in
 * TCP_INFO's tcpi_unacked); unix sockets count 0. */
int listeners_backlog(const struct listener *l, size_t n);

#endif
