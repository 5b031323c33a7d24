/* fiber.c - see fiber.h.
 *
 * Fibers run on stacks of FIBER_STACK bytes (mmap'd with a guard page, kept
 * for reuse). The loop thread runs the runnable fibers in FIFO order, then
 * waits in epoll for file descriptors, the next timer, or an eventfd that
 * other threads write after handing it new fibers.
 *
 * Switching on x86-64 is a few instructions of our own (ctx_switch below):
 * swapcontext(3) would also save and restore the signal mask, a system call
 * on every switch, and a checkout switches about ten times. Every other
 * architecture (aarch64 included) falls back to ucontext's swapcontext.
 */
#define _GNU_SOURCE
#include "checkout/fiber.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include "checkout/log.h"
#include "checkout/monotonic.h"

#if defined(__SANITIZE_ADDRESS__)
#define FIBER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FIBER_ASAN 1
#endif
#endif
#ifdef FIBER_ASAN
#include <sanitizer/common_interface_defs.h>
#endif

/* Stack per fiber: libpq, jansson and snprintf run on it (only touched pages cost memory). */
#define FIBER_STACK (256 * 1024)
/* Stacks kept for reuse instead of unmapped. */
#define FIBER_SPARE_STACKS 64

/* ---- contexts --------------------------------------------------------- */

#if defined(__x86_64__)
/*
 * Intel CET: indirect branch tracking (-fcf-protection=branch, __CET__ bit
 * 0) only needs an endbr64 where a call may land indirectly, which the
 * switch has. A shadow stack (-fcf-protection=return or full, bit 1) cannot
 * work with it: the switch returns on another stack than it was called on,
 * which the shadow stack would take for an attack and kill the process, and
 * the object would still be marked as shadow-stack ready. Refuse that build
 * instead of crashing at the first switch.
 */
#if defined(__CET__) && (__CET__ & 2)
#error "fiber.c: the x86-64 context switch does not support CET shadow stacks; build with -fcf-protection=branch or -fcf-protection=none"
#endif
#if defined(__CET__) && (__CET__ & 1)
#define CTX_ENDBR "	endbr64\n"
#else
#define CTX_ENDBR ""
#endif

/*
 * ctx_switch(from, to): push the callee-saved registers and the SSE/x87
 * control words, store the stack pointer in *from, load to, pop the same and
 * return into whatever pushed it (ABI: System V AMD64).
 *
 * The CFI directives describe where each register and the return address
 * are at every instruction, so that gdb, perf --call-graph=dwarf and any
 * other .eh_frame unwinder can walk through a switch caught midway. Both
 * stacks hold the same frame (each was left by a switch, or laid out by
 * ctx_init to look so), so one description serves before and after the
 * stack pointer moves: after it, the frame's caller is the fiber being
 * resumed.
 */
