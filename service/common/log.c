/* log.c - one line per call, text for people or JSON for machines. */
#include "checkout/log.h"

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

void log_msg(enum log_level level, const char *ctx, const char *fmt, ...)
{
	if (level < log_threshold || level > LOG_ERROR)
		return;

	char msg[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);

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
		fprintf(stderr, "%s %s %-9s %s%s%s\n", stamp, level_text[level], log_program, ctx && *ctx ? ctx : "",
			ctx && *ctx ? " " : "", msg);
	}
	fflush(stderr);
	pthread_mutex_unlock(&log_lock);
}
