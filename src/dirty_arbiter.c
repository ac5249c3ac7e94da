/*
 * dirty_arbiter.c — the dirty arbiter process: forked by the master
 * (dirty_arbiter_spawn()), it supervises the dirty workers
 * (dirty_pool.c) and routes calls from clients to them over the dirty
 * wire protocol (dirty_route.c).  This file is the role itself: the
 * epoll loop and its timer, signals, parent death, graceful and quick
 * shutdown.  It owns the descriptors and the shutdown state of `arbiter`
 * (dirty_arbiter_int.h); the peers' reading, output queues and flush list
 * are dirty_peer.c's.
 *
 * The arbiter is C only and NEVER calls Python: everything Python (apps,
 * hooks) happens in the dirty workers it forks (dirty_worker.c).
 *
 * One epoll loop; every event source is a descriptor:
 *   - the listening Unix socket and the client connections,
 *   - one socketpair per dirty worker,
 *   - the read end of the signal pipe (sigpipe.h: TERM INT QUIT HUP USR1
 *     USR2 TTIN TTOU CHLD),
 *   - a pidfd of the master (its death is readable at once; PDEATHSIG,
 *     delivered as SIGUSR2, and a periodic getppid() check back it up),
 *   - a timerfd ticking every TICK_MS for timeouts and heartbeats.
 *
 * Parent death: the arbiter logs "Parent changed, shutting down dirty
 * arbiter", SIGKILLs its workers and exits at once.  Decision: no grace
 * for the workers there — the master is gone, the callers (HTTP workers)
 * are going, nothing can receive a result, a frozen worker obeys only
 * SIGKILL, and the target is the whole tree gone well under a second.
 */
#include "dirty.h"
#include "dirty_arbiter_int.h"
#include "dirty_calls.h"
#include "dirty_runtime.h"
#include "dirty_stash.h"
#include "dirty_wire.h"
#include "log.h"
#include "proctitle.h"
#include "settings.h"
#include "sigpipe.h"
#include "spawn.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/wait.h>

#define TICK_MS			200
#define PPID_CHECK_MS		1000
#define ACCEPT_PAUSE_MIN_MS	100
#define ACCEPT_PAUSE_MAX_MS	1000

struct arbiter_state arbiter;

static void arbiter_exit(int code, int parent_died) __attribute__((noreturn));

int
dirty_enabled(const struct settings *s)
{
	return s->dirty_workers > 0 && s->dirty_apps.len > 0;
}

/* The peer an epoll key names (the flush list's lookup). */
static struct dirty_peer *
peer_lookup(uint64_t key)
{
	if (EV_KIND(key) == EV_CLIENT)
		return client_peer(EV_IDX(key), EV_GEN(key));
	return worker_peer(EV_IDX(key), EV_GEN(key));
}

/* ---- the listener: paused after accept errors ---- */

/* accept() failed with err (not EAGAIN): out of descriptors, memory or
 * buffers.  The connection stays in the backlog, so polling the listener
 * again at once would spin (and log) as fast as the CPU allows; instead
 * take it out of the epoll set for a while, the pause doubling up to
 * ACCEPT_PAUSE_MAX_MS while the errors last.  One line per episode. */
static void
listen_pause(int err)
{
	uint64_t now = monotonic_ms();

	if (arbiter.listen_fd == -1)
		return;
	arbiter.accept_failures++;
	if (!arbiter.accept_episode) {
		arbiter.accept_episode = 1;
		arbiter.accept_pause_ms = ACCEPT_PAUSE_MIN_MS;
		errno = err;
		log_warn("dirty: accept failed, pausing new connections "
		    "(logged once until one is accepted again)");
	} else if (arbiter.accept_pause_ms < ACCEPT_PAUSE_MAX_MS) {
		arbiter.accept_pause_ms *= 2;
		if (arbiter.accept_pause_ms > ACCEPT_PAUSE_MAX_MS)
			arbiter.accept_pause_ms = ACCEPT_PAUSE_MAX_MS;
	}
	if (!arbiter.listen_paused) {
		dirty_peer_ep_del(arbiter.listen_fd);
		arbiter.listen_paused = 1;
	}
	arbiter.accept_resume_ms = now + arbiter.accept_pause_ms;
}

