#!/usr/bin/env bash
# fuzz.sh BUILD_DIR SECONDS - build the libFuzzer target with clang (ASan+UBSan)
# and fuzz the request validator for a bounded time, starting from the corpus
# in tests/server/corpus/ (read-only; new inputs go to BUILD_DIR). A crash
# fails the test and leaves crash-* in BUILD_DIR/fuzz: copy it into
# tests/server/corpus/ so fuzz_replay keeps it as a regression case.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
mkdir -p "$1/fuzz"
out=$(cd "$1/fuzz" && pwd)
seconds="${2:-20}"
mkdir -p "$out/new"
clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	-I"$root/service/server" -I"$root/include" $(pkg-config --cflags jansson) \
	"$here/fuzz_request.c" "$root/service/server/validate.c" "$root/service/common/fields.c" \
	$(pkg-config --libs jansson) -o "$out/fuzz_request"
cd "$out"
ASAN_OPTIONS=detect_leaks=1 ./fuzz_request -max_total_time="$seconds" -timeout=5 -rss_limit_mb=1024 \
	-max_len=70000 -print_final_stats=1 -artifact_prefix="$out/" new "$here/corpus" 2>&1 | tail -15
