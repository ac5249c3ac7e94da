/*
 * test_log_syslog.c — syslog's sender (src/log_syslog.c) against unix
 * datagram receivers of the test's own: syslog_prefix's check; a NUL in
 * a line sent as a space; a new setting that cannot be made (no
 * descriptor left) leaving the old one whole; one deadline per line, the
 * wait for the lock included (a line behind a slow one has only what is
 * left of its second); a fork while another thread holds the lock (the
 * child logs at once); syslog turned off.
 *
 * A receiver "full" is one whose queue takes nothing more: the syslog
 * socket itself is sent datagrams until it says EAGAIN, whatever limit
 * (the receiver's queue length, the sender's buffer) is reached first.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "check.h"
#include "log.h"
#include "log_syslog.h"

static char dir[] = "/tmp/cu-syslog-unit-XXXXXX";

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A unix datagram receiver at dir/name; its path in path. */
static int
receiver(const char *name, char *path, size_t size)
{
	struct sockaddr_un un = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	snprintf(path, size, "%s/%s", dir, name);
	snprintf(un.sun_path, sizeof(un.sun_path), "%s", path);
	if (fd == -1 || bind(fd, (struct sockaddr *)&un, sizeof(un)) == -1) {
		perror("receiver");
		exit(2);
	}
	return fd;
}

/* The next message within timeout_ms whose text contains needle (the
 * others are skipped): its length, with the message in buf; -1 none. */
static ssize_t
recv_match(int fd, const char *needle, int timeout_ms, char *buf, size_t size)
{
	int64_t end = now_ms() + timeout_ms;

	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int64_t left = end - now_ms();
		ssize_t n;

		if (left < 0 || poll(&p, 1, (int)left) <= 0)
			return -1;
		if ((n = recv(fd, buf, size - 1, MSG_DONTWAIT)) <= 0)
			continue;
		buf[n] = '\0';
		if (memmem(buf, (size_t)n, needle, strlen(needle)) != NULL)
			return n;
	}
}

static void
drain(int fd)
{
	char b[16];

	while (recv(fd, b, sizeof(b), MSG_DONTWAIT) >= 0)
		;
}

/* Fill the receiver of the syslog socket (see the header). */
static void
fill(void)
{
	int fd = log_syslog_fd();

	for (int i = 0; i < 1000000; i++)
		if (send(fd, "x", 1, MSG_DONTWAIT) == -1)
			break;
}

/* Whether thread tid is in system call nr (/proc/self/task/TID/syscall),
 * waiting up to 5 s for it. */
static int
in_syscall(pid_t tid, long nr)
{
	char path[64], text[64];

	snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", (int)tid);
	for (int i = 0; i < 5000; i++) {
		FILE *f = fopen(path, "r");
		int got = 0;

		if (f != NULL) {
			got = fgets(text, sizeof(text), f) != NULL &&
			    strtol(text, NULL, 10) == nr;
			fclose(f);
		}
		if (got)
			return 1;
		usleep(1000);
	}
	return 0;
}

#ifdef SYS_poll
#define POLL_NR SYS_poll
#else
#define POLL_NR SYS_ppoll
#endif

static int
open_to(const char *path, const char *facility, const char *prefix)
{
	char addr[256], why[256];

	snprintf(addr, sizeof(addr), "unix://%s#dgram", path);
	if (log_syslog_open(addr, facility, prefix, "app:main", 1, why,
	    sizeof(why)) == -1) {
		fprintf(stderr, "log_syslog_open: %s\n", why);
		return -1;
	}
	return 0;
}

static void
send_line(const char *text)
{
	log_syslog_line(LOG_SYSLOG_ERROR, LOG_INFO, text, strlen(text));
}

/* ---- the tests ---- */

