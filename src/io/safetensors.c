/* safetensors.c - checkpoints in the safetensors format of Hugging Face, so
 * that a model trained by mela opens in PyTorch (safetensors.torch) and the
 * other way round.
 *
 * Writing follows the reference implementation byte for byte: compact JSON
 * header with "__metadata__" first (only when there is metadata), then the
 * tensors in data order, each {"dtype","shape","data_offsets"}; the header
 * padded with spaces so that the data starts on an 8-byte boundary. Files
 * are written to a temp name, synced and renamed, so a crash mid-save never
 * costs the previous checkpoint.
 *
 * Reading trusts nothing: the file is read whole and every length, offset
 * and shape is checked before a float is copied. Only F32 is read: mela
 * computes in float32, and silently converting a half-precision file would
 * hide a mistake rather than fix one. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/sys.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "mela_io.h"

/* The reference implementation refuses headers above 100 MB. */
#define ST_MAX_HEADER 100000000ull

typedef struct ck_tensor {
    char *name;
    mela_shape shape;
    uint64_t begin, end; /* bytes of the data section */
} ck_tensor;

struct mela_checkpoint {
    char *path; /* for messages */
    unsigned char *file;
    size_t size;
    const unsigned char *data; /* the data section */
    uint64_t data_size;
    int n;
    ck_tensor *t;  /* in data order */
    int *by_name;  /* tensor indices sorted by name */
    int nmeta;
    char **mkeys, **mvals;
};

/* ------------------------------------------------------------ byte order */

static void put_le32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static uint32_t get_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_le64(unsigned char *p, uint64_t v)
{
    put_le32(p, (uint32_t)v);
    put_le32(p + 4, (uint32_t)(v >> 32));
}

