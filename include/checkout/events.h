/* events.h - what the server and the relay share about the WAL events mode:
 * the publication and the logical replication slot the events are read from.
 *
 * Both are created idempotently by whichever program starts first (the server
 * at start, so no order admitted before the relay's first start is missed;
 * the relay at every connection). Only simple queries are used, so the
 * functions work on plain and on replication=database connections.
 */
#ifndef CHECKOUT_EVENTS_H
#define CHECKOUT_EVENTS_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

/* The publication pgoutput is started with: it has no tables, only the messages are read. */
#define EVENTS_PUBLICATION "checkout_events"

/* A slot name is at most 63 characters: a-z, 0-9 and _ (PostgreSQL's rule). */
#define EVENTS_SLOT_MAX 64

/*
 * The slot name: setting when not empty (it must be a valid slot name),
 * else "checkout_" and the current database's name with every other
 * character turned into '_' (so each database of a cluster has its own).
 * Writes it into out (EVENTS_SLOT_MAX bytes). Returns false with one line
 * in err when setting is not a valid name or the query fails.
 */
bool events_slot_name(PGconn *conn, const char *setting, char out[EVENTS_SLOT_MAX], char *err, size_t errlen)
    __attribute__((warn_unused_result));

/*
 * Create the publication and the slot (pgoutput) unless they exist; a
 * concurrent creation by another program counts as success. replication
 * says whether conn is a replication connection (the slot is then made with
 * CREATE_REPLICATION_SLOT, else with pg_create_logical_replication_slot).
 * *lost is set when the slot exists but PostgreSQL invalidated it
 * (wal_status 'lost'): it is then left alone, and the function returns
 * false. Returns false with one line in err on any failure.
 */
bool events_ensure_slot(PGconn *conn, const char *slot, bool replication, bool *lost, char *err,
			size_t errlen) __attribute__((warn_unused_result));

/*
 * Make mode ("wal" or "outbox") the current database's default of the
 * setting checkout.events (ALTER DATABASE ... SET, when it differs from what
 * this session has), which the products trigger reads to know where a
 * product's event goes (migrations/010_products_as_events.sql): so sessions
 * opened later, plain SQL ones included, follow the mode. Returns false with
 * one line in err on failure (e.g. not the database's owner).
 */
bool events_mode_set(PGconn *conn, const char *mode, char *err, size_t errlen)
    __attribute__((warn_unused_result));

#endif
