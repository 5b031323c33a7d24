/* config.h - one table of settings, read from the environment and flags.
 *
 * Every program fills one struct config through config_load(). Each option
 * has a flag (--name), an environment variable and a default; flags override
 * the environment. --help is printed from the same table.
 */
#ifndef CHECKOUT_CONFIG_H
#define CHECKOUT_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

/* Which programs an option applies to (a bit mask). */
enum config_program {
	CONFIG_SERVER = 1 << 0,
	CONFIG_RELAY = 1 << 1,
	CONFIG_WORKER = 1 << 2,
	CONFIG_BROKER = 1 << 3,
	CONFIG_MIGRATE = 1 << 4,
	CONFIG_LOADTEST = 1 << 5,
	CONFIG_NAIVE = 1 << 6, /* checkout-naive: loaded with CONFIG_SERVER | CONFIG_NAIVE */
};

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };
enum log_format { LOG_FORMAT_TEXT, LOG_FORMAT_JSON };

/* Where the checkout writes its events and the relay reads them (EVENTS). */
enum config_events {
	EVENTS_WAL,    /* pg_logical_emit_message in the checkout, a logical replication slot in the relay */
	EVENTS_OUTBOX, /* a row in table outbox, polled by the relay */
};

/* checkout-naive's admission design. */
enum config_naive_mode {
	NAIVE_VIEW,
	NAIVE_INTENT,
};

/* What checkout-race fires at (RACE_DESIGN): how it reads the outcome back. */
enum config_race_design {
	RACE_DATABASE,	   /* checkout-server: the orders are in PostgreSQL */
	RACE_KAFKA_VIEW,   /* checkout-naive, NAIVE_MODE=view: its state via GET /v1/products/{sku} */
	RACE_KAFKA_INTENT, /* checkout-naive, NAIVE_MODE=intent: likewise */
};

enum config_isolation {
	ISOLATION_SERIALIZABLE,
	ISOLATION_REPEATABLE_READ,
	ISOLATION_READ_COMMITTED,
};

struct config {
	const char *program; /* name used in logs, e.g. "server" */

	/* everyone */
	char *database_url; /* empty: libpq defaults (PG* variables) */
	char *kafka_brokers;
	char *orders_topic;
	char *products_topic; /* relay, inventory, broker */
	int naive_mode; /* checkout-naive: enum config_naive_mode */
	int log_level;  /* enum log_level */
	int log_format; /* enum log_format */
	int db_wait_seconds;

	/* server */
	char *listen; /* host:port as given */
	char listen_host[64];
	int listen_port;
	char *admin_token;
	int db_pool_size;
	int isolation; /* enum config_isolation; race tool: the server's level */
	int race_pause_ms;
	int idempotency_purge_seconds;
	int max_retries;
	bool hot_sku_queue;
	int http_max_connections;
	int http_max_connections_per_ip;
	int http_idle_timeout_seconds;
	int http_head_timeout_seconds;
	int request_timeout_ms;

	/* relay */
	int relay_batch;
	int relay_poll_ms;
	int retention_hours;
	bool replay;
	char *since;

	/* workers */
	char *group_id; /* empty: "checkout-<worker>" */
	char *spool_dir;
	char *smtp_url;
	int low_stock_threshold;
	int summary_seconds;
	bool rebuild;
	char *rebuild_from; /* --from-offsets: "P:OFFSET,..." ("" = the beginning) */
	bool print_totals;

	/* broker */
	int partitions;
	int broker_count;
	char *bootstrap_file;

	/* migrate */
	char *migrations_dir;

	/* loadtest: the race tool (checkout-race) */
	int race_scenario; /* 0 all, 1 last-item, 2 limited-drop, 3 multi-item */
	int race_design;   /* enum config_race_design */
	int race_clients;
	int race_rounds;
	int race_stock;
	int race_sizes; /* 0: one per client */
	int race_per_customer;
	char *race_urls; /* comma-separated base URLs; empty: http://listen */
	bool race_expect_anomaly;
	bool race_check_topic;
	bool race_check_workers;
	int race_catch_up_seconds;

	/* relay: Prometheus endpoint ("" = off) */
	char *metrics_listen;

	/* analytics: the live dashboard ("" = off) */
	char *dashboard_listen;
	char *server_metrics_url;
	char *dashboard_groups; /* comma-separated consumer groups */
	/* server, relay, analytics dashboard: enum config_events */
	int events;
	/* WAL mode (server, relay, dashboard): replication slot ("" = checkout_<database>) and lag warning */
	char *slot;
	int lag_warn_seconds;
};

enum config_result {
	CONFIG_OK,
	CONFIG_EXIT_OK,    /* --help was printed: exit 0 */
	CONFIG_EXIT_ERROR, /* a problem was printed: exit non-zero */
};

/*
 * Fill cfg from defaults, then the environment, then argv (flags of the
 * form --name=value, --name value, or --name for booleans). Only options
 * whose mask includes `program` are accepted. On a problem, prints one line
 * naming it to stderr and returns CONFIG_EXIT_ERROR; for --help prints the
 * help and returns CONFIG_EXIT_OK. The caller owns cfg and must call
 * config_free() whatever the result.
 */
enum config_result config_load(struct config *cfg, unsigned program, const char *name, int argc,
			       char **argv) __attribute__((warn_unused_result));

/* Free the strings of cfg. Safe on a zeroed struct and safe to call twice. */
void config_free(struct config *cfg);

/* The SQL name of an isolation level, e.g. "SERIALIZABLE". */
const char *config_isolation_sql(int isolation);

#endif
