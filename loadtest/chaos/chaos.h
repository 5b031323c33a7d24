/* chaos.h - the chaos tool (checkout-chaos): the driver and the checker of
 * scripts/chaos.
 *
 * scripts/chaos starts the whole system, runs `checkout-chaos drive` in the
 * background while it kills and freezes the programs and PostgreSQL, then
 * waits for the pipeline to drain and runs `checkout-chaos check`.
 *
 * catalogue.c: the products the run sells (setup inserts them, the checker
 * knows their initial stock); drive.c: checkouts at a steady rate, each a
 * logical order with its own Idempotency-Key, retried until it gets a final
 * answer; check.c: the invariants, from the driver's answers, PostgreSQL,
 * the topic, the workers' tables and the mail spool.
 */
#ifndef CHECKOUT_CHAOS_H
#define CHECKOUT_CHAOS_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

#define CHAOS_ID_LEN 37 /* a uuid and its NUL */

/* --- catalogue.c --- */

struct chaos_product {
	const char *sku;
	long price_cents;
	long stock;	       /* initial stock */
	const char *limit_group; /* NULL: none */
};

/* The products, NULL-sku terminated, and the limit group's per-customer units. */
extern const struct chaos_product chaos_catalogue[];
#define CHAOS_LIMIT_GROUP "chaos-drop"
#define CHAOS_PER_CUSTOMER 3

/* Insert the limit group and the products (one transaction). False on an error (logged). */
bool chaos_setup(PGconn *conn) __attribute__((warn_unused_result));

/* --- drive.c --- */

struct chaos_drive_opts {
	const char *url;      /* base URL of the server, no trailing slash */
	const char *out_path; /* one line per logical order (see drive.c) */
	const char *key_prefix;
	double rate;	      /* new orders per second */
	double retry_seconds; /* give up on an order this long after its first try */
	double attempt_timeout;
	double duration; /* 0: until SIGTERM/SIGINT */
	int max_inflight;
	unsigned seed;
};

/*
 * Start a logical order every 1/rate seconds until SIGTERM or SIGINT (or
 * duration), then finish the pending ones (final answer or retry_seconds).
 * Writes a line per order to out_path as it ends. Returns false when the
 * output or libcurl cannot be set up (logged).
 */
bool chaos_drive(const struct chaos_drive_opts *opts) __attribute__((warn_unused_result));

/* One line of the driver's output, parsed. Times are Unix seconds. */
struct chaos_answer {
	char key[64];
	double first, final; /* first try; final answer (or giving up) */
	int attempts;
	long status; /* final HTTP status, 0 when it gave up */
	char problem[64];
	char order_id[CHAOS_ID_LEN];
	bool replayed;
};

/* --- check.c --- */

struct chaos_check_opts {
	const char *answers_path;
	const char *rounds_path; /* may be NULL */
	const char *spool_dir;
	const char *database_url;
	const char *kafka_brokers;
	const char *topic;
	double delay_threshold; /* an order is "delayed" beyond this many seconds */
};

/*
 * Print the table of rounds and the invariants. Returns 0 when every
 * invariant holds, 1 when one is violated, 2 when the check itself could not
 * run (logged).
 */
int chaos_check(const struct chaos_check_opts *opts);

#endif
