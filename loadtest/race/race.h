/* race.h - the race tool (checkout-race): concurrent checkouts, then the
 * invariants checked in PostgreSQL, on the topic and in the workers' tables.
 *
 * fire.c fires one round of requests at once from a pool of client threads;
 * check.c holds the SQL, the topic consumer, the worker checks and the
 * checks of the kafka designs (checkout-naive); main.c sets up each round's
 * products, runs the scenarios and prints the table.
 */
#ifndef CHECKOUT_RACE_H
#define CHECKOUT_RACE_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

#include "checkout/config.h"

#define RACE_ID_LEN 37 /* a uuid and its NUL */

/* What one checkout got back, in the terms of the contract. */
enum race_verdict {
	VERDICT_ADMITTED,     /* 201 with an order id */
	VERDICT_OUT_OF_STOCK, /* 409 out-of-stock */
	VERDICT_OVER_LIMIT,   /* 409 purchase-limit-exceeded */
	VERDICT_EXHAUSTED,    /* too-much-contention: the server's retries ran out */
	VERDICT_ERROR,	      /* 5xx, transport error, or anything else off-contract */
};

struct race_result {
	enum race_verdict verdict;
	long status; /* HTTP status, 0 for a transport error */
	char order_id[RACE_ID_LEN];
	char problem[64]; /* last path segment of the problem type, or a transport error */
};

/* One client's cart in a round: indexes into the round's SKUs, one unit of each. */
struct race_cart {
	int n;
	int sku[2];
};

/* A sorted set of order ids (uuid text). */
struct race_set {
	char (*ids)[RACE_ID_LEN];
	size_t n, cap;
};

/* Add id (duplicates are kept once). Returns false when out of memory. */
bool race_set_add(struct race_set *s, const char *id) __attribute__((warn_unused_result));

/* True if id is in s. */
bool race_set_has(const struct race_set *s, const char *id);

/* Free the ids; safe on a zeroed set and safe twice. */
void race_set_free(struct race_set *s);

/* --- fire.c: the client threads --- */

struct fire_pool;

/*
 * Start `clients` threads, each with its own keep-alive connection; client i
 * talks to urls[i % n_urls] (base URLs without a trailing slash; the strings
 * must outlive the pool). Returns NULL (and logs why) when a thread or a
 * handle cannot be created.
 */
struct fire_pool *fire_pool_create(int clients, char *const *urls, int n_urls)
    __attribute__((warn_unused_result));

/*
 * Fire one round: every client first opens (or checks) its connection, then
 * all wait for the last one and POST /v1/checkout with bodies[i] at the same
 * moment. Fills results[i] for every client and returns when all have
 * answered (or failed: transport errors are results, not failures).
 */
void fire_round(struct fire_pool *pool, char *const *bodies, struct race_result *results);

/*
 * The stock url's server reports for skus[0..n) (GET /v1/products/{sku}),
 * into stocks[0..n). False (logged) when one cannot be read.
 */
bool fire_read_stocks(const char *url, char *const *skus, int n, long *stocks)
    __attribute__((warn_unused_result));

/* Stop the threads and free the pool. Accepts NULL. */
void fire_pool_destroy(struct fire_pool *pool);

/*
 * The sum over urls of checkout_serialization_retries_total from each
 * server's /metrics, or -1 when a server does not expose it or cannot be
 * reached.
 */
long fire_read_retries(char *const *urls, int n_urls);

/* --- check.c: the invariants --- */

/* What the database says about one round, after it has settled. */
struct check_round {
	long stock;	 /* SKUs below zero or where initial != current + sold */
	long oversold;	 /* units sold beyond the initial stock, summed over SKUs */
	long over_limit; /* units admitted beyond per_customer, summed over customers */
	long split; /* all-or-nothing broken: units taken for no admitted order, orders with part of a cart */
	long orders; /* 201 answers without an order, plus orders never answered 201; -1: not checked */
	long outbox; /* admitted orders without exactly one outbox row, plus strays; -1: not checked */
	long admitted_units;
};

/* The database connection with the tool's statements prepared. NULL on error (logged). */
PGconn *check_connect(const char *url) __attribute__((warn_unused_result));

/* Highest outbox id now (0 when empty), or -1 on error (logged). */
long check_outbox_mark(PGconn *conn);

/*
 * Insert a limit group (name may be NULL for none: nothing inserted) and
 * products skus[0..n) with the given stock, all in one transaction. Returns
 * false on an error (logged).
 */
bool check_setup(PGconn *conn, const char *group, int per_customer, char *const *skus, int n, int stock)
    __attribute__((warn_unused_result));

/*
 * Check one round in the database (design database): skus[0..n) were
 * created with `stock` units each, group is their limit group (NULL for
 * none), every cart held cart_lines SKUs, results[0..clients) are the
 * answers. Orders the database holds for these SKUs are added to *admitted.
 * Outbox rows are looked at from id > outbox_mark. Returns false on an SQL
 * error (logged).
 */
bool check_round(PGconn *conn, char *const *skus, int n, int stock, const char *group, int cart_lines,
		 const struct race_result *results, int clients, long outbox_mark, struct check_round *out,
		 struct race_set *admitted) __attribute__((warn_unused_result));

/*
 * Check one round of a kafka design, which writes no order to PostgreSQL:
 * the admitted units come from the 201 answers (results[i] answers
 * carts[i]), the stock from what the program at url believes
 * (fire_read_stocks). With wait_seconds > 0 (the view design, whose view
 * lags the topic) it reads again until every SKU's stock accounts for the
 * admitted units or the time is up. per_customer applies when group is not
 * NULL (one customer per round). orders and outbox are -1 (not checked).
 * Returns false when the stock cannot be read (logged).
 */
bool check_round_state(const char *url, char *const *skus, int n, int stock, const char *group,
		       int per_customer, const struct race_cart *carts, const struct race_result *results,
		       int clients, int wait_seconds, struct check_round *out)
    __attribute__((warn_unused_result));

/* The partition count of cfg's orders topic on cfg's brokers, or -1 (logged). */
int check_partitions(const struct config *cfg);

/*
 * Consume the whole orders topic with a fresh consumer group and compare:
 * events whose items carry a SKU starting with prefixes[i] belong to
 * admitted[i]. Waits up to cfg->race_catch_up_seconds for the missing ones.
 * mismatches[i] gets missing + extra order ids. Returns false when the
 * consumer cannot be set up (logged).
 */
bool check_topic(const struct config *cfg, const char *const *prefixes,
		 const struct race_set *const *admitted, int n, long *mismatches)
    __attribute__((warn_unused_result));

/*
 * Compare each worker's inbox (email, inventory, analytics) and the
 * inventory and analytics per-SKU units with the admitted orders: admitted[i]
 * with admitted_units[i] units on SKUs starting with prefixes[i]. Waits up
 * to cfg->race_catch_up_seconds. mismatches[i] gets the orders missing from
 * each worker plus the unit differences. Returns false on an SQL error.
 */
bool check_workers(const struct config *cfg, const char *const *prefixes,
		   const struct race_set *const *admitted, const long *admitted_units, int n,
		   long *mismatches) __attribute__((warn_unused_result));

#endif
