/* config.c - the settings table, its parser and --help. */
#include "checkout/config.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum option_type { OPT_STRING, OPT_INT, OPT_BOOL, OPT_CHOICE };

static const char *const log_levels[] = {"debug", "info", "warn", "error", NULL};
static const char *const log_formats[] = {"text", "json", NULL};
static const char *const isolations[] = {"serializable", "repeatable-read", "read-committed", NULL};
static const char *const events_modes[] = {"wal", "outbox", NULL};
static const char *const naive_modes[] = {"view", "intent", NULL};
static const char *const race_scenarios[] = {"all", "last-item", "limited-drop", "multi-item", NULL};
static const char *const race_designs[] = {"database", "kafka-view", "kafka-intent", NULL};

struct option {
	const char *name; /* flag, without the leading dashes */
	const char *env;
	enum option_type type;
	const char *def;
	unsigned programs;
	size_t offset;
	long min, max;                /* OPT_INT */
	const char *const *choices;   /* OPT_CHOICE */
	const char *help;
};

#define ALL (CONFIG_SERVER | CONFIG_RELAY | CONFIG_WORKER | CONFIG_BROKER | CONFIG_MIGRATE | CONFIG_LOADTEST | CONFIG_NAIVE)
#define DBUSERS (CONFIG_SERVER | CONFIG_RELAY | CONFIG_WORKER | CONFIG_MIGRATE | CONFIG_LOADTEST)
#define KAFKAUSERS (CONFIG_RELAY | CONFIG_WORKER | CONFIG_LOADTEST | CONFIG_NAIVE)
#define F(field) offsetof(struct config, field)

