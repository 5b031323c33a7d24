/* load.c - checkout-load: throughput and latency of POST /v1/checkout.
 *
 * Closed loop (default): each of --connections threads keeps one keep-alive
 * connection busy for --duration seconds, sending the next request as soon as
 * the previous answer arrives; this measures the most the server can do.
 *
 * Open loop (--rate R): requests are due at fixed times, R per second in all,
 * and each latency is measured from the time the request was DUE, not from
 * when a connection became free to send it. A stalled server therefore shows
 * up as latency for every request that should have been sent meanwhile
 * (no coordinated omission, as in wrk2).
 *
 * Carts (--mix): uniform (1 item of one of --skus SKUs, uniformly), hot (1
 * item, always --hot-sku), multi (2-5 distinct SKUs, 1-3 units each).
 *
 * While it runs a progress line per second goes to stderr; at the end the
 * results go to stdout, and optionally to --json and a gnuplot --plot.
 */
#include "client.h"
#include "hist.h"

#include "checkout/log.h"
#include "checkout/monotonic.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define LOAD_MAX_CONNECTIONS 1024
#define LOAD_MAX_SECONDS 3600
#define LOAD_STATUS_MAX 600 /* statuses 100..599; index 0 = transport error */
#define LOAD_SAMPLE 200

enum load_mix { MIX_UNIFORM, MIX_HOT, MIX_MULTI };
static const char *const mix_names[] = {"uniform", "hot", "multi"};

struct load_options {
	char url[512];
	char path[256];
	int connections;
	int threads;
	int duration;
	int warmup;
	double rate; /* 0: closed loop */
	int mix;     /* enum load_mix */
	int skus;
	char hot_sku[64];
	char json_path[512];
	char plot_path[512];
	char label[128];
	bool quiet;
};

/* what a thread counts while it runs; the main thread reads the atomics for the progress line */
struct load_thread {
	pthread_t tid;
	int index;
	const struct load_options *opt;
	struct load_conn *conns; /* this thread's share of the connections */
	int nconns;
	uint64_t rng;
	atomic_ulong done;    /* responses (and transport errors) recorded */
	atomic_ulong created; /* 201s recorded */
	atomic_ulong server_errors;
	atomic_ulong transport_errors;
	unsigned long status[LOAD_STATUS_MAX];
	char sample[LOAD_STATUS_MAX / 100][LOAD_SAMPLE]; /* first body per status class */
	struct hist hist;
};

/* One keep-alive connection, driven by its thread's epoll loop. */
struct load_conn {
	int fd;		 /* -1 while not connected */
	bool busy;	 /* a request is in flight */
	int64_t due_ns;	 /* when the request in flight was due */
	int64_t wait_ns; /* closed loop, after a failure: no new request before this */
	unsigned long connects;
	size_t out_len, out_sent;
	char out[2048];
	size_t in_len;
	char in[CLIENT_MAX_HEADER + 16384 + 1];
};

/* Open loop: due times that found no idle connection, oldest first. */
struct load_backlog {
	int64_t *due;
	size_t head, tail, cap;
};

/* shared by all threads */
static struct {
	char host[256];
	char port[16];
	int threads;
	int64_t start_ns;  /* when the run started (monotonic) */
	int64_t record_ns; /* results are recorded from here (after the warm-up) */
	int64_t end_ns;
	double interval_ns; /* open loop: time between two due requests */
	atomic_ulong customer;
	atomic_bool stop;
} run;

