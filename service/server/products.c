/* products.c - see products.h. */
#include "products.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkout/log.h"
#include "validate.h"

#define PRODUCT_COLUMNS "sku, name, price_cents, stock, limit_group"

const struct db_stmt products_stmts[] = {
    /* keyset pagination in byte order: $1 the last SKU of the page before ('' for the first), $2 the rows */
    {"products_list", "SELECT " PRODUCT_COLUMNS " FROM products WHERE sku COLLATE \"C\" > $1 "
		      "ORDER BY sku COLLATE \"C\" LIMIT $2"},
    {"products_get", "SELECT " PRODUCT_COLUMNS " FROM products WHERE sku = $1"},
    {"products_put",
     "INSERT INTO products (sku, name, price_cents, stock, limit_group) VALUES ($1, $2, $3, $4, $5) "
     "ON CONFLICT (sku) DO UPDATE SET name = EXCLUDED.name, price_cents = EXCLUDED.price_cents, "
     "  stock = EXCLUDED.stock, limit_group = EXCLUDED.limit_group, updated_at = now() "
     "RETURNING (xmax = 0), " PRODUCT_COLUMNS},
    {"limits_put", "INSERT INTO limit_groups (name, per_customer) VALUES ($1, $2) "
		   "ON CONFLICT (name) DO UPDATE SET per_customer = EXCLUDED.per_customer "
		   "RETURNING (xmax = 0), name, per_customer"},
    {NULL, NULL},
};

/* The product in row r of res, starting at column col. */
static json_t *product_json(const PGresult *res, int r, int col)
{
	return json_pack(
	    "{s:s, s:s, s:I, s:I, s:o}", "sku", PQgetvalue(res, r, col), "name", PQgetvalue(res, r, col + 1),
	    "price_cents", (json_int_t)strtoll(PQgetvalue(res, r, col + 2), NULL, 10), "stock",
	    (json_int_t)strtoll(PQgetvalue(res, r, col + 3), NULL, 10), "limit_group",
	    PQgetisnull(res, r, col + 4) ? json_null() : json_string(PQgetvalue(res, r, col + 4)));
}

static enum MHD_Result internal_error(struct http_request *req, const PGresult *res)
{
	log_error("%s %s: %s", req->method, req->url, res ? PQresultErrorMessage(res) : "no result");
	return http_reply_problem(req, 500, "internal-error", "The request failed.", NULL);
}

/* The link to the page after the one ending at sku: /v1/products?limit=N&after=<sku, percent-encoded>. */
static json_t *next_link(int limit, const char *sku)
{
	static const char hex[] = "0123456789ABCDEF";
	char link[64 + 3 * VALIDATE_ID_BUF];
	int w = snprintf(link, sizeof(link), "/v1/products?limit=%d&after=", limit);
	for (const unsigned char *c = (const unsigned char *)sku; *c && w + 4 < (int)sizeof(link); c++) {
		if ((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') ||
		    strchr("-._~", *c)) {
			link[w++] = (char)*c;
		} else {
			link[w++] = '%';
			link[w++] = hex[*c >> 4];
			link[w++] = hex[*c & 15];
		}
	}
	link[w] = '\0';
	return json_string(link);
}

enum MHD_Result products_handle_list(struct http_request *req)
{
	struct product_page page;
	json_t *errors = NULL;
	enum MHD_Result ret = MHD_NO;
	char rows[16];

	if (!validate_product_page(http_query(req, "limit"), http_query(req, "after"), &page, &errors))
		return http_reply_invalid(req, errors);
	/* one row more than the page tells whether there is a next one */
	snprintf(rows, sizeof(rows), "%d", page.limit + 1);
	const char *params[] = {page.after, rows};
	PGresult *res = http_db_exec(req, "products_list", 2, params, &ret);
	if (!res)
		return ret;
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		ret = internal_error(req, res);
		goto out;
	}
	int n = PQntuples(res) > page.limit ? page.limit : PQntuples(res);
	json_t *list = json_array();
	for (int r = 0; list && r < n; r++)
		json_array_append_new(list, product_json(res, r, 0));
	json_t *body = json_pack("{s:o}", "products", list);
	if (body && PQntuples(res) > page.limit)
		json_object_set_new(body, "next", next_link(page.limit, PQgetvalue(res, n - 1, 0)));
	ret = http_reply_json(req, 200, body, NULL);
out:
	PQclear(res);
	return ret;
}

enum MHD_Result products_handle_get(struct http_request *req, const char *sku)
{
	enum MHD_Result ret = MHD_NO;
	const char *params[] = {sku};
	PGresult *res = http_db_exec(req, "products_get", 1, params, &ret);
	if (!res)
		return ret;
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		ret = internal_error(req, res);
	else if (PQntuples(res) == 0)
		ret = http_reply_problem(req, 404, "not-found", "No product has this SKU.", NULL);
	else
		ret = http_reply_json(req, 200, product_json(res, 0, 0), NULL);
	PQclear(res);
	return ret;
}

enum MHD_Result products_handle_put(struct http_request *req, const char *sku)
{
	struct product_input in;
	json_t *errors = NULL;
	enum MHD_Result ret = MHD_NO;
	char price[32], stock[32];

	if (!validate_product(sku, req->body, req->body_len, &in, &errors))
		return http_reply_invalid(req, errors);
	snprintf(price, sizeof(price), "%lld", in.price_cents);
	snprintf(stock, sizeof(stock), "%lld", in.stock);
	const char *params[] = {sku, in.name, price, stock, in.has_limit_group ? in.limit_group : NULL};
	PGresult *res = http_db_exec(req, "products_put", 5, params, &ret);
	if (!res)
		return ret;
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
		bool created = !strcmp(PQgetvalue(res, 0, 0), "t");
		ret = http_reply_json(req, created ? 201 : 200, product_json(res, 0, 1), NULL);
		log_info("product %s %s", sku, created ? "created" : "replaced");
	} else if (!strcmp(db_sqlstate(res), "23503")) {
		ret = http_reply_problem(req, 422, "unknown-limit-group",
					 "Create the limit group first with PUT /v1/limits/{group}.",
					 json_pack("{s:s}", "limit_group", in.limit_group));
	} else {
		ret = internal_error(req, res);
	}
	PQclear(res);
	return ret;
}

enum MHD_Result products_handle_put_limit(struct http_request *req, const char *group)
{
	int per_customer = 0;
	json_t *errors = NULL;
	enum MHD_Result ret = MHD_NO;
	char n[16];

	if (!validate_limit(req->body, req->body_len, &per_customer, &errors))
		return http_reply_invalid(req, errors);
	snprintf(n, sizeof(n), "%d", per_customer);
	const char *params[] = {group, n};
	PGresult *res = http_db_exec(req, "limits_put", 2, params, &ret);
	if (!res)
		return ret;
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
		bool created = !strcmp(PQgetvalue(res, 0, 0), "t");
		ret = http_reply_json(req, created ? 201 : 200,
				      json_pack("{s:s, s:I}", "limit_group", PQgetvalue(res, 0, 1),
						"per_customer",
						(json_int_t)strtoll(PQgetvalue(res, 0, 2), NULL, 10)),
				      NULL);
		log_info("limit group %s: %d per customer", group, per_customer);
	} else {
		ret = internal_error(req, res);
	}
	PQclear(res);
	return ret;
}
