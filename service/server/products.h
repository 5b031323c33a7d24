/* products.h - the catalog: GET /v1/products, GET/PUT /v1/products/{sku},
 * POST /v1/products/{sku}/stock-adjustments, DELETE /v1/products/{sku}.
 *
 * A product's ETag is its version, which every write of the row moves on,
 * a checkout's included (migrations/007_product_versions.sql): an admin
 * write that names the ETag it read cannot undo a sale made since. */
#ifndef CHECKOUT_SERVER_PRODUCTS_H
#define CHECKOUT_SERVER_PRODUCTS_H

#include "checkout/db.h"
#include "http.h"

extern const struct db_stmt products_stmts[];

/*
 * GET /v1/products[?limit=N&after=SKU]: a page of products in SKU (byte)
 * order, with "next" (the link to the following page) when there are more;
 * 400 naming the parameter when limit or after is not valid.
 */
enum MHD_Result products_handle_list(struct http_request *req, const char *param);

/* GET /v1/products/{sku}: 200 with the product and its ETag, or 404. */
enum MHD_Result products_handle_get(struct http_request *req, const char *sku);

/*
 * PUT /v1/products/{sku} (admin already checked): 201 created or 200
 * replaced, with the new ETag. With If-Match ("*" or a list of ETags) it only
 * replaces, and only while one of them is current, checked and written in
 * one statement; otherwise 412 precondition-failed with the current ETag
 * (none when the product does not exist). Without If-Match it is a blind
 * overwrite (kept for compatibility); 400 naming If-Match when it is not
 * "*" or a list of entity tags.
 */
enum MHD_Result products_handle_put(struct http_request *req, const char *sku);

/*
 * POST /v1/products/{sku}/stock-adjustments (admin and JSON already
 * checked), body {"delta": non-zero integer, "reason": 1..200 characters}:
 * stock = stock + delta in one statement, recorded in stock_adjustments.
 * 200 with the product and its new ETag; 400 naming the field; 404 unknown
 * SKU; 409 insufficient-stock (delta < 0 and larger than the stock) or
 * stock-out-of-range (beyond VALIDATE_MAX_STOCK), nothing written.
 */
enum MHD_Result products_handle_adjust_stock(struct http_request *req, const char *sku);

/*
 * DELETE /v1/products/{sku} (admin already checked): 204, the product marked
 * deleted (its past order lines stay; checkouts get 422 unknown-sku, GET
 * 404) and its tombstone emitted in the same statement; 404 when no product
 * has this SKU or it is deleted already. A later PUT creates it anew.
 */
enum MHD_Result products_handle_delete(struct http_request *req, const char *sku);

#endif
