/* migrate.c - numbered SQL files, each applied once, in its own transaction. */
#include "checkout/migrate.h"

#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkout/db.h"
#include "checkout/log.h"

/* any constant will do, as long as only migrations use it */
#define MIGRATE_LOCK_KEY "727274001"

struct migration {
	long version;
	char name[256];
};

static int by_version(const void *a, const void *b)
{
	const struct migration *x = a, *y = b;
	return (x->version > y->version) - (x->version < y->version);
}

/* Read a whole file into a NUL-terminated buffer the caller frees; NULL on error. */
static char *read_file(const char *path)
{
	char *buf = NULL;
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) != 0)
		goto out;
	long len = ftell(f);
	if (len < 0 || fseek(f, 0, SEEK_SET) != 0)
		goto out;
	buf = malloc((size_t)len + 1);
	if (!buf)
		goto out;
	if (fread(buf, 1, (size_t)len, f) != (size_t)len) {
		free(buf);
		buf = NULL;
		goto out;
	}
	buf[len] = '\0';
out:
	fclose(f);
	return buf;
}

/* List NNN_name.sql files of dir, sorted by number. Returns count, or -1 with err. */
static int list_migrations(const char *dir, struct migration **out, char *err, size_t errlen)
{
	DIR *d = opendir(dir);
	struct migration *list = NULL;
	int n = 0, cap = 0;

	if (!d) {
		snprintf(err, errlen, "cannot open migrations directory %s", dir);
		return -1;
	}
	for (struct dirent *e; (e = readdir(d));) {
		size_t len = strlen(e->d_name);
		if (!isdigit((unsigned char)e->d_name[0]) || len < 5 || strcmp(e->d_name + len - 4, ".sql") != 0)
			continue;
		if (len >= sizeof(list[0].name)) {
			snprintf(err, errlen, "migration file name too long: %s", e->d_name);
			goto fail;
		}
		char *end = NULL;
		long version = strtol(e->d_name, &end, 10);
		if (*end != '_') {
			snprintf(err, errlen, "migration %s: name must be NNN_description.sql", e->d_name);
			goto fail;
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			struct migration *grown = realloc(list, (size_t)cap * sizeof(*list));
			if (!grown) {
				snprintf(err, errlen, "out of memory");
				goto fail;
			}
			list = grown;
		}
		list[n].version = version;
		memcpy(list[n].name, e->d_name, len + 1);
		n++;
	}
	closedir(d);
	qsort(list, (size_t)n, sizeof(*list), by_version);
	for (int i = 1; i < n; i++) {
		if (list[i].version == list[i - 1].version) {
			snprintf(err, errlen, "migrations %s and %s have the same number", list[i - 1].name,
				 list[i].name);
			free(list);
			return -1;
		}
	}
	*out = list;
	return n;
fail:
	closedir(d);
	free(list);
	return -1;
}

/* Apply one file unless recorded; refuse a recorded file whose checksum changed. */
static bool apply_one(PGconn *conn, const char *dir, const struct migration *m, int *applied, char *err,
		      size_t errlen)
{
	char path[4096], version[32];
	char *sql = NULL;
	PGresult *res = NULL;
	bool ok = false;

	snprintf(path, sizeof(path), "%s/%s", dir, m->name);
	snprintf(version, sizeof(version), "%ld", m->version);
	sql = read_file(path);
	if (!sql) {
		snprintf(err, errlen, "cannot read %s", path);
		goto out;
	}
	const char *params[2] = {version, sql};
	res = PQexecParams(conn,
			   "SELECT encode(sha256(convert_to($2::text, 'UTF8')), 'hex'), "
			   "(SELECT checksum FROM schema_migrations WHERE version = $1::int)",
			   2, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		snprintf(err, errlen, "%s: %s", m->name, PQresultErrorMessage(res));
		goto out;
	}
	char checksum[80];
	snprintf(checksum, sizeof(checksum), "%s", PQgetvalue(res, 0, 0));
	if (!PQgetisnull(res, 0, 1)) {
		if (strcmp(PQgetvalue(res, 0, 1), checksum) != 0) {
			snprintf(err, errlen,
				 "migration %s was changed after it was applied (recorded checksum %.12s..., file "
				 "now %.12s...): add a new migration instead of editing an applied one",
				 m->name, PQgetvalue(res, 0, 1), checksum);
			goto out;
		}
		ok = true;
		goto out;
	}
	PQclear(res);
	res = NULL;

	if (!db_command(conn, "BEGIN", err, errlen))
		goto out;
	char why[1024];
	if (!db_command(conn, sql, why, sizeof(why))) {
		snprintf(err, errlen, "migration %s failed: %s", m->name, why);
		goto rollback;
	}
	const char *ins[3] = {version, m->name, checksum};
	res = PQexecParams(conn, "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
			   3, NULL, ins, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		snprintf(err, errlen, "recording %s: %s", m->name, PQresultErrorMessage(res));
		goto rollback;
	}
	if (!db_command(conn, "COMMIT", err, errlen))
		goto out;
	log_info("applied migration %s", m->name);
	(*applied)++;
	ok = true;
	goto out;
rollback:
	if (!db_command(conn, "ROLLBACK", NULL, 0))
		log_warn("rollback after a failed migration failed too");
out:
	PQclear(res);
	free(sql);
	size_t len = strlen(err);
	if (len && err[len - 1] == '\n')
		err[len - 1] = '\0';
	return ok;
}

bool migrate_run(PGconn *conn, const char *dir, int *applied, char *err, size_t errlen)
{
	struct migration *list = NULL;
	bool locked = false, ok = false;

	*applied = 0;
	err[0] = '\0';
	int n = list_migrations(dir, &list, err, errlen);
	if (n < 0)
		return false;
	if (!db_command(conn, "SELECT pg_advisory_lock(" MIGRATE_LOCK_KEY ")", err, errlen))
		goto out;
	locked = true;
	if (!db_command(conn,
			"SET client_min_messages = warning;"
			"CREATE TABLE IF NOT EXISTS schema_migrations ("
			" version integer PRIMARY KEY,"
			" name text NOT NULL,"
			" checksum text NOT NULL,"
			" applied_at timestamptz NOT NULL DEFAULT now())",
			err, errlen))
		goto out;
	for (int i = 0; i < n; i++) {
		if (!apply_one(conn, dir, &list[i], applied, err, errlen))
			goto out;
	}
	ok = true;
out:
	if (locked && !db_command(conn, "SELECT pg_advisory_unlock(" MIGRATE_LOCK_KEY ")", NULL, 0))
		log_warn("could not release the migration lock; it ends with the session");
	free(list);
	return ok;
}
