/* timefmt.h — wall-clock time for event timestamps.
 * Event time is nanoseconds since the Unix epoch (UTC) as an int64. */
#ifndef PAYI_TIMEFMT_H
#define PAYI_TIMEFMT_H

#include <stdint.h>

#define TIME_RFC3339_LEN 27   /* "2026-11-26T14:48:51.123456Z" */

int64_t time_now_ns(void);          /* CLOCK_REALTIME */
int64_t time_mono_ns(void);         /* CLOCK_MONOTONIC, for durations */
static inline double time_mono_s(void) { return (double)time_mono_ns() / 1e9; }
/* RFC 3339 UTC with microseconds; out must hold TIME_RFC3339_LEN + 1 bytes. */
void time_format_rfc3339(int64_t ns, char *out);

#endif
