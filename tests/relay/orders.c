/* orders.c - see orders.h. */
#include "orders.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkout/events.h"
#include "testenv.h"

/* One statement, as the checkout does it in several: the order, its line, its
 * event. %s is the event: an outbox row (returning its id) or a WAL message
 * (returning its position as a number). The event id is the order id. */
static const char insert_sql[] =
    "WITH o AS ("
    "  INSERT INTO orders (id, customer_id, email, total_cents)"
    "  VALUES (gen_random_uuid(), $1, $1 || '@example.com', 2 * 1250)"
    "  RETURNING id, customer_id, email, total_cents, created_at),"
    " l AS ("
    "  INSERT INTO order_lines (order_id, sku, quantity, unit_price_cents, customer_id)"
    "  SELECT id, 'SKU-1', 2, 1250, customer_id FROM o RETURNING order_id),"
    " p AS ("
    "  SELECT o.id, jsonb_build_object("
    "    'order_id', o.id, 'customer_id', o.customer_id, 'email', o.email,"
    "    'items', jsonb_build_array(jsonb_build_object('sku', 'SKU-1', 'quantity', 2,"
    "                                                  'unit_price_cents', 1250)),"
    "    'total_cents', o.total_cents,"
    "    'created_at', to_char(o.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'))"
    "    AS payload FROM o)"
    "%s";
static const char outbox_event[] = ", ob AS (INSERT INTO outbox (event_id, event_type, aggregate_id, payload)"
				   "  SELECT id, 'order.admitted', id, payload FROM p RETURNING id)"
				   " SELECT o.id::text, (SELECT id FROM ob), (SELECT count(*) FROM l) FROM o";
static const char wal_event[] =
    " SELECT p.id::text,"
    "  (pg_logical_emit_message(true, 'checkout/order.admitted', p.payload::text) - '0/0')::bigint,"
    "  (SELECT count(*) FROM l) FROM p";

bool orders_wal_mode(void)
{
	const char *mode = getenv("EVENTS");
	return !mode || !*mode || !strcmp(mode, "wal");
}

/* The slot of conn's database (the relay's default name). */
static void slot_name(PGconn *conn, char slot[EVENTS_SLOT_MAX])
{
	char err[256];
	cr_assert(events_slot_name(conn, "", slot, err, sizeof(err)), "%s", err);
}

void orders_seed(PGconn *conn)
{
	testenv_exec(conn, "INSERT INTO products (sku, name, price_cents, stock)"
			   " VALUES ('SKU-1', 'Test widget', 1250, 1000000)");
	if (orders_wal_mode()) {
		/* as the server does at start: events written before the relay's first start count */
		char slot[EVENTS_SLOT_MAX], err[256];
		bool lost;
		slot_name(conn, slot);
		cr_assert(events_ensure_slot(conn, slot, false, &lost, err, sizeof(err)), "%s", err);
	}
}

void orders_drop_slot(PGconn *conn)
{
	if (!conn || !orders_wal_mode())
		return;
	char slot[EVENTS_SLOT_MAX], drop[256], exists[160];
	slot_name(conn, slot);
	snprintf(drop, sizeof(drop),
		 "SELECT count(pg_drop_replication_slot(slot_name)) FROM pg_replication_slots"
		 " WHERE slot_name = '%s' AND NOT active",
		 slot);
	snprintf(exists, sizeof(exists), "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '%s'",
		 slot);
	/* the walsender of a relay that just stopped may hold it for a moment */
	for (int i = 0; i < 100; i++) {
		if (testenv_query_long(conn, drop) > 0 || testenv_query_long(conn, exists) == 0)
			return;
		testenv_sleep_ms(50);
	}
}

