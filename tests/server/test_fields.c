/* The strings a client chooses: whatever the API admits, every consumer of the
 * order event accepts (one set of field rules for the server's validator and
 * the workers' event parser), and no such string can forge a log line. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkout/fields.h"
#include "checkout/log.h"
#include "event.h"
#include "serverenv.h"
#include "validate.h"

#define ORDER_ID "01938a6e-4f2b-7c3d-8e9f-0123456789ab"
#define EVENT_ID "01938a6e-4f2b-7c3d-8e9f-ba9876543210"

/* n copies of the UTF-8 text unit, in a new string. */
static char *repeat(const char *unit, int n)
{
	size_t len = strlen(unit);
	char *s = malloc(len * (size_t)n + 1);
	cr_assert(s);
	for (int i = 0; i < n; i++)
		memcpy(s + len * (size_t)i, unit, len);
	s[len * (size_t)n] = '\0';
	return s;
}

/* A checkout body with these fields (their JSON text, quotes included). */
static char *cart_body(const char *customer_id, const char *email, const char *sku)
{
	char *body = NULL;
	cr_assert(asprintf(&body, "{\"customer_id\":%s,\"email\":%s,\"items\":[{\"sku\":%s,\"quantity\":1}]}",
			   customer_id, email, sku) > 0);
	return body;
}

/* A JSON string literal holding s (jansson escapes what JSON needs escaped). */
static char *json_text(const char *s)
{
	json_t *v = json_string(s);
	cr_assert(v, "not UTF-8: %s", s);
	char *text = json_dumps(v, JSON_ENCODE_ANY);
	json_decref(v);
	return text;
}

/*
 * The order.admitted payload of an admitted cart, built the way the server
 * builds it (build_admitted in service/server/checkout.c): every line at the
 * highest price the admin API allows, so totals are as large as they get.
 */
static char *admitted_payload(const struct checkout_request *cart)
{
	json_t *items = json_array();
	long long total = 0;
	for (size_t i = 0; items && i < cart->n_items; i++) {
		json_array_append_new(items,
				      json_pack("{s:s, s:i, s:I}", "sku", cart->items[i].sku, "quantity",
						cart->items[i].quantity, "unit_price_cents",
						(json_int_t)VALIDATE_MAX_PRICE_CENTS));
		total += VALIDATE_MAX_PRICE_CENTS * cart->items[i].quantity;
	}
	json_t *obj =
	    json_pack("{s:s, s:s, s:s, s:s, s:O, s:I, s:s}", "order_id", ORDER_ID, "status", "admitted",
		      "customer_id", cart->customer_id, "email", cart->email, "items", items, "total_cents",
		      (json_int_t)total, "created_at", "2026-12-02T04:19:26.410123Z");
	json_decref(items);
	cr_assert(obj, "the payload cannot be built");
	json_object_del(obj, "status");
	char *payload = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(obj);
	cr_assert(payload);
	return payload;
}

/* Parse payload as the workers do; the reason goes to err. */
static bool consumers_accept(const char *payload, size_t len, char *err, size_t errlen)
{
	struct order_event ev;
	rd_kafka_headers_t *h = rd_kafka_headers_new(4);
	rd_kafka_header_add(h, "ce_id", -1, EVENT_ID, -1);
	rd_kafka_header_add(h, "ce_type", -1, EVENT_TYPE_ORDER_ADMITTED, -1);
	bool ok = event_parse_parts(payload, len, h, &ev, err, errlen);
	event_free(&ev);
	rd_kafka_headers_destroy(h);
	return ok;
}

/*
 * Validate body; when the validator admits it, the event built from it must
 * parse. Returns whether the validator admitted it, and the fields it named
 * otherwise in fields (comma-separated).
 */
