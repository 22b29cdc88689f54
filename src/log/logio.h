/* logio.h — the system calls the log makes to change files, behind one table
 * so that tests can inject faults (short writes, EINTR, ENOSPC, EIO, failed
 * fsync) exactly where the log would meet them.  Production uses the real
 * calls; nothing else in payi goes through this table. */
#ifndef PAYI_LOGIO_H
#define PAYI_LOGIO_H

#include <stdint.h>
#include <sys/types.h>

typedef struct logio_ops {
    ssize_t (*pwrite)(int fd, const void *buf, size_t n, off_t off);
    int (*fdatasync)(int fd);
    int (*fsync)(int fd);
    int (*ftruncate)(int fd, off_t len);
} logio_ops;

/* The table in force.  Tests swap it before opening a log and restore
 * logio_real afterwards; the log reads it on every call. */
extern const logio_ops logio_real;
extern const logio_ops *logio;

/* Write all n bytes at off: loops over short writes and EINTR.  Returns 0,
 * or -1 with errno set (the file may hold a prefix of buf: callers truncate).
 * Positioned writes: the log never depends on a file descriptor's offset. */
int logio_write_all(int fd, const void *buf, size_t n, uint64_t off);

#endif
