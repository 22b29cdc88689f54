/* crc32c.h — CRC-32C (Castagnoli, reflected polynomial 0x82F63B78).
 * Uses the SSE4.2 crc32 instruction when the CPU has it (checked once at run
 * time), a slice-by-8 table otherwise.  crc32c("123456789") == 0xE3069283. */
#ifndef PAYI_CRC32C_H
#define PAYI_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Continue a CRC: pass 0 to start.  The pre/post inversion is done inside. */
uint32_t crc32c(uint32_t crc, const void *data, size_t len);

/* The portable path, exposed so tests can check both against each other. */
uint32_t crc32c_portable(uint32_t crc, const void *data, size_t len);

#endif