static bool check_body(const char *what, const char *body, size_t len, char *fields, size_t fieldslen)
{
	struct checkout_request *cart = malloc(sizeof(*cart));
	json_t *errors = NULL;
	char err[256] = "";
	cr_assert(cart);
	fields[0] = '\0';
	bool admitted = validate_checkout(body, len, cart, &errors);
	if (admitted) {
		char *payload = admitted_payload(cart);
		cr_expect(consumers_accept(payload, strlen(payload), err, sizeof(err)),
			  "%s: the API admits it, the workers refuse its event (%s): %s", what, err, payload);
		free(payload);
	} else {
		size_t i;
		json_t *e;
		json_array_foreach(errors, i, e)
		{
			size_t n = strlen(fields);
			snprintf(fields + n, fieldslen - n, "%s%s", n ? "," : "",
				 json_string_value(json_object_get(e, "field")));
		}
	}
	json_decref(errors);
	free(cart);
	return admitted;
}

Test(fields, every_cart_of_the_fuzz_corpus_that_the_api_admits_the_workers_accept)
{
	const char *dir_path = CHECKOUT_SOURCE_DIR "/tests/server/corpus";
	DIR *dir = opendir(dir_path);
	int carts = 0, admitted = 0;
	char path[1024], fields[512];
	cr_assert(dir, "no corpus at %s", dir_path);
	for (struct dirent *e; (e = readdir(dir));) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir_path, e->d_name);
		FILE *f = fopen(path, "rb");
		cr_assert(f, "%s", path);
		char *data = NULL;
		size_t len = 0;
		FILE *mem = open_memstream(&data, &len);
		char buf[4096];
		for (size_t n; (n = fread(buf, 1, sizeof(buf), f)) > 0;)
			fwrite(buf, 1, n, mem);
		fclose(f);
		fclose(mem);
		/* the fuzz target's first byte picks the validator: 0 mod 4 is a checkout body */
		if (len > 0 && (unsigned char)data[0] % 4 == 0) {
			carts++;
			admitted += check_body(e->d_name, data + 1, len - 1, fields, sizeof(fields));
		}
		free(data);
	}
	closedir(dir);
	cr_expect_geq(carts, 10, "only %d checkout bodies in the corpus", carts);
	cr_expect_geq(admitted, 4, "only %d admitted carts in the corpus", admitted);
}

struct edge {
	const char *what;
	char *body;
	const char *field; /* NULL: admitted; else the field the 400 names */
};

