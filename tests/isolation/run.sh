#!/usr/bin/env bash
# tests/isolation/run.sh OUTPUTDIR MIGRATE STMTS - run the isolationtester specs.
#
# Runs PostgreSQL's own isolationtester (through pg_isolation_regress, from
# the pgxs tree of postgresql-client) on specs/*.spec against the server the
# PG* variables point at (pg_virtualenv in scripts/test), in a database of its
# own, and compares with expected/*.out. Exits non-zero on any difference;
# OUTPUTDIR/regression.diffs then shows it.
#
# The database gets the real schema (MIGRATE: the checkout-migrate program)
# and the checkout's own statements (STMTS: the program that prints
# checkout_stmts of service/server/checkout.c as rows of
# isolation_spec.checkout_stmts). Each session of a spec prepares them, under
# their names, with CALL isolation_spec.prepare_checkout() in its setup.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
usage="usage: run.sh OUTPUTDIR MIGRATE STMTS"
out=${1:?$usage}
migrate=${2:?$usage}
stmts=${3:?$usage}
db=checkout_isolation

regress=
for v in $(ls /usr/lib/postgresql 2>/dev/null | sort -rn); do
	p=/usr/lib/postgresql/$v/lib/pgxs/src/test/isolation/pg_isolation_regress
	if [ -x "$p" ]; then regress=$p; break; fi
done
[ -n "$regress" ] || { echo "pg_isolation_regress not found (postgresql-client)" >&2; exit 1; }

rm -rf "$out"
mkdir -p "$out"
# the database is ours alone: made here, then used as it is (--use-existing)
psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "SET client_min_messages = warning" \
	-c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
"$migrate" --database-url "dbname=$db" --log-level warn
{
	cat <<-'SQL'
	CREATE SCHEMA isolation_spec;
	CREATE TABLE isolation_spec.checkout_stmts (name text PRIMARY KEY, sql text NOT NULL);
	-- what a checkout connection prepares (db_connect), for the calling session
	CREATE PROCEDURE isolation_spec.prepare_checkout() LANGUAGE plpgsql AS $$
	DECLARE
	  s record;
	BEGIN
	  EXECUTE 'DEALLOCATE ALL'; -- a session's setup runs again for every permutation
	  FOR s IN SELECT name, sql FROM isolation_spec.checkout_stmts ORDER BY name LOOP
	    EXECUTE format('PREPARE %I AS %s', s.name, s.sql);
	  END LOOP;
	END
	$$;
	SQL
	"$stmts"
} > "$out/checkout_stmts.sql"
psql -X -q -v ON_ERROR_STOP=1 -d "$db" -f "$out/checkout_stmts.sql"
n=$(psql -X -A -t -d "$db" -c "SELECT count(*) FROM isolation_spec.checkout_stmts")
[ "$n" -gt 0 ] || { echo "no checkout statements from $stmts" >&2; exit 1; }

tests=$(cd "$here/specs" && ls *.spec | sed 's/\.spec$//')
if ! "$regress" --inputdir="$here" --outputdir="$out" --use-existing --dbname="$db" $tests; then
	cat "$out/regression.diffs" 2>/dev/null || true
	exit 1
fi
