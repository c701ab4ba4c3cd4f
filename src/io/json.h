/* json.h - the small strict JSON reader and writer helpers of src/io (io_
 * prefix: libmela exports them, and json_parse is a common name). Not
 * installed; safetensors.c reads checkpoint headers with it and metrics.c
 * writes records with it.
 *
 * The reader takes RFC 8259 JSON and nothing else: no comments, no trailing
 * commas, no NaN, no duplicate keys in one object, strings valid UTF-8 with
 * \uXXXX escapes (surrogate pairs joined) decoded to UTF-8, nesting at most
 * JSON_MAX_DEPTH deep. "\u0000" is refused, so every string is a C string.
 * A failure gives the byte offset of the fault and a short reason. */
#ifndef MELA_IO_JSON_H
#define MELA_IO_JSON_H

#include <stddef.h>
#include <stdint.h>

#define JSON_MAX_DEPTH 64

typedef enum json_type {
    JSON_NULL,
    JSON_FALSE,
    JSON_TRUE,
    JSON_NUMBER,
    JSON_STRING,
    JSON_ARRAY,
    JSON_OBJECT,
} json_type;

typedef struct json_value json_value;
struct json_value {
    json_type type;
    size_t pos;     /* byte offset of the value's first character in the text */
    double num;     /* JSON_NUMBER */
    int is_int;     /* a number written without fraction or exponent that fits int64 */
    int64_t i;      /* its value when is_int */
    char *str;      /* JSON_STRING: decoded, NUL-terminated */
    size_t len;     /* its length in bytes */
    int n;          /* JSON_ARRAY, JSON_OBJECT: number of items */
    json_value *items;
    char **keys;    /* JSON_OBJECT: keys[k] names items[k], in text order */
};

/* Parses text[0..len), one value with optional whitespace around it.
 * Returns 0 with *out (the caller frees it with io_json_free), or -1 with *out
 * NULL, *err_pos the byte offset of the fault and err[0..errlen) a reason. */
int io_json_parse(const char *text, size_t len, json_value **out, size_t *err_pos, char *err,
               size_t errlen);
void io_json_free(json_value *v);
/* The member `key` of an object, or NULL (also when obj is not an object). */
const json_value *io_json_find(const json_value *obj, const char *key);
/* "string", "object", ... for messages. */
const char *io_json_type_name(json_type t);

/* Length of the UTF-8 sequence at s[0..n) and its code point, or 0 when the
 * bytes there are not one valid sequence (overlong forms and surrogates are
 * invalid). */
int io_utf8_next(const unsigned char *s, size_t n, uint32_t *cp);
/* 1 when s[0..n) is valid UTF-8. */
int io_utf8_valid(const char *s, size_t n);

/* A growable text buffer for writers. After a failed allocation it keeps
 * `failed` set and ignores further output; check it once at the end. */
typedef struct jbuf {
    char *p; /* NUL-terminated while not failed */
    size_t len, cap;
    int failed;
} jbuf;

void io_jbuf_put(jbuf *b, const char *s, size_t n);
void io_jbuf_puts(jbuf *b, const char *s);
void io_jbuf_printf(jbuf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* s as a quoted JSON string: " \ and control characters escaped, other
 * bytes as they are. Returns -1 (writing nothing) when s is not UTF-8. */
int io_jbuf_string(jbuf *b, const char *s);
/* v with %.9g, or null when v is NaN or infinite. */
void io_jbuf_number(jbuf *b, double v);
void io_jbuf_free(jbuf *b);

#endif
