/*
 * master.c — the master role (gunicorn's "arbiter").
 *
 * Owns: the listeners, the table of children (HTTP workers and the dirty
 * arbiter), the heartbeat slots shared with HTTP workers, the pid file and
 * the signal pipe.  It forks and supervises; it never serves a request.
 *
 * Signals reach the one loop (master_loop) as bytes on a pipe
 * (sigpipe.c), so nothing else runs in a handler.  Its
 * children are forked by spawn_process() (spawn.c) with all signals
 * blocked and the dispositions reset; each role installs its own and
 * unblocks.  So are the USR2 re-exec (straight into exec) and --daemon's
 * two forks.
 *
 * Python runs here only for the config file, a preloaded app and hooks.
 *
 *   event       running                      stopping
 *   CHLD        reap, respawn (or halt)      reap
 *   TERM        stop gracefully              -
 *   INT, QUIT   stop at once                 escalate to at once
 *   HUP         reload config, rebind,       -
 *               new workers, old ones retire
 *   TTIN/TTOU   +1 / -1 worker               -
 *   USR1        reopen logs, forward         -
 *   USR2        re-exec a new master         -
 *   WINCH       (daemon) stop workers        -
 *   tick (1 s)  heartbeats, worker count     KILL past the deadline
 *
 * statsd (statsd.c): the master opens the socket every process sends
 * through, and sends gunicorn.workers when the count changes (and
 * gunicorn.backlog each turn with enable_backlog_metric), as gunicorn's
 * manage_workers() does.
 */
#include "master.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dirty.h"
#include "http_worker.h"
#include "listen.h"
#include "log.h"
#include "log_syslog.h"
#include "pidfile.h"
#include "proctitle.h"
#include "python.h"
#include "settings.h"
#include "sigpipe.h"
#include "spawn.h"
#include "statsd.h"
#include "tls.h"
#include "util.h"
#include "wsgi.h"

#define HEARTBEAT_SLOTS		1024
#define QUICK_STOP_MS		900	/* INT/QUIT: then KILL */
#define ARBITER_RESPAWN_MIN_MS	1000	/* crash-loop brake for the arbiter */

enum child_role { ROLE_HTTP_WORKER, ROLE_DIRTY_ARBITER };
enum child_state { CHILD_RUNNING, CHILD_STOPPING, CHILD_ABORTED };

struct child {
	pid_t pid;
	enum child_role role;
	enum child_state state;
	int slot;			/* heartbeat slot (HTTP workers) */
	int age;
	uint64_t deadline_ms;		/* STOPPING/ABORTED: KILL after this */
};

/* The master's state: the one master of this process. */
static struct {
	struct settings *cfg;
	int argc;
	char **argv;
	pid_t pid;
	struct listener *listeners;
	size_t nlisteners;
	volatile uint64_t *heartbeats;	/* HEARTBEAT_SLOTS, shared */
	unsigned char slot_used[HEARTBEAT_SLOTS];

	struct child *children;		/* the table of children */
	size_t nchildren;
	size_t cap;

	int num_workers;		/* wanted HTTP workers */
	int logged_workers;		/* the count last logged ("N workers") */
	int gauged_workers;		/* the count last sent to statsd, -1: none */
	int worker_age;
	int stopping;			/* 0, 1 graceful, 2 quick */
	int exit_code;
	char *halt_reason;
	uint64_t arbiter_last_spawn_ms;
	void *app;			/* preloaded WSGI app (PyObject *) */
	void *server_obj;		/* hook `server` object (PyObject *) */
	int warned_threads;
	int dirty;			/* dirty arbiter on: decided once, at start */
	int pidfile_written;
	char *start_cwd;		/* where we were started: USR2 re-execs from there */
	pid_t reexec_pid;		/* the new master we started on USR2, or 0 */
	pid_t old_master_pid;		/* the master that started us on USR2, while it
					   lives; unix socket files are shared with it */
} master;

/* ---- the table of children ---- */

static struct child *
child_add(pid_t pid, enum child_role role, int slot, int age)
{
	if (master.nchildren == master.cap) {
		master.cap = master.cap ? master.cap * 2 : 16;
		master.children = xreallocarray(master.children, master.cap, sizeof(*master.children));
	}
	struct child *c = &master.children[master.nchildren++];
	*c = (struct child){ .pid = pid, .role = role, .slot = slot, .age = age };
	return c;
}

static struct child *
child_find(pid_t pid)
{
	for (size_t i = 0; i < master.nchildren; i++)
		if (master.children[i].pid == pid)
			return &master.children[i];
	return NULL;
}

