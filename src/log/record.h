/* record.h — one event as stored in a segment file: encode, decode, verify.
 *
 * A record, little-endian, padded with zeros to a multiple of 8 bytes:
 *
 *   off size field
 *     0   4  total_len     bytes of header + strings, before padding (>= 68)
 *     4   4  crc           CRC32C of the body, bytes [68, total_len), continued
 *                          over the header bytes [8, 68): body first, so that
 *                          the appending thread computes the costly part and
 *                          the writer only adds the header it fills in
 *     8   8  position      global position, dense from 0
 *    16   8  time_ns       append time, ns since the Unix epoch (UTC)
 *    24   8  version       version of the event in its stream, dense from 0
 *    32  16  id            event id (UUID); client-supplied or generated
 *    48   4  batch_index   index of the record in its write batch (0 = first)
 *    52   2  stream_len
 *    54   2  type_len
 *    56   4  meta_len
 *    60   4  data_len
 *    64   1  flags         REC_F_CLIENT_ID, REC_F_BATCH_END, encoding in bits 4..7
 *    65   3  reserved, zero
 *    68      stream, type, meta, data bytes, then padding
 *
 * Example: stream "a", type "T", no meta, data {"x":1} is 68+1+1+0+7 = 77
 * bytes, stored as 80.  Padding to 8 lets recovery scan forward for later
 * records on aligned offsets only.
 *
 * Invariants a decoder enforces (anything else is "not a record"):
 *   1. total_len == 68 + stream_len + type_len + meta_len + data_len,
 *      total_len <= the caller's maximum, reserved bytes zero.
 *   2. crc matches, and the padding bytes are all zero.
 *   3. stream_len and type_len are 1..255.
 */
#ifndef PAYI_RECORD_H
#define PAYI_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/uuid.h"

#define REC_HEADER_SIZE 68
#define REC_ALIGN 8
#define REC_MAX_NAME 255

#define REC_F_CLIENT_ID 0x01u   /* id was given by the client: it takes part in deduplication */
#define REC_F_BATCH_END 0x02u   /* last record of its write batch */
#define REC_ENC_SHIFT 4         /* data encoding: 0 = JSON text (later: typed) */

/* A decoded record.  The string pointers borrow from the buffer decoded. */
typedef struct rec_view {
    uint64_t position;
    int64_t time_ns;
    uint64_t version;
    payi_uuid id;
    uint32_t batch_index;
    uint8_t flags;
    const char *stream;
    uint16_t stream_len;
    const char *type;
    uint16_t type_len;
    const char *meta;
    uint32_t meta_len;
    const char *data;
    uint32_t data_len;
    uint32_t total_len;   /* before padding */
} rec_view;

static inline size_t rec_padded(size_t total_len) { return (total_len + REC_ALIGN - 1) & ~(size_t)(REC_ALIGN - 1); }

/* Stored size of a record with these string lengths. */
size_t rec_size(size_t stream_len, size_t type_len, size_t meta_len, size_t data_len);

/* CRC32C of the body (stream, type, meta, data) of r. */
uint32_t rec_body_crc(const rec_view *r);

/* Encode r into out, which must hold rec_size(...) bytes, with body_crc as
 * computed by rec_body_crc (r->total_len is ignored and recomputed).
 * Returns the stored size. */
size_t rec_encode(const rec_view *r, uint32_t body_crc, unsigned char *out);

/* Recompute the CRC of an encoded record after its header changed. */
void rec_reseal(unsigned char *rec);

typedef enum {
    REC_OK,
    REC_SHORT,      /* fewer bytes available than the header or total_len claims */
    REC_BAD_HEADER, /* lengths inconsistent, reserved bits set, or beyond max */
    REC_BAD_CRC,
    REC_BAD_PADDING, /* the zero bytes after the record are not zero */
} rec_status;

/* Decode the record at p (avail bytes readable; a record needs its padding too).  max_total bounds total_len.
 * On REC_OK fills *out (borrowing from p).  Never reads past p + avail. */
rec_status rec_decode(const unsigned char *p, size_t avail, uint32_t max_total, rec_view *out);

const char *rec_status_text(rec_status s);

#endif
