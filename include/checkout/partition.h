/* partition.h - where a SKU goes: the one hash every program uses for it.
 *
 * checkout-server's hot-SKU queue hashes SKUs onto stripes, checkout-naive
 * (NAIVE_MODE=intent) onto the orders topic's partitions, and checkout-race
 * picks SKU names by the partition they fall on, so that a multi-item cart
 * really crosses partitions. They must agree, hence one function.
 *
 * checkout-naive places each intent on partition_of(its SKU) itself
 * (RD_KAFKA_V_PARTITION), so librdkafka's partitioner (consistent_random,
 * a CRC32 of the key) never decides where an intent goes.
 */
#ifndef CHECKOUT_PARTITION_H
#define CHECKOUT_PARTITION_H

#include <stdint.h>

/* FNV-1a (32 bits) of the NUL-terminated s. Never fails. */
uint32_t partition_hash(const char *s);

/* The partition of key among partitions (>= 1): partition_hash(key) % partitions. */
int partition_of(const char *key, int partitions);

#endif
