/* testenv.c - see testenv.h. */
#define _GNU_SOURCE
#include "testenv.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "checkout/migrate.h"

void testenv_sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

char *testenv_db_new(void)
{
	static int counter;
	char name[64], sql[160], err[1024];
	snprintf(name, sizeof(name), "t_%d_%d_%ld", (int)getpid(), ++counter, (long)time(NULL) % 100000);

	PGconn *admin = PQconnectdb("dbname=postgres");
	cr_assert(PQstatus(admin) == CONNECTION_OK, "cannot reach PostgreSQL (run under scripts/test): %s",
		  PQerrorMessage(admin));
	snprintf(sql, sizeof(sql), "CREATE DATABASE %s", name);
	PGresult *res = PQexec(admin, sql);
	cr_assert(PQresultStatus(res) == PGRES_COMMAND_OK, "%s: %s", sql, PQresultErrorMessage(res));
	PQclear(res);
	PQfinish(admin);

	char *conninfo = NULL;
	cr_assert(asprintf(&conninfo, "dbname=%s", name) > 0);
	PGconn *conn = testenv_db_connect(conninfo);
	int applied = 0;
	bool ok = migrate_run(conn, CHECKOUT_MIGRATIONS_DIR, &applied, err, sizeof(err));
	PQfinish(conn);
	cr_assert(ok, "migrations failed: %s", err);
	return conninfo;
}

PGconn *testenv_db_connect(const char *conninfo)
{
	PGconn *conn = PQconnectdb(conninfo);
	cr_assert(PQstatus(conn) == CONNECTION_OK, "connect %s: %s", conninfo, PQerrorMessage(conn));
	return conn;
}

long testenv_query_long(PGconn *conn, const char *sql)
{
	PGresult *res = PQexec(conn, sql);
	cr_assert(PQresultStatus(res) == PGRES_TUPLES_OK, "%s: %s", sql, PQresultErrorMessage(res));
	cr_assert(PQntuples(res) >= 1, "%s: no rows", sql);
	long v = PQgetisnull(res, 0, 0) ? 0 : strtol(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	return v;
}

void testenv_exec(PGconn *conn, const char *sql)
{
	PGresult *res = PQexec(conn, sql);
	ExecStatusType st = PQresultStatus(res);
	cr_assert(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK, "%s: %s", sql, PQresultErrorMessage(res));
	PQclear(res);
}

void testenv_spawn(struct testenv_proc *p, const char *program, const char *const *args,
		   const char *const *env)
{
	static int counter;
	const char *argv[64];
	int argc = 0;
	char path[512];

	memset(p, 0, sizeof(*p));
	/* a path (a script of scripts/) as it is, a bare name from build/bin */
	const char *slash = strrchr(program, '/');
	snprintf(p->name, sizeof(p->name), "%s", slash ? slash + 1 : program);
	if (slash)
		snprintf(path, sizeof(path), "%s", program);
	else
		snprintf(path, sizeof(path), "%s/%s", CHECKOUT_BIN_DIR, program);
	mkdir(CHECKOUT_TEST_TMP, 0755);
	snprintf(p->log_path, sizeof(p->log_path), "%s/%s.%d.%d.log", CHECKOUT_TEST_TMP, p->name,
		 (int)getpid(), ++counter);
	argv[argc++] = path;
	for (int i = 0; args && args[i] && argc < 63; i++)
		argv[argc++] = args[i];
	argv[argc] = NULL;

	fflush(NULL);
	pid_t pid = fork();
	cr_assert(pid >= 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		int fd = open(p->log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd >= 0) {
			dup2(fd, STDOUT_FILENO);
			dup2(fd, STDERR_FILENO);
			close(fd);
		}
		for (int i = 0; env && env[i]; i++)
			putenv((char *)env[i]);
		setenv("NO_COLOR", "1", 1);
		execv(path, (char *const *)argv);
		fprintf(stderr, "exec %s: %s\n", path, strerror(errno));
		_exit(127);
	}
	p->pid = pid;
}

bool testenv_exited(struct testenv_proc *p, int *status)
{
	int st;
	if (p->pid <= 0)
		return true;
	pid_t r = waitpid(p->pid, &st, WNOHANG);
	if (r != p->pid)
		return false;
	p->pid = 0;
	if (status)
		*status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	return true;
}

int testenv_stop(struct testenv_proc *p, int sig)
{
	int status = -1;
	if (p->pid <= 0)
		return status;
	kill(p->pid, sig);
	for (int i = 0; i < 1000; i++) {
		if (testenv_exited(p, &status))
			return status;
		testenv_sleep_ms(10);
	}
	kill(p->pid, SIGKILL);
	int st;
	waitpid(p->pid, &st, 0);
	p->pid = 0;
	return 128 + SIGKILL;
}

void testenv_stop_clean(struct testenv_proc *p)
{
	if (p->pid <= 0)
		return;
	int status = testenv_stop(p, SIGTERM);
	cr_expect_eq(status, 0, "%s exited with %d on SIGTERM (23: the sanitizer reported a leak), see %s",
		     p->name, status, p->log_path);
}

char *testenv_read_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	char *buf = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&buf, &len);
	char chunk[8192];
	size_t n;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		fwrite(chunk, 1, n, mem);
	fclose(mem);
	fclose(f);
	return buf;
}

