/* main.c - checkout-race: fire concurrent checkouts at a running server and
 * check that nothing was oversold and no purchase limit was broken.
 *
 * Two scenarios, each run for --rounds rounds on fresh products:
 *   last-item     (lost update) one SKU with --stock units, --clients buyers
 *                 of one unit each: exactly `stock` may be admitted;
 *   limited-drop  (write skew) one customer, a limit group of --sizes sizes
 *                 with ample stock and --per-customer units allowed, one
 *                 checkout per client, each for a different size: exactly
 *                 `per_customer` may be admitted.
 * After each round the invariants are checked in PostgreSQL; with
 * --check-topic and --check-workers, once more at the end on the topic and in
 * the workers' tables. Prints one table. Exit status 1 when a serializable
 * run shows an anomaly, when any answer was outside the contract (5xx other
 * than too-much-contention, transport error), or with --expect-anomaly when a
 * scenario showed none; 2 when the tool itself could not run.
 */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "checkout/config.h"
#include "checkout/log.h"
#include "race.h"

enum { SCENARIO_LAST_ITEM, SCENARIO_LIMITED_DROP, SCENARIO_COUNT };

static const char *const scenario_names[SCENARIO_COUNT] = {"last-item", "limited-drop"};
static const char *const scenario_tags[SCENARIO_COUNT] = {"li", "ld"};

/* One line of the table: a scenario over all its rounds. */
struct row {
	bool ran;
	char prefix[64]; /* every SKU of this scenario in this run starts with it */
	long requests, admitted, rejected, exhausted, errors;
	long retries; /* -1: the server does not say */
	struct check_round db;
	long topic, workers;	/* -1: not checked */
	struct race_set orders; /* admitted, as the database says */
	char first_error[160];
};

static const char *isolation_name(int isolation)
{
	static const char *const names[] = {"serializable", "repeatable-read", "read-committed"};
	return isolation >= 0 && isolation <= 2 ? names[isolation] : "?";
}

