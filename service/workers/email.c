/* email.c - checkout-email: a plain-text order confirmation per admitted order.
 *
 * Each confirmation is an RFC 5322 message file in the mail spool named by
 * the event id (<ce_id>.eml). It is written to a temporary file, fsynced and
 * renamed into place before the inbox row commits: a redelivered event
 * renames the same bytes onto the same name, so it can never produce a
 * second email.
 *
 * With --smtp-url the message is also handed to an SMTP server (libcurl),
 * the last step before the commit. That leg is at-least-once: a crash
 * between the SMTP hand-off and the commit sends it again on redelivery,
 * with the same Message-ID (<ce_id@checkout.example>) so the receiving side can tell.
 * A 5xx answer is permanent (dead letter); anything else is retried.
 */
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkout/log.h"
#include "worker.h"

static const struct db_stmt email_stmts[] = {
    WORKER_COMMON_STMTS("email"),
    /* the Date header, from the event's own time: a redelivery renders the same bytes */
    {"email_date", "SELECT to_char($1::timestamptz AT TIME ZONE 'UTC', "
		   "'Dy, DD Mon YYYY HH24:MI:SS \"+0000\"')"},
    {"email_sent_insert", "INSERT INTO email.sent (event_id, order_id, recipient, file) "
			  "VALUES ($1, $2::uuid, $3, $4)"},
    {NULL, NULL},
};

/* mkdir -p; true when the directory exists afterwards. */
static bool email_mkdirs(const char *path)
{
	char buf[PATH_MAX];
	if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
		return false;
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0755) != 0 && errno != EEXIST)
			return false;
		*p = '/';
	}
	return mkdir(buf, 0755) == 0 || errno == EEXIST;
}

/* Remove temporary files a killed predecessor left behind (".NAME.PID.tmp"). */
static void email_clean_spool(const char *dir)
{
	DIR *d = opendir(dir);
	char path[PATH_MAX];
	if (!d)
		return;
	for (struct dirent *e; (e = readdir(d));) {
		size_t len = strlen(e->d_name);
		if (e->d_name[0] != '.' || len < 5 || strcmp(e->d_name + len - 4, ".tmp") != 0)
			continue;
		if (snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) < (int)sizeof(path))
			unlink(path);
	}
	closedir(d);
}

static bool email_start(struct worker *w)
{
	if (!email_mkdirs(w->cfg.spool_dir)) {
		log_error("cannot create the mail spool %s: %s", w->cfg.spool_dir, strerror(errno));
		return false;
	}
	email_clean_spool(w->cfg.spool_dir);
	if (w->cfg.smtp_url[0]) {
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
			log_error("cannot initialise libcurl for SMTP");
			return false;
		}
		log_info("delivering confirmations into %s and by SMTP to %s", w->cfg.spool_dir,
			 w->cfg.smtp_url);
	} else {
		log_info("delivering confirmations into %s", w->cfg.spool_dir);
	}
	return true;
}

static void email_stop(struct worker *w)
{
	if (w->cfg.smtp_url[0])
		curl_global_cleanup();
}

struct email_upload {
	const char *data;
	size_t len, pos;
};

static size_t email_upload_read(char *buf, size_t size, size_t nmemb, void *userdata)
{
	struct email_upload *up = userdata;
	size_t n = size * nmemb;
	if (n > up->len - up->pos)
		n = up->len - up->pos;
	memcpy(buf, up->data + up->pos, n);
	up->pos += n;
	return n;
}

/*
 * Hand the message to the SMTP server at url. Returns WORKER_APPLIED when
 * it was accepted, WORKER_FAILED when the server refused it for good (5xx),
 * WORKER_RETRY otherwise; the reason goes into rep->line.
 */
static enum worker_result email_smtp_send(const char *url, const struct order_event *ev, const char *text,
					  size_t len, struct worker_report *rep)
{
	struct email_upload up = {text, len, 0};
	char rcpt[400];
	long code = 0;
	enum worker_result result = WORKER_RETRY;
	struct curl_slist *rcpts = NULL;
	CURL *curl = curl_easy_init();

	snprintf(rcpt, sizeof(rcpt), "<%s>", ev->email);
	rcpts = curl_slist_append(NULL, rcpt);
	if (!curl || !rcpts) {
		snprintf(rep->line, sizeof(rep->line), "SMTP: out of memory");
		goto out;
	}
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_MAIL_FROM, "<orders@checkout.example>");
	curl_easy_setopt(curl, CURLOPT_MAIL_RCPT, rcpts);
	curl_easy_setopt(curl, CURLOPT_READFUNCTION, email_upload_read);
	curl_easy_setopt(curl, CURLOPT_READDATA, &up);
	curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT, 30L);
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	CURLcode rc = curl_easy_perform(curl);
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
	if (rc == CURLE_OK) {
		result = WORKER_APPLIED;
		goto out;
	}
	snprintf(rep->line, sizeof(rep->line), "SMTP delivery to %s failed: %s (reply %ld)", ev->email,
		 curl_easy_strerror(rc), code);
	if (code >= 500 && code < 600)
		result = WORKER_FAILED;
out:
	curl_slist_free_all(rcpts);
	if (curl)
		curl_easy_cleanup(curl);
	return result;
}