Test(fields, the_api_admits_only_what_the_workers_accept_at_every_edge)
{
	char *e40 = repeat("é", 40), *e64 = repeat("é", 64), *e65 = repeat("é", 65);
	char *smile64 = repeat("\xf0\x9f\x98\x80", 64), *han64 = repeat("中", 64), *a64 = repeat("a", 64);
	char *u250 = repeat("ü", 250), *u251 = repeat("ü", 251);
	char *t_e40 = NULL, *t_e64 = NULL, *t_e65 = NULL, *t_smile = NULL, *t_han = NULL, *t_a64 = NULL,
	     *email254 = NULL, *email255 = NULL;
	t_e40 = json_text(e40);
	t_e64 = json_text(e64);
	t_e65 = json_text(e65);
	t_smile = json_text(smile64);
	t_han = json_text(han64);
	t_a64 = json_text(a64);
	cr_assert(asprintf(&email254, "\"%s@b.c\"", u250) > 0); /* 254 characters, 504 bytes */
	cr_assert(asprintf(&email255, "\"%s@b.c\"", u251) > 0);

	/* 100 lines of 64 four-byte characters each, every quantity at its maximum */
	char *big = NULL;
	size_t big_len = 0;
	FILE *f = open_memstream(&big, &big_len);
	fprintf(f, "{\"customer_id\":%s,\"email\":%s,\"items\":[", t_smile, email254);
	for (int i = 0; i < VALIDATE_MAX_ITEMS; i++)
		fprintf(f, "%s{\"sku\":\"%02d%s\",\"quantity\":%d}", i ? "," : "", i, smile64 + 8,
			VALIDATE_MAX_QUANTITY);
	fprintf(f, "]}");
	fclose(f);
	/* the same SKU 100 times: one line of 100 x 1000 units */
	char *summed = NULL;
	size_t summed_len = 0;
	f = open_memstream(&summed, &summed_len);
	fprintf(f, "{\"customer_id\":\"c\",\"email\":\"a@b\",\"items\":[");
	for (int i = 0; i < VALIDATE_MAX_ITEMS; i++)
		fprintf(f, "%s{\"sku\":%s,\"quantity\":%d}", i ? "," : "", t_e64, VALIDATE_MAX_QUANTITY);
	fprintf(f, "]}");
	fclose(f);

	struct edge cases[] = {
	    /* the issue's recipe: a 40-character SKU of 80 bytes */
	    {"sku of 40 x U+00E9 (80 bytes)", cart_body("\"eve\"", "\"eve@example.com\"", t_e40), NULL},
	    {"sku of 64 x U+00E9 (128 bytes)", cart_body("\"c\"", "\"a@b\"", t_e64), NULL},
	    {"sku of 64 emoji (256 bytes)", cart_body("\"c\"", "\"a@b\"", t_smile), NULL},
	    {"sku of 64 ASCII", cart_body("\"c\"", "\"a@b\"", t_a64), NULL},
	    {"sku of 65 characters", cart_body("\"c\"", "\"a@b\"", t_e65), "items[0].sku"},
	    {"customer_id of 64 CJK (192 bytes)", cart_body(t_han, "\"a@b\"", "\"x\""), NULL},
	    {"customer_id of 64 emoji (256 bytes)", cart_body(t_smile, "\"a@b\"", "\"x\""), NULL},
	    {"customer_id of 65 characters", cart_body(t_e65, "\"a@b\"", "\"x\""), "customer_id"},
	    {"email of 254 characters (504 bytes)", cart_body("\"c\"", email254, "\"x\""), NULL},
	    {"email of 255 characters", cart_body("\"c\"", email255, "\"x\""), "email"},
	    {"quotes and backslashes", cart_body("\"a\\\"b\\\\c\"", "\"o'neil@b.c\"", "\"x\\\"y\\\\z\""),
	     NULL},
	    {"spaces, slash, ampersand, percent", cart_body("\"ann smith\"", "\"a@b\"", "\"a b/c&d%20\""),
	     NULL},
	    {"line and paragraph separators, BOM",
	     cart_body("\"a\\u2028b\\u2029\"", "\"a@b\"", "\"\\ufeffx\""), NULL},
	    {"private use and the replacement character", cart_body("\"\\ue000\"", "\"a@b\"", "\"\\ufffd\""),
	     NULL},
	    /* control characters: C0, DEL, C1, wherever a client may put them */
	    {"customer_id with a newline", cart_body("\"eve\\nINFO fake\"", "\"a@b\"", "\"x\""),
	     "customer_id"},
	    {"customer_id with CR LF", cart_body("\"eve\\r\\nx\"", "\"a@b\"", "\"x\""), "customer_id"},
	    {"customer_id with ESC [31m", cart_body("\"\\u001b[31mred\"", "\"a@b\"", "\"x\""), "customer_id"},
	    {"customer_id with a tab", cart_body("\"a\\tb\"", "\"a@b\"", "\"x\""), "customer_id"},
	    {"customer_id with DEL", cart_body("\"a\\u007fb\"", "\"a@b\"", "\"x\""), "customer_id"},
	    {"customer_id with C1 NEL", cart_body("\"a\\u0085b\"", "\"a@b\"", "\"x\""), "customer_id"},
	    {"customer_id with C1 CSI", cart_body("\"\\u009b31m\"", "\"a@b\"", "\"x\""), "customer_id"},
	    {"sku with a newline", cart_body("\"c\"", "\"a@b\"", "\"x\\ny\""), "items[0].sku"},
	    {"sku with C1 CSI", cart_body("\"c\"", "\"a@b\"", "\"x\\u009by\""), "items[0].sku"},
	    {"sku with DEL", cart_body("\"c\"", "\"a@b\"", "\"\\u007f\""), "items[0].sku"},
	    {"email with CR LF Bcc", cart_body("\"c\"", "\"a@b\\r\\nBcc: x@y\"", "\"x\""), "email"},
	    {"email with C1 NEL", cart_body("\"c\"", "\"a@b\\u0085\"", "\"x\""), "email"},
	    {"email with a raw C1 byte pair", cart_body("\"c\"", "\"a@b\xc2\x9b\"", "\"x\""), "email"},
	    {"100 lines of 64 emoji, 1000 units each", big, NULL},
	    {"one SKU 100 times, summed to 100000 units", summed, NULL},
	};
	char fields[512];
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		bool admitted =
		    check_body(cases[i].what, cases[i].body, strlen(cases[i].body), fields, sizeof(fields));
		if (!cases[i].field)
			cr_expect(admitted, "%s: refused (%s), but it is valid", cases[i].what, fields);
		else
			cr_expect(!admitted && !strcmp(fields, cases[i].field),
				  "%s: expected 400 naming %s, got %s", cases[i].what, cases[i].field,
				  admitted ? "admitted" : fields);
		free(cases[i].body);
	}
	char *owned[] = {e40,	e64,   e65,   smile64, han64, a64,   u250,     u251,
			 t_e40, t_e64, t_e65, t_smile, t_han, t_a64, email254, email255};
	for (size_t i = 0; i < sizeof(owned) / sizeof(owned[0]); i++)
		free(owned[i]);
}

