/*
 * check.h — the one assertion vocabulary of the C unit tests.
 *
 * A failed check prints "FAIL file:line: ..." to stderr and the test goes
 * on (so one run shows every failure); check_summary() prints
 * "<name>: N passed, M failed" and gives main() its exit status.
 *   CHECK(cond)                  prints the condition's text
 *   CHECK_MSG(cond, fmt, ...)    prints a printf-formatted message
 *   CHECK_STR(got, want)         strcmp, NULL never equal; prints both
 * Each test program includes it once (the counters are file statics).
 */
#ifndef CUNICORN_TESTS_CHECK_H
#define CUNICORN_TESTS_CHECK_H

#include <stdio.h>
#include <string.h>

static int passed, failed;

#define CHECK(cond) do {						\
	if (cond)							\
		passed++;						\
	else {								\
		failed++;						\
		fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__,	\
		    #cond);						\
	}								\
} while (0)

#define CHECK_MSG(cond, ...) do {					\
	if (cond)							\
		passed++;						\
	else {								\
		failed++;						\
		fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);	\
		fprintf(stderr, __VA_ARGS__);				\
		fputc('\n', stderr);					\
	}								\
} while (0)

#define CHECK_STR(a, b) do {						\
	const char *a_ = (a), *b_ = (b);				\
	if (a_ != NULL && b_ != NULL && strcmp(a_, b_) == 0)		\
		passed++;						\
	else {								\
		failed++;						\
		fprintf(stderr, "FAIL %s:%d: %s == \"%s\" (got \"%s\")\n",\
		    __FILE__, __LINE__, #a, b_ ? b_ : "(null)",		\
		    a_ ? a_ : "(null)");				\
	}								\
} while (0)

/* Print the totals; main() returns this (non-zero on any failure). */
static inline int
check_summary(const char *name)
{
	printf("%s: %d passed, %d failed\n", name, passed, failed);
	return failed != 0;
}

#endif
