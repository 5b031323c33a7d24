/* partition.c - see partition.h. */
#include "checkout/partition.h"

/* FNV-1a: SKUs like "sku-00042" differ in their last bytes, which it mixes well */
uint32_t partition_hash(const char *s)
{
	uint32_t h = 2166136261u;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		h = (h ^ *p) * 16777619u;
	return h;
}

int partition_of(const char *key, int partitions)
{
	return (int)(partition_hash(key) % (uint32_t)partitions);
}