static void
child_remove(struct child *c)
{
	if (c->role == ROLE_HTTP_WORKER && c->slot >= 0)
		master.slot_used[c->slot] = 0;
	*c = master.children[--master.nchildren];
}

static int
count_role(enum child_role role, int running_only)
{
	int n = 0;
	for (size_t i = 0; i < master.nchildren; i++)
		if (master.children[i].role == role &&
		    (!running_only || master.children[i].state == CHILD_RUNNING))
			n++;
	return n;
}

static void
child_signal(struct child *c, int sig, uint64_t grace_ms)
{
	if (kill(c->pid, sig) == -1 && errno != ESRCH)
		log_warn("kill %d", (int)c->pid);
	if (c->state == CHILD_RUNNING || grace_ms == 0) {
		c->state = CHILD_STOPPING;
		c->deadline_ms = monotonic_ms() + grace_ms;
	}
}

/* ---- helpers ---- */

static void
call_hook_server(enum hook_id id)
{
	if (master.cfg->hooks[id] != NULL)
		python_hook(master.cfg, id, 1, master.server_obj);
}

/* nworkers_changed(server, new, old); old < 0: None (the first count). */
static void
call_hook_nworkers_changed(int new_value, int old_value)
{
	(void)python_hook_nworkers_changed(master.cfg, master.server_obj,
	    new_value, old_value);
}

static int
alloc_slot(void)
{
	for (int i = 0; i < HEARTBEAT_SLOTS; i++)
		if (!master.slot_used[i]) {
			master.slot_used[i] = 1;
			return i;
		}
	return -1;
}

/* Heartbeat memory: anonymous shared memory, or, when worker_tmp_dir is
 * set, a file there (unlinked at once) as gunicorn's tmp files are. */
static int
heartbeats_init(const struct settings *s)
{
	/* heartbeats, then each slot's load (connections held, gthread) */
	size_t size = 2 * HEARTBEAT_SLOTS * sizeof(uint64_t);
	void *p;

	if (s->worker_tmp_dir != NULL) {
		char *tmpl = xasprintf("%s/cunicorn-hb-XXXXXX", s->worker_tmp_dir);
		int fd = mkostemp(tmpl, O_CLOEXEC);
		if (fd == -1) {
			log_error("worker_tmp_dir %s", s->worker_tmp_dir);
			free(tmpl);
			return -1;
		}
		unlink(tmpl);
		free(tmpl);
		if (ftruncate(fd, (off_t)size) == -1) {
			log_error("worker_tmp_dir %s", s->worker_tmp_dir);
			close(fd);
			return -1;
		}
		p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		close(fd);
	} else
		p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		log_error("mmap heartbeats");
		return -1;
	}
	master.heartbeats = p;
	return 0;
}

/* ---- signals ---- */

static const int master_signals[] = {
	SIGCHLD, SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGTTIN, SIGTTOU,
	SIGUSR1, SIGUSR2, SIGWINCH,
};

/*
 * Signals are bytes on a pipe (sigpipe.h) the loop reads.  They are not
 * kept blocked in the master, so that a process a hook starts (subprocess
 * from on_starting, say) does not inherit a blocked mask and ignore TERM;
 * our own forks block everything around fork() instead (spawn.c), and
 * each child role unblocks once its handlers are in.
 */
static int sig_fd = -1;

/* ---- spawning ---- */

static void
warn_threads(void)
{
	if (!master.warned_threads && python_threads_running()) {
		master.warned_threads = 1;
		log_warnx("A Python thread is running in the master (started by the "
		    "config file or the preloaded app): forking now is unsafe");
	}
}

/* What an HTTP worker child needs from the master (on the parent's stack:
 * the child has its copy). */
struct http_worker_boot {
	int slot;
	int age;
	void *wobj;			/* the pre_fork hook's worker object, or NULL */
};

static void
http_worker_booting(void *arg)
{
	log_info("Booting worker with pid: %d", (int)getpid());
}

/* The HTTP worker child, after spawn_process() made it one: the post_fork
 * hook, then the role. */
static void __attribute__((noreturn))
http_worker_child(void *arg)
{
	struct http_worker_boot *b = arg;
	struct http_worker_ctx ctx;

	if (master.cfg->hooks[HOOK_POST_FORK] != NULL) {
		python_release(b->wobj);
		b->wobj = python_worker_object(master.cfg, getpid(), b->age);
		python_hook(master.cfg, HOOK_POST_FORK, 2, master.server_obj, b->wobj);
	}
	python_release(b->wobj);
	ctx = (struct http_worker_ctx){
		.cfg = master.cfg,
		.listeners = master.listeners,
		.nlisteners = master.nlisteners,
		.heartbeat = &master.heartbeats[b->slot],
		.heartbeats = master.heartbeats,
		.loads = &master.heartbeats[HEARTBEAT_SLOTS],
		.slot = b->slot,
		.nslots = HEARTBEAT_SLOTS,
		.master_pid = master.pid,
		.age = b->age,
		.app = master.app,
	};
	http_worker_main(&ctx);
}

