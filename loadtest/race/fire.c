/* fire.c - client threads that fire one round of checkouts at the same moment.
 *
 * Each client is a thread with its own libcurl easy handle, so its TCP
 * connection stays open from round to round. Before a round every client
 * makes a cheap GET /healthz (which opens the connection if the server
 * closed it), then all wait for the last one and send their POST together: the
 * requests reach the server within microseconds of each other, which is what
 * makes the race real.
 */
#include "race.h"

#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkout/log.h"

struct fire_client {
	struct fire_pool *pool;
	int index;
	const char *url; /* base URL */
	CURL *curl;
	pthread_t thread;
	bool started;
};

/* A round: main bumps generation; each client warms up and counts itself in
 * `warmed`; when the last one is in, all fire together; each counts itself in
 * `answered`, which main waits for. A mutex and a condition variable rather
 * than barriers, so that a pool whose threads did not all start can still be
 * torn down. */
struct fire_pool {
	int clients;
	struct fire_client *client;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool sync;
	unsigned long generation;
	int warmed, answered;
	bool stop;
	char *const *bodies;
	struct race_result *results;
};

struct buffer {
	char *data;
	size_t len;
};

static size_t buffer_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct buffer *b = userdata;
	size_t n = size * nmemb;
	char *grown = realloc(b->data, b->len + n + 1);
	if (!grown)
		return 0; /* curl reports a write error */
	memcpy(grown + b->len, ptr, n);
	b->data = grown;
	b->len += n;
	b->data[b->len] = '\0';
	return n;
}

static size_t discard(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	(void)ptr;
	(void)userdata;
	return size * nmemb;
}

/* Map an answer onto the contract. */
static void classify(long status, const char *body, struct race_result *r)
{
	json_error_t jerr;
	json_t *doc = body ? json_loads(body, 0, &jerr) : NULL;

	r->status = status;
	r->verdict = VERDICT_ERROR;
	if (status == 201) {
		const char *id = json_string_value(json_object_get(doc, "order_id"));
		if (id && strlen(id) == RACE_ID_LEN - 1) {
			snprintf(r->order_id, sizeof(r->order_id), "%s", id);
			r->verdict = VERDICT_ADMITTED;
		} else {
			snprintf(r->problem, sizeof(r->problem), "201 without order_id");
		}
		goto out;
	}
	const char *type = json_string_value(json_object_get(doc, "type"));
	const char *name = type ? strrchr(type, '/') : NULL;
	snprintf(r->problem, sizeof(r->problem), "%s", name ? name + 1 : "(not a problem document)");
	if (status == 409 && !strcmp(r->problem, "out-of-stock"))
		r->verdict = VERDICT_OUT_OF_STOCK;
	else if (status == 409 && !strcmp(r->problem, "purchase-limit-exceeded"))
		r->verdict = VERDICT_OVER_LIMIT;
	else if (!strcmp(r->problem, "too-much-contention"))
		r->verdict = VERDICT_EXHAUSTED;
out:
	json_decref(doc);
}

/* One POST /v1/checkout on the client's connection. */
static void client_checkout(struct fire_client *c, const char *body, struct race_result *r)
{
	char url[512];
	struct buffer b = {0};
	struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
	long status = 0;

	memset(r, 0, sizeof(*r));
	snprintf(url, sizeof(url), "%s/v1/checkout", c->url);
	curl_easy_setopt(c->curl, CURLOPT_URL, url);
	curl_easy_setopt(c->curl, CURLOPT_POST, 1L);
	curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, buffer_write);
	curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &b);
	CURLcode rc = curl_easy_perform(c->curl);
	curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, NULL);
	if (rc != CURLE_OK) {
		r->verdict = VERDICT_ERROR;
		snprintf(r->problem, sizeof(r->problem), "transport: %s", curl_easy_strerror(rc));
		goto out;
	}
	curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status);
	classify(status, b.data, r);
out:
	curl_slist_free_all(headers);
	free(b.data);
}

/* GET /healthz so that the connection is open before the requests go. */
static void client_warm_up(struct fire_client *c)
{
	char url[512];
	snprintf(url, sizeof(url), "%s/healthz", c->url);
	curl_easy_setopt(c->curl, CURLOPT_URL, url);
	curl_easy_setopt(c->curl, CURLOPT_HTTPGET, 1L);
	curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, discard);
	curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, NULL);
	(void)curl_easy_perform(c->curl); /* a failure shows up in the checkout itself */
}

static void *client_main(void *arg)
{
	struct fire_client *c = arg;
	struct fire_pool *pool = c->pool;
	unsigned long seen = 0;

	pthread_mutex_lock(&pool->mu);
	for (;;) {
		while (pool->generation == seen && !pool->stop)
			pthread_cond_wait(&pool->cv, &pool->mu);
		if (pool->stop)
			break;
		seen = pool->generation;
		pthread_mutex_unlock(&pool->mu);
		client_warm_up(c);

		pthread_mutex_lock(&pool->mu);
		if (++pool->warmed == pool->clients)
			pthread_cond_broadcast(&pool->cv);
		while (pool->warmed < pool->clients && !pool->stop)
			pthread_cond_wait(&pool->cv, &pool->mu);
		if (pool->stop)
			break;
		pthread_mutex_unlock(&pool->mu);

		client_checkout(c, pool->bodies[c->index], &pool->results[c->index]);

		pthread_mutex_lock(&pool->mu);
		if (++pool->answered == pool->clients)
			pthread_cond_broadcast(&pool->cv);
	}
	pthread_mutex_unlock(&pool->mu);
	return NULL;
}

