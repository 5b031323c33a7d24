/* limits.c - see limits.h. */
#include "limits.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkout/log.h"
#include "validate.h"

const struct db_stmt limits_stmts[] = {
    {"limits_put", "INSERT INTO limit_groups (name, per_customer) VALUES ($1, $2) "
		   "ON CONFLICT (name) DO UPDATE SET per_customer = EXCLUDED.per_customer "
		   "RETURNING (xmax = 0), name, per_customer"},
    {NULL, NULL},
};

enum MHD_Result limits_handle_put(struct http_request *req, const char *group)
{
	int per_customer = 0;
	json_t *errors = NULL;
	enum MHD_Result ret = MHD_NO;
	char n[16];

	if (!validate_limit(req->body, req->body_len, &per_customer, &errors))
		return http_reply_invalid(req, errors);
	snprintf(n, sizeof(n), "%d", per_customer);
	const char *params[] = {group, n};
	PGresult *res = http_db_exec(req, "limits_put", 2, params, &ret);
	if (!res)
		return ret;
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
		bool created = !strcmp(PQgetvalue(res, 0, 0), "t");
		ret = http_reply_json(req, created ? 201 : 200,
				      json_pack("{s:s, s:I}", "limit_group", PQgetvalue(res, 0, 1),
						"per_customer",
						(json_int_t)strtoll(PQgetvalue(res, 0, 2), NULL, 10)),
				      NULL);
		log_info("limit group %s: %d per customer", group, per_customer);
	} else {
		ret = http_reply_db_error(req, res);
	}
	PQclear(res);
	return ret;
}
