/* validate.c - see validate.h. */
#include "validate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void add_error(json_t *errors, const char *field, const char *message)
{
	json_t *e = json_pack("{s:s, s:s}", "field", field, "message", message);
	/* never lose an error: a message that is not UTF-8 becomes a generic one */
	json_array_append_new(errors,
			      e ? e : json_pack("{s:s, s:s}", "field", "", "message", "is not valid"));
}

/*
 * The end of every validate_* function: release root (the parsed body; may
 * be NULL) and return true with *errors NULL when the input parsed and no
 * error was recorded; otherwise false with *errors = errs (the caller's to
 * decref), so that a body that did not parse never passes, even when
 * recording why ran out of memory.
 */
static bool validate_done(json_t *root, bool parsed, json_t *errs, json_t **errors)
{
	json_decref(root);
	if (!parsed || !errs || json_array_size(errs)) {
		*errors = errs;
		return false;
	}
	json_decref(errs);
	*errors = NULL;
	return true;
}

/* Parse body as a JSON object, or record why not. Returns NULL on failure. */
static json_t *parse_object(const char *body, size_t len, json_t *errors)
{
	json_error_t jerr;
	json_t *root = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		char msg[256];
		snprintf(msg, sizeof(msg), "malformed JSON at line %d column %d: %s", jerr.line, jerr.column,
			 jerr.text);
		/* jansson quotes the offending bytes, which may be invalid UTF-8 */
		for (char *c = msg; *c; c++)
			if ((unsigned char)*c >= 0x80 || (unsigned char)*c < 0x20)
				*c = '?';
		add_error(errors, "", msg);
		return NULL;
	}
	if (!json_is_object(root)) {
		add_error(errors, "", "the body must be a JSON object");
		json_decref(root);
		return NULL;
	}
	return root;
}

/* A rule of checkout/fields.h: NULL for a valid value, else what is wrong with it. */
typedef const char *(*field_rule)(const char *s, size_t len);

/*
 * Copy the string member `key` of obj into buf when the rule accepts it.
 * Returns false (and records an error under field) otherwise.
 */
static bool get_string(json_t *obj, const char *key, const char *field, field_rule rule, char *buf,
		       size_t buflen, json_t *errors)
{
	json_t *v = json_object_get(obj, key);
	if (!v) {
		add_error(errors, field, "is required");
		return false;
	}
	if (!json_is_string(v)) {
		add_error(errors, field, "must be a string");
		return false;
	}
	const char *s = json_string_value(v);
	size_t bytes = json_string_length(v);
	const char *problem = rule(s, bytes);
	if (problem || bytes >= buflen) {
		add_error(errors, field, problem ? problem : "is too long");
		return false;
	}
	memcpy(buf, s, bytes + 1);
	return true;
}

/* The integer member `key` of obj within min..max, or record an error. */
static bool get_integer(json_t *obj, const char *key, const char *field, long long min, long long max,
			long long *out, json_t *errors)
{
	char msg[96];
	json_t *v = json_object_get(obj, key);
	if (!v) {
		add_error(errors, field, "is required");
		return false;
	}
	if (!json_is_integer(v)) {
		add_error(errors, field, "must be an integer");
		return false;
	}
	long long n = json_integer_value(v);
	if (n < min || n > max) {
		snprintf(msg, sizeof(msg), "must be between %lld and %lld", min, max);
		add_error(errors, field, msg);
		return false;
	}
	*out = n;
	return true;
}

static int compare_items(const void *a, const void *b)
{
	return strcmp(((const struct checkout_item *)a)->sku, ((const struct checkout_item *)b)->sku);
}

