/* smtp_sink.h - test helper: a minimal SMTP server on loopback that keeps
 * what it receives, for testing checkout-email's SMTP delivery. */
#ifndef CHECKOUT_TESTS_SMTP_SINK_H
#define CHECKOUT_TESTS_SMTP_SINK_H

struct smtp_sink;

/* Start listening on 127.0.0.1 (a free port, stored in *port); the first
 * temp_failures RCPT commands are answered "451" (try again later).
 * Fails the test if it cannot. Stop with smtp_sink_stop. */
struct smtp_sink *smtp_sink_start(int *port, int temp_failures);

/* Messages accepted so far. */
int smtp_sink_count(struct smtp_sink *sink);

/* A copy of message i as "RCPT <addr>\n" + the DATA (dot-unstuffed); the caller frees it. */
char *smtp_sink_message(struct smtp_sink *sink, int i);

/* Stop the server and free everything. Accepts NULL. */
void smtp_sink_stop(struct smtp_sink *sink);

#endif
