/*
 * http_worker.c — the sync HTTP worker role (contract: http_worker.h).
 *
 * Owns: the accept loop over the inherited listeners, the worker's signal
 * flags (from sigpipe.c's pipe), the per-worker request buffer and WSGI
 * request slot (struct wsgi_req), reading and parsing the request head,
 * max_requests, the heartbeat and the worker's exit path, and --reload
 * (gunicorn's reload: a worker whose code changed on disk exits so that
 * the master boots a fresh one).  Hands every parsed request to wsgi.c;
 * answers malformed ones with gunicorn's error page and keeps serving.
 *
 * One connection at a time, "Connection: close" on every response, as
 * gunicorn's sync worker.  Signal handlers only write to the signal pipe
 * (and, for INT/QUIT/ABRT, ask Python to run its handler at the next
 * bytecode so a busy app is interrupted); everything else happens in the
 * loop.  Never: blocks without a timeout, calls Py_Finalize on the
 * way out (exit is _exit after flushing Python's stdio), or handles two
 * connections at once.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "http_worker.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/socket.h>

#include "http_conn.h"
#include "http_parser.h"
#include "listen.h"
#include "log.h"
#include "python.h"
#include "settings.h"
#include "sigpipe.h"
#include "tls.h"
#include "util.h"
#include "wsgi.h"

#define RELOAD_INTERVAL_MS 1000		/* --reload: gunicorn's poll interval */

/*
 * Signals come as bytes on a pipe (sigpipe.c); signals_collect() turns
 * them into these flags, from the loop and from every place the app's
 * I/O sees EINTR.  Two things cannot wait for the loop and are done in
 * the handler itself (signal_now): INT, QUIT and ABRT ask Python to run
 * its handler at the next bytecode, so a busy app is interrupted; TERM
 * when the master is gone arms alarm(), since nobody else enforces
 * graceful_timeout then (SIGALRM's default action ends the worker even
 * inside a hung app call).
 */
static int sig_term, sig_int, sig_quit, sig_abrt, sig_usr1, sig_hup;
static volatile sig_atomic_t signals_waiting;	/* bytes to collect */
static volatile sig_atomic_t handler_master_pid, handler_grace_seconds;
static int sig_fd = -1;
static struct http_worker_ctx *wctx;
static int exiting;

/* In the handler, after sigpipe's byte: async-signal-safe calls only. */
static void
signal_now(int sig)
{
	signals_waiting = 1;
	switch (sig) {
	case SIGTERM:
		if (getppid() != (pid_t)handler_master_pid)
			alarm((unsigned)handler_grace_seconds + 1);
		break;
	case SIGINT:
	case SIGQUIT:
	case SIGABRT:
		wsgi_signal_trip(sig);
		break;
	}
}

static void
signals_collect(void)
{
	int sig;

	if (!signals_waiting)
		return;
	signals_waiting = 0;	/* before reading: a later byte sets it again */
	while ((sig = sigpipe_next()) != 0)
		switch (sig) {
		case SIGTERM: sig_term = 1; break;
		case SIGHUP: sig_hup = 1; break;
		case SIGUSR1: sig_usr1 = 1; break;
		case SIGINT: sig_int = 1; break;
		case SIGQUIT: sig_quit = 1; break;
		case SIGABRT: sig_abrt = 1; break;
		}
}

/* The loop workers' signals (http_worker.h). */
void
http_worker_loop_signal(int sig, void (*stop)(void),
    void (*quit)(enum hook_id hook, int code))
{
	switch (sig) {
	case SIGTERM:
	case SIGHUP:
		stop();
		break;
	case SIGINT:
	case SIGQUIT:
		quit(HOOK_WORKER_INT, 0);
		break;
	case SIGABRT:
		quit(HOOK_WORKER_ABORT, 1);
		break;
	case SIGUSR1:
		log_reopen();
		break;
	}
}

/*
 * The one way out.  gunicorn runs worker_exit(server, worker) in the
 * worker process itself, after the worker stopped (arbiter.spawn_worker's
 * finally), so it runs here, whatever the reason for exiting.
 */
