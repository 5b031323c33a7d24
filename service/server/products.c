/* products.c - see products.h. */
#include "products.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkout/log.h"
#include "validate.h"

/* the last column, version, is the product's ETag (see etag_of) */
#define PRODUCT_COLUMNS "sku, name, price_cents, stock, limit_group, version"
#define PRODUCT_VERSION 5 /* its index among PRODUCT_COLUMNS */

/* Tries of a single-statement write that hit 40001/40P01 (only at a default
 * isolation above read committed: at read committed the statement waits for
 * a concurrent writer of the row and re-checks its condition instead). */
#define WRITE_TRIES 3
/* If-Match versions looked at; tags past them cannot match (a 412, never a wrong write). */
#define IF_MATCH_MAX_TAGS 16

const struct db_stmt products_stmts[] = {
    /* keyset pagination in byte order: $1 the last SKU of the page before ('' for the first), $2 the rows */
    {"products_list", "SELECT " PRODUCT_COLUMNS " FROM products WHERE sku COLLATE \"C\" > $1 "
		      "AND deleted_at IS NULL "
		      "ORDER BY sku COLLATE \"C\" LIMIT $2"},
    {"products_get", "SELECT " PRODUCT_COLUMNS " FROM products WHERE sku = $1 AND deleted_at IS NULL"},
    /* a deleted SKU put again is created anew: 201, a new version (010_products_as_events.sql) */
    {"products_put",
     "WITH was AS (SELECT deleted_at IS NOT NULL AS deleted FROM products WHERE sku = $1) "
     "INSERT INTO products (sku, name, price_cents, stock, limit_group) VALUES ($1, $2, $3, $4, $5) "
     "ON CONFLICT (sku) DO UPDATE SET name = EXCLUDED.name, price_cents = EXCLUDED.price_cents, "
     "  stock = EXCLUDED.stock, limit_group = EXCLUDED.limit_group, updated_at = now(), deleted_at = NULL "
     "RETURNING (xmax = 0 OR coalesce((SELECT deleted FROM was), false)), " PRODUCT_COLUMNS},
    /*
     * PUT with If-Match: the check and the write are one statement. At read
     * committed an UPDATE that finds the row locked by a concurrent writer (a
     * checkout, say) waits for it and re-evaluates the WHERE on the row as
     * that writer left it, whose version the trigger of
     * migrations/007_product_versions.sql has moved on: no row, a 412.
     * $6 the versions If-Match lists (bigint[]), NULL for "*". Never creates.
     */
    {"products_put_if_match",
     "UPDATE products SET name = $2, price_cents = $3, stock = $4, limit_group = $5, updated_at = now() "
     "WHERE sku = $1 AND deleted_at IS NULL AND ($6::bigint[] IS NULL OR version = ANY ($6::bigint[])) "
     "RETURNING false, " PRODUCT_COLUMNS},
    /*
     * POST .../stock-adjustments: stock = stock + delta in one statement, so
     * the delta applies to the stock as it is when the row is written (sales
     * made since the admin looked are kept), refused when the result would
     * leave 0..$4; the audit row is written by the same statement.
     * $2 delta, $3 reason, $4 the largest stock.
     */
    {"products_adjust_stock",
     "WITH p AS (UPDATE products SET stock = stock + $2::integer, updated_at = now() "
     "  WHERE sku = $1 AND deleted_at IS NULL AND stock::bigint + $2::integer BETWEEN 0 AND $4::bigint "
     "  RETURNING " PRODUCT_COLUMNS "), "
     "a AS (INSERT INTO stock_adjustments (sku, delta, reason, stock_after) "
     "  SELECT sku, $2::integer, $3, stock FROM p) "
     "SELECT * FROM p"},
    /* soft delete: the row stays for the order lines that name it; the trigger of
     * migrations/010_products_as_events.sql emits the tombstone in this statement */
    {"products_delete", "UPDATE products SET deleted_at = now(), updated_at = now() "
			"WHERE sku = $1 AND deleted_at IS NULL RETURNING version"},
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

/*
 * The strong ETag of the product in row r of res whose PRODUCT_COLUMNS start
 * at column col: its version in quotes. Every UPDATE of the row moves the
 * version on (a trigger, migrations/007_product_versions.sql), so two
 * answers carry the same ETag only when nothing was written between them.
 */
static void etag_of(const PGresult *res, int r, int col, char *buf, size_t len)
{
	snprintf(buf, len, "\"%s\"", PQgetvalue(res, r, col + PRODUCT_VERSION));
}

/* Reply status with the product in row r of res (columns from col) and its ETag. */
static enum MHD_Result reply_product(struct http_request *req, unsigned status, const PGresult *res, int r,
				     int col)
{
	char etag[48];
	etag_of(res, r, col, etag, sizeof(etag));
	const char *headers[] = {"ETag", etag, NULL};
	return http_reply_json(req, status, product_json(res, r, col), headers);
}

/*
 * Run a single-statement write, again when it hit a serialization failure or
 * a deadlock (it then did nothing). Returns as http_db_exec does.
 */
static PGresult *exec_write(struct http_request *req, const char *stmt, int n, const char *const *params,
			    enum MHD_Result *ret)
{
	PGresult *res = NULL;
	for (int tries = 0; tries < WRITE_TRIES; tries++) {
		PQclear(res);
		res = http_db_exec(req, stmt, n, params, ret);
		if (!res || !db_is_retryable(res))
			break;
	}
	return res;
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

enum MHD_Result products_handle_list(struct http_request *req, const char *param)
{
	struct product_page page;
	json_t *errors = NULL;
	enum MHD_Result ret = MHD_NO;
	char rows[16];

	(void)param;
	if (!validate_product_page(http_query(req, "limit"), http_query(req, "after"), &page, &errors))
		return http_reply_invalid(req, errors);
	/* one row more than the page tells whether there is a next one */
	snprintf(rows, sizeof(rows), "%d", page.limit + 1);
	const char *params[] = {page.after, rows};
	PGresult *res = http_db_exec(req, "products_list", 2, params, &ret);
	if (!res)
		return ret;
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		ret = http_reply_db_error(req, res);
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
		ret = http_reply_db_error(req, res);
	else if (PQntuples(res) == 0)
		ret = http_reply_problem(req, 404, "not-found", "No product has this SKU.", NULL);
	else
		ret = reply_product(req, 200, res, 0, 0);
	PQclear(res);
	return ret;
}

/* What an If-Match header asks for. */
enum if_match {
	IF_MATCH_ABSENT,  /* no header: an unconditional write */
	IF_MATCH_ANY,	  /* "*": the product must exist */
	IF_MATCH_LIST,	  /* one of the listed versions must be current */
	IF_MATCH_INVALID, /* not "*" nor a list of entity tags */
};

/*
 * Parse an If-Match value (RFC 9110 section 13.1.1; NULL when absent). For a
 * list, versions gets a PostgreSQL array literal of the versions it names,
 * e.g. "{7,9}": weak tags never match (If-Match compares strongly) and tags
 * that are not one of our ETags cannot be current, so both are left out, and
 * "{}" matches nothing.
 */
static enum if_match parse_if_match(const char *h, char *versions, size_t len)
{
	size_t w = (size_t)snprintf(versions, len, "{");
	int tags = 0;
	if (!h)
		return IF_MATCH_ABSENT;
	const char *c = h + strspn(h, " \t");
	if (*c == '*' && c[1 + strspn(c + 1, " \t")] == '\0')
		return IF_MATCH_ANY;
	for (;;) {
		c += strspn(c, " \t,");
		if (!*c)
			break;
		bool weak = !strncmp(c, "W/", 2);
		if (weak)
			c += 2;
		if (*c != '"')
			return IF_MATCH_INVALID;
		const char *open = ++c;
		/* etagc: visible ASCII but '"', and obs-text */
		while (*c && *c != '"' &&
		       ((unsigned char)*c >= 0x80 || ((unsigned char)*c > 0x20 && *c != 0x7f)))
			c++;
		if (*c != '"')
			return IF_MATCH_INVALID;
		size_t n = (size_t)(c - open);
		c++;
		if (*c && *c != ',' && *c != ' ' && *c != '\t')
			return IF_MATCH_INVALID;
		/* ours are 1 to 18 digits: nothing else can match, and no digit string overflows a bigint */
		if (weak || n == 0 || n > 18 || strspn(open, "0123456789") < n || tags == IF_MATCH_MAX_TAGS ||
		    w + n + 3 > len)
			continue;
		w += (size_t)snprintf(versions + w, len - w, "%s%.*s", tags ? "," : "", (int)n, open);
		tags++;
	}
	snprintf(versions + w, len - w, "}");
	return IF_MATCH_LIST;
}

/*
 * The 412 of a conditional PUT that did not match, with the current ETag
 * when the product exists (read afresh, after the failed write, so it is the
 * one to retry with).
 */
static enum MHD_Result reply_precondition_failed(struct http_request *req, const char *sku)
{
	enum MHD_Result ret = MHD_NO;
	const char *params[] = {sku};
	PGresult *res = http_db_exec(req, "products_get", 1, params, &ret);
	if (!res)
		return ret;
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		ret = http_reply_db_error(req, res);
	} else if (PQntuples(res) == 0) {
		ret = http_reply_problem(req, 412, "precondition-failed",
					 "No product has this SKU, so If-Match cannot match; a PUT without "
					 "If-Match creates it.",
					 NULL);
	} else {
		char etag[48];
		etag_of(res, 0, 0, etag, sizeof(etag));
		const char *headers[] = {"ETag", etag, NULL};
		ret = http_reply_problem_with(
		    req, 412, "precondition-failed",
		    "The product changed since the If-Match ETag was read (a sale, say): "
		    "read it again (its ETag is in this answer) and decide anew.",
		    json_pack("{s:s}", "etag", etag), headers);
	}
	PQclear(res);
	return ret;
}

enum MHD_Result products_handle_put(struct http_request *req, const char *sku)
{
	struct product_input in;
	json_t *errors = NULL;
	enum MHD_Result ret = MHD_NO;
	char price[32], stock[32], versions[IF_MATCH_MAX_TAGS * 20 + 3];

	if (!validate_product(sku, req->body, req->body_len, &in, &errors))
		return http_reply_invalid(req, errors);
	enum if_match cond = parse_if_match(http_header(req, "If-Match"), versions, sizeof(versions));
	if (cond == IF_MATCH_INVALID) {
		errors = json_pack("[{s:s, s:s}]", "field", "If-Match", "message",
				   "must be * or a comma-separated list of entity tags such as \"7\"");
		return http_reply_invalid(req, errors);
	}
	snprintf(price, sizeof(price), "%lld", in.price_cents);
	snprintf(stock, sizeof(stock), "%lld", in.stock);
	const char *group = in.has_limit_group ? in.limit_group : NULL;
	const char *params[] = {sku, in.name, price, stock, group, cond == IF_MATCH_LIST ? versions : NULL};
	PGresult *res = cond == IF_MATCH_ABSENT ? http_db_exec(req, "products_put", 5, params, &ret)
						: exec_write(req, "products_put_if_match", 6, params, &ret);
	if (!res)
		return ret;
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
		bool created = !strcmp(PQgetvalue(res, 0, 0), "t");
		ret = reply_product(req, created ? 201 : 200, res, 0, 1);
		log_info("product %s %s%s", sku, created ? "created" : "replaced",
			 cond == IF_MATCH_ABSENT ? "" : " (If-Match)");
	} else if (PQresultStatus(res) == PGRES_TUPLES_OK) {
		ret = reply_precondition_failed(req, sku);
	} else if (!strcmp(db_sqlstate(res), "23503")) {
		ret = http_reply_problem(req, 422, "unknown-limit-group",
					 "Create the limit group first with PUT /v1/limits/{group}.",
					 json_pack("{s:s}", "limit_group", in.limit_group));
	} else {
		ret = http_reply_db_error(req, res);
	}
	PQclear(res);
	return ret;
}