Test(fields, lengths_are_characters_and_control_characters_and_bad_utf8_are_refused)
{
	char *e64 = repeat("é", 64), *e65 = repeat("é", 65), *smile64 = repeat("\xf0\x9f\x98\x80", 64);
	cr_expect(fields_sku_ok(e64, strlen(e64)), "64 characters are 128 bytes");
	cr_expect(fields_sku_ok(smile64, strlen(smile64)), "64 characters are 256 bytes");
	cr_expect(!fields_sku_ok(e65, strlen(e65)));
	cr_expect_str_eq(fields_sku_problem(e65, strlen(e65)), "must be 1 to 64 characters");
	cr_expect_str_eq(fields_customer_id_problem("", 0), "must be 1 to 64 characters");
	cr_expect_str_eq(fields_customer_id_problem("a\nb", 3), "must not contain control characters");
	cr_expect_str_eq(fields_sku_problem("a\xc0\xaf", 3), "must be valid UTF-8"); /* overlong '/' */
	cr_expect(!fields_sku_ok("\xed\xa0\x80", 3), "a UTF-16 surrogate");
	cr_expect(!fields_sku_ok("\xf4\x90\x80\x80", 4), "past U+10FFFF");
	cr_expect(!fields_sku_ok("\xe4\xb8", 2), "a character cut short");
	cr_expect(!fields_sku_ok("ab", 3), "a NUL within the length");
	cr_expect(fields_sku_ok("\xc2\xa0", 2), "U+00A0 is not a control character");
	for (unsigned cp = 0; cp < 0x100; cp++)
		cr_expect_eq(fields_is_control(cp), cp < 0x20 || (cp >= 0x7f && cp < 0xa0), "U+%04X", cp);
	cr_expect(fields_email_ok("a@b", 3));
	cr_expect(fields_email_ok("ü@b.c", 6));
	cr_expect_str_eq(fields_email_problem("a b@c", 5),
			 "must contain exactly one \"@\" between non-empty parts, without spaces");
	cr_expect(!fields_email_ok("@bc", 3));
	cr_expect(!fields_email_ok("ab@", 3));
	cr_expect(!fields_email_ok("a@b@c", 5));
	cr_expect(!fields_email_ok("a@", 2), "too short");
	cr_expect(fields_uuid_ok(ORDER_ID));
	cr_expect(!fields_uuid_ok("01938a6e-4f2b-7c3d-8e9f-0123456789a"));
	free(e64);
	free(e65);
	free(smile64);
}

