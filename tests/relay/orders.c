/* orders.c - see orders.h. */
#include "orders.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "testenv.h"

/* One statement, as the checkout does it in several: the order, its line, its outbox row. */
static const char insert_sql[] =
    "WITH o AS ("
    "  INSERT INTO orders (id, customer_id, email, total_cents)"
    "  VALUES (gen_random_uuid(), $1, $1 || '@example.com', 2 * 1250)"
    "  RETURNING id, customer_id, email, total_cents, created_at),"
    " l AS ("
    "  INSERT INTO order_lines (order_id, sku, quantity, unit_price_cents, customer_id)"
    "  SELECT id, 'SKU-1', 2, 1250, customer_id FROM o RETURNING order_id),"
    " ob AS ("
    "  INSERT INTO outbox (event_id, event_type, aggregate_id, payload)"
    "  SELECT gen_random_uuid(), 'order.admitted', o.id, jsonb_build_object("
    "    'order_id', o.id, 'customer_id', o.customer_id, 'email', o.email,"
    "    'items', jsonb_build_array(jsonb_build_object('sku', 'SKU-1', 'quantity', 2,"
    "                                                  'unit_price_cents', 1250)),"
    "    'total_cents', o.total_cents,"
    "    'created_at', to_char(o.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'))"
    "  FROM o RETURNING id)"
    " SELECT o.id::text, (SELECT id FROM ob), (SELECT count(*) FROM l) FROM o";

void orders_seed(PGconn *conn)
{
	testenv_exec(conn, "INSERT INTO products (sku, name, price_cents, stock)"
			   " VALUES ('SKU-1', 'Test widget', 1250, 1000000)");
}

char *orders_insert(PGconn *conn, const char *customer, long *outbox_id)
{
	const char *params[] = {customer};
	PGresult *res = PQexecParams(conn, insert_sql, 1, NULL, params, NULL, NULL, 0);
	cr_assert(PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1, "inserting an order: %s",
		  PQresultErrorMessage(res));
	char *id = strdup(PQgetvalue(res, 0, 0));
	if (outbox_id)
		*outbox_id = strtol(PQgetvalue(res, 0, 1), NULL, 10);
	PQclear(res);
	return id;
}

char *orders_admit(PGconn *conn, const char *customer)
{
	testenv_exec(conn, "BEGIN");
	char *id = orders_insert(conn, customer, NULL);
	testenv_exec(conn, "COMMIT");
	return id;
}

char *orders_roll_back(PGconn *conn, const char *customer)
{
	testenv_exec(conn, "BEGIN");
	char *id = orders_insert(conn, customer, NULL);
	testenv_exec(conn, "ROLLBACK");
	return id;
}

long orders_pending(PGconn *conn)
{
	return testenv_query_long(conn, "SELECT count(*) FROM outbox WHERE published_at IS NULL");
}

bool orders_wait_drained(PGconn *conn, int timeout_ms)
{
	for (int waited = 0; waited <= timeout_ms; waited += 20) {
		if (orders_pending(conn) == 0)
			return true;
		testenv_sleep_ms(20);
	}
	return false;
}