enum MHD_Result products_handle_adjust_stock(struct http_request *req, const char *sku)
{
	struct stock_adjustment adj;
	json_t *errors = NULL;
	enum MHD_Result ret = MHD_NO;
	PGresult *res = NULL, *now = NULL;
	char delta[32], max[32];

	if (!validate_stock_adjustment(req->body, req->body_len, &adj, &errors))
		return http_reply_invalid(req, errors);
	snprintf(delta, sizeof(delta), "%lld", adj.delta);
	snprintf(max, sizeof(max), "%lld", VALIDATE_MAX_STOCK);
	const char *params[] = {sku, delta, adj.reason, max};
	res = exec_write(req, "products_adjust_stock", 4, params, &ret);
	if (!res)
		goto out;
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		ret = http_reply_db_error(req, res);
		goto out;
	}
	if (PQntuples(res) == 1) {
		ret = reply_product(req, 200, res, 0, 0);
		log_info("product %s stock adjusted by %+lld to %s", sku, adj.delta, PQgetvalue(res, 0, 3));
		goto out;
	}
	/* nothing written: no such product, or the stock would leave 0..max; say which, as it is now */
	now = http_db_exec(req, "products_get", 1, params, &ret);
	if (!now)
		goto out;
	if (PQresultStatus(now) != PGRES_TUPLES_OK) {
		ret = http_reply_db_error(req, now);
	} else if (PQntuples(now) == 0) {
		ret = http_reply_problem(req, 404, "not-found", "No product has this SKU.", NULL);
	} else {
		char max_detail[96];
		snprintf(max_detail, sizeof(max_detail), "The stock would exceed %lld; nothing changed.",
			 VALIDATE_MAX_STOCK);
		long long stock = strtoll(PQgetvalue(now, 0, 3), NULL, 10);
		json_t *extra = json_pack("{s:s, s:I, s:I}", "sku", sku, "stock", (json_int_t)stock, "delta",
					  (json_int_t)adj.delta);
		if (adj.delta < 0)
			ret = http_reply_problem(
			    req, 409, "insufficient-stock",
			    "The stock is smaller than the units to remove; nothing changed.", extra);
		else
			ret = http_reply_problem(req, 409, "stock-out-of-range", max_detail, extra);
	}
out:
	PQclear(now);
	PQclear(res);
	return ret;
}

enum MHD_Result products_handle_delete(struct http_request *req, const char *sku)
{
	enum MHD_Result ret = MHD_NO;
	const char *params[] = {sku};
	PGresult *res = exec_write(req, "products_delete", 1, params, &ret);
	if (!res)
		return ret;
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		ret = http_reply_db_error(req, res);
	} else if (PQntuples(res) == 0) {
		ret = http_reply_problem(req, 404, "not-found", "No product has this SKU.", NULL);
	} else {
		ret = http_reply(req, 204, NULL, "", 0, NULL);
		log_info("product %s deleted (version %s)", sku, PQgetvalue(res, 0, 0));
	}
	PQclear(res);
	return ret;
}