static const struct option options[] = {
	{"database-url", "DATABASE_URL", OPT_STRING, "", DBUSERS, F(database_url), 0, 0, NULL,
	 "PostgreSQL connection string (empty: libpq's PG* variables)"},
	{"db-wait-seconds", "DB_WAIT_SECONDS", OPT_INT, "30", CONFIG_SERVER | CONFIG_RELAY | CONFIG_WORKER,
	 F(db_wait_seconds), 0, 3600, NULL, "at start, how long to wait for the database before exiting with an error"},
	{"kafka-brokers", "KAFKA_BROKERS", OPT_STRING, "127.0.0.1:9092", KAFKAUSERS, F(kafka_brokers), 0, 0,
	 NULL, "Kafka bootstrap servers, host:port[,host:port...]"},
	{"orders-topic", "ORDERS_TOPIC", OPT_STRING, "orders", KAFKAUSERS | CONFIG_BROKER, F(orders_topic), 0,
	 0, NULL, "topic of order events"},
	{"products-topic", "PRODUCTS_TOPIC", OPT_STRING, "products", CONFIG_RELAY | CONFIG_WORKER | CONFIG_BROKER,
	 F(products_topic), 0, 0, NULL, "compacted topic of the catalogue: product events keyed by SKU"},
	{"naive-mode", "NAIVE_MODE", OPT_CHOICE, "view", CONFIG_NAIVE, F(naive_mode), 0, 0, naive_modes,
	 "checkout-naive's admission: view (decide from a view of the topic) or intent (a decider per partition)"},
	{"listen", "LISTEN", OPT_STRING, "127.0.0.1:8080", CONFIG_SERVER | CONFIG_LOADTEST, F(listen), 0, 0,
	 NULL, "HTTP address, host:port"},
	{"log-level", "LOG_LEVEL", OPT_CHOICE, "info", ALL, F(log_level), 0, 0, log_levels,
	 "least severe level logged: debug, info, warn, error"},
	{"log-format", "LOG_FORMAT", OPT_CHOICE, "text", ALL, F(log_format), 0, 0, log_formats,
	 "log lines as text or json"},
	{"admin-token", "ADMIN_TOKEN", OPT_STRING, "", CONFIG_SERVER, F(admin_token), 0, 0, NULL,
	 "bearer token for PUT /v1/products and /v1/limits (empty: admin API off)"},
	{"db-pool-size", "DB_POOL_SIZE", OPT_INT, "8", CONFIG_SERVER, F(db_pool_size), 1, 256, NULL,
	 "database connections in the pool"},
	{"isolation", "ISOLATION", OPT_CHOICE, "serializable", CONFIG_SERVER | CONFIG_LOADTEST, F(isolation), 0, 0,
	 isolations,
	 "checkout isolation: serializable, or repeatable-read/read-committed to demonstrate anomalies"},
	{"race-pause-ms", "RACE_PAUSE_MS", OPT_INT, "0", CONFIG_SERVER, F(race_pause_ms), 0, 10000, NULL,
	 "demonstration: pause between the checkout's reads and writes"},
	{"max-retries", "MAX_RETRIES", OPT_INT, "10", CONFIG_SERVER, F(max_retries), 0, 1000, NULL,
	 "retries of a checkout after a serialization failure or deadlock"},
	{"idempotency-purge-seconds", "IDEMPOTENCY_PURGE_SECONDS", OPT_INT, "600", CONFIG_SERVER,
	 F(idempotency_purge_seconds), 1, 86400, NULL, "how often idempotency keys past their 24 hours are deleted"},
	{"hot-sku-queue", "HOT_SKU_QUEUE", OPT_BOOL, "true", CONFIG_SERVER, F(hot_sku_queue), 0, 0, NULL,
	 "queue checkouts of the same SKU inside the process (an optimisation only)"},
	{"http-max-connections", "HTTP_MAX_CONNECTIONS", OPT_INT, "512", CONFIG_SERVER, F(http_max_connections), 1,
	 65536, NULL, "HTTP connections open at once; more are refused"},
	{"http-max-connections-per-ip", "HTTP_MAX_CONNECTIONS_PER_IP", OPT_INT, "256", CONFIG_SERVER,
	 F(http_max_connections_per_ip), 1, 65536, NULL, "HTTP connections open at once from one client address"},
	{"http-idle-timeout-seconds", "HTTP_IDLE_TIMEOUT_SECONDS", OPT_INT, "30", CONFIG_SERVER,
	 F(http_idle_timeout_seconds), 1, 3600, NULL, "an HTTP connection idle this long is closed"},
	{"http-head-timeout-seconds", "HTTP_HEAD_TIMEOUT_SECONDS", OPT_INT, "10", CONFIG_SERVER,
	 F(http_head_timeout_seconds), 1, 3600, NULL,
	 "a request head must arrive whole within this long (of the connection opening or the previous answer), "
	 "however fast its bytes come; else the connection is closed"},
	{"request-timeout-ms", "REQUEST_TIMEOUT_MS", OPT_INT, "5000", CONFIG_SERVER, F(request_timeout_ms), 100,
	 600000, NULL,
	 "every request answers within this long: each wait (pool, hot-SKU turn, database) ends by then, "
	 "and a database that has not answered gets 503"},
	{"batch-size", "RELAY_BATCH", OPT_INT, "5000", CONFIG_RELAY, F(relay_batch), 1, 100000, NULL,
	 "outbox rows claimed per round trip"},
	{"poll-ms", "RELAY_POLL_MS", OPT_INT, "100", CONFIG_RELAY, F(relay_poll_ms), 1, 60000, NULL,
	 "longest sleep between outbox polls when idle"},
	{"retention-hours", "RELAY_RETENTION_HOURS", OPT_INT, "168", CONFIG_RELAY, F(retention_hours), 1,
	 100000, NULL, "published outbox rows older than this are pruned"},
	{"replay", NULL, OPT_BOOL, "false", CONFIG_RELAY, F(replay), 0, 0, NULL,
	 "republish the event of every order in the database (same ce_id), then exit"},
	{"since", NULL, OPT_STRING, "", CONFIG_RELAY, F(since), 0, 0, NULL,
	 "with --replay: only orders created at or after this time (RFC 3339)"},
	{"group-id", "GROUP_ID", OPT_STRING, "", CONFIG_WORKER, F(group_id), 0, 0, NULL,
	 "consumer group (empty: checkout-<worker>)"},
	{"spool-dir", "MAIL_SPOOL", OPT_STRING, "var/mail", CONFIG_WORKER, F(spool_dir), 0, 0, NULL,
	 "email: directory of delivered messages"},
	{"smtp-url", "SMTP_URL", OPT_STRING, "", CONFIG_WORKER, F(smtp_url), 0, 0, NULL,
	 "email: also deliver by SMTP to this URL (empty: spool only)"},
	{"low-stock", "LOW_STOCK_THRESHOLD", OPT_INT, "5", CONFIG_WORKER, F(low_stock_threshold), 0,
	 INT_MAX, NULL, "inventory: warn when a SKU's stock falls to this or below"},
	{"summary-seconds", "SUMMARY_SECONDS", OPT_INT, "30", CONFIG_WORKER, F(summary_seconds), 1, 86400,
	 NULL, "analytics: seconds between summary lines"},
	{"rebuild", NULL, OPT_BOOL, "false", CONFIG_WORKER, F(rebuild), 0, 0, NULL,
	 "inventory, analytics: purge the view and replay the topic from the beginning"},
	{"from-offsets", NULL, OPT_STRING, "", CONFIG_WORKER, F(rebuild_from), 0, 0, NULL,
	 "with --rebuild: start at these offsets, P:OFFSET,... (what checkout-relay --replay prints as "
	 "replay.start=) instead of the beginning; fails if the topic lost any of them"},
	{"totals", NULL, OPT_BOOL, "false", CONFIG_WORKER, F(print_totals), 0, 0, NULL,
	 "analytics: print the current figures and exit"},
	{"partitions", "ORDERS_PARTITIONS", OPT_INT, "3", CONFIG_BROKER, F(partitions), 1, 1000, NULL,
	 "partitions of the orders topic"},
	{"brokers", "BROKER_COUNT", OPT_INT, "1", CONFIG_BROKER, F(broker_count), 1, 9, NULL,
	 "brokers in the mock cluster"},
	{"bootstrap-file", "BOOTSTRAP_FILE", OPT_STRING, "", CONFIG_BROKER, F(bootstrap_file), 0, 0, NULL,
	 "write the bootstrap address to this file too"},
	{"migrations-dir", "MIGRATIONS_DIR", OPT_STRING, CHECKOUT_MIGRATIONS_DIR, CONFIG_MIGRATE,
	 F(migrations_dir), 0, 0, NULL, "directory of NNN_name.sql files"},
	{"scenario", "RACE_SCENARIO", OPT_CHOICE, "all", CONFIG_LOADTEST, F(race_scenario), 0, 0, race_scenarios,
	 "race: last-item (lost update), limited-drop (write skew), multi-item (all-or-nothing) or all"},
	{"design", "RACE_DESIGN", OPT_CHOICE, "database", CONFIG_LOADTEST, F(race_design), 0, 0, race_designs,
	 "race: what the URLs run: database (checkout-server), kafka-view or kafka-intent (checkout-naive)"},
	{"clients", "RACE_CLIENTS", OPT_INT, "32", CONFIG_LOADTEST, F(race_clients), 1, 1000, NULL,
	 "race: concurrent checkouts fired at once in each round"},
	{"rounds", "RACE_ROUNDS", OPT_INT, "1", CONFIG_LOADTEST, F(race_rounds), 1, 100000, NULL,
	 "race: rounds of each scenario, each on fresh products"},
	{"stock", "RACE_STOCK", OPT_INT, "5", CONFIG_LOADTEST, F(race_stock), 1, 1000000, NULL,
	 "race: last-item: units in stock (fewer than --clients)"},
	{"sizes", "RACE_SIZES", OPT_INT, "0", CONFIG_LOADTEST, F(race_sizes), 0, 1000, NULL,
	 "race: limited-drop: sizes in the limit group (0: one per client)"},
	{"per-customer", "RACE_PER_CUSTOMER", OPT_INT, "2", CONFIG_LOADTEST, F(race_per_customer), 1, 1000, NULL,
	 "race: limited-drop: units one customer may buy in the group"},
	{"urls", "RACE_URLS", OPT_STRING, "", CONFIG_LOADTEST, F(race_urls), 0, 0, NULL,
	 "race: servers' base URLs, comma-separated; requests spread over them (empty: http://LISTEN)"},
	{"expect-anomaly", NULL, OPT_BOOL, "false", CONFIG_LOADTEST, F(race_expect_anomaly), 0, 0, NULL,
	 "race: demonstration: fail unless every scenario run shows an anomaly"},
	{"check-topic", NULL, OPT_BOOL, "false", CONFIG_LOADTEST, F(race_check_topic), 0, 0, NULL,
	 "race: also compare the order ids on the topic (--kafka-brokers) with the admitted orders"},
	{"check-workers", NULL, OPT_BOOL, "false", CONFIG_LOADTEST, F(race_check_workers), 0, 0, NULL,
	 "race: also compare the workers' inbox tables with the admitted orders"},
	{"catch-up-seconds", "RACE_CATCH_UP_SECONDS", OPT_INT, "30", CONFIG_LOADTEST, F(race_catch_up_seconds), 1,
	 3600, NULL, "race: how long the relay and the workers may take to catch up"},
	{"metrics-listen", "METRICS_LISTEN", OPT_STRING, "", CONFIG_RELAY, F(metrics_listen),
	 0, 0, NULL, "serve Prometheus metrics on host:port (empty: off)"},
	{"dashboard-listen", "DASHBOARD_LISTEN", OPT_STRING, "", CONFIG_WORKER, F(dashboard_listen), 0, 0, NULL,
	 "analytics: serve the live dashboard on host:port (empty: off)"},
	{"server-metrics-url", "SERVER_METRICS_URL", OPT_STRING, "http://127.0.0.1:8080/metrics", CONFIG_WORKER,
	 F(server_metrics_url), 0, 0, NULL, "analytics dashboard: the server's /metrics (checkout outcomes, retries)"},
	{"dashboard-groups", "DASHBOARD_GROUPS", OPT_STRING, "checkout-email,checkout-inventory,checkout-analytics",
	 CONFIG_WORKER, F(dashboard_groups), 0, 0, NULL,
	 "analytics dashboard: consumer groups whose lag it shows, comma-separated"},
	{"events", "EVENTS", OPT_CHOICE, "wal", CONFIG_SERVER | CONFIG_RELAY | CONFIG_WORKER, F(events), 0, 0, events_modes,
	 "where order events go: wal (pg_logical_emit_message, streamed from a logical replication slot; "
	 "needs wal_level = logical) or outbox (a table the relay polls); server and relay must agree "
	 "(the analytics dashboard shows the relay's lag of that mode)"},
	{"slot", "EVENTS_SLOT", OPT_STRING, "", CONFIG_SERVER | CONFIG_RELAY | CONFIG_WORKER, F(slot), 0, 0, NULL,
	 "wal: the logical replication slot (empty: checkout_<database name>)"},
	{"lag-warn-seconds", "RELAY_LAG_WARN_SECONDS", OPT_INT, "30", CONFIG_RELAY, F(lag_warn_seconds), 1, 86400,
	 NULL, "wal: warn when the oldest unpublished commit is older than this"},
};

