/* httpd.c - see checkout/httpd.h. */
#include "checkout/httpd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool httpd_listen_addr(const char *setting, const char *listen, struct sockaddr_in *addr, char *err,
		       size_t errlen)
{
	char host[64];
	const char *colon = strrchr(listen, ':');
	char *end = NULL;
	long port = 0;

	if (colon) {
		errno = 0;
		port = strtol(colon + 1, &end, 10);
	}
	if (!colon || (size_t)(colon - listen) >= sizeof(host) || !end || end == colon + 1 || *end || errno ||
	    port < 1 || port > 65535) {
		snprintf(err, errlen, "%s: '%s' is not host:port (port 1..65535)", setting, listen);
		return false;
	}
	memcpy(host, listen, (size_t)(colon - listen));
	host[colon - listen] = '\0';
	memset(addr, 0, sizeof(*addr));
	addr->sin_family = AF_INET;
	if (inet_pton(AF_INET, *host ? host : "0.0.0.0", &addr->sin_addr) != 1) {
		snprintf(err, errlen, "%s: host '%s' is not an IPv4 address", setting, host);
		return false;
	}
	addr->sin_port = htons((uint16_t)port);
	return true;
}

enum MHD_Result httpd_reply(struct MHD_Connection *conn, unsigned status, const char *type, const void *body,
			    size_t len)
{
	struct MHD_Response *resp = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
	if (!resp)
		return MHD_NO;
	MHD_add_response_header(resp, "Content-Type", type);
	MHD_add_response_header(resp, "Cache-Control", "no-store");
	MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
	/* a page served this way loads nothing from elsewhere and runs no inline script */
	MHD_add_response_header(resp, "Content-Security-Policy",
				"default-src 'self'; frame-ancestors 'none'");
	enum MHD_Result ret = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	return ret;
}
