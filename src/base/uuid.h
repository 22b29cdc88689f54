/* uuid.h — 16-byte event ids: random version-4 UUIDs, parse and format.
 * Generation uses a per-thread generator seeded from getrandom(2), so it costs
 * no system call per id.  The all-zero UUID is reserved to mean "no id". */
#ifndef PAYI_UUID_H
#define PAYI_UUID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct payi_uuid {
    uint8_t b[16];
} payi_uuid;

#define UUID_STR_LEN 36   /* without the NUL */

void uuid_generate(payi_uuid *out);
/* Parse the canonical 8-4-4-4-12 hex form (either case).  Returns false if s is
 * not exactly that; the nil UUID parses but callers may refuse it. */
bool uuid_parse(payi_uuid *out, const char *s, size_t len);
/* Writes 36 lowercase characters and a NUL into out[37]. */
void uuid_format(const payi_uuid *u, char out[UUID_STR_LEN + 1]);
bool uuid_is_nil(const payi_uuid *u);

#endif