char *orders_insert(PGconn *conn, const char *customer, long *event_pos)
{
	char sql[sizeof(insert_sql) + sizeof(outbox_event) + sizeof(wal_event)];
	snprintf(sql, sizeof(sql), insert_sql, orders_wal_mode() ? wal_event : outbox_event);
	const char *params[] = {customer};
	PGresult *res = PQexecParams(conn, sql, 1, NULL, params, NULL, NULL, 0);
	cr_assert(PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1, "inserting an order: %s",
		  PQresultErrorMessage(res));
	char *id = strdup(PQgetvalue(res, 0, 0));
	if (event_pos)
		*event_pos = strtol(PQgetvalue(res, 0, 1), NULL, 10);
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

char *orders_payload(PGconn *conn, const char *order_id)
{
	const char *sql = "SELECT jsonb_build_object('order_id', o.id, 'customer_id', o.customer_id,"
			  " 'email', o.email, 'items', (SELECT jsonb_agg(jsonb_build_object('sku', l.sku,"
			  " 'quantity', l.quantity, 'unit_price_cents', l.unit_price_cents) ORDER BY l.sku)"
			  " FROM order_lines l WHERE l.order_id = o.id), 'total_cents', o.total_cents,"
			  " 'created_at', to_char(o.created_at AT TIME ZONE 'UTC',"
			  " 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'))::text FROM orders o WHERE o.id = $1::uuid";
	const char *params[] = {order_id};
	PGresult *res = PQexecParams(conn, sql, 1, NULL, params, NULL, NULL, 0);
	cr_assert(PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1, "order %s: %s", order_id,
		  PQresultErrorMessage(res));
	char *s = strdup(PQgetvalue(res, 0, 0));
	PQclear(res);
	return s;
}

long orders_pending(PGconn *conn)
{
	if (!orders_wal_mode())
		return testenv_query_long(conn, "SELECT count(*) FROM outbox WHERE published_at IS NULL");
	char slot[EVENTS_SLOT_MAX], sql[512];
	slot_name(conn, slot);
	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '%s' AND active", slot);
	if (testenv_query_long(conn, sql) > 0) {
		snprintf(
		    sql, sizeof(sql),
		    "SELECT (confirmed_flush_lsn < pg_current_wal_flush_lsn())::int FROM pg_replication_slots"
		    " WHERE slot_name = '%s'",
		    slot);
		return testenv_query_long(conn, sql);
	}
	/* no relay holds it: count the messages it still has to deliver */
	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM pg_logical_slot_peek_binary_changes('%s', NULL, NULL,"
		 " 'proto_version', '1', 'publication_names', '" EVENTS_PUBLICATION "', 'messages', 'true')"
		 " WHERE get_byte(data, 0) = ascii('M')",
		 slot);
	return testenv_query_long(conn, sql);
}

bool orders_wait_drained(PGconn *conn, int timeout_ms)
{
	char slot[EVENTS_SLOT_MAX], sql[512];
	if (orders_wal_mode()) {
		/* everything written so far is confirmed by the relay */
		slot_name(conn, slot);
		long long target =
		    testenv_query_long(conn, "SELECT (pg_current_wal_flush_lsn() - '0/0')::bigint");
		snprintf(sql, sizeof(sql),
			 "SELECT (coalesce(confirmed_flush_lsn, '0/0') >= '0/0'::pg_lsn + %lld)::int"
			 " FROM pg_replication_slots WHERE slot_name = '%s'",
			 target, slot);
	}
	for (int waited = 0; waited <= timeout_ms; waited += 20) {
		if (orders_wal_mode() ? testenv_query_long(conn, sql) == 1 : orders_pending(conn) == 0)
			return true;
		testenv_sleep_ms(20);
	}
	return false;
}

void orders_start_server_and_relay(struct testenv_proc *server, struct testenv_proc *relay,
				   const char *conninfo, const char *bootstrap, const char *extra_env,
				   char *base, size_t baselen)
{
	char db_env[256], listen_env[64];
	int port = testenv_free_port();
	snprintf(base, baselen, "http://127.0.0.1:%d", port);
	snprintf(db_env, sizeof(db_env), "DATABASE_URL=%s", conninfo);
	snprintf(listen_env, sizeof(listen_env), "LISTEN=127.0.0.1:%d", port);
	const char *env[] = {db_env, listen_env, extra_env, NULL};
	testenv_spawn(server, "checkout-server", NULL, env);
	cr_assert(testenv_wait_port(port, 20000), "the server did not start; see %s", server->log_path);

	const char *args[] = {"--database-url", conninfo, "--kafka-brokers", bootstrap, NULL};
	testenv_spawn(relay, "checkout-relay", args, NULL);
	cr_assert(testenv_wait_log(relay, "relaying ", 10000), "see %s", relay->log_path);
}
