/* testenv.h - what the integration tests share: a fresh database, the real
 * programs started as child processes, the embedded broker, an HTTP client.
 *
 * The tests run under pg_virtualenv (scripts/test), so libpq's PG* variables
 * point at a throw-away cluster. Functions that cannot set up what a test
 * needs fail the test with a Criterion assertion instead of returning.
 */
#ifndef CHECKOUT_TESTENV_H
#define CHECKOUT_TESTENV_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <sys/types.h>

/* Create a new empty database, apply migrations/, and return a connection
 * string for it ("dbname=..."). The caller frees it. */
char *testenv_db_new(void);

/* Connect to conninfo (from testenv_db_new); fails the test if it cannot. */
PGconn *testenv_db_connect(const char *conninfo);

/* Run sql and return the first column of the first row as a long (0 for NULL);
 * fails the test on an SQL error. */
long testenv_query_long(PGconn *conn, const char *sql);

/* Run sql that returns no rows; fails the test on an error. */
void testenv_exec(PGconn *conn, const char *sql);

/* A program of ours running as a child. */
struct testenv_proc {
	pid_t pid;
	char name[64];
	char log_path[512]; /* its stdout and stderr */
};

/* Start build/bin/<program> (or, when program has a '/', that file: a script) with args (NULL-terminated, may
 * be NULL) and extra environment entries "NAME=value" (NULL-terminated, may be NULL). */
void testenv_spawn(struct testenv_proc *p, const char *program, const char *const *args,
		   const char *const *env);

/* Send sig and wait up to 10 s for the exit; returns the exit status, or
 * 128 + signal number. SIGKILLs it if it does not exit. Safe on a stopped proc. */
int testenv_stop(struct testenv_proc *p, int sig);

/* The final stop of every program a test started: SIGTERM it if it still runs
 * and expect exit status 0 (a failed expectation, not an abort, so the rest of
 * the cleanup runs). In the sanitizer build a leak reported at exit makes the
 * status 23, so this is where leaks fail a test. Call it at the end of the test
 * itself: Criterion prints assertions made in a suite's .fini but does not fail
 * the test for them (the .fini should still call it, for a test that failed
 * early). Does nothing on a proc never started, already stopped or reaped. */
void testenv_stop_clean(struct testenv_proc *p);

/* True if the process has exited (reaps it). */
bool testenv_exited(struct testenv_proc *p, int *status);

/* Wait until the program's log contains needle; false after timeout_ms. */
bool testenv_wait_log(const struct testenv_proc *p, const char *needle, int timeout_ms);

/* The whole file at path as a NUL-terminated string the caller frees; NULL if unreadable. */
char *testenv_read_file(const char *path);

/* Count the lines of the program's log that contain needle. */
int testenv_count_log(const struct testenv_proc *p, const char *needle);

/* Start the embedded broker; returns its bootstrap address (static buffer in p's
 * owner: copy it), fails the test if it does not come up. */
const char *testenv_broker_start(struct testenv_proc *p);

/* A TCP port on 127.0.0.1 that was free a moment ago. */
int testenv_free_port(void);

/* Wait until something accepts TCP connections on 127.0.0.1:port. */
bool testenv_wait_port(int port, int timeout_ms);

/* Sleep for ms milliseconds. */
void testenv_sleep_ms(int ms);

struct http_response {
	long status;
	char *body;    /* NUL-terminated, never NULL after a successful call */
	char *headers; /* the raw header block */
	json_t *json;  /* body parsed as JSON, or NULL */
};

/* Make one HTTP request (body may be NULL; headers a NULL-terminated list of
 * "Name: value", may be NULL). Returns false on a transport error. */
bool http_call(const char *method, const char *url, const char *const *headers, const char *body,
	       struct http_response *out);

/* The value of a response header (case-insensitive), copied into buf; NULL if absent. */
const char *http_header(const struct http_response *r, const char *name, char *buf, size_t buflen);

/* Free a response's buffers; safe twice. */
void http_response_free(struct http_response *r);

#endif
