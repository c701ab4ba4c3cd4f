/* fuzz_json.c - libFuzzer target: the strict JSON reader of checkpoint
 * headers on any bytes. What it accepts must be what it says: every string
 * valid UTF-8 without NUL, written back by io_jbuf_string and read again to
 * the same bytes; failures give an offset inside the text. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_string(const char *s, size_t len)
{
    if (strlen(s) != len || !io_utf8_valid(s, len))
        abort();
    jbuf b = {0};
    if (io_jbuf_string(&b, s) < 0)
        abort();
    json_value *v = NULL;
    size_t at;
    char why[128];
    if (!b.failed) {
        if (io_json_parse(b.p, b.len, &v, &at, why, sizeof why) < 0 || v->type != JSON_STRING ||
            v->len != len || memcmp(v->str, s, len))
            abort();
        io_json_free(v);
    }
    io_jbuf_free(&b);
}

static void walk(const json_value *v, size_t size, int depth)
{
    if (depth > JSON_MAX_DEPTH + 1 || v->pos >= size)
        abort();
    if (v->type == JSON_STRING)
        check_string(v->str, v->len);
    if (v->type == JSON_ARRAY || v->type == JSON_OBJECT)
        for (int i = 0; i < v->n; i++) {
            if (v->type == JSON_OBJECT) {
                check_string(v->keys[i], strlen(v->keys[i]));
                if (io_json_find(v, v->keys[i]) != &v->items[i]) /* keys are unique */
                    abort();
            }
            walk(&v->items[i], size, depth + 1);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_value *v = NULL;
    size_t at = (size_t)-1;
    char why[128];
    if (io_json_parse((const char *)data, size, &v, &at, why, sizeof why) < 0) {
        if (v || at > size || !why[0])
            abort();
        return 0;
    }
    walk(v, size, 0);
    io_json_free(v);
    return 0;
}