static void
test_prefix_check(void)
{
	char long_one[SYSLOG_PREFIX_MAX + 2];

	CHECK(log_syslog_check_prefix("") == NULL);
	CHECK(log_syslog_check_prefix("web-1.eu west") == NULL);
	memset(long_one, 'a', sizeof(long_one) - 1);
	long_one[sizeof(long_one) - 1] = '\0';
	CHECK_STR(log_syslog_check_prefix(long_one), "too long");
	long_one[SYSLOG_PREFIX_MAX] = '\0';
	CHECK(log_syslog_check_prefix(long_one) == NULL);
	CHECK_STR(log_syslog_check_prefix("a\nb"),
	    "only printable ASCII characters");
	CHECK_STR(log_syslog_check_prefix("caf\xc3\xa9"),
	    "only printable ASCII characters");
	CHECK_STR(log_syslog_check_prefix("a\x7f"),
	    "only printable ASCII characters");
}

/* A NUL in the line (an app's bytes in an access line) is a space: a
 * stream's receiver would take it for the message's end. */
static void
test_nul_is_a_space(int r1)
{
	static const char line[] = "GET /a\0b HTTP/1.1";
	char buf[512], want[256];
	ssize_t n;
	int len;

	drain(r1);
	log_syslog_line(LOG_SYSLOG_ACCESS, LOG_INFO, line, sizeof(line) - 1);
	len = snprintf(want, sizeof(want),
	    "<14>gunicorn.first.access: [%d] GET /a b HTTP/1.1", (int)getpid());
	n = recv_match(r1, "GET /a", 2000, buf, sizeof(buf));
	CHECK_MSG(n == len + 1 && memcmp(buf, want, (size_t)len + 1) == 0,
	    "got %zd bytes: %s", n, n > 0 ? buf : "");
}

/* A new setting that cannot be made (no descriptor left for its socket)
 * is refused, and the old one stays whole: address, tag, facility. */
static void
test_failed_open_keeps_the_old_setting(int r1, int r2, const char *path2)
{
	struct rlimit saved, low;
	int fds[64], nfds = 0, rc, fd;
	char buf[512], want[256], addr[256], why[256];
	ssize_t n;

	getrlimit(RLIMIT_NOFILE, &saved);
	low = saved;
	low.rlim_cur = 64;
	if (setrlimit(RLIMIT_NOFILE, &low) == -1) {
		CHECK_MSG(0, "setrlimit: %s", strerror(errno));
		return;
	}
	while (nfds < 64 && (fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) != -1)
		fds[nfds++] = fd;
	snprintf(addr, sizeof(addr), "unix://%s#dgram", path2);
	rc = log_syslog_open(addr, "local3", "second", "app:main", 1, why,
	    sizeof(why));
	while (nfds > 0)
		close(fds[--nfds]);
	setrlimit(RLIMIT_NOFILE, &saved);
	CHECK(rc == -1);
	CHECK_MSG(strstr(why, "socket") != NULL, "why: %s", why);

	drain(r1);
	drain(r2);
	send_line("kept after a failed open");
	snprintf(want, sizeof(want),
	    "<14>gunicorn.first.error: [%d] kept after a failed open",
	    (int)getpid());
	n = recv_match(r1, "kept after", 2000, buf, sizeof(buf));
	CHECK_MSG(n > 0 && strcmp(buf, want) == 0, "got: %s",
	    n > 0 ? buf : "nothing");
	CHECK(recv_match(r2, "kept after", 200, buf, sizeof(buf)) == -1);
}

struct liner {
	const char *text;
	pid_t tid;			/* set before it logs */
	int64_t start, took;		/* ms */
};

static void *
liner_run(void *arg)
{
	struct liner *l = arg;

	l->start = now_ms();
	__atomic_store_n(&l->tid, (pid_t)syscall(SYS_gettid), __ATOMIC_SEQ_CST);
	send_line(l->text);
	l->took = now_ms() - l->start;
	return NULL;
}

static pid_t
liner_start(pthread_t *t, struct liner *l)
{
	pid_t tid;

	pthread_create(t, NULL, liner_run, l);
	while ((tid = __atomic_load_n(&l->tid, __ATOMIC_SEQ_CST)) == 0)
		usleep(1000);
	return tid;
}