Test(fields, products_and_limit_groups_follow_the_same_rules)
{
	struct product_input in;
	json_t *errors = NULL;
	char *e64 = repeat("é", 64), *e65 = repeat("é", 65);

	/* the SKU and group in the path */
	cr_expect(validate_identifier("apple"));
	cr_expect(validate_identifier(e64), "64 characters of 2 bytes");
	cr_expect(!validate_identifier(e65));
	cr_expect(!validate_identifier(""));
	cr_expect(!validate_identifier("a\nb"));
	cr_expect(!validate_identifier("a\x7f"));
	cr_expect(!validate_identifier("a\xc2\x85"), "C1 NEL");
	cr_expect(!validate_identifier("a\xc2\x9b"
				       "31m"),
		  "C1 CSI");
	cr_expect(!validate_identifier("\xff"), "not UTF-8");

	const struct {
		const char *sku, *body, *field;
	} bad[] = {
	    {"kiwi", "{\"name\":\"Kiwi\\nINFO fake\",\"price_cents\":1,\"stock\":1}", "name"},
	    {"kiwi", "{\"name\":\"\\u001b[31mKiwi\",\"price_cents\":1,\"stock\":1}", "name"},
	    {"kiwi", "{\"name\":\"Kiwi\\u0085\",\"price_cents\":1,\"stock\":1}", "name"},
	    {"kiwi", "{\"name\":\"Kiwi\",\"price_cents\":1,\"stock\":1,\"limit_group\":\"g\\r\\n\"}",
	     "limit_group"},
	    {"kiwi", "{\"name\":\"Kiwi\",\"price_cents\":1,\"stock\":1,\"limit_group\":\"g\\u009b\"}",
	     "limit_group"},
	    {"ki\nwi", "{\"name\":\"Kiwi\",\"price_cents\":1,\"stock\":1}", "sku"},
	    {"ki\xc2\x85wi", "{\"name\":\"Kiwi\",\"price_cents\":1,\"stock\":1}", "sku"},
	    {e65, "{\"name\":\"Kiwi\",\"price_cents\":1,\"stock\":1}", "sku"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_expect(!validate_product(bad[i].sku, bad[i].body, strlen(bad[i].body), &in, &errors),
			  "case %zu admitted", i);
		const char *field = json_string_value(json_object_get(json_array_get(errors, 0), "field"));
		cr_expect(field && !strcmp(field, bad[i].field), "case %zu: names %s, not %s", i,
			  field ? field : "(none)", bad[i].field);
		json_decref(errors);
		errors = NULL;
	}
	const char *good =
	    "{\"name\":\"Kiwi \\\"gold\\\" \xc3\xa9\xe4\xb8\xad\",\"price_cents\":1,\"stock\":1,"
	    "\"limit_group\":\"fr\xc3\xbc\x69t\"}";
	cr_expect(validate_product(e64, good, strlen(good), &in, &errors),
		  "a name with quotes and non-ASCII");
	json_decref(errors);
	free(e64);
	free(e65);
}

/* ---- against the running server -------------------------------------- */

static const char *const ADMIN_ENV[] = {"ADMIN_TOKEN=fields-token", NULL};

/* The admitted orders' events as the relay publishes them (payload::text) must all parse. */
static void expect_outbox_parses(struct serverenv *s)
{
	PGresult *res = PQexec(
	    s->conn, "SELECT payload::text FROM outbox WHERE event_type = 'order.admitted' ORDER BY id");
	cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQerrorMessage(s->conn));
	for (int r = 0; r < PQntuples(res); r++) {
		char err[256] = "";
		cr_expect(
		    consumers_accept(PQgetvalue(res, r, 0), (size_t)PQgetlength(res, r, 0), err, sizeof(err)),
		    "outbox row %d is poison (%s): %s", r, err, PQgetvalue(res, r, 0));
	}
	PQclear(res);
}

