#!/usr/bin/env bash
# tests/relay/replica_cluster.sh start DIR PORT | stop DIR
#
# A throw-away PostgreSQL cluster with wal_level = replica (no logical
# decoding) in DIR, on 127.0.0.1:PORT, user postgres, trust: what the relay
# and the server must refuse in the WAL mode with one line. As root, initdb
# and pg_ctl run as the postgres user (initdb refuses root).
set -euo pipefail
bin=/usr/lib/postgresql/$(ls /usr/lib/postgresql | sort -n | tail -1)/bin
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
case "$1" in
start)
	dir=$2 port=$3
	mkdir -p "$dir"
	[ "$(id -u)" = 0 ] && chown postgres "$dir"
	as_pg "$bin/initdb" -D "$dir/data" -A trust -U postgres >"$dir/initdb.log" 2>&1
	as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 30 \
		-o "-c wal_level=replica -c port=$port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$dir -c fsync=off" \
		start >/dev/null
	;;
stop)
	dir=$2
	[ -d "$dir/data" ] && as_pg "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
	rm -rf "$dir"
	;;
*)
	echo "usage: $0 start DIR PORT | stop DIR" >&2
	exit 2
	;;
esac
