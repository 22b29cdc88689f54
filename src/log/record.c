#include "log/record.h"

#include <string.h>

#include "base/crc32c.h"

static void put_u16(unsigned char *p, uint16_t v) { memcpy(p, &v, 2); }
static void put_u32(unsigned char *p, uint32_t v) { memcpy(p, &v, 4); }
static void put_u64(unsigned char *p, uint64_t v) { memcpy(p, &v, 8); }
static uint16_t get_u16(const unsigned char *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static uint32_t get_u32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t get_u64(const unsigned char *p) { uint64_t v; memcpy(&v, p, 8); return v; }

size_t rec_size(size_t stream_len, size_t type_len, size_t meta_len, size_t data_len)
{
    return rec_padded(REC_HEADER_SIZE + stream_len + type_len + meta_len + data_len);
}

uint32_t rec_body_crc(const rec_view *r)
{
    uint32_t c = crc32c(0, r->stream, r->stream_len);
    c = crc32c(c, r->type, r->type_len);
    if (r->meta_len)
        c = crc32c(c, r->meta, r->meta_len);
    if (r->data_len)
        c = crc32c(c, r->data, r->data_len);
    return c;
}

static uint32_t record_crc(const unsigned char *p, uint32_t total)
{
    return crc32c(crc32c(0, p + REC_HEADER_SIZE, total - REC_HEADER_SIZE), p + 8, REC_HEADER_SIZE - 8);
}

void rec_reseal(unsigned char *rec)
{
    uint32_t total = get_u32(rec);
    uint32_t body = crc32c(0, rec + REC_HEADER_SIZE, total - REC_HEADER_SIZE);
    put_u32(rec + 4, crc32c(body, rec + 8, REC_HEADER_SIZE - 8));
}

size_t rec_encode(const rec_view *r, uint32_t body_crc, unsigned char *out)
{
    uint32_t total = (uint32_t)(REC_HEADER_SIZE + r->stream_len + r->type_len + r->meta_len + r->data_len);
    size_t stored = rec_padded(total);
    put_u64(out + 8, r->position);
    put_u64(out + 16, (uint64_t)r->time_ns);
    put_u64(out + 24, r->version);
    memcpy(out + 32, r->id.b, 16);
    put_u32(out + 48, r->batch_index);
    put_u16(out + 52, r->stream_len);
    put_u16(out + 54, r->type_len);
    put_u32(out + 56, r->meta_len);
    put_u32(out + 60, r->data_len);
    out[64] = r->flags;
    out[65] = out[66] = out[67] = 0;
    unsigned char *q = out + REC_HEADER_SIZE;
    memcpy(q, r->stream, r->stream_len);
    q += r->stream_len;
    memcpy(q, r->type, r->type_len);
    q += r->type_len;
    if (r->meta_len)
        memcpy(q, r->meta, r->meta_len);
    q += r->meta_len;
    if (r->data_len)
        memcpy(q, r->data, r->data_len);
    q += r->data_len;
    memset(q, 0, stored - total);
    put_u32(out, total);
    put_u32(out + 4, crc32c(body_crc, out + 8, REC_HEADER_SIZE - 8));
    return stored;
}

rec_status rec_decode(const unsigned char *p, size_t avail, uint32_t max_total, rec_view *out)
{
    if (avail < REC_HEADER_SIZE)
        return REC_SHORT;
    uint32_t total = get_u32(p);
    uint16_t slen = get_u16(p + 52), tlen = get_u16(p + 54);
    uint32_t mlen = get_u32(p + 56), dlen = get_u32(p + 60);
    uint64_t sum = (uint64_t)REC_HEADER_SIZE + slen + tlen + mlen + dlen;
    if (total < REC_HEADER_SIZE || total > max_total || sum != total || p[65] || p[66] || p[67] ||
        slen == 0 || slen > REC_MAX_NAME || tlen == 0 || tlen > REC_MAX_NAME)
        return REC_BAD_HEADER;
    size_t padded = rec_padded(total);
    if (avail < padded)   /* the padding is part of the write: without it the write was torn */
        return REC_SHORT;
    if (record_crc(p, total) != get_u32(p + 4))
        return REC_BAD_CRC;
    for (size_t i = total; i < padded; i++)
        if (p[i])   /* padding is not under the CRC, so check it is what the encoder wrote */
            return REC_BAD_PADDING;
    out->total_len = total;
    out->position = get_u64(p + 8);
    out->time_ns = (int64_t)get_u64(p + 16);
    out->version = get_u64(p + 24);
    memcpy(out->id.b, p + 32, 16);
    out->batch_index = get_u32(p + 48);
    out->flags = p[64];
    out->stream_len = slen;
    out->type_len = tlen;
    out->meta_len = mlen;
    out->data_len = dlen;
    out->stream = (const char *)p + REC_HEADER_SIZE;
    out->type = out->stream + slen;
    out->meta = out->type + tlen;
    out->data = out->meta + mlen;
    return REC_OK;
}

const char *rec_status_text(rec_status s)
{
    switch (s) {
    case REC_OK: return "ok";
    case REC_SHORT: return "record cut short (torn write)";
    case REC_BAD_HEADER: return "invalid record header";
    case REC_BAD_CRC: return "checksum mismatch";
    case REC_BAD_PADDING: return "nonzero padding after the record";
    }
    return "unknown";
}
