/* checkout-server: the checkout API over HTTP (libmicrohttpd + libpq).
 *
 * Reads the settings (config.h), opens a bounded pool of database
 * connections lazily (so it starts even while the database is down), serves
 * until SIGTERM or SIGINT, then stops cleanly and exits 0.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "checkout.h"
#include "checkout/config.h"
#include "checkout/db.h"
#include "checkout/errbuf.h"
#include "checkout/events.h"
#include "checkout/fiber.h"
#include "checkout/log.h"
#include "checkout/monotonic.h"
#include "hotqueue.h"
#include "http.h"
#include "idempotency.h"
#include "limits.h"
#include "orders.h"
#include "products.h"

/*
 * At start, best effort (the database may be down): refresh the planner's
 * statistics, since tables analysed while empty plan badly.
 */
static void analyze_at_start(struct db_pool *pool)
{
	char err[256] = "";
	PGconn *conn = db_pool_acquire(pool, HTTP_DB_WAIT_MS, err, sizeof(err));
	if (!conn ||
	    !db_command(conn, "ANALYZE products, limit_groups, order_lines, orders", err, sizeof(err)))
		log_warn("ANALYZE at start failed (continuing): %s", err);
	db_pool_release(pool, conn);
}

/* Keys deleted per statement: short statements, so checkouts never wait long behind one. */
#define PURGE_BATCH 5000

/* Delete the idempotency keys past their 24 hours, a batch at a time. */
static void purge_expired_keys(struct server *srv)
{
	long total = 0, deleted = PURGE_BATCH;
	char err[256] = "", sql[160];
	snprintf(sql, sizeof(sql),
		 "DELETE FROM idempotency_keys WHERE key IN "
		 "(SELECT key FROM idempotency_keys WHERE expires_at < now() LIMIT %d)",
		 PURGE_BATCH);
	while (deleted == PURGE_BATCH && !atomic_load(&srv->stopping)) {
		PGconn *conn = db_pool_acquire(srv->pool, HTTP_DB_WAIT_MS, err, sizeof(err));
		if (!conn)
			break;
		PGresult *res = db_exec(conn, sql);
		if (PQresultStatus(res) == PGRES_COMMAND_OK) {
			deleted = strtol(PQcmdTuples(res), NULL, 10);
			total += deleted;
		} else {
			errbuf_set(err, sizeof(err), "%s", db_error_message(res, conn));
			deleted = -1;
		}
		PQclear(res);
		db_pool_release(srv->pool, conn);
	}
	if (*err)
		log_warn("deleting expired idempotency keys failed (next try in %d s): %s",
			 srv->cfg->idempotency_purge_seconds, err);
	if (total > 0)
		log_info("deleted %ld idempotency keys past their 24 hours", total);
}

/* A fiber: purge expired idempotency keys now and every IDEMPOTENCY_PURGE_SECONDS until the server stops. */
static void housekeeping(void *arg)
{
	struct server *srv = arg;
	double next = 0;
	while (!atomic_load(&srv->stopping)) {
		if (monotonic_seconds() >= next) {
			purge_expired_keys(srv);
			next = monotonic_seconds() + srv->cfg->idempotency_purge_seconds;
		}
		fiber_sleep_ms(100); /* a stopping server waits at most this long for this fiber */
	}
}

