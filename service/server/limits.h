/* limits.h - purchase limits: PUT /v1/limits/{group}.
 *
 * A limit group caps the units one customer may buy across every product
 * of the group (products.limit_group); the checkout transaction enforces it
 * (checkout.c). */
#ifndef CHECKOUT_SERVER_LIMITS_H
#define CHECKOUT_SERVER_LIMITS_H

#include "checkout/db.h"
#include "http.h"

extern const struct db_stmt limits_stmts[];

/*
 * PUT /v1/limits/{group} (admin and JSON already checked), body
 * {"per_customer": 1..1000000000}: 201 created or 200 replaced, with the
 * group; 400 naming the field.
 */
enum MHD_Result limits_handle_put(struct http_request *req, const char *group);

#endif
