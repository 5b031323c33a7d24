/* main.c - checkout-race: fire concurrent checkouts at a running server and
 * check that nothing was oversold, no purchase limit was broken and no cart
 * was half taken.
 *
 * Three scenarios, each run for --rounds rounds on fresh products:
 *   last-item     (lost update) one SKU with --stock units, --clients buyers
 *                 of one unit each: exactly `stock` may be admitted;
 *   limited-drop  (write skew) one customer, a limit group of --sizes sizes
 *                 with ample stock and --per-customer units allowed, one
 *                 checkout per client, each for a different size: exactly
 *                 `per_customer` may be admitted;
 *   multi-item    (all or nothing) a ring of --clients SKUs with one unit
 *                 each, client i buying SKUs i and i+1, each pair on two
 *                 partitions of the orders topic (partition.h): a cart gets
 *                 both units or neither, so at most half are admitted and
 *                 no unit goes to a refused cart.
 * --design says what the URLs run, and so where the outcome is read:
 * database (checkout-server; the orders in PostgreSQL, and with
 * --check-topic and --check-workers once more at the end on the topic and in
 * the workers' tables), kafka-view or kafka-intent (checkout-naive, which
 * writes no orders: the 201 answers against the stock its
 * GET /v1/products/{sku} reports). Prints one table. Exit status 1 when a
 * serializable database run shows an anomaly, when any answer was outside
 * the contract (5xx other than too-much-contention, transport error), or
 * with --expect-anomaly when a scenario showed none; 2 when the tool itself
 * could not run.
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
#include "checkout/partition.h"
#include "race.h"

enum { SCENARIO_LAST_ITEM, SCENARIO_LIMITED_DROP, SCENARIO_MULTI_ITEM, SCENARIO_COUNT };

static const char *const scenario_names[SCENARIO_COUNT] = {"last-item", "limited-drop", "multi-item"};
static const char *const scenario_tags[SCENARIO_COUNT] = {"li", "ld", "mi"};

/* multi-item's partitions for the database design, which has no topic to ask: the embedded broker's */
#define RACE_DEFAULT_PARTITIONS 3

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

/* The table's design column: the database's isolation level, or the kafka design. */
static const char *design_name(const struct config *cfg)
{
	if (cfg->race_design == RACE_KAFKA_VIEW)
		return "kafka-view";
	if (cfg->race_design == RACE_KAFKA_INTENT)
		return "kafka-intent";
	return isolation_name(cfg->isolation);
}

/*
 * The name of multi-item's SKU k in round r: the first "<prefix><r>-item<k>-<j>"
 * that falls on partition target. NULL when out of memory.
 */
static char *multi_sku(const char *prefix, int r, int k, int target, int partitions)
{
	for (int j = 0;; j++) {
		char *sku = NULL;
		if (asprintf(&sku, "%s%d-item%d-%d", prefix, r, k, j) < 0)
			return NULL;
		if (partitions < 2 || partition_of(sku, partitions) == target || j >= 10000)
			return sku;
		free(sku);
	}
}

/*
 * The partition multi-item's SKU k of n goes on: alternately 0 and 1, so
 * that neighbours differ; the last of an odd ring, which neighbours a 1 and
 * the 0 of SKU 0, on 2 (with two partitions it cannot differ from both).
 */