static uint64_t get_le64(const unsigned char *p)
{
    return (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

/* ------------------------------------------------------------------ saving */

/* The JSON header, unpadded, in *h; 0 or -1 with the error set. */
static int build_header(jbuf *h, const char *path, const mela_layout *L, int nmeta,
                        const char *const *keys, const char *const *values)
{
    io_jbuf_puts(h, "{");
    if (nmeta > 0) {
        io_jbuf_puts(h, "\"__metadata__\":{");
        for (int i = 0; i < nmeta; i++) {
            if (!keys[i] || !values[i])
                return mela_set_error("checkpoint %s: metadata pair %d has a NULL %s", path, i,
                                      keys[i] ? "value" : "key");
            for (int j = 0; j < i; j++)
                if (!strcmp(keys[i], keys[j]))
                    return mela_set_error("checkpoint %s: metadata key '%s' is given twice", path,
                                          keys[i]);
            if (i)
                io_jbuf_puts(h, ",");
            if (io_jbuf_string(h, keys[i]) < 0)
                return mela_set_error("checkpoint %s: metadata key %d is not valid UTF-8", path, i);
            io_jbuf_puts(h, ":");
            if (io_jbuf_string(h, values[i]) < 0)
                return mela_set_error("checkpoint %s: metadata value of '%s' is not valid UTF-8",
                                      path, keys[i]);
        }
        io_jbuf_puts(h, "}");
    }
    uint64_t off = 0;
    for (int i = 0; i < mela_layout_count(L); i++) {
        const char *name = mela_layout_name(L, i);
        mela_shape s = mela_layout_shape(L, i);
        uint64_t bytes = (uint64_t)mela_shape_numel(s) * 4;
        if (!strcmp(name, "__metadata__"))
            return mela_set_error("checkpoint %s: a tensor may not be called __metadata__", path);
        if (i || nmeta > 0)
            io_jbuf_puts(h, ",");
        if (io_jbuf_string(h, name) < 0)
            return mela_set_error("checkpoint %s: tensor name %d is not valid UTF-8", path, i);
        io_jbuf_puts(h, ":{\"dtype\":\"F32\",\"shape\":[");
        for (int d = 0; d < s.nd; d++)
            io_jbuf_printf(h, d ? ",%d" : "%d", s.d[d]);
        io_jbuf_printf(h, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", off, off + bytes);
        off += bytes;
    }
    io_jbuf_puts(h, "}");
    /* Spaces up to a multiple of 8, as the reference does. */
    while (!h->failed && h->len % 8)
        io_jbuf_puts(h, " ");
    if (h->failed)
        return mela_set_error("checkpoint %s: out of memory", path);
    return 0;
}

/* Header and data to fd (the file tmp); 0 or -1 with the error set. */
static int write_checkpoint(int fd, const char *tmp, const jbuf *h, const mela_layout *L,
                            const float *theta)
{
    unsigned char len[8];
    put_le64(len, h->len);
    if (mela_sys_write_all(fd, tmp, len, 8) < 0 || mela_sys_write_all(fd, tmp, h->p, h->len) < 0)
        return -1;
    enum { CHUNK = 4096 };
    unsigned char buf[CHUNK * 4];
    for (int i = 0; i < mela_layout_count(L); i++) {
        const float *x = theta + mela_layout_offset(L, i);
        size_t n = mela_shape_numel(mela_layout_shape(L, i));
        for (size_t s = 0; s < n; s += CHUNK) {
            size_t m = n - s < CHUNK ? n - s : CHUNK;
            for (size_t k = 0; k < m; k++) {
                uint32_t bits;
                memcpy(&bits, &x[s + k], 4);
                put_le32(buf + 4 * k, bits);
            }
            if (mela_sys_write_all(fd, tmp, buf, 4 * m) < 0)
                return -1;
        }
    }
    return 0;
}

int mela_checkpoint_save(const char *path, const mela_layout *L, const float *theta, int nmeta,
                         const char *const *keys, const char *const *values)
{
    if (!path || !*path)
        return mela_set_error("checkpoint: no path given");
    if (!L)
        return mela_set_error("checkpoint %s: no layout given", path);
    if (!theta && mela_layout_size(L) > 0)
        return mela_set_error("checkpoint %s: no parameters given", path);
    if (nmeta < 0 || (nmeta > 0 && (!keys || !values)))
        return mela_set_error("checkpoint %s: bad metadata (%d pairs, keys %p, values %p)", path,
                              nmeta, (const void *)keys, (const void *)values);
    jbuf h = {0};
    if (build_header(&h, path, L, nmeta, keys, values) < 0) {
        io_jbuf_free(&h);
        return -1;
    }
    char *tmp;
    int fd = mela_sys_temp_open(path, &tmp), rc = -1;
    if (fd >= 0) {
        int ok = write_checkpoint(fd, tmp, &h, L, theta) == 0;
        rc = mela_sys_temp_finish(fd, tmp, path, ok);
    }
    io_jbuf_free(&h);
    return rc ? mela_sys_error_context("checkpoint") : 0;
}

/* ----------------------------------------------------------------- reading */

void mela_checkpoint_close(mela_checkpoint *ck)
{
    if (!ck)
        return;
    for (int i = 0; i < ck->n; i++)
        free(ck->t[i].name);
    for (int i = 0; i < ck->nmeta; i++) {
        free(ck->mkeys[i]);
        free(ck->mvals[i]);
    }
    free(ck->t);
    free(ck->by_name);
    free(ck->mkeys);
    free(ck->mvals);
    free(ck->file);
    free(ck->path);
    free(ck);
}

/* Records "checkpoint <path>: <message>". */
static int ck_error(const char *path, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static int ck_error(const char *path, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return mela_set_error("checkpoint %s: %s", path, msg);
}

static int read_file(const char *path, mela_checkpoint *ck)
{
    return mela_sys_read_file(path, &ck->file, &ck->size) ? mela_sys_error_context("checkpoint")
                                                          : 0;
}

/* One tensor entry of the header; its name is taken over from the tree. */
static int read_tensor(const char *path, char **key, const json_value *v, ck_tensor *t)
{
    const char *name = *key;
    if (v->type != JSON_OBJECT)
        return ck_error(path, "tensor '%s' is %s, not an object", name, io_json_type_name(v->type));
    const json_value *dtype = io_json_find(v, "dtype"), *shape = io_json_find(v, "shape"),
                     *offs = io_json_find(v, "data_offsets");
    if (!dtype || !shape || !offs)
        return ck_error(path, "tensor '%s' has no \"%s\"", name,
                        !dtype ? "dtype" : !shape ? "shape" : "data_offsets");
    if (dtype->type != JSON_STRING)
        return ck_error(path, "tensor '%s': dtype is %s, not a string", name,
                        io_json_type_name(dtype->type));
    if (strcmp(dtype->str, "F32") != 0)
        return ck_error(path, "tensor '%s' has dtype %.40s; mela reads only F32", name, dtype->str);
    if (shape->type != JSON_ARRAY)
        return ck_error(path, "tensor '%s': shape is %s, not an array", name,
                        io_json_type_name(shape->type));
    if (shape->n > MELA_MAX_DIMS)
        return ck_error(path, "tensor '%s' has %d dimensions; mela handles at most %d", name,
                        shape->n, MELA_MAX_DIMS);
    uint64_t numel = 1;
    int overflow = 0;
    t->shape.nd = shape->n ? shape->n : 1; /* a scalar [] is shape (1) */
    for (int d = 0; d < MELA_MAX_DIMS; d++)
        t->shape.d[d] = shape->n ? 0 : (d == 0);
    for (int d = 0; d < shape->n; d++) {
        const json_value *x = &shape->items[d];
        if (x->type != JSON_NUMBER || !x->is_int || x->i < 0 || x->i > INT32_MAX)
            return ck_error(path, "tensor '%s': dimension %d of its shape is not an integer in "
                            "[0, 2^31)", name, d);
        t->shape.d[d] = (int)x->i;
        if (x->i && numel > UINT64_MAX / 4 / (uint64_t)x->i)
            overflow = 1;
        else
            numel *= (uint64_t)x->i;
    }
    if (offs->type != JSON_ARRAY || offs->n != 2)
        return ck_error(path, "tensor '%s': data_offsets is not a pair [begin, end]", name);
    for (int k = 0; k < 2; k++)
        if (offs->items[k].type != JSON_NUMBER || !offs->items[k].is_int || offs->items[k].i < 0)
            return ck_error(path, "tensor '%s': data_offsets must be non-negative integers", name);
    t->begin = (uint64_t)offs->items[0].i;
    t->end = (uint64_t)offs->items[1].i;
    if (t->end < t->begin)
        return ck_error(path, "tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] end before "
                        "they begin", name, t->begin, t->end);
    char sb[64];
    if (overflow)
        return ck_error(path, "tensor '%s': shape %s is too large", name,
                        mela_shape_str(t->shape, sb, sizeof sb));
    if (t->end - t->begin != numel * 4)
        return ck_error(path, "tensor '%s': shape %s needs %" PRIu64 " bytes but data_offsets [%"
                        PRIu64 ", %" PRIu64 "] hold %" PRIu64, name,
                        mela_shape_str(t->shape, sb, sizeof sb), numel * 4, t->begin, t->end,
                        t->end - t->begin);
    t->name = *key;
    *key = NULL;
    return 0;
}

static int by_offset(const void *a, const void *b)
{
    const ck_tensor *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* qsort has no context argument: the tensors being sorted by name. */
static _Thread_local const ck_tensor *sort_tensors;

static int by_name(const void *a, const void *b)
{
    return strcmp(sort_tensors[*(const int *)a].name, sort_tensors[*(const int *)b].name);
}

static int read_metadata(const char *path, json_value *v, mela_checkpoint *ck)
{
    if (v->type != JSON_OBJECT)
        return ck_error(path, "__metadata__ is %s, not an object", io_json_type_name(v->type));
    ck->mkeys = calloc((size_t)v->n + 1, sizeof *ck->mkeys);
    ck->mvals = calloc((size_t)v->n + 1, sizeof *ck->mvals);
    if (!ck->mkeys || !ck->mvals)
        return ck_error(path, "out of memory");
    for (int k = 0; k < v->n; k++) {
        if (v->items[k].type != JSON_STRING)
            return ck_error(path, "metadata '%s' is %s, not a string", v->keys[k],
                            io_json_type_name(v->items[k].type));
        ck->mkeys[k] = v->keys[k];
        ck->mvals[k] = v->items[k].str;
        v->keys[k] = NULL;
        v->items[k].str = NULL;
        ck->nmeta = k + 1;
    }
    return 0;
}

/* Everything after the file is in memory. */
static int parse_checkpoint(const char *path, mela_checkpoint *ck)
{
    if (ck->size < 8)
        return ck_error(path, "truncated: the file has %zu bytes, fewer than the 8 of the header "
                        "length", ck->size);
    uint64_t hlen = get_le64(ck->file);
    if (hlen > ck->size - 8)
        return ck_error(path, "truncated or not safetensors: the header length is %" PRIu64
                        " bytes but only %zu follow", hlen, ck->size - 8);
    if (hlen > ST_MAX_HEADER)
        return ck_error(path, "header length %" PRIu64 " exceeds the %llu bytes safetensors "
                        "allows", hlen, ST_MAX_HEADER);
    const char *text = (const char *)ck->file + 8;
    if (hlen < 2 || text[0] != '{')
        return ck_error(path, "not safetensors: the header does not start with '{' at byte 8");
    json_value *root;
    size_t at;
    char why[256];
    if (io_json_parse(text, (size_t)hlen, &root, &at, why, sizeof why) < 0)
        return ck_error(path, "corrupt header: invalid JSON at byte %zu of the file (%zu of the "
                        "header): %s", at + 8, at, why);
    if (root->type != JSON_OBJECT) {
        io_json_free(root);
        return ck_error(path, "corrupt header: not a JSON object");
    }
    ck->data = ck->file + 8 + hlen;
    ck->data_size = ck->size - 8 - hlen;
    ck->t = calloc((size_t)root->n + 1, sizeof *ck->t);
    ck->by_name = calloc((size_t)root->n + 1, sizeof *ck->by_name);
    if (!ck->t || !ck->by_name) {
        io_json_free(root);
        return ck_error(path, "out of memory");
    }
    int rc = 0;
    for (int k = 0; k < root->n && rc == 0; k++) {
        if (!strcmp(root->keys[k], "__metadata__")) {
            rc = read_metadata(path, &root->items[k], ck);
        } else {
            rc = read_tensor(path, &root->keys[k], &root->items[k], &ck->t[ck->n]);
            if (rc == 0)
                ck->n++;
        }
    }
    io_json_free(root);
    if (rc < 0)
        return -1;

    qsort(ck->t, (size_t)ck->n, sizeof *ck->t, by_offset);
    uint64_t end = 0;
    for (int i = 0; i < ck->n; i++) {
        const ck_tensor *t = &ck->t[i];
        if (t->begin < end)
            return ck_error(path, "tensor '%s' (bytes [%" PRIu64 ", %" PRIu64 "]) overlaps "
                            "tensor '%s' (bytes [%" PRIu64 ", %" PRIu64 "])", t->name, t->begin,
                            t->end, ck->t[i - 1].name, ck->t[i - 1].begin, ck->t[i - 1].end);
        if (t->begin > end)
            return ck_error(path, "bytes [%" PRIu64 ", %" PRIu64 "] of the data section belong "
                            "to no tensor", end, t->begin);
        end = t->end;
    }
    if (end > ck->data_size)
        return ck_error(path, "truncated: tensor '%s' ends at byte %" PRIu64 " of the data "
                        "section, which has only %" PRIu64 " bytes", ck->t[ck->n - 1].name, end,
                        ck->data_size);
    if (end < ck->data_size)
        return ck_error(path, "%" PRIu64 " bytes after the last tensor belong to no tensor",
                        ck->data_size - end);

    for (int i = 0; i < ck->n; i++)
        ck->by_name[i] = i;
    sort_tensors = ck->t;
    qsort(ck->by_name, (size_t)ck->n, sizeof *ck->by_name, by_name);
    sort_tensors = NULL;
    return 0;
}

/* A checkpoint named path (in messages): the file at path, or size bytes
 * from memory when bytes is not NULL. */
static mela_checkpoint *checkpoint_new(const char *path, const void *bytes, size_t size)
{
    if (!path || !*path) {
        mela_set_error("checkpoint: no path given");
        return NULL;
    }
    mela_checkpoint *ck = calloc(1, sizeof *ck);
    if (!ck) {
        ck_error(path, "out of memory");
        return NULL;
    }
    ck->path = strdup(path);
    if (!ck->path) {
        free(ck);
        ck_error(path, "out of memory");
        return NULL;
    }
    int rc;
    if (bytes) {
        ck->file = malloc(size + 1); /* + 1: never malloc(0) */
        ck->size = size;
        rc = ck->file ? 0 : ck_error(path, "out of memory");
        if (ck->file)
            memcpy(ck->file, bytes, size);
    } else {
        rc = read_file(path, ck);
    }
    if (rc < 0 || parse_checkpoint(path, ck) < 0) {
        mela_checkpoint_close(ck);
        return NULL;
    }
    return ck;
}

mela_checkpoint *mela_checkpoint_open(const char *path) { return checkpoint_new(path, NULL, 0); }

mela_checkpoint *io_checkpoint_from_memory(const char *name, const void *bytes, size_t size)
{
    return checkpoint_new(name, bytes ? bytes : "", bytes ? size : 0);
}

const char *mela_checkpoint_meta(const mela_checkpoint *ck, const char *key)
{
    if (!ck || !key)
        return NULL;
    for (int i = 0; i < ck->nmeta; i++)
        if (!strcmp(ck->mkeys[i], key))
            return ck->mvals[i];
    return NULL;
}

int mela_checkpoint_meta_count(const mela_checkpoint *ck) { return ck ? ck->nmeta : 0; }

const char *mela_checkpoint_meta_key(const mela_checkpoint *ck, int i)
{
    return ck && i >= 0 && i < ck->nmeta ? ck->mkeys[i] : NULL;
}

const char *mela_checkpoint_meta_value(const mela_checkpoint *ck, int i)
{
    return ck && i >= 0 && i < ck->nmeta ? ck->mvals[i] : NULL;
}

int mela_checkpoint_count(const mela_checkpoint *ck) { return ck ? ck->n : 0; }

const char *mela_checkpoint_name(const mela_checkpoint *ck, int i)
{
    return ck && i >= 0 && i < ck->n ? ck->t[i].name : NULL;
}

mela_shape mela_checkpoint_shape(const mela_checkpoint *ck, int i)
{
    mela_shape none = {0, {0, 0, 0, 0}};
    return ck && i >= 0 && i < ck->n ? ck->t[i].shape : none;
}

int mela_checkpoint_find(const mela_checkpoint *ck, const char *name)
{
    if (!ck || !name)
        return -1;
    int lo = 0, hi = ck->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(name, ck->t[ck->by_name[mid]].name);
        if (c == 0)
            return ck->by_name[mid];
        if (c < 0)
            hi = mid - 1;
        else
            lo = mid + 1;
    }
    return -1;
}

int mela_checkpoint_tensor(const mela_checkpoint *ck, int i, float *out)
{
    if (!ck || i < 0 || i >= ck->n)
        return ck ? ck_error(ck->path, "tensor index %d out of range (%d tensors)", i, ck->n)
                  : mela_set_error("checkpoint: no checkpoint given");
    const ck_tensor *t = &ck->t[i];
    const unsigned char *p = ck->data + t->begin;
    size_t n = (size_t)((t->end - t->begin) / 4);
    for (size_t k = 0; k < n; k++) {
        uint32_t bits = get_le32(p + 4 * k);
        memcpy(&out[k], &bits, 4);
    }
    return 0;
}

/* A model's weights are finite: a NaN or an infinity would only spread
 * through every later step (a run that diverged, a damaged file). */
static int check_finite(const mela_checkpoint *ck, const ck_tensor *t)
{
    const unsigned char *p = ck->data + t->begin;
    size_t n = (size_t)((t->end - t->begin) / 4), bad = 0, first = 0;
    uint32_t first_bits = 0;
    for (size_t k = 0; k < n; k++) {
        uint32_t bits = get_le32(p + 4 * k);
        if ((bits & 0x7f800000u) == 0x7f800000u && !bad++) /* exponent all ones */
            first = k, first_bits = bits;
    }
    if (!bad)
        return 0;
    const char *what = first_bits & 0x007fffffu ? "NaN" : first_bits >> 31 ? "-inf" : "inf";
    return ck_error(ck->path, "tensor '%s' holds %zu non-finite value%s (the first: %s at index "
                    "%zu of %zu); a model's weights must be finite", t->name, bad,
                    bad == 1 ? "" : "s", what, first, n);
}

int mela_checkpoint_read(const mela_checkpoint *ck, const mela_layout *L, float *theta)
{
    if (!ck || !L || (!theta && mela_layout_size(L) > 0))
        return mela_set_error("checkpoint: read needs a checkpoint, a layout and a buffer");
    int nl = mela_layout_count(L);
    char sa[64], sb[64];
    for (int v = 0; v < nl; v++) {
        const char *name = mela_layout_name(L, v);
        int i = mela_checkpoint_find(ck, name);
        if (i < 0)
            return ck_error(ck->path, "the model's tensor '%s' is not in the checkpoint (%d "
                            "tensors)", name, ck->n);
        mela_shape want = mela_layout_shape(L, v);
        if (!mela_shape_equal(ck->t[i].shape, want))
            return ck_error(ck->path, "tensor '%s' has shape %s, the model expects %s", name,
                            mela_shape_str(ck->t[i].shape, sa, sizeof sa),
                                  mela_shape_str(want, sb, sizeof sb));
    }
    for (int i = 0; i < ck->n; i++)
        if (mela_layout_find(L, ck->t[i].name) < 0)
            return ck_error(ck->path, "tensor '%s' is not in the model (a checkpoint of another "
                            "model?): the file has %d tensors, the model %d", ck->t[i].name, ck->n,
                            nl);
    for (int i = 0; i < ck->n; i++)
        if (check_finite(ck, &ck->t[i]))
            return -1;
    for (int v = 0; v < nl; v++)
        mela_checkpoint_tensor(ck, mela_checkpoint_find(ck, mela_layout_name(L, v)),
                               theta + mela_layout_offset(L, v));
    return 0;
}
