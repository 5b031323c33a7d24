#!/bin/sh
# cet.sh CC SOURCE_DIR WORK_DIR: fiber.c refuses CET shadow stacks
# (-fcf-protection=return or full) with a clear #error, and with indirect
# branch tracking only (-fcf-protection=branch) it compiles and the switch
# starts with endbr64.
set -eu
cc=$1 src=$2 work=$3
mkdir -p "$work"
compile() { "$cc" -std=gnu11 -c -I"$src/include" "$@" "$src/service/common/fiber.c" -o "$work/fiber.o" 2>"$work/err"; }

for flag in return full; do
	if compile -fcf-protection=$flag; then
		echo "cet.sh: fiber.c compiled with -fcf-protection=$flag; it must refuse shadow stacks" >&2
		exit 1
	fi
	if ! grep -q 'does not support CET shadow stacks' "$work/err"; then
		echo "cet.sh: -fcf-protection=$flag failed without saying why:" >&2
		cat "$work/err" >&2
		exit 1
	fi
done
if ! compile -fcf-protection=branch; then
	echo "cet.sh: fiber.c does not compile with -fcf-protection=branch:" >&2
	cat "$work/err" >&2
	exit 1
fi
first=$(objdump -d --no-show-raw-insn "$work/fiber.o" | awk '/<checkout_ctx_switch>:/ { getline; print $2; exit }')
if [ "$first" != endbr64 ]; then
	echo "cet.sh: with -fcf-protection=branch checkout_ctx_switch starts with '$first', not endbr64" >&2
	exit 1
fi
echo "cet.sh: shadow stacks refused (return, full); branch tracking builds with endbr64"
