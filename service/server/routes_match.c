/* routes_match.c - see routes.h: matching a request against the routes table.
 *
 * Apart from the table (routes.c), so that a second program linking the
 * transport (checkout-naive) brings its own table.
 */
#include "routes.h"

#include <stdio.h>
#include <string.h>

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