/*
 * An HTTP worker keeps what the master inherited or Python opened in it
 * (listeners, GUNICORN_FD and systemd sockets, descriptors a preloaded app
 * shares with its workers, as under gunicorn); it closes the master's own:
 * the signal pipe.
 */
static void
spawn_http_worker(void)
{
	struct http_worker_boot b = { .slot = alloc_slot(), .age = ++master.worker_age };
	pid_t pid;

	if (b.slot < 0) {
		log_errorx("too many workers (max %d)", HEARTBEAT_SLOTS);
		return;
	}
	master.heartbeats[b.slot] = monotonic_ms();
	master.heartbeats[HEARTBEAT_SLOTS + b.slot] = 0;	/* its load */
	if (master.cfg->hooks[HOOK_PRE_FORK] != NULL) {
		b.wobj = python_worker_object(master.cfg, 0, b.age);
		python_hook(master.cfg, HOOK_PRE_FORK, 2, master.server_obj, b.wobj);
	}
	warn_threads();
	pid = spawn_process(&(struct spawn_spec){
		.role = "worker",
		.cfg = master.cfg,
		.parent = master.pid,
		.python = 1,
		.parent_death_signal = SIGTERM,
		.booting = http_worker_booting,
		.drop_privileges = 1,
		.boot_error = WORKER_BOOT_ERROR,
		.main = http_worker_child,
		.arg = &b,
	});
	python_release(b.wobj);
	if (pid == -1) {
		log_error("fork");
		master.slot_used[b.slot] = 0;
		return;
	}
	child_add(pid, ROLE_HTTP_WORKER, b.slot, b.age);
}

static void
spawn_arbiter(void)
{
	pid_t pid;

	master.arbiter_last_spawn_ms = monotonic_ms();
	pid = dirty_arbiter_spawn(master.cfg, master.pid);
	if (pid > 0)
		child_add(pid, ROLE_DIRTY_ARBITER, -1, 0);
}

/* Keep the wanted number of HTTP workers; retire the oldest extra ones. */
static void
manage_workers(void)
{
	int running = count_role(ROLE_HTTP_WORKER, 1);

	while (running < master.num_workers && !master.stopping) {
		spawn_http_worker();
		running++;
	}
	while (running > master.num_workers) {
		struct child *oldest = NULL;
		for (size_t i = 0; i < master.nchildren; i++) {
			struct child *c = &master.children[i];
			if (c->role == ROLE_HTTP_WORKER && c->state == CHILD_RUNNING &&
			    (oldest == NULL || c->age < oldest->age))
				oldest = c;
		}
		if (oldest == NULL)
			break;
		child_signal(oldest, SIGTERM, (uint64_t)master.cfg->graceful_timeout * 1000);
		running--;
	}
	if (running != master.logged_workers) {	/* gunicorn's debug line */
		master.logged_workers = running;
		log_debug("%d workers", running);
	}
	if (running != master.gauged_workers) {	/* and its metric */
		master.gauged_workers = running;
		statsd_gauge("gunicorn.workers", running);
	}
	if (master.cfg->enable_backlog_metric) {
		int backlog = listeners_backlog(master.listeners, master.nlisteners);
		log_debug("socket backlog: %d", backlog);
		statsd_histogram("gunicorn.backlog", backlog);
	}
	if (master.dirty && !master.stopping &&
	    count_role(ROLE_DIRTY_ARBITER, 0) == 0 &&
	    monotonic_ms() - master.arbiter_last_spawn_ms >= ARBITER_RESPAWN_MIN_MS)
		spawn_arbiter();
}

/* ---- reaping ---- */

static void
halt(const char *reason, int code)
{
	if (master.halt_reason == NULL)
		master.halt_reason = xstrdup(reason);
	master.exit_code = code;
}