/* An accept succeeded: an episode of errors, if any, is over. */
static void
listen_accepted(void)
{
	if (!arbiter.accept_episode)
		return;
	log_info("dirty: accepting connections again (%llu accept errors "
	    "meanwhile)", (unsigned long long)arbiter.accept_failures);
	arbiter.accept_episode = 0;
	arbiter.accept_failures = 0;
}

/* New connections become clients (dirty_route.c). */
static void
listen_accept(void)
{
	for (;;) {
		int fd = accept4(arbiter.listen_fd, NULL, NULL,
		    SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				listen_pause(errno);	/* EMFILE...: back off */
			return;
		}
		listen_accepted();
		client_open(fd);
	}
}

static void
listen_resume_due(uint64_t now)
{
	if (!arbiter.listen_paused || now < arbiter.accept_resume_ms)
		return;
	arbiter.listen_paused = 0;
	if (arbiter.listen_fd != -1)
		dirty_peer_ep_add(arbiter.listen_fd, EPOLLIN,
		    EV_KEY(EV_LISTEN, 0, 0));
}

/* ---- timers: timeouts, heartbeats, retirement, shutdown ---- */

static void
parent_died(void)
{
	log_warnx("Parent changed, shutting down dirty arbiter");
	arbiter_exit(0, 1);
}

static void
check_parent(void)
{
	if (getppid() != arbiter.master_pid)
		parent_died();
}

static void
tick(void)
{
	uint64_t now = monotonic_ms();
	uint64_t timeout = (uint64_t)arbiter.s->dirty_timeout * 1000u;
	uint64_t grace = (uint64_t)arbiter.s->dirty_graceful_timeout * 1000u;

	if (now - arbiter.last_ppid_check >= PPID_CHECK_MS) {
		arbiter.last_ppid_check = now;
		check_parent();
	}
	listen_resume_due(now);
	calls_expire(now, timeout);
	workers_tick(now, timeout, grace);
	clients_expire(now);
	workers_manage();
}

/* Graceful stop progress: TERM the workers once no call is in flight (or
 * at the deadline), KILL them at the deadline. */
static void
stop_progress(void)
{
	uint64_t now = monotonic_ms();

	if (!arbiter.stopping)
		return;
	if (!arbiter.workers_termed &&
	    (calls_inflight() == 0 || now >= arbiter.stop_deadline)) {
		arbiter.workers_termed = 1;
		workers_stop(0);
	}
	if (now >= arbiter.stop_deadline)
		workers_kill();
	if (workers_count() == 0)
		arbiter_exit(0, 0);
}

static void
stop_graceful(void)
{
	if (arbiter.stopping)
		return;
	log_info("Dirty arbiter shutting down gracefully (pid: %d)", arbiter.pid);
	arbiter.stopping = 1;
	arbiter.stop_deadline = monotonic_ms() +
	    (uint64_t)arbiter.s->dirty_graceful_timeout * 1000u;
	if (arbiter.listen_fd != -1) {
		if (!arbiter.listen_paused)
			dirty_peer_ep_del(arbiter.listen_fd);
		close(arbiter.listen_fd);
		arbiter.listen_fd = -1;
	}
	workers_stop_respawns();
	/* Workers not yet routable-to stop now; the others after their calls. */
	workers_stop(1);
}

/* Exit now: workers are killed and reaped first (never left behind). */
static void
arbiter_exit(int code, int parent_died_)
{
	workers_signal(SIGKILL);
	workers_wait();
	for (size_t i = 0; i < arbiter.nclient_slots; i++)
		if (arbiter.clients[i].peer.fd != -1)
			client_close(&arbiter.clients[i]);
	dirty_runtime_arbiter_cleanup();
	if (parent_died_)
		dirty_runtime_remove_dirs();
	log_info("Dirty arbiter exiting (pid: %d)", arbiter.pid);
	/* _exit: never run the master's atexit handlers in this process. */
	_exit(code);
}

/* ---- signals ---- */

