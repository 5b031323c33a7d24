/* serverenv.c - see serverenv.h. */
#define _GNU_SOURCE
#include "serverenv.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void serverenv_start(struct serverenv *s, const char *seed_sql, const char *const *env)
{
	char db_env[256], listen_env[64];
	const char *all_env[32];
	int n = 0;

	memset(s, 0, sizeof(*s));
	s->db = testenv_db_new();
	s->conn = testenv_db_connect(s->db);
	if (seed_sql)
		testenv_exec(s->conn, seed_sql);
	s->port = testenv_free_port();
	snprintf(s->base, sizeof(s->base), "http://127.0.0.1:%d", s->port);
	snprintf(db_env, sizeof(db_env), "DATABASE_URL=%s", s->db);
	snprintf(listen_env, sizeof(listen_env), "LISTEN=127.0.0.1:%d", s->port);
	all_env[n++] = db_env;
	all_env[n++] = listen_env;
	all_env[n++] = "LOG_LEVEL=debug";
	for (int i = 0; env && env[i] && n < 31; i++)
		all_env[n++] = env[i];
	all_env[n] = NULL;
	testenv_spawn(&s->proc, "checkout-server", NULL, all_env);
	cr_assert(testenv_wait_log(&s->proc, "listening on", 20000), "server did not start, see %s",
		  s->proc.log_path);
	cr_assert(testenv_wait_port(s->port, 5000));
}

void serverenv_stop(struct serverenv *s)
{
	if (s->proc.pid > 0) {
		int status = testenv_stop(&s->proc, SIGTERM);
		cr_expect_eq(status, 0, "checkout-server exited with %d, see %s", status, s->proc.log_path);
	}
	PQfinish(s->conn);
	s->conn = NULL;
	free(s->db);
	s->db = NULL;
}

void serverenv_call(struct serverenv *s, const char *method, const char *path, const char *const *headers,
		    const char *body, struct http_response *out)
{
	char url[512];
	snprintf(url, sizeof(url), "%s%s", s->base, path);
	cr_assert(http_call(method, url, headers, body, out), "%s %s: transport error", method, url);
}

double serverenv_metric(struct serverenv *s, const char *sample)
{
	struct http_response r;
	double value = -1;
	serverenv_call(s, "GET", "/metrics", NULL, NULL, &r);
	size_t n = strlen(sample);
	for (const char *line = r.body; line && *line;) {
		if (!strncmp(line, sample, n) && line[n] == ' ') {
			value = strtod(line + n + 1, NULL);
			break;
		}
		const char *eol = strchr(line, '\n');
		line = eol ? eol + 1 : NULL;
	}
	http_response_free(&r);
	return value;
}
