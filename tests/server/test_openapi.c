/* docs/openapi.json stays true: every path and method it lists is called on a
 * running server with the document's own examples, and must answer 2xx with a
 * status and content type the document lists for it. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serverenv.h"

static const char *const SEED = "INSERT INTO limit_groups VALUES ('gpu', 3);"
				"INSERT INTO products (sku, name, price_cents, stock, limit_group) VALUES"
				" ('apple', 'Apple', 120, 10, NULL),"
				" ('discontinued', 'Discontinued', 100, 0, NULL);"; /* the DELETE's example */

/* The example of path parameter name, looked up in the path's and the operation's parameters. */
static const char *param_example(json_t *path_item, json_t *op, const char *name)
{
	json_t *lists[] = {json_object_get(op, "parameters"), json_object_get(path_item, "parameters")};
	for (int l = 0; l < 2; l++) {
		size_t i;
		json_t *p;
		json_array_foreach(lists[l], i, p)
		{
			if (!strcmp(json_string_value(json_object_get(p, "name")), name) &&
			    !strcmp(json_string_value(json_object_get(p, "in")), "path"))
				return json_string_value(json_object_get(p, "example"));
		}
	}
	return NULL;
}

/* Expand {name} placeholders of template into out. */
static void expand_path(const char *template, json_t *path_item, json_t *op, const char *order_id, char *out,
			size_t outlen)
{
	size_t w = 0;
	for (const char *c = template; *c && w + 1 < outlen;) {
		if (*c != '{') {
			out[w++] = *c++;
			continue;
		}
		const char *end = strchr(c, '}');
		cr_assert(end, "unclosed { in %s", template);
		char name[64];
		snprintf(name, sizeof(name), "%.*s", (int)(end - c - 1), c + 1);
		const char *value =
		    !strcmp(name, "id") && order_id[0] ? order_id : param_example(path_item, op, name);
		cr_assert(value, "%s: no example for {%s}", template, name);
		w += (size_t)snprintf(out + w, outlen - w, "%s", value);
		c = end + 1;
	}
	out[w < outlen ? w : outlen - 1] = '\0';
}

Test(openapi, every_documented_operation_answers_as_documented)
{
	static const char *const env[] = {"ADMIN_TOKEN=doc-token", NULL};
	json_error_t jerr;
	json_t *doc = json_load_file(CHECKOUT_SOURCE_DIR "/docs/openapi.json", JSON_PRESERVE_ORDER, &jerr);
	cr_assert(doc, "docs/openapi.json: %s (line %d)", jerr.text, jerr.line);
	cr_assert_str_eq(json_string_value(json_object_get(doc, "openapi")), "3.1.0");

	struct serverenv s;
	serverenv_start(&s, SEED, env);
	char order_id[64] = "";
	int operations = 0;
	const char *template;
	json_t *path_item;
	json_object_foreach(json_object_get(doc, "paths"), template, path_item)
	{
		const char *method;
		json_t *op;
		json_object_foreach(path_item, method, op)
		{
			if (!strcmp(method, "parameters"))
				continue;
			char upper[16], path[512];
			size_t i = 0;
			for (; method[i] && i < sizeof(upper) - 1; i++)
				upper[i] = (char)(method[i] - 'a' + 'A');
			upper[i] = '\0';
			expand_path(template, path_item, op, order_id, path, sizeof(path));

			json_t *example = json_object_get(
			    json_object_get(json_object_get(json_object_get(op, "requestBody"), "content"),
					    "application/json"),
			    "example");
			char *body = example ? json_dumps(example, JSON_COMPACT) : NULL;
			const char *headers[] = {
			    json_object_get(op, "security") ? "Authorization: Bearer doc-token" : NULL, NULL};
			struct http_response r;
			serverenv_call(&s, upper, path, headers, body, &r);
			free(body);

			char code[8], ct[128];
			snprintf(code, sizeof(code), "%ld", r.status);
			json_t *documented = json_object_get(json_object_get(op, "responses"), code);
			cr_expect(documented, "%s %s answered %ld, which the document does not list: %s",
				  upper, path, r.status, r.body);
			cr_expect(r.status >= 200 && r.status < 300,
				  "%s %s with the document's example answered %ld: %s", upper, path, r.status,
				  r.body);
			json_t *content = json_object_get(documented, "content");
			if (content && http_header(&r, "Content-Type", ct, sizeof(ct))) {
				ct[strcspn(ct, ";")] = '\0';
				cr_expect(json_object_get(content, ct),
					  "%s %s: content type %s is not documented", upper, path, ct);
			}
			if (!strcmp(template, "/v1/checkout") && r.status == 201)
				snprintf(order_id, sizeof(order_id), "%s",
					 json_string_value(json_object_get(r.json, "order_id")));
			http_response_free(&r);
			operations++;
		}
	}
	cr_expect_geq(operations, 9);
	cr_expect(order_id[0], "the checkout example was not admitted");
	json_decref(doc);
	serverenv_stop(&s);
}
