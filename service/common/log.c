/* log.c - one line per call, text for people or JSON for machines. */
#include "checkout/log.h"

#include "checkout/fields.h"

#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static const char *log_program = "checkout";
static enum log_level log_threshold = LOG_INFO;
static enum log_format log_fmt = LOG_FORMAT_TEXT;
static bool log_color;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const level_names[] = {"debug", "info", "warn", "error"};
static const char *const level_text[] = {"DEBUG", "INFO ", "WARN ", "ERROR"};
static const char *const level_color[] = {"\033[2m", "\033[32m", "\033[33m", "\033[1;31m"};

void log_init(const char *program, enum log_level level, enum log_format format)
{
	log_program = program;
	log_threshold = level;
	log_fmt = format;
	/* colour only for a person at a terminal */
	log_color = format == LOG_FORMAT_TEXT && isatty(STDERR_FILENO) && !getenv("NO_COLOR");
}

bool log_enabled(enum log_level level)
{
	return level >= log_threshold;
}

/* Write the escape of byte b ("\x1b") at out; returns its length, 4. */
static size_t hex_escape(char *out, unsigned char b)
{
	static const char hex[] = "0123456789abcdef";
	out[0] = '\\';
	out[1] = 'x';
	out[2] = hex[b >> 4];
	out[3] = hex[b & 15];
	return 4;
}

/*
 * Copy src into dst (dstlen > 0 bytes, always NUL-terminated, cut short
 * rather than split an escape or a character) so that whatever a client put
 * into it can neither end the line nor reach a terminal as a control
 * sequence. Bytes that are not UTF-8 become "\xff". With `controls`, for
 * text lines, control characters (C0, DEL, C1) are escaped too, as "\n",
 * "\r", "\t" or "\x1b" (a C1 character byte by byte, "\xc2\x9b"), and so
 * is the backslash ("\\"), so that the escapes are unambiguous. Without, for
 * JSON lines, jansson escapes those and only the encoding needs fixing.
 */
static void log_escape(char *dst, size_t dstlen, const char *src, bool controls)
{
	const unsigned char *s = (const unsigned char *)src;
	size_t len = strlen(src), w = 0;

	for (size_t i = 0; i < len;) {
		char piece[16];
		size_t plen = 0;
		unsigned cp = 0;
		size_t n = fields_utf8_next(s + i, len - i, &cp);
		if (n == 0) {
			n = 1;
			plen = hex_escape(piece, s[i]);
		} else if (controls && (fields_is_control(cp) || cp == '\\')) {
			char named = cp == '\n' ? 'n' : cp == '\r' ? 'r' : cp == '\t' ? 't' : 0;
			if (cp == '\\')
				named = '\\';
			if (named) {
				piece[plen++] = '\\';
				piece[plen++] = named;
			} else {
				for (size_t k = 0; k < n; k++)
					plen += hex_escape(piece + plen, s[i + k]);
			}
		} else {
			memcpy(piece, s + i, n);
			plen = n;
		}
		if (w + plen >= dstlen)
			break;
		memcpy(dst + w, piece, plen);
		w += plen;
		i += n;
	}
	dst[w] = '\0';
}

void log_msg(enum log_level level, const char *ctx, const char *fmt, ...)
{
	if (level < log_threshold || level > LOG_ERROR)
		return;

	char raw[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(raw, sizeof(raw), fmt, ap);
	va_end(ap);

	/* once, here, for every line: at worst each byte becomes four ("\x1b") */
	char msg[4 * sizeof(raw)], context[1024];
	bool plain = log_fmt != LOG_FORMAT_JSON;
	log_escape(msg, sizeof(msg), raw, plain);
	log_escape(context, sizeof(context), ctx ? ctx : "", plain);
	ctx = context;

	struct timeval tv;
	struct tm tm;
	char stamp[40];
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	size_t n = strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(stamp + n, sizeof(stamp) - n, ".%03ldZ", (long)(tv.tv_usec / 1000));

	pthread_mutex_lock(&log_lock);
	if (log_fmt == LOG_FORMAT_JSON) {
		json_t *line = json_pack("{s:s, s:s, s:s, s:s}", "time", stamp, "level", level_names[level],
					 "program", log_program, "msg", msg);
		if (line && ctx && *ctx)
			json_object_set_new(line, "context", json_string(ctx));
		char *text = line ? json_dumps(line, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
		if (text)
			fprintf(stderr, "%s\n", text);
		free(text);
		json_decref(line);
	} else if (log_color) {
		fprintf(stderr, "\033[2m%s\033[0m %s%s\033[0m %-9s %s%s%s%s\n", stamp, level_color[level],
			level_text[level], log_program, ctx && *ctx ? "\033[36m" : "", ctx && *ctx ? ctx : "",
			ctx && *ctx ? "\033[0m " : "", msg);
	} else {
		fprintf(stderr, "%s %s %-9s %s%s%s\n", stamp, level_text[level], log_program,
			ctx && *ctx ? ctx : "", ctx && *ctx ? " " : "", msg);
	}
	fflush(stderr);
	pthread_mutex_unlock(&log_lock);
}
