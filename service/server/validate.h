/* validate.h - parse and check request bodies into C structs.
 *
 * Pure functions (no I/O, no globals): the HTTP handlers and the fuzz target
 * use the same code. Problems are reported as a JSON array of
 * {"field": "items[2].quantity", "message": "..."} objects, the "errors"
 * member of a 400 problem.
 *
 * The strings a client chooses (SKU, customer id, email, product name,
 * limit group) follow the rules of checkout/fields.h, the same the workers'
 * event parser applies: whatever these functions admit, every consumer of
 * the order event accepts.
 */
#ifndef CHECKOUT_SERVER_VALIDATE_H
#define CHECKOUT_SERVER_VALIDATE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "checkout/fields.h"

#define VALIDATE_MAX_BODY (64 * 1024)
#define VALIDATE_MAX_ITEMS 100
#define VALIDATE_MAX_QUANTITY 1000
#define VALIDATE_MAX_PRICE_CENTS 1000000000LL
#define VALIDATE_MAX_STOCK 1000000000LL
#define VALIDATE_MAX_KEY_LEN 255
#define VALIDATE_MAX_PAGE 1000
#define VALIDATE_DEFAULT_PAGE 100

/* Room for the longest SKU or limit group in UTF-8 (4 bytes a character) and a NUL. */
#define VALIDATE_ID_BUF FIELDS_BUF(FIELDS_MAX_SKU_CHARS)

struct checkout_item {
	char sku[FIELDS_BUF(FIELDS_MAX_SKU_CHARS)];
	int quantity; /* 1..VALIDATE_MAX_QUANTITY each; summed duplicates may be larger */
};

/* A valid cart: items sorted by sku, each sku once (duplicates summed). */
struct checkout_request {
	char customer_id[FIELDS_BUF(FIELDS_MAX_CUSTOMER_ID_CHARS)];
	char email[FIELDS_BUF(FIELDS_MAX_EMAIL_CHARS)];
	size_t n_items;
	struct checkout_item items[VALIDATE_MAX_ITEMS];
};

struct product_input {
	char name[FIELDS_BUF(FIELDS_MAX_PRODUCT_NAME_CHARS)];
	long long price_cents;
	long long stock;
	bool has_limit_group;
	char limit_group[FIELDS_BUF(FIELDS_MAX_LIMIT_GROUP_CHARS)];
};

/*
 * Parse a POST /v1/checkout body of len bytes into out. Returns true when it
 * is valid; otherwise false and *errors is a new array of problems (the
 * caller decrefs it). On success *errors is NULL.
 */
bool validate_checkout(const char *body, size_t len, struct checkout_request *out, json_t **errors)
    __attribute__((warn_unused_result));

/*
 * The canonical text of a valid cart (compact JSON, items in sku order),
 * so two bodies that ask for the same thing compare equal. Returns a
 * malloc'd string, or NULL when out of memory.
 */
char *validate_canonical(const struct checkout_request *req) __attribute__((warn_unused_result));

/* One page of GET /v1/products: at most limit products with a SKU after `after`. */
struct product_page {
	int limit;		     /* 1..VALIDATE_MAX_PAGE */
	char after[VALIDATE_ID_BUF]; /* "" for the first page */
};

/*
 * Read the query parameters limit and after (either may be NULL: absent)
 * into out. limit is decimal digits, 1..VALIDATE_MAX_PAGE (default
 * VALIDATE_DEFAULT_PAGE); after is a SKU (see validate_identifier). Returns
 * true when both are valid; otherwise false and *errors is a new array of
 * problems (the caller decrefs it).
 */
bool validate_product_page(const char *limit, const char *after, struct product_page *out, json_t **errors)
    __attribute__((warn_unused_result));

/*
 * Check the SKU of PUT /v1/products/{sku} and parse its body, so that no
 * product is created that could not be bought or whose orders the workers
 * could not read; a bad SKU is an error for the field "sku". See
 * validate_checkout for results.
 */
bool validate_product(const char *sku, const char *body, size_t len, struct product_input *out,
		      json_t **errors) __attribute__((warn_unused_result));

/* Parse a PUT /v1/limits/{group} body into *per_customer; see validate_checkout. */
bool validate_limit(const char *body, size_t len, int *per_customer, json_t **errors)
    __attribute__((warn_unused_result));

/* A stock adjustment's reason, in characters. */
#define VALIDATE_MAX_REASON_CHARS 200

/* A POST /v1/products/{sku}/stock-adjustments body. */
struct stock_adjustment {
	long long delta; /* non-zero, within -VALIDATE_MAX_STOCK..VALIDATE_MAX_STOCK */
	char reason[FIELDS_BUF(VALIDATE_MAX_REASON_CHARS)];
};

/*
 * Parse a POST /v1/products/{sku}/stock-adjustments body, {"delta": a
 * non-zero integer no larger than the largest stock either way, "reason": 1
 * to VALIDATE_MAX_REASON_CHARS characters, no control character}, into out.
 * See validate_checkout for results.
 */
bool validate_stock_adjustment(const char *body, size_t len, struct stock_adjustment *out, json_t **errors)
    __attribute__((warn_unused_result));

/*
 * True if s is a valid path identifier, a SKU or a limit group name (the two
 * follow the same rule: fields_sku_ok, fields_limit_group_ok).
 */
bool validate_identifier(const char *s);

/* True if key is a valid Idempotency-Key: 1..255 visible ASCII characters. */
bool validate_idempotency_key(const char *key);

/* True if s is a UUID in the canonical 8-4-4-4-12 hex form. */
bool validate_uuid(const char *s);

#endif
