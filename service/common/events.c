/* events.c - the WAL events mode's publication and slot (see events.h). */
#include "checkout/events.h"

#include "checkout/db.h"
#include "checkout/errbuf.h"

#include <stdio.h>
#include <string.h>

static bool valid_slot_name(const char *s)
{
	size_t n = strlen(s);
	return n > 0 && n < EVENTS_SLOT_MAX && strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_") == n;
}

bool events_slot_name(PGconn *conn, const char *setting, char out[EVENTS_SLOT_MAX], char *err, size_t errlen)
{
	if (setting && *setting) {
		if (!valid_slot_name(setting)) {
			snprintf(err, errlen, "slot name '%.80s' is not 1 to 63 characters of a-z, 0-9 and _",
				 setting);
			return false;
		}
		snprintf(out, EVENTS_SLOT_MAX, "%s", setting);
		return true;
	}
	PGresult *res = PQexec(conn, "SELECT current_database()");
	bool ok = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;
	if (!ok) {
		errbuf_set(err, errlen, "%s: %s", "reading the database name", db_error_message(res, conn));
	} else {
		const char *db = PQgetvalue(res, 0, 0);
		int n = snprintf(out, EVENTS_SLOT_MAX, "checkout_");
		for (; *db && n < EVENTS_SLOT_MAX - 1; db++, n++) {
			char c = *db;
			if (c >= 'A' && c <= 'Z')
				c = (char)(c - 'A' + 'a');
			out[n] = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ? c : '_';
		}
		out[n] = '\0';
	}
	PQclear(res);
	return ok;
}

/* Run sql; a failure whose SQLSTATE is ok_state (may be NULL) counts as success. */
static bool run(PGconn *conn, const char *sql, const char *ok_state, const char *what, char *err,
		size_t errlen)
{
	PGresult *res = PQexec(conn, sql);
	ExecStatusType st = PQresultStatus(res);
	const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ||
		  (ok_state && state && !strcmp(state, ok_state));
	if (!ok)
		errbuf_set(err, errlen, "%s: %s", what, db_error_message(res, conn));
	PQclear(res);
	return ok;
}

bool events_ensure_slot(PGconn *conn, const char *slot, bool replication, bool *lost, char *err,
			size_t errlen)
{
	char sql[256];
	*lost = false;
	if (!valid_slot_name(slot)) {
		snprintf(err, errlen, "slot name '%.80s' is not 1 to 63 characters of a-z, 0-9 and _", slot);
		return false;
	}
	/* look before creating: a program without the right to create may still use what exists */
	PGresult *res = PQexec(conn, "SELECT 1 FROM pg_publication WHERE pubname = '" EVENTS_PUBLICATION "'");
	bool have_pub = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;
	PQclear(res);
	/* 42710: another program created it meanwhile */
	if (!have_pub && !run(conn, "CREATE PUBLICATION " EVENTS_PUBLICATION, "42710",
			      "creating publication " EVENTS_PUBLICATION, err, errlen))
		return false;

	/* the name was checked above: a-z, 0-9 and _ only, safe inside quotes */
	snprintf(sql, sizeof(sql),
		 "SELECT coalesce(wal_status, '') FROM pg_replication_slots WHERE slot_name = '%s'", slot);
	res = PQexec(conn, sql);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		errbuf_set(err, errlen, "%s: %s", "reading pg_replication_slots",
			   db_error_message(res, conn));
		PQclear(res);
		return false;
	}
	bool exists = PQntuples(res) == 1;
	*lost = exists && !strcmp(PQgetvalue(res, 0, 0), "lost");
	PQclear(res);
	if (*lost) {
		snprintf(err, errlen, "replication slot %s was invalidated by PostgreSQL (wal_status lost)",
			 slot);
		return false;
	}
	if (exists)
		return true;
	if (replication)
		snprintf(sql, sizeof(sql), "CREATE_REPLICATION_SLOT %s LOGICAL pgoutput NOEXPORT_SNAPSHOT",
			 slot);
	else
		snprintf(sql, sizeof(sql), "SELECT pg_create_logical_replication_slot('%s', 'pgoutput')",
			 slot);
	char what[128];
	snprintf(what, sizeof(what), "creating replication slot %s", slot);
	return run(conn, sql, "42710", what, err, errlen);
}

bool events_mode_set(PGconn *conn, const char *mode, char *err, size_t errlen)
{
	const char *params[] = {mode};
	/* mode is "wal" or "outbox"; format() quotes both names anyway */
	PGresult *res =
	    PQexecParams(conn,
			 "SELECT CASE WHEN current_setting('checkout.events', true) IS DISTINCT FROM $1 THEN"
			 " (SELECT 1 FROM (SELECT set_config('checkout.events', $1, false)) s) END",
			 1, NULL, params, NULL, NULL, 0);
	bool ok = PQresultStatus(res) == PGRES_TUPLES_OK;
	bool differs = ok && PQntuples(res) == 1 && !PQgetisnull(res, 0, 0);
	PQclear(res);
	if (ok && differs) {
		char sql[160];
		snprintf(sql, sizeof(sql),
			 "DO $$BEGIN EXECUTE format('ALTER DATABASE %%I SET checkout.events = %%L', "
			 "current_database(), '%s'); END$$",
			 strcmp(mode, "outbox") ? "wal" : "outbox");
		res = PQexec(conn, sql);
		ok = PQresultStatus(res) == PGRES_COMMAND_OK;
		if (!ok)
			errbuf_set(err, errlen, "setting checkout.events = %s on the database: %s", mode,
				   db_error_message(res, conn));
		PQclear(res);
	} else if (!ok) {
		errbuf_set(err, errlen, "reading checkout.events: %s", PQerrorMessage(conn));
	}
	return ok;
}
