/* fields.h - the rules for the strings a client chooses.
 *
 * One set of rules, shared by the server's request validator and the
 * workers' event parser: an order the API admits carries only strings the
 * workers accept, so no admitted order can end up dead-lettered. The rules
 * match the database's CHECK constraints (migrations/001_checkout.sql) and
 * docs/openapi.json:
 *
 *   every string   well-formed UTF-8 (no overlong forms, surrogates or code
 *                  points past U+10FFFF) without control characters: no C0
 *                  (U+0000..U+001F: NUL, tab, CR, LF, ESC, ...), no DEL
 *                  (U+007F), no C1 (U+0080..U+009F). A client's string can
 *                  thus never split a log line, a mail header or a terminal.
 *   sku            1..64 characters
 *   customer_id    1..64 characters
 *   email          3..254 characters, exactly one '@' with something on
 *                  either side, and no spaces
 *   product name   1..200 characters
 *   limit group    1..64 characters
 *
 * Lengths count characters (Unicode code points), as PostgreSQL's length()
 * and JSON Schema's maxLength do, never bytes: a character takes 1 to 4
 * bytes of UTF-8, so a buffer for n characters needs FIELDS_BUF(n) bytes.
 *
 * Pure functions: no I/O, no allocation, no globals.
 */
#ifndef CHECKOUT_FIELDS_H
#define CHECKOUT_FIELDS_H

#include <stdbool.h>
#include <stddef.h>

#define FIELDS_MAX_SKU_CHARS 64
#define FIELDS_MAX_CUSTOMER_ID_CHARS 64
#define FIELDS_MIN_EMAIL_CHARS 3
#define FIELDS_MAX_EMAIL_CHARS 254
#define FIELDS_MAX_PRODUCT_NAME_CHARS 200
#define FIELDS_MAX_LIMIT_GROUP_CHARS 64

/* Bytes that hold any string of n characters and its NUL. */
#define FIELDS_BUF(n) ((n)*4 + 1)

/* What is wrong with a string, if anything. */
enum fields_problem {
	FIELDS_OK = 0,
	FIELDS_NOT_UTF8,  /* bytes that are not well-formed UTF-8 */
	FIELDS_CONTROL,	  /* a control character (a NUL within len too) */
	FIELDS_LENGTH,	  /* fewer than min or more than max characters */
	FIELDS_NOT_EMAIL, /* not one '@' between non-empty parts, or a space */
};

/*
 * Check the len bytes at s: well-formed UTF-8 without control characters,
 * min..max characters. Returns the first problem found, in the order of the
 * enum, or FIELDS_OK. For a field of one's own (a free-text reason, say).
 */
enum fields_problem fields_text_check(const char *s, size_t len, size_t min, size_t max);

/* fields_text_check(s, len, min, max) == FIELDS_OK. */
bool fields_text_ok(const char *s, size_t len, size_t min, size_t max);

/*
 * The rule of each field. NULL when the len bytes at s are a valid value;
 * otherwise a static phrase saying what is wrong, for an error message that
 * names the field: "must be 1 to 64 characters", "must not contain control
 * characters", "must be valid UTF-8", or for the email "must contain exactly
 * one \"@\" between non-empty parts, without spaces".
 */
const char *fields_sku_problem(const char *s, size_t len);
const char *fields_customer_id_problem(const char *s, size_t len);
const char *fields_email_problem(const char *s, size_t len);
const char *fields_product_name_problem(const char *s, size_t len);
const char *fields_limit_group_problem(const char *s, size_t len);

/* True when the len bytes at s are a valid value of the field (its _problem is NULL). */
bool fields_sku_ok(const char *s, size_t len);
bool fields_customer_id_ok(const char *s, size_t len);
bool fields_email_ok(const char *s, size_t len);
bool fields_product_name_ok(const char *s, size_t len);
bool fields_limit_group_ok(const char *s, size_t len);

/* True if s is a UUID in the canonical 8-4-4-4-12 hex form (an order id). */
bool fields_uuid_ok(const char *s);

/*
 * The length of the UTF-8 sequence starting at s (at most len bytes) when it
 * is one well-formed character, else 0; *cp gets the code point. The
 * logger uses it to tell what it must escape.
 */
size_t fields_utf8_next(const unsigned char *s, size_t len, unsigned *cp);

/* True for the control characters: C0, DEL and C1. */
bool fields_is_control(unsigned cp);

#endif
