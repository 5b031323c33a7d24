/* checkout-migrate: apply pending migrations and exit. */
#include <stdio.h>
#include <stdlib.h>

#include "checkout/config.h"
#include "checkout/db.h"
#include "checkout/log.h"
#include "checkout/migrate.h"

int main(int argc, char **argv)
{
	struct config cfg;
	PGconn *conn = NULL;
	int status = EXIT_FAILURE;
	char err[1024];

	enum config_result r = config_load(&cfg, CONFIG_MIGRATE, "migrate", argc, argv);
	if (r != CONFIG_OK) {
		status = r == CONFIG_EXIT_OK ? EXIT_SUCCESS : EXIT_FAILURE;
		goto out;
	}
	log_init(cfg.program, cfg.log_level, cfg.log_format);
	conn = db_connect(cfg.database_url, NULL, err, sizeof(err));
	if (!conn) {
		log_error("%s", err);
		goto out;
	}
	int applied = 0;
	if (!migrate_run(conn, cfg.migrations_dir, &applied, err, sizeof(err))) {
		log_error("%s", err);
		goto out;
	}
	log_info("database is up to date (%d migration%s applied now)", applied, applied == 1 ? "" : "s");
	status = EXIT_SUCCESS;
out:
	PQfinish(conn);
	config_free(&cfg);
	return status;
}
