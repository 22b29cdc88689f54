#include "base/err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const struct {
    const char *word;
    const char *text;
    int http;
} err_table[PAYI__NCODES] = {
#define PAYI_ERR_ROW(name, word, http, text) [PAYI_##name] = {word, text, http},
    PAYI_ERRORS(PAYI_ERR_ROW)
#undef PAYI_ERR_ROW
};

static int code_valid(payi_code code) { return (unsigned)code < PAYI__NCODES; }

const char *payi_code_word(payi_code code) { return code_valid(code) ? err_table[code].word : "internal"; }

const char *payi_strerror(payi_code code) { return code_valid(code) ? err_table[code].text : "unknown error"; }

int payi_code_http(payi_code code) { return code_valid(code) ? err_table[code].http : 500; }

static void err_fill(payi_err *err, payi_code code, const char *field, const char *fmt, va_list ap)
{
    err->code = code;
    err->field[0] = '\0';
    if (field)
        snprintf(err->field, sizeof err->field, "%s", field);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
}

payi_code payi_err_set(payi_err *err, payi_code code, const char *field, const char *fmt, ...)
{
    if (!err)
        return code;
    va_list ap;
    va_start(ap, fmt);
    err_fill(err, code, field, fmt, ap);
    va_end(ap);
    return code;
}

payi_code payi_err_sys(payi_err *err, payi_code code, int errnum, const char *fmt, ...)
{
    if (!err)
        return code;
    va_list ap;
    va_start(ap, fmt);
    err_fill(err, code, NULL, fmt, ap);
    va_end(ap);
    size_t used = strlen(err->msg);
    snprintf(err->msg + used, sizeof err->msg - used, ": %s", strerror(errnum));
    return code;
}

payi_code payi_code_from_errno(int errnum)
{
    switch (errnum) {
    case ENOSPC:
    case EDQUOT:
        return PAYI_NOSPACE;
    case ENOMEM:
        return PAYI_INTERNAL;
    default:
        return PAYI_IO;
    }
}

void payi_err_clear(payi_err *err)
{
    if (!err)
        return;
    err->code = PAYI_OK;
    err->field[0] = '\0';
    err->msg[0] = '\0';
}
