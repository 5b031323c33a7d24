#!/bin/sh
# docker-compose.yml is valid (no Docker engine runs here, so this is all CI checks of it).
set -eu
cd "$(dirname "$0")/.."
if ! command -v docker-compose >/dev/null 2>&1; then
	echo "docker-compose is not installed (scripts/test installs it)" >&2
	exit 1
fi
out=$(docker-compose -f docker-compose.yml config)
for service in postgres kafka topics migrate server relay email inventory analytics; do
	printf '%s\n' "$out" | grep -q "^  $service:" || { echo "service $service missing" >&2; exit 1; }
done
echo "docker-compose.yml: valid, 9 services"
