/* client.c - HTTP/1.1 request writing and response framing for checkout-load. */
#define _GNU_SOURCE /* memmem */
#include "client.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

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

int client_connect(const char *host, const char *port)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	struct addrinfo *res = NULL;
	int fd = -1;

	if (getaddrinfo(host, port, &hints, &res) != 0)
		goto out;
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0)
			continue;
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
			int one = 1;
			/* small requests must leave at once, not wait for Nagle */
			(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
			int flags = fcntl(fd, F_GETFL);
			if (flags >= 0 && fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0)
				break;
		}
		close(fd);
		fd = -1;
	}
out:
	if (res)
		freeaddrinfo(res);
	return fd;
}

size_t client_format_post(char *buf, size_t buflen, const char *host, const char *port, const char *path,
			  const char *body, size_t len)
{
	int n = snprintf(buf, buflen,
			 "POST %s HTTP/1.1\r\nHost: %s:%s\r\nContent-Type: application/json\r\n"
			 "Content-Length: %zu\r\n\r\n%.*s",
			 path, host, port, len, (int)len, body);
	return n < 0 || (size_t)n >= buflen ? 0 : (size_t)n;
}

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

long client_parse_response(const char *buf, size_t len, int *status, bool *close, char *sample,
			   size_t samplelen)
{
	size_t used = 0;
	if (sample && samplelen)
		sample[0] = '\0';
	const char *hend = memmem(buf, len, "\r\n\r\n", 4);
	if (!hend)
		return len >= CLIENT_MAX_HEADER ? -1 : 0;
	size_t hlen = (size_t)(hend - buf) + 4;
	int code = 0;
	if (sscanf(buf, "HTTP/1.%*d %d", &code) != 1 || code < 100 || code > 599)
		return -1;

	long content_length = -1;
	bool chunked = false;
	*close = false;
	for (const char *p = memmem(buf, hlen, "\r\n", 2); p && p + 2 < hend;
	     p = memmem(p + 2, (size_t)(hend - p), "\r\n", 2)) {
		const char *name = p + 2;
		if (strncasecmp(name, "Content-Length:", 15) == 0) {
			content_length = strtol(name + 15, NULL, 10);
		} else if (strncasecmp(name, "Transfer-Encoding:", 18) == 0) {
			const char *v = strcasestr(name, "chunked");
			chunked = v && v < hend;
		} else if (strncasecmp(name, "Connection:", 11) == 0) {
			const char *v = strcasestr(name, "close");
			*close = v && v < hend;
		}
	}
	*status = code;
	if (code < 200 || code == 204 || code == 304)
		return (long)hlen;
	if (chunked) {
		size_t pos = hlen;
		for (;;) {
			const char *eol = memmem(buf + pos, len - pos, "\r\n", 2);
			if (!eol)
				return 0;
			char *end;
			unsigned long size = strtoul(buf + pos, &end, 16);
			if (end == buf + pos)
				return -1;
			pos = (size_t)(eol - buf) + 2;
			if (size == 0)
				break;
			if (pos + size + 2 > len)
				return 0;
			sample_add(sample, samplelen, &used, buf + pos, size);
			pos += size + 2;
		}
		/* trailer fields, up to an empty line */
		for (;;) {
			const char *eol = memmem(buf + pos, len - pos, "\r\n", 2);
			if (!eol)
				return 0;
			bool empty = eol == buf + pos;
			pos = (size_t)(eol - buf) + 2;
			if (empty)
				return (long)pos;
		}
	}
	if (content_length < 0)
		return -1;
	if (hlen + (size_t)content_length > len)
		return 0;
	sample_add(sample, samplelen, &used, buf + hlen, (size_t)content_length);
	return (long)(hlen + (size_t)content_length);
}
