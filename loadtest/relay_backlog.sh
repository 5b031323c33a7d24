#!/usr/bin/env bash
# loadtest/relay_backlog.sh - how fast checkout-relay drains a backlog of outbox rows.
#
# Environment:
#   DATABASE_URL   libpq connection string of a MIGRATED database ("" = PG* variables)
#   KAFKA_BROKERS  bootstrap servers (e.g. from checkout-broker)
#   N              rows to insert (default 100000)
#   RELAY          the relay binary (default build/bin/checkout-relay)
#   RELAY_BATCH, ORDERS_TOPIC, ...  passed through to the relay
#
# In the mode EVENTS says (default wal) it writes N synthetic order.admitted
# events (no orders rows: the relay reads only the events): WAL messages, one
# per transaction, into the relay's slot; or outbox rows. Then it starts a
# relay, waits until the slot's confirmed position passes them (or no row is
# pending), stops it and prints
#   relay drained N events in S s: R events/s
# Time runs from the relay's start to the moment pending reaches 0. The rows
# are really published: run it against a throw-away database and broker, and
# with no other relay running (it would drain part of the backlog).
# A benchmark, not a test: it never fails on a slow result.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=${N:-100000}
RELAY=${RELAY:-$ROOT/build/bin/checkout-relay}
export DATABASE_URL=${DATABASE_URL:-}
: "${KAFKA_BROKERS:?set KAFKA_BROKERS}"
export KAFKA_BROKERS

q() { psql "${DATABASE_URL}" -X -q -A -t -v ON_ERROR_STOP=1 -c "$1"; }

log=$(mktemp)
pid=""
trap '[ -z "$pid" ] || kill $pid 2>/dev/null || true; rm -f "$log"' EXIT

if [ "${EVENTS:-wal}" = wal ]; then
	# the relay's slot (its default name) and publication, as the server makes them at start;
	# whatever the slot still holds from before is counted as sent
	slot=$(q "SELECT left('checkout_' || regexp_replace(lower(current_database()), '[^a-z0-9_]', '_', 'g'), 63)")
	q "DO \$\$BEGIN CREATE PUBLICATION checkout_events; EXCEPTION WHEN duplicate_object THEN NULL; END\$\$"
	[ "$(q "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '$slot'")" = 1 ] ||
		q "SELECT pg_create_logical_replication_slot('$slot', 'pgoutput')" >/dev/null
	[ "$(q "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '$slot' AND active")" = 0 ] ||
		{ echo "relay_backlog: slot $slot is in use; is a relay running?" >&2; exit 1; }
	q "SELECT pg_replication_slot_advance('$slot', pg_current_wal_insert_lsn())" >/dev/null
	# one event per transaction, as the checkout writes them (a DO block may COMMIT only
	# when it is the whole statement, hence the setting through PGOPTIONS)
	PGOPTIONS="-c synchronous_commit=off" q "DO \$\$BEGIN FOR i IN 1..$N LOOP
	     PERFORM pg_logical_emit_message(true, 'checkout/order.admitted', json_build_object(
	       'order_id', o, 'customer_id', 'bench-' || (i % 1000), 'email', 'bench@example.com',
	       'items', json_build_array(json_build_object('sku', 'BENCH-1', 'quantity', 1, 'unit_price_cents', 1250)),
	       'total_cents', 1250,
	       'created_at', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'))::text)
	     FROM gen_random_uuid() AS o;
	     COMMIT;
	   END LOOP; END\$\$"
	target=$(q "SELECT pg_current_wal_insert_lsn()")
	done_sql="SELECT (confirmed_flush_lsn >= '$target')::int FROM pg_replication_slots WHERE slot_name = '$slot'"
else
	pending=$(q "SELECT count(*) FROM outbox WHERE published_at IS NULL")
	[ "$pending" = 0 ] || { echo "relay_backlog: $pending rows already pending; is a relay running?" >&2; exit 1; }

	q "INSERT INTO outbox (event_id, event_type, aggregate_id, payload)
	   SELECT o, 'order.admitted', o, jsonb_build_object(
	            'order_id', o, 'customer_id', 'bench-' || (i % 1000), 'email', 'bench@example.com',
	            'items', jsonb_build_array(jsonb_build_object('sku', 'BENCH-1', 'quantity', 1,
	                                                          'unit_price_cents', 1250)),
	            'total_cents', 1250,
	            'created_at', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'))
	   FROM (SELECT i, gen_random_uuid() AS o FROM generate_series(1, $N) AS i) AS s"
	q "ANALYZE outbox"
	done_sql="SELECT (count(*) = 0)::int FROM outbox WHERE published_at IS NULL"
fi

start=$(date +%s.%N)
"$RELAY" >"$log" 2>&1 &
pid=$!
while :; do
	[ "$(q "$done_sql")" = 1 ] && break
	kill -0 $pid 2>/dev/null || { echo "relay_backlog: the relay died:" >&2; cat "$log" >&2; exit 1; }
	sleep 0.05
done
end=$(date +%s.%N)
kill -TERM $pid
wait $pid || true
awk -v n="$N" -v s="$start" -v e="$end" \
	'BEGIN { d = e - s; printf "relay drained %d events in %.2f s: %.0f events/s\n", n, d, n / d }'