Test(fields, the_api_refuses_what_a_worker_would_dead_letter_and_admits_the_rest)
{
	struct serverenv s;
	struct http_response r;
	const char *admin[] = {"Authorization: Bearer fields-token", NULL};
	char path[512], body[512];

	serverenv_start(&s, NULL, ADMIN_ENV);
	/* the recipe: a 40-character SKU of 80 bytes is a valid SKU, and now also a valid event */
	int w = snprintf(path, sizeof(path), "/v1/products/");
	for (int i = 0; i < 40; i++)
		w += snprintf(path + w, sizeof(path) - (size_t)w, "%%C3%%A9");
	serverenv_call(&s, "PUT", path, admin,
		       "{\"name\":\"\xc3\xa9t\xc3\xa9\",\"price_cents\":100,\"stock\":5}", &r);
	cr_expect_eq(r.status, 201, "%s", r.body);
	http_response_free(&r);
	char *e40 = repeat("é", 40);
	snprintf(body, sizeof(body),
		 "{\"customer_id\":\"eve\",\"email\":\"eve@example.com\",\"items\":[{\"sku\":\"%s\","
		 "\"quantity\":1}]}",
		 e40);
	serverenv_call(&s, "POST", "/v1/checkout", NULL, body, &r);
	cr_expect_eq(r.status, 201, "%s", r.body);
	http_response_free(&r);

	/* a customer_id with a newline: 400 naming it, nothing taken */
	snprintf(body, sizeof(body),
		 "{\"customer_id\":\"eve\\nINFO fake\",\"email\":\"eve@example.com\","
		 "\"items\":[{\"sku\":\"%s\",\"quantity\":1}]}",
		 e40);
	serverenv_call(&s, "POST", "/v1/checkout", NULL, body, &r);
	cr_expect_eq(r.status, 400, "%s", r.body);
	cr_expect(r.json && json_is_array(json_object_get(r.json, "errors")), "%s", r.body);
	const char *field = r.json ? json_string_value(json_object_get(
					 json_array_get(json_object_get(r.json, "errors"), 0), "field"))
				   : NULL;
	cr_expect(field && !strcmp(field, "customer_id"), "%s", r.body);
	http_response_free(&r);
	cr_expect_eq(testenv_query_long(s.conn, "SELECT count(*) FROM orders"), 1);
	cr_expect_eq(testenv_query_long(s.conn, "SELECT stock FROM products"), 4);

	/* products with a control character in the SKU or the name cannot be created */
	serverenv_call(&s, "PUT", "/v1/products/a%C2%85b", admin,
		       "{\"name\":\"A\",\"price_cents\":1,\"stock\":1}", &r);
	cr_expect(r.status == 400 || r.status == 404, "a SKU with C1 NEL: %ld %s", r.status, r.body);
	http_response_free(&r);
	serverenv_call(&s, "PUT", "/v1/products/a%0Ab", admin,
		       "{\"name\":\"A\",\"price_cents\":1,\"stock\":1}", &r);
	cr_expect(r.status == 400 || r.status == 404, "a SKU with a newline: %ld %s", r.status, r.body);
	http_response_free(&r);
	serverenv_call(&s, "PUT", "/v1/products/kiwi", admin,
		       "{\"name\":\"Kiwi\\u001b[31m\",\"price_cents\":1,\"stock\":1}", &r);
	cr_expect_eq(r.status, 400, "a name with ESC: %s", r.body);
	http_response_free(&r);
	cr_expect_eq(testenv_query_long(s.conn, "SELECT count(*) FROM products"), 1);

	expect_outbox_parses(&s);
	free(e40);
	serverenv_stop(&s);
}

/* ---- the logger ------------------------------------------------------- */

/* Run log_msg once with stderr sent to a file; returns what it wrote (caller frees). */
static char *log_capture(enum log_format format, const char *ctx, const char *text)
{
	char path[] = "/tmp/checkout-test-log-XXXXXX";
	int fd = mkstemp(path);
	cr_assert(fd >= 0);
	fflush(stderr);
	int saved = dup(STDERR_FILENO);
	cr_assert(saved >= 0 && dup2(fd, STDERR_FILENO) >= 0);
	log_init("test", LOG_INFO, format);
	log_msg(LOG_INFO, ctx, "customer %s done", text);
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	close(fd);
	char *out = testenv_read_file(path);
	unlink(path);
	cr_assert(out, "nothing read back from %s", path);
	return out;
}