struct fire_pool *fire_pool_create(int clients, char *const *urls, int n_urls)
{
	struct fire_pool *pool = calloc(1, sizeof(*pool));
	if (!pool)
		goto fail;
	pool->clients = clients;
	pool->client = calloc((size_t)clients, sizeof(*pool->client));
	if (!pool->client)
		goto fail;
	if (pthread_mutex_init(&pool->mu, NULL) != 0)
		goto fail;
	if (pthread_cond_init(&pool->cv, NULL) != 0) {
		pthread_mutex_destroy(&pool->mu);
		goto fail;
	}
	pool->sync = true;
	for (int i = 0; i < clients; i++) {
		struct fire_client *c = &pool->client[i];
		c->pool = pool;
		c->index = i;
		c->url = urls[i % n_urls];
		c->curl = curl_easy_init();
		if (!c->curl)
			goto fail;
		curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(c->curl, CURLOPT_TCP_NODELAY, 1L);
		curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
		/* generous: with a race pause and many retries an answer can take seconds */
		curl_easy_setopt(c->curl, CURLOPT_TIMEOUT_MS, 120000L);
	}
	for (int i = 0; i < clients; i++) {
		if (pthread_create(&pool->client[i].thread, NULL, client_main, &pool->client[i]) != 0) {
			log_error("cannot start client thread %d of %d", i + 1, clients);
			goto fail;
		}
		pool->client[i].started = true;
	}
	return pool;
fail:
	log_error("cannot create %d race clients", clients);
	fire_pool_destroy(pool);
	return NULL;
}

void fire_round(struct fire_pool *pool, char *const *bodies, struct race_result *results)
{
	pthread_mutex_lock(&pool->mu);
	pool->bodies = bodies;
	pool->results = results;
	pool->warmed = 0;
	pool->answered = 0;
	pool->generation++;
	pthread_cond_broadcast(&pool->cv);
	while (pool->answered < pool->clients)
		pthread_cond_wait(&pool->cv, &pool->mu);
	pthread_mutex_unlock(&pool->mu);
}

void fire_pool_destroy(struct fire_pool *pool)
{
	if (!pool)
		return;
	if (pool->sync) {
		pthread_mutex_lock(&pool->mu);
		pool->stop = true;
		pthread_cond_broadcast(&pool->cv);
		pthread_mutex_unlock(&pool->mu);
	}
	for (int i = 0; pool->client && i < pool->clients; i++) {
		struct fire_client *c = &pool->client[i];
		if (c->started)
			pthread_join(c->thread, NULL);
		if (c->curl)
			curl_easy_cleanup(c->curl);
	}
	if (pool->sync) {
		pthread_cond_destroy(&pool->cv);
		pthread_mutex_destroy(&pool->mu);
	}
	free(pool->client);
	free(pool);
}

long fire_read_retries(char *const *urls, int n_urls)
{
	static const char metric[] = "checkout_serialization_retries_total ";
	long total = 0;
	CURL *curl = curl_easy_init();
	struct buffer b = {0};

	if (!curl)
		return -1;
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 5000L);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, buffer_write);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, &b);
	for (int i = 0; i < n_urls; i++) {
		char url[512];
		long status = 0;
		snprintf(url, sizeof(url), "%s/metrics", urls[i]);
		curl_easy_setopt(curl, CURLOPT_URL, url);
		free(b.data);
		b.data = NULL;
		b.len = 0;
		if (curl_easy_perform(curl) != CURLE_OK || !b.data) {
			total = -1;
			goto out;
		}
		curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
		const char *line = b.data;
		while (line && strncmp(line, metric, sizeof(metric) - 1) != 0) {
			line = strchr(line, '\n');
			line = line ? line + 1 : NULL;
		}
		if (status != 200 || !line) {
			total = -1;
			goto out;
		}
		total += strtol(line + sizeof(metric) - 1, NULL, 10);
	}
out:
	free(b.data);
	curl_easy_cleanup(curl);
	return total;
}

bool fire_read_stocks(const char *url, char *const *skus, int n, long *stocks)
{
	bool ok = false;
	CURL *curl = curl_easy_init();
	struct buffer b = {0};

	if (!curl) {
		log_error("cannot create a libcurl handle");
		return false;
	}
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 5000L);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, buffer_write);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, &b);
	for (int i = 0; i < n; i++) {
		char full[512];
		long status = 0;
		/* our own generated SKUs: nothing in them needs percent-encoding */
		snprintf(full, sizeof(full), "%s/v1/products/%s", url, skus[i]);
		curl_easy_setopt(curl, CURLOPT_URL, full);
		free(b.data);
		b.data = NULL;
		b.len = 0;
		CURLcode rc = curl_easy_perform(curl);
		curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
		json_t *doc = rc == CURLE_OK && status == 200 && b.data ? json_loads(b.data, 0, NULL) : NULL;
		json_t *stock = json_object_get(doc, "stock");
		bool read = json_is_integer(stock);
		if (read)
			stocks[i] = (long)json_integer_value(stock);
		json_decref(doc);
		if (!read) {
			log_error("GET %s: %s", full,
				  rc != CURLE_OK ? curl_easy_strerror(rc) : "no stock in the answer");
			goto out;
		}
	}
	ok = true;
out:
	free(b.data);
	curl_easy_cleanup(curl);
	return ok;
}