static void
reap(void)
{
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		struct child *c = child_find(pid);
		if (pid == master.reexec_pid) {
			log_warnx("The new master (pid: %d) exited; this one stays in charge",
			    (int)pid);
			master.reexec_pid = 0;
			if (master.pidfile_written)
				pidfile_oldbin(master.cfg->pidfile, 0);
			continue;
		}
		if (c == NULL)
			continue;
		if (c->role == ROLE_DIRTY_ARBITER) {
			if (WIFSIGNALED(status))
				log_msg(master.stopping ? LOG_INFO : LOG_WARNING,
				    "Dirty arbiter (pid:%d) was terminated by signal %d",
				    (int)pid, WTERMSIG(status));
			else if (!master.stopping || WEXITSTATUS(status) != 0)
				log_msg(master.stopping ? LOG_INFO : LOG_WARNING,
				    "Dirty arbiter (pid:%d) exited with code %d",
				    (int)pid, WEXITSTATUS(status));
			child_remove(c);
			continue;
		}
		if (WIFEXITED(status)) {
			int code = WEXITSTATUS(status);
			if (code == WORKER_BOOT_ERROR && c->state == CHILD_RUNNING)
				halt("Worker failed to boot.", WORKER_BOOT_ERROR);
			else if (code == APP_LOAD_ERROR && c->state == CHILD_RUNNING)
				halt("App failed to load.", APP_LOAD_ERROR);
			else if (code != 0)
				log_errorx("Worker (pid:%d) exited with code %d", (int)pid, code);
		} else if (WIFSIGNALED(status)) {
			int sig = WTERMSIG(status);
			if (sig == SIGKILL)
				log_errorx("Worker (pid:%d) was sent SIGKILL! Perhaps out of memory?", (int)pid);
			else if (c->state == CHILD_RUNNING || sig != SIGTERM)
				log_warnx("Worker with pid %d was terminated due to signal %d", (int)pid, sig);
		}
		if (master.cfg->hooks[HOOK_CHILD_EXIT] != NULL) {
			void *w = python_worker_object(master.cfg, pid, c->age);
			python_hook(master.cfg, HOOK_CHILD_EXIT, 2, master.server_obj, w);
			python_release(w);
		}
		child_remove(c);
	}
}

/* Heartbeats and stop deadlines, once a tick. */
static void
check_children(void)
{
	uint64_t now = monotonic_ms();

	for (size_t i = 0; i < master.nchildren; i++) {
		struct child *c = &master.children[i];

		if (c->state != CHILD_RUNNING) {
			if (now >= c->deadline_ms) {
				kill(c->pid, SIGKILL);
				c->deadline_ms = now + 60000;	/* once */
			}
			continue;
		}
		if (c->role != ROLE_HTTP_WORKER || master.cfg->timeout <= 0)
			continue;
		uint64_t hb = master.heartbeats[c->slot];	/* may be a hair newer than now */
		if (hb < now && now - hb > (uint64_t)master.cfg->timeout * 1000) {
			log_msg(LOG_CRITICAL, "WORKER TIMEOUT (pid:%d)", (int)c->pid);
			kill(c->pid, SIGABRT);
			c->state = CHILD_ABORTED;
			c->deadline_ms = now + 1000;	/* then KILL, as gunicorn */
		}
	}
}

/* ---- signals: the rest ---- */

static void
signal_children(int sig)
{
	for (size_t i = 0; i < master.nchildren; i++)
		kill(master.children[i].pid, sig);
}

/* Whether another master (USR2's old or new one) serves our listeners,
 * in which case the unix socket files are not ours to remove. */
static int
shares_listeners(void)
{
	if (master.old_master_pid != 0 && getppid() != master.old_master_pid)
		master.old_master_pid = 0;
	return master.reexec_pid != 0 || master.old_master_pid != 0;
}

/* Begin stopping: graceful (TERM) or quick (QUIT). */
static void
begin_stop(int quick)
{
	uint64_t http_grace, dirty_grace;

	if (master.stopping == 2 || (master.stopping == 1 && !quick))
		return;
	master.stopping = quick ? 2 : 1;
	if (master.listeners != NULL) {
		listeners_close(master.listeners, master.nlisteners, !shares_listeners());
		master.listeners = NULL;
		master.nlisteners = 0;
	}
	http_grace = quick ? QUICK_STOP_MS : (uint64_t)master.cfg->graceful_timeout * 1000;
	dirty_grace = quick ? QUICK_STOP_MS
	    : ((uint64_t)master.cfg->dirty_graceful_timeout + 2) * 1000;
	for (size_t i = 0; i < master.nchildren; i++) {
		struct child *c = &master.children[i];
		uint64_t grace = c->role == ROLE_DIRTY_ARBITER ? dirty_grace : http_grace;
		c->state = CHILD_RUNNING;	/* re-arm the deadline */
		child_signal(c, quick ? SIGQUIT : SIGTERM, grace);
	}
}