static void sleep_until_ns(int64_t t)
{
	struct timespec ts = {.tv_sec = t / 1000000000, .tv_nsec = t % 1000000000};
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

/* xorshift64*: per-thread, fast, good enough to pick SKUs */
static uint64_t rng_next(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 2685821657736338717ULL;
}

static unsigned rng_below(uint64_t *s, unsigned n)
{
	return (unsigned)((rng_next(s) >> 32) * n >> 32);
}

/* Write the JSON body of one checkout into buf; returns its length (0 if it does not fit). */
static size_t cart_body(struct load_thread *t, char *buf, size_t buflen)
{
	const struct load_options *o = t->opt;
	unsigned long customer = atomic_fetch_add_explicit(&run.customer, 1, memory_order_relaxed);
	int n = snprintf(buf, buflen,
			 "{\"customer_id\": \"load-%lu\", \"email\": \"load@example.com\", \"items\": [",
			 customer);
	if (n < 0 || (size_t)n >= buflen)
		return 0;
	size_t len = (size_t)n;

	unsigned picked[5];
	unsigned count = 1;
	if (o->mix == MIX_MULTI)
		count = 2 + rng_below(&t->rng, 4);
	for (unsigned i = 0; i < count; i++) {
		char sku[80];
		unsigned qty = 1;
		if (o->mix == MIX_HOT) {
			snprintf(sku, sizeof(sku), "%s", o->hot_sku);
		} else {
			unsigned s;
			bool dup;
			do { /* a cart lists a SKU once */
				s = rng_below(&t->rng, (unsigned)o->skus);
				dup = false;
				for (unsigned j = 0; j < i; j++)
					dup = dup || picked[j] == s;
			} while (dup);
			picked[i] = s;
			snprintf(sku, sizeof(sku), "sku-%05u", s);
			if (o->mix == MIX_MULTI)
				qty = 1 + rng_below(&t->rng, 3);
		}
		n = snprintf(buf + len, buflen - len, "%s{\"sku\": \"%s\", \"quantity\": %u}", i ? ", " : "",
			     sku, qty);
		if (n < 0 || (size_t)n >= buflen - len)
			return 0;
		len += (size_t)n;
	}
	n = snprintf(buf + len, buflen - len, "]}");
	if (n < 0 || (size_t)n >= buflen - len)
		return 0;
	return len + (size_t)n;
}

/* Count one outcome; into the results when it was due at or after the warm-up. */
static void record(struct load_thread *t, int64_t due_ns, int status, const char *sample)
{
	int64_t done_ns = monotonic_ns();
	/* the progress counters include the warm-up, the results do not */
	if (status == 201)
		atomic_fetch_add_explicit(&t->created, 1, memory_order_relaxed);
	else if (status >= 500)
		atomic_fetch_add_explicit(&t->server_errors, 1, memory_order_relaxed);
	else if (status == 0)
		atomic_fetch_add_explicit(&t->transport_errors, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&t->done, 1, memory_order_relaxed);
	if (due_ns < run.record_ns)
		return;
	int64_t us = (done_ns - due_ns) / 1000;
	hist_record(&t->hist, us > 0 ? (uint64_t)us : 0);
	t->status[status]++;
	char *first = t->sample[status / 100];
	if (status != 201 && first[0] == '\0')
		snprintf(first, LOAD_SAMPLE, "%d %.180s", status,
			 status && sample ? sample : "(transport error)");
}

static void conn_close(int epfd, struct load_conn *c)
{
	if (c->fd >= 0) {
		epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
		close(c->fd);
	}
	c->fd = -1;
	c->in_len = 0;
}

/* A request failed in transport: count it, drop the connection, pause the closed loop briefly. */
static void conn_fail(struct load_thread *t, int epfd, struct load_conn *c)
{
	record(t, c->due_ns, 0, NULL);
	conn_close(epfd, c);
	c->busy = false;
	c->wait_ns = monotonic_ns() + 10 * 1000000; /* the server is down or refusing: do not spin */
}

/* Send the rest of the request; wait for writability when the socket is full. */
static void conn_flush(struct load_thread *t, int epfd, struct load_conn *c)
{
	while (c->out_sent < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_sent, c->out_len - c->out_sent, MSG_NOSIGNAL);
		if (n > 0) {
			c->out_sent += (size_t)n;
		} else if (n < 0 && errno == EINTR) {
			continue;
		} else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
			epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
			return;
		} else {
			conn_fail(t, epfd, c);
			return;
		}
	}
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
	epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Start a checkout that was due at due_ns on an idle connection. */
static void conn_start(struct load_thread *t, int epfd, struct load_conn *c, int64_t due_ns)
{
	char body[1024];
	size_t len = cart_body(t, body, sizeof(body));
	c->busy = true;
	c->due_ns = due_ns;
	c->out_len = client_format_post(c->out, sizeof(c->out), run.host, run.port, t->opt->path, body, len);
	c->out_sent = 0;
	if (c->fd < 0) {
		c->fd = client_connect(run.host, run.port);
		if (c->fd < 0) {
			conn_fail(t, epfd, c);
			return;
		}
		c->connects++;
		c->in_len = 0;
		struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
		if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
			conn_fail(t, epfd, c);
			return;
		}
	}
	conn_flush(t, epfd, c);
}