struct ctx {
	void *sp;
};
void checkout_ctx_switch(void **from, void *to);
__asm__(".text\n"
	".globl checkout_ctx_switch\n"
	".type checkout_ctx_switch,@function\n"
	"checkout_ctx_switch:\n"
	"	.cfi_startproc\n" CTX_ENDBR
	"	pushq %rbp\n"
	"	.cfi_adjust_cfa_offset 8\n"
	"	.cfi_rel_offset %rbp, 0\n"
	"	pushq %rbx\n"
	"	.cfi_adjust_cfa_offset 8\n"
	"	.cfi_rel_offset %rbx, 0\n"
	"	pushq %r12\n"
	"	.cfi_adjust_cfa_offset 8\n"
	"	.cfi_rel_offset %r12, 0\n"
	"	pushq %r13\n"
	"	.cfi_adjust_cfa_offset 8\n"
	"	.cfi_rel_offset %r13, 0\n"
	"	pushq %r14\n"
	"	.cfi_adjust_cfa_offset 8\n"
	"	.cfi_rel_offset %r14, 0\n"
	"	pushq %r15\n"
	"	.cfi_adjust_cfa_offset 8\n"
	"	.cfi_rel_offset %r15, 0\n"
	"	subq $8, %rsp\n"
	"	.cfi_adjust_cfa_offset 8\n"
	"	stmxcsr (%rsp)\n"
	"	fnstcw 4(%rsp)\n"
	"	movq %rsp, (%rdi)\n"
	"	movq %rsi, %rsp\n" /* the same frame, the other fiber's: the CFI holds */
	"	ldmxcsr (%rsp)\n"
	"	fldcw 4(%rsp)\n"
	"	addq $8, %rsp\n"
	"	.cfi_adjust_cfa_offset -8\n"
	"	popq %r15\n"
	"	.cfi_adjust_cfa_offset -8\n"
	"	.cfi_restore %r15\n"
	"	popq %r14\n"
	"	.cfi_adjust_cfa_offset -8\n"
	"	.cfi_restore %r14\n"
	"	popq %r13\n"
	"	.cfi_adjust_cfa_offset -8\n"
	"	.cfi_restore %r13\n"
	"	popq %r12\n"
	"	.cfi_adjust_cfa_offset -8\n"
	"	.cfi_restore %r12\n"
	"	popq %rbx\n"
	"	.cfi_adjust_cfa_offset -8\n"
	"	.cfi_restore %rbx\n"
	"	popq %rbp\n"
	"	.cfi_adjust_cfa_offset -8\n"
	"	.cfi_restore %rbp\n"
	"	ret\n"
	"	.cfi_endproc\n"
	".size checkout_ctx_switch, .-checkout_ctx_switch\n");

/* A context that starts entry() on the stack [base, base + size). */
static bool ctx_init(struct ctx *c, void *base, size_t size, void (*entry)(void))
{
	uintptr_t top = ((uintptr_t)base + size) & ~(uintptr_t)15;
	void **sp = (void **)(top - 16); /* entry starts as if called: rsp = 8 mod 16 */
	sp[1] = NULL;			 /* entry's return address: 0 ends every unwinder's walk there */
	*sp = (void *)entry;		 /* where the first switch "returns" to */
	for (int i = 0; i < 6; i++)	 /* rbp rbx r12 r13 r14 r15 */
		*--sp = NULL;
	*--sp = NULL;
	uint32_t mxcsr = __builtin_ia32_stmxcsr();
	uint16_t fpucw;
	__asm__ volatile("fnstcw %0" : "=m"(fpucw));
	memcpy((char *)sp, &mxcsr, sizeof(mxcsr));
	memcpy((char *)sp + 4, &fpucw, sizeof(fpucw));
	c->sp = sp;
	return true;
}

static void ctx_switch(struct ctx *from, struct ctx *to)
{
	checkout_ctx_switch(&from->sp, to->sp);
}
#else
struct ctx {
	ucontext_t uc;
};

static bool ctx_init(struct ctx *c, void *base, size_t size, void (*entry)(void))
{
	if (getcontext(&c->uc) != 0)
		return false;
	c->uc.uc_stack.ss_sp = base;
	c->uc.uc_stack.ss_size = size;
	c->uc.uc_link = NULL;
	makecontext(&c->uc, entry, 0);
	return true;
}

static void ctx_switch(struct ctx *from, struct ctx *to)
{
	swapcontext(&from->uc, &to->uc);
}
#endif

/* ---- fibers and the loop ---------------------------------------------- */

struct fiber {
	struct ctx ctx;
	void *stack_base; /* usable stack: [stack_base, stack_base + FIBER_STACK) */
	void *stack;	  /* mapping of FIBER_STACK + one guard page */
	void (*fn)(void *arg);
	void *arg;
	struct fiber *next;	   /* run queue, wait queue or spawn list */
	struct fiber_queue *queue; /* the wait queue it is parked in, if any */
	int64_t deadline;	   /* monotonic ns of its timer; 0 when none */
	int timer_slot;		   /* index in the timer heap; -1 when none */
	int revents;		   /* what fiber_wait_fd saw */
	int64_t limit;		   /* monotonic ns by which every wait ends (fiber_set_deadline_ms); 0: none */
	bool woken;		   /* handed the turn by fiber_queue_wake_one */
	bool done;
};

struct fiber_loop {
	pthread_t thread;
	int epfd;
	int wakefd; /* eventfd: new fibers to adopt, or stop */

