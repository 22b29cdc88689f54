/* thread.h — naming threads, so that top -H, perf and gdb tell a view's
 * thread from a generator's or the log writer's. */
#ifndef PAYI_BASE_THREAD_H
#define PAYI_BASE_THREAD_H

#include <pthread.h>
#include <stdio.h>

/* "<prefix><name>", cut to the kernel's 15 characters. */
static inline void thread_set_name(const char *prefix, const char *name)
{
    char n[16];
    snprintf(n, sizeof n, "%s%s", prefix, name);
    (void)pthread_setname_np(pthread_self(), n);   /* cosmetic: a failure changes nothing */
}

#endif