/* Read what arrived; returns true when a response completed (the connection is idle again). */
static bool conn_read(struct load_thread *t, int epfd, struct load_conn *c)
{
	for (;;) {
		size_t room = sizeof(c->in) - 1 - c->in_len;
		if (room == 0) {
			conn_fail(t, epfd, c); /* a response larger than we accept */
			return true;
		}
		ssize_t n = recv(c->fd, c->in + c->in_len, room, 0);
		if (n > 0) {
			c->in_len += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		/* closed or broken: a failure if a response was still owed */
		if (c->busy) {
			conn_fail(t, epfd, c);
			return true;
		}
		conn_close(epfd, c);
		return false;
	}
	if (!c->busy)
		return false;
	c->in[c->in_len] = '\0';
	int status = 0;
	bool close_after = false;
	char sample[LOAD_SAMPLE];
	long used = client_parse_response(c->in, c->in_len, &status, &close_after, sample, sizeof(sample));
	if (used == 0)
		return false;
	if (used < 0) {
		conn_fail(t, epfd, c);
		return true;
	}
	record(t, c->due_ns, status, sample);
	c->busy = false;
	memmove(c->in, c->in + used, c->in_len - (size_t)used);
	c->in_len -= (size_t)used;
	if (close_after)
		conn_close(epfd, c);
	return true;
}

static bool backlog_push(struct load_backlog *b, int64_t due)
{
	if (b->tail == b->cap) {
		if (b->head > 0) {
			memmove(b->due, b->due + b->head, (b->tail - b->head) * sizeof(*b->due));
			b->tail -= b->head;
			b->head = 0;
		} else {
			size_t cap = b->cap ? b->cap * 2 : 1024;
			int64_t *grown = realloc(b->due, cap * sizeof(*grown));
			if (!grown)
				return false;
			b->due = grown;
			b->cap = cap;
		}
	}
	b->due[b->tail++] = due;
	return true;
}

/*
 * One thread: its connections, in an epoll loop. Closed loop: a connection
 * sends its next checkout as soon as the answer to the last one is in.
 * Open loop: the thread's share of the due times (every threads-th one) goes
 * to an idle connection, or waits in the backlog for the next one to free up.
 */
static void *load_thread_main(void *arg)
{
	struct load_thread *t = arg;
	struct load_backlog backlog = {0};
	bool open_loop = run.interval_ns > 0;
	unsigned long ticket = (unsigned long)t->index;
	int64_t next_due = open_loop ? run.start_ns + (int64_t)((double)ticket * run.interval_ns) : 0;
	bool scheduling = true;
	int epfd = epoll_create1(EPOLL_CLOEXEC);
	/* wake-ups at the due times to the microsecond (epoll_wait's own timeout is in ms) */
	int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	struct epoll_event tev = {.events = EPOLLIN, .data.ptr = NULL};
	if (epfd < 0 || tfd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, tfd, &tev) != 0) {
		log_error("epoll/timerfd: %s", strerror(errno));
		if (epfd >= 0)
			close(epfd);
		if (tfd >= 0)
			close(tfd);
		return NULL;
	}

	sleep_until_ns(run.start_ns); /* every thread starts together, when the clock starts */
	for (;;) {
		int64_t now = monotonic_ns();
		if (atomic_load(&run.stop))
			break;
		if (now >= run.end_ns)
			scheduling = false;
		/* hand out what is due */
		int busy = 0;
		int64_t wake = now + 100 * 1000000;
		if (open_loop) {
			while (scheduling && next_due <= now) {
				if (next_due >= run.end_ns) {
					scheduling = false;
					break;
				}
				if (!backlog_push(&backlog, next_due)) {
					log_error("out of memory for the open-loop backlog");
					atomic_store(&run.stop, true);
					break;
				}
				ticket += (unsigned long)run.threads;
				next_due = run.start_ns + (int64_t)((double)ticket * run.interval_ns);
			}
			if (scheduling && next_due < wake)
				wake = next_due;
		}
		for (int i = 0; i < t->nconns; i++) {
			struct load_conn *c = &t->conns[i];
			if (!c->busy) {
				if (open_loop && backlog.head < backlog.tail)
					conn_start(t, epfd, c, backlog.due[backlog.head++]);
				else if (!open_loop && scheduling && c->wait_ns <= now)
					conn_start(t, epfd, c, now);
				else if (!open_loop && scheduling && c->wait_ns < wake)
					wake = c->wait_ns;
			}
			busy += c->busy;
		}
		bool more = open_loop ? scheduling || backlog.head < backlog.tail : scheduling;
		if (!busy && !more)
			break;

		struct epoll_event events[64];
		struct itimerspec its = {
		    .it_value = {.tv_sec = wake / 1000000000, .tv_nsec = wake % 1000000000}};
		if (wake <= now)
			its.it_value =
			    (struct timespec){.tv_sec = 0, .tv_nsec = 1}; /* at once (0 would disarm) */
		timerfd_settime(tfd, wake <= now ? 0 : TFD_TIMER_ABSTIME, &its, NULL);
		int n = epoll_wait(epfd, events, 64, 200);
		if (n < 0 && errno != EINTR) {
			log_error("epoll_wait: %s", strerror(errno));
			break;
		}
		for (int i = 0; i < n; i++) {
			struct load_conn *c = events[i].data.ptr;
			if (!c) { /* the timer */
				uint64_t expirations;
				if (read(tfd, &expirations, sizeof(expirations)) < 0 && errno != EAGAIN)
					log_debug("timerfd: %s", strerror(errno));
				continue;
			}
			if (c->fd < 0)
				continue;
			if ((events[i].events & EPOLLOUT) && c->busy && c->out_sent < c->out_len)
				conn_flush(t, epfd, c);
			if (c->fd >= 0 && (events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
				conn_read(t, epfd, c);
		}
	}
	for (int i = 0; i < t->nconns; i++)
		conn_close(epfd, &t->conns[i]);
	close(tfd);
	close(epfd);
	free(backlog.due);
	return NULL;
}

static void on_signal(int sig)
{
	(void)sig;
	atomic_store(&run.stop, true);
}

/* ---- options ---- */

struct load_flag {
	const char *name;
	const char *arg; /* NULL: no argument */
	const char *help;
};

static const struct load_flag flags[] = {
    {"url", "URL", "server base URL (default http://127.0.0.1:8080)"},
    {"connections", "N", "keep-alive connections (default 32)"},
    {"threads", "N", "epoll threads the connections are spread over (default: one per core)"},
    {"duration", "SECONDS", "how long to send requests (default 10)"},
    {"warmup", "SECONDS", "leave out the first seconds from the results (default 0)"},
    {"rate", "PER_SECOND", "open loop: this many requests per second in all (default 0: closed loop)"},
    {"mix", "MIX", "carts: uniform, hot or multi (default uniform)"},
    {"skus", "N", "SKUs sku-00000.. to choose from (default 10000)"},
    {"hot-sku", "SKU", "the SKU of the hot mix (default sku-hot)"},
    {"json", "FILE", "write the results as JSON"},
    {"plot", "FILE", "draw the latency distribution and throughput (.png or .svg) with gnuplot"},
    {"label", "TEXT", "a name for the run, in the JSON and the plot title"},
    {"quiet", NULL, "no progress line"},
    {"help", NULL, "print this help"},
    {NULL, NULL, NULL},
};

static void usage(FILE *f)
{
	fprintf(f, "usage: checkout-load [options]\n"
		   "Load POST /v1/checkout and report throughput, outcomes and latency.\n\n");
	for (const struct load_flag *fl = flags; fl->name; fl++) {
		char left[64];
		snprintf(left, sizeof(left), "--%s%s%s", fl->name, fl->arg ? " " : "",
			 fl->arg ? fl->arg : "");
		fprintf(f, "  %-26s %s\n", left, fl->help);
	}
}

static bool parse_int(const char *s, int min, int max, int *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		return false;
	*out = (int)v;
	return true;
}

/* Fill o from argv. Returns 0 to run, 1 on a problem (printed), 2 after --help. */
static int parse_options(int argc, char **argv, struct load_options *o)
{
	struct option longopts[sizeof(flags) / sizeof(flags[0])];
	int n = 0;
	for (const struct load_flag *fl = flags; fl->name; fl++, n++)
		longopts[n] = (struct option){fl->name, fl->arg ? required_argument : no_argument, NULL, n};
	longopts[n] = (struct option){0};

	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	*o = (struct load_options){
	    .connections = 32, .threads = cores > 0 ? (int)cores : 1, .duration = 10, .skus = 10000};
	snprintf(o->url, sizeof(o->url), "http://127.0.0.1:8080");
	snprintf(o->hot_sku, sizeof(o->hot_sku), "sku-hot");

	int c;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		if (c == '?' || c < 0 || c >= n) {
			fprintf(stderr, "checkout-load: unknown option or missing value: %s\n",
				argv[optind - 1]);
			return 1;
		}
		const char *name = flags[c].name;
		bool ok = true;
		if (!strcmp(name, "url"))
			ok = snprintf(o->url, sizeof(o->url), "%s", optarg) < (int)sizeof(o->url);
		else if (!strcmp(name, "connections"))
			ok = parse_int(optarg, 1, LOAD_MAX_CONNECTIONS, &o->connections);
		else if (!strcmp(name, "threads"))
			ok = parse_int(optarg, 1, LOAD_MAX_CONNECTIONS, &o->threads);
		else if (!strcmp(name, "duration"))
			ok = parse_int(optarg, 1, LOAD_MAX_SECONDS, &o->duration);
		else if (!strcmp(name, "warmup"))
			ok = parse_int(optarg, 0, LOAD_MAX_SECONDS, &o->warmup);
		else if (!strcmp(name, "rate")) {
			char *end;
			o->rate = strtod(optarg, &end);
			ok = end != optarg && !*end && o->rate >= 0 && o->rate <= 1e7;
		} else if (!strcmp(name, "mix")) {
			ok = false;
			for (int i = 0; i < 3; i++)
				if (!strcmp(optarg, mix_names[i])) {
					o->mix = i;
					ok = true;
				}
		} else if (!strcmp(name, "skus"))
			ok = parse_int(optarg, 5, 100000, &o->skus);
		else if (!strcmp(name, "hot-sku"))
			ok = *optarg && strlen(optarg) < sizeof(o->hot_sku) && !strpbrk(optarg, "\"\\") &&
			     snprintf(o->hot_sku, sizeof(o->hot_sku), "%s", optarg) > 0;
		else if (!strcmp(name, "json"))
			ok = snprintf(o->json_path, sizeof(o->json_path), "%s", optarg) <
			     (int)sizeof(o->json_path);
		else if (!strcmp(name, "plot"))
			ok = snprintf(o->plot_path, sizeof(o->plot_path), "%s", optarg) <
			     (int)sizeof(o->plot_path);
		else if (!strcmp(name, "label"))
			ok = snprintf(o->label, sizeof(o->label), "%s", optarg) < (int)sizeof(o->label) &&
			     !strpbrk(optarg, "\"\\");
		else if (!strcmp(name, "quiet"))
			o->quiet = true;
		else if (!strcmp(name, "help")) {
			usage(stdout);
			return 2;
		}
		if (!ok) {
			fprintf(stderr, "checkout-load: bad value for --%s: %s\n", name, optarg);
			return 1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "checkout-load: unexpected argument: %s\n", argv[optind]);
		return 1;
	}
	if (o->warmup >= o->duration) {
		fprintf(stderr, "checkout-load: --warmup must be shorter than --duration\n");
		return 1;
	}
	if (!o->label[0])
		snprintf(o->label, sizeof(o->label), "%s %s c=%d", mix_names[o->mix],
			 o->rate > 0 ? "open" : "closed", o->connections);
	return 0;
}

/* ---- results ---- */

struct load_result {
	struct hist hist;
	unsigned long status[LOAD_STATUS_MAX];
	unsigned long requests, created, server_errors, transport_errors, connects;
	double seconds; /* the recorded part of the run */
	/* progress, one entry per second of the whole run */
	int points;
	unsigned long per_second_done[LOAD_MAX_SECONDS + 1];
	unsigned long per_second_created[LOAD_MAX_SECONDS + 1];
};

static const double reported_pcts[] = {50, 90, 99, 99.9};
static const char *const reported_names[] = {"p50", "p90", "p99", "p99.9"};

static void print_results(const struct load_options *o, const struct load_result *r,
			  struct load_thread *threads)
{
	const struct hist *h = &r->hist;
	printf("checkout-load: %s, %s, %d connections, %.1f s recorded%s\n", o->label, mix_names[o->mix],
	       o->connections, r->seconds, o->warmup ? " (after warm-up)" : "");
	if (o->rate > 0)
		printf("  open loop at %.0f requests/s (latency from the due time)\n", o->rate);
	printf("  requests/s   %10.1f\n", (double)r->requests / r->seconds);
	printf("  201/s        %10.1f\n", (double)r->created / r->seconds);
	printf("  outcomes    ");
	if (r->status[0])
		printf(" transport-error: %lu", r->status[0]);
	for (int s = 100; s < LOAD_STATUS_MAX; s++)
		if (r->status[s])
			printf(" %d: %lu", s, r->status[s]);
	printf("\n  latency ms   p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f  mean %.2f\n",
	       (double)hist_percentile(h, 50) / 1000.0, (double)hist_percentile(h, 90) / 1000.0,
	       (double)hist_percentile(h, 99) / 1000.0, (double)hist_percentile(h, 99.9) / 1000.0,
	       (double)hist_percentile(h, 100) / 1000.0, hist_mean(h) / 1000.0);
	/* one example body per failing status class helps explain the numbers */
	for (int cls = 0; cls < LOAD_STATUS_MAX / 100; cls++) {
		if (cls == 2)
			continue;
		for (int i = 0; i < run.threads; i++)
			if (threads[i].sample[cls][0]) {
				printf("  first %dxx: %s\n", cls, threads[i].sample[cls]);
				break;
			}
	}
	fflush(stdout);
}

static json_t *results_json(const struct load_options *o, const struct load_result *r)
{
	const struct hist *h = &r->hist;
	json_t *status = json_object();
	for (int s = 0; s < LOAD_STATUS_MAX; s++)
		if (r->status[s]) {
			char key[16];
			snprintf(key, sizeof(key), "%d", s);
			json_object_set_new(status, s ? key : "transport_error",
					    json_integer((json_int_t)r->status[s]));
		}
	json_t *lat = json_object();
	for (size_t i = 0; i < sizeof(reported_pcts) / sizeof(reported_pcts[0]); i++)
		json_object_set_new(lat, reported_names[i],
				    json_integer((json_int_t)hist_percentile(h, reported_pcts[i])));
	json_object_set_new(lat, "max", json_integer((json_int_t)hist_percentile(h, 100)));
	json_object_set_new(lat, "min", json_integer(h->count ? (json_int_t)h->min : 0));
	json_object_set_new(lat, "mean", json_real(hist_mean(h)));

	/* the percentile spectrum, for plots: one point per non-empty bucket */
	json_t *spectrum = json_array();
	uint64_t seen = 0;
	for (unsigned i = 0; i < HIST_BUCKETS && h->count; i++) {
		if (!h->buckets[i])
			continue;
		seen += h->buckets[i];
		uint64_t high = hist_bucket_high(i);
		json_array_append_new(spectrum, json_pack("[f, I]", 100.0 * (double)seen / (double)h->count,
							  (json_int_t)(high < h->max ? high : h->max)));
	}
	json_t *seconds = json_array();
	for (int s = 0; s < r->points; s++)
		json_array_append_new(seconds, json_pack("{s:i, s:I, s:I}", "second", s + 1, "responses",
							 (json_int_t)r->per_second_done[s], "created",
							 (json_int_t)r->per_second_created[s]));

	return json_pack(
	    "{s:s, s:s, s:s, s:s, s:i, s:i, s:i, s:f, s:i, s:f, s:I, s:I, s:I, s:I, s:I, s:f, s:f, "
	    "s:o, s:o, s:o, s:o}",
	    "label", o->label, "url", o->url, "mix", mix_names[o->mix], "loop",
	    o->rate > 0 ? "open" : "closed", "connections", o->connections, "duration_s", o->duration,
	    "warmup_s", o->warmup, "rate", o->rate, "skus", o->skus, "seconds", r->seconds, "requests",
	    (json_int_t)r->requests, "created", (json_int_t)r->created, "server_errors",
	    (json_int_t)r->server_errors, "transport_errors", (json_int_t)r->transport_errors, "connects",
	    (json_int_t)r->connects, "requests_per_s", (double)r->requests / r->seconds, "created_per_s",
	    (double)r->created / r->seconds, "status", status, "latency_us", lat, "spectrum", spectrum,
	    "per_second", seconds);
}

/* Draw the percentile spectrum and the throughput per second with gnuplot. */
static bool plot_results(const struct load_options *o, const struct load_result *r)
{
	char data[] = "/tmp/checkout-load-XXXXXX";
	bool ok = false;
	FILE *gp = NULL;
	int fd = mkstemp(data);
	if (fd < 0)
		goto out;
	FILE *df = fdopen(fd, "w");
	if (!df) {
		close(fd);
		goto out;
	}
	/* block 0: x = 1/(1-p) (so 99 % is 100), y = latency ms; block 1: second, responses/s */
	uint64_t seen = 0;
	const struct hist *h = &r->hist;
	for (unsigned i = 0; i < HIST_BUCKETS && h->count; i++) {
		if (!h->buckets[i])
			continue;
		seen += h->buckets[i];
		double p = (double)seen / (double)h->count;
		uint64_t high = hist_bucket_high(i);
		double x = p >= 1.0 ? 1e6 : 1.0 / (1.0 - p);
		fprintf(df, "%g %g\n", x > 1e6 ? 1e6 : x, (double)(high < h->max ? high : h->max) / 1000.0);
	}
	fprintf(df, "\n\n");
	for (int s = 0; s < r->points; s++)
		fprintf(df, "%d %lu %lu\n", s + 1, r->per_second_done[s], r->per_second_created[s]);
	fclose(df);

	size_t plen = strlen(o->plot_path);
	bool svg = plen > 4 && !strcmp(o->plot_path + plen - 4, ".svg");
	gp = popen("gnuplot", "w");
	if (!gp)
		goto out;
	fprintf(gp,
		"set terminal %s size 1000,700\n"
		"set output '%s'\n"
		"set multiplot layout 2,1 title '%s'\n"
		"set logscale x\n"
		"set xrange [1:%g]\n"
		"set xtics ('0%%%%' 1, '50%%%%' 2, '90%%%%' 10, '99%%%%' 100, '99.9%%%%' 1000, '99.99%%%%' "
		"10000, "
		"'99.999%%%%' 100000)\n"
		"set xlabel 'percentile'\nset ylabel 'latency (ms)'\nset grid\n"
		"plot '%s' index 0 using 1:2 with steps lw 2 title 'latency'\n"
		"unset logscale x\nset xrange [*:*]\nset xtics autofreq\n"
		"set xlabel 'second'\nset ylabel 'per second'\nset yrange [0:*]\nset key bottom right\n"
		"plot '%s' index 1 using 1:2 with lines lw 2 title 'responses', "
		"'' index 1 using 1:3 with lines lw 2 title '201'\n"
		"unset multiplot\n",
		svg ? "svg" : "png", o->plot_path, o->label, h->count > 100000 ? 1e6 : 1e5, data, data);
	ok = pclose(gp) == 0;
out:
	if (fd >= 0)
		unlink(data);
	if (!ok)
		log_warn("could not draw %s with gnuplot", o->plot_path);
	return ok;
}

static void progress(const struct load_options *o, struct load_thread *threads, struct load_result *r,
		     int second, bool tty)
{
	unsigned long done = 0, created = 0, s5 = 0, terr = 0;
	for (int i = 0; i < run.threads; i++) {
		done += atomic_load_explicit(&threads[i].done, memory_order_relaxed);
		created += atomic_load_explicit(&threads[i].created, memory_order_relaxed);
		s5 += atomic_load_explicit(&threads[i].server_errors, memory_order_relaxed);
		terr += atomic_load_explicit(&threads[i].transport_errors, memory_order_relaxed);
	}
	unsigned long prev_done = 0, prev_created = 0;
	for (int s = 0; s < r->points; s++) {
		prev_done += r->per_second_done[s];
		prev_created += r->per_second_created[s];
	}
	if (r->points <= LOAD_MAX_SECONDS) {
		r->per_second_done[r->points] = done - prev_done;
		r->per_second_created[r->points] = created - prev_created;
		r->points++;
	}
	if (o->quiet)
		return;
	fprintf(stderr, "%s[%3d/%ds] %7lu req/s  total %lu  201 %lu  other %lu  5xx %lu  transport %lu%s",
		tty ? "\r" : "", second, o->duration, done - prev_done, done, created,
		done - created - s5 - terr, s5, terr, tty ? "  " : "\n");
	fflush(stderr);
}

int main(int argc, char **argv)
{
	struct load_options opt;
	struct load_thread *threads = NULL;
	struct load_conn *conns = NULL;
	struct load_result *res = NULL;
	json_t *json = NULL;
	int started = 0;
	int rc = 1;

	log_init("load", LOG_INFO, LOG_FORMAT_TEXT);
	int pr = parse_options(argc, argv, &opt);
	if (pr)
		return pr == 2 ? 0 : 1;

	char host[256], port[16];
	if (!client_parse_url(opt.url, host, sizeof(host), port, sizeof(port))) {
		log_error("--url must look like http://host:port, not %s", opt.url);
		goto out;
	}
	snprintf(opt.path, sizeof(opt.path), "/v1/checkout");

	snprintf(run.host, sizeof(run.host), "%s", host);
	snprintf(run.port, sizeof(run.port), "%s", port);
	run.threads = opt.threads < opt.connections ? opt.threads : opt.connections;
	threads = calloc((size_t)run.threads, sizeof(*threads));
	conns = calloc((size_t)opt.connections, sizeof(*conns));
	res = calloc(1, sizeof(*res));
	if (!threads || !conns || !res) {
		log_error("out of memory");
		goto out;
	}
	signal(SIGPIPE, SIG_IGN);
	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	uint64_t seed = (uint64_t)monotonic_ns() ^ ((uint64_t)getpid() << 32);
	run.start_ns = monotonic_ns() + 20000000; /* 20 ms for the threads to start */
	run.record_ns = run.start_ns + (int64_t)opt.warmup * 1000000000;
	run.end_ns = run.start_ns + (int64_t)opt.duration * 1000000000;
	run.interval_ns = opt.rate > 0 ? 1e9 / opt.rate : 0;
	for (int i = 0; i < opt.connections; i++)
		conns[i].fd = -1;
	for (int i = 0; i < run.threads; i++) {
		struct load_thread *t = &threads[i];
		t->index = i;
		t->opt = &opt;
		t->rng = seed + 0x9E3779B97F4A7C15ULL * (uint64_t)(i + 1);
		/* connections split as evenly as they go */
		int first = (int)((long)opt.connections * i / run.threads);
		t->conns = conns + first;
		t->nconns = (int)((long)opt.connections * (i + 1) / run.threads) - first;
		hist_reset(&t->hist);
		if (pthread_create(&t->tid, NULL, load_thread_main, t) != 0) {
			log_error("could not start thread %d", i);
			atomic_store(&run.stop, true);
			break;
		}
		started++;
	}

	bool tty = isatty(STDERR_FILENO);
	sleep_until_ns(run.start_ns);
	for (int s = 1; s <= opt.duration && !atomic_load(&run.stop); s++) {
		sleep_until_ns(run.start_ns + (int64_t)s * 1000000000);
		progress(&opt, threads, res, s, tty);
	}
	if (!opt.quiet && tty)
		fprintf(stderr, "\n");
	for (int i = 0; i < started; i++)
		pthread_join(threads[i].tid, NULL);
	int64_t finished = monotonic_ns();

	hist_reset(&res->hist);
	for (int i = 0; i < started; i++) {
		struct load_thread *t = &threads[i];
		hist_merge(&res->hist, &t->hist);
		for (int s = 0; s < LOAD_STATUS_MAX; s++)
			res->status[s] += t->status[s];
	}
	for (int i = 0; i < opt.connections; i++)
		res->connects += conns[i].connects;
	res->created = res->status[201];
	res->transport_errors = res->status[0];
	for (int s = 500; s < LOAD_STATUS_MAX; s++)
		res->server_errors += res->status[s];
	res->requests = res->hist.count;
	/* closed loop: the recorded window; open loop: until the last late answer came */
	int64_t end = opt.rate > 0 && finished > run.end_ns ? finished : run.end_ns;
	if (atomic_load(&run.stop) && finished < end)
		end = finished;
	res->seconds = (double)(end - run.record_ns) / 1e9;
	if (res->seconds <= 0)
		res->seconds = 1e-9;

	print_results(&opt, res, threads);
	if (opt.json_path[0]) {
		json = results_json(&opt, res);
		if (!json || json_dump_file(json, opt.json_path, JSON_INDENT(2)) != 0) {
			log_error("could not write %s", opt.json_path);
			goto out;
		}
	}
	if (opt.plot_path[0])
		(void)plot_results(&opt, res);
	rc = res->requests > 0 && res->transport_errors < res->requests ? 0 : 1;
	if (rc)
		log_error("no request got an HTTP response");
out:
	json_decref(json);
	free(res);
	free(conns);
	free(threads);
	return rc;
}
