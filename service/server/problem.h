/* problem.h - the server's error answers: RFC 9457 problem details.
 *
 * Every error the API answers is one of these objects, served as
 * application/problem+json: {"type": ".../problems/<name>", "title",
 * "status", "detail", and members of its own}. The names and their titles
 * are one table in problem.c; docs/openapi.json lists the same names.
 */
#ifndef CHECKOUT_SERVER_PROBLEM_H
#define CHECKOUT_SERVER_PROBLEM_H

#include <jansson.h>

/*
 * A new problem object: type ".../problems/<name>", the title of name (name
 * itself when the table has none), status, and detail (the title when
 * NULL), with the members of extra merged in (takes the reference; may be
 * NULL). Returns NULL when out of memory; the caller decrefs the result.
 */
json_t *problem_new(unsigned status, const char *name, const char *detail, json_t *extra)
    __attribute__((warn_unused_result));

/*
 * The same problem as compact JSON text, for an answer that is stored
 * before it is sent (the checkout's, with its Idempotency-Key). Returns a
 * malloc'd string, or NULL when out of memory.
 */
char *problem_text(unsigned status, const char *name, const char *detail, json_t *extra)
    __attribute__((warn_unused_result));

#endif
