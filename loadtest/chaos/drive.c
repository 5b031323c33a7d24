/* drive.c - checkouts at a steady rate, each retried until it gets a final answer.
 *
 * A logical order is one cart with its own Idempotency-Key (the key is also
 * the local part of the order's email, so the database can be asked how
 * many orders a key made). Every 1/rate seconds a new one starts; an attempt
 * that ends in a transport error, a 5xx or 409 idempotency-key-in-use is
 * tried again with the same key and body: after the Retry-After the server
 * sent, else after a jittered backoff (100 ms doubling to 2 s). The final
 * answers are 201 (the order id comes from the body, whether or not the
 * answer is an Idempotent-Replayed replay) and the other 4xx; an order with
 * no final answer retry_seconds after its first try is given up.
 *
 * One thread and libcurl's multi interface: during an outage thousands of
 * orders may be waiting, but at most max_inflight attempts are on the wire,
 * like a client's connection pool.
 *
 * Output, one tab-separated line per order when it ends:
 *   key first final attempts status problem order_id replayed
 * times in Unix seconds, status 0 when given up, "-" for an empty field.
 */
#define _GNU_SOURCE
#include "chaos.h"

#include <curl/curl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "checkout/log.h"

#define BACKOFF_FIRST 0.1
#define BACKOFF_MAX 2.0
#define RETRY_AFTER_MAX 30.0

struct order {
	char key[48];
	char body[512];
	double first, due;
	int attempts, failures;
	bool inflight, done;
};

struct attempt {
	struct order *o;
	CURL *easy;
	struct curl_slist *headers;
	char *resp;
	size_t resp_len;
	double retry_after; /* < 0: none sent */
	bool replayed;
};

struct driver {
	const struct chaos_drive_opts *opts;
	FILE *out;
	CURLM *multi;
	char url[512];
	struct order **pending; /* not done, in start order */
	size_t n_pending, cap_pending;
	int inflight;
	unsigned long started, finished, gave_up;
	unsigned rng;
};

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static unsigned next_rand(struct driver *d)
{
	d->rng = d->rng * 1103515245u + 12345u;
	return (d->rng >> 8) & 0xffffff;
}

/* A cart of 1 to 3 distinct products, 1 or 2 units each. */
static void order_make(struct driver *d, struct order *o, unsigned long seq)
{
	size_t n_products = 0;
	while (chaos_catalogue[n_products].sku)
		n_products++;
	snprintf(o->key, sizeof(o->key), "%s-%06lu", d->opts->key_prefix, seq);
	int items = 1 + (int)(next_rand(d) % 3);
	size_t first = next_rand(d) % n_products;
	size_t step = 1 + next_rand(d) % (n_products - 1); /* distinct while items < n_products */
	int len = snprintf(o->body, sizeof(o->body), "{\"customer_id\":\"cust-%u\",\"email\":\"%s@chaos.example\",\"items\":[",
			   next_rand(d) % 300, o->key);
	for (int i = 0; i < items; i++) {
		size_t k = (first + (size_t)i * step) % n_products;
		if (i > 0 && k == first)
			break;
		len += snprintf(o->body + len, sizeof(o->body) - (size_t)len, "%s{\"sku\":\"%s\",\"quantity\":%u}",
				i ? "," : "", chaos_catalogue[k].sku, 1 + next_rand(d) % 2);
	}
	snprintf(o->body + len, sizeof(o->body) - (size_t)len, "]}");
}

static void order_write(struct driver *d, const struct order *o, double final, long status, const char *problem,
			const char *order_id, bool replayed)
{
	fprintf(d->out, "%s\t%.6f\t%.6f\t%d\t%ld\t%s\t%s\t%d\n", o->key, o->first, final, o->attempts, status,
		problem && *problem ? problem : "-", order_id && *order_id ? order_id : "-", replayed);
	fflush(d->out);
}

static void order_finish(struct driver *d, struct order *o)
{
	o->done = true;
	d->finished++;
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct attempt *a = userdata;
	size_t n = size * nmemb;
	char *grown = realloc(a->resp, a->resp_len + n + 1);
	if (!grown)
		return 0;
	memcpy(grown + a->resp_len, ptr, n);
	a->resp = grown;
	a->resp_len += n;
	a->resp[a->resp_len] = '\0';
	return n;
}

static size_t on_header(char *buf, size_t size, size_t nitems, void *userdata)
{
	struct attempt *a = userdata;
	size_t n = size * nitems;
	if (n > 12 && !strncasecmp(buf, "Retry-After:", 12))
		a->retry_after = strtod(buf + 12, NULL);
	else if (n > 20 && !strncasecmp(buf, "Idempotent-Replayed:", 20))
		a->replayed = strstr(buf + 20, "true") != NULL;
	return n;
}