bool validate_checkout(const char *body, size_t len, struct checkout_request *out, json_t **errors)
{
	json_t *errs = json_array();
	json_t *root = NULL;
	char field[64];

	/* the struct is large (100 lines of 1 KiB SKU buffers): clear only what gets used */
	out->customer_id[0] = out->email[0] = '\0';
	out->n_items = 0;
	if (!errs)
		return false;
	root = parse_object(body, len, errs);
	if (!root)
		goto out;

	get_string(root, "customer_id", "customer_id", fields_customer_id_problem, out->customer_id,
		   sizeof(out->customer_id), errs);
	get_string(root, "email", "email", fields_email_problem, out->email, sizeof(out->email), errs);

	json_t *items = json_object_get(root, "items");
	if (!items) {
		add_error(errs, "items", "is required");
		goto out;
	}
	if (!json_is_array(items)) {
		add_error(errs, "items", "must be an array");
		goto out;
	}
	size_t n = json_array_size(items);
	if (n < 1 || n > VALIDATE_MAX_ITEMS) {
		add_error(errs, "items", "must have 1 to 100 items");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		json_t *item = json_array_get(items, i);
		struct checkout_item *it = &out->items[i];
		long long q = 0;
		it->sku[0] = '\0';
		it->quantity = 0;
		if (!json_is_object(item)) {
			snprintf(field, sizeof(field), "items[%zu]", i);
			add_error(errs, field, "must be an object");
			continue;
		}
		snprintf(field, sizeof(field), "items[%zu].sku", i);
		get_string(item, "sku", field, fields_sku_problem, it->sku, sizeof(it->sku), errs);
		snprintf(field, sizeof(field), "items[%zu].quantity", i);
		if (get_integer(item, "quantity", field, 1, VALIDATE_MAX_QUANTITY, &q, errs))
			it->quantity = (int)q;
	}
	if (json_array_size(errs))
		goto out;

	/* sort, then fold the same sku into one line */
	qsort(out->items, n, sizeof(out->items[0]), compare_items);
	size_t w = 0;
	for (size_t i = 0; i < n; i++) {
		if (w > 0 && !strcmp(out->items[w - 1].sku, out->items[i].sku))
			out->items[w - 1].quantity += out->items[i].quantity;
		else
			out->items[w++] = out->items[i];
	}
	out->n_items = w;
out:
	return validate_done(root, root != NULL, errs, errors);
}

char *validate_canonical(const struct checkout_request *req)
{
	json_t *items = json_array();
	for (size_t i = 0; items && i < req->n_items; i++)
		json_array_append_new(items, json_pack("{s:s, s:i}", "sku", req->items[i].sku, "quantity",
						       req->items[i].quantity));
	json_t *root = json_pack("{s:s, s:s, s:o}", "customer_id", req->customer_id, "email", req->email,
				 "items", items);
	if (!root)
		return NULL;
	char *text = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(root);
	return text;
}

bool validate_product(const char *sku, const char *body, size_t len, struct product_input *out,
		      json_t **errors)
{
	json_t *errs = json_array();
	json_t *root = NULL;
	const char *problem = sku ? fields_sku_problem(sku, strlen(sku)) : "is required";

	memset(out, 0, sizeof(*out));
	if (!errs)
		return false;
	if (problem)
		add_error(errs, "sku", problem);
	root = parse_object(body, len, errs);
	if (!root)
		goto out;
	get_string(root, "name", "name", fields_product_name_problem, out->name, sizeof(out->name), errs);
	get_integer(root, "price_cents", "price_cents", 0, VALIDATE_MAX_PRICE_CENTS, &out->price_cents, errs);
	get_integer(root, "stock", "stock", 0, VALIDATE_MAX_STOCK, &out->stock, errs);
	json_t *group = json_object_get(root, "limit_group");
	if (group && !json_is_null(group))
		out->has_limit_group =
		    get_string(root, "limit_group", "limit_group", fields_limit_group_problem,
			       out->limit_group, sizeof(out->limit_group), errs);
out:
	return validate_done(root, root != NULL, errs, errors);
}

bool validate_limit(const char *body, size_t len, int *per_customer, json_t **errors)
{
	json_t *errs = json_array();
	json_t *root = NULL;
	long long n = 0;

	*per_customer = 0;
	if (!errs)
		return false;
	root = parse_object(body, len, errs);
	if (root && get_integer(root, "per_customer", "per_customer", 1, 1000000000, &n, errs))
		*per_customer = (int)n;
	return validate_done(root, root != NULL, errs, errors);
}

