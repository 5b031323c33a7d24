#!/usr/bin/env bash
# loadtest/product_events.sh - what the checkout's product.upserted event
# costs (README, "CRUD as events").
#
# Every stock update a checkout makes fires the products trigger of
# migrations/010_products_as_events.sql, which emits the product's new state:
# a second event per checkout line. This runs the server's checkout
# transaction (loadtest/pgbench/checkout.sql, uniform 1-item carts) with
# pgbench in each events mode, with the product event on and off
# (checkout.product_events=off), alternating A B B A so that drift on a
# shared machine falls on both, and prints tps and WAL bytes per checkout.
#
# Run inside a throw-away cluster with logical decoding, from the repository:
#   pg_virtualenv -o wal_level=logical loadtest/product_events.sh
# Settings: SECONDS_EACH (20), CLIENTS (32), SKUS (10000), BIN_DIR (build/bin).
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${SECONDS_EACH:-20}
CLIENTS=${CLIENTS:-32}
SKUS=${SKUS:-10000}
BIN=${BIN_DIR:-build/bin}
DB=product_events_$$

psql -X -q -d postgres -c "CREATE DATABASE $DB"
trap 'psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true' EXIT
export PGDATABASE=$DB
DATABASE_URL="dbname=$DB" "$BIN/checkout-migrate" >/dev/null
psql -X -q -c "INSERT INTO products (sku, name, price_cents, stock)
   SELECT 'sku-' || lpad(i::text, 5, '0'), 'Bench product ' || i, 100 + i % 900, 100000000
   FROM generate_series(0, $SKUS - 1) AS i" -c "VACUUM ANALYZE" >/dev/null

# run MODE PRODUCT_EVENTS: one pgbench run; prints a line
run() {
	local mode=$1 pe=$2 event before after tx tps log
	event=$([ "$mode" = wal ] && echo 1 || echo 0)
	log=$(mktemp)
	psql -X -q -c "CHECKPOINT"
	before=$(psql -XtAc "SELECT pg_current_wal_lsn()")
	PGOPTIONS="-c checkout.events=$mode -c checkout.product_events=$pe" \
		pgbench -n -M prepared -f loadtest/pgbench/checkout.sql -D skus="$SKUS" -D hot=0 -D event="$event" \
		--max-tries 11 -c "$CLIENTS" -j "$(nproc)" -T "$SECS" >"$log" 2>&1 ||
		{ cat "$log" >&2; exit 1; }
	after=$(psql -XtAc "SELECT pg_current_wal_lsn()")
	tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$log")
	tx=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$log")
	printf '%-7s product events %-3s %9.1f tps  %6.0f B WAL per checkout\n' "$mode" "$pe" "$tps" \
		"$(psql -XtAc "SELECT pg_wal_lsn_diff('$after', '$before') / greatest($tx, 1)")"
	rm -f "$log"
	# outbox mode: nothing relays here; empty it so every run starts alike
	psql -X -q -c "TRUNCATE outbox"
}

echo "pgbench, $CLIENTS clients, ${SECS} s each, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
for mode in wal outbox; do
	run "$mode" on
	run "$mode" off
	run "$mode" off
	run "$mode" on
done
