#!/usr/bin/env bash
# tests/isolation/run.sh OUTPUTDIR - run the isolationtester specs.
#
# Runs PostgreSQL's own isolationtester (through pg_isolation_regress, from
# the pgxs tree of postgresql-client) on specs/*.spec against the server the
# PG* variables point at (pg_virtualenv in scripts/test), in a database of its
# own, and compares with expected/*.out. Exits non-zero on any difference;
# OUTPUTDIR/regression.diffs then shows it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: run.sh OUTPUTDIR}

regress=
for v in $(ls /usr/lib/postgresql 2>/dev/null | sort -rn); do
	p=/usr/lib/postgresql/$v/lib/pgxs/src/test/isolation/pg_isolation_regress
	if [ -x "$p" ]; then regress=$p; break; fi
done
[ -n "$regress" ] || { echo "pg_isolation_regress not found (postgresql-client)" >&2; exit 1; }

tests=$(cd "$here/specs" && ls *.spec | sed 's/\.spec$//')
mkdir -p "$out"
# pg_regress drops and recreates the database; the name is ours alone.
if ! "$regress" --inputdir="$here" --outputdir="$out" --dbname=checkout_isolation $tests; then
	cat "$out/regression.diffs" 2>/dev/null || true
	exit 1
fi
