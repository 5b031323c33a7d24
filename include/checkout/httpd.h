/* httpd.h - small pieces shared by the programs that serve HTTP with libmicrohttpd.
 *
 * The server has its own request machinery (service/server/http.c); these
 * are for the side endpoints of the other programs (the analytics
 * dashboard): where to listen, and a plain answer with safe headers.
 */
#ifndef CHECKOUT_HTTPD_H
#define CHECKOUT_HTTPD_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>

#include <microhttpd.h>

/*
 * Parse listen ("host:port", host an IPv4 address; empty host = all) into
 * addr. Returns false with a reason naming the setting in err.
 */
bool httpd_listen_addr(const char *setting, const char *listen, struct sockaddr_in *addr, char *err,
		       size_t errlen) __attribute__((warn_unused_result));

/*
 * Queue an answer of len bytes from body (copied) with the given status and
 * Content-Type, plus Cache-Control: no-store, X-Content-Type-Options:
 * nosniff and a Content-Security-Policy allowing only the same origin. Returns MHD's result (MHD_NO: close
 * the connection).
 */
enum MHD_Result httpd_reply(struct MHD_Connection *conn, unsigned status, const char *type, const void *body,
			    size_t len);

#endif
