/* products.h - the catalog: GET/PUT /v1/products, PUT /v1/limits/{group}. */
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
enum MHD_Result products_handle_list(struct http_request *req);

/* GET /v1/products/{sku}: 200 with the product, or 404. */
enum MHD_Result products_handle_get(struct http_request *req, const char *sku);

/* PUT /v1/products/{sku} (admin already checked): 201 created or 200 replaced. */
enum MHD_Result products_handle_put(struct http_request *req, const char *sku);

/* PUT /v1/limits/{group} (admin already checked): 201 created or 200 replaced. */
enum MHD_Result products_handle_put_limit(struct http_request *req, const char *group);

#endif