static int
same_str(const char *a, const char *b)
{
	return (a == NULL || b == NULL) ? a == b : strcmp(a, b) == 0;
}

/* The settings the running processes were built from (the dirty arbiter
 * and its runtime dir, named after proc_name; the privileges dropped):
 * a reload keeps their values, and says so. */
static void
keep_restart_only_settings(struct settings *ns, const struct settings *old)
{
	char *names = settings_keep_restart_only(ns, old);

	if (names != NULL)
		log_warnx("Reload: %s need a restart; kept the running values", names);
	free(names);
}

/* gunicorn's debug dump of every setting, one record. */
static void
log_current_configuration(const struct settings *s)
{
	char *text;

	if (log_get_level() > LOG_DEBUG)
		return;
	text = settings_describe(s);
	log_debug("Current configuration:\n%s", text);
	free(text);
}

/* "Listening at: ..." for every listener; https:// when TLS is on, as
 * gunicorn's with certfile. */
static void
log_listening(void)
{
	for (size_t i = 0; i < master.nlisteners; i++) {
		const char *name = master.listeners[i].name;
		if (tls_enabled() && strncmp(name, "http://", 7) == 0)
			log_info("Listening at: https://%s (%d)", name + 7,
			    (int)master.pid);
		else
			log_info("Listening at: %s (%d)", name, (int)master.pid);
	}
}

/* A HUP whose TLS context cannot be built: the running one stays, and
 * the settings it was built from with it. */
static void
keep_tls_settings(struct settings *ns, const struct settings *old)
{
	char **fields[] = { &ns->certfile, &ns->keyfile, &ns->ca_certs, &ns->ciphers };
	const char *values[] = { old->certfile, old->keyfile, old->ca_certs, old->ciphers };

	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		free(*fields[i]);
		*fields[i] = values[i] != NULL ? xstrdup(values[i]) : NULL;
	}
	ns->cert_reqs = old->cert_reqs;
	ns->ssl_version = old->ssl_version;
	ns->suppress_ragged_eofs = old->suppress_ragged_eofs;
}

static void
reload(void)
{
	struct settings ns;
	int old_workers = master.num_workers, rc;
	char *config;

	log_info("Hang up: Master");
	settings_defaults(&ns);
	if (settings_parse_args(&ns, master.argc, master.argv) == -1 ||
	    (getenv("GUNICORN_CMD_ARGS") != NULL &&
	     settings_parse_env(&ns, getenv("GUNICORN_CMD_ARGS")) == -1)) {
		log_errorx("Reload failed: keeping the current configuration");
		settings_free(&ns);
		return;
	}
	/* the file loaded at start (made absolute by main), even when it was
	 * ./gunicorn.conf.py found by default */
	config = master.cfg->config != NULL ? xstrdup(master.cfg->config) : NULL;
	rc = config != NULL ? settings_load_file(&ns, config) : settings_apply_overrides(&ns);
	if (rc == -1 || settings_finalize(&ns) == -1) {
		log_errorx("Reload failed: keeping the current configuration");
		settings_free(&ns);
		free(config);
		return;
	}
	if (config != NULL) {
		free(ns.config);
		ns.config = config;
	}
	ns.default_proc_name = ns.default_proc_name ? ns.default_proc_name
	    : (master.cfg->default_proc_name ? xstrdup(master.cfg->default_proc_name) : NULL);
	keep_restart_only_settings(&ns, master.cfg);
	/* certificate rotation: the workers forked from here on get a
	 * context read from the files again */
	{
		char why[PATH_MAX + 400];
		if (tls_context_build(&ns, why, sizeof(why)) == -1) {
			log_errorx("Reload: %s; kept the running TLS context", why);
			keep_tls_settings(&ns, master.cfg);
		}
	}
	if (log_open(ns.errorlog, ns.accesslog, ns.loglevel) == -1)
		log_warn("reopening logs");
	{
		char why[256];
		if (master_syslog(&ns, why, sizeof(why)) == -1)
			log_errorx("Reload: syslog_addr %s: %s; kept the running "
			    "syslog setting", ns.syslog_addr, why);
	}
	/* a changed bind: the addresses kept keep their sockets (gunicorn
	 * closes and binds them all again, refusing connections meanwhile) */
	if (!strlist_equal(&ns.bind, &master.cfg->bind)) {
		if (listeners_rebind(&ns, &master.listeners, &master.nlisteners,
		    !shares_listeners()) == 0) {
			log_listening();
		} else {
			log_errorx("Reload: cannot bind the new addresses; kept the "
			    "running listeners");
			strlist_assign(&ns.bind, &master.cfg->bind);
		}
	}
	/* a new pid file: the old one goes (as gunicorn's reload); during a
	 * USR2 upgrade ours is .oldbin and stays where it is */
	if (!same_str(ns.pidfile, master.cfg->pidfile)) {
		if (master.reexec_pid > 0) {
			log_warnx("Reload: pidfile kept during a binary upgrade");
			free(ns.pidfile);
			ns.pidfile = master.cfg->pidfile ? xstrdup(master.cfg->pidfile) : NULL;
		} else {
			if (master.pidfile_written)
				pidfile_remove(master.cfg->pidfile, 0, master.pid);
			master.pidfile_written = ns.pidfile != NULL &&
			    pidfile_write(ns.pidfile) == 0;
		}
	}
	settings_free(master.cfg);
	*master.cfg = ns;
	/* the statsd settings are read again (gunicorn keeps its first
	 * ones): the new workers send where they say; the gauge again */
	statsd_configure(master.cfg);
	master.gauged_workers = -1;
	log_current_configuration(master.cfg);	/* gunicorn's setup() again */
	python_setup_paths(master.cfg);
	if (master.app != NULL) {		/* a preloaded app is loaded again */
		void *app = python_load_app(master.cfg->app_uri);
		if (app != NULL) {
			python_release(master.app);
			master.app = app;
		}
	}
	python_release(master.server_obj);
	master.server_obj = python_server_object(master.cfg, master.pid);
	call_hook_server(HOOK_ON_RELOAD);
	master.num_workers = master.cfg->workers;
	if (master.num_workers != old_workers)
		call_hook_nworkers_changed(master.num_workers, old_workers);
	/* new workers first, then the old ones retire gracefully */
	for (size_t i = 0; i < master.nchildren; i++) {
		struct child *c = &master.children[i];
		if (c->role == ROLE_HTTP_WORKER && c->state == CHILD_RUNNING)
			child_signal(c, SIGTERM, (uint64_t)master.cfg->graceful_timeout * 1000);
		else if (c->role == ROLE_DIRTY_ARBITER)
			kill(c->pid, SIGHUP);
	}
	for (int i = 0; i < master.num_workers; i++)
		spawn_http_worker();
}