#define N_OPTIONS (sizeof(options) / sizeof(options[0]))

static char **field_str(struct config *cfg, const struct option *o)
{
	return (char **)((char *)cfg + o->offset);
}

static int *field_int(struct config *cfg, const struct option *o)
{
	return (int *)((char *)cfg + o->offset);
}

static bool *field_bool(struct config *cfg, const struct option *o)
{
	return (bool *)((char *)cfg + o->offset);
}

/* Store value into the option's field; prints the problem and returns false. */
static bool option_set(struct config *cfg, const struct option *o, const char *value, const char *origin)
{
	switch (o->type) {
	case OPT_STRING: {
		char *copy = strdup(value);
		if (!copy) {
			fprintf(stderr, "%s: out of memory\n", cfg->program);
			return false;
		}
		free(*field_str(cfg, o));
		*field_str(cfg, o) = copy;
		return true;
	}
	case OPT_INT: {
		char *end = NULL;
		errno = 0;
		long v = strtol(value, &end, 10);
		if (errno || end == value || *end != '\0' || v < o->min || v > o->max) {
			fprintf(stderr, "%s: %s: '%s' is not a whole number from %ld to %ld\n", cfg->program,
				origin, value, o->min, o->max);
			return false;
		}
		*field_int(cfg, o) = (int)v;
		return true;
	}
	case OPT_BOOL:
		if (!strcmp(value, "true") || !strcmp(value, "1") || !strcmp(value, "yes") || !strcmp(value, "on")) {
			*field_bool(cfg, o) = true;
			return true;
		}
		if (!strcmp(value, "false") || !strcmp(value, "0") || !strcmp(value, "no") || !strcmp(value, "off")) {
			*field_bool(cfg, o) = false;
			return true;
		}
		fprintf(stderr, "%s: %s: '%s' is not true or false\n", cfg->program, origin, value);
		return false;
	case OPT_CHOICE:
		for (int i = 0; o->choices[i]; i++) {
			if (!strcmp(value, o->choices[i])) {
				*field_int(cfg, o) = i;
				return true;
			}
		}
		fprintf(stderr, "%s: %s: '%s' is not one of:", cfg->program, origin, value);
		for (int i = 0; o->choices[i]; i++)
			fprintf(stderr, " %s", o->choices[i]);
		fputc('\n', stderr);
		return false;
	}
	return false;
}

