/* json.c - a strict JSON reader (recursive descent into a small tree) and
 * the output helpers the writers of src/io share.
 *
 * It exists because a checkpoint header comes from a file someone else
 * wrote: every byte is checked, every failure names its byte offset, and no
 * input, however hostile, may crash, loop or exhaust the stack (nesting is
 * limited). It is not a general-purpose JSON library: no streaming, no
 * lookups faster than a linear scan, numbers as doubles (plus exact int64
 * for integers, which is what sizes and offsets need). */
#include "io/json.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------- UTF-8 */

int io_utf8_next(const unsigned char *s, size_t n, uint32_t *cp)
{
    if (n == 0)
        return 0;
    unsigned c = s[0];
    int len;
    uint32_t v, min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if ((c & 0xE0) == 0xC0) {
        len = 2, v = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
        len = 3, v = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
        len = 4, v = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (n < (size_t)len)
        return 0;
    for (int k = 1; k < len; k++) {
        if ((s[k] & 0xC0) != 0x80)
            return 0;
        v = (v << 6) | (s[k] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    *cp = v;
    return len;
}

int io_utf8_valid(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        int k = io_utf8_next(u + i, n - i, &cp);
        if (!k)
            return 0;
        i += (size_t)k;
    }
    return 1;
}

static size_t utf8_put(char *out, uint32_t cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    } else if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    } else if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* ------------------------------------------------------------------ reader */

typedef struct parser {
    const char *s;
    size_t n, pos;
    int depth;
    size_t err_pos;
    char *err;
    size_t errlen;
} parser;

static int fail_at(parser *p, size_t pos, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static int fail_at(parser *p, size_t pos, const char *fmt, ...)
{
    p->err_pos = pos;
    if (p->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->err, p->errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static void skip_ws(parser *p)
{
    while (p->pos < p->n) {
        char c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            break;
        p->pos++;
    }
}

/* What sits at pos, for messages: "'x'", "byte 0x07" or "the end". */
static const char *what_at(parser *p, size_t pos, char *buf, size_t n)
{
    if (pos >= p->n)
        return "the end of the text";
    unsigned char c = (unsigned char)p->s[pos];
    if (c >= 0x20 && c < 0x7F)
        snprintf(buf, n, "'%c'", c);
    else
        snprintf(buf, n, "byte 0x%02X", c);
    return buf;
}

static void free_members(json_value *v)
{
    if (v->type == JSON_STRING) {
        free(v->str);
    } else if (v->type == JSON_ARRAY || v->type == JSON_OBJECT) {
        for (int k = 0; k < v->n; k++) {
            free_members(&v->items[k]);
            if (v->keys)
                free(v->keys[k]);
        }
        free(v->items);
        free(v->keys);
    }
}

static int hex4(parser *p, size_t at, uint32_t *out)
{
    if (p->n - at < 4)
        return fail_at(p, at, "\\u needs four hex digits");
    uint32_t v = 0;
    for (int k = 0; k < 4; k++) {
        char c = p->s[at + k];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0)
            return fail_at(p, at + k, "\\u needs four hex digits");
        v = v * 16 + (uint32_t)d;
    }
    *out = v;
    return 0;
}

/* A string starting at the opening quote; the decoded text in *out, *len. */
static int parse_string(parser *p, char **out, size_t *len)
{
    size_t start = p->pos++;
    /* The decoded text is never longer than the source. */
    size_t cap = 16;
    char *buf = malloc(cap);
    size_t k = 0;
    if (!buf)
        return fail_at(p, start, "out of memory");
    for (;;) {
        if (p->pos >= p->n) {
            free(buf);
            return fail_at(p, start, "string not terminated");
        }
        if (cap - k < 8) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                return fail_at(p, p->pos, "out of memory");
            }
            buf = nb;
            cap *= 2;
        }
        unsigned char c = (unsigned char)p->s[p->pos];
        if (c == '"') {
            p->pos++;
            break;
        }
        if (c < 0x20) {
            free(buf);
            return fail_at(p, p->pos, "control character 0x%02X inside a string (must be escaped)",
                           c);
        }
        if (c >= 0x80) {
            uint32_t cp;
            int m = io_utf8_next((const unsigned char *)p->s + p->pos, p->n - p->pos, &cp);
            if (!m) {
                free(buf);
                return fail_at(p, p->pos, "invalid UTF-8 inside a string");
            }
            memcpy(buf + k, p->s + p->pos, (size_t)m);
            k += (size_t)m;
            p->pos += (size_t)m;
            continue;
        }
        if (c != '\\') {
            buf[k++] = (char)c;
            p->pos++;
            continue;
        }
        size_t esc = p->pos;
        if (p->pos + 1 >= p->n) {
            free(buf);
            return fail_at(p, esc, "string not terminated");
        }
        char e = p->s[p->pos + 1];
        p->pos += 2;
        switch (e) {
        case '"': buf[k++] = '"'; break;
        case '\\': buf[k++] = '\\'; break;
        case '/': buf[k++] = '/'; break;
        case 'b': buf[k++] = '\b'; break;
        case 'f': buf[k++] = '\f'; break;
        case 'n': buf[k++] = '\n'; break;
        case 'r': buf[k++] = '\r'; break;
        case 't': buf[k++] = '\t'; break;
        case 'u': {
            uint32_t cp;
            if (hex4(p, p->pos, &cp) < 0) {
                free(buf);
                return -1;
            }
            p->pos += 4;
            if (cp >= 0xDC00 && cp <= 0xDFFF) {
                free(buf);
                return fail_at(p, esc, "lone low surrogate \\u%04X", (unsigned)cp);
            }
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                uint32_t lo;
                if (p->n - p->pos < 2 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u') {
                    free(buf);
                    return fail_at(p, esc, "high surrogate \\u%04X not followed by a low one",
                                   (unsigned)cp);
                }
                if (hex4(p, p->pos + 2, &lo) < 0) {
                    free(buf);
                    return -1;
                }
                if (lo < 0xDC00 || lo > 0xDFFF) {
                    free(buf);
                    return fail_at(p, esc, "high surrogate \\u%04X not followed by a low one",
                                   (unsigned)cp);
                }
                p->pos += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            if (cp == 0) {
                free(buf);
                return fail_at(p, esc, "\\u0000 (NUL) inside a string is not supported");
            }
            k += utf8_put(buf + k, cp);
            break;
        }
        default: {
            char w[16];
            free(buf);
            return fail_at(p, esc, "unknown escape \\%s", what_at(p, esc + 1, w, sizeof w));
        }
        }
    }
    buf[k] = '\0';
    *out = buf;
    *len = k;
    return 0;
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

static int parse_number(parser *p, json_value *v)
{
    size_t start = p->pos, i = p->pos;
    int integral = 1;
    if (i < p->n && p->s[i] == '-')
        i++;
    if (i >= p->n || !is_digit(p->s[i]))
        return fail_at(p, i, "a number needs a digit here");
    if (p->s[i] == '0') {
        i++;
        if (i < p->n && is_digit(p->s[i]))
            return fail_at(p, i, "numbers may not have leading zeros");
    } else {
        while (i < p->n && is_digit(p->s[i]))
            i++;
    }
    if (i < p->n && p->s[i] == '.') {
        integral = 0;
        i++;
        if (i >= p->n || !is_digit(p->s[i]))
            return fail_at(p, i, "a digit must follow the decimal point");
        while (i < p->n && is_digit(p->s[i]))
            i++;
    }
    if (i < p->n && (p->s[i] == 'e' || p->s[i] == 'E')) {
        integral = 0;
        i++;
        if (i < p->n && (p->s[i] == '+' || p->s[i] == '-'))
            i++;
        if (i >= p->n || !is_digit(p->s[i]))
            return fail_at(p, i, "a digit must follow the exponent mark");
        while (i < p->n && is_digit(p->s[i]))
            i++;
    }
    size_t len = i - start;
    char small[64], *tok = len < sizeof small ? small : malloc(len + 1);
    if (!tok)
        return fail_at(p, start, "out of memory");
    memcpy(tok, p->s + start, len);
    tok[len] = '\0';
    v->type = JSON_NUMBER;
    v->num = strtod(tok, NULL);
    if (tok != small)
        free(tok);
    v->is_int = 0;
    if (integral) {
        /* Exact int64, or not an integer for our purposes. */
        int neg = p->s[start] == '-';
        uint64_t acc = 0, lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
        int ok = 1;
        for (size_t j = start + (size_t)neg; j < i; j++) {
            uint64_t d = (uint64_t)(p->s[j] - '0');
            if (acc > (lim - d) / 10) {
                ok = 0;
                break;
            }
            acc = acc * 10 + d;
        }
        if (ok) {
            v->is_int = 1;
            v->i = neg ? (acc == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)acc)
                       : (int64_t)acc;
        }
    }
    p->pos = i;
    return 0;
}

static int parse_value(parser *p, json_value *v);

static int keys_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The first key that occurs twice, or NULL; -1 when out of memory. */
static int find_duplicate(const json_value *v, const char **dup)
{
    *dup = NULL;
    if (v->n < 2)
        return 0;
    char **sorted = malloc((size_t)v->n * sizeof *sorted);
    if (!sorted)
        return -1;
    memcpy(sorted, v->keys, (size_t)v->n * sizeof *sorted);
    qsort(sorted, (size_t)v->n, sizeof *sorted, keys_cmp);
    for (int k = 1; k < v->n && !*dup; k++)
        if (!strcmp(sorted[k - 1], sorted[k]))
            *dup = sorted[k];
    free(sorted);
    return 0;
}

/* An array or object starting at its bracket. */
static int parse_container(parser *p, json_value *v, int object)
{
    char close = object ? '}' : ']';
    size_t start = p->pos;
    if (++p->depth > JSON_MAX_DEPTH)
        return fail_at(p, start, "nesting deeper than %d levels", JSON_MAX_DEPTH);
    v->type = object ? JSON_OBJECT : JSON_ARRAY;
    v->n = 0;
    v->items = NULL;
    v->keys = NULL;
    p->pos++;
    skip_ws(p);
    int cap = 0;
    char w[16];
    if (p->pos < p->n && p->s[p->pos] == close) {
        p->pos++;
        p->depth--;
        return 0;
    }
    for (;;) {
        if (v->n == cap) {
            int ncap = cap ? 2 * cap : 4;
            json_value *ni = realloc(v->items, (size_t)ncap * sizeof *ni);
            if (ni)
                v->items = ni;
            char **nk = object ? realloc(v->keys, (size_t)ncap * sizeof *nk) : NULL;
            if (nk)
                v->keys = nk;
            if (!ni || (object && !nk))
                return fail_at(p, p->pos, "out of memory");
            cap = ncap;
        }
        char *key = NULL;
        if (object) {
            size_t klen;
            if (p->pos >= p->n || p->s[p->pos] != '"')
                return fail_at(p, p->pos, "expected a string key, found %s",
                               what_at(p, p->pos, w, sizeof w));
            if (parse_string(p, &key, &klen) < 0)
                return -1;
            skip_ws(p);
            if (p->pos >= p->n || p->s[p->pos] != ':') {
                free(key);
                return fail_at(p, p->pos, "expected ':' after an object key, found %s",
                               what_at(p, p->pos, w, sizeof w));
            }
            p->pos++;
            skip_ws(p);
        }
        json_value item;
        memset(&item, 0, sizeof item);
        if (parse_value(p, &item) < 0) {
            free_members(&item);
            free(key);
            return -1;
        }
        v->items[v->n] = item;
        if (object)
            v->keys[v->n] = key;
        v->n++;
        skip_ws(p);
        if (p->pos < p->n && p->s[p->pos] == ',') {
            p->pos++;
            skip_ws(p);
            if (p->pos < p->n && p->s[p->pos] == close)
                return fail_at(p, p->pos, "trailing comma before '%c'", close);
            continue;
        }
        if (p->pos < p->n && p->s[p->pos] == close) {
            p->pos++;
            break;
        }
        return fail_at(p, p->pos, "expected ',' or '%c', found %s", close,
                       what_at(p, p->pos, w, sizeof w));
    }
    if (object) {
        const char *dup;
        if (find_duplicate(v, &dup) < 0)
            return fail_at(p, start, "out of memory");
        if (dup)
            return fail_at(p, start, "object has the key \"%.200s\" twice", dup);
    }
    p->depth--;
    return 0;
}

static int parse_literal(parser *p, json_value *v, const char *word, json_type t)
{
    size_t len = strlen(word);
    if (p->n - p->pos < len || memcmp(p->s + p->pos, word, len) != 0)
        return fail_at(p, p->pos, "invalid literal (expected %s)", word);
    v->type = t;
    p->pos += len;
    return 0;
}

/* On failure v may hold partly built members; the caller frees them. */
static int parse_value(parser *p, json_value *v)
{
    char w[16];
    v->pos = p->pos;
    if (p->pos >= p->n)
        return fail_at(p, p->pos, "expected a value, found the end of the text");
    char c = p->s[p->pos];
    switch (c) {
    case '{': return parse_container(p, v, 1);
    case '[': return parse_container(p, v, 0);
    case '"':
        v->type = JSON_STRING;
        v->str = NULL;
        return parse_string(p, &v->str, &v->len);
    case 't': return parse_literal(p, v, "true", JSON_TRUE);
    case 'f': return parse_literal(p, v, "false", JSON_FALSE);
    case 'n': return parse_literal(p, v, "null", JSON_NULL);
    default:
        if (c == '-' || is_digit(c))
            return parse_number(p, v);
        return fail_at(p, p->pos, "expected a value, found %s", what_at(p, p->pos, w, sizeof w));
    }
}

int io_json_parse(const char *text, size_t len, json_value **out, size_t *err_pos, char *err,
               size_t errlen)
{
    parser p = {text, len, 0, 0, 0, err, errlen};
    *out = NULL;
    if (errlen)
        err[0] = '\0';
    json_value *v = calloc(1, sizeof *v);
    if (!v) {
        *err_pos = 0;
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    skip_ws(&p);
    int rc = parse_value(&p, v);
    if (rc == 0) {
        skip_ws(&p);
        if (p.pos < p.n) {
            char w[16];
            rc = fail_at(&p, p.pos, "unexpected %s after the value",
                         what_at(&p, p.pos, w, sizeof w));
        }
    }
    if (rc < 0) {
        io_json_free(v);
        *err_pos = p.err_pos;
        return -1;
    }
    *out = v;
    return 0;
}

void io_json_free(json_value *v)
{
    if (!v)
        return;
    free_members(v);
    free(v);
}

const json_value *io_json_find(const json_value *obj, const char *key)
{
    if (!obj || obj->type != JSON_OBJECT)
        return NULL;
    for (int k = 0; k < obj->n; k++)
        if (!strcmp(obj->keys[k], key))
            return &obj->items[k];
    return NULL;
}

const char *io_json_type_name(json_type t)
{
    switch (t) {
    case JSON_NULL: return "null";
    case JSON_FALSE:
    case JSON_TRUE: return "a boolean";
    case JSON_NUMBER: return "a number";
    case JSON_STRING: return "a string";
    case JSON_ARRAY: return "an array";
    case JSON_OBJECT: return "an object";
    }
    return "?";
}

/* ------------------------------------------------------------------ writer */

static int jbuf_reserve(jbuf *b, size_t extra)
{
    if (b->failed)
        return -1;
    if (b->len + extra + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1)
        cap *= 2;
    char *np = realloc(b->p, cap);
    if (!np) {
        b->failed = 1;
        return -1;
    }
    b->p = np;
    b->cap = cap;
    return 0;
}

void io_jbuf_put(jbuf *b, const char *s, size_t n)
{
    if (jbuf_reserve(b, n) < 0)
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void io_jbuf_puts(jbuf *b, const char *s) { io_jbuf_put(b, s, strlen(s)); }

void io_jbuf_printf(jbuf *b, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->failed = 1;
        return;
    }
    if ((size_t)n < sizeof small) {
        io_jbuf_put(b, small, (size_t)n);
        return;
    }
    if (jbuf_reserve(b, (size_t)n) < 0)
        return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

int io_jbuf_string(jbuf *b, const char *s)
{
    size_t n = strlen(s);
    if (!io_utf8_valid(s, n))
        return -1;
    io_jbuf_put(b, "\"", 1);
    size_t run = 0; /* bytes copied as they are, flushed in one go */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        char u[8];
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        default:
            if (c < 0x20) {
                snprintf(u, sizeof u, "\\u%04x", c);
                esc = u;
            }
        }
        if (!esc)
            continue;
        io_jbuf_put(b, s + run, i - run);
        io_jbuf_puts(b, esc);
        run = i + 1;
    }
    io_jbuf_put(b, s + run, n - run);
    io_jbuf_put(b, "\"", 1);
    return 0;
}

void io_jbuf_number(jbuf *b, double v)
{
    if (!isfinite(v))
        io_jbuf_puts(b, "null");
    else
        io_jbuf_printf(b, "%.9g", v);
}

void io_jbuf_free(jbuf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
    b->failed = 0;
}
