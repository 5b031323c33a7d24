/* catalogue.h - checkout-inventory's own copy of the catalogue, built from
 * the products topic alone (README, "CRUD as events").
 *
 * A thread of checkout-inventory consumes PRODUCTS_TOPIC in its own
 * consumer group ("<group>-catalogue") and keeps inventory.catalogue: an
 * upsert (ce_type product.upserted, value = the product) writes the row, a
 * tombstone (no value) marks it deleted, and either applies only when its
 * version (the ce_sequence header) is above the row's: a redelivered or
 * reordered older event never overwrites a newer one, and applying one twice
 * changes nothing, so no inbox is needed. The offset is stored only after the
 * row is written; a database failure retries the same message (100 ms
 * doubling to 5 s) without moving past it. A message without a key or a
 * version, whose value is not a product, or whose content breaks a data rule
 * (SQLSTATE class 22/23) is kept raw in inventory.dead_letters (topic
 * "products") and skipped.
 */
#ifndef CHECKOUT_WORKERS_CATALOGUE_H
#define CHECKOUT_WORKERS_CATALOGUE_H

#include <stdbool.h>

#include "checkout/config.h"

struct catalogue;

/*
 * Start the consumer thread. With cfg->rebuild it first empties
 * inventory.catalogue and reads the topic from its beginning under a fresh
 * group, until the end of every partition. cfg must outlive the thread.
 * Returns NULL (logged) when the thread cannot start. Stop with
 * catalogue_stop().
 */
struct catalogue *catalogue_start(const struct config *cfg) __attribute__((warn_unused_result));

/*
 * Stop the thread and free everything; accepts NULL. In rebuild mode it
 * first lets the thread reach the end of the topic (for at most 60 s).
 * Returns false when a rebuild did not finish.
 */
bool catalogue_stop(struct catalogue *c);

#endif