static void print_help(const struct config *cfg, unsigned program)
{
	printf("Usage: checkout-%s [options]\n\nOptions (flags override environment variables):\n", cfg->program);
	for (size_t i = 0; i < N_OPTIONS; i++) {
		const struct option *o = &options[i];
		if (!(o->programs & program))
			continue;
		char flag[64];
		snprintf(flag, sizeof(flag), "--%s%s", o->name, o->type == OPT_BOOL ? "" : "=VALUE");
		printf("  %-28s %s\n", flag, o->help);
		printf("  %-28s env %s, default '%s'\n", "", o->env ? o->env : "(none)", o->def);
	}
	printf("  %-28s %s\n", "--help", "print this help and exit");
}

/* Split cfg->listen into host and port; prints the problem and returns false. */
static bool parse_listen(struct config *cfg)
{
	const char *colon = strrchr(cfg->listen, ':');
	if (!colon || colon == cfg->listen || (size_t)(colon - cfg->listen) >= sizeof(cfg->listen_host)) {
		fprintf(stderr, "%s: listen: '%s' is not host:port\n", cfg->program, cfg->listen);
		return false;
	}
	char *end = NULL;
	errno = 0;
	long port = strtol(colon + 1, &end, 10);
	if (errno || end == colon + 1 || *end != '\0' || port < 1 || port > 65535) {
		fprintf(stderr, "%s: listen: port '%s' is out of range 1..65535\n", cfg->program, colon + 1);
		return false;
	}
	memcpy(cfg->listen_host, cfg->listen, (size_t)(colon - cfg->listen));
	cfg->listen_host[colon - cfg->listen] = '\0';
	cfg->listen_port = (int)port;
	return true;
}

