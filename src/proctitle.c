/*
 * proctitle.c — process titles as `ps aux` shows them (see proctitle.h).
 *
 * Linux shows /proc/PID/cmdline, which is read from the memory that held
 * the original argv strings, and the environment strings follow it
 * contiguously.  proctitle_init() copies environ elsewhere so that the
 * whole argv+environ block can be overwritten by a title.  Owns nothing
 * but that block; never allocates after init.
 */
#include "proctitle.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

extern char **environ;

static char *title_area;	/* start of argv[0] */
static size_t title_cap;	/* bytes up to the end of the last env string */
static char prog[64] = "cunicorn";

void
proctitle_init(int argc, char **argv)
{
	char *start, *end, **newenv;
	const char *base;
	size_t n = 0;

	if (argc < 1 || argv[0] == NULL)
		return;
	base = strrchr(argv[0], '/');
	base = base ? base + 1 : argv[0];
	snprintf(prog, sizeof(prog), "%s", base);

	/* the contiguous block: argv strings, then environment strings */
	start = argv[0];
	end = argv[0] + strlen(argv[0]) + 1;
	for (int i = 1; i < argc; i++)
		if (argv[i] == end)
			end = argv[i] + strlen(argv[i]) + 1;
	for (; environ[n] != NULL; n++)
		if (environ[n] == end)
			end = environ[n] + strlen(environ[n]) + 1;

	/* move the environment and the arguments out of the way, so that
	 * environ and argv[] stay valid after the block is overwritten */
	newenv = xcalloc(n + 1, sizeof(char *));
	for (size_t i = 0; i < n; i++)
		newenv[i] = xstrdup(environ[i]);
	environ = newenv;
	for (int i = 0; i < argc; i++)
		argv[i] = xstrdup(argv[i]);

	title_area = start;
	title_cap = (size_t)(end - start);
}

const char *
proctitle_prog(void)
{
	return prog;
}

void
proctitle_set(const char *fmt, ...)
{
	char buf[256];
	va_list ap;
	size_t len;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	prctl(PR_SET_NAME, buf, 0, 0, 0);
	if (title_area == NULL || title_cap < 2)
		return;
	len = strlen(buf);
	if (len >= title_cap)
		len = title_cap - 1;
	memcpy(title_area, buf, len);
	memset(title_area + len, 0, title_cap - len);
}
