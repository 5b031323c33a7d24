/* client.c - HTTP/1.1 over one blocking keep-alive socket. */
#define _GNU_SOURCE /* memmem, strcasestr */
#include "client.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

/* a response that takes longer than this is a transport error */
#define CLIENT_TIMEOUT_S 30

bool client_parse_url(const char *url, char *host, size_t hostlen, char *port, size_t portlen)
{
	const char *p = url;
	if (strncmp(p, "http://", 7) != 0)
		return false;
	p += 7;
	size_t n = strcspn(p, ":/");
	if (n == 0 || n >= hostlen)
		return false;
	memcpy(host, p, n);
	host[n] = '\0';
	p += n;
	if (*p == ':') {
		p++;
		size_t m = strspn(p, "0123456789");
		if (m == 0 || m >= portlen || (p[m] != '\0' && p[m] != '/'))
			return false;
		memcpy(port, p, m);
		port[m] = '\0';
	} else {
		snprintf(port, portlen, "80");
	}
	return true;
}

void client_init(struct client *c, const char *host, const char *port)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->host, sizeof(c->host), "%s", host);
	snprintf(c->port, sizeof(c->port), "%s", port);
	c->fd = -1;
}

void client_close(struct client *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->len = 0;
}

static bool client_connect(struct client *c)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	struct addrinfo *res = NULL;
	bool ok = false;

	if (getaddrinfo(c->host, c->port, &hints, &res) != 0)
		goto out;
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0)
			continue;
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
			int one = 1;
			struct timeval tv = {.tv_sec = CLIENT_TIMEOUT_S};
			/* small requests must leave at once, not wait for Nagle */
			(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
			(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
			(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
			c->fd = fd;
			c->len = 0;
			c->connects++;
			ok = true;
			break;
		}
		close(fd);
	}
out:
	if (res)
		freeaddrinfo(res);
	return ok;
}

/* Read more bytes into the buffer; false on EOF, error or timeout. */
static bool client_fill(struct client *c)
{
	/* one byte stays free for a terminating NUL, so the header parser can use string functions */
	if (c->len + 1 >= sizeof(c->buf))
		return false;
	for (;;) {
		ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len, 0);
		if (n > 0) {
			c->len += (size_t)n;
			c->buf[c->len] = '\0';
			return true;
		}
		if (n < 0 && errno == EINTR)
			continue;
		return false;
	}
}

/* Drop the first n bytes of the buffer. */
static void client_consume(struct client *c, size_t n)
{
	memmove(c->buf, c->buf + n, c->len - n);
	c->len -= n;
	c->buf[c->len] = '\0';
}

/* Append up to the sample's room of body bytes to sample. */
static void sample_add(char *sample, size_t samplelen, size_t *used, const char *data, size_t n)
{
	if (!sample || samplelen == 0)
		return;
	size_t room = samplelen - 1 - *used;
	if (n > room)
		n = room;
	memcpy(sample + *used, data, n);
	*used += n;
	sample[*used] = '\0';
}

/* Read and drop (or sample) exactly n body bytes. */
static bool client_body(struct client *c, size_t n, char *sample, size_t samplelen, size_t *used)
{
	while (n > 0) {
		if (c->len == 0 && !client_fill(c))
			return false;
		size_t take = c->len < n ? c->len : n;
		sample_add(sample, samplelen, used, c->buf, take);
		client_consume(c, take);
		n -= take;
	}
	return true;
}

/* Read one CRLF-terminated line into line (without the CRLF). */
static bool client_line(struct client *c, char *line, size_t linelen)
{
	for (;;) {
		char *eol = memmem(c->buf, c->len, "\r\n", 2);
		if (eol) {
			size_t n = (size_t)(eol - c->buf);
			if (n >= linelen)
				return false;
			memcpy(line, c->buf, n);
			line[n] = '\0';
			client_consume(c, n + 2);
			return true;
		}
		if (!client_fill(c))
			return false;
	}
}

static bool client_chunked(struct client *c, char *sample, size_t samplelen, size_t *used)
{
	char line[128];
	for (;;) {
		if (!client_line(c, line, sizeof(line)))
			return false;
		char *end;
		unsigned long size = strtoul(line, &end, 16);
		if (end == line)
			return false;
		if (size == 0)
			break;
		if (!client_body(c, size, sample, samplelen, used) || !client_line(c, line, sizeof(line)))
			return false;
	}
	/* trailer fields, up to the empty line */
	do {
		if (!client_line(c, line, sizeof(line)))
			return false;
	} while (line[0] != '\0');
	return true;
}

int client_post(struct client *c, const char *path, const char *body, size_t len, char *sample,
		size_t samplelen)
{
	char head[512];
	size_t used = 0;
	int status = 0;
	bool keep = true;

	if (sample && samplelen)
		sample[0] = '\0';
	if (c->fd < 0 && !client_connect(c))
		goto out;

	int hn = snprintf(head, sizeof(head),
			  "POST %s HTTP/1.1\r\nHost: %s:%s\r\nContent-Type: application/json\r\n"
			  "Content-Length: %zu\r\n\r\n",
			  path, c->host, c->port, len);
	if (hn < 0 || (size_t)hn >= sizeof(head))
		goto out;
	struct iovec iov[2] = {{head, (size_t)hn}, {(void *)body, len}};
	struct msghdr msg = {.msg_iov = iov, .msg_iovlen = 2};
	size_t want = (size_t)hn + len;
	ssize_t sent = sendmsg(c->fd, &msg, MSG_NOSIGNAL);
	if (sent < 0 || (size_t)sent != want)
		goto out; /* a short send of a few hundred bytes means the socket is broken */

	/* status line and headers */
	char *hend;
	while (!(hend = memmem(c->buf, c->len, "\r\n\r\n", 4))) {
		if (!client_fill(c))
			goto out;
	}
	size_t hlen = (size_t)(hend - c->buf) + 4;
	int code = 0;
	if (sscanf(c->buf, "HTTP/1.%*d %d", &code) != 1 || code < 100 || code > 599)
		goto out;
	long content_length = -1;
	bool chunked = false;
	for (char *p = memmem(c->buf, hlen, "\r\n", 2); p && p + 2 < hend;
	     p = memmem(p + 2, (size_t)(hend - p), "\r\n", 2)) {
		char *name = p + 2;
		if (strncasecmp(name, "Content-Length:", 15) == 0)
			content_length = strtol(name + 15, NULL, 10);
		else if (strncasecmp(name, "Transfer-Encoding:", 18) == 0) {
			char *v = strcasestr(name, "chunked");
			chunked = v && v < hend;
		} else if (strncasecmp(name, "Connection:", 11) == 0 &&
			   strncasecmp(name + 11, " close", 6) == 0)
			keep = false;
	}
	client_consume(c, hlen);

	if (chunked) {
		if (!client_chunked(c, sample, samplelen, &used))
			goto out;
	} else if (content_length >= 0) {
		if (!client_body(c, (size_t)content_length, sample, samplelen, &used))
			goto out;
	} else if (code != 204 && code != 304 && code >= 200) {
		/* no length: the body runs to the end of the connection */
		while (client_fill(c)) {
			sample_add(sample, samplelen, &used, c->buf, c->len);
			c->len = 0;
		}
		keep = false;
	}
	status = code;
out:
	if (status == 0 || !keep)
		client_close(c);
	return status;
}
