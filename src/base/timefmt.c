#include "base/timefmt.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

int64_t time_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t time_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Days since 1970-01-01 to (year, month, day), proleptic Gregorian: counted
 * in 400-year eras from 0000-03-01, so that the leap day ends each year. */
static void civil_from_days(int64_t days, int64_t *y, unsigned *m, unsigned *d)
{
    days += 719468;   /* 0000-03-01 to 1970-01-01 */
    int64_t era = (days >= 0 ? days : days - 146096) / 146097;
    unsigned doe = (unsigned)(days - era * 146097);                          /* [0, 146096] */
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;    /* [0, 399] */
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);                  /* [0, 365] */
    unsigned mp = (5 * doy + 2) / 153;                                       /* March = 0 */
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static void put_digits(char *p, unsigned v, int n)
{
    for (int k = n - 1; k >= 0; k--, v /= 10)
        p[k] = (char)('0' + v % 10);
}

/* By hand rather than gmtime_r and snprintf: every event read or answered
 * goes through here, and those took a lock and a format parse each. */
void time_format_rfc3339(int64_t ns, char *out)
{
    int64_t secs = ns / 1000000000, rem = ns % 1000000000;
    if (rem < 0) {
        rem += 1000000000;
        secs -= 1;
    }
    int64_t days = secs / 86400, sod = secs % 86400;
    if (sod < 0) {
        sod += 86400;
        days -= 1;
    }
    int64_t y;
    unsigned m, d;
    civil_from_days(days, &y, &m, &d);
    if (y < 0 || y > 9999)   /* RFC 3339 has four year digits: clamp the absurd */
        y = y < 0 ? 0 : 9999;
    memcpy(out, "0000-00-00T00:00:00.000000Z", TIME_RFC3339_LEN);
    put_digits(out, (unsigned)y, 4);
    put_digits(out + 5, m, 2);
    put_digits(out + 8, d, 2);
    put_digits(out + 11, (unsigned)(sod / 3600), 2);
    put_digits(out + 14, (unsigned)(sod / 60 % 60), 2);
    put_digits(out + 17, (unsigned)(sod % 60), 2);
    put_digits(out + 20, (unsigned)(rem / 1000), 6);
    out[TIME_RFC3339_LEN] = '\0';
}
