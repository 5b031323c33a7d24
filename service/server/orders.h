/* orders.h - GET /v1/orders/{id}. */
#ifndef CHECKOUT_SERVER_ORDERS_H
#define CHECKOUT_SERVER_ORDERS_H

#include "checkout/db.h"
#include "http.h"

extern const struct db_stmt orders_stmts[];

/* GET /v1/orders/{id} (id is a valid UUID): 200 with the order as admitted, or 404. */
enum MHD_Result orders_handle_get(struct http_request *req, const char *id);

#endif
