/* smtp_sink.c - see smtp_sink.h. */
#define _GNU_SOURCE
#include "smtp_sink.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define SINK_MAX 256

struct smtp_sink {
	int fd;
	pthread_t thread;
	atomic_bool stop;
	pthread_mutex_t lock;
	int temp_failures;
	int count;
	char *messages[SINK_MAX];
};

static void sink_session(struct smtp_sink *s, int fd)
{
	FILE *in = fdopen(dup(fd), "r");
	char line[2048], rcpt[512] = "";
	if (!in)
		return;
	dprintf(fd, "220 sink ESMTP\r\n");
	while (fgets(line, sizeof(line), in)) {
		if (!strncasecmp(line, "EHLO", 4) || !strncasecmp(line, "HELO", 4)) {
			dprintf(fd, "250 sink\r\n");
		} else if (!strncasecmp(line, "MAIL FROM:", 10) || !strncasecmp(line, "RSET", 4) ||
			   !strncasecmp(line, "NOOP", 4)) {
			dprintf(fd, "250 OK\r\n");
		} else if (!strncasecmp(line, "RCPT TO:", 8)) {
			pthread_mutex_lock(&s->lock);
			bool fail = s->temp_failures > 0;
			if (fail)
				s->temp_failures--;
			pthread_mutex_unlock(&s->lock);
			if (fail) {
				dprintf(fd, "451 try again later\r\n");
				continue;
			}
			snprintf(rcpt, sizeof(rcpt), "%.*s", (int)strcspn(line + 8, "\r\n"), line + 8);
			dprintf(fd, "250 OK\r\n");
		} else if (!strncasecmp(line, "DATA", 4)) {
			char *data = NULL;
			size_t len = 0;
			FILE *mem = open_memstream(&data, &len);
			fprintf(mem, "RCPT %s\n", rcpt);
			dprintf(fd, "354 go ahead\r\n");
			while (fgets(line, sizeof(line), in) && strcmp(line, ".\r\n") != 0)
				fputs(line[0] == '.' ? line + 1 : line, mem);
			fclose(mem);
			pthread_mutex_lock(&s->lock);
			if (s->count < SINK_MAX)
				s->messages[s->count++] = data;
			else
				free(data);
			pthread_mutex_unlock(&s->lock);
			dprintf(fd, "250 OK queued\r\n");
		} else if (!strncasecmp(line, "QUIT", 4)) {
			dprintf(fd, "221 bye\r\n");
			break;
		} else {
			dprintf(fd, "502 not implemented\r\n");
		}
	}
	fclose(in);
}

static void *sink_main(void *arg)
{
	struct smtp_sink *s = arg;
	while (!atomic_load(&s->stop)) {
		struct pollfd p = {.fd = s->fd, .events = POLLIN};
		if (poll(&p, 1, 100) <= 0)
			continue;
		int c = accept(s->fd, NULL, NULL);
		if (c < 0)
			continue;
		sink_session(s, c);
		close(c);
	}
	return NULL;
}

struct smtp_sink *smtp_sink_start(int *port, int temp_failures)
{
	struct smtp_sink *s = calloc(1, sizeof(*s));
	cr_assert(s);
	pthread_mutex_init(&s->lock, NULL);
	s->temp_failures = temp_failures;
	s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	cr_assert(s->fd >= 0 && bind(s->fd, (struct sockaddr *)&a, sizeof(a)) == 0 && listen(s->fd, 8) == 0 &&
		  getsockname(s->fd, (struct sockaddr *)&a, &len) == 0);
	*port = ntohs(a.sin_port);
	cr_assert(pthread_create(&s->thread, NULL, sink_main, s) == 0);
	return s;
}

int smtp_sink_count(struct smtp_sink *s)
{
	pthread_mutex_lock(&s->lock);
	int n = s->count;
	pthread_mutex_unlock(&s->lock);
	return n;
}

char *smtp_sink_message(struct smtp_sink *s, int i)
{
	pthread_mutex_lock(&s->lock);
	char *copy = i >= 0 && i < s->count ? strdup(s->messages[i]) : NULL;
	pthread_mutex_unlock(&s->lock);
	return copy;
}

void smtp_sink_stop(struct smtp_sink *s)
{
	if (!s)
		return;
	atomic_store(&s->stop, true);
	pthread_join(s->thread, NULL);
	close(s->fd);
	for (int i = 0; i < s->count; i++)
		free(s->messages[i]);
	pthread_mutex_destroy(&s->lock);
	free(s);
}
