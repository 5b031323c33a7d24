/* catalogue.c - what a chaos run sells.
 *
 * Mostly plentiful stock, so most checkouts are admitted; one product that
 * sells out within seconds and one within minutes, so "out of stock" and the
 * stock invariant (never below zero) are exercised; one product in a limit
 * group, so purchase limits are too. Prices differ, so the revenue check
 * means something.
 */
#include "chaos.h"

#include <stdio.h>

#include "checkout/db.h"
#include "checkout/log.h"

const struct chaos_product chaos_catalogue[] = {
    {"chaos-tee", 1999, 1000000, NULL},
    {"chaos-hoodie", 4999, 1000000, NULL},
    {"chaos-socks", 899, 1000000, NULL},
    {"chaos-cap", 1499, 1000000, NULL},
    {"chaos-mug", 1299, 1000000, NULL},
    {"chaos-poster", 2499, 1000000, NULL},
    {"chaos-sticker", 199, 1000000, NULL},
    {"chaos-scarce", 3499, 1500, NULL},
    {"chaos-last-few", 9999, 40, NULL},
    {"chaos-sneaker", 12999, 1000000, CHAOS_LIMIT_GROUP},
    {NULL, 0, 0, NULL},
};

bool chaos_setup(PGconn *conn)
{
	char err[512], per[16], price[24], stock[24];
	bool ok = false;

	if (!db_command(conn, "BEGIN", err, sizeof(err)))
		goto out;
	snprintf(per, sizeof(per), "%d", CHAOS_PER_CUSTOMER);
	const char *group[] = {CHAOS_LIMIT_GROUP, per};
	PGresult *res = PQexecParams(conn, "INSERT INTO limit_groups (name, per_customer) VALUES ($1, $2)", 2,
				     NULL, group, NULL, NULL, 0);
	bool done = PQresultStatus(res) == PGRES_COMMAND_OK;
	if (!done)
		snprintf(err, sizeof(err), "%s", PQresultErrorMessage(res));
	PQclear(res);
	if (!done)
		goto out;
	for (const struct chaos_product *p = chaos_catalogue; p->sku; p++) {
		snprintf(price, sizeof(price), "%ld", p->price_cents);
		snprintf(stock, sizeof(stock), "%ld", p->stock);
		const char *params[] = {p->sku, price, stock, p->limit_group};
		res = PQexecParams(conn,
				   "INSERT INTO products (sku, name, price_cents, stock, limit_group) "
				   "VALUES ($1, $1, $2, $3, $4)",
				   4, NULL, params, NULL, NULL, 0);
		done = PQresultStatus(res) == PGRES_COMMAND_OK;
		if (!done)
			snprintf(err, sizeof(err), "%s", PQresultErrorMessage(res));
		PQclear(res);
		if (!done)
			goto out;
	}
	ok = db_command(conn, "COMMIT", err, sizeof(err));
out:
	if (!ok)
		log_error("setup: %s", err);
	return ok;
}
