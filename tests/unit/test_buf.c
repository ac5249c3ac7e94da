/*
 * test_buf.c — the growable byte buffer (src/buf.c): growth, append,
 * consume, printf past the first reservation, reset keeping the memory.
 */
#include "buf.h"

#include <stdlib.h>
#include <string.h>

#include "check.h"

int
main(void)
{
	struct buf b = { 0 };
	char big[1000];

	/* a zeroed struct is an empty buffer; an empty append allocates nothing */
	buf_append(&b, NULL, 0);
	CHECK(b.data == NULL && b.len == 0 && b.cap == 0);

	buf_appends(&b, "hello");
	CHECK(b.len == 5 && b.cap == 256 && memcmp(b.chars, "hello", 5) == 0);

	/* growth doubles and keeps what was there */
	memset(big, 'x', sizeof(big));
	buf_append(&b, big, sizeof(big));
	CHECK(b.len == 1005 && b.cap == 1024);
	CHECK(memcmp(b.chars, "hellox", 6) == 0 && b.chars[1004] == 'x');

	/* consume drops the front; past the end empties */
	buf_consume(&b, 5);
	CHECK(b.len == 1000 && b.chars[0] == 'x');
	buf_consume(&b, 5000);
	CHECK(b.len == 0 && b.cap == 1024);

	/* printf: short, then longer than the room reserved at first */
	buf_printf(&b, "%d-%s", 42, "a");
	CHECK(b.len == 4 && memcmp(b.chars, "42-a", 4) == 0);
	buf_free(&b);
	buf_printf(&b, "|");			/* the first reservation: 256 */
	buf_printf(&b, "%0600d", 7);		/* does not fit: formatted again */
	CHECK_MSG(b.len == 601 && b.chars[0] == '|' && b.chars[600] == '7',
	    "len %zu", b.len);

	/* reset keeps the memory; reserve does not move len */
	size_t cap = b.cap;
	buf_reset(&b);
	buf_reserve(&b, 10);
	CHECK(b.len == 0 && b.cap == cap);
	buf_reserve(&b, cap + 1);
	CHECK(b.cap >= cap + 1 && b.len == 0);

	buf_free(&b);
	CHECK(b.data == NULL && b.len == 0 && b.cap == 0);
	return check_summary("test_buf");
}
