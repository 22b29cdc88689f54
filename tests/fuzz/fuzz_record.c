/* libFuzzer target: the record decoder, which reads whatever a damaged disk
 * hands it.  Invariants checked on every input:
 *   - rec_decode never reads outside [data, data + size) (ASan watches);
 *   - a record it accepts re-encodes to exactly the bytes it was decoded from,
 *     so decoding accepts nothing that the encoder would not have written. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "log/record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Copy so that ASan sees the exact bounds of the input. */
    unsigned char *copy = malloc(size ? size : 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    rec_view r;
    if (rec_decode(copy, size, 1u << 20, &r) == REC_OK) {
        size_t stored = rec_size(r.stream_len, r.type_len, r.meta_len, r.data_len);
        unsigned char *again = malloc(stored);
        if (!again)
            abort();
        rec_encode(&r, rec_body_crc(&r), again);
        if (memcmp(again, copy, r.total_len) != 0)
            abort();   /* accepted bytes the encoder would not produce */
        free(again);
    }
    free(copy);
    return 0;
}
