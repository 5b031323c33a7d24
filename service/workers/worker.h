/* worker.h - the consumer loop shared by checkout-email, -inventory and -analytics.
 *
 * Each worker is a table of callbacks (struct worker_ops) around one loop:
 * a librdkafka balanced consumer group reading the orders topic, one local
 * PostgreSQL transaction per event that writes the event's ce_id into the
 * worker's inbox table together with its effect, and the offset stored only
 * after that transaction committed (at-least-once delivery,
 * effectively-once effects).
 *
 * Only a message that is itself bad goes to the dead-letter table: one that
 * does not parse, that the worker refuses (WORKER_FAILED without a failed
 * statement), or whose content breaks a data rule of the database (SQLSTATE
 * class 22 or 23). Any other failure is the system's, not the message's,
 * and passes: a broken connection, a read-only session (a standby after a
 * failover), disk full (53100), a statement timeout (57014), a revoked
 * permission (42501), a table missing during a migration (42P01), a
 * serialization failure: every SQLSTATE outside classes 22 and 23
 * (worker.c, loop_apply). The same event is then tried again, 100 ms
 * doubling to 5 s apart, logged when the retries start (and again when
 * their reason changes) and once when they end, and the worker does not
 * move past it: an offset is stored only after the effect or the dead
 * letter committed (a dead letter that cannot be written is retried the
 * same way). Broker outages are waited out too.
 * SIGTERM/SIGINT finish the current event (or end its retries without
 * storing its offset), commit the stored offsets and leave the group.
 */
#ifndef CHECKOUT_WORKERS_WORKER_H
#define CHECKOUT_WORKERS_WORKER_H

#include <librdkafka/rdkafka.h>
#include <libpq-fe.h>
#include <stdbool.h>

#include "checkout/config.h"
#include "checkout/db.h"
#include "event.h"

/* The statements worker.c runs in every worker's own schema. */
// clang-format off
#define WORKER_COMMON_STMTS(schema)                                                                \
	{"worker_inbox_insert",                                                                    \
	 "INSERT INTO " schema ".inbox (event_id, order_id, partition, \"offset\") "                \
	 "VALUES ($1, $2::uuid, $3::integer, $4::bigint) ON CONFLICT (event_id) DO NOTHING "      \
	 "RETURNING event_id"},                                                                    \
	{"worker_dead_letter_insert",                                                              \
	 "INSERT INTO " schema ".dead_letters (topic, partition, \"offset\", key, value, reason) "  \
	 "VALUES ($1, $2::integer, $3::bigint, $4::bytea, $5::bytea, $6) "                         \
	 "ON CONFLICT (topic, partition, \"offset\") DO NOTHING"}
// clang-format on

enum worker_result {
	WORKER_APPLIED, /* the effect is written; commit */
	/* roll back. If a statement failed (rep->sqlstate set) the loop decides by its SQLSTATE:
	 * class 22/23 dead-letters the message, anything else is retried; if none did, the
	 * worker refuses the message itself (e.g. an SMTP 5xx) and it is dead-lettered */
	WORKER_FAILED,
	/* roll back; a passing problem outside the database (e.g. the mail spool's disk full,
	 * an SMTP 4xx): retry the same event */
	WORKER_RETRY,
};

/* What an apply callback did, logged by the loop after the commit. */
struct worker_report {
	char line[1536];  /* info: what it did ("sent confirmation to ..."); on failure, why */
	char warn[512];	  /* optional warning line ("low stock ...") */
	char sqlstate[6]; /* of the failed statement, set by worker_exec */
};

struct worker;

struct worker_ops {
	const char *name;	     /* "email": logs, config, default group "checkout-email" */
	const struct db_stmt *stmts; /* NULL-terminated; include WORKER_COMMON_STMTS(schema) */
	/*
	 * Optional, after the configuration is loaded and before anything else.
	 * Returns true to make the program exit at once with *status (for
	 * example analytics --totals).
	 */
	bool (*oneshot)(struct worker *w, int *status);
	/* Optional, once before consuming: set up state (e.g. the mail spool). False: exit 1. */
	bool (*start)(struct worker *w);
	/*
	 * Apply ev's effect on conn inside the open transaction (the inbox row is
	 * already written). Fill rep->line with what was done (or why it failed).
	 */
	enum worker_result (*apply)(struct worker *w, PGconn *conn, const struct order_event *ev,
				    struct worker_report *rep);
	/* Optional, about once a second while consuming, with a working connection. */
	void (*tick)(struct worker *w, PGconn *conn);
	/* Optional: --rebuild support; purge the view inside the open transaction. */
	bool (*purge)(PGconn *conn, char *err, size_t errlen);
	/* Optional: free state at exit. */
	void (*stop)(struct worker *w);
};

struct worker {
	const struct worker_ops *ops;
	struct config cfg;
	PGconn *conn;
	void *state; /* the worker's own */
};

/*
 * The whole program: load the configuration (CONFIG_WORKER, ops->name),
 * start logging, connect, consume until SIGTERM/SIGINT (or, with --rebuild,
 * until the end of every partition: from its beginning, or from the
 * --from-offsets a replay printed, failing before the purge if the broker
 * no longer holds them), then commit offsets and leave the group. Returns
 * the process exit status.
 */
int worker_main(const struct worker_ops *ops, int argc, char **argv);

/*
 * Run a prepared statement with text parameters (NULL = SQL NULL). Returns
 * the result, or NULL when libpq could not send it or ran out of memory
 * (worker_res_ok is false for NULL, and PQclear accepts it); the caller
 * PQclear()s it. Sets rep->line and rep->sqlstate to the error when it
 * failed and rep is not NULL.
 */
PGresult *worker_exec(PGconn *conn, const char *stmt, int nparams, const char *const *params,
		      struct worker_report *rep) __attribute__((warn_unused_result));

/* True when res is a success (rows or no rows). */
bool worker_res_ok(const PGresult *res);

/*
 * Leave the consumer group, for at most 5 s: rd_kafka_consumer_close()
 * waits for the group coordinator, forever when the broker is gone.
 * Returns true once closed; the caller destroys rk either way (with
 * RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE when it returned false).
 */
bool worker_consumer_close(rd_kafka_t *rk);

/* True when the connection is unusable (broken, or the server going away). */
bool worker_conn_broken(PGconn *conn, const PGresult *res);

#endif