static int multi_target(int k, int n, int partitions)
{
	if (n % 2 == 1 && k == n - 1)
		return partitions >= 3 ? 2 : 0;
	return k % 2;
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

/* Build round r of scenario s: its SKUs, its limit group, each client's cart and body. */
static bool round_build(const struct config *cfg, int s, const char *prefix, int r, int partitions,
			char **skus, int *n_skus, char *group, size_t grouplen, struct race_cart *carts,
			char **bodies)
{
	int clients = cfg->race_clients;
	if (s == SCENARIO_LAST_ITEM) {
		*n_skus = 1;
		group[0] = '\0';
		if (asprintf(&skus[0], "%s%d", prefix, r) < 0) {
			skus[0] = NULL;
			return false;
		}
	} else if (s == SCENARIO_MULTI_ITEM) {
		*n_skus = clients;
		group[0] = '\0';
		for (int k = 0; k < clients; k++) {
			skus[k] = multi_sku(prefix, r, k, multi_target(k, clients, partitions), partitions);
			if (!skus[k])
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
		if (s == SCENARIO_LAST_ITEM) { /* a different customer each */
			carts[i] = (struct race_cart){.n = 1, .sku = {0}};
			rc = asprintf(&bodies[i],
				      "{\"customer_id\":\"%s%d-buyer%d\",\"email\":\"buyer%d@example.com\","
				      "\"items\":[{\"sku\":\"%s\",\"quantity\":1}]}",
				      prefix, r, i, i, skus[0]);
		} else if (s == SCENARIO_MULTI_ITEM) { /* a different customer each, SKUs i and i+1 */
			carts[i] = (struct race_cart){.n = 2, .sku = {i, (i + 1) % clients}};
			rc = asprintf(
			    &bodies[i],
			    "{\"customer_id\":\"%s%d-buyer%d\",\"email\":\"buyer%d@example.com\","
			    "\"items\":[{\"sku\":\"%s\",\"quantity\":1},{\"sku\":\"%s\",\"quantity\":1}]}",
			    prefix, r, i, i, skus[carts[i].sku[0]], skus[carts[i].sku[1]]);
		} else { /* one customer, a different size each */
			carts[i] = (struct race_cart){.n = 1, .sku = {i % *n_skus}};
			rc = asprintf(&bodies[i],
				      "{\"customer_id\":\"%s%d-fan\",\"email\":\"fan@example.com\","
				      "\"items\":[{\"sku\":\"%s\",\"quantity\":1}]}",
				      prefix, r, skus[i % *n_skus]);
		}
		if (rc < 0) {
			bodies[i] = NULL;
			return false;
		}
	}
	return true;
}

/* Run every round of scenario s into row. Returns false when the tool cannot go on. */
static bool scenario_run(const struct config *cfg, PGconn *conn, struct fire_pool *pool, char *const *urls,
			 int n_urls, int partitions, int s, struct row *row)
{
	int clients = cfg->race_clients;
	int max_skus = cfg->race_sizes > clients ? cfg->race_sizes : clients;
	char **skus = calloc((size_t)max_skus, sizeof(*skus));
	char **bodies = calloc((size_t)clients, sizeof(*bodies));
	struct race_result *results = calloc((size_t)clients, sizeof(*results));
	struct race_cart *carts = calloc((size_t)clients, sizeof(*carts));
	bool database = cfg->race_design == RACE_DATABASE;
	bool ok = false;

	row->ran = true;
	row->topic = row->workers = -1;
	if (!database) /* checkout-naive keeps no orders, no outbox and no retry count */
		row->db.orders = row->db.outbox = row->retries = -1;
	if (!skus || !bodies || !results || !carts)
		goto out;
	for (int r = 0; r < cfg->race_rounds; r++) {
		char group[96];
		int n_skus = 0;
		/* limited-drop: ample for one size each */
		int stock = s == SCENARIO_LAST_ITEM    ? cfg->race_stock
			    : s == SCENARIO_MULTI_ITEM ? 1
						       : clients;
		const char *limited = NULL;
		struct check_round db;

		if (!round_build(cfg, s, row->prefix, r, partitions, skus, &n_skus, group, sizeof(group),
				 carts, bodies))
			goto out;
		limited = group[0] ? group : NULL;
		long mark = database ? check_outbox_mark(conn) : 0;
		if (mark < 0 || !check_setup(conn, limited, cfg->race_per_customer, skus, n_skus, stock))
			goto out;

		long before = database ? fire_read_retries(urls, n_urls) : -1;
		fire_round(pool, bodies, results);
		long after = database ? fire_read_retries(urls, n_urls) : -1;
		if (before < 0 || after < 0 || row->retries < 0)
			row->retries = -1;
		else
			row->retries += after - before;

		for (int i = 0; i < clients; i++) {
			const struct race_result *res = &results[i];
			bool expected_rejection =
			    (s != SCENARIO_LIMITED_DROP && res->verdict == VERDICT_OUT_OF_STOCK) ||
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

		if (database ? !check_round(conn, skus, n_skus, stock, limited, carts[0].n, results, clients,
					    mark, &db, &row->orders)
			     : !check_round_state(
				   urls[0], skus, n_skus, stock, limited, cfg->race_per_customer, carts,
				   results, clients,
				   cfg->race_design == RACE_KAFKA_VIEW ? cfg->race_catch_up_seconds : 0, &db))
			goto out;
		row->db.stock += db.stock;
		row->db.oversold += db.oversold;
		row->db.over_limit += db.over_limit;
		row->db.split += db.split;
		if (database) {
			row->db.orders += db.orders;
			row->db.outbox += db.outbox;
		}
		row->db.admitted_units += db.admitted_units;
		log_msg(LOG_DEBUG, scenario_names[s],
			"round %d: stock mismatches %ld, oversold %ld, over limit %ld, split %ld, order "
			"mismatches %ld, outbox mismatches %ld",
			r + 1, db.stock, db.oversold, db.over_limit, db.split, db.orders, db.outbox);

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
	free(carts);
	return ok;
}

/* What the design got wrong in this scenario: oversold, over the limit, split (any isolation's doing). */
static long row_isolation_anomalies(const struct row *row)
{
	return row->db.stock + row->db.oversold + row->db.over_limit + row->db.split;
}

static long row_anomalies(const struct row *row)
{
	return row_isolation_anomalies(row) + (row->db.orders > 0 ? row->db.orders : 0) +
	       (row->db.outbox > 0 ? row->db.outbox : 0) + (row->topic > 0 ? row->topic : 0) +
	       (row->workers > 0 ? row->workers : 0);
}

static void cell(char *buf, size_t len, long v, const char *none)
{
	if (v < 0)
		snprintf(buf, len, "%s", none);
	else
		snprintf(buf, len, "%ld", v);
}

/*
 * The table, one line per scenario. design: the database's isolation level,
 * or kafka-view / kafka-intent. Answers: admitted (201), rejected (the
 * scenario's 409), exhausted (503 too-much-contention), errors (anything
 * else). retries: serialization retries the servers made (n/a when their
 * /metrics does not say). The invariants, as counts of violations: stock
 * (SKUs where initial != current + sold, or below zero), oversold (units sold
 * beyond the initial stock), over-limit (units beyond per_customer), split
 * (units taken for a cart that was refused, plus orders with part of a cart),
 * orders (201s and database orders that differ), outbox (admitted orders
 * without exactly one outbox row, or strays), topic and workers (admitted
 * orders missing or extra there); n/a and skipped are not checked.
 * anomalies is their sum.
 */
static void print_table(const struct config *cfg, int n_urls, const struct row *rows)
{
	printf("%-13s %-15s %7s %6s %8s %8s %8s %9s %6s %7s %5s %8s %10s %5s %6s %6s %7s %7s %9s\n",
	       "scenario", "design", "servers", "rounds", "requests", "admitted", "rejected", "exhausted",
	       "errors", "retries", "stock", "oversold", "over-limit", "split", "orders", "outbox", "topic",
	       "workers", "anomalies");
	for (int s = 0; s < SCENARIO_COUNT; s++) {
		const struct row *row = &rows[s];
		char retries[24], orders[24], outbox[24], topic[24], workers[24];
		if (!row->ran)
			continue;
		cell(retries, sizeof(retries), row->retries, "n/a");
		cell(orders, sizeof(orders), row->db.orders, "n/a");
		cell(outbox, sizeof(outbox), row->db.outbox, "n/a");
		cell(topic, sizeof(topic), row->topic, "skipped");
		cell(workers, sizeof(workers), row->workers, "skipped");
		printf(
		    "%-13s %-15s %7d %6d %8ld %8ld %8ld %9ld %6ld %7s %5ld %8ld %10ld %5ld %6s %6s %7s %7s "
		    "%9ld\n",
		    scenario_names[s], design_name(cfg), n_urls, cfg->race_rounds, row->requests,
		    row->admitted, row->rejected, row->exhausted, row->errors, retries, row->db.stock,
		    row->db.oversold, row->db.over_limit, row->db.split, orders, outbox, topic, workers,
		    row_anomalies(row));
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
		long isolation_anomaly = row_isolation_anomalies(row);
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
		if (cfg->race_design == RACE_DATABASE && cfg->isolation == ISOLATION_SERIALIZABLE &&
		    isolation_anomaly > 0) {
			log_error("%s: %ld anomalies at serializable", scenario_names[s], isolation_anomaly);
			rc = 1;
		}
		if (cfg->race_expect_anomaly && isolation_anomaly == 0) {
			static const char *const kinds[SCENARIO_COUNT] = {"lost-update", "write-skew",
									  "oversold or split cart"};
			log_error("%s: expected the %s anomaly at %s, saw none", scenario_names[s], kinds[s],
				  design_name(cfg));
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

	bool runs[SCENARIO_COUNT];
	for (int s = 0; s < SCENARIO_COUNT; s++)
		runs[s] = cfg.race_scenario == 0 || cfg.race_scenario == s + 1;
	if (cfg.race_stock >= cfg.race_clients && runs[SCENARIO_LAST_ITEM])
		log_warn("--stock=%d is not below --clients=%d: last-item has nothing to race for",
			 cfg.race_stock, cfg.race_clients);
	if (cfg.race_per_customer >= cfg.race_clients && runs[SCENARIO_LIMITED_DROP])
		log_warn("--per-customer=%d is not below --clients=%d: limited-drop has nothing to race for",
			 cfg.race_per_customer, cfg.race_clients);
	if (cfg.race_clients < 2 && runs[SCENARIO_MULTI_ITEM]) {
		log_error("multi-item needs --clients of 2 or more (a ring of two-SKU carts)");
		goto out;
	}
	n_urls = parse_urls(&cfg, &urls);
	if (n_urls == 0) {
		log_error("no server URL (--urls or --listen)");
		goto out;
	}
	if (cfg.race_design != RACE_DATABASE && n_urls != 1) {
		log_error("--design=%s reads one checkout-naive's state: give it exactly one URL",
			  design_name(&cfg));
		goto out;
	}
	if (cfg.race_design != RACE_DATABASE && (cfg.race_check_topic || cfg.race_check_workers)) {
		log_warn(
		    "--check-topic and --check-workers compare with the database's orders: skipped for %s",
		    design_name(&cfg));
		cfg.race_check_topic = cfg.race_check_workers = false;
	}
	/* multi-item's carts cross the partitions checkout-naive's deciders own */
	int partitions = RACE_DEFAULT_PARTITIONS;
	if (cfg.race_design != RACE_DATABASE && runs[SCENARIO_MULTI_ITEM] &&
	    (partitions = check_partitions(&cfg)) < 1)
		goto out;
	if (runs[SCENARIO_MULTI_ITEM] && (partitions < 2 || (cfg.race_clients % 2 == 1 && partitions < 3)))
		log_warn("%s has %d partition%s: some multi-item carts cannot cross partitions",
			 cfg.orders_topic, partitions, partitions == 1 ? "" : "s");
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
		if (!runs[s])
			continue;
		snprintf(rows[s].prefix, sizeof(rows[s].prefix), "race-%08x-%s-", run_id, scenario_tags[s]);
		log_info("%s: %d rounds of %d concurrent checkouts against %d server%s (%s)",
			 scenario_names[s], cfg.race_rounds, cfg.race_clients, n_urls, n_urls > 1 ? "s" : "",
			 design_name(&cfg));
		if (!scenario_run(&cfg, conn, pool, urls, n_urls, partitions, s, &rows[s]))
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
