/* errbuf.c - see errbuf.h. */
#include "checkout/errbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void errbuf_set(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	err[strcspn(err, "\n")] = '\0';
}