static void
set_num_workers(int n)
{
	int old = master.num_workers;

	if (n < 1 || n > HEARTBEAT_SLOTS / 2)
		return;
	master.num_workers = n;
	call_hook_nworkers_changed(n, old);
}

/* What the USR2 child needs (on the parent's stack: the child has its copy). */
struct reexec_boot {
	char exe[4096];
};

/* The USR2 child: hand the listeners over, exec the binary now on disk. */
static void __attribute__((noreturn))
reexec_child(void *arg)
{
	struct reexec_boot *b = arg;
	char fds[512];
	size_t off = 0;
	sigset_t none;

	for (size_t i = 0; i < master.nlisteners && off < sizeof(fds) - 16; i++) {
		fd_set_cloexec(master.listeners[i].fd, 0);
		off += (size_t)snprintf(fds + off, sizeof(fds) - off, "%s%d",
		    i ? "," : "", master.listeners[i].fd);
	}
	setenv("GUNICORN_FD", fds, 1);
	/* who we were started by: by the time the new master reads
	 * getppid() we may already be gone */
	snprintf(fds, sizeof(fds), "%d", (int)master.pid);
	setenv("GUNICORN_PID", fds, 1);
	unsetenv("GUNICORN_DIRTY_SOCKET");
	if (master.start_cwd != NULL && chdir(master.start_cwd) == -1)
		log_warn("USR2: chdir %s", master.start_cwd);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	execv(b->exe, master.argv);
	log_error("USR2: exec %s", b->exe);
	_exit(1);
}

/*
 * SIGUSR2: start a new master from the binary now on disk, handing it our
 * listeners ($GUNICORN_FD, as gunicorn), so an upgrade never closes the
 * port.  Both masters serve until the operator stops the old one (WINCH
 * then TERM, or QUIT).  Our pid file moves to PIDFILE.oldbin; it moves back
 * if the new master dies.
 */
