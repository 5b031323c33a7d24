/* checkout_stmts.c - print the checkout transaction's statements as SQL that
 * stores them in isolation_spec.checkout_stmts (name, sql), for run.sh.
 *
 * It is linked with the server's own objects and reads checkout_stmts from
 * service/server/checkout.c, so the isolation specs prepare and run exactly
 * the SQL the checkout runs: change a statement there, and the specs run the
 * new one. Exits 1 if stdout cannot be written.
 */
#include <stdio.h>

#include "checkout.h"
#include "checkout/db.h"

/* s as an SQL string literal (standard_conforming_strings: only ' is special). */
static void put_literal(const char *s)
{
	putchar('\'');
	for (; *s; s++) {
		if (*s == '\'')
			putchar('\'');
		putchar(*s);
	}
	putchar('\'');
}

int main(void)
{
	for (const struct db_stmt *s = checkout_stmts; s->name; s++) {
		fputs("INSERT INTO isolation_spec.checkout_stmts (name, sql) VALUES (", stdout);
		put_literal(s->name);
		fputs(", ", stdout);
		put_literal(s->sql);
		fputs(");\n", stdout);
	}
	return fflush(stdout) == 0 && !ferror(stdout) ? 0 : 1;
}
