/* analytics.c - checkout-analytics: running totals, per-minute buckets, top SKUs.
 *
 * Every admitted order adds to analytics.totals (orders, units, revenue),
 * to its minute in analytics.minutes (the minute of the order's created_at)
 * and to each of its SKUs in analytics.skus. Every --summary-seconds a
 * summary line is logged; --totals prints the current figures and exits;
 * --rebuild purges the figures and applies the topic again from the
 * beginning, or from --from-offsets (a replay's start: scripts/rebuild).
 * With --dashboard-listen it also serves the live dashboard (dashboard.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "checkout/errbuf.h"
#include "checkout/log.h"
#include "dashboard.h"
#include "worker.h"

#define ANALYTICS_TOP 3

static const struct db_stmt analytics_stmts[] = {
    WORKER_COMMON_STMTS("analytics"),
    {"analytics_totals_add", "UPDATE analytics.totals SET orders = orders + 1, units = units + $1::bigint, "
			     "  revenue_cents = revenue_cents + $2::bigint, updated_at = now() "
			     "RETURNING orders, units, revenue_cents"},
    {"analytics_minute_add",
     "INSERT INTO analytics.minutes AS m (minute, orders, units, revenue_cents) "
     "VALUES (date_trunc('minute', $1::timestamptz AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', 1, $2::bigint, "
     "  $3::bigint) "
     "ON CONFLICT (minute) DO UPDATE SET orders = m.orders + 1, units = m.units + EXCLUDED.units, "
     "  revenue_cents = m.revenue_cents + EXCLUDED.revenue_cents"},
    {"analytics_sku_add",
     "INSERT INTO analytics.skus AS s (sku, orders, units, revenue_cents) VALUES ($1, 1, $2::bigint, "
     "$3::bigint) "
     "ON CONFLICT (sku) DO UPDATE SET orders = s.orders + 1, units = s.units + EXCLUDED.units, "
     "  revenue_cents = s.revenue_cents + EXCLUDED.revenue_cents"},
    {"analytics_totals", "SELECT orders, units, revenue_cents FROM analytics.totals"},
    {"analytics_top",
     "SELECT sku, units, revenue_cents FROM analytics.skus ORDER BY units DESC, sku LIMIT $1"},
    {"analytics_minutes",
     "SELECT to_char(minute AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI\"Z\"'), orders, units, revenue_cents "
     "FROM analytics.minutes ORDER BY minute DESC LIMIT $1"},
    {NULL, NULL},
};

struct analytics_state {
	time_t last_summary;
	bool have_last;
	long long last_orders, last_revenue; /* totals at the previous summary */
	struct dashboard *dashboard;	     /* NULL: off */
};

static enum worker_result analytics_apply(struct worker *w, PGconn *conn, const struct order_event *ev,
					  struct worker_report *rep)
{
	(void)w;
	char units[32], revenue[32], qty[32], line_rev[32], m1[32], m2[32];
	PGresult *res = NULL;
	enum worker_result result = WORKER_FAILED;

	snprintf(units, sizeof(units), "%lld", ev->units);
	snprintf(revenue, sizeof(revenue), "%lld", ev->total_cents);
	const char *minute_params[] = {ev->created_at, units, revenue};
	res = worker_exec(conn, "analytics_minute_add", 3, minute_params, rep);
	if (!worker_res_ok(res))
		goto out;
	for (size_t i = 0; i < ev->n_items; i++) {
		PQclear(res);
		snprintf(qty, sizeof(qty), "%d", ev->items[i].quantity);
		snprintf(line_rev, sizeof(line_rev), "%lld",
			 ev->items[i].unit_price_cents * ev->items[i].quantity);
		const char *sku_params[] = {ev->items[i].sku, qty, line_rev};
		res = worker_exec(conn, "analytics_sku_add", 3, sku_params, rep);
		if (!worker_res_ok(res))
			goto out;
	}
	PQclear(res);
	const char *total_params[] = {units, revenue};
	res = worker_exec(conn, "analytics_totals_add", 2, total_params, rep);
	if (!worker_res_ok(res))
		goto out;
	if (PQntuples(res) != 1) {
		/* the schema's fault, not the event's: wait until its row is back */
		snprintf(rep->line, sizeof(rep->line), "analytics.totals has no row");
		result = WORKER_RETRY;
		goto out;
	}
	const char *orders = PQgetvalue(res, 0, 0), *all_units = PQgetvalue(res, 0, 1);
	snprintf(rep->line, sizeof(rep->line),
		 "counted %lld unit%s, %s; running: %s order%s, %s unit%s, revenue %s", ev->units,
		 ev->units == 1 ? "" : "s", event_money(ev->total_cents, m1, sizeof(m1)), orders,
		 strcmp(orders, "1") ? "s" : "", all_units, strcmp(all_units, "1") ? "s" : "",
		 event_money(strtoll(PQgetvalue(res, 0, 2), NULL, 10), m2, sizeof(m2)));
	result = WORKER_APPLIED;
out:
	PQclear(res);
	return result;
}

/* Read the totals; false when the query failed. */
static bool analytics_read_totals(PGconn *conn, long long *orders, long long *units, long long *revenue)
{
	PGresult *res = PQexecPrepared(conn, "analytics_totals", 0, NULL, NULL, NULL, 0);
	bool ok = worker_res_ok(res) && PQntuples(res) == 1;
	if (ok) {
		*orders = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		*units = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
		*revenue = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
	}
	PQclear(res);
	return ok;
}

static PGresult *analytics_query_limit(PGconn *conn, const char *stmt, int limit)
{
	char n[16];
	snprintf(n, sizeof(n), "%d", limit);
	const char *params[] = {n};
	return PQexecPrepared(conn, stmt, 1, params, NULL, NULL, 0);
}