int testenv_count_log(const struct testenv_proc *p, const char *needle)
{
	char *text = testenv_read_file(p->log_path), *save = NULL;
	int count = 0;
	for (char *line = text ? strtok_r(text, "\n", &save) : NULL; line; line = strtok_r(NULL, "\n", &save))
		if (strstr(line, needle))
			count++;
	free(text);
	return count;
}

bool testenv_wait_log(const struct testenv_proc *p, const char *needle, int timeout_ms)
{
	for (int waited = 0; waited <= timeout_ms; waited += 20) {
		if (testenv_count_log(p, needle) > 0)
			return true;
		testenv_sleep_ms(20);
	}
	return false;
}

const char *testenv_broker_start(struct testenv_proc *p)
{
	static __thread char bootstrap[256];
	testenv_spawn(p, "checkout-broker", NULL, NULL);
	for (int i = 0; i < 500; i++) {
		char *text = testenv_read_file(p->log_path);
		char *at = text ? strstr(text, "bootstrap.servers=") : NULL;
		if (at) {
			at += strlen("bootstrap.servers=");
			size_t len = strcspn(at, "\r\n");
			if (at[len] == '\n') {
				snprintf(bootstrap, sizeof(bootstrap), "%.*s", (int)len, at);
				free(text);
				return bootstrap;
			}
		}
		free(text);
		testenv_sleep_ms(10);
	}
	cr_assert_fail("the broker did not announce its address; see %s", p->log_path);
	return NULL;
}

int testenv_free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	cr_assert(fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
		  getsockname(fd, (struct sockaddr *)&a, &len) == 0);
	close(fd);
	return ntohs(a.sin_port);
}

bool testenv_wait_port(int port, int timeout_ms)
{
	for (int waited = 0; waited <= timeout_ms; waited += 20) {
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		struct sockaddr_in a = {.sin_family = AF_INET,
					.sin_port = htons((uint16_t)port),
					.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		int r = connect(fd, (struct sockaddr *)&a, sizeof(a));
		close(fd);
		if (r == 0)
			return true;
		testenv_sleep_ms(20);
	}
	return false;
}

struct growbuf {
	char *data;
	size_t len;
};

static size_t collect(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct growbuf *b = userdata;
	size_t n = size * nmemb;
	char *grown = realloc(b->data, b->len + n + 1);
	if (!grown)
		return 0;
	memcpy(grown + b->len, ptr, n);
	b->data = grown;
	b->len += n;
	b->data[b->len] = '\0';
	return n;
}

bool http_call(const char *method, const char *url, const char *const *headers, const char *body,
	       struct http_response *out)
{
	struct growbuf resp = {0}, head = {0};
	struct curl_slist *list = NULL;
	bool ok = false;

	memset(out, 0, sizeof(*out));
	CURL *curl = curl_easy_init();
	if (!curl)
		return false;
	bool typed = false;
	for (int i = 0; headers && headers[i]; i++) {
		list = curl_slist_append(list, headers[i]);
		typed = typed || !strncasecmp(headers[i], "Content-Type:", 13);
	}
	if (body && !typed)
		list = curl_slist_append(list, "Content-Type: application/json");
	list = curl_slist_append(list, "Expect:");
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, list);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT, 30L);
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	if (body) {
		curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
	}
	if (!strcmp(method, "HEAD"))
		curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, &resp);
	curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, collect);
	curl_easy_setopt(curl, CURLOPT_HEADERDATA, &head);
	if (curl_easy_perform(curl) == CURLE_OK) {
		curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &out->status);
		out->body = resp.data ? resp.data : strdup("");
		out->headers = head.data ? head.data : strdup("");
		out->json = json_loads(out->body, 0, NULL);
		resp.data = head.data = NULL;
		ok = true;
	}
	free(resp.data);
	free(head.data);
	curl_slist_free_all(list);
	curl_easy_cleanup(curl);
	return ok;
}

const char *http_header(const struct http_response *r, const char *name, char *buf, size_t buflen)
{
	size_t nlen = strlen(name);
	for (const char *line = r->headers; line && *line;) {
		const char *eol = strstr(line, "\r\n");
		size_t len = eol ? (size_t)(eol - line) : strlen(line);
		if (len > nlen && line[nlen] == ':' && !strncasecmp(line, name, nlen)) {
			const char *v = line + nlen + 1;
			while (*v == ' ')
				v++;
			snprintf(buf, buflen, "%.*s", (int)(len - (size_t)(v - line)), v);
			return buf;
		}
		line = eol ? eol + 2 : line + len;
	}
	return NULL;
}

void http_response_free(struct http_response *r)
{
	free(r->body);
	free(r->headers);
	json_decref(r->json);
	memset(r, 0, sizeof(*r));
}
