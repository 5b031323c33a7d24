/* db.h - PostgreSQL access: connections, named prepared statements, a pool.
 *
 * SQL lives in tables of struct db_stmt next to the code that runs it; every
 * connection prepares them once, so requests only send names and parameters.
 */
#ifndef CHECKOUT_DB_H
#define CHECKOUT_DB_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

struct db_stmt {
	const char *name;
	const char *sql;
};

/*
 * Connect to url ("" for libpq's defaults from PG* variables) with a short
 * connect timeout, then prepare every statement of each NULL-terminated
 * table in stmts (stmts itself is NULL-terminated; it may be NULL). Returns
 * the connection, or NULL with a one-line reason in err. The caller owns the
 * connection (PQfinish).
 */
PGconn *db_connect(const char *url, const struct db_stmt *const *stmts, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/*
 * At program start: try to connect to url every half second for up to
 * seconds (0: once). Returns true as soon as the database answers; otherwise
 * false with a one-line reason in err. A database that is down at start is
 * a configuration problem the operator must see; once running, the programs
 * ride out outages by themselves.
 */
bool db_wait(const char *url, int seconds, char *err, size_t errlen) __attribute__((warn_unused_result));

/* SQLSTATE of a result ("" when there is none). */
const char *db_sqlstate(const PGresult *res);

/*
 * Why res failed: its error message, or conn's when res has none (NULL: out
 * of memory or a lost connection); conn may be NULL. The text may span
 * several lines (see errbuf_set) and lives as long as res and conn.
 */
const char *db_error_message(const PGresult *res, const PGconn *conn);

/* True for 40001 (serialization failure) and 40P01 (deadlock): retry the transaction. */
bool db_is_retryable(const PGresult *res);

/*
 * The waiting parts of libpq, for fibers (see fiber.h): they park the
 * calling fiber instead of blocking the thread (and block, like libpq, when
 * called outside a fiber). Queries are sent in libpq's blocking mode: a
 * send only waits when the socket buffer is full, which requests of at most
 * 64 KiB do not fill.
 *
 * db_result: PQgetResult. db_finish: collect the results of what was sent
 * up to the end (NULL), keeping the last, or the first error, like PQexec.
 * db_exec and db_exec_prepared: PQexec and PQexecPrepared. All return NULL
 * on a broken connection or when out of memory.
 *
 * When the calling fiber's deadline (fiber_set_deadline_ms) passes while it
 * waits for the server, the connection is shut down: the call returns as on
 * a lost connection (PQstatus CONNECTION_BAD), and the backend, seeing its
 * client gone, cancels what it was running within a second.
 */
PGresult *db_result(PGconn *conn);
PGresult *db_finish(PGconn *conn);
PGresult *db_exec(PGconn *conn, const char *sql);
PGresult *db_exec_prepared(PGconn *conn, const char *name, int n, const char *const *params);

/*
 * Run a command that returns no rows. Returns true on success; on failure
 * copies the server's message into err (may be NULL).
 */
bool db_command(PGconn *conn, const char *sql, char *err, size_t errlen) __attribute__((warn_unused_result));

/*
 * True when the server behind conn (a plain or a replication connection) has
 * wal_level = logical, which the WAL events mode needs. Otherwise false with
 * one line in err that says what to change.
 */
bool db_wal_level_logical(PGconn *conn, char *err, size_t errlen) __attribute__((warn_unused_result));

/*
 * A bounded pool of connections shared by the fibers of one loop (fiber.h).
 * It has no locks: use it from one thread only.
 */
struct db_pool;

/*
 * Create a pool of at most size connections to url, each preparing stmts (see
 * db_connect) and starting its session with options ("-c name=value ...",
 * e.g. statement and lock timeouts; may be NULL). Connections are opened
 * lazily, so this does not fail when the database is down. Returns NULL only
 * when out of memory.
 */
struct db_pool *db_pool_create(const char *url, int size, const struct db_stmt *const *stmts,
			       const char *options)
    __attribute__((warn_unused_result));

/*
 * Take a connection, waiting up to wait_ms (and no later than the fiber's
 * deadline) for one to be free. First come, first served: a connection
 * given back goes straight to the fiber that has waited longest, never to a
 * newcomer. Outside a fiber it does not wait. A broken connection is
 * reopened first. Returns NULL when none is free in time or the database
 * cannot be reached (err says which).
 */
PGconn *db_pool_acquire(struct db_pool *pool, int wait_ms, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Give a connection back (to the first waiter, if any). If it is broken or mid-transaction it is closed. Accepts NULL. */
void db_pool_release(struct db_pool *pool, PGconn *conn);

/* Number of acquires that had to wait for a free connection, since start. */
unsigned long db_pool_waits(struct db_pool *pool);

/* Close every connection and free the pool. Accepts NULL. */
void db_pool_destroy(struct db_pool *pool);

#endif
