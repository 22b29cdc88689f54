#include "log/segment.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/crc32c.h"
#include "base/mem.h"
#include "log/logio.h"

static const char seg_magic[8] = {'P', 'A', 'Y', 'I', 'S', 'E', 'G', '1'};
static const char idx_magic[8] = {'P', 'A', 'Y', 'I', 'I', 'D', 'X', '1'};
/* The on-disk format.  Change it with any change to how records or indexes
 * are laid out or checksummed: a reader of another format must refuse the
 * files, not take their records for a torn tail and truncate them. */
#define SEG_FORMAT 3u
#define SCAN_CHUNK (8u << 20)

static void put32(unsigned char *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(unsigned char *p, uint64_t v) { memcpy(p, &v, 8); }
static uint32_t get32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t get64(const unsigned char *p) { uint64_t v; memcpy(&v, p, 8); return v; }

void seg_path(char *out, size_t cap, const char *dir, uint64_t first, const char *ext)
{
    snprintf(out, cap, "%s/%020" PRIu64 ".%s", dir, first, ext);
}

bool seg_parse_name(const char *name, uint64_t *first)
{
    if (strlen(name) != SEG_NAME_DIGITS + 4 || strcmp(name + SEG_NAME_DIGITS, ".seg") != 0)
        return false;
    uint64_t v = 0;
    for (int i = 0; i < SEG_NAME_DIGITS; i++) {
        if (name[i] < '0' || name[i] > '9')
            return false;
        uint64_t d = (uint64_t)(name[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *first = v;
    return true;
}

payi_code dir_fsync(const char *dir, payi_err *err)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return payi_err_sys(err, PAYI_IO, errno, "cannot open directory %s", dir);
    if (logio->fsync(fd) != 0) {
        int e = errno;
        close(fd);
        return payi_err_sys(err, PAYI_IO, e, "fsync of directory %s failed", dir);
    }
    close(fd);
    return PAYI_OK;
}

static void seg_header_encode(unsigned char h[SEG_HEADER_SIZE], uint64_t first)
{
    memset(h, 0, SEG_HEADER_SIZE);
    memcpy(h, seg_magic, 8);
    put32(h + 8, SEG_FORMAT);
    put64(h + 16, first);
    put32(h + 24, crc32c(0, h, 24));
}

static void seg_init(segment *seg, uint64_t first, int fd)
{
    memset(seg, 0, sizeof *seg);
    seg->first = first;
    seg->fd = fd;
    seg->wfd = -1;
    seg->end = SEG_HEADER_SIZE;
}

payi_code seg_create(const char *dir, uint64_t first, segment *seg, payi_err *err)
{
    char path[4096];
    seg_path(path, sizeof path, dir, first, "seg");
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return payi_err_sys(err, payi_code_from_errno(errno), errno, "cannot create segment %s", path);
    unsigned char h[SEG_HEADER_SIZE];
    seg_header_encode(h, first);
    if (logio_write_all(fd, h, sizeof h, 0) != 0 || logio->fdatasync(fd) != 0) {
        int e = errno;
        close(fd);
        unlink(path);
        return payi_err_sys(err, payi_code_from_errno(e), e, "cannot write segment header %s", path);
    }
    payi_code rc = dir_fsync(dir, err);
    if (rc != PAYI_OK) {
        close(fd);
        return rc;
    }
    seg_init(seg, first, fd);
    return PAYI_OK;
}

static int read_at(int fd, void *dst, size_t n, uint64_t off)
{
    char *p = dst;
    while (n) {
        ssize_t r = pread(fd, p, n, (off_t)off);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (r == 0)
            return 1;   /* end of file */
        p += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

payi_code seg_open(const char *dir, uint64_t first, bool writable, segment *seg, payi_err *err)
{
    char path[4096];
    seg_path(path, sizeof path, dir, first, "seg");
    int fd = open(path, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC);
    if (fd < 0)
        return payi_err_sys(err, PAYI_IO, errno, "cannot open segment %s", path);
    unsigned char h[SEG_HEADER_SIZE], want[SEG_HEADER_SIZE];
    int r = read_at(fd, h, sizeof h, 0);
    if (r < 0) {
        int e = errno;
        close(fd);
        return payi_err_sys(err, PAYI_IO, e, "cannot read segment %s", path);
    }
    seg_header_encode(want, first);
    uint32_t format;
    memcpy(&format, h + 8, 4);
    if (r == 0 && memcmp(h, want, 8) == 0 && format != SEG_FORMAT) {
        close(fd);
        return payi_err_set(err, PAYI_CORRUPT, NULL,
                            "segment %s is in on-disk format %u; this payi reads format %u only: "
                            "refusing to touch it",
                            path, format, SEG_FORMAT);
    }
    if (r > 0 || memcmp(h, want, sizeof h) != 0) {
        close(fd);
        return payi_err_set(err, PAYI_CORRUPT, NULL, "segment %s: %s header at offset 0", path,
                            r > 0 ? "incomplete" : "invalid");
    }
    seg_init(seg, first, fd);
    return PAYI_OK;
}

void seg_open_direct(const char *dir, segment *seg)
{
    char path[4096];
    seg_path(path, sizeof path, dir, seg->first, "seg");
    seg->wfd = open(path, O_WRONLY | O_DIRECT | O_CLOEXEC);
}

void seg_release(segment *seg)
{
    if (seg->fd >= 0)
        close(seg->fd);
    if (seg->wfd >= 0)
        close(seg->wfd);
    free(seg->offsets);
    free(seg->stream_nums);
    free(seg->cids);
    memset(seg, 0, sizeof *seg);
    seg->fd = seg->wfd = -1;
}

void seg_add_record(segment *seg, uint64_t offset, uint32_t stream_num, const rec_view *r)
{
    seg->offsets = xgrow(seg->offsets, &seg->offsets_cap, seg->count + 1, sizeof *seg->offsets);
    seg->stream_nums = xgrow(seg->stream_nums, &seg->stream_nums_cap, seg->count + 1, sizeof *seg->stream_nums);
    seg->offsets[seg->count] = (uint32_t)offset;
    seg->stream_nums[seg->count] = stream_num;
    seg->count++;
    seg->end = offset + rec_padded(r->total_len);
    if (r->flags & REC_F_CLIENT_ID) {
        seg->cids = xgrow(seg->cids, &seg->cids_cap, seg->ncids + 1, sizeof *seg->cids);
        seg->cids[seg->ncids].id = r->id;
        seg->cids[seg->ncids].position = r->position;
        seg->ncids++;
    }
}

/* ---- scanning ---- */

/* A window over the file, refilled with large preads. */
typedef struct window {
    int fd;
    uint64_t file_size;
    unsigned char *buf;
    size_t cap;
    uint64_t base;
    size_t len;
} window;

/* Make [off, off + need) readable if the file has it; returns a pointer to
 * off and the bytes available from it (may be < need at end of file). */
static const unsigned char *window_at(window *w, uint64_t off, size_t need, size_t *avail, int *ioerr)
{
    uint64_t left = w->file_size - off;
    if (need > left)
        need = (size_t)left;
    if (off < w->base || off + need > w->base + w->len) {
        size_t want = need > SCAN_CHUNK ? need : SCAN_CHUNK;
        if (want > left)
            want = (size_t)left;
        if (want > w->cap) {
            free(w->buf);
            w->buf = xmalloc(want);
            w->cap = want;
        }
        int r = read_at(w->fd, w->buf, want, off);
        if (r > 0) {
            /* The file shrank under us: a live writer trimmed its page padding
             * (readers beside a writer).  Scan what is there now. */
            struct stat st;
            if (fstat(w->fd, &st) != 0) {
                *ioerr = 1;
                return NULL;
            }
            if ((uint64_t)st.st_size >= w->file_size) {   /* an end of file that is not a shrink */
                errno = EIO;
                *ioerr = 1;
                return NULL;
            }
            w->file_size = (uint64_t)st.st_size;
            w->len = 0;
            return NULL;
        }
        if (r < 0) {
            *ioerr = 1;
            return NULL;
        }
        w->base = off;
        w->len = want;
    }
    *avail = (size_t)(w->base + w->len - off);
    return w->buf + (off - w->base);
}

/* The writer pads its last page with zeros: such a tail is the clean end. */
static bool all_zero(window *w, uint64_t from, int *ioerr)
{
    for (uint64_t off = from; off < w->file_size;) {
        size_t avail;
        const unsigned char *p = window_at(w, off, (size_t)(w->file_size - off), &avail, ioerr);
        if (!p && !*ioerr)
            continue;   /* shrank: look again up to the new end */
        if (!p)
            return false;
        for (size_t i = 0; i < avail; i++)
            if (p[i])
                return false;
        off += avail;
    }
    return true;
}

/* After a bad spot, look for a valid record written by a later batch than the
 * incomplete one (batch start > incomplete_batch_first).  A group commit only
 * writes a batch after the previous one was made durable and acknowledged, so
 * such a record proves the bad spot was acknowledged data: corruption. */
static bool find_later_batch(window *w, uint64_t from, uint64_t incomplete_batch_first, uint32_t max_total,
                             uint64_t *found_at, int *ioerr)
{
    for (uint64_t off = (from + REC_ALIGN) & ~(uint64_t)(REC_ALIGN - 1); off + REC_HEADER_SIZE <= w->file_size;
         off += REC_ALIGN) {
        size_t avail;
        const unsigned char *p = window_at(w, off, REC_HEADER_SIZE, &avail, ioerr);
        if (!p)
            return false;
        uint32_t total = get32(p);
        if (total < REC_HEADER_SIZE || total > max_total || off + total > w->file_size)
            continue;
        p = window_at(w, off, total, &avail, ioerr);
        if (!p)
            return false;
        rec_view r;
        if (rec_decode(p, avail, max_total, &r) == REC_OK && r.batch_index <= r.position &&
            r.position - r.batch_index > incomplete_batch_first) {
            *found_at = off;
            return true;
        }
    }
    return false;
}

payi_code seg_scan(const segment *seg, const char *path, uint64_t from, uint64_t first_pos, uint32_t max_total,
                   uint64_t max_records, seg_record_fn fn, void *ctx, seg_scan_result *res, payi_err *err)
{
    struct stat st;
    if (fstat(seg->fd, &st) != 0)
        return payi_err_sys(err, PAYI_IO, errno, "cannot stat %s", path);
    memset(res, 0, sizeof *res);
    res->file_size = (uint64_t)st.st_size;
    res->end = from;
    window w = {.fd = seg->fd, .file_size = res->file_size};
    int ioerr = 0;
    uint64_t off = from, pos = first_pos, emitted = 0;
    const char *reason = NULL;
    while (off < w.file_size) {
        size_t avail;
        const unsigned char *p = window_at(&w, off, REC_HEADER_SIZE, &avail, &ioerr);
        if (p && avail >= REC_HEADER_SIZE) {
            uint32_t total = get32(p);
            if (total > REC_HEADER_SIZE && total <= max_total)
                p = window_at(&w, off, total, &avail, &ioerr);
        }
        if (!p)
            break;
        rec_view r;
        rec_status s = rec_decode(p, avail, max_total, &r);
        if (s != REC_OK || r.position != pos) {
            reason = s != REC_OK ? rec_status_text(s) : "record out of sequence";
            break;
        }
        if (fn && emitted < max_records) {
            if (fn(ctx, &r, off) != 0)
                break;
            emitted++;
        }
        off += rec_padded(r.total_len);
        pos++;
        if (r.flags & REC_F_BATCH_END) {
            res->end = off;
            res->records = pos - first_pos;
        }
    }
    if (ioerr) {
        free(w.buf);
        return payi_err_sys(err, PAYI_IO, errno, "cannot read %s", path);
    }
    res->file_size = w.file_size;
    if (res->end < res->file_size && !all_zero(&w, res->end, &ioerr)) {
        res->tail_problem = true;
        res->bad_offset = reason ? off : res->end;
        res->bad_reason = reason ? reason : "incomplete batch at the end";
        uint64_t later;
        if (find_later_batch(&w, res->bad_offset, first_pos + res->records, max_total, &later, &ioerr)) {
            res->corrupt = true;
            res->later_offset = later;
        }
        if (ioerr) {
            free(w.buf);
            return payi_err_sys(err, PAYI_IO, errno, "cannot read %s", path);
        }
    }
    free(w.buf);
    return PAYI_OK;
}

/* ---- sealed index files ---- */

payi_code seg_write_index(const char *dir, const segment *seg, const stream_table *streams, payi_err *err)
{
    /* Map global stream numbers to a table local to this segment. */
    uint32_t *local_of = xcalloc(streams->n ? streams->n : 1, sizeof *local_of);   /* local + 1 */
    uint32_t nlocal = 0;
    buf names = BUF_INIT, out = BUF_INIT;
    uint32_t *refs = xmalloc((seg->count ? seg->count : 1) * sizeof *refs);
    for (uint64_t i = 0; i < seg->count; i++) {
        uint32_t g = seg->stream_nums[i];
        if (!local_of[g]) {
            const stream_entry *s = streams->items[g];
            uint16_t len = (uint16_t)s->name_len;
            buf_put(&names, &len, 2);
            buf_put(&names, s->name, s->name_len);
            local_of[g] = ++nlocal;
        }
        refs[i] = local_of[g] - 1;
    }
    unsigned char h[48] = {0};
    memcpy(h, idx_magic, 8);
    put32(h + 8, SEG_FORMAT);
    put32(h + 12, (uint32_t)seg->count);
    put64(h + 16, seg->first);
    put64(h + 24, seg->end);
    put32(h + 32, nlocal);
    put32(h + 36, (uint32_t)seg->ncids);
    buf_put(&out, h, sizeof h);
    buf_put(&out, seg->offsets, seg->count * sizeof *seg->offsets);
    buf_put(&out, refs, seg->count * sizeof *refs);
    buf_put(&out, names.data, names.len);
    uint32_t crc = crc32c(0, out.data, out.len);
    buf_put(&out, &crc, 4);
    size_t ids_at = out.len;
    for (size_t i = 0; i < seg->ncids; i++) {
        buf_put(&out, seg->cids[i].id.b, 16);
        buf_put(&out, &seg->cids[i].position, 8);
    }
    crc = crc32c(0, out.data + ids_at, out.len - ids_at);
    buf_put(&out, &crc, 4);
    free(refs);
    free(local_of);
    buf_release(&names);

    char path[4096], tmp[4200];
    seg_path(path, sizeof path, dir, seg->first, "idx");
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    payi_code rc = PAYI_OK;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = payi_err_sys(err, payi_code_from_errno(errno), errno, "cannot create %s", tmp);
    } else if (logio_write_all(fd, out.data, out.len, 0) != 0 || logio->fdatasync(fd) != 0) {
        rc = payi_err_sys(err, payi_code_from_errno(errno), errno, "cannot write %s", tmp);
    }
    if (fd >= 0 && close(fd) != 0 && rc == PAYI_OK)
        rc = payi_err_sys(err, PAYI_IO, errno, "cannot close %s", tmp);
    if (rc == PAYI_OK && rename(tmp, path) != 0)
        rc = payi_err_sys(err, PAYI_IO, errno, "cannot rename %s", tmp);
    if (rc == PAYI_OK)
        rc = dir_fsync(dir, err);
    if (rc != PAYI_OK)
        unlink(tmp);
    buf_release(&out);
    return rc;
}

/* Read the index file's main part: header, offsets, stream refs, names and
 * their CRC; the client ids after it are left for the id loader.  *file_size
 * gets the whole file's size. */
static payi_code read_index_main(const char *path, buf *out, uint64_t *file_size, payi_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? PAYI_NOT_FOUND : payi_err_sys(err, PAYI_IO, errno, "cannot open %s", path);
    struct stat st;
    unsigned char h[48];
    payi_code rc = PAYI_NOT_FOUND;
    if (fstat(fd, &st) != 0) {
        rc = payi_err_sys(err, PAYI_IO, errno, "cannot stat %s", path);
    } else if (st.st_size >= 56 && read_at(fd, h, sizeof h, 0) == 0) {
        uint64_t ids_part = get32(h + 36) * 24ull + 4;
        uint64_t main_len = (uint64_t)st.st_size > ids_part ? (uint64_t)st.st_size - ids_part : 0;
        buf_reset(out);
        buf_reserve(out, main_len);
        int r = main_len >= 52 ? read_at(fd, out->data, main_len, 0) : 1;
        if (r < 0)
            rc = payi_err_sys(err, PAYI_IO, errno, "cannot read %s", path);
        else if (r == 0) {
            out->len = main_len;
            *file_size = (uint64_t)st.st_size;
            rc = PAYI_OK;
        }
    }
    close(fd);
    return rc;
}

payi_code seg_load_index(const char *dir, segment *seg, uint64_t seg_file_size, stream_table *streams,
                         payi_err *err)
{
    char path[4096];
    seg_path(path, sizeof path, dir, seg->first, "idx");
    buf b = BUF_INIT;
    uint64_t idx_size = 0;
    payi_code rc = read_index_main(path, &b, &idx_size, err);
    if (rc != PAYI_OK) {
        buf_release(&b);
        return rc;
    }
    const unsigned char *p = (const unsigned char *)b.data;
    size_t len = b.len;
    rc = PAYI_NOT_FOUND;
    if (len < 52 || memcmp(p, idx_magic, 8) != 0 || get32(p + 8) != SEG_FORMAT ||
        crc32c(0, p, len - 4) != get32(p + len - 4))
        goto out;
    uint64_t n = get32(p + 12), nstreams = get32(p + 32), ncids = get32(p + 36);
    if (get64(p + 16) != seg->first || get64(p + 24) != seg_file_size || 48 + n * 8 + 4 > len)
        goto out;
    const unsigned char *offs = p + 48, *refs = offs + n * 4, *names = refs + n * 4;
    const unsigned char *limit = p + len - 4;
    uint32_t *global = xmalloc((nstreams ? nstreams : 1) * sizeof *global);
    for (uint64_t s = 0; s < nstreams; s++) {
        uint16_t sl;
        if (names + 2 > limit || (memcpy(&sl, names, 2), names + 2 + sl > limit)) {
            free(global);
            goto out;
        }
        streams_get(streams, (const char *)names + 2, sl, &global[s]);
        names += 2 + sl;
    }
    if (names != limit) {
        free(global);
        goto out;
    }
    for (uint64_t i = 0; i < n; i++) {
        if (get32(refs + 4 * i) >= nstreams) {   /* CRC held, so only a writer bug gets here; rescan */
            free(global);
            goto out;
        }
    }
    seg->offsets = xmalloc((n ? n : 1) * sizeof *seg->offsets);
    seg->offsets_cap = n;
    memcpy(seg->offsets, offs, n * 4);
    for (uint64_t i = 0; i < n; i++) {
        stream_entry *s = streams->items[global[get32(refs + 4 * i)]];
        stream_push(s, seg->first + i);
        s->pending = s->count;
    }
    free(global);
    /* The client ids stay on disk: the id loader reads them in the background. */
    seg->idx_ids_at = len;
    seg->idx_nids = ncids;
    seg->count = n;
    seg->end = seg_file_size;
    rc = PAYI_OK;
out:
    buf_release(&b);
    return rc;
}

payi_code seg_read_index_ids(const char *dir, const segment *seg, unsigned char **out, payi_err *err)
{
    char path[4096];
    seg_path(path, sizeof path, dir, seg->first, "idx");
    size_t len = seg->idx_nids * 24 + 4;
    unsigned char *p = xmalloc(len);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    int r = fd < 0 ? -1 : read_at(fd, p, len, seg->idx_ids_at);
    int e = errno;
    if (fd >= 0)
        close(fd);
    if (r != 0 || crc32c(0, p, len - 4) != get32(p + len - 4)) {
        free(p);
        return r < 0 ? payi_err_sys(err, PAYI_IO, e, "cannot read the client ids of %s", path)
                     : payi_err_set(err, PAYI_CORRUPT, NULL, "the client ids of %s are damaged", path);
    }
    *out = p;
    return PAYI_OK;
}