/* Split the comma-separated URL list (or http://LISTEN) into urls; returns the count, 0 on error. */
static int parse_urls(const struct config *cfg, char ***urls)
{
	char *list = NULL, *save = NULL;
	int n = 0;

	if (cfg->race_urls[0])
		list = strdup(cfg->race_urls);
	else if (asprintf(&list, "http://%s", cfg->listen) < 0)
		list = NULL;
	*urls = calloc(strlen(list ? list : "") / 2 + 2, sizeof(**urls));
	if (!list || !*urls)
		goto out;
	for (char *tok = strtok_r(list, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
		size_t len = strlen(tok);
		while (len > 0 && tok[len - 1] == '/')
			tok[--len] = '\0';
		(*urls)[n] = strdup(tok);
		if (!(*urls)[n])
			goto out;
		n++;
	}
out:
	free(list);
	return n;
}

static void free_strings(char **v, int n)
{
	for (int i = 0; v && i < n; i++)
		free(v[i]);
	free(v);
}

/* Build round r of scenario s: its SKUs, its limit group and one body per client. */
static bool round_build(const struct config *cfg, int s, const char *prefix, int r, char **skus, int *n_skus,
			char *group, size_t grouplen, char **bodies)
{
	int clients = cfg->race_clients;
	if (s == SCENARIO_LAST_ITEM) {
		*n_skus = 1;
		group[0] = '\0';
		if (asprintf(&skus[0], "%s%d", prefix, r) < 0) {
			skus[0] = NULL;
			return false;
		}
	} else {
		*n_skus = cfg->race_sizes > 0 ? cfg->race_sizes : clients;
		snprintf(group, grouplen, "%s%d", prefix, r);
		for (int k = 0; k < *n_skus; k++) {
			if (asprintf(&skus[k], "%s%d-size%d", prefix, r, k) < 0) {
				skus[k] = NULL;
				return false;
			}
		}
	}
	for (int i = 0; i < clients; i++) {
		int rc;
		if (s == SCENARIO_LAST_ITEM) /* a different customer each */
			rc = asprintf(&bodies[i],
				      "{\"customer_id\":\"%s%d-buyer%d\",\"email\":\"buyer%d@example.com\","
				      "\"items\":[{\"sku\":\"%s\",\"quantity\":1}]}",
				      prefix, r, i, i, skus[0]);
		else /* one customer, a different size each */
			rc = asprintf(&bodies[i],
				      "{\"customer_id\":\"%s%d-fan\",\"email\":\"fan@example.com\","
				      "\"items\":[{\"sku\":\"%s\",\"quantity\":1}]}",
				      prefix, r, skus[i % *n_skus]);
		if (rc < 0) {
			bodies[i] = NULL;
			return false;
		}
	}
	return true;
}

/* Run every round of scenario s into row. Returns false when the tool cannot go on. */
static bool scenario_run(const struct config *cfg, PGconn *conn, struct fire_pool *pool, char *const *urls,
			 int n_urls, int s, struct row *row)
{
	int clients = cfg->race_clients;
	int max_skus = cfg->race_sizes > clients ? cfg->race_sizes : clients;
	char **skus = calloc((size_t)max_skus, sizeof(*skus));
	char **bodies = calloc((size_t)clients, sizeof(*bodies));
	struct race_result *results = calloc((size_t)clients, sizeof(*results));
	bool ok = false;

	row->ran = true;
	row->topic = row->workers = -1;
	if (!skus || !bodies || !results)
		goto out;
	for (int r = 0; r < cfg->race_rounds; r++) {
		char group[96];
		int n_skus = 0;
		int stock = s == SCENARIO_LAST_ITEM ? cfg->race_stock : clients; /* ample for one size each */
		struct check_round db;

		if (!round_build(cfg, s, row->prefix, r, skus, &n_skus, group, sizeof(group), bodies))
			goto out;
		long mark = check_outbox_mark(conn);
		if (mark < 0 ||
		    !check_setup(conn, group[0] ? group : NULL, cfg->race_per_customer, skus, n_skus, stock))
			goto out;

		long before = fire_read_retries(urls, n_urls);
		fire_round(pool, bodies, results);
		long after = fire_read_retries(urls, n_urls);
		if (before < 0 || after < 0 || row->retries < 0)
			row->retries = -1;
		else
			row->retries += after - before;

		for (int i = 0; i < clients; i++) {
			const struct race_result *res = &results[i];
			bool expected_rejection =
			    (s == SCENARIO_LAST_ITEM && res->verdict == VERDICT_OUT_OF_STOCK) ||
			    (s == SCENARIO_LIMITED_DROP && res->verdict == VERDICT_OVER_LIMIT);
			row->requests++;
			if (res->verdict == VERDICT_ADMITTED)
				row->admitted++;
			else if (expected_rejection)
				row->rejected++;
			else if (res->verdict == VERDICT_EXHAUSTED)
				row->exhausted++;
			else {
				row->errors++;
				if (!row->first_error[0])
					snprintf(row->first_error, sizeof(row->first_error), "HTTP %ld %s",
						 res->status, res->problem);
			}
		}

		if (!check_round(conn, skus, n_skus, stock, group[0] ? group : NULL, results, clients, mark,
				 &db, &row->orders))
			goto out;
		row->db.stock += db.stock;
		row->db.oversold += db.oversold;
		row->db.over_limit += db.over_limit;
		row->db.orders += db.orders;
		row->db.outbox += db.outbox;
		row->db.admitted_units += db.admitted_units;
		log_msg(LOG_DEBUG, scenario_names[s],
			"round %d: stock mismatches %ld, oversold %ld, over limit %ld, order mismatches %ld, "
			"outbox mismatches %ld",
			r + 1, db.stock, db.oversold, db.over_limit, db.orders, db.outbox);

		for (int k = 0; k < max_skus; k++) {
			free(skus[k]);
			skus[k] = NULL;
		}
		for (int i = 0; i < clients; i++) {
			free(bodies[i]);
			bodies[i] = NULL;
		}
	}
	ok = true;
out:
	free_strings(skus, max_skus);
	free_strings(bodies, clients);
	free(results);
	return ok;
}

static long row_anomalies(const struct row *row)
{
	return row->db.stock + row->db.oversold + row->db.over_limit + row->db.orders + row->db.outbox +
	       (row->topic > 0 ? row->topic : 0) + (row->workers > 0 ? row->workers : 0);
}

static void cell(char *buf, size_t len, long v, const char *none)
{
	if (v < 0)
		snprintf(buf, len, "%s", none);
	else
		snprintf(buf, len, "%ld", v);
}

/*
 * The table, one line per scenario. Answers: admitted (201), rejected (the
 * scenario's 409), exhausted (503 too-much-contention), errors (anything else).
 * retries: serialization retries the servers made (n/a when their /metrics
 * does not say). The invariants, as counts of violations: stock (SKUs where
 * initial != current + sold, or below zero), oversold (units sold beyond the
 * initial stock), over-limit (units beyond per_customer), orders (201s and
 * database orders that differ), outbox (admitted orders without exactly one
 * outbox row, or strays), topic and workers (admitted orders missing or extra
 * there). anomalies is their sum.
 */
static void print_table(const struct config *cfg, int n_urls, const struct row *rows)
{
	printf("%-13s %-15s %7s %6s %8s %8s %8s %9s %6s %7s %5s %8s %10s %6s %6s %7s %7s %9s\n", "scenario",
	       "isolation", "servers", "rounds", "requests", "admitted", "rejected", "exhausted", "errors",
	       "retries", "stock", "oversold", "over-limit", "orders", "outbox", "topic", "workers",
	       "anomalies");
	for (int s = 0; s < SCENARIO_COUNT; s++) {
		const struct row *row = &rows[s];
		char retries[24], topic[24], workers[24];
		if (!row->ran)
			continue;
		cell(retries, sizeof(retries), row->retries, "n/a");
		cell(topic, sizeof(topic), row->topic, "skipped");
		cell(workers, sizeof(workers), row->workers, "skipped");
		printf("%-13s %-15s %7d %6d %8ld %8ld %8ld %9ld %6ld %7s %5ld %8ld %10ld %6ld %6ld %7s %7s "
		       "%9ld\n",
		       scenario_names[s], isolation_name(cfg->isolation), n_urls, cfg->race_rounds,
		       row->requests, row->admitted, row->rejected, row->exhausted, row->errors, retries,
		       row->db.stock, row->db.oversold, row->db.over_limit, row->db.orders, row->db.outbox,
		       topic, workers, row_anomalies(row));
	}
	fflush(stdout);
}

/* The exit status the table calls for (see the top of the file); logs why. */
static int verdict(const struct config *cfg, const struct row *rows)
{
	int rc = 0;
	for (int s = 0; s < SCENARIO_COUNT; s++) {
		const struct row *row = &rows[s];
		/* what weaker isolation causes; the rest must hold at every level */
		long isolation_anomaly = row->db.stock + row->db.oversold + row->db.over_limit;
		long broken = row_anomalies(row) - isolation_anomaly;
		if (!row->ran)
			continue;
		if (row->errors > 0) {
			log_error("%s: %ld answers outside the contract (first: %s)", scenario_names[s],
				  row->errors, row->first_error);
			rc = 1;
		}
		/* orders, outbox, topic and workers must agree at every level */
		if (broken > 0) {
			log_error(
			    "%s: %ld admitted orders missing or extra (database, outbox, topic or workers)",
			    scenario_names[s], broken);
			rc = 1;
		}
		if (cfg->isolation == ISOLATION_SERIALIZABLE && isolation_anomaly > 0) {
			log_error("%s: %ld anomalies at serializable", scenario_names[s], isolation_anomaly);
			rc = 1;
		}
		if (cfg->race_expect_anomaly && isolation_anomaly == 0) {
			log_error("%s: expected the %s anomaly at %s, saw none", scenario_names[s],
				  s == SCENARIO_LAST_ITEM ? "lost-update" : "write-skew",
				  isolation_name(cfg->isolation));
			rc = 1;
		}
	}
	return rc;
}

int main(int argc, char **argv)
{
	struct config cfg;
	struct row rows[SCENARIO_COUNT];
	char **urls = NULL;
	int n_urls = 0, rc = 2;
	PGconn *conn = NULL;
	struct fire_pool *pool = NULL;
	bool curl_ready = false;

	memset(rows, 0, sizeof(rows));
	enum config_result cr = config_load(&cfg, CONFIG_LOADTEST, "race", argc, argv);
	if (cr != CONFIG_OK) {
		rc = cr == CONFIG_EXIT_OK ? 0 : 2;
		goto out;
	}
	log_init(cfg.program, cfg.log_level, cfg.log_format);

	if (cfg.race_stock >= cfg.race_clients && cfg.race_scenario != 2)
		log_warn("--stock=%d is not below --clients=%d: last-item has nothing to race for",
			 cfg.race_stock, cfg.race_clients);
	if (cfg.race_per_customer >= cfg.race_clients && cfg.race_scenario != 1)
		log_warn("--per-customer=%d is not below --clients=%d: limited-drop has nothing to race for",
			 cfg.race_per_customer, cfg.race_clients);
	n_urls = parse_urls(&cfg, &urls);
	if (n_urls == 0) {
		log_error("no server URL (--urls or --listen)");
		goto out;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		log_error("cannot initialise libcurl");
		goto out;
	}
	curl_ready = true;
	conn = check_connect(cfg.database_url);
	if (!conn)
		goto out;
	pool = fire_pool_create(cfg.race_clients, urls, n_urls);
	if (!pool)
		goto out;

	/* names no earlier run can have used: the rounds never share a row */
	unsigned run_id = (unsigned)time(NULL) * 2654435761u ^ (unsigned)getpid() * 40503u;
	const char *prefixes[SCENARIO_COUNT];
	const struct race_set *admitted[SCENARIO_COUNT];
	long units[SCENARIO_COUNT], mismatches[SCENARIO_COUNT];
	int n = 0;
	for (int s = 0; s < SCENARIO_COUNT; s++) {
		if (cfg.race_scenario != 0 && cfg.race_scenario != s + 1)
			continue;
		snprintf(rows[s].prefix, sizeof(rows[s].prefix), "race-%08x-%s-", run_id, scenario_tags[s]);
		log_info("%s: %d rounds of %d concurrent checkouts against %d server%s (%s)",
			 scenario_names[s], cfg.race_rounds, cfg.race_clients, n_urls, n_urls > 1 ? "s" : "",
			 isolation_name(cfg.isolation));
		if (!scenario_run(&cfg, conn, pool, urls, n_urls, s, &rows[s]))
			goto out;
		prefixes[n] = rows[s].prefix;
		admitted[n] = &rows[s].orders;
		units[n] = rows[s].db.admitted_units;
		n++;
	}

	if (cfg.race_check_topic) {
		if (!check_topic(&cfg, prefixes, admitted, n, mismatches))
			goto out;
		for (int s = 0, k = 0; s < SCENARIO_COUNT; s++) {
			if (rows[s].ran)
				rows[s].topic = mismatches[k++];
		}
	}
	if (cfg.race_check_workers) {
		if (!check_workers(&cfg, prefixes, admitted, units, n, mismatches))
			goto out;
		for (int s = 0, k = 0; s < SCENARIO_COUNT; s++) {
			if (rows[s].ran)
				rows[s].workers = mismatches[k++];
		}
	}

	print_table(&cfg, n_urls, rows);
	rc = verdict(&cfg, rows);
out:
	fire_pool_destroy(pool);
	PQfinish(conn);
	for (int s = 0; s < SCENARIO_COUNT; s++)
		race_set_free(&rows[s].orders);
	free_strings(urls, n_urls);
	if (curl_ready)
		curl_global_cleanup();
	config_free(&cfg);
	return rc;
}