void
http_worker_exit(int code)
{
	struct settings *cfg = wctx->cfg;

	if (cfg->hooks[HOOK_WORKER_EXIT] != NULL) {
		PyObject *server = python_server_object(cfg, wctx->master_pid);
		PyObject *worker = wsgi_worker_object();
		PyObject *own = NULL;
		if (worker == NULL)
			worker = own = python_worker_object(cfg, getpid(), wctx->age);
		python_hook(cfg, HOOK_WORKER_EXIT, 2, server ? server : Py_None,
		    worker ? worker : Py_None);
		Py_XDECREF(server);
		Py_XDECREF(own);
		PyErr_Clear();
	}
	log_info("Worker exiting (pid: %ld)", (long)getpid());
	wsgi_flush_stdio();
	_exit(code);
}

/* What must not wait for the end of a request: USR1, and INT, QUIT, ABRT
 * (which end the worker).  The loop calls it, and wsgi.c on EINTR and from
 * Python's handler for INT, QUIT and ABRT. */
static void
http_worker_urgent_signals(void)
{
	signals_collect();
	if (sig_usr1) {
		sig_usr1 = 0;
		log_reopen();
	}
	if (exiting)
		return;
	if (sig_int || sig_quit) {
		exiting = 1;
		(void)wsgi_abort_responses();
		if (wctx->cfg->hooks[HOOK_WORKER_INT] != NULL)
			python_hook(wctx->cfg, HOOK_WORKER_INT, 1, wsgi_worker_object());
		http_worker_exit(0);
	}
	if (sig_abrt) {
		exiting = 1;
		(void)wsgi_abort_responses();
		if (wctx->cfg->hooks[HOOK_WORKER_ABORT] != NULL)
			python_hook(wctx->cfg, HOOK_WORKER_ABORT, 1, wsgi_worker_object());
		http_worker_exit(1);
	}
}

static void
install_signals(void)
{
	static const int sigs[] = { SIGTERM, SIGINT, SIGQUIT, SIGUSR1, SIGABRT, SIGHUP };

	handler_master_pid = wctx->master_pid;
	handler_grace_seconds = wctx->cfg->graceful_timeout;
	/* no SA_RESTART: waits see EINTR */
	sig_fd = sigpipe_open_with(sigs, sizeof(sigs) / sizeof(sigs[0]), 0, signal_now);
}

/* ---- --reload ---- */

/*
 * With reload on, cunicorn._reloader.Reloader tells which watched file
 * (every module's, plus reload_extra_files) changed; the loop asks it at
 * most once a second, between requests.  Off, nothing of this runs: the
 * loop tests one pointer.
 */
struct reload_watch {
	PyObject *reloader;	/* NULL: reload off (or given up) */
	uint64_t next_ms;	/* monotonic time of the next look */
};

/* The reloader for cfg's extra files; NULL, logged, if it cannot be had. */
static PyObject *
reload_new(const struct settings *cfg)
{
	PyObject *mod, *extra, *r = NULL;

	if ((mod = PyImport_ImportModule("cunicorn._reloader")) == NULL) {
		python_log_exception(LOG_ERROR, LOG_ERROR, "reload");
		return NULL;
	}
	if ((extra = PyList_New(0)) != NULL) {
		for (size_t i = 0; i < cfg->reload_extra_files.len; i++) {
			PyObject *p = PyUnicode_DecodeFSDefault(
			    cfg->reload_extra_files.items[i]);
			if (p == NULL || PyList_Append(extra, p) == -1) {
				Py_XDECREF(p);
				Py_CLEAR(extra);
				break;
			}
			Py_DECREF(p);
		}
	}
	if (extra != NULL)
		r = PyObject_CallMethod(mod, "Reloader", "O", extra);
	if (r == NULL)
		python_log_exception(LOG_ERROR, LOG_ERROR, "reload");
	Py_XDECREF(extra);
	Py_DECREF(mod);
	return r;
}

