/* log.h - the one logging function of every program.
 *
 * Lines go to stderr: "time level program [context] message" on a terminal
 * or in a file, or one JSON object per line with LOG_FORMAT=json.
 */
#ifndef CHECKOUT_LOG_H
#define CHECKOUT_LOG_H

#include "checkout/config.h"

/* Set the program name and threshold. Call once at start; safe to call again. */
void log_init(const char *program, enum log_level level, enum log_format format);

/*
 * Write one line if level passes the threshold. ctx is a short context such
 * as "order=1b2c p1@42" (NULL for none). Thread-safe; a line is never split.
 * Whatever ctx and the message hold (a client's string, say), the line stays
 * one line: in text lines control characters and the backslash are escaped
 * ("\n", "\x1b", "\\"), JSON lines are valid JSON, and bytes that are not
 * UTF-8 are written as "\xff" in both. The message is cut at 2047 bytes.
 */
void log_msg(enum log_level level, const char *ctx, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define log_debug(...) log_msg(LOG_DEBUG, NULL, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, NULL, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, NULL, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, NULL, __VA_ARGS__)

/* True when lines of this level are written (to skip costly formatting). */
bool log_enabled(enum log_level level);

#endif