bool validate_stock_adjustment(const char *body, size_t len, struct stock_adjustment *out, json_t **errors)
{
	char msg[128];
	json_error_t jerr;
	json_t *errs = json_array();
	/* a NUL is let in to be refused as a control character of the field that has it */
	json_t *root = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);

	out->delta = 0;
	out->reason[0] = '\0';
	if (!errs)
		goto out;
	if (!json_is_object(root)) {
		/* jansson's own text may quote the offending bytes (not UTF-8, say): only where */
		snprintf(msg, sizeof(msg), "malformed JSON at line %d column %d", jerr.line, jerr.column);
		add_error(errs, "", root ? "the body must be a JSON object" : msg);
		goto out;
	}
	json_t *delta = json_object_get(root, "delta");
	snprintf(msg, sizeof(msg), "must be a non-zero integer between %lld and %lld", -VALIDATE_MAX_STOCK,
		 VALIDATE_MAX_STOCK);
	if (!delta)
		add_error(errs, "delta", "is required");
	else if (!json_is_integer(delta) || json_integer_value(delta) == 0 ||
		 json_integer_value(delta) < -VALIDATE_MAX_STOCK ||
		 json_integer_value(delta) > VALIDATE_MAX_STOCK)
		add_error(errs, "delta", msg);
	else
		out->delta = json_integer_value(delta);
	json_t *reason = json_object_get(root, "reason");
	snprintf(msg, sizeof(msg), "must be a string of 1 to %d characters, none of them a control character",
		 VALIDATE_MAX_REASON_CHARS);
	if (!reason)
		add_error(errs, "reason", "is required");
	else if (!json_is_string(reason) || json_string_length(reason) >= sizeof(out->reason) ||
		 !fields_text_ok(json_string_value(reason), json_string_length(reason), 1,
				 VALIDATE_MAX_REASON_CHARS))
		add_error(errs, "reason", msg);
	else
		memcpy(out->reason, json_string_value(reason), json_string_length(reason) + 1);
out:
	return validate_done(root, json_is_object(root), errs, errors);
}

bool validate_identifier(const char *s)
{
	return s && fields_sku_ok(s, strlen(s)) && fields_limit_group_ok(s, strlen(s));
}

bool validate_product_page(const char *limit, const char *after, struct product_page *out, json_t **errors)
{
	json_t *errs = json_array();
	char msg[96];

	out->limit = VALIDATE_DEFAULT_PAGE;
	out->after[0] = '\0';
	if (limit) {
		/* digits only: no sign, no spaces, no 0x, and few enough that they cannot overflow */
		size_t n = strspn(limit, "0123456789");
		long v = n > 0 && n <= 4 && !limit[n] ? strtol(limit, NULL, 10) : 0;
		if (v < 1 || v > VALIDATE_MAX_PAGE) {
			snprintf(msg, sizeof(msg), "must be an integer between 1 and %d", VALIDATE_MAX_PAGE);
			add_error(errs, "limit", msg);
		} else {
			out->limit = (int)v;
		}
	}
	if (after) {
		if (validate_identifier(after))
			snprintf(out->after, sizeof(out->after), "%s", after);
		else
			add_error(errs, "after",
				  "must be a SKU: 1 to 64 characters of UTF-8, no control characters");
	}
	return validate_done(NULL, true, errs, errors);
}

bool validate_idempotency_key(const char *key)
{
	size_t n = key ? strlen(key) : 0;
	if (n < 1 || n > VALIDATE_MAX_KEY_LEN)
		return false;
	for (size_t i = 0; i < n; i++)
		if (key[i] < 0x21 || key[i] > 0x7e)
			return false;
	return true;
}

bool validate_uuid(const char *s)
{
	return fields_uuid_ok(s);
}
