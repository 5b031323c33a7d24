/* inventory.c - checkout-inventory: a downstream view of what was sold per SKU.
 *
 * A view built from the topic alone: it reads nothing of the checkout's
 * database, so it is as right while it lags, after a --rebuild, or against a
 * database of its own. The view (inventory.stock_view) counts units sold,
 * orders seen and the last order time per SKU, keeps the stock the latest
 * order left (migration 009), and can be thrown away and
 * rebuilt (--rebuild; from the database's events: scripts/rebuild). Each line of an event carries the
 * SKU's stock after that order (stock_after, written by the same
 * transaction): the line's log says it, and the stock crossed the low-stock
 * threshold with this order when stock_after <= threshold < stock_after +
 * quantity, whatever came before or after it on the topic.
 *
 * A thread keeps the worker's own copy of the catalogue from the products
 * topic (catalogue.h); the log names each SKU from it, and a product it says
 * is deleted gets no low-stock warning (it will not be restocked).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkout/errbuf.h"
#include "checkout/log.h"
#include "catalogue.h"
#include "worker.h"

static const struct db_stmt inventory_stmts[] = {
    WORKER_COMMON_STMTS("inventory"),
    {"inventory_view_add",
     "INSERT INTO inventory.stock_view AS v (sku, units_sold, orders_seen, last_order_at, stock, stock_at) "
     "VALUES ($1, $2::bigint, 1, $3::timestamptz, $4::bigint, CASE WHEN $4::bigint IS NOT NULL THEN "
     "$3::timestamptz END) "
     "ON CONFLICT (sku) DO UPDATE SET units_sold = v.units_sold + EXCLUDED.units_sold, "
     "  orders_seen = v.orders_seen + 1, "
     "  last_order_at = GREATEST(v.last_order_at, EXCLUDED.last_order_at), "
     /* the stock of the latest order wins, whatever order the events came in (migration 009) */
     "  stock = CASE WHEN EXCLUDED.stock IS NOT NULL AND (v.stock_at IS NULL OR EXCLUDED.stock_at >= "
     "v.stock_at) "
     "    THEN EXCLUDED.stock ELSE v.stock END, "
     "  stock_at = CASE WHEN EXCLUDED.stock IS NOT NULL AND (v.stock_at IS NULL OR EXCLUDED.stock_at >= "
     "v.stock_at) "
     "    THEN EXCLUDED.stock_at ELSE v.stock_at END "
     /* the catalogue (catalogue.c, from the products topic) names the SKU and says whether it is deleted */
     "RETURNING units_sold, (SELECT c.name FROM inventory.catalogue c WHERE c.sku = v.sku), "
     "  (SELECT c.deleted FROM inventory.catalogue c WHERE c.sku = v.sku)"},
    {NULL, NULL},
};

/* Append to a fixed buffer, never overflowing (a long line is cut). */
static void append(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void append(char *buf, size_t size, const char *fmt, ...)
{
	size_t used = strlen(buf);
	if (used + 1 >= size)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf + used, size - used, fmt, ap);
	va_end(ap);
}

static enum worker_result inventory_apply(struct worker *w, PGconn *conn, const struct order_event *ev,
					  struct worker_report *rep)
{
	char line[sizeof(rep->line)] = "", warn[sizeof(rep->warn)] = "";
	PGresult *res = NULL;
	enum worker_result result = WORKER_FAILED;
	int threshold = w->cfg.low_stock_threshold;

	for (size_t i = 0; i < ev->n_items; i++) {
		const struct event_item *it = &ev->items[i];
		char qty[16];
		snprintf(qty, sizeof(qty), "%d", it->quantity);
		char stock[24];
		snprintf(stock, sizeof(stock), "%lld", (long long)it->stock_after);
		const char *add_params[] = {it->sku, qty, ev->created_at,
					    it->stock_after >= 0 ? stock : NULL};
		res = worker_exec(conn, "inventory_view_add", 4, add_params, rep);
		if (!worker_res_ok(res))
			goto out;
		long long sold = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		char name[256];
		snprintf(name, sizeof(name), "%s", PQgetisnull(res, 0, 1) ? "" : PQgetvalue(res, 0, 1));
		bool deleted = !strcmp(PQgetvalue(res, 0, 2), "t");
		PQclear(res);
		res = NULL;

		long long left = it->stock_after;
		append(line, sizeof(line), "%s%s%s%s%s x%d, ", i ? "; " : "", it->sku, name[0] ? " (" : "",
		       name, name[0] ? ")" : "", it->quantity);
		if (left < 0) {
			append(line, sizeof(line), "stock not in the event (%lld sold)", sold);
		} else {
			append(line, sizeof(line), "%lld left after this order (%lld sold)", left, sold);
			/* a product deleted from the catalogue will not be restocked: no warning */
			if (left <= threshold && threshold < left + it->quantity && !deleted)
				append(warn, sizeof(warn), "%slow stock: %s down to %lld (threshold %d)",
				       warn[0] ? "; " : "", it->sku, left, threshold);
		}
	}
	snprintf(rep->line, sizeof(rep->line), "%s", line);
	snprintf(rep->warn, sizeof(rep->warn), "%s", warn);
	result = WORKER_APPLIED;
out:
	PQclear(res);
	return result;
}

static bool inventory_purge(PGconn *conn, char *err, size_t errlen)
{
	PGresult *res =
	    PQexec(conn, "TRUNCATE inventory.stock_view, inventory.inbox, inventory.dead_letters");
	bool ok = worker_res_ok(res);
	if (!ok)
		errbuf_set(err, errlen, "%s", db_error_message(res, conn));
	PQclear(res);
	return ok;
}

static bool inventory_start(struct worker *w)
{
	log_info("low-stock warning at %d units or fewer", w->cfg.low_stock_threshold);
	w->state = catalogue_start(&w->cfg);
	return w->state != NULL;
}

static void inventory_stop(struct worker *w)
{
	(void)catalogue_stop(w->state);
	w->state = NULL;
}

static const struct worker_ops inventory_ops = {
    .name = "inventory",
    .stmts = inventory_stmts,
    .start = inventory_start,
    .apply = inventory_apply,
    .purge = inventory_purge,
    .stop = inventory_stop,
};

int main(int argc, char **argv)
{
	return worker_main(&inventory_ops, argc, argv);
}
