/* switch_demo.c - fibers that switch a few times, for unwind.sh to stop inside the switch. */
#include <stdio.h>

#include "checkout/fiber.h"

/* A frame of our own on the fiber's stack, for the backtrace to show. */
static void __attribute__((noinline)) demo_sleeper(void *arg)
{
	(void)arg;
	for (int i = 0; i < 3; i++)
		fiber_sleep_ms(1);
}

int main(void)
{
	char err[256];
	struct fiber_loop *loop = fiber_loop_start(err, sizeof(err));
	if (!loop) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	int status = fiber_spawn(loop, demo_sleeper, NULL) && fiber_spawn(loop, demo_sleeper, NULL) ? 0 : 1;
	fiber_loop_stop(loop);
	return status;
}