static void
reexec(void)
{
	struct reexec_boot b;
	ssize_t n;
	pid_t pid;

	if (master.reexec_pid > 0) {
		log_warnx("USR2 ignored: the new master (pid: %d) is still running",
		    (int)master.reexec_pid);
		return;
	}
	/* the path we run from; after an upgrade in place, the new file */
	n = readlink("/proc/self/exe", b.exe, sizeof(b.exe) - 1);
	if (n <= 0) {
		log_error("USR2: readlink /proc/self/exe");
		return;
	}
	b.exe[n] = '\0';
	if (n > 10 && strcmp(b.exe + n - 10, " (deleted)") == 0)
		b.exe[n - 10] = '\0';
	if (master.pidfile_written)
		pidfile_oldbin(master.cfg->pidfile, 1);
	call_hook_server(HOOK_PRE_EXEC);
	/* no title, no Python: it execs at once */
	pid = spawn_process(&(struct spawn_spec){
		.parent = master.pid,
		.boot_error = 1,
		.main = reexec_child,
		.arg = &b,
	});
	if (pid == -1) {
		log_error("USR2: fork");
		return;
	}
	master.reexec_pid = pid;
	log_info("Re-executing %s: new master (pid: %d)", b.exe, (int)pid);
}

static const char *
signame(int sig)
{
	switch (sig) {
	case SIGTERM: return "term";
	case SIGINT: return "int";
	case SIGQUIT: return "quit";
	case SIGHUP: return "hup";
	case SIGTTIN: return "ttin";
	case SIGTTOU: return "ttou";
	case SIGUSR1: return "usr1";
	case SIGUSR2: return "usr2";
	case SIGWINCH: return "winch";
	default: return "?";
	}
}

static void
handle_signal(int sig)
{
	if (sig == SIGCHLD) {
		reap();
		return;
	}
	if (sig == SIGWINCH && !master.cfg->daemon) {
		log_debug("SIGWINCH ignored. Not daemonized");
		return;
	}
	log_info("Handling signal: %s", signame(sig));
	switch (sig) {
	case SIGTERM:
		begin_stop(0);
		break;
	case SIGINT:
	case SIGQUIT:
		begin_stop(1);
		break;
	case SIGHUP:
		if (!master.stopping)
			reload();
		break;
	case SIGTTIN:
		if (!master.stopping)
			set_num_workers(master.num_workers + 1);
		break;
	case SIGTTOU:
		if (!master.stopping)
			set_num_workers(master.num_workers - 1);
		break;
	case SIGUSR1:
		log_reopen();
		signal_children(SIGUSR1);
		break;
	case SIGUSR2:
		if (!master.stopping)
			reexec();
		break;
	case SIGWINCH:
		log_info("graceful stop of workers");
		master.num_workers = 0;
		break;
	}
}

/* ---- the loop ---- */

static void
master_loop(void)
{
	struct pollfd pfd = { .fd = sig_fd, .events = POLLIN };

	for (;;) {
		int timeout = master.stopping ? 50 : 1000, sig;

		if (poll(&pfd, 1, timeout) == -1 && errno != EINTR)
			fatal("poll");
		while ((sig = sigpipe_next()) != 0)
			handle_signal(sig);
		reap();		/* CHLD may coalesce with other signals */
		if (master.halt_reason != NULL && !master.stopping)
			begin_stop(0);
		check_children();
		if (master.stopping) {
			if (master.nchildren == 0)
				return;
			continue;
		}
		if (master.old_master_pid != 0 && getppid() != master.old_master_pid) {
			log_info("Master has been promoted.");
			master.old_master_pid = 0;
			python_setenv("GUNICORN_PID", NULL);	/* as gunicorn */
		}
		manage_workers();
	}
}

/* ---- start and stop ---- */

static void
apply_raw_env(const struct settings *s)
{
	for (size_t i = 0; i < s->raw_env.len; i++) {
		char *kv = xstrdup(s->raw_env.items[i]);
		char *eq = strchr(kv, '=');
		if (eq != NULL) {
			*eq = '\0';
			python_setenv(kv, eq + 1);
		}
		free(kv);
	}
}

/* Everything the master holds, released once, on every way out. */
static void
master_release(void)
{
	if (master.listeners != NULL) {
		listeners_close(master.listeners, master.nlisteners, !shares_listeners());
		master.listeners = NULL;
	}
	/* after USR2 the pid file is the new master's: ours is .oldbin */
	if (master.pidfile_written)
		pidfile_remove(master.cfg->pidfile, master.reexec_pid > 0, master.pid);
	if (master.dirty)
		dirty_master_cleanup();
	log_info("Shutting down: Master");
	if (master.halt_reason != NULL)
		log_info("Reason: %s", master.halt_reason);
	sigpipe_close();
	if (master.heartbeats != NULL)
		munmap((void *)master.heartbeats, 2 * HEARTBEAT_SLOTS * sizeof(uint64_t));
	python_release(master.server_obj);
	python_release(master.app);
	free(master.children);
	free(master.halt_reason);
	free(master.start_cwd);
}

