#!/bin/sh
# unwind.sh GDB DEMO: stop in checkout_ctx_switch (fiber.c) while it pushes
# registers on one stack, and again just after it moved to the other, and
# check that gdb's backtrace walks through the switch into its caller (frame
# #1) every time (the loop's run_one/loop_main, or a fiber's demo_sleeper/fiber_entry;
# for a fiber's first switch, the start of fiber_entry, which gdb shows as
# a line of fiber.c) instead of ending in the switch or in garbage (what it
# did without CFI directives).
set -eu
gdb=$1 demo=$2
out=$(mktemp)
trap 'rm -f "$out"' EXIT

# where to stop: at the third push (one stack), and at the instruction after
# the stack pointer moved (the other)
offsets=$("$gdb" -q -batch -nx -ex 'disassemble checkout_ctx_switch' "$demo" 2>/dev/null | awk '
	{ off = $0; sub(/.*<\+/, "", off); sub(/>.*/, "", off) }
	/push/ && ++pushes == 3 { push = off }
	after_move { print push, off; exit }
	/mov +%rsi,%rsp/ { after_move = 1 }')
set -- $offsets
if [ $# -ne 2 ]; then
	echo "unwind.sh: cannot find checkout_ctx_switch's instructions in $demo" >&2
	exit 1
fi
"$gdb" -q -batch -nx \
	-ex 'set pagination off' \
	-ex "break *checkout_ctx_switch+$1" \
	-ex "break *checkout_ctx_switch+$2" \
	-ex run \
	-ex bt -ex continue -ex bt -ex continue -ex bt -ex continue -ex bt -ex continue -ex bt \
	-ex kill "$demo" >"$out" 2>&1 || true

stops=$(grep -c '^#0 .*checkout_ctx_switch' "$out" || true)
through=$(grep -Ec '^#[1-9].*(run_one|loop_main|demo_sleeper|fiber_entry|ctx_switch|park) \(' "$out" || true)
if [ "$stops" -lt 5 ]; then
	echo "unwind.sh: gdb stopped $stops times in checkout_ctx_switch, expected 5:" >&2
	cat "$out" >&2
	exit 1
fi
# every stop must show the switch's caller as frame #1
missing=$(awk '/^#0 .*checkout_ctx_switch/ { if (open && !named) bad++; open = 1; named = 0; next }
	/^#1 / && (/(run_one|loop_main|demo_sleeper|fiber_entry|ctx_switch|park) \(/ || /fiber\.c:[0-9]/) { named = 1 }
	END { if (open && !named) bad++; print bad + 0 }' "$out")
if [ "$missing" -ne 0 ]; then
	echo "unwind.sh: $missing of $stops backtraces do not find the switch's caller:" >&2
	grep -v '^\[' "$out" >&2
	exit 1
fi
echo "unwind.sh: $stops stops in checkout_ctx_switch, each unwound into its caller ($through named frames)"
