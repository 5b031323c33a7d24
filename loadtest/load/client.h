/* client.h - a minimal HTTP/1.1 keep-alive client for the load tool.
 *
 * One client is one TCP connection used by one thread: it sends a request,
 * reads the whole response (Content-Length or chunked), and keeps the
 * connection for the next request. It reconnects by itself after the server
 * closes. It exists because the load tool shares a small machine with the
 * server and the database: a request costs one send() and usually one recv(),
 * a fraction of what a general-purpose client spends.
 */
#ifndef LOAD_CLIENT_H
#define LOAD_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

#define CLIENT_BUF 16384

struct client {
	char host[256];
	char port[16];
	int fd; /* -1 when not connected */
	unsigned long connects;
	char buf[CLIENT_BUF];
	size_t len; /* bytes of buf holding unread response data */
};

/*
 * Parse a URL "http://host[:port][/...]" into host and port (the path is
 * ignored). Returns false when the URL is not of that form.
 */
bool client_parse_url(const char *url, char *host, size_t hostlen, char *port, size_t portlen)
    __attribute__((warn_unused_result));

/* Set up c for host:port without connecting yet. */
void client_init(struct client *c, const char *host, const char *port);

/*
 * POST body (len bytes, JSON) to path and read the whole response. Returns
 * the HTTP status, or 0 on a transport error (connect, send, receive,
 * timeout, malformed response), after which the connection is closed and the
 * next call reconnects. When sample is not NULL, the first samplelen - 1
 * bytes of the response body are copied there, NUL-terminated.
 */
int client_post(struct client *c, const char *path, const char *body, size_t len, char *sample,
		size_t samplelen);

/* Close the connection. Safe to call twice. */
void client_close(struct client *c);

#endif
