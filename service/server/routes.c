/* routes.c - see routes.h: the one place that says which handler answers what. */
#include "routes.h"

#include <stdio.h>
#include <string.h>

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
    {"PUT",  "/v1/limits/{group}",                   ROUTE_LIMIT,             validate_identifier, true,  true,  limits_handle_put},
    {"GET",  "/v1/orders/{id}",                      ROUTE_ORDER,             validate_uuid,       false, false, orders_handle_get},
    {"GET",  "/healthz",                             ROUTE_HEALTHZ,           NULL,                false, false, probes_handle_healthz},
    {"GET",  "/readyz",                              ROUTE_READYZ,            NULL,                false, false, probes_handle_readyz},
    {"GET",  "/metrics",                             ROUTE_METRICS,           NULL,                false, false, probes_handle_metrics},
    {NULL, NULL, ROUTE_UNKNOWN, NULL, false, false, NULL},
};
// clang-format on

/* True if url matches pattern (see struct route); then its {name} part is copied into param[len]. */
static bool path_matches(const char *pattern, const char *url, char *param, size_t len)
{
	const char *open = strchr(pattern, '{');
	param[0] = '\0';
	if (!open)
		return !strcmp(pattern, url);
	const char *after = strchr(open, '}') + 1;
	size_t prefix = (size_t)(open - pattern), suffix = strlen(after), n = strlen(url);
	/* the parameter has at least one character */
	if (n <= prefix + suffix || strncmp(url, pattern, prefix) || strcmp(url + n - suffix, after))
		return false;
	size_t plen = n - prefix - suffix;
	if (plen < len) {
		memcpy(param, url + prefix, plen);
		param[plen] = '\0';
	}
	return true;
}

const struct route *routes_match_path(const char *url, char *param, size_t len)
{
	for (const struct route *r = routes; r->method; r++)
		if (path_matches(r->path, url, param, len))
			return r;
	return NULL;
}

const struct route *routes_match_method(const struct route *route, const char *method, char *allow,
					size_t len)
{
	size_t used = 0;
	allow[0] = '\0';
	for (const struct route *r = routes; r->method; r++) {
		if (strcmp(r->path, route->path))
			continue;
		if (!strcmp(r->method, method) || (!strcmp(r->method, "GET") && !strcmp(method, "HEAD")))
			return r;
		int w = snprintf(allow + used, len - used, "%s%s", used ? ", " : "", r->method);
		if (w > 0 && (size_t)w < len - used)
			used += (size_t)w;
	}
	return NULL;
}
