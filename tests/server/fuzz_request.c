/* fuzz_request.c - libFuzzer target for the request parser and validator.
 *
 * The first byte picks what the rest is: a checkout body, a product body, a
 * limit body, or a path segment / Idempotency-Key. Whatever the input, the
 * validators must not crash, read out of bounds or leak (run under
 * ASan+UBSan), and a valid cart must come out sorted, merged and in range,
 * its strings within the rules the workers' event parser applies
 * (checkout/fields.h), and a valid product within the same rules.
 * fuzz_replay.c runs the same function over tests/server/corpus/ in the
 * normal and the sanitizer builds.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "validate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_cart(const struct checkout_request *cart)
{
	if (cart->n_items < 1 || cart->n_items > VALIDATE_MAX_ITEMS)
		abort();
	for (size_t i = 0; i < cart->n_items; i++) {
		if (!fields_sku_ok(cart->items[i].sku, strlen(cart->items[i].sku)) ||
		    cart->items[i].quantity < 1 ||
		    cart->items[i].quantity > VALIDATE_MAX_ITEMS * VALIDATE_MAX_QUANTITY)
			abort();
		if (i > 0 && strcmp(cart->items[i - 1].sku, cart->items[i].sku) >= 0)
			abort(); /* sorted, each sku once */
	}
	if (!fields_customer_id_ok(cart->customer_id, strlen(cart->customer_id)) ||
	    !fields_email_ok(cart->email, strlen(cart->email)))
		abort();
	char *canonical = validate_canonical(cart);
	/* the canonical text is JSON with one line per distinct sku */
	if (canonical) {
		json_t *parsed = json_loads(canonical, 0, NULL);
		if (!parsed || json_array_size(json_object_get(parsed, "items")) != cart->n_items)
			abort();
		json_decref(parsed);
	}
	free(canonical);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *errors = NULL;
	if (size < 1)
		return 0;
	const char *body = (const char *)data + 1;
	size_t len = size - 1;

	switch (data[0] % 4) {
	case 0: {
		struct checkout_request *cart = malloc(sizeof(*cart));
		if (!cart)
			return 0;
		if (validate_checkout(body, len, cart, &errors))
			check_cart(cart);
		else if (!errors || json_array_size(errors) == 0)
			abort(); /* a rejection always says why */
		free(cart);
		break;
	}
	case 1: {
		struct product_input product;
		if (validate_product("sku", body, len, &product, &errors)) {
			if (!fields_product_name_ok(product.name, strlen(product.name)) ||
			    (product.has_limit_group &&
			     !fields_limit_group_ok(product.limit_group, strlen(product.limit_group))))
				abort();
		} else if (json_array_size(errors) == 0) {
			abort();
		}
		break;
	}
	case 2: {
		int per_customer;
		if (validate_limit(body, len, &per_customer, &errors) && per_customer < 1)
			abort();
		break;
	}
	default: {
		char *text = malloc(len + 1);
		if (!text)
			return 0;
		memcpy(text, body, len);
		text[len] = '\0';
		if (validate_identifier(text) && !fields_sku_ok(text, strlen(text)))
			abort(); /* a SKU in the path follows the rule of a SKU in a cart */
		(void)validate_idempotency_key(text);
		(void)validate_uuid(text);
		/* the query parameters of the product list: limit before the first '&', after behind it */
		char *amp = strchr(text, '&');
		if (amp)
			*amp = '\0';
		struct product_page page;
		bool ok = validate_product_page(text, amp ? amp + 1 : NULL, &page, &errors);
		if (ok ? page.limit < 1 || page.limit > VALIDATE_MAX_PAGE : json_array_size(errors) == 0)
			abort();
		free(text);
		break;
	}
	}
	json_decref(errors);
	return 0;
}