static int count_char(const char *s, char c)
{
	int n = 0;
	for (; *s; s++)
		n += *s == c;
	return n;
}

Test(log, a_client_string_cannot_forge_a_line_or_reach_the_terminal_as_escapes)
{
	const char *forged = "eve\n2026-12-02T04:19:26.410Z INFO  server fake \x1b[31mred\x1b[0m \\n \r\t\x7f"
			     "\xc2\x9b"
			     "2J \xff end";
	char *out = log_capture(LOG_FORMAT_TEXT, "order=\nab\x1b", forged);
	size_t len = strlen(out);
	cr_assert(len > 0 && out[len - 1] == '\n', "not one whole line: %s", out);
	cr_expect_eq(count_char(out, '\n'), 1, "one line, not several: %s", out);
	cr_expect(!strchr(out, '\x1b'), "a raw ESC reached the log: %s", out);
	cr_expect(!strchr(out, '\r') && !strchr(out, '\x7f'), "raw CR or DEL: %s", out);
	cr_expect(!strstr(out, "\xc2\x9b"), "a raw C1 CSI: %s", out);
	cr_expect(!strchr(out, '\xff'), "a byte that is not UTF-8: %s", out);
	cr_expect(
	    strstr(out,
		   "eve\\n2026-12-02T04:19:26.410Z INFO  server fake \\x1b[31mred\\x1b[0m \\\\n \\r\\t\\x7f"
		   "\\xc2\\x9b2J \\xff end"),
	    "escaped as \\n, \\x1b, \\\\: %s", out);
	cr_expect(strstr(out, "order=\\nab\\x1b customer"), "the context is escaped too: %s", out);
	free(out);

	/* what is not a control character is left as it is */
	out = log_capture(LOG_FORMAT_TEXT, NULL, "zürich 中 \"quoted\"");
	cr_expect(strstr(out, "customer zürich 中 \"quoted\" done\n"), "%s", out);
	free(out);
}

Test(log, json_lines_stay_one_valid_json_object_whatever_the_client_sent)
{
	const char *forged = "eve\n{\"level\":\"error\"}\x1b[31m\\ \xc2\x85";
	char *out = log_capture(LOG_FORMAT_JSON, "order=\n\x1b", forged);
	size_t len = strlen(out);
	cr_assert(len > 0 && out[len - 1] == '\n', "not one whole line: %s", out);
	cr_expect_eq(count_char(out, '\n'), 1, "%s", out);
	cr_expect(!strchr(out, '\x1b'), "%s", out);
	json_error_t jerr;
	json_t *line = json_loads(out, 0, &jerr);
	cr_assert(line, "not JSON (%s): %s", jerr.text, out);
	char want[256];
	snprintf(want, sizeof(want), "customer %s done", forged);
	cr_expect_str_eq(json_string_value(json_object_get(line, "msg")), want);
	cr_expect_str_eq(json_string_value(json_object_get(line, "context")), "order=\n\x1b");
	json_decref(line);
	free(out);

	/* bytes that are not UTF-8 (a client's, or a message cut short) still give a line */
	out = log_capture(LOG_FORMAT_JSON, "ctx\xff", "bad \xff\xfe bytes \xe4\xb8");
	line = json_loads(out, 0, &jerr);
	cr_expect(line, "no JSON line for a message that is not UTF-8 (%s): '%s'", jerr.text, out);
	cr_expect(line && strstr(json_string_value(json_object_get(line, "msg")), "bad "), "%s", out);
	cr_expect(line && json_string_value(json_object_get(line, "context")), "the context is kept: %s",
		  out);
	json_decref(line);
	free(out);
}