/*
 * Once a second at most: 1 when a watched file changed (logged as
 * gunicorn does, worker_int called as gunicorn's reloader does), else 0.
 * The first call records every file.  A reloader that fails is logged
 * and dropped: the worker keeps serving without reload.
 */
static int
reload_changed(struct reload_watch *rw)
{
	uint64_t now = monotonic_ms();
	PyObject *r;
	int changed = 0;

	if (now < rw->next_ms)
		return 0;
	/* a poll(1000 ms) that wakes a hair early still looks */
	rw->next_ms = now + RELOAD_INTERVAL_MS - 50;
	if ((r = PyObject_CallMethod(rw->reloader, "changed", NULL)) == NULL) {
		python_log_exception(LOG_ERROR, LOG_ERROR, "reload");
		Py_CLEAR(rw->reloader);
		return 0;
	}
	if (PyUnicode_Check(r)) {
		PyObject *fs = PyUnicode_EncodeFSDefault(r);
		PyErr_Clear();
		log_info("Worker reloading: %s modified",
		    fs != NULL ? PyBytes_AS_STRING(fs) : "?");
		Py_XDECREF(fs);
		if (wctx->cfg->hooks[HOOK_WORKER_INT] != NULL)
			python_hook(wctx->cfg, HOOK_WORKER_INT, 1, wsgi_worker_object());
		changed = 1;
	}
	Py_DECREF(r);
	return changed;
}

/* The app; under reload, a SyntaxError gives an app that shows it (see
 * cunicorn/_reloader.py) rather than a failed boot. */
static PyObject *
reload_load_app(struct reload_watch *rw, const char *uri)
{
	PyObject *loader, *app;

	if (rw->reloader == NULL ||
	    (loader = PyObject_GetAttrString(rw->reloader, "load_app")) == NULL) {
		PyErr_Clear();
		return python_load_app(uri);
	}
	app = python_load_app_with(loader, uri);
	Py_DECREF(loader);
	return app;
}

/* ---- one connection ---- */

struct worker_state {
	struct http_conn_limits limits;
	struct http_conn conn;		/* buffers reused for every connection */
	struct wsgi_req *wsgi;		/* the request slot every request runs in */
	int head_timeout_ms;
	unsigned long nr;
	unsigned long limit;	/* max_requests + jitter; 0 = none */
	int alive;
};

/* Read until a full head parses, within one deadline counted from the
 * accept: a client's pace never extends it.  1 ok, 0 connection done
 * (closed). */
static int
read_head(struct worker_state *w, struct http_conn *c)
{
	struct http_error err;
	char ip[64];
	uint64_t deadline = monotonic_ms() + (uint64_t)w->head_timeout_ms;

	for (;;) {
		ssize_t n = http_conn_read_some(c, &w->limits);
		if (n > 0) {
			int r = http_conn_parse(c, &w->limits, &err);
			if (r == HTTP_HEAD_READY)
				return 1;
			if (r == HTTP_HEAD_BAD) {
				http_peer_format(http_conn_client(c), ip, sizeof(ip));
				log_warnx("Invalid request from ip=%s: %s", ip, err.reason);
				http_write_error(c->fd, err.status,
				    http_reason_phrase(err.status), err.reason);
				http_io_close(c->fd, 1);
				return 0;
			}
			continue;
		}
		if (n == 0) {
			if (c->len > 0)
				log_debug("Ignored premature client disconnection.");
			tls_close(c->fd);
			return 0;
		}
		if (errno == EAGAIN) {
			uint64_t now = monotonic_ms();
			struct pollfd p = { .fd = c->fd,
			    .events = tls_io_events(c->fd, POLLIN) };
			int k = -1;
			if (now < deadline) {
				Py_BEGIN_ALLOW_THREADS
				k = poll(&p, 1, (int)(deadline - now));
				Py_END_ALLOW_THREADS
			} else
				k = 0;
			if (k > 0 || (k == -1 && errno == EINTR)) {
				if (k == -1)
					http_worker_urgent_signals();
				/* stopping, and this client has not said a word yet:
				 * do not wait for it */
				if (k == -1 && (sig_term || sig_hup) && c->len == 0) {
					tls_close(c->fd);
					return 0;
				}
				continue;
			}
			if (k == 0)
				log_debug("Closing connection: no complete request head in time");
		}
		tls_close(c->fd);
		return 0;
	}
}

