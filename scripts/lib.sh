# scripts/lib.sh - shared by scripts/up, scripts/test and friends. Source it.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Debian packages the project needs to build, test and run.
CHECKOUT_PACKAGES="build-essential cmake pkg-config clang libclang-rt-14-dev
  libpq-dev libmicrohttpd-dev libjansson-dev librdkafka-dev libcriterion-dev
  libcurl4-openssl-dev postgresql postgresql-client-15 postgresql-common
  docker-compose kcat gnuplot-nox curl procps iproute2 gdb
  chromium nodejs"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

as_root() {
	if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# Install whatever of CHECKOUT_PACKAGES is missing (apt-get update first).
deps_install() {
	local missing=()
	for p in $CHECKOUT_PACKAGES; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	# npm: Debian's package, unless node came with its own (nodesource's nodejs conflicts with it)
	command -v npm >/dev/null || missing+=(npm)
	if [ ${#missing[@]} -gt 0 ]; then
		say "installing ${missing[*]}"
		as_root apt-get update -q
		as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
	fi
	deps_npm
}

# The browser test's tooling (tests/dashboard: puppeteer-core, pinned in its
# package-lock.json), installed again only when the lock file changed.
deps_npm() {
	local dir=$ROOT/tests/dashboard
	[ -f "$dir/package-lock.json" ] || return 0
	if ! cmp -s "$dir/package-lock.json" "$dir/node_modules/.installed-lock.json" 2>/dev/null; then
		say "installing the dashboard test's tooling (npm ci in tests/dashboard)"
		(cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
		cp "$dir/package-lock.json" "$dir/node_modules/.installed-lock.json"
	fi
}

# build DIR [cmake args...]: configure (always: programs and test folders are
# discovered at configure time), then build everything.
build() {
	local dir=$1; shift
	cmake -S "$ROOT" -B "$ROOT/$dir" "$@" >/dev/null
	cmake --build "$ROOT/$dir" -j"$(nproc)"
}

# The PostgreSQL server binaries (initdb, pg_ctl) of the newest installed version.
pg_bindir() {
	local v
	v=$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -1)
	[ -n "$v" ] || die "PostgreSQL server is not installed"
	echo "/usr/lib/postgresql/$v/bin"
}
