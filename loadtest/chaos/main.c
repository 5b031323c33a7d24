/* checkout-chaos: the driver and the checker of scripts/chaos (see chaos.h).
 *
 *   checkout-chaos setup                      insert the run's products
 *   checkout-chaos drive --url URL --out FILE [--rate N] [--retry-seconds S]
 *                        [--attempt-timeout S] [--max-inflight N] [--duration S]
 *                        [--key-prefix P] [--seed N]
 *   checkout-chaos check --answers FILE --spool DIR [--rounds FILE] [--delay S]
 *
 * The database is DATABASE_URL (libpq's PG* variables when unset); the
 * broker KAFKA_BROKERS, the topic ORDERS_TOPIC (default orders), as for
 * every program. Exit status: 0 fine, 1 an invariant is violated (check),
 * 2 the tool itself failed or was used wrongly.
 */
#define _GNU_SOURCE
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chaos.h"
#include "checkout/db.h"
#include "checkout/log.h"

static const char usage[] =
    "usage: checkout-chaos setup\n"
    "       checkout-chaos drive --url URL --out FILE [--rate N] [--retry-seconds S] [--attempt-timeout S]\n"
    "                            [--max-inflight N] [--duration S] [--key-prefix P] [--seed N]\n"
    "       checkout-chaos check --answers FILE --spool DIR [--rounds FILE] [--delay S]\n";

static const char *env_or(const char *name, const char *fallback)
{
	const char *v = getenv(name);
	return v && *v ? v : fallback;
}

/* A positive number from an option, or exit 2 naming it. */
static double positive(const char *name, const char *arg)
{
	char *end;
	double v = strtod(arg, &end);
	if (end == arg || *end || !(v > 0)) {
		fprintf(stderr, "checkout-chaos: --%s must be a positive number, not \"%s\"\n", name, arg);
		exit(2);
	}
	return v;
}

static int cmd_setup(void)
{
	char err[512];
	PGconn *conn = db_connect(env_or("DATABASE_URL", ""), NULL, err, sizeof(err));
	if (!conn) {
		log_error("database: %s", err);
		return 2;
	}
	bool ok = chaos_setup(conn);
	PQfinish(conn);
	return ok ? 0 : 2;
}

static int cmd_drive(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"url", required_argument, NULL, 'u'},	     {"out", required_argument, NULL, 'o'},
	    {"rate", required_argument, NULL, 'r'},	     {"retry-seconds", required_argument, NULL, 'R'},
	    {"attempt-timeout", required_argument, NULL, 't'}, {"max-inflight", required_argument, NULL, 'm'},
	    {"duration", required_argument, NULL, 'd'},	     {"key-prefix", required_argument, NULL, 'k'},
	    {"seed", required_argument, NULL, 's'},	     {NULL, 0, NULL, 0},
	};
	char prefix[32];
	snprintf(prefix, sizeof(prefix), "k%d", (int)getpid());
	struct chaos_drive_opts o = {.rate = 50, .retry_seconds = 90, .attempt_timeout = 10, .max_inflight = 64,
				     .key_prefix = prefix};
	int c;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'u': o.url = optarg; break;
		case 'o': o.out_path = optarg; break;
		case 'r': o.rate = positive("rate", optarg); break;
		case 'R': o.retry_seconds = positive("retry-seconds", optarg); break;
		case 't': o.attempt_timeout = positive("attempt-timeout", optarg); break;
		case 'm': o.max_inflight = (int)positive("max-inflight", optarg); break;
		case 'd': o.duration = positive("duration", optarg); break;
		case 'k': o.key_prefix = optarg; break;
		case 's': o.seed = (unsigned)positive("seed", optarg); break;
		default: fputs(usage, stderr); return 2;
		}
	}
	if (!o.url || !o.out_path || optind != argc || strlen(o.key_prefix) > 24 || o.max_inflight < 1) {
		fputs(usage, stderr);
		return 2;
	}
	return chaos_drive(&o) ? 0 : 2;
}

static int cmd_check(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"answers", required_argument, NULL, 'a'}, {"rounds", required_argument, NULL, 'r'},
	    {"spool", required_argument, NULL, 's'},   {"delay", required_argument, NULL, 'd'},
	    {NULL, 0, NULL, 0},
	};
	struct chaos_check_opts o = {
	    .database_url = env_or("DATABASE_URL", ""),
	    .kafka_brokers = env_or("KAFKA_BROKERS", "127.0.0.1:9092"),
	    .topic = env_or("ORDERS_TOPIC", "orders"),
	    .delay_threshold = 1.0,
	};
	int c;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'a': o.answers_path = optarg; break;
		case 'r': o.rounds_path = optarg; break;
		case 's': o.spool_dir = optarg; break;
		case 'd': o.delay_threshold = positive("delay", optarg); break;
		default: fputs(usage, stderr); return 2;
		}
	}
	if (!o.answers_path || !o.spool_dir || optind != argc) {
		fputs(usage, stderr);
		return 2;
	}
	return chaos_check(&o);
}

int main(int argc, char **argv)
{
	const char *level = env_or("LOG_LEVEL", "info");
	log_init("chaos", !strcmp(level, "debug") ? LOG_DEBUG : !strcmp(level, "warn") ? LOG_WARN
							    : !strcmp(level, "error") ? LOG_ERROR
										      : LOG_INFO,
		 LOG_FORMAT_TEXT);
	if (argc < 2) {
		fputs(usage, stderr);
		return 2;
	}
	if (!strcmp(argv[1], "setup") && argc == 2)
		return cmd_setup();
	if (!strcmp(argv[1], "drive"))
		return cmd_drive(argc - 1, argv + 1);
	if (!strcmp(argv[1], "check"))
		return cmd_check(argc - 1, argv + 1);
	fputs(usage, stderr);
	return 2;
}
