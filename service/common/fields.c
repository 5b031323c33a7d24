/* fields.c - see fields.h. */
#include "checkout/fields.h"

#include <string.h>

#define FIELDS_STR(x) #x
#define FIELDS_XSTR(x) FIELDS_STR(x)

/* One field: its length in characters and the phrase for a wrong length. */
struct fields_rule {
	size_t min, max;
	const char *length_phrase;
};

#define FIELDS_RULE(min, max)                                                                                \
	{                                                                                                    \
		(min), (max), "must be " FIELDS_XSTR(min) " to " FIELDS_XSTR(max) " characters"              \
	}

static const struct fields_rule sku_rule = FIELDS_RULE(1, FIELDS_MAX_SKU_CHARS);
static const struct fields_rule customer_id_rule = FIELDS_RULE(1, FIELDS_MAX_CUSTOMER_ID_CHARS);
static const struct fields_rule email_rule = FIELDS_RULE(FIELDS_MIN_EMAIL_CHARS, FIELDS_MAX_EMAIL_CHARS);
static const struct fields_rule product_name_rule = FIELDS_RULE(1, FIELDS_MAX_PRODUCT_NAME_CHARS);
static const struct fields_rule limit_group_rule = FIELDS_RULE(1, FIELDS_MAX_LIMIT_GROUP_CHARS);

size_t fields_utf8_next(const unsigned char *s, size_t len, unsigned *cp)
{
	unsigned c, min;
	size_t n;

	if (len == 0)
		return 0;
	c = s[0];
	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	if (c >= 0xC2 && c <= 0xDF) {
		n = 2;
		c &= 0x1F;
		min = 0x80;
	} else if (c >= 0xE0 && c <= 0xEF) {
		n = 3;
		c &= 0x0F;
		min = 0x800;
	} else if (c >= 0xF0 && c <= 0xF4) {
		n = 4;
		c &= 0x07;
		min = 0x10000;
	} else {
		return 0; /* a continuation byte, C0/C1 (always overlong), or past U+10FFFF */
	}
	if (len < n)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		c = (c << 6) | (s[i] & 0x3Fu);
	}
	/* overlong forms, UTF-16 surrogates, beyond U+10FFFF */
	if (c < min || (c >= 0xD800 && c <= 0xDFFF) || c > 0x10FFFF)
		return 0;
	*cp = c;
	return n;
}

bool fields_is_control(unsigned cp)
{
	return cp < 0x20 || (cp >= 0x7F && cp <= 0x9F);
}

enum fields_problem fields_text_check(const char *s, size_t len, size_t min, size_t max)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t chars = 0;

	if (!s)
		return FIELDS_LENGTH;
	for (size_t i = 0; i < len; chars++) {
		unsigned cp;
		size_t n = fields_utf8_next(p + i, len - i, &cp);
		if (n == 0)
			return FIELDS_NOT_UTF8;
		if (fields_is_control(cp))
			return FIELDS_CONTROL;
		i += n;
	}
	return chars < min || chars > max ? FIELDS_LENGTH : FIELDS_OK;
}

bool fields_text_ok(const char *s, size_t len, size_t min, size_t max)
{
	return fields_text_check(s, len, min, max) == FIELDS_OK;
}

/* The phrase for what fields_text_check found wrong with a value of rule r, or NULL. */
static const char *rule_problem(const struct fields_rule *r, const char *s, size_t len)
{
	switch (fields_text_check(s, len, r->min, r->max)) {
	case FIELDS_OK:
		return NULL;
	case FIELDS_NOT_UTF8:
		return "must be valid UTF-8";
	case FIELDS_CONTROL:
		return "must not contain control characters";
	default:
		return r->length_phrase;
	}
}

const char *fields_sku_problem(const char *s, size_t len)
{
	return rule_problem(&sku_rule, s, len);
}

const char *fields_customer_id_problem(const char *s, size_t len)
{
	return rule_problem(&customer_id_rule, s, len);
}

const char *fields_email_problem(const char *s, size_t len)
{
	const char *problem = rule_problem(&email_rule, s, len);
	if (problem)
		return problem;
	/* one '@', something on either side, no spaces (control characters are already out) */
	const char *at = memchr(s, '@', len);
	if (!at || at == s || at == s + len - 1 || memchr(at + 1, '@', len - (size_t)(at + 1 - s)) ||
	    memchr(s, ' ', len))
		return "must contain exactly one \"@\" between non-empty parts, without spaces";
	return NULL;
}

const char *fields_product_name_problem(const char *s, size_t len)
{
	return rule_problem(&product_name_rule, s, len);
}

const char *fields_limit_group_problem(const char *s, size_t len)
{
	return rule_problem(&limit_group_rule, s, len);
}

bool fields_sku_ok(const char *s, size_t len)
{
	return !fields_sku_problem(s, len);
}

bool fields_customer_id_ok(const char *s, size_t len)
{
	return !fields_customer_id_problem(s, len);
}

bool fields_email_ok(const char *s, size_t len)
{
	return !fields_email_problem(s, len);
}

bool fields_product_name_ok(const char *s, size_t len)
{
	return !fields_product_name_problem(s, len);
}

bool fields_limit_group_ok(const char *s, size_t len)
{
	return !fields_limit_group_problem(s, len);
}

bool fields_uuid_ok(const char *s)
{
	static const char shape[] = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";
	if (!s || strlen(s) != sizeof(shape) - 1)
		return false;
	for (size_t i = 0; shape[i]; i++) {
		char c = s[i];
		bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
		if (shape[i] == '-' ? c != '-' : !hex)
			return false;
	}
	return true;
}