static const struct option *find_option(unsigned program, const char *name, size_t len)
{
	for (size_t i = 0; i < N_OPTIONS; i++) {
		if ((options[i].programs & program) && strlen(options[i].name) == len &&
		    !strncmp(options[i].name, name, len))
			return &options[i];
	}
	return NULL;
}

enum config_result config_load(struct config *cfg, unsigned program, const char *name, int argc, char **argv)
{
	char origin[96];

	memset(cfg, 0, sizeof(*cfg));
	cfg->program = name;
	for (size_t i = 0; i < N_OPTIONS; i++) {
		const struct option *o = &options[i];
		snprintf(origin, sizeof(origin), "default of --%s", o->name);
		if (!option_set(cfg, o, o->def, origin))
			return CONFIG_EXIT_ERROR;
	}
	for (size_t i = 0; i < N_OPTIONS; i++) {
		const struct option *o = &options[i];
		const char *v = o->env ? getenv(o->env) : NULL;
		if (!(o->programs & program) || !v)
			continue;
		snprintf(origin, sizeof(origin), "%s", o->env);
		if (!option_set(cfg, o, v, origin))
			return CONFIG_EXIT_ERROR;
	}
	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i];
		if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
			print_help(cfg, program);
			return CONFIG_EXIT_OK;
		}
		if (strncmp(arg, "--", 2) != 0) {
			fprintf(stderr, "%s: unexpected argument '%s' (see --help)\n", name, arg);
			return CONFIG_EXIT_ERROR;
		}
		const char *key = arg + 2;
		const char *eq = strchr(key, '=');
		size_t keylen = eq ? (size_t)(eq - key) : strlen(key);
		const struct option *o = find_option(program, key, keylen);
		if (!o) {
			fprintf(stderr, "%s: unknown option '--%.*s' (see --help)\n", name, (int)keylen, key);
			return CONFIG_EXIT_ERROR;
		}
		const char *value = eq ? eq + 1 : NULL;
		if (!value && o->type == OPT_BOOL)
			value = "true";
		if (!value) {
			if (i + 1 >= argc) {
				fprintf(stderr, "%s: option '--%s' needs a value\n", name, o->name);
				return CONFIG_EXIT_ERROR;
			}
			value = argv[++i];
		}
		snprintf(origin, sizeof(origin), "--%s", o->name);
		if (!option_set(cfg, o, value, origin))
			return CONFIG_EXIT_ERROR;
	}
	if ((program & (CONFIG_SERVER | CONFIG_LOADTEST)) && !parse_listen(cfg))
		return CONFIG_EXIT_ERROR;
	return CONFIG_OK;
}

void config_free(struct config *cfg)
{
	if (!cfg)
		return;
	for (size_t i = 0; i < N_OPTIONS; i++) {
		if (options[i].type == OPT_STRING) {
			char **s = field_str(cfg, &options[i]);
			free(*s);
			*s = NULL;
		}
	}
}

const char *config_isolation_sql(int isolation)
{
	switch (isolation) {
	case ISOLATION_REPEATABLE_READ:
		return "REPEATABLE READ";
	case ISOLATION_READ_COMMITTED:
		return "READ COMMITTED";
	default:
		return "SERIALIZABLE";
	}
}
