/* errbuf.h - the one way a function hands back why it failed.
 *
 * Fallible functions of every program take (char *err, size_t errlen) and
 * fill it with one line: the caller logs it or puts it in an answer, and a
 * line never carries the second line of a server's message (libpq's
 * DETAIL/HINT, say) into a log line or a problem's detail.
 */
#ifndef CHECKOUT_ERRBUF_H
#define CHECKOUT_ERRBUF_H

#include <stddef.h>

/*
 * Format into err[errlen] like snprintf, then cut the text at its first
 * newline. Does nothing when err is NULL or errlen is 0; a longer text is
 * truncated, never overflows.
 */
void errbuf_set(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
