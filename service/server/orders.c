/* orders.c - see orders.h. */
#include "orders.h"

#include <stdlib.h>

const struct db_stmt orders_stmts[] = {
    /* the same shape as the 201 answer of the checkout */
    {"orders_get", "SELECT o.id::text, o.customer_id, o.email, o.total_cents, "
		   "  to_char(o.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), "
		   "  (SELECT json_agg(json_build_object('sku', l.sku, 'quantity', l.quantity, "
		   "     'unit_price_cents', l.unit_price_cents) ORDER BY l.sku COLLATE \"C\") "
		   "   FROM order_lines l WHERE l.order_id = o.id) "
		   "FROM orders o WHERE o.id = $1::uuid"},
    {NULL, NULL},
};

enum MHD_Result orders_handle_get(struct http_request *req, const char *id)
{
	enum MHD_Result ret = MHD_NO;
	const char *params[] = {id};
	PGresult *res = http_db_exec(req, "orders_get", 1, params, &ret);
	if (!res)
		return ret;
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		ret = http_reply_db_error(req, res);
	} else if (PQntuples(res) == 0) {
		ret = http_reply_problem(req, 404, "not-found", "No order has this id.", NULL);
	} else {
		json_t *items = json_loads(PQgetvalue(res, 0, 5), 0, NULL);
		json_t *order =
		    json_pack("{s:s, s:s, s:s, s:s, s:o, s:I, s:s}", "order_id", PQgetvalue(res, 0, 0),
			      "status", "admitted", "customer_id", PQgetvalue(res, 0, 1), "email",
			      PQgetvalue(res, 0, 2), "items", items ? items : json_array(), "total_cents",
			      (json_int_t)strtoll(PQgetvalue(res, 0, 3), NULL, 10), "created_at",
			      PQgetvalue(res, 0, 4));
		ret = http_reply_json(req, 200, order, NULL);
	}
	PQclear(res);
	return ret;
}