static bool attempt_start(struct driver *d, struct order *o)
{
	struct attempt *a = calloc(1, sizeof(*a));
	char key_header[96];
	if (!a)
		return false;
	a->o = o;
	a->retry_after = -1;
	a->easy = curl_easy_init();
	snprintf(key_header, sizeof(key_header), "Idempotency-Key: %s", o->key);
	a->headers = curl_slist_append(NULL, "Content-Type: application/json");
	struct curl_slist *h = a->headers ? curl_slist_append(a->headers, key_header) : NULL;
	if (!a->easy || !h) {
		curl_slist_free_all(a->headers);
		curl_easy_cleanup(a->easy);
		free(a);
		return false;
	}
	a->headers = h;
	curl_easy_setopt(a->easy, CURLOPT_URL, d->url);
	curl_easy_setopt(a->easy, CURLOPT_HTTPHEADER, a->headers);
	curl_easy_setopt(a->easy, CURLOPT_POSTFIELDS, o->body);
	curl_easy_setopt(a->easy, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(a->easy, CURLOPT_WRITEDATA, a);
	curl_easy_setopt(a->easy, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(a->easy, CURLOPT_HEADERDATA, a);
	curl_easy_setopt(a->easy, CURLOPT_PRIVATE, a);
	curl_easy_setopt(a->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(a->easy, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
	curl_easy_setopt(a->easy, CURLOPT_TIMEOUT_MS, (long)(d->opts->attempt_timeout * 1000));
	if (curl_multi_add_handle(d->multi, a->easy) != CURLM_OK) {
		curl_slist_free_all(a->headers);
		curl_easy_cleanup(a->easy);
		free(a);
		return false;
	}
	o->inflight = true;
	o->attempts++;
	d->inflight++;
	return true;
}

/* The last path segment of a problem's type, or "" when body is not one. */
static void problem_name(json_t *doc, char *out, size_t outlen)
{
	const char *type = json_string_value(json_object_get(doc, "type"));
	const char *slash = type ? strrchr(type, '/') : NULL;
	snprintf(out, outlen, "%s", slash ? slash + 1 : type ? type : "");
}

/* Try o again: after the server's Retry-After, else a jittered backoff. */
static void order_retry(struct driver *d, struct order *o, double retry_after)
{
	double wait;
	if (retry_after >= 0) {
		wait = retry_after < RETRY_AFTER_MAX ? retry_after : RETRY_AFTER_MAX;
	} else {
		wait = BACKOFF_FIRST;
		for (int i = 0; i < o->failures && wait < BACKOFF_MAX; i++)
			wait *= 2;
		if (wait > BACKOFF_MAX)
			wait = BACKOFF_MAX;
		wait *= 0.5 + (double)(next_rand(d) % 1000) / 1000.0; /* 50 % to 150 % */
	}
	o->failures++;
	o->due = now_s() + wait;
}

static void attempt_done(struct driver *d, struct attempt *a, CURLcode code)
{
	struct order *o = a->o;
	double t = now_s();
	long status = 0;
	json_error_t jerr;
	json_t *doc = NULL;
	char problem[64] = "";

	o->inflight = false;
	d->inflight--;
	if (code != CURLE_OK) {
		order_retry(d, o, -1);
		goto out;
	}
	curl_easy_getinfo(a->easy, CURLINFO_RESPONSE_CODE, &status);
	doc = a->resp ? json_loads(a->resp, 0, &jerr) : NULL;
	problem_name(doc, problem, sizeof(problem));
	if (status >= 500 || (status == 409 && !strcmp(problem, "idempotency-key-in-use"))) {
		order_retry(d, o, a->retry_after);
		goto out;
	}
	const char *order_id = NULL;
	if (status == 201) {
		order_id = json_string_value(json_object_get(doc, "order_id"));
		if (!order_id || strlen(order_id) != CHAOS_ID_LEN - 1) {
			snprintf(problem, sizeof(problem), "201-without-order-id");
			order_id = NULL;
		}
	} else if (!*problem) {
		snprintf(problem, sizeof(problem), "status-%ld", status);
	}
	order_write(d, o, t, status, problem, order_id, a->replayed);
	order_finish(d, o);
out:
	json_decref(doc);
	curl_multi_remove_handle(d->multi, a->easy);
	curl_easy_cleanup(a->easy);
	curl_slist_free_all(a->headers);
	free(a->resp);
	free(a);
}

/* Drop finished orders from the pending list, keeping the start order. */
static void pending_compact(struct driver *d)
{
	size_t kept = 0;
	for (size_t i = 0; i < d->n_pending; i++) {
		if (d->pending[i]->done)
			free(d->pending[i]);
		else
			d->pending[kept++] = d->pending[i];
	}
	d->n_pending = kept;
}

static bool pending_add(struct driver *d, struct order *o)
{
	if (d->n_pending == d->cap_pending) {
		size_t cap = d->cap_pending ? d->cap_pending * 2 : 1024;
		struct order **grown = realloc(d->pending, cap * sizeof(*grown));
		if (!grown)
			return false;
		d->pending = grown;
		d->cap_pending = cap;
	}
	d->pending[d->n_pending++] = o;
	return true;
}

bool chaos_drive(const struct chaos_drive_opts *opts)
{
	struct driver d = {.opts = opts, .rng = opts->seed ? opts->seed : (unsigned)time(NULL)};
	bool ok = false;
	struct sigaction sa = {.sa_handler = on_signal};

	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	snprintf(d.url, sizeof(d.url), "%s/v1/checkout", opts->url);
	d.out = fopen(opts->out_path, "w");
	if (!d.out) {
		log_error("cannot write %s", opts->out_path);
		return false;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || !(d.multi = curl_multi_init())) {
		log_error("libcurl cannot be initialised");
		goto out;
	}
	curl_multi_setopt(d.multi, CURLMOPT_MAXCONNECTS, (long)opts->max_inflight);

	double start = now_s(), next_arrival = start, last_report = start;
	log_info("driving %s at %.0f orders/s, keys %s-NNNNNN", d.url, opts->rate, opts->key_prefix);
	for (;;) {
		double t = now_s();
		bool arriving = !stop_requested && (opts->duration <= 0 || t < start + opts->duration);
		if (!arriving && d.n_pending == 0)
			break;
		while (arriving && next_arrival <= t) {
			struct order *o = calloc(1, sizeof(*o));
			if (!o || !pending_add(&d, o)) {
				free(o);
				log_error("out of memory");
				goto out;
			}
			order_make(&d, o, d.started++);
			o->first = o->due = next_arrival;
			next_arrival += 1.0 / opts->rate;
		}
		/* give up, or start what is due, oldest first */
		double next_due = t + 0.05;
		for (size_t i = 0; i < d.n_pending; i++) {
			struct order *o = d.pending[i];
			if (o->inflight || o->done)
				continue;
			if (t - o->first > opts->retry_seconds) {
				order_write(&d, o, t, 0, "gave-up", NULL, false);
				order_finish(&d, o);
				d.gave_up++;
				continue;
			}
			if (o->due <= t && d.inflight < opts->max_inflight) {
				if (!attempt_start(&d, o)) {
					log_error("cannot start a request");
					goto out;
				}
			} else if (o->due > t && o->due < next_due) {
				next_due = o->due;
			}
		}
		pending_compact(&d);

		int running;
		curl_multi_perform(d.multi, &running);
		CURLMsg *msg;
		int left;
		while ((msg = curl_multi_info_read(d.multi, &left))) {
			if (msg->msg != CURLMSG_DONE)
				continue;
			struct attempt *a;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&a);
			attempt_done(&d, a, msg->data.result);
		}
		pending_compact(&d);

		t = now_s();
		if (t - last_report >= 10) {
			log_info("%lu orders started, %lu ended (%lu given up), %zu pending, %d in flight", d.started,
				 d.finished, d.gave_up, d.n_pending, d.inflight);
			last_report = t;
		}
		double wake = next_due;
		if (arriving && next_arrival < wake)
			wake = next_arrival;
		int timeout_ms = (int)((wake - t) * 1000);
		if (timeout_ms < 0)
			timeout_ms = 0;
		if (timeout_ms > 50)
			timeout_ms = 50;
		curl_multi_poll(d.multi, NULL, 0, timeout_ms, NULL);
	}
	log_info("done: %lu orders, %lu given up", d.started, d.gave_up);
	ok = true;
out:
	for (size_t i = 0; i < d.n_pending; i++)
		free(d.pending[i]); /* only on an error: the attempts' handles die with the multi */
	free(d.pending);
	if (d.multi)
		curl_multi_cleanup(d.multi);
	curl_global_cleanup();
	if (d.out && fclose(d.out) != 0) {
		log_error("writing %s failed", opts->out_path);
		ok = false;
	}
	return ok;
}
