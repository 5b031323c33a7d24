/* checkout-broker: librdkafka's mock Kafka cluster on loopback.
 *
 * It speaks the real Kafka protocol to real librdkafka clients, but keeps
 * every message in memory: stopping it loses the topic. Per partition it
 * keeps the newest 5 MiB or 100,000 produce batches and silently drops the
 * oldest beyond that (fixed in the mock cluster), so views are rebuilt from
 * the database (scripts/rebuild), not from the topic's beginning. It prints its
 * bootstrap address as "bootstrap.servers=HOST:PORT" on stdout (and into
 * --bootstrap-file when given). SIGUSR1 takes every broker down, SIGUSR2
 * brings them back: the tests use this to simulate an outage. SIGHUP toggles
 * a 3 s round-trip delay on every broker (a slow broker: requests are
 * applied at once, responses arrive late), which lets the relay's tests
 * kill it while a batch is produced but not yet acknowledged.
 */
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "checkout/config.h"
#include "checkout/kafka.h"
#include "checkout/log.h"

static volatile sig_atomic_t stop_requested;
static volatile sig_atomic_t want_down;
static volatile sig_atomic_t want_up;
static volatile sig_atomic_t want_slow_toggle;

#define SLOW_RTT_MS 3000

static void on_signal(int sig)
{
	if (sig == SIGUSR1)
		want_down = 1;
	else if (sig == SIGUSR2)
		want_up = 1;
	else if (sig == SIGHUP)
		want_slow_toggle = 1;
	else
		stop_requested = 1;
}

static bool write_bootstrap_file(const char *path, const char *bootstrap)
{
	char tmp[4096];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	FILE *f = fopen(tmp, "w");
	if (!f)
		return false;
	bool ok = fprintf(f, "%s\n", bootstrap) > 0;
	ok = fclose(f) == 0 && ok;
	/* rename, so a reader never sees half an address */
	return ok && rename(tmp, path) == 0;
}

/*
 * The mock cluster accepts connections without TCP_NODELAY. A response it
 * writes while an earlier one is still unacknowledged then waits for the
 * client's delayed ACK, 40 ms on Linux: a fifth of the relay's produce
 * round trips took 40-50 ms instead of 1. Accepted sockets inherit the
 * option from their listener, so setting it on every socket we have right
 * after the cluster starts (its listeners, nothing else yet) covers all
 * connections to come. Kafka's own brokers set it too.
 */
static void listeners_nodelay(void)
{
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d))) {
		int fd = atoi(e->d_name), one = 1;
		struct stat st;
		if (fd > 2 && fd != dirfd(d) && fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode))
			/* fails, harmlessly, on sockets that are not TCP */
			(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	closedir(d);
}

int main(int argc, char **argv)
{
	struct config cfg;
	rd_kafka_t *rk = NULL;
	rd_kafka_mock_cluster_t *mcluster = NULL;
	int status = EXIT_FAILURE;
	char err[512];

	enum config_result r = config_load(&cfg, CONFIG_BROKER, "broker", argc, argv);
	if (r != CONFIG_OK) {
		status = r == CONFIG_EXIT_OK ? EXIT_SUCCESS : EXIT_FAILURE;
		goto out;
	}
	log_init(cfg.program, cfg.log_level, cfg.log_format);

	rd_kafka_conf_t *conf = kafka_conf_new(&cfg);
	if (!conf)
		goto out;
	/* the handle only anchors the mock cluster; it never connects anywhere */
	if (!kafka_conf_set(conf, "bootstrap.servers", "")) {
		rd_kafka_conf_destroy(conf);
		goto out;
	}
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
	if (!rk) {
		rd_kafka_conf_destroy(conf);
		log_error("cannot create the mock cluster's handle: %s", err);
		goto out;
	}
	mcluster = rd_kafka_mock_cluster_new(rk, cfg.broker_count);
	if (!mcluster) {
		log_error("cannot start the mock cluster");
		goto out;
	}
	listeners_nodelay();
	/* products too: the mock cluster cannot compact it (README, "CRUD as events") */
	const char *topics[] = {cfg.orders_topic, cfg.products_topic};
	for (size_t t = 0; t < sizeof(topics) / sizeof(topics[0]); t++) {
		rd_kafka_resp_err_t kerr = rd_kafka_mock_topic_create(mcluster, topics[t], cfg.partitions, 1);
		if (kerr) {
			log_error("cannot create topic %s: %s", topics[t], rd_kafka_err2str(kerr));
			goto out;
		}
	}
	const char *bootstrap = rd_kafka_mock_cluster_bootstraps(mcluster);
	if (*cfg.bootstrap_file && !write_bootstrap_file(cfg.bootstrap_file, bootstrap)) {
		log_error("cannot write %s: %s", cfg.bootstrap_file, strerror(errno));
		goto out;
	}
	printf("bootstrap.servers=%s\n", bootstrap);
	fflush(stdout);
	log_info("mock Kafka cluster (in memory; each partition keeps its newest 5 MiB) listening on %s, "
		 "topics %s and %s with %d partitions each",
		 bootstrap, cfg.orders_topic, cfg.products_topic, cfg.partitions);

	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGUSR1, &sa, NULL);
	sigaction(SIGUSR2, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);

	bool slow = false;
	while (!stop_requested) {
		if (want_down) {
			want_down = 0;
			rd_kafka_mock_broker_set_down(mcluster, -1);
			log_warn("all brokers are down (SIGUSR1); SIGUSR2 brings them back");
		}
		if (want_up) {
			want_up = 0;
			rd_kafka_mock_broker_set_up(mcluster, -1);
			log_info("all brokers are up again");
		}
		if (want_slow_toggle) {
			want_slow_toggle = 0;
			slow = !slow;
			rd_kafka_mock_broker_set_rtt(mcluster, -1, slow ? SLOW_RTT_MS : 0);
			if (slow)
				log_warn("brokers are slow: %d ms round trip (SIGHUP again to undo)",
					 SLOW_RTT_MS);
			else
				log_info("brokers are fast again");
		}
		usleep(50 * 1000);
	}
	log_info("stopping; the topic's messages are gone with it");
	status = EXIT_SUCCESS;
out:
	if (mcluster)
		rd_kafka_mock_cluster_destroy(mcluster);
	if (rk)
		rd_kafka_destroy(rk);
	if (cfg.bootstrap_file && *cfg.bootstrap_file)
		unlink(cfg.bootstrap_file);
	config_free(&cfg);
	return status;
}