int main(int argc, char **argv)
{
	static const struct db_stmt *const statements[] = {
	    checkout_stmts, products_stmts, limits_stmts, orders_stmts, idempotency_stmts, NULL,
	};
	struct config cfg;
	struct server srv = {0};
	int status = EXIT_FAILURE;
	char err[512];
	sigset_t stop;

	enum config_result r = config_load(&cfg, CONFIG_SERVER, "server", argc, argv);
	if (r != CONFIG_OK) {
		status = r == CONFIG_EXIT_OK ? EXIT_SUCCESS : EXIT_FAILURE;
		goto out;
	}
	log_init(cfg.program, cfg.log_level, cfg.log_format);
	if (cfg.isolation != ISOLATION_SERIALIZABLE)
		log_warn("!!! ISOLATION=%s: checkouts are NOT safe; this level exists only to demonstrate "
			 "anomalies (oversold stock, broken purchase limits) !!!",
			 config_isolation_sql(cfg.isolation));
	if (cfg.isolation != ISOLATION_SERIALIZABLE && cfg.hot_sku_queue)
		log_warn("HOT_SKU_QUEUE is on: checkouts of one SKU take turns in this process, which hides "
			 "the anomalies of ISOLATION=%s; run the demonstration with HOT_SKU_QUEUE=false",
			 config_isolation_sql(cfg.isolation));
	if (cfg.race_pause_ms > 0)
		log_warn("RACE_PAUSE_MS=%d: every checkout pauses between its read and its write",
			 cfg.race_pause_ms);

	/* block the stop signals before any thread starts, so only sigwait() sees them */
	sigemptyset(&stop);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGINT);
	pthread_sigmask(SIG_BLOCK, &stop, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (!db_wait(cfg.database_url, cfg.db_wait_seconds, err, sizeof(err))) {
		log_error("%s", err);
		goto out;
	}
	if (cfg.events == EVENTS_WAL) {
		/* events written to a WAL no slot decodes would be lost: the slot must exist before
		 * the first order, even when the relay has not started yet */
		char slot[EVENTS_SLOT_MAX];
		bool lost = false;
		PGconn *conn = db_connect(cfg.database_url, NULL, err, sizeof(err));
		bool ready = conn && db_wal_level_logical(conn, err, sizeof(err)) &&
			     events_slot_name(conn, cfg.slot, slot, err, sizeof(err)) &&
			     events_ensure_slot(conn, slot, false, &lost, err, sizeof(err));
		PQfinish(conn);
		if (!ready) {
			log_error("%s%s", err,
				  lost ? ": events in the WAL it lost were never published; see README, "
					 "\"An invalidated slot\""
				       : "");
			goto out;
		}
	}
	{
		/* the products trigger emits where the checkout's events go (010_products_as_events.sql);
		 * the pool's sessions set it themselves, this is for plain SQL sessions */
		PGconn *conn = db_connect(cfg.database_url, NULL, err, sizeof(err));
		if (!conn ||
		    !events_mode_set(conn, cfg.events == EVENTS_WAL ? "wal" : "outbox", err, sizeof(err)))
			log_warn("%s; product changes made in plain SQL may not reach the relay", err);
		PQfinish(conn);
	}
	srv.cfg = &cfg;
	/*
	 * The database bounds its own waits too, so a request that gave up leaves
	 * nothing running: statements and lock waits end with the request's
	 * deadline, a lock held by another transaction is waited for half of it
	 * (a claim of an Idempotency-Key that another request holds then gets 409
	 * in-use while time is left to answer), and a session idle inside a
	 * transaction is ended.
	 */
	char session[256];
	snprintf(session, sizeof(session),
		 "-c statement_timeout=%d -c lock_timeout=%d -c idle_in_transaction_session_timeout=%d"
		 " -c checkout.events=%s",
		 cfg.request_timeout_ms, cfg.request_timeout_ms / 2, cfg.request_timeout_ms,
		 cfg.events == EVENTS_WAL ? "wal" : "outbox");
	srv.pool = db_pool_create(cfg.database_url, cfg.db_pool_size, statements, session);
	if (!srv.pool) {
		log_error("out of memory");
		goto out;
	}
	if (cfg.hot_sku_queue && !(srv.hotq = hotqueue_create())) {
		log_error("out of memory");
		goto out;
	}
	analyze_at_start(srv.pool);
	srv.loop = fiber_loop_start(err, sizeof(err));
	if (!srv.loop) {
		log_error("%s", err);
		goto out;
	}
	if (!http_start(&srv, err, sizeof(err))) {
		log_error("%s", err);
		goto out;
	}
	if (!fiber_spawn(srv.loop, housekeeping, &srv)) {
		log_error("out of memory");
		goto out;
	}
	log_info("listening on %s:%d, isolation %s, database pool of %d, max retries %d, hot-SKU queue %s",
		 cfg.listen_host, cfg.listen_port, config_isolation_sql(cfg.isolation), cfg.db_pool_size,
		 cfg.max_retries, srv.hotq ? "on" : "off");

	int sig = 0;
	sigwait(&stop, &sig);
	log_info("stopping on signal %d", sig);
	status = EXIT_SUCCESS;
out:
	if (srv.loop)
		http_stop(&srv);
	fiber_loop_stop(srv.loop);
	db_pool_destroy(srv.pool);
	hotqueue_destroy(srv.hotq);
	config_free(&cfg);
	return status;
}