static void
on_signal(void)
{
	int sig;

	while ((sig = sigpipe_next()) != 0) {
		switch (sig) {
		case SIGCHLD:
			workers_reap();
			if (!arbiter.stopping)
				workers_manage();
			break;
		case SIGTERM:
			stop_graceful();
			break;
		case SIGINT:
		case SIGQUIT:
			log_info("Dirty arbiter quick shutdown (signal %d)",
			    sig);
			arbiter_exit(0, 0);
			break;
		case SIGHUP:
			if (arbiter.stopping)
				break;
			log_info("SIGHUP: replacing all dirty workers");
			workers_retire_all();
			workers_manage();
			break;
		case SIGUSR1:
			log_reopen();
			workers_signal(SIGUSR1);
			break;
		case SIGUSR2:	/* PR_SET_PDEATHSIG */
			check_parent();
			break;
		case SIGTTIN:
			if (arbiter.stopping)
				break;
			if (workers_increase(1) == 0) {
				log_warnx("SIGTTIN: Cannot increase above %d "
				    "dirty workers (16 x dirty_workers, at most "
				    "1024)", workers_ceiling());
				break;
			}
			log_info("SIGTTIN: Increasing dirty workers to %d",
			    arbiter.target);
			workers_manage();
			break;
		case SIGTTOU:
			if (arbiter.stopping)
				break;
			if (workers_decrease(1) == 0)
				log_warnx("SIGTTOU: Cannot decrease below %d "
				    "workers (required by app specs)",
				    workers_required());
			else
				log_info("SIGTTOU: Decreasing dirty workers "
				    "to %d", arbiter.target);
			break;
		}
	}
}

/* spawn_process() left every signal blocked with default dispositions
 * (SIGPIPE ignored); the ones we handle become bytes on a pipe the loop
 * watches (sigpipe.h, as the gthread and asgi loops), and every signal is
 * unblocked: the dirty workers we fork start from default dispositions
 * (spawn_process resets them), never with a blocked mask to pass on. */
static void
signals_setup(void)
{
	static const int handled[] = { SIGTERM, SIGINT, SIGQUIT, SIGHUP,
	    SIGUSR1, SIGUSR2, SIGTTIN, SIGTTOU, SIGCHLD };

	arbiter.signal_fd = sigpipe_open(handled,
	    sizeof(handled) / sizeof(handled[0]));
}

/* ---- the arbiter process ---- */

static void __attribute__((noreturn))
arbiter_parent_gone(void *arg)
{
	log_warnx("Parent changed, shutting down dirty arbiter");
	dirty_runtime_remove_dirs();
	_exit(0);
}

/*
 * The arbiter, once spawn_process() made it one: it holds only the error
 * log (no listener, no descriptor of the master's), its title is set, and
 * PR_SET_PDEATHSIG(SIGUSR2) arrives through the signal pipe.
 */
struct arbiter_boot {
	struct settings *s;
	pid_t master_pid;
};