/* A waits for room, holding the lock; B waits for the lock.  A's line
 * goes through after 800 ms (the receiver takes one): B has what is
 * left of its own second, not a second more after A. */
static void
test_one_deadline_per_line(int r1)
{
	struct liner a = { .text = "line A" }, b = { .text = "line B" };
	pthread_t ta, tb;
	char buf[512], want[128];
	int64_t read_at;

	drain(r1);
	fill();
	CHECK(in_syscall(liner_start(&ta, &a), POLL_NR));
	CHECK(in_syscall(liner_start(&tb, &b), SYS_futex));
	read_at = a.start + 800;
	while (now_ms() < read_at)
		usleep(1000);
	(void)recv(r1, buf, sizeof(buf), MSG_DONTWAIT);	/* room for one */
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	CHECK_MSG(b.took < 1300, "B took %lld ms", (long long)b.took);
	CHECK_MSG(a.took >= 700 && a.took < 1300, "A took %lld ms",
	    (long long)a.took);

	/* A's line went, B's was lost and is counted */
	CHECK(recv_match(r1, "line A", 2000, buf, sizeof(buf)) > 0);
	drain(r1);
	send_line("after");
	CHECK(recv_match(r1, "after", 2000, buf, sizeof(buf)) > 0);
	snprintf(want, sizeof(want), "syslog: 1 lines lost: unix://");
	CHECK_MSG(recv_match(r1, want, 2000, buf, sizeof(buf)) > 0,
	    "no \"%s\"", want);
}

/* A fork while another thread holds the lock: the child's first line
 * goes at once (its lock is its own), not after a second (or never). */
static void
test_fork_while_another_thread_logs(int r1)
{
	struct liner a = { .text = "parent's slow line" };
	pthread_t ta;
	pid_t pid;
	int status = -1;

	drain(r1);
	fill();
	CHECK(in_syscall(liner_start(&ta, &a), POLL_NR));
	if ((pid = fork()) == 0) {
		char buf[512];
		int64_t t0;
		int got;

		drain(r1);
		t0 = now_ms();
		send_line("from the child");
		t0 = now_ms() - t0;
		got = recv_match(r1, "from the child", 2000, buf, sizeof(buf)) > 0;
		_exit(t0 < 500 && got ? 0 : 1);
	}
	CHECK(pid > 0);
	for (int i = 0; i < 5000 && pid > 0; i++) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			break;
		usleep(1000);
	}
	if (pid > 0 && !WIFEXITED(status)) {	/* stuck: the lock */
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
	}
	CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	    "the child: status %#x", status);
	pthread_join(ta, NULL);
}

static void
test_turned_off(int r1)
{
	char buf[512];

	drain(r1);
	log_syslog_close();
	CHECK(log_syslog_fd() == -1);
	CHECK(!log_syslog_access());
	send_line("after close");
	CHECK(recv_match(r1, "after close", 300, buf, sizeof(buf)) == -1);
	CHECK(log_syslog_fd() == -1);
}

int
main(void)
{
	char path1[128], path2[128];
	int r1, r2;

	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		return 2;
	}
	log_open("/dev/null", NULL, LOG_INFO);
	r1 = receiver("r1", path1, sizeof(path1));
	r2 = receiver("r2", path2, sizeof(path2));

	test_prefix_check();
	if (open_to(path1, "user", "first") == 0) {
		test_nul_is_a_space(r1);
		test_failed_open_keeps_the_old_setting(r1, r2, path2);
		test_one_deadline_per_line(r1);
		test_fork_while_another_thread_logs(r1);
		test_turned_off(r1);
	} else
		CHECK(0);

	close(r1);
	close(r2);
	unlink(path1);
	unlink(path2);
	rmdir(dir);
	log_close();
	return check_summary("test_log_syslog");
}