static void analytics_tick(struct worker *w, PGconn *conn)
{
	struct analytics_state *st = w->state;
	time_t now = time(NULL);
	long long orders, units, revenue;
	char top[256] = "", m1[32], m2[32];

	if (st->have_last && now - st->last_summary < w->cfg.summary_seconds)
		return;
	if (!analytics_read_totals(conn, &orders, &units, &revenue))
		return;
	PGresult *res = analytics_query_limit(conn, "analytics_top", ANALYTICS_TOP);
	for (int i = 0; worker_res_ok(res) && i < PQntuples(res); i++) {
		size_t used = strlen(top);
		snprintf(top + used, sizeof(top) - used, "%s%s (%s)", i ? ", " : "", PQgetvalue(res, i, 0),
			 PQgetvalue(res, i, 1));
	}
	PQclear(res);
	if (st->have_last) {
		log_info(
		    "last %ld s: %lld orders, revenue %s; total %lld orders, %lld units, revenue %s; top: %s",
		    (long)(now - st->last_summary), orders - st->last_orders,
		    event_money(revenue - st->last_revenue, m1, sizeof(m1)), orders, units,
		    event_money(revenue, m2, sizeof(m2)), top[0] ? top : "none yet");
	} else {
		log_info("starting from: %lld orders, %lld units, revenue %s; top: %s", orders, units,
			 event_money(revenue, m2, sizeof(m2)), top[0] ? top : "none yet");
	}
	st->have_last = true;
	st->last_summary = now;
	st->last_orders = orders;
	st->last_revenue = revenue;
}

/* --totals: print the current figures to stdout. */
static bool analytics_oneshot(struct worker *w, int *status)
{
	const struct db_stmt *const tables[] = {analytics_stmts, NULL};
	char err[512], m1[32];
	long long orders, units, revenue;
	PGresult *res = NULL;

	if (!w->cfg.print_totals)
		return false;
	*status = EXIT_FAILURE;
	PGconn *conn = db_connect(w->cfg.database_url, tables, err, sizeof(err));
	if (!conn) {
		log_error("%s", err);
		return true;
	}
	if (!analytics_read_totals(conn, &orders, &units, &revenue)) {
		log_error("cannot read analytics.totals: %s", PQerrorMessage(conn));
		goto out;
	}
	printf("orders   %lld\nunits    %lld\nrevenue  %s\n", orders, units,
	       event_money(revenue, m1, sizeof(m1)));
	res = analytics_query_limit(conn, "analytics_top", 10);
	if (!worker_res_ok(res))
		goto out;
	printf("\ntop skus                          units       revenue\n");
	for (int i = 0; i < PQntuples(res); i++)
		printf("  %-28s %8s  %12s\n", PQgetvalue(res, i, 0), PQgetvalue(res, i, 1),
		       event_money(strtoll(PQgetvalue(res, i, 2), NULL, 10), m1, sizeof(m1)));
	PQclear(res);
	res = analytics_query_limit(conn, "analytics_minutes", 10);
	if (!worker_res_ok(res))
		goto out;
	printf("\nlatest minutes (UTC)    orders    units       revenue\n");
	for (int i = 0; i < PQntuples(res); i++)
		printf("  %-18s %8s %8s  %12s\n", PQgetvalue(res, i, 0), PQgetvalue(res, i, 1),
		       PQgetvalue(res, i, 2),
		       event_money(strtoll(PQgetvalue(res, i, 3), NULL, 10), m1, sizeof(m1)));
	fflush(stdout);
	*status = EXIT_SUCCESS;
out:
	PQclear(res);
	PQfinish(conn);
	return true;
}

/* --rebuild: throw the figures away; the replay adds them up again. */
static bool analytics_purge(PGconn *conn, char *err, size_t errlen)
{
	PGresult *res = PQexec(conn, "TRUNCATE analytics.minutes, analytics.skus, analytics.inbox, "
				     "analytics.dead_letters;"
				     "UPDATE analytics.totals SET orders = 0, units = 0, revenue_cents = 0, "
				     "updated_at = now()");
	bool ok = worker_res_ok(res);
	if (!ok)
		errbuf_set(err, errlen, "%s", db_error_message(res, conn));
	PQclear(res);
	return ok;
}

static bool analytics_start(struct worker *w)
{
	w->state = calloc(1, sizeof(struct analytics_state));
	if (!w->state) {
		log_error("out of memory");
		return false;
	}
	log_info("summary every %d s", w->cfg.summary_seconds);
	if (w->cfg.dashboard_listen[0] && !w->cfg.rebuild) {
		struct analytics_state *st = w->state;
		char err[512];
		st->dashboard = dashboard_start(&w->cfg, err, sizeof(err));
		if (!st->dashboard) {
			log_error("%s", err);
			free(w->state);
			w->state = NULL;
			return false;
		}
		log_info("dashboard on http://%s/", w->cfg.dashboard_listen);
	}
	return true;
}

static void analytics_stop(struct worker *w)
{
	struct analytics_state *st = w->state;
	if (st)
		dashboard_stop(st->dashboard);
	free(w->state);
	w->state = NULL;
}

static const struct worker_ops analytics_ops = {
    .name = "analytics",
    .stmts = analytics_stmts,
    .oneshot = analytics_oneshot,
    .start = analytics_start,
    .apply = analytics_apply,
    .tick = analytics_tick,
    .purge = analytics_purge,
    .stop = analytics_stop,
};

int main(int argc, char **argv)
{
	return worker_main(&analytics_ops, argc, argv);
}
