#include "log/logio.h"

#include <errno.h>
#include <unistd.h>

const logio_ops logio_real = {pwrite, fdatasync, fsync, ftruncate};
const logio_ops *logio = &logio_real;

int logio_write_all(int fd, const void *buf, size_t n, uint64_t off)
{
    const char *p = buf;
    while (n) {
        ssize_t w = logio->pwrite(fd, p, n, (off_t)off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (w == 0) {   /* a regular file only does this when full */
            errno = ENOSPC;
            return -1;
        }
        p += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}
