/* client.h - the HTTP/1.1 pieces of the load tool's connections.
 *
 * checkout-load keeps many keep-alive connections busy from a few threads,
 * each running an epoll loop (as pgbench multiplexes its clients): a request
 * is one send(), a response usually one recv(). These functions are the
 * parts that do not depend on the loop: URL parsing, connecting, writing a
 * request and recognising a complete response in a buffer.
 */
#ifndef LOAD_CLIENT_H
#define LOAD_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

/* responses with longer headers are refused as malformed */
#define CLIENT_MAX_HEADER 8192

/*
 * Parse a URL "http://host[:port][/...]" into host and port (the path is
 * ignored). Returns false when the URL is not of that form.
 */
bool client_parse_url(const char *url, char *host, size_t hostlen, char *port, size_t portlen)
    __attribute__((warn_unused_result));

/*
 * Connect to host:port (blocking), then make the socket non-blocking with
 * TCP_NODELAY. Returns the socket, or -1 when the connection failed.
 */
int client_connect(const char *host, const char *port) __attribute__((warn_unused_result));

/*
 * Write a POST of body (len bytes of JSON) to path into buf. Returns the
 * request's length, or 0 when it does not fit.
 */
size_t client_format_post(char *buf, size_t buflen, const char *host, const char *port, const char *path,
			  const char *body, size_t len);

/*
 * Look for one complete HTTP/1.1 response at the start of buf (len bytes,
 * with buf[len] == '\0'). Returns its length in bytes when complete, and
 * sets *status and *close (the server will close the connection); 0 when
 * more bytes are needed; -1 when it is malformed or has no length (bodies
 * must have a Content-Length or be chunked). When sample is not NULL, the
 * start of a complete response's body is copied there, NUL-terminated.
 */
long client_parse_response(const char *buf, size_t len, int *status, bool *close, char *sample,
			   size_t samplelen);

#endif