int
master_syslog(const struct settings *s, char *why, size_t whylen)
{
	if (!s->syslog) {
		log_syslog_close();
		return 0;
	}
	return log_syslog_open(s->syslog_addr, s->syslog_facility,
	    s->syslog_prefix, settings_proc_name(s),
	    !s->disable_redirect_access_to_syslog, why, whylen);
}

int
master_main(struct settings *s, int argc, char **argv, const char *start_cwd)
{
	master.cfg = s;
	master.start_cwd = start_cwd ? xstrdup(start_cwd) : NULL;
	/* started by USR2: the old master named itself (gunicorn's variable);
	 * while it is our parent, the listeners are shared with it */
	if (getenv("GUNICORN_FD") != NULL) {
		const char *env = getenv("GUNICORN_PID");
		char *end;
		long pid = env != NULL ? strtol(env, &end, 10) : 0;

		/* from a master too old to say: its child, unless it died */
		master.old_master_pid = env != NULL && *env != '\0' && *end == '\0' &&
		    pid > 1 && pid <= INT_MAX ? (pid_t)pid : getppid();
	}
	master.argc = argc;
	master.argv = argv;
	master.num_workers = s->workers;

	if (s->daemon && spawn_daemon() == -1)
		fatal("daemonize");
	master.pid = getpid();
	umask(s->umask);
	apply_raw_env(s);
	if (s->capture_output && log_error_fd() != STDERR_FILENO) {
		dup2(log_error_fd(), STDOUT_FILENO);
		dup2(log_error_fd(), STDERR_FILENO);
	}
	log_rebind();	/* "-" logs are on descriptors the above replaced */
	/* before anything that logs a warning and before any fork: every
	 * process sends through this socket (gunicorn makes its statsd
	 * logger here, in Arbiter.setup()) */
	statsd_configure(s);
	master.server_obj = python_server_object(s, master.pid);
	master.logged_workers = -1;
	master.gauged_workers = -1;
	/* gunicorn's Arbiter.setup(): the count goes from None to workers,
	 * then the whole configuration at debug */
	call_hook_nworkers_changed(master.num_workers, -1);
	log_current_configuration(s);
	call_hook_server(HOOK_ON_STARTING);
	log_info("Starting %s %s", "cunicorn", "0.1.0");

	sig_fd = sigpipe_open(master_signals, sizeof(master_signals) / sizeof(master_signals[0]));
	master.dirty = dirty_enabled(s);
	if (master.dirty) {
		if (dirty_prepare(s) == -1) {
			master.dirty = 0;	/* nothing of ours to clean up */
			goto fail;
		}
		python_setenv("GUNICORN_DIRTY_SOCKET", dirty_socket_path());
	}
	/* gunicorn imports a preloaded app before it binds: an app that
	 * fails to load never holds the port */
	if (s->preload_app && s->reload)
		log_warnx("reload with preload_app: the app's code is loaded "
		    "once, in the master; a change restarts the workers with "
		    "that same code (restart the server to load it)");
	if (s->preload_app && (master.app = python_load_app(s->app_uri)) == NULL) {
		halt("App failed to load.", APP_LOAD_ERROR);
		goto fail;
	}
	/* gunicorn's order: the pid file exists before the port answers, so a
	 * script that waits for the port can read it */
	if (s->pidfile != NULL) {
		if (pidfile_write(s->pidfile) == -1)
			goto fail;
		master.pidfile_written = 1;
	}
	if (listeners_open(s, &master.listeners, &master.nlisteners) == -1)
		goto fail;
	log_debug("Arbiter booted");
	log_listening();
	log_info("Using worker: %s", master.cfg->worker_class);
	if (heartbeats_init(s) == -1)
		goto fail;
	proctitle_set("%s: master [%s]", proctitle_prog(), settings_proc_name(s));

	if (!s->preload_app)
		python_warm_import(s->app_uri);
	if (wsgi_prepare() == -1)	/* workers try again and report */
		python_error_clear();
	python_freeze();
	if (master.dirty) {
		if (s->hooks[HOOK_ON_DIRTY_STARTING] != NULL)
			python_hook(s, HOOK_ON_DIRTY_STARTING, 1, master.server_obj);
		spawn_arbiter();
	}
	manage_workers();
	call_hook_server(HOOK_WHEN_READY);

	master_loop();
	call_hook_server(HOOK_ON_EXIT);
	master_release();
	return master.exit_code;

fail:
	/* a start that failed half-way leaves nothing behind either */
	master_release();
	return master.exit_code ? master.exit_code : 1;
}
