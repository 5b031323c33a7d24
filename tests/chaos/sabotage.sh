#!/usr/bin/env bash
# tests/chaos/sabotage.sh BUILD_DIR: scripts/chaos with both sabotages must
# exit 1 and name each violation they cause. drop-events (outbox rows marked
# published without being published) must show as orders missing from the
# topic and from every worker; double-order (a second order for one key) as
# a key with two orders and an order that never had a 201.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=$(mktemp)
trap 'rm -f "$out"' EXIT

BUILD_DIR=$1 NO_BUILD=1 ROUNDS=1 ROUND_SECONDS=6 FAULTS=kill-relay DRAIN_QUIET=10 \
	SABOTAGE="drop-events double-order" "$root/scripts/chaos" >"$out" 2>&1
rc=$?
cat "$out"
echo
fail=0
[ "$rc" = 1 ] || { echo "FAIL: scripts/chaos exited $rc, expected 1"; fail=1; }
for v in "every order is on the topic" \
	"email: one inbox row per order" "inventory: one inbox row per order" "analytics: one inbox row per order" \
	"inventory.stock_view = order lines" "analytics.totals and analytics.skus" "one email per order" \
	"one key, at most one order" "every order in the database had a 201"; do
	grep -qF "VIOLATED  $v" "$out" || { echo "FAIL: the sabotage did not show as \"$v\""; fail=1; }
done
for v in "every 201 is an order in the database" "stock conserved per SKU" "every program alive at the end"; do
	grep -qF "ok        $v" "$out" || { echo "FAIL: \"$v\" should still hold"; fail=1; }
done
[ "$fail" = 0 ] && echo "PASS: the checks caught both sabotages"
exit "$fail"