	pthread_mutex_t lock; /* guards spawned, stopping and count */
	struct fiber *spawned;
	bool stopping;
	int count;

	/* loop thread only from here on */
	struct ctx main_ctx;
	struct fiber *run_head, *run_tail;
	struct fiber **timers; /* min-heap by deadline */
	int n_timers, cap_timers;
	void *spare[FIBER_SPARE_STACKS];
	int n_spare;
#ifdef FIBER_ASAN
	const void *main_stack_bottom;
	size_t main_stack_size;
#endif
};

static __thread struct fiber_loop *this_loop; /* set on the loop's thread */
static __thread struct fiber *running;	      /* the fiber now running, if any */

/* ---- timers: a binary min-heap of fibers by deadline ------------------ */

static void timer_swap(struct fiber_loop *l, int a, int b)
{
	struct fiber *t = l->timers[a];
	l->timers[a] = l->timers[b];
	l->timers[b] = t;
	l->timers[a]->timer_slot = a;
	l->timers[b]->timer_slot = b;
}

static void timer_sift(struct fiber_loop *l, int i)
{
	while (i > 0 && l->timers[(i - 1) / 2]->deadline > l->timers[i]->deadline) {
		timer_swap(l, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
	for (;;) {
		int least = i, a = 2 * i + 1, b = a + 1;
		if (a < l->n_timers && l->timers[a]->deadline < l->timers[least]->deadline)
			least = a;
		if (b < l->n_timers && l->timers[b]->deadline < l->timers[least]->deadline)
			least = b;
		if (least == i)
			return;
		timer_swap(l, i, least);
		i = least;
	}
}

static bool timer_add(struct fiber_loop *l, struct fiber *f, int timeout_ms)
{
	if (l->n_timers == l->cap_timers) {
		int cap = l->cap_timers ? 2 * l->cap_timers : 64;
		struct fiber **grown = realloc(l->timers, (size_t)cap * sizeof(*grown));
		if (!grown)
			return false;
		l->timers = grown;
		l->cap_timers = cap;
	}
	f->deadline = monotonic_ns() + (int64_t)timeout_ms * 1000000;
	f->timer_slot = l->n_timers;
	l->timers[l->n_timers++] = f;
	timer_sift(l, f->timer_slot);
	return true;
}

static void timer_remove(struct fiber_loop *l, struct fiber *f)
{
	int i = f->timer_slot;
	if (i < 0)
		return;
	f->timer_slot = -1;
	f->deadline = 0;
	if (--l->n_timers == i)
		return;
	l->timers[i] = l->timers[l->n_timers];
	l->timers[i]->timer_slot = i;
	timer_sift(l, i);
}

/* ---- run queue and switching ------------------------------------------ */

static void make_runnable(struct fiber_loop *l, struct fiber *f)
{
	timer_remove(l, f);
	f->next = NULL;
	if (l->run_tail)
		l->run_tail->next = f;
	else
		l->run_head = f;
	l->run_tail = f;
}

/* Switch from the running fiber back to the loop; returns when it is resumed. */
static void park(void)
{
	struct fiber_loop *l = this_loop;
	struct fiber *f = running;
#ifdef FIBER_ASAN
	void *fake = NULL;
	__sanitizer_start_switch_fiber(&fake, l->main_stack_bottom, l->main_stack_size);
#endif
	ctx_switch(&f->ctx, &l->main_ctx);
#ifdef FIBER_ASAN
	__sanitizer_finish_switch_fiber(fake, NULL, NULL);
#endif
}

static void fiber_entry(void)
{
	struct fiber *f = running;
#ifdef FIBER_ASAN
	__sanitizer_finish_switch_fiber(NULL, &this_loop->main_stack_bottom, &this_loop->main_stack_size);
#endif
	f->fn(f->arg);
	f->done = true;
#ifdef FIBER_ASAN
	/* a finished fiber's stack is never switched back to: no fake stack to keep */
	__sanitizer_start_switch_fiber(NULL, this_loop->main_stack_bottom, this_loop->main_stack_size);
#endif
	ctx_switch(&f->ctx, &this_loop->main_ctx); /* never comes back: the loop frees the fiber */
	abort();
}

static void *stack_take(struct fiber_loop *l)
{
	if (l->n_spare > 0)
		return l->spare[--l->n_spare];
	long page = sysconf(_SC_PAGESIZE);
	void *m = mmap(NULL, FIBER_STACK + (size_t)page, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
	if (m == MAP_FAILED)
		return NULL;
	/* a guard page below the stack: an overflow faults instead of corrupting memory */
	if (mprotect(m, (size_t)page, PROT_NONE) != 0) {
		munmap(m, FIBER_STACK + (size_t)page);
		return NULL;
	}
	return m;
}

static void stack_give(struct fiber_loop *l, void *m)
{
	if (l->n_spare < FIBER_SPARE_STACKS)
		l->spare[l->n_spare++] = m;
	else
		munmap(m, FIBER_STACK + (size_t)sysconf(_SC_PAGESIZE));
}

static void fiber_free(struct fiber_loop *l, struct fiber *f)
{
	if (f->stack)
		stack_give(l, f->stack);
	free(f);
	pthread_mutex_lock(&l->lock);
	l->count--;
	pthread_mutex_unlock(&l->lock);
}

/* Give f a stack and a context; false when out of memory. */
static bool fiber_prepare(struct fiber_loop *l, struct fiber *f)
{
	f->stack = stack_take(l);
	if (!f->stack)
		return false;
	f->stack_base = (char *)f->stack + sysconf(_SC_PAGESIZE);
	return ctx_init(&f->ctx, f->stack_base, FIBER_STACK, fiber_entry);
}

static void run_one(struct fiber_loop *l, struct fiber *f)
{
	running = f;
#ifdef FIBER_ASAN
	void *fake = NULL;
	__sanitizer_start_switch_fiber(&fake, f->stack_base, FIBER_STACK);
#endif
	ctx_switch(&l->main_ctx, &f->ctx);
#ifdef FIBER_ASAN
	__sanitizer_finish_switch_fiber(fake, NULL, NULL);
#endif
	running = NULL;
	if (f->done)
		fiber_free(l, f);
}

/* ---- the loop --------------------------------------------------------- */

static void adopt_spawned(struct fiber_loop *l, bool *stopping)
{
	uint64_t n;
	if (read(l->wakefd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		log_warn("fiber loop: eventfd: %s", strerror(errno));
	pthread_mutex_lock(&l->lock);
	struct fiber *list = l->spawned;
	l->spawned = NULL;
	*stopping = l->stopping;
	pthread_mutex_unlock(&l->lock);
	/* the list is newest first: reverse it so fibers start in the order they came */
	struct fiber *in_order = NULL;
	while (list) {
		struct fiber *next = list->next;
		list->next = in_order;
		in_order = list;
		list = next;
	}
	while (in_order) {
		struct fiber *f = in_order;
		in_order = f->next;
		if (!fiber_prepare(l, f)) {
			/* cannot happen short of memory; the fiber's owner learns nothing, so say it */
			log_error("fiber loop: no memory for a fiber's stack; its request is dropped");
			fiber_free(l, f);
			continue;
		}
		make_runnable(l, f);
	}
}

static void *loop_main(void *arg)
{
	struct fiber_loop *l = arg;
	bool stopping = false;
	this_loop = l;
	for (;;) {
		/* run everything runnable, including what those runs make runnable */
		while (l->run_head) {
			struct fiber *f = l->run_head;
			l->run_head = f->next;
			if (!l->run_head)
				l->run_tail = NULL;
			f->next = NULL;
			run_one(l, f);
		}
		pthread_mutex_lock(&l->lock);
		bool idle = l->count == 0 && !l->spawned;
		pthread_mutex_unlock(&l->lock);
		if (stopping && idle)
			break;

		int timeout = -1;
		if (l->n_timers > 0) {
			int64_t wait = l->timers[0]->deadline - monotonic_ns();
			timeout = wait <= 0 ? 0 : (int)((wait + 999999) / 1000000);
		}
		struct epoll_event ev[64];
		int n = epoll_wait(l->epfd, ev, 64, timeout);
		if (n < 0 && errno != EINTR) {
			log_error("fiber loop: epoll_wait: %s", strerror(errno));
			n = 0;
		}
		for (int i = 0; i < n; i++) {
			struct fiber *f = ev[i].data.ptr;
			if (!f) {
				adopt_spawned(l, &stopping);
				continue;
			}
			f->revents = (int)(ev[i].events & (EPOLLIN | EPOLLOUT | EPOLLERR | EPOLLHUP));
			make_runnable(l, f);
		}
		int64_t now = monotonic_ns();
		while (l->n_timers > 0 && l->timers[0]->deadline <= now) {
			struct fiber *f = l->timers[0];
			if (f->queue) { /* out of its wait queue: it timed out */
				struct fiber **p = &f->queue->head, *prev = NULL;
				while (*p && *p != f) {
					prev = *p;
					p = &(*p)->next;
				}
				if (*p)
					*p = f->next;
				if (f->queue->tail == f)
					f->queue->tail = prev;
				f->queue = NULL;
			}
			f->revents = 0;
			make_runnable(l, f);
		}
	}
	return NULL;
}

struct fiber_loop *fiber_loop_start(char *err, size_t errlen)
{
	struct fiber_loop *l = calloc(1, sizeof(*l));
	if (!l) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&l->lock, NULL);
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	l->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
	if (l->epfd < 0 || l->wakefd < 0 || epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->wakefd, &ev) != 0 ||
	    pthread_create(&l->thread, NULL, loop_main, l) != 0) {
		snprintf(err, errlen, "cannot start the fiber loop: %s", strerror(errno));
		if (l->epfd >= 0)
			close(l->epfd);
		if (l->wakefd >= 0)
			close(l->wakefd);
		pthread_mutex_destroy(&l->lock);
		free(l);
		return NULL;
	}
	return l;
}

static void wake_loop(struct fiber_loop *l)
{
	uint64_t one = 1;
	if (write(l->wakefd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_warn("fiber loop: eventfd: %s", strerror(errno));
}

bool fiber_spawn(struct fiber_loop *l, void (*fn)(void *arg), void *arg)
{
	struct fiber *f = calloc(1, sizeof(*f));
	if (!f)
		return false;
	f->fn = fn;
	f->arg = arg;
	f->timer_slot = -1;
	if (this_loop == l) { /* from a fiber of this loop: no hand-over, no wake-up */
		pthread_mutex_lock(&l->lock);
		bool ok = !l->stopping || l->count > 0;
		if (ok)
			l->count++;
		pthread_mutex_unlock(&l->lock);
		if (!ok || !fiber_prepare(l, f)) {
			if (ok)
				fiber_free(l, f);
			else
				free(f);
			return false;
		}
		make_runnable(l, f);
		return true;
	}
	pthread_mutex_lock(&l->lock);
	bool ok = !l->stopping;
	bool first = !l->spawned;
	if (ok) {
		f->next = l->spawned;
		l->spawned = f;
		l->count++;
	}
	pthread_mutex_unlock(&l->lock);
	if (!ok) {
		free(f);
		return false;
	}
	/* one wake-up per batch: the loop takes the whole list when it wakes */
	if (first)
		wake_loop(l);
	return true;
}

int fiber_count(struct fiber_loop *l)
{
	pthread_mutex_lock(&l->lock);
	int n = l->count;
	pthread_mutex_unlock(&l->lock);
	return n;
}

void fiber_loop_stop(struct fiber_loop *l)
{
	if (!l)
		return;
	pthread_mutex_lock(&l->lock);
	l->stopping = true;
	pthread_mutex_unlock(&l->lock);
	wake_loop(l);
	pthread_join(l->thread, NULL);
	for (int i = 0; i < l->n_spare; i++)
		munmap(l->spare[i], FIBER_STACK + (size_t)sysconf(_SC_PAGESIZE));
	free(l->timers);
	close(l->epfd);
	close(l->wakefd);
	pthread_mutex_destroy(&l->lock);
	free(l);
}

bool fiber_current(void)
{
	return running != NULL;
}

/* ---- waiting ---------------------------------------------------------- */

void fiber_set_deadline_ms(int timeout_ms)
{
	if (running)
		running->limit = timeout_ms < 0 ? 0 : monotonic_ns() + (int64_t)timeout_ms * 1000000;
}

int fiber_deadline_left_ms(void)
{
	if (!running || !running->limit)
		return INT_MAX;
	int64_t left = running->limit - monotonic_ns();
	if (left <= 0)
		return 0;
	return left / 1000000 >= INT_MAX ? INT_MAX : (int)((left + 999999) / 1000000);
}

bool fiber_deadline_passed(void)
{
	return fiber_deadline_left_ms() == 0;
}

/* timeout_ms (-1: none) shortened to the running fiber's deadline. */
static int clamp_to_deadline(int timeout_ms)
{
	int left = fiber_deadline_left_ms();
	if (left == INT_MAX)
		return timeout_ms;
	return timeout_ms < 0 || timeout_ms > left ? left : timeout_ms;
}

int fiber_wait_fd(int fd, short events, int timeout_ms)
{
	if (!running) {
		struct pollfd p = {.fd = fd, .events = events};
		int n;
		while ((n = poll(&p, 1, timeout_ms)) < 0 && errno == EINTR)
			;
		return n < 0 ? -1 : n == 0 ? 0 : p.revents;
	}
	struct fiber_loop *l = this_loop;
	struct fiber *f = running;
	struct epoll_event ev = {.events = EPOLLONESHOT, .data.ptr = f};
	timeout_ms = clamp_to_deadline(timeout_ms);
	if (timeout_ms == 0)
		return 0;
	if (events & POLLIN)
		ev.events |= EPOLLIN;
	if (events & POLLOUT)
		ev.events |= EPOLLOUT;
	/* one fiber waits on an fd at a time; the registration outlives the wait (ONESHOT) */
	if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev) != 0 &&
	    (errno != ENOENT || epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) != 0))
		return -1;
	if (timeout_ms >= 0 && !timer_add(l, f, timeout_ms))
		return -1;
	f->revents = 0;
	park();
	if (f->revents == 0) { /* timed out: disarm, so a late event cannot wake us */
		struct epoll_event none = {.events = EPOLLONESHOT, .data.ptr = NULL};
		(void)epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, &none);
	}
	int r = 0;
	if (f->revents & EPOLLIN)
		r |= POLLIN;
	if (f->revents & EPOLLOUT)
		r |= POLLOUT;
	if (f->revents & EPOLLERR)
		r |= POLLERR;
	if (f->revents & EPOLLHUP)
		r |= POLLHUP;
	return r;
}

void fiber_sleep_ms(unsigned ms)
{
	if (!running) {
		struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
		while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
			;
		return;
	}
	int limited = clamp_to_deadline(ms > INT_MAX ? INT_MAX : (int)ms);
	if (limited == 0 && ms > 0) /* the deadline has passed: no sleep (a sleep of 0 still yields) */
		return;
	if (!timer_add(this_loop, running, limited)) {
		/* out of memory for the timer: yield once instead of sleeping */
		make_runnable(this_loop, running);
	}
	park();
}

bool fiber_queue_wait(struct fiber_queue *q, int timeout_ms)
{
	struct fiber_loop *l = this_loop;
	struct fiber *f = running;
	timeout_ms = clamp_to_deadline(timeout_ms);
	if (timeout_ms == 0)
		return false;
	f->woken = false;
	f->queue = q;
	f->next = NULL;
	if (q->tail)
		q->tail->next = f;
	else
		q->head = f;
	q->tail = f;
	if (timeout_ms >= 0 && !timer_add(l, f, timeout_ms))
		timeout_ms = -1; /* no memory for a timer: wait without a limit */
	park();
	return f->woken;
}

bool fiber_queue_wake_one(struct fiber_queue *q)
{
	struct fiber *f = q->head;
	if (!f)
		return false;
	q->head = f->next;
	if (!q->head)
		q->tail = NULL;
	f->queue = NULL;
	f->woken = true;
	make_runnable(this_loop, f);
	return true;
}
