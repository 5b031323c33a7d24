/* problem.c - see problem.h. */
#include "problem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROBLEM_BASE "https://checkout.example/problems/"

static const struct {
	const char *name;
	const char *title;
} problem_titles[] = {
    {"invalid-request", "The request is not valid"},
    {"payload-too-large", "The request body is larger than 64 KiB"},
    {"unsupported-media-type", "The request body must be application/json"},
    {"method-not-allowed", "Method not allowed"},
    {"not-found", "Not found"},
    {"out-of-stock", "Some items are out of stock"},
    {"purchase-limit-exceeded", "The purchase limit would be exceeded"},
    {"unknown-sku", "Some SKUs do not exist"},
    {"unknown-limit-group", "The limit group does not exist"},
    {"idempotency-key-mismatch", "The Idempotency-Key was used with another request"},
    {"idempotency-key-in-use", "A request with this Idempotency-Key is still running"},
    {"precondition-failed", "The precondition failed"},
    {"insufficient-stock", "Not enough stock to remove"},
    {"stock-out-of-range", "The stock would be too large"},
    {"database-unavailable", "The database is unavailable"},
    {"outcome-unknown", "The outcome of the checkout is unknown"},
    {"too-much-contention", "Too many concurrent checkouts conflicted"},
    {"server-stopping", "The server is stopping"},
    {"unauthorized", "A valid admin token is required"},
    {"forbidden", "Admin operations are disabled"},
    {"internal-error", "Internal error"},
};

json_t *problem_new(unsigned status, const char *name, const char *detail, json_t *extra)
{
	const char *title = name;
	char type[128];
	for (size_t i = 0; i < sizeof(problem_titles) / sizeof(problem_titles[0]); i++)
		if (!strcmp(problem_titles[i].name, name))
			title = problem_titles[i].title;
	snprintf(type, sizeof(type), PROBLEM_BASE "%s", name);
	json_t *problem = json_pack("{s:s, s:s, s:i, s:s}", "type", type, "title", title, "status",
				    (int)status, "detail", detail ? detail : title);
	if (problem && extra)
		json_object_update(problem, extra);
	json_decref(extra);
	return problem;
}

char *problem_text(unsigned status, const char *name, const char *detail, json_t *extra)
{
	json_t *problem = problem_new(status, name, detail, extra);
	char *text = problem ? json_dumps(problem, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	json_decref(problem);
	return text;
}