/* Render the message into a new string (CRLF line ends); NULL when out of memory. */
static char *email_render(const struct order_event *ev, const char *date, size_t *len)
{
	char *text = NULL;
	char money[32], line_total[32], total[32], order[9];
	event_short_id(ev->order_id, order);
	FILE *f = open_memstream(&text, len);
	if (!f)
		return NULL;
	fprintf(f, "From: Checkout <orders@checkout.example>\r\n");
	fprintf(f, "To: <%s>\r\n", ev->email);
	/* the random tail of the UUIDv7, like order= in the log lines: its head is the time */
	fprintf(f, "Subject: Your order %s is confirmed\r\n", order);
	fprintf(f, "Date: %s\r\n", date);
	fprintf(f, "Message-ID: <%s@checkout.example>\r\n", ev->event_id);
	fprintf(f, "MIME-Version: 1.0\r\n");
	fprintf(f, "Content-Type: text/plain; charset=utf-8\r\n");
	fprintf(f, "Content-Transfer-Encoding: 8bit\r\n");
	fprintf(f, "X-Order-Id: %s\r\n", ev->order_id);
	fprintf(f, "\r\n");
	fprintf(f, "Hello,\r\n\r\nthank you for your order. We have reserved these items for you:\r\n\r\n");
	for (size_t i = 0; i < ev->n_items; i++) {
		const struct event_item *it = &ev->items[i];
		fprintf(f, "  %5d x %-24s at %10s  %12s\r\n", it->quantity, it->sku,
			event_money(it->unit_price_cents, money, sizeof(money)),
			event_money(it->unit_price_cents * it->quantity, line_total, sizeof(line_total)));
	}
	fprintf(f, "  %46s  %12s\r\n", "Total", event_money(ev->total_cents, total, sizeof(total)));
	fprintf(f, "\r\nOrder:    %s\r\nCustomer: %s <%s>\r\nPlaced:   %s\r\n", ev->order_id, ev->customer_id,
		ev->email, ev->created_at);
	fprintf(f, "\r\n-- \r\nCheckout\r\n");
	if (fclose(f) != 0) {
		free(text);
		return NULL;
	}
	return text;
}

/* Write data to dir/name atomically and durably. False with errno set. */
static bool email_write_file(const char *dir, const char *name, const char *data, size_t len, char *path,
			     size_t pathlen)
{
	char tmp[PATH_MAX];
	bool ok = false;
	int fd = -1, dfd = -1;

	snprintf(path, pathlen, "%s/%s", dir, name);
	snprintf(tmp, sizeof(tmp), "%s/.%s.%d.tmp", dir, name, (int)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		goto out;
	for (size_t done = 0; done < len;) {
		ssize_t n = write(fd, data + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			goto out;
		done += (size_t)n;
	}
	if (fsync(fd) != 0 || close(fd) != 0) {
		fd = -1;
		goto out;
	}
	fd = -1;
	if (rename(tmp, path) != 0)
		goto out;
	/* the rename itself must survive a crash before the inbox row commits */
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 || fsync(dfd) != 0)
		goto out;
	ok = true;
out:
	if (!ok) {
		int saved = errno;
		unlink(tmp);
		errno = saved;
	}
	if (fd >= 0)
		close(fd);
	if (dfd >= 0)
		close(dfd);
	return ok;
}

static enum worker_result email_apply(struct worker *w, PGconn *conn, const struct order_event *ev,
				      struct worker_report *rep)
{
	enum worker_result result = WORKER_FAILED;
	char name[96], path[PATH_MAX], total[32];
	char *text = NULL;
	size_t len = 0;

	const char *date_params[] = {ev->created_at};
	PGresult *res = worker_exec(conn, "email_date", 1, date_params, rep);
	if (!worker_res_ok(res))
		goto out;
	text = email_render(ev, PQgetvalue(res, 0, 0), &len);
	if (!text) {
		snprintf(rep->line, sizeof(rep->line), "out of memory rendering the message");
		result = WORKER_RETRY;
		goto out;
	}
	snprintf(name, sizeof(name), "%s.eml", ev->event_id);
	if (!email_write_file(w->cfg.spool_dir, name, text, len, path, sizeof(path))) {
		snprintf(rep->line, sizeof(rep->line), "cannot write %s/%s: %s", w->cfg.spool_dir, name,
			 strerror(errno));
		result = WORKER_RETRY;
		goto out;
	}
	PQclear(res);
	const char *sent_params[] = {ev->event_id, ev->order_id, ev->email, path};
	res = worker_exec(conn, "email_sent_insert", 4, sent_params, rep);
	if (!worker_res_ok(res))
		goto out;
	/* the SMTP hand-off last, when only the COMMIT can still fail: while a database
	 * problem is retried, the message must not go out once per try */
	if (w->cfg.smtp_url[0]) {
		result = email_smtp_send(w->cfg.smtp_url, ev, text, len, rep);
		if (result != WORKER_APPLIED)
			goto out;
	}
	snprintf(rep->line, sizeof(rep->line), "sent confirmation to %s: %zu item%s, total %s (%s%s)",
		 ev->email, ev->n_items, ev->n_items == 1 ? "" : "s",
		 event_money(ev->total_cents, total, sizeof(total)), name,
		 w->cfg.smtp_url[0] ? ", and by SMTP" : "");
	result = WORKER_APPLIED;
out:
	PQclear(res);
	free(text);
	return result;
}

static const struct worker_ops email_ops = {
    .name = "email",
    .stmts = email_stmts,
    .start = email_start,
    .apply = email_apply,
    .stop = email_stop,
};

int main(int argc, char **argv)
{
	return worker_main(&email_ops, argc, argv);
}