static void
handle_connection(struct worker_state *w, int fd, const struct listener *l,
    const struct sockaddr_storage *peer, socklen_t peerlen)
{
	struct http_conn *c = &w->conn;

	if (wctx->heartbeat != NULL)
		*wctx->heartbeat = monotonic_ms();
	c->fd = fd;
	c->listener = l;
	memcpy(&c->peer, peer, sizeof(c->peer));
	c->peerlen = peerlen;
	http_conn_begin(c, &w->limits);
	c->len = 0;
	c->next = 0;
	c->body_unread = 0;
	if (!read_head(w, c))
		return;

	w->nr++;
	if (w->limit > 0 && w->nr >= w->limit) {
		log_info("Autorestarting worker after current request.");
		w->alive = 0;
	}
	c->keepalive = 0;	/* the sync worker: one request, Connection: close */
	if (wsgi_handle(w->wsgi, c) == 0)
		http_io_close(fd, c->body_unread);
	else
		tls_close(fd);
}

/* ---- the loop ---- */

static void
setup_listeners(struct http_worker_ctx *ctx)
{
	int one = 1;

	for (size_t i = 0; i < ctx->nlisteners; i++) {
		struct listener *l = &ctx->listeners[i];
		if (fd_set_nonblock(l->fd, 1) == -1)
			log_warn("listener %s: O_NONBLOCK", l->name ? l->name : "?");
		if (l->family == AF_INET || l->family == AF_INET6)
			(void)setsockopt(l->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
}

static void
setup_state(struct worker_state *w, const struct settings *cfg)
{
	memset(w, 0, sizeof(*w));
	http_conn_limits_init(&w->limits, cfg);
	http_conn_alloc(&w->conn, &w->limits, 0);
	w->wsgi = wsgi_req_new();
	w->head_timeout_ms = w->limits.head_timeout_ms;
	w->alive = 1;
	if (cfg->max_requests > 0) {
		unsigned long jitter = 0;
		if (cfg->max_requests_jitter > 0) {
			srandom((unsigned)(getpid() ^ monotonic_ms()));
			jitter = (unsigned long)random() % ((unsigned long)cfg->max_requests_jitter + 1);
		}
		w->limit = (unsigned long)cfg->max_requests + jitter;
	}
}

static struct reload_watch rw;

void *
http_worker_boot(struct http_worker_ctx *ctx, int threads, void (*urgent)(void),
    const _Atomic int *keepalive_gate, int relay_streams)
{
	struct settings *cfg = ctx->cfg;
	struct wsgi_setup setup;
	PyObject *app;

	wctx = ctx;
	if (cfg->reload)
		rw.reloader = reload_new(cfg);
	if (ctx->app != NULL) {
		app = ctx->app;
		Py_INCREF(app);
	} else {
		const char *uri = cfg->app_uri ? cfg->app_uri : cfg->wsgi_app;
		if (uri == NULL || (app = reload_load_app(&rw, uri)) == NULL) {
			if (uri == NULL)
				log_errorx("No application module specified.");
			http_worker_exit(APP_LOAD_ERROR);
		}
	}
	setup = (struct wsgi_setup){
		.cfg = cfg,
		.listeners = ctx->listeners,
		.nlisteners = ctx->nlisteners,
		.age = ctx->age,
		.threads = threads,
		.urgent_signals = urgent,
		.keepalive_gate = keepalive_gate,
		.relay_streams = relay_streams,
	};
	if (wsgi_init(&setup, app) == -1)
		http_worker_exit(WORKER_BOOT_ERROR);
	if (rw.reloader != NULL)
		(void)reload_changed(&rw);	/* records the app's files */
	return app;
}

int
http_worker_reload_due(void)
{
	return rw.reloader != NULL && reload_changed(&rw);
}

/* ---- the worker types ---- */

static void sync_worker_main(struct http_worker_ctx *ctx) __attribute__((noreturn));

static const struct {
	const char *name;
	void (*main)(struct http_worker_ctx *);
} worker_types[] = {
	{ "sync", sync_worker_main },
	{ "gthread", gthread_worker_main },
	{ "asgi", asgi_worker_main },
};

void
http_worker_main(struct http_worker_ctx *ctx)
{
	for (size_t i = 0; i < sizeof(worker_types) / sizeof(worker_types[0]); i++)
		if (strcmp(ctx->cfg->worker_class, worker_types[i].name) == 0)
			worker_types[i].main(ctx);
	/* settings_finalize() left only names of this table */
	fatalx("worker class %s: no such worker type", ctx->cfg->worker_class);
}

/* ---- the sync worker ---- */

static void
sync_worker_main(struct http_worker_ctx *ctx)
{
	struct settings *cfg = ctx->cfg;
	struct worker_state w;
	struct pollfd *pfd;
	int poll_ms, idle = 1;

	http_worker_boot(ctx, 1, http_worker_urgent_signals, NULL, 0);
	tls_worker_init();
	install_signals();
	setup_listeners(ctx);
	setup_state(&w, cfg);
	if (cfg->hooks[HOOK_POST_WORKER_INIT] != NULL)
		python_hook(cfg, HOOK_POST_WORKER_INIT, 1, wsgi_worker_object());

	pfd = xcalloc(ctx->nlisteners + 1, sizeof(*pfd));
	for (size_t i = 0; i < ctx->nlisteners; i++) {
		pfd[i].fd = ctx->listeners[i].fd;
		pfd[i].events = POLLIN;
	}
	pfd[ctx->nlisteners].fd = sig_fd;
	pfd[ctx->nlisteners].events = POLLIN;
	poll_ms = cfg->timeout > 0 ? cfg->timeout * 500 : 1000;
	if (poll_ms > 1000)
		poll_ms = 1000;	/* notice a dead master within a second */

	for (unsigned long loops = 0;; loops++) {
		int served = 0;

		http_worker_urgent_signals();
		if (sig_term || sig_hup || !w.alive)
			break;
		/* the master's death: checked on every idle wake-up, and every
		 * 32 requests while busy */
		if ((idle || (loops & 31) == 0) && getppid() != ctx->master_pid) {
			log_info("Parent changed, shutting down: <Worker %ld>", (long)getpid());
			break;
		}
		if (http_worker_reload_due())
			break;		/* as max_requests: the master boots another */
		if (ctx->heartbeat != NULL)
			*ctx->heartbeat = monotonic_ms();

		for (size_t i = 0; i < ctx->nlisteners; i++) {
			struct sockaddr_storage peer;
			socklen_t plen = sizeof(peer);
			int fd = accept4(ctx->listeners[i].fd, (struct sockaddr *)&peer, &plen,
			    SOCK_NONBLOCK | SOCK_CLOEXEC);
			if (fd == -1) {
				if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ||
				    errno == ECONNABORTED || errno == EPROTO)
					continue;
				log_warn("accept on %s", ctx->listeners[i].name ?
				    ctx->listeners[i].name : "listener");
				if (errno == EMFILE || errno == ENFILE) {
					/* wait a little rather than spin */
					struct timespec ts = { 0, 100 * 1000 * 1000 };
					nanosleep(&ts, NULL);
				}
				continue;
			}
			if (tls_conn_begin(fd) == -1) {
				close(fd);
				continue;
			}
			handle_connection(&w, fd, &ctx->listeners[i], &peer, plen);
			served = 1;
			signals_collect();
			if (sig_term || sig_hup || !w.alive)
				break;
		}
		idle = !served;
		if (served)
			continue;

		int n;
		Py_BEGIN_ALLOW_THREADS
		n = poll(pfd, ctx->nlisteners + 1, poll_ms);
		Py_END_ALLOW_THREADS
		if (n == -1 && errno != EINTR)
			log_warn("poll");
	}
	http_worker_exit(0);
}
