/* The settings table: defaults, environment, flags, and clear errors. */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <signal.h>
#include <stdlib.h>

#include "checkout/config.h"
#include "testenv.h"

Test(config, flags_override_environment)
{
	struct config cfg;
	setenv("ORDERS_TOPIC", "from-env", 1);
	setenv("DB_POOL_SIZE", "4", 1);
	char *argv[] = {"x", "--orders-topic=from-flag", "--listen", "127.0.0.1:9999", NULL};
	cr_assert_eq(config_load(&cfg, CONFIG_SERVER | CONFIG_RELAY, "t", 4, argv), CONFIG_OK);
	cr_expect_str_eq(cfg.orders_topic, "from-flag");
	cr_expect_eq(cfg.db_pool_size, 4);
	cr_expect_str_eq(cfg.listen_host, "127.0.0.1");
	cr_expect_eq(cfg.listen_port, 9999);
	config_free(&cfg);
	config_free(&cfg);
	unsetenv("ORDERS_TOPIC");
	unsetenv("DB_POOL_SIZE");
}

Test(config, defaults_when_nothing_is_set)
{
	struct config cfg;
	char *argv[] = {"x", NULL};
	cr_assert_eq(config_load(&cfg, CONFIG_SERVER, "t", 1, argv), CONFIG_OK);
	cr_expect_str_eq(cfg.listen, "127.0.0.1:8080");
	cr_expect_eq(cfg.isolation, ISOLATION_SERIALIZABLE);
	cr_expect_str_eq(config_isolation_sql(cfg.isolation), "SERIALIZABLE");
	config_free(&cfg);
}

Test(config, rejects_unknown_flag, .init = cr_redirect_stderr)
{
	struct config cfg;
	char *argv[] = {"x", "--no-such-thing", NULL};
	cr_assert_eq(config_load(&cfg, CONFIG_SERVER, "t", 2, argv), CONFIG_EXIT_ERROR);
	config_free(&cfg);
	fflush(stderr);
	cr_assert_stderr_eq_str("t: unknown option '--no-such-thing' (see --help)\n");
}

Test(config, rejects_port_out_of_range, .init = cr_redirect_stderr)
{
	struct config cfg;
	char *argv[] = {"x", "--listen=127.0.0.1:70000", NULL};
	cr_assert_eq(config_load(&cfg, CONFIG_SERVER, "t", 2, argv), CONFIG_EXIT_ERROR);
	config_free(&cfg);
	fflush(stderr);
	cr_assert_stderr_eq_str("t: listen: port '70000' is out of range 1..65535\n");
}

Test(config, rejects_bad_number_from_environment, .init = cr_redirect_stderr)
{
	struct config cfg;
	char *argv[] = {"x", NULL};
	setenv("DB_POOL_SIZE", "12abc", 1);
	cr_assert_eq(config_load(&cfg, CONFIG_SERVER, "t", 1, argv), CONFIG_EXIT_ERROR);
	unsetenv("DB_POOL_SIZE");
	config_free(&cfg);
	fflush(stderr);
	cr_assert_stderr_eq_str("t: DB_POOL_SIZE: '12abc' is not a whole number from 1 to 256\n");
}

Test(config, rejects_option_of_another_program, .init = cr_redirect_stderr)
{
	struct config cfg;
	char *argv[] = {"x", "--replay", NULL};
	cr_assert_eq(config_load(&cfg, CONFIG_SERVER, "t", 2, argv), CONFIG_EXIT_ERROR);
	config_free(&cfg);
}

Test(config, boolean_flag_needs_no_value)
{
	struct config cfg;
	char *argv[] = {"x", "--replay", "--since", "2026-01-01T00:00:00Z", NULL};
	cr_assert_eq(config_load(&cfg, CONFIG_RELAY, "t", 4, argv), CONFIG_OK);
	cr_expect(cfg.replay);
	cr_expect_str_eq(cfg.since, "2026-01-01T00:00:00Z");
	config_free(&cfg);
}

Test(config, help_lists_every_option_with_its_variable, .init = cr_redirect_stdout)
{
	struct config cfg;
	char *argv[] = {"x", "--help", NULL};
	cr_assert_eq(config_load(&cfg, CONFIG_SERVER, "server", 2, argv), CONFIG_EXIT_OK);
	config_free(&cfg);
	fflush(stdout);
	FILE *out = cr_get_redirected_stdout();
	char buf[16384];
	size_t n = fread(buf, 1, sizeof(buf) - 1, out);
	buf[n] = '\0';
	cr_expect(strstr(buf, "--database-url") && strstr(buf, "DATABASE_URL"));
	cr_expect(strstr(buf, "--admin-token") && strstr(buf, "ADMIN_TOKEN"));
	cr_expect(strstr(buf, "--isolation"));
	cr_expect(!strstr(buf, "--replay"), "relay-only options are not offered to the server");
}

Test(config, programs_exit_nonzero_with_one_line_on_bad_config)
{
	struct testenv_proc p;
	const char *args[] = {"--bogus", NULL};
	testenv_spawn(&p, "checkout-migrate", args, NULL);
	int status = 0;
	for (int i = 0; i < 500 && !testenv_exited(&p, &status); i++)
		testenv_sleep_ms(10);
	cr_expect_eq(status, 1);
	cr_expect_eq(testenv_count_log(&p, "unknown option '--bogus'"), 1);
}

Test(config, unreachable_database_is_one_clear_line_and_exit_1)
{
	const char *programs[] = {"checkout-migrate", "checkout-server", "checkout-relay", "checkout-email",
				  "checkout-inventory", "checkout-analytics"};
	const char *args[] = {"--database-url", "postgresql://127.0.0.1:1/nothing", NULL};
	const char *env[] = {"DB_WAIT_SECONDS=1", "LISTEN=127.0.0.1:1", NULL};
	for (size_t i = 0; i < sizeof(programs) / sizeof(programs[0]); i++) {
		struct testenv_proc p;
		testenv_spawn(&p, programs[i], args, env);
		int status = -1;
		for (int t = 0; t < 1000 && !testenv_exited(&p, &status); t++)
			testenv_sleep_ms(10);
		testenv_stop(&p, SIGKILL);
		cr_expect_eq(status, 1, "%s exits 1", programs[i]);
		cr_expect_eq(testenv_count_log(&p, "ERROR"), 1, "%s: one error line", programs[i]);
		cr_expect_eq(testenv_count_log(&p, "cannot connect to the database"), 1, "%s names the problem",
			     programs[i]);
	}
}

Test(config, server_refuses_a_port_out_of_range)
{
	struct testenv_proc p;
	const char *args[] = {"--listen", "127.0.0.1:99999", NULL};
	testenv_spawn(&p, "checkout-server", args, NULL);
	int status = -1;
	for (int t = 0; t < 500 && !testenv_exited(&p, &status); t++)
		testenv_sleep_ms(10);
	testenv_stop(&p, SIGKILL);
	cr_expect_eq(status, 1);
	cr_expect_eq(testenv_count_log(&p, "port '99999' is out of range 1..65535"), 1);
}
