/* routes.c - see routes.h: the one place that says which handler answers what. */
#include "routes.h"

#include "checkout.h"
#include "limits.h"
#include "orders.h"
#include "probes.h"
#include "products.h"
#include "validate.h"

/* One line an endpoint, as docs/openapi.json lists them. */
// clang-format off
const struct route routes[] = {
    /* method  path                                    metric                   {param} rule         admin  JSON   handler */
    {"POST", "/v1/checkout",                         ROUTE_CHECKOUT,          NULL,                false, true,  checkout_handle},
    {"GET",  "/v1/products",                         ROUTE_PRODUCTS,          NULL,                false, false, products_handle_list},
    {"POST", "/v1/products/{sku}/stock-adjustments", ROUTE_STOCK_ADJUSTMENTS, validate_identifier, true,  true,  products_handle_adjust_stock},
    {"GET",  "/v1/products/{sku}",                   ROUTE_PRODUCT,           validate_identifier, false, false, products_handle_get},
    {"PUT",  "/v1/products/{sku}",                   ROUTE_PRODUCT,           validate_identifier, true,  true,  products_handle_put},
    {"DELETE", "/v1/products/{sku}",                 ROUTE_PRODUCT,           validate_identifier, true,  false, products_handle_delete},
    {"PUT",  "/v1/limits/{group}",                   ROUTE_LIMIT,             validate_identifier, true,  true,  limits_handle_put},
    {"GET",  "/v1/orders/{id}",                      ROUTE_ORDER,             validate_uuid,       false, false, orders_handle_get},
    {"GET",  "/healthz",                             ROUTE_HEALTHZ,           NULL,                false, false, probes_handle_healthz},
    {"GET",  "/readyz",                              ROUTE_READYZ,            NULL,                false, false, probes_handle_readyz},
    {"GET",  "/metrics",                             ROUTE_METRICS,           NULL,                false, false, probes_handle_metrics},
    {NULL, NULL, ROUTE_UNKNOWN, NULL, false, false, NULL},
};
// clang-format on