static void __attribute__((noreturn))
arbiter_main(void *arg)
{
	struct settings *s = ((struct arbiter_boot *)arg)->s;
	pid_t master_pid = ((struct arbiter_boot *)arg)->master_pid;
	struct epoll_event evs[64];

	memset(&arbiter, 0, sizeof(arbiter));
	arbiter.s = s;
	arbiter.pid = getpid();
	arbiter.master_pid = master_pid;
	arbiter.listen_fd = arbiter.signal_fd = arbiter.pid_fd = arbiter.timer_fd = -1;
	arbiter.target = s->dirty_workers;

	signals_setup();
	log_info("Dirty arbiter starting (pid: %d)", (int)arbiter.pid);

	arbiter.pid_fd = (int)syscall(SYS_pidfd_open, master_pid, 0);
	if (arbiter.pid_fd == -1)
		log_debug("dirty: pidfd_open: %s (using getppid() checks)",
		    strerror(errno));
	else
		fd_set_cloexec(arbiter.pid_fd, 1);
	if (getppid() != master_pid)	/* died before pidfd_open */
		arbiter_parent_gone(NULL);

	if ((arbiter.lock_fd = dirty_runtime_lock_pidfile()) == -1)
		_exit(1);
	/* From here on the pid file and the socket are ours: every exit
	 * goes through arbiter_exit(), which removes them (and reaps). */
	if ((arbiter.listen_fd = dirty_runtime_listen(s)) == -1)
		arbiter_exit(1, 0);
	if ((arbiter.epfd = epoll_create1(EPOLL_CLOEXEC)) == -1) {
		log_warn("dirty: epoll_create1");
		arbiter_exit(1, 0);
	}
	arbiter.timer_fd = timerfd_create(CLOCK_MONOTONIC,
	    TFD_NONBLOCK | TFD_CLOEXEC);
	if (arbiter.timer_fd == -1) {
		log_warn("dirty: timerfd_create");
		arbiter_exit(1, 0);
	}
	struct itimerspec its = {
		.it_interval = { 0, TICK_MS * 1000000L },
		.it_value = { 0, TICK_MS * 1000000L },
	};
	timerfd_settime(arbiter.timer_fd, 0, &its, NULL);
	dirty_peer_setup(arbiter.epfd);
	if (dirty_peer_ep_add(arbiter.listen_fd, EPOLLIN,
	    EV_KEY(EV_LISTEN, 0, 0)) == -1 ||
	    dirty_peer_ep_add(arbiter.signal_fd, EPOLLIN,
	    EV_KEY(EV_SIGNAL, 0, 0)) == -1 ||
	    dirty_peer_ep_add(arbiter.timer_fd, EPOLLIN,
	    EV_KEY(EV_TIMER, 0, 0)) == -1 ||
	    (arbiter.pid_fd != -1 && dirty_peer_ep_add(arbiter.pid_fd, EPOLLIN,
	    EV_KEY(EV_PIDFD, 0, 0)) == -1))
		arbiter_exit(1, 0);
	arbiter.last_ppid_check = monotonic_ms();

	apps_parse();
	route_setup();
	dirty_stash_init();
	dirty_stash_set_max_bytes((uint64_t)s->dirty_stash_max_bytes);
	workers_manage();

	for (;;) {
		int n = epoll_wait(arbiter.epfd, evs, 64, -1);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			log_warn("dirty: epoll_wait");
			arbiter_exit(1, 0);
		}
		for (int i = 0; i < n; i++) {
			uint64_t key = evs[i].data.u64;
			uint32_t idx = EV_IDX(key);
			switch (EV_KIND(key)) {
			case EV_LISTEN:
				if (arbiter.listen_fd != -1)
					listen_accept();
				break;
			case EV_SIGNAL:
				on_signal();
				break;
			case EV_PIDFD:
				parent_died();
				break;
			case EV_TIMER: {
				uint64_t ticks;
				while (read(arbiter.timer_fd, &ticks,
				    sizeof(ticks)) > 0)
					;
				tick();
				break;
			}
			case EV_CLIENT: {
				struct client *c = client_lookup(idx,
				    EV_GEN(key));
				if (c == NULL)
					break;
				if ((evs[i].events & EPOLLERR) ||
				    (c->closing && (evs[i].events & EPOLLHUP))) {
					client_close(c);
					break;
				}
				if (evs[i].events & EPOLLOUT)
					c->peer.ops->flush(&c->peer);
				if (c->peer.fd != -1 && (evs[i].events &
				    (EPOLLIN | EPOLLHUP | EPOLLERR)))
					client_read(c);
				break;
			}
			case EV_WORKER: {
				if (idx >= arbiter.nworkers_slots)
					break;
				struct worker *w = &arbiter.workers[idx];
				if (w->state == W_FREE || w->peer.fd == -1 ||
				    (w->peer.gen & 0xffffffu) != EV_GEN(key))
					break;
				if (evs[i].events & EPOLLOUT)
					worker_flush(&w->peer);
				if (w->peer.fd != -1 && (evs[i].events &
				    (EPOLLIN | EPOLLHUP | EPOLLERR)))
					worker_read(w);
				break;
			}
			}
		}
		dirty_peer_flush_all(peer_lookup);
		workers_manage_pending();
		stop_progress();
	}
}

pid_t
dirty_arbiter_spawn(struct settings *s, pid_t master_pid)
{
	struct arbiter_boot boot = { .s = s, .master_pid = master_pid };
	pid_t pid;

	log_info("Spawning dirty arbiter");
	pid = spawn_process(&(struct spawn_spec){
		.role = "dirty-arbiter",
		.cfg = s,
		.parent = master_pid,
		.close_all = 1,		/* never an HTTP listener, nor the master's pipe */
		.parent_death_signal = SIGUSR2,
		.parent_gone = arbiter_parent_gone,
		.boot_error = 1,
		.main = arbiter_main,
		.arg = &boot,
	});
	if (pid == -1) {
		log_warn("cannot fork the dirty arbiter");
		return -1;
	}
	log_info("Spawned dirty arbiter (pid: %d) at %s", (int)pid,
	    dirty_socket_path() != NULL ? dirty_socket_path() : "?");
	return pid;
}
