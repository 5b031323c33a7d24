/* migrate.h - apply the numbered SQL files of migrations/ in order. */
#ifndef CHECKOUT_MIGRATE_H
#define CHECKOUT_MIGRATE_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

/*
 * Apply every NNN_name.sql file of dir not yet recorded in schema_migrations,
 * in order, each in its own transaction, under an advisory lock so two
 * processes can migrate at once. An applied file whose checksum changed is
 * an error. Sets *applied to the number of files applied now. Returns true
 * on success; otherwise false with a one-line reason in err.
 */
bool migrate_run(PGconn *conn, const char *dir, int *applied, char *err, size_t errlen)
	__attribute__((warn_unused_result));

#endif
