/* Migrations: applied once, in order, refused when edited, safe in parallel. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkout/db.h"
#include "checkout/migrate.h"
#include "testenv.h"

static char *fresh_database(void)
{
	static int n;
	char *conninfo = NULL;
	char sql[128];
	PGconn *admin = testenv_db_connect("dbname=postgres");
	char name[64];
	snprintf(name, sizeof(name), "m_%d_%d", (int)getpid(), ++n);
	snprintf(sql, sizeof(sql), "CREATE DATABASE %s", name);
	testenv_exec(admin, sql);
	PQfinish(admin);
	cr_assert(asprintf(&conninfo, "dbname=%s", name) > 0);
	return conninfo;
}

Test(migrate, applies_every_file_then_is_a_no_op)
{
	char *db = fresh_database();
	PGconn *conn = testenv_db_connect(db);
	char err[1024];
	int applied = -1;
	cr_assert(migrate_run(conn, CHECKOUT_MIGRATIONS_DIR, &applied, err, sizeof(err)), "%s", err);
	cr_expect_gt(applied, 0);
	long recorded = testenv_query_long(conn, "SELECT count(*) FROM schema_migrations");
	cr_expect_eq(recorded, applied);
	cr_expect_eq(testenv_query_long(conn, "SELECT count(*) FROM products"), 0);

	cr_assert(migrate_run(conn, CHECKOUT_MIGRATIONS_DIR, &applied, err, sizeof(err)), "%s", err);
	cr_expect_eq(applied, 0);
	cr_expect_eq(testenv_query_long(conn, "SELECT count(*) FROM schema_migrations"), recorded);
	PQfinish(conn);
	free(db);
}

Test(migrate, refuses_an_applied_file_that_was_edited)
{
	char dir[] = "/tmp/checkout-migrations-XXXXXX";
	cr_assert(mkdtemp(dir));
	char path[256];
	snprintf(path, sizeof(path), "%s/001_first.sql", dir);
	FILE *f = fopen(path, "w");
	fputs("CREATE TABLE first_table (id int);\n", f);
	fclose(f);

	char *db = fresh_database();
	PGconn *conn = testenv_db_connect(db);
	char err[1024];
	int applied = 0;
	cr_assert(migrate_run(conn, dir, &applied, err, sizeof(err)), "%s", err);
	cr_assert_eq(applied, 1);

	f = fopen(path, "w");
	fputs("CREATE TABLE first_table (id bigint);\n", f);
	fclose(f);
	cr_assert_not(migrate_run(conn, dir, &applied, err, sizeof(err)));
	cr_expect(strstr(err, "001_first.sql was changed after it was applied"), "message was: %s", err);

	unlink(path);
	rmdir(dir);
	PQfinish(conn);
	free(db);
}

Test(migrate, a_failing_file_leaves_nothing_behind)
{
	char dir[] = "/tmp/checkout-migrations-XXXXXX";
	cr_assert(mkdtemp(dir));
	char path[256];
	snprintf(path, sizeof(path), "%s/001_broken.sql", dir);
	FILE *f = fopen(path, "w");
	fputs("CREATE TABLE half (id int);\nSELECT no_such_function();\n", f);
	fclose(f);

	char *db = fresh_database();
	PGconn *conn = testenv_db_connect(db);
	char err[1024];
	int applied = 0;
	cr_assert_not(migrate_run(conn, dir, &applied, err, sizeof(err)));
	cr_expect(strstr(err, "001_broken.sql failed"), "message was: %s", err);
	cr_expect_eq(testenv_query_long(conn, "SELECT count(*) FROM pg_tables WHERE tablename = 'half'"), 0);
	cr_expect_eq(testenv_query_long(conn, "SELECT count(*) FROM schema_migrations"), 0);
	unlink(path);
	rmdir(dir);
	PQfinish(conn);
	free(db);
}

struct racer {
	const char *db;
	bool ok;
	int applied;
	char err[1024];
};

static void *race_migrate(void *arg)
{
	struct racer *r = arg;
	PGconn *conn = PQconnectdb(r->db);
	r->ok = PQstatus(conn) == CONNECTION_OK &&
		migrate_run(conn, CHECKOUT_MIGRATIONS_DIR, &r->applied, r->err, sizeof(r->err));
	PQfinish(conn);
	return NULL;
}

Test(migrate, two_processes_migrating_at_once_apply_each_file_once)
{
	char *db = fresh_database();
	struct racer a = {.db = db}, b = {.db = db};
	pthread_t ta, tb;
	pthread_create(&ta, NULL, race_migrate, &a);
	pthread_create(&tb, NULL, race_migrate, &b);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	cr_assert(a.ok, "%s", a.err);
	cr_assert(b.ok, "%s", b.err);
	PGconn *conn = testenv_db_connect(db);
	long files = testenv_query_long(conn, "SELECT count(*) FROM schema_migrations");
	cr_expect_eq(a.applied + b.applied, files, "each file applied by exactly one of them");
	cr_expect(a.applied == 0 || b.applied == 0, "one of them found everything done");
	PQfinish(conn);
	free(db);
}
