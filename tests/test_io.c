/* test_io.c - checkpoints (round trip, exact bytes, every way a file can be
 * broken, atomic saves), the JSON reader under them, metrics logs and PNG
 * plots. Everything is written under a fresh mkdtemp directory, removed at
 * the end. */
#include <dirent.h>
#include <math.h>
#include <png.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "core/sys.h"
#include "io/json.h"
#include "mela.h"
#include "mela_io.h"

static char tmp[64];

/* ----------------------------------------------------------------- helpers */

static char *path_in(const char *name)
{
    static char buf[8][512];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, 512, "%s/%s", tmp, name);
    return p;
}

static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n + 1);
    *len = fread(b, 1, (size_t)n, f);
    b[*len] = 0;
    fclose(f);
    return b;
}

static void spit(const char *path, const void *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (len)
        fwrite(buf, 1, len, f);
    fclose(f);
}

/* Number of entries of dir whose name contains part. */
static int count_entries(const char *dir, const char *part)
{
    DIR *d = opendir(dir);
    int n = 0;
    if (!d)
        return -1;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strstr(e->d_name, part))
            n++;
    closedir(d);
    return n;
}

static int has(const char *msg, const char *part) { return strstr(msg, part) != NULL; }

/* A safetensors file from a header text (padded here) and raw data. */
static void make_st(const char *path, const char *header, const void *data, size_t dlen)
{
    size_t h = strlen(header), n = (h + 7) / 8 * 8;
    unsigned char *b = calloc(8 + n + dlen + 1, 1);
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)((uint64_t)n >> (8 * i));
    memcpy(b + 8, header, h);
    memset(b + 8 + h, ' ', n - h);
    if (dlen)
        memcpy(b + 8 + n, data, dlen);
    spit(path, b, 8 + n + dlen);
    free(b);
}

/* Opening path must fail with a message holding part (and the path). */
static void expect_open_error(const char *path, const char *part, const char *what)
{
    mela_checkpoint *ck = mela_checkpoint_open(path);
    CHECK(ck == NULL, "%s: opened although broken", what);
    CHECK(has(mela_last_error(), part), "%s: message '%s' lacks '%s'", what, mela_last_error(),
          part);
    CHECK(has(mela_last_error(), path), "%s: message '%s' lacks the path", what,
          mela_last_error());
    mela_checkpoint_close(ck);
}

/* -------------------------------------------------------------------- JSON */

static void test_json(void)
{
    json_value *v;
    size_t at;
    char err[256];
    const char *ok = " {\"a\": [1, -2.5e1, true, false, null], \"s\": \"q\\\"\\\\\\/\\b\\f\\n\\r\\t"
                     "\\u00e9\\ud83d\\ude00\", \"big\": 9223372036854775807, \"o\": {}} ";
    CHECK(io_json_parse(ok, strlen(ok), &v, &at, err, sizeof err) == 0, "valid JSON: %s", err);
    if (v) {
        const json_value *a = io_json_find(v, "a"), *s = io_json_find(v, "s");
        const json_value *b = io_json_find(v, "big");
        CHECK(a && a->type == JSON_ARRAY && a->n == 5, "array");
        CHECK(a && a->items[0].is_int && a->items[0].i == 1, "int");
        CHECK(a && !a->items[1].is_int && a->items[1].num == -25.0, "double");
        CHECK(a && a->items[2].type == JSON_TRUE && a->items[4].type == JSON_NULL, "literals");
        CHECK(s && !strcmp(s->str, "q\"\\/\b\f\n\r\t\xc3\xa9\xf0\x9f\x98\x80"), "escapes: '%s'",
              s ? s->str : "");
        CHECK(b && b->is_int && b->i == INT64_MAX, "int64 max");
        CHECK(io_json_find(v, "o") && io_json_find(v, "o")->n == 0, "empty object");
        CHECK(io_json_find(v, "zz") == NULL, "absent key");
    }
    io_json_free(v);

    /* Each bad text and the byte where it goes wrong. */
    struct {
        const char *text;
        size_t pos;
    } bad[] = {
        {"{\"a\":1,}", 7},      {"[1,2", 4},        {"{\"a\" 1}", 5},     {"[01]", 2},
        {"[1.]", 3},            {"\"abc", 0},       {"[\"\\x\"]", 2},     {"[\"\\ud800\"]", 2},
        {"[\"\\udc00\"]", 2},   {"[\"\\u12g4\"]", 6}, {"[\"a\tb\"]", 3},  {"[\"\xff\"]", 2},
        {"[\"\xc0\x80\"]", 2},  {"{\"a\":1,\"a\":2}", 0}, {"[tru]", 1},   {"[1] x", 4},
        {"", 0},                {"[\"\\u0000\"]", 2}, {"{1:2}", 1},       {"[-]", 2},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        v = (json_value *)1;
        int rc = io_json_parse(bad[i].text, strlen(bad[i].text), &v, &at, err, sizeof err);
        CHECK(rc < 0 && v == NULL, "bad JSON %zu accepted", i);
        CHECK(rc < 0 && at == bad[i].pos, "bad JSON %zu ('%s'): error at %zu, want %zu (%s)", i,
              bad[i].text, at, bad[i].pos, err);
    }
    /* Nesting: at the limit is fine, one deeper is refused. */
    char deep[2 * JSON_MAX_DEPTH + 4];
    for (int depth = JSON_MAX_DEPTH; depth <= JSON_MAX_DEPTH + 1; depth++) {
        memset(deep, '[', (size_t)depth);
        memset(deep + depth, ']', (size_t)depth);
        int rc = io_json_parse(deep, 2 * (size_t)depth, &v, &at, err, sizeof err);
        CHECK((rc == 0) == (depth <= JSON_MAX_DEPTH), "depth %d: rc %d (%s)", depth, rc, err);
        io_json_free(v);
    }

    jbuf b = {0};
    CHECK(io_jbuf_string(&b, "a\"b\\c\n\x01\xc3\xa9") == 0, "escape");
    CHECK(b.p && !strcmp(b.p, "\"a\\\"b\\\\c\\n\\u0001\xc3\xa9\""), "escaped: %s", b.p);
    CHECK(io_jbuf_string(&b, "\xff") < 0, "invalid UTF-8 refused");
    io_jbuf_free(&b);
}

/* ------------------------------------------------------------- checkpoints */

static const unsigned char tiny_expected[] =
    "\x38\x00\x00\x00\x00\x00\x00\x00"
    "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}  "
    "\x00\x00\x80\x3f"  /* 1.0f */
    "\x00\x00\x00\xc0"; /* -2.0f */

static const unsigned char tiny_meta_expected[] =
    "\x58\x00\x00\x00\x00\x00\x00\x00"
    "{\"__metadata__\":{\"k\":\"v\\\"\"},"
    "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}       "
    "\x00\x00\x80\x3f"
    "\x00\x00\x00\xc0";

static mela_layout *tiny_layout(float **theta)
{
    mela_layout *L = mela_layout_new();
    mela_layout_add(L, "a", MELA_SHAPE(2));
    *theta = calloc(mela_layout_size(L), sizeof(float));
    (*theta)[mela_layout_offset(L, 0)] = 1.0f;
    (*theta)[mela_layout_offset(L, 0) + 1] = -2.0f;
    return L;
}

static void test_exact_bytes(void)
{
    float *theta;
    mela_layout *L = tiny_layout(&theta);
    const char *p = path_in("tiny.safetensors");
    CHECK(mela_checkpoint_save(p, L, theta, 0, NULL, NULL) == 0, "save tiny: %s",
          mela_last_error());
    size_t n;
    unsigned char *b = slurp(p, &n);
    CHECK(b && n == sizeof tiny_expected - 1, "tiny file has %zu bytes, want %zu", n,
          sizeof tiny_expected - 1);
    CHECK(b && n == sizeof tiny_expected - 1 && !memcmp(b, tiny_expected, n),
          "tiny file bytes differ: %.80s", b ? (char *)b + 8 : "");
    free(b);

    const char *k[] = {"k"}, *v[] = {"v\""};
    const char *pm = path_in("tiny_meta.safetensors");
    CHECK(mela_checkpoint_save(pm, L, theta, 1, k, v) == 0, "save tiny+meta: %s",
          mela_last_error());
    b = slurp(pm, &n);
    CHECK(b && n == sizeof tiny_meta_expected - 1 && !memcmp(b, tiny_meta_expected, n),
          "tiny+meta file bytes differ (%zu bytes): %.100s", n, b ? (char *)b + 8 : "");
    free(b);

    /* Every proper prefix of a valid file fails cleanly, naming the file. */
    b = slurp(p, &n);
    const char *cut = path_in("cut.safetensors");
    int failed = 0, named = 0;
    for (size_t len = 0; b && len < n; len++) {
        spit(cut, b, len);
        mela_checkpoint *ck = mela_checkpoint_open(cut);
        failed += ck == NULL;
        named += ck == NULL && has(mela_last_error(), cut) && has(mela_last_error(), "truncated");
        mela_checkpoint_close(ck);
    }
    CHECK(failed == (int)n, "only %d of %zu prefixes refused", failed, n);
    CHECK(named == (int)n, "only %d of %zu prefixes say 'truncated' with the path", named, n);
    spit(cut, b, 5);
    expect_open_error(cut, "fewer than the 8", "5-byte file");
    spit(cut, b, 30);
    expect_open_error(cut, "header length is 56", "header past the end");
    spit(cut, b, n - 1);
    expect_open_error(cut, "tensor 'a' ends at byte 8", "data short");

    /* One byte too many is refused as well. */
    unsigned char *longer = calloc(n + 1, 1);
    memcpy(longer, b, n);
    spit(cut, longer, n + 1);
    expect_open_error(cut, "after the last tensor", "trailing byte");
    free(longer);

    /* Each header byte replaced by junk: an error or a valid file, never a crash. */
    const unsigned char junk[] = {'x', '}', '{', '"', '\\', ',', ':', '[', '9', 0x00, 0x80, 0xff};
    int refused = 0;
    for (size_t i = 8; b && i < 8 + 56; i++) {
        for (size_t j = 0; j < sizeof junk; j++) {
            unsigned char save = b[i];
            b[i] = junk[j];
            spit(cut, b, n);
            b[i] = save;
            mela_checkpoint *ck = mela_checkpoint_open(cut);
            refused += ck == NULL;
            CHECK(ck != NULL || has(mela_last_error(), cut), "corrupt byte %zu: message %s", i,
                  mela_last_error());
            mela_checkpoint_close(ck);
        }
    }
    CHECK(refused > 500, "only %d corruptions refused", refused);
    /* The colon after "a" (file byte 12) becomes ';'. */
    memcpy(longer = malloc(n), b, n);
    longer[12] = ';';
    spit(cut, longer, n);
    expect_open_error(cut, "invalid JSON at byte 12", "corrupt colon");
    free(longer);
    free(b);
    free(theta);
    mela_layout_free(L);
}

static void test_round_trip(void)
{
    mela_layout *L = mela_layout_new();
    mela_layout_add(L, "conv1.weight", MELA_SHAPE(4, 1, 3, 3));
    mela_layout_add(L, "conv1.bias", MELA_SHAPE(4));
    mela_layout_add(L, "fc.weight", MELA_SHAPE(5, 36));
    mela_layout_add(L, "scale", MELA_SHAPE(1));
    size_t size = mela_layout_size(L);
    float *theta = malloc(size * sizeof(float)), *back = malloc(size * sizeof(float));
    mela_rng r = mela_rng_new(7);
    for (size_t i = 0; i < size; i++)
        theta[i] = mela_rng_normal(&r);
    /* Values whose bits must survive: -0, inf, a NaN with a payload, a denormal. */
    uint32_t special[] = {0x80000000u, 0x7f800000u, 0x7fc12345u, 0x00000001u};
    for (int i = 0; i < 4; i++)
        memcpy(&theta[mela_layout_offset(L, 0) + (size_t)i], &special[i], 4);
    const char *keys[] = {"learner", "quote", "unicode", "control", "empty"};
    const char *vals[] = {"maml", "say \"hi\" \\ back\\slash",
                          "\xce\xb1\xce\xb2 \xe6\x97\xa5 \xf0\x9f\x99\x82", "a\nb\tc\x01", ""};
    const char *p = path_in("model.safetensors");
    CHECK(mela_checkpoint_save(p, L, theta, 5, keys, vals) == 0, "save: %s", mela_last_error());

    /* The file is plain safetensors. */
    size_t n;
    unsigned char *b = slurp(p, &n);
    uint64_t hlen = 0;
    for (int i = 0; b && i < 8; i++)
        hlen |= (uint64_t)b[i] << (8 * i);
    size_t floats = 4 * 9 + 4 + 5 * 36 + 1;
    CHECK(b && hlen % 8 == 0 && (8 + hlen) % 8 == 0, "data start %llu not 8-aligned",
          (unsigned long long)hlen);
    CHECK(b && n == 8 + hlen + 4 * floats, "file %zu bytes, want %llu", n,
          (unsigned long long)(8 + hlen + 4 * floats));
    CHECK(b && b[8] == '{', "header starts with '{'");
    size_t last = 8 + (size_t)hlen;
    while (b && last > 8 && b[last - 1] == ' ')
        last--;
    CHECK(b && b[last - 1] == '}' && 8 + hlen - last < 8, "header ends with '}' and < 8 spaces");
    free(b);

    mela_checkpoint *ck = mela_checkpoint_open(p);
    CHECK(ck != NULL, "open: %s", mela_last_error());
    if (ck) {
        CHECK(mela_checkpoint_count(ck) == 4, "count %d", mela_checkpoint_count(ck));
        for (int i = 0; i < 4 && i < mela_checkpoint_count(ck); i++) {
            CHECK(!strcmp(mela_checkpoint_name(ck, i), mela_layout_name(L, i)), "name %d: %s", i,
                  mela_checkpoint_name(ck, i));
            CHECK(mela_shape_equal(mela_checkpoint_shape(ck, i), mela_layout_shape(L, i)),
                  "shape %d", i);
        }
        CHECK(mela_checkpoint_name(ck, 4) == NULL && mela_checkpoint_shape(ck, -1).nd == 0,
              "out of range");
        CHECK(mela_checkpoint_find(ck, "fc.weight") == 2 && mela_checkpoint_find(ck, "x") < 0,
              "find");
        CHECK(mela_checkpoint_meta_count(ck) == 5, "meta count");
        for (int i = 0; i < 5; i++) {
            const char *got = mela_checkpoint_meta(ck, keys[i]);
            CHECK(got && !strcmp(got, vals[i]), "meta %s: '%s'", keys[i], got ? got : "(null)");
            CHECK(!strcmp(mela_checkpoint_meta_key(ck, i), keys[i]), "meta key %d", i);
        }
        CHECK(mela_checkpoint_meta(ck, "absent") == NULL, "absent meta");
        for (size_t i = 0; i < size; i++)
            back[i] = 42.0f;
        /* The weights of a model must be finite: the read refuses the inf and
         * the NaN, naming the tensor, and writes nothing. */
        CHECK(mela_checkpoint_read(ck, L, back) < 0 && has(mela_last_error(), p) &&
                  has(mela_last_error(), "tensor 'conv1.weight' holds 2 non-finite values") &&
                  has(mela_last_error(), "inf at index 1"),
              "non-finite weights read: %s", mela_last_error());
        int untouched = 1;
        for (size_t i = 0; i < size; i++)
            untouched &= back[i] == 42.0f;
        CHECK(untouched, "a refused read wrote into theta");
        /* Tensor by tensor, every bit is as it was saved, NaN payload too. */
        int same = 1, pad = 1;
        for (int v = 0; v < mela_layout_count(L); v++) {
            size_t o = mela_layout_offset(L, v), m = mela_shape_numel(mela_layout_shape(L, v));
            same &= mela_checkpoint_tensor(ck, v, back + o) == 0 &&
                    !memcmp(theta + o, back + o, m * sizeof(float));
        }
        size_t in_views = 0;
        for (size_t i = 0; i < size; i++)
            in_views += back[i] != 42.0f || isnan(back[i]);
        pad = in_views <= floats;
        CHECK(same, "values differ after the round trip");
        CHECK(pad, "padding written: %zu floats changed, %zu in views", in_views, floats);
    }
    mela_checkpoint_close(ck);
    mela_checkpoint_close(NULL);

    /* Finite again (-0 and the denormal kept): the whole read gives back
     * every bit, and nothing in the padding. */
    theta[mela_layout_offset(L, 0) + 1] = 3.0f;
    theta[mela_layout_offset(L, 0) + 2] = -3.0f;
    CHECK(mela_checkpoint_save(p, L, theta, 0, NULL, NULL) == 0, "save: %s", mela_last_error());
    ck = mela_checkpoint_open(p);
    for (size_t i = 0; i < size; i++)
        back[i] = 42.0f;
    CHECK(ck && mela_checkpoint_read(ck, L, back) == 0, "read: %s", mela_last_error());
    int same = 1;
    for (int v = 0; v < mela_layout_count(L); v++) {
        size_t o = mela_layout_offset(L, v), m = mela_shape_numel(mela_layout_shape(L, v));
        same &= !memcmp(theta + o, back + o, m * sizeof(float));
    }
    size_t changed = 0;
    for (size_t i = 0; i < size; i++)
        changed += back[i] != 42.0f;
    CHECK(same && changed <= floats, "read after the round trip: same %d, %zu changed", same,
          changed);
    mela_checkpoint_close(ck);

    /* Overwriting keeps a valid file with the new values and no temp file. */
    theta[mela_layout_offset(L, 3)] = 123.5f;
    CHECK(mela_checkpoint_save(p, L, theta, 0, NULL, NULL) == 0, "overwrite: %s",
          mela_last_error());
    ck = mela_checkpoint_open(p);
    CHECK(ck && mela_checkpoint_meta_count(ck) == 0, "reopen after overwrite: %s",
          mela_last_error());
    float s = 0;
    if (ck && mela_checkpoint_tensor(ck, 3, &s) == 0)
        CHECK(s == 123.5f, "overwritten value %g", s);
    mela_checkpoint_close(ck);
    CHECK(count_entries(tmp, ".tmp.") == 0, "temp files left behind");

    /* Bad metadata is refused before anything is written. */
    const char *dk[] = {"a", "a"}, *dv[] = {"1", "2"};
    CHECK(mela_checkpoint_save(path_in("dup.safetensors"), L, theta, 2, dk, dv) < 0 &&
              has(mela_last_error(), "twice"),
          "duplicate metadata key: %s", mela_last_error());
    const char *bk[] = {"bad"}, *bv[] = {"\xff"};
    CHECK(mela_checkpoint_save(path_in("utf.safetensors"), L, theta, 1, bk, bv) < 0 &&
              has(mela_last_error(), "UTF-8"),
          "non-UTF-8 metadata: %s", mela_last_error());
    CHECK(count_entries(tmp, "dup.") == 0 && count_entries(tmp, "utf.") == 0, "files left");
    free(theta);
    free(back);
    mela_layout_free(L);
}

static void test_model_mismatch(void)
{
    mela_layout *L = mela_layout_new();
    mela_layout_add(L, "w", MELA_SHAPE(2, 3));
    mela_layout_add(L, "b", MELA_SHAPE(3));
    float *theta = calloc(mela_layout_size(L), sizeof(float));
    const char *p = path_in("wb.safetensors");
    CHECK(mela_checkpoint_save(p, L, theta, 0, NULL, NULL) == 0, "save: %s", mela_last_error());
    mela_checkpoint *ck = mela_checkpoint_open(p);
    CHECK(ck != NULL, "open: %s", mela_last_error());

    mela_layout *T = mela_layout_new(); /* w transposed */
    mela_layout_add(T, "w", MELA_SHAPE(3, 2));
    mela_layout_add(T, "b", MELA_SHAPE(3));
    float *buf = malloc(mela_layout_size(T) * sizeof(float));
    for (size_t i = 0; i < mela_layout_size(T); i++)
        buf[i] = 5.0f;
    CHECK(mela_checkpoint_read(ck, T, buf) < 0, "shape mismatch accepted");
    CHECK(has(mela_last_error(), "tensor 'w' has shape [2, 3], the model expects [3, 2]") &&
              has(mela_last_error(), p),
          "shape message: %s", mela_last_error());
    int untouched = 1;
    for (size_t i = 0; i < mela_layout_size(T); i++)
        untouched &= buf[i] == 5.0f;
    CHECK(untouched, "theta written on error");

    mela_layout *M = mela_layout_new(); /* one more tensor than the file */
    mela_layout_add(M, "w", MELA_SHAPE(2, 3));
    mela_layout_add(M, "b", MELA_SHAPE(3));
    mela_layout_add(M, "gamma", MELA_SHAPE(3));
    float *bm = calloc(mela_layout_size(M), sizeof(float));
    CHECK(mela_checkpoint_read(ck, M, bm) < 0 && has(mela_last_error(), "'gamma'") &&
              has(mela_last_error(), p),
          "missing tensor: %s", mela_last_error());

    mela_layout *E = mela_layout_new(); /* the file has 'b' too */
    mela_layout_add(E, "w", MELA_SHAPE(2, 3));
    float *be = calloc(mela_layout_size(E), sizeof(float));
    CHECK(mela_checkpoint_read(ck, E, be) < 0 && has(mela_last_error(), "'b'") &&
              has(mela_last_error(), "not in the model"),
          "extra tensor: %s", mela_last_error());
    mela_checkpoint_close(ck);
    free(theta), free(buf), free(bm), free(be);
    mela_layout_free(L), mela_layout_free(T), mela_layout_free(M), mela_layout_free(E);
}

static void test_broken_files(void)
{
    expect_open_error(path_in("absent.safetensors"), "No such file", "missing file");
    expect_open_error(tmp, "it is a directory, not a file", "a directory");
    /* Neither a FIFO without a writer (its open would block forever) nor a
     * device is read; an alarm fails the test instead of hanging it. */
    const char *fifo = path_in("pipe.safetensors");
    CHECK(mkfifo(fifo, 0644) == 0, "mkfifo %s", fifo);
    alarm(20);
    expect_open_error(fifo, "named pipe (FIFO)", "a FIFO");
    expect_open_error("/dev/zero", "character device", "/dev/zero");
    alarm(0);
    unlink(fifo);
    const char *loop = path_in("loop.safetensors");
    CHECK(symlink(loop, loop) == 0, "symlink");
    expect_open_error(loop, "Too many levels of symbolic links", "a looping link");
    unlink(loop);

    const char *p = path_in("hand.safetensors");
    float two[2] = {1, 2};
    float four[4] = {1, 2, 3, 4};
    make_st(p, "{\"a\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[0,8]}}", two, 8);
    expect_open_error(p, "dtype F16", "F16");
    make_st(p, "{\"a\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]}}", two, 8);
    expect_open_error(p, "dtype F64", "F64");
    make_st(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", two, 8);
    expect_open_error(p, "shape [3] needs", "size mismatch");
    make_st(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", two, 8);
    expect_open_error(p, "dimension 0", "negative dim");
    make_st(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2147483647,2147483647,2147483647],"
               "\"data_offsets\":[0,8]}}", two, 8);
    expect_open_error(p, "too large", "overflowing shape");
    make_st(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,2],\"data_offsets\":[0,8]}}", two, 8);
    expect_open_error(p, "5 dimensions", "5 dims");
    make_st(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", four, 16);
    expect_open_error(p, "overlaps", "overlap");
    make_st(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[12,16]}}", four, 16);
    expect_open_error(p, "belong to no tensor", "gap");
    make_st(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", two, 8);
    expect_open_error(p, "end before", "reversed offsets");
    make_st(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", two, 8);
    expect_open_error(p, "data_offsets", "no offsets");
    make_st(p, "{\"__metadata__\":{\"n\":3}}", NULL, 0);
    expect_open_error(p, "not a string", "numeric metadata");
    make_st(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", two, 8);
    expect_open_error(p, "twice", "duplicate tensor");
    make_st(p, "[1]", NULL, 0);
    expect_open_error(p, "does not start with '{'", "array header");
    make_st(p, "{\"a\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
               "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}",
            NULL, 0);
    expect_open_error(p, "nesting", "deep nesting");
    unsigned char huge[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, '{', '}'};
    spit(p, huge, sizeof huge);
    expect_open_error(p, "truncated", "huge header length");

    /* Valid corner cases: no tensors, a scalar, an empty tensor. */
    make_st(p, "{}", NULL, 0);
    mela_checkpoint *ck = mela_checkpoint_open(p);
    CHECK(ck && mela_checkpoint_count(ck) == 0, "empty checkpoint: %s", mela_last_error());
    mela_checkpoint_close(ck);
    make_st(p, "{\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},"
               "\"z\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[4,4]}}", two, 4);
    ck = mela_checkpoint_open(p);
    CHECK(ck && mela_checkpoint_count(ck) == 2, "scalar + empty: %s", mela_last_error());
    if (ck) {
        mela_shape s = mela_checkpoint_shape(ck, 0);
        CHECK(s.nd == 1 && s.d[0] == 1, "scalar read as (1)");
    }
    mela_checkpoint_close(ck);
}

static void test_atomic_save(void)
{
    float *theta;
    mela_layout *L = tiny_layout(&theta);
    int before = count_entries(tmp, "");
    const char *p = path_in("nodir/x.safetensors");
    CHECK(mela_checkpoint_save(p, L, theta, 0, NULL, NULL) < 0, "saved into a missing dir");
    CHECK(has(mela_last_error(), p) && has(mela_last_error(), "No such file"), "message: %s",
          mela_last_error());
    CHECK(count_entries(tmp, "") == before, "something was created");

    /* Rename fails (the target is a directory): the temp file is removed. */
    const char *d = path_in("isdir.safetensors");
    mkdir(d, 0755);
    CHECK(mela_checkpoint_save(d, L, theta, 0, NULL, NULL) < 0, "saved over a directory");
    CHECK(has(mela_last_error(), d), "message: %s", mela_last_error());
    CHECK(count_entries(tmp, "isdir.safetensors.tmp") == 0, "temp file left behind");
    rmdir(d);
    free(theta);
    mela_layout_free(L);
}

/* ----------------------------------------------------------------- metrics */

static void test_metrics(void)
{
    char dir[600];
    snprintf(dir, sizeof dir, "%s/logs/run1", tmp); /* two levels to create */
    mela_metrics *m = mela_metrics_open(dir, "train");
    CHECK(m != NULL, "open: %s", mela_last_error());
    if (!m)
        return;
    const char *keys[] = {"step", "loss", "acc"};
    double r1[] = {1, 0.5, 0.25}, r2[] = {2, 1.0 / 3, NAN}, r3[] = {3, 1e-10, -INFINITY};
    CHECK(mela_metrics_write(m, 3, keys, r1) == 0, "write 1: %s", mela_last_error());
    char jp[700], cp[700];
    snprintf(jp, sizeof jp, "%s/train.jsonl", dir);
    snprintf(cp, sizeof cp, "%s/train.csv", dir);
    size_t n;
    char *t = (char *)slurp(jp, &n);
    CHECK(t && !strcmp(t, "{\"step\":1,\"loss\":0.5,\"acc\":0.25}\n"), "flushed: %s",
          t ? t : "(null)");
    free(t);
    CHECK(mela_metrics_write(m, 3, keys, r2) == 0, "write 2: %s", mela_last_error());
    CHECK(mela_metrics_write(m, 3, keys, r3) == 0, "write 3: %s", mela_last_error());
    const char *other[] = {"step", "loss"}, *swapped[] = {"step", "acc", "loss"};
    CHECK(mela_metrics_write(m, 2, other, r1) < 0 && has(mela_last_error(), "keys"),
          "fewer keys accepted: %s", mela_last_error());
    CHECK(mela_metrics_write(m, 3, swapped, r1) < 0, "reordered keys accepted");
    const char *dup[] = {"step", "step", "acc"};
    CHECK(mela_metrics_write(m, 3, dup, r1) < 0, "duplicate keys accepted");
    CHECK(mela_metrics_close(m) == 0, "close: %s", mela_last_error());
    t = (char *)slurp(jp, &n);
    CHECK(t && !strcmp(t, "{\"step\":1,\"loss\":0.5,\"acc\":0.25}\n"
                          "{\"step\":2,\"loss\":0.333333333,\"acc\":null}\n"
                          "{\"step\":3,\"loss\":1e-10,\"acc\":null}\n"),
          "jsonl:\n%s", t ? t : "(null)");
    /* Every line is valid JSON to our own strict reader. */
    int lines = 0;
    for (char *line = t ? strtok(t, "\n") : NULL; line; line = strtok(NULL, "\n")) {
        json_value *v;
        size_t at;
        char err[128];
        CHECK(io_json_parse(line, strlen(line), &v, &at, err, sizeof err) == 0 &&
                  v->type == JSON_OBJECT && v->n == 3,
              "line %d: %s", lines, err);
        io_json_free(v);
        lines++;
    }
    CHECK(lines == 3, "%d lines", lines);
    free(t);
    t = (char *)slurp(cp, &n);
    CHECK(t && !strcmp(t, "step,loss,acc\n1,0.5,0.25\n2,0.333333333,nan\n3,1e-10,-inf\n"),
          "csv:\n%s", t ? t : "(null)");
    free(t);

    /* Awkward keys: quoted in the CSV, escaped in the JSON. */
    m = mela_metrics_open(dir, "odd");
    const char *ok[] = {"a,b", "q\"x"};
    double v[] = {1, 2};
    CHECK(m && mela_metrics_write(m, 2, ok, v) == 0, "odd keys: %s", mela_last_error());
    mela_metrics_close(m);
    snprintf(cp, sizeof cp, "%s/odd.csv", dir);
    snprintf(jp, sizeof jp, "%s/odd.jsonl", dir);
    t = (char *)slurp(cp, &n);
    CHECK(t && !strcmp(t, "\"a,b\",\"q\"\"x\"\n1,2\n"), "odd csv: %s",
          t ? t : "(null)");
    free(t);
    t = (char *)slurp(jp, &n);
    CHECK(t && !strcmp(t, "{\"a,b\":1,\"q\\\"x\":2}\n"), "odd jsonl: %s",
          t ? t : "(null)");
    free(t);

    CHECK(mela_metrics_open(dir, "a/b") == NULL, "stem with '/' accepted");
    snprintf(cp, sizeof cp, "%s/train.csv/sub", dir); /* a file in the way */
    CHECK(mela_metrics_open(cp, "x") == NULL && has(mela_last_error(), "train.csv"),
          "dir through a file: %s", mela_last_error());
    CHECK(mela_metrics_close(NULL) == 0, "close NULL");
    /* A FIFO where a log goes: refused at once (writing would wait for a
     * reader), and the other file of the log is not created either. */
    snprintf(cp, sizeof cp, "%s/pipe.jsonl", dir);
    CHECK(mkfifo(cp, 0644) == 0, "mkfifo");
    alarm(20);
    CHECK(mela_metrics_open(dir, "pipe") == NULL && has(mela_last_error(), cp) &&
              has(mela_last_error(), "named pipe (FIFO)"),
          "metrics into a FIFO: %s", mela_last_error());
    alarm(0);
    snprintf(cp, sizeof cp, "%s/pipe.csv", dir);
    struct stat st;
    CHECK(stat(cp, &st) != 0, "%s created beside the refused FIFO", cp);
}

/* Resuming a log: the records after the saved position (and a half-written
 * one) are cut, new ones follow; a log too short or of other keys is refused. */
static void test_metrics_resume(void)
{
    char dir[600], jp[700], cp[700];
    snprintf(dir, sizeof dir, "%s/logs/resume", tmp);
    snprintf(jp, sizeof jp, "%s/m.jsonl", dir);
    snprintf(cp, sizeof cp, "%s/m.csv", dir);
    const char *keys[] = {"it", "loss"};
    double v[4][2] = {{1, 0.5}, {2, 0.25}, {3, 0.125}, {4, 2}};
    mela_metrics *m = mela_metrics_open(dir, "m");
    for (int i = 0; i < 3; i++)
        CHECK(mela_metrics_write(m, 2, keys, v[i]) == 0, "write %d: %s", i, mela_last_error());
    mela_metrics_close(m);
    FILE *f = fopen(jp, "a"); /* a kill in the middle of a record */
    fputs("{\"it\":4,\"lo", f);
    fclose(f);
    m = mela_metrics_resume(dir, "m", 2, 2, keys);
    CHECK(m && mela_metrics_write(m, 2, keys, v[3]) == 0, "resume after 2: %s", mela_last_error());
    CHECK(mela_metrics_close(m) == 0, "close");
    size_t n;
    char *t = (char *)slurp(jp, &n);
    CHECK(t && !strcmp(t, "{\"it\":1,\"loss\":0.5}\n{\"it\":2,\"loss\":0.25}\n{\"it\":4,\"loss\":2}\n"),
          "jsonl after resume:\n%s", t ? t : "(null)");
    free(t);
    t = (char *)slurp(cp, &n);
    CHECK(t && !strcmp(t, "it,loss\n1,0.5\n2,0.25\n4,2\n"), "csv after resume:\n%s", t ? t : "(null)");
    free(t);
    CHECK(mela_metrics_resume(dir, "m", 4, 2, keys) == NULL && has(mela_last_error(), "m.jsonl") &&
              has(mela_last_error(), "holds 3"), "a log shorter than the state: %s", mela_last_error());
    const char *other[] = {"it", "acc"};
    CHECK(mela_metrics_resume(dir, "m", 1, 2, other) == NULL && has(mela_last_error(), "m.csv") &&
              has(mela_last_error(), "header"), "a log of other keys: %s", mela_last_error());
    CHECK(mela_metrics_resume(dir, "none", 1, 2, keys) == NULL && has(mela_last_error(), "none.jsonl"),
          "a missing log: %s", mela_last_error());
    m = mela_metrics_resume(dir, "m", 0, 2, keys);
    CHECK(m && mela_metrics_close(m) == 0 && (t = (char *)slurp(cp, &n)) && n == 0,
          "resume after 0 records starts afresh");
    free(t);
}

/* A directory held by one user at a time; the temp files of killed writers
 * removed, and nothing else. */
static void test_dir_lock_and_temps(void)
{
    char dir[600], p[700];
    snprintf(dir, sizeof dir, "%s/rundir", tmp);
    mkdir(dir, 0755);
    int a = mela_sys_lock_dir(dir);
    CHECK(a >= 0, "lock: %s", mela_last_error());
    CHECK(mela_sys_lock_dir(dir) == -1 && has(mela_last_error(), "in use") && has(mela_last_error(), dir),
          "a second holder is refused: %s", mela_last_error());
    close(a);
    a = mela_sys_lock_dir(dir);
    CHECK(a >= 0, "free again once closed: %s", mela_last_error());
    close(a);
    snprintf(p, sizeof p, "%s/none", dir);
    CHECK(mela_sys_lock_dir(p) == -1 && has(mela_last_error(), "none"), "a missing directory: %s",
          mela_last_error());
    const char *gone[] = {"state.safetensors.tmp.123", "a.tmp.1.tmp.77"};
    const char *kept[] = {"x.tmp", "tmp.5", "a.tmp.12x", "b.tmp.", "metrics.csv"};
    for (int i = 0; i < 2; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, gone[i]);
        fclose(fopen(p, "w"));
    }
    for (int i = 0; i < 5; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, kept[i]);
        fclose(fopen(p, "w"));
    }
    snprintf(p, sizeof p, "%s/sub.tmp.3", dir); /* a directory: not a temp file */
    mkdir(p, 0755);
    CHECK(mela_sys_remove_temps(dir) == 0, "remove temps: %s", mela_last_error());
    CHECK(count_entries(dir, "") == 6 && count_entries(dir, ".tmp.123") == 0 &&
              count_entries(dir, ".tmp.77") == 0, "only the temp files went (%d left)", count_entries(dir, ""));
}

/* ------------------------------------------------------------------- plots */

static void test_plot(void)
{
    enum { N = 200 };
    double x[N], y1[N], y2[N], c[N];
    for (int i = 0; i < N; i++) {
        x[i] = i * 0.05;
        y1[i] = sin(x[i]) * 2.5;
        y2[i] = i % 37 == 5 ? NAN : exp(-x[i] / 3);
        c[i] = 0.75;
    }
    y1[50] = INFINITY;
    double one = 1.5;
    mela_series s[] = {
        {"sin(x) * 2.5", x, y1, N},
        {"exp(-x/3), gaps", x, y2, N},
        {"constant 0.75", NULL, c, 10},
        {"one point", &one, &one, 1},
        {"empty", NULL, NULL, 0},
    };
    const char *p = path_in("plot.png");
    CHECK(mela_plot_png(p, "Test chart: mela_plot_png()", "x (steps)", 5, s) == 0, "plot: %s",
          mela_last_error());

    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    CHECK(png_image_begin_read_from_file(&img, p) != 0, "libpng reads it: %s", img.message);
    CHECK(img.width == 800 && img.height == 500, "size %ux%u", img.width, img.height);
    img.format = PNG_FORMAT_RGB;
    unsigned char *px = malloc(PNG_IMAGE_SIZE(img));
    CHECK(png_image_finish_read(&img, NULL, px, 0, NULL) != 0, "decode: %s", img.message);
    int colours = 0, blue = 0;
    for (size_t i = 3; i < PNG_IMAGE_SIZE(img); i += 3) {
        colours += memcmp(px + i, px, 3) != 0;
        blue += px[i] == 31 && px[i + 1] == 119 && px[i + 2] == 180;
    }
    CHECK(colours > 1000, "the image is (nearly) one colour");
    CHECK(blue > 200, "the first series' colour appears %d times", blue);
    free(px);
    png_image_free(&img);

    /* Degenerate input still draws; bad input is refused. */
    CHECK(mela_plot_png(path_in("empty.png"), NULL, NULL, 0, NULL) == 0, "empty: %s",
          mela_last_error());
    double nans[3] = {NAN, NAN, NAN}, huge[2] = {-1e308, 1e308};
    mela_series odd[] = {{"nan", NULL, nans, 3}, {"huge", huge, huge, 2}};
    CHECK(mela_plot_png(path_in("odd.png"), "\xce\xb1 title", "", 2, odd) == 0, "odd: %s",
          mela_last_error());
    mela_series bad = {"bad", NULL, NULL, 3};
    CHECK(mela_plot_png(path_in("bad.png"), "t", "x", 1, &bad) < 0, "NULL y accepted");
    const char *nd = path_in("nodir/p.png");
    CHECK(mela_plot_png(nd, "t", "x", 1, s) < 0 && has(mela_last_error(), nd), "missing dir: %s",
          mela_last_error());
    const char *fifo = path_in("curves.png");
    CHECK(mkfifo(fifo, 0644) == 0, "mkfifo");
    alarm(20);
    CHECK(mela_plot_png(fifo, "t", "x", 1, s) < 0 && has(mela_last_error(), fifo) &&
              has(mela_last_error(), "FIFO"),
          "plot into a FIFO: %s", mela_last_error());
    alarm(0);
    unlink(fifo);
    if (getenv("MELA_KEEP_PLOT")) { /* to look at it */
        char cmd[1200];
        snprintf(cmd, sizeof cmd, "cp %s %s/odd.png %s/empty.png /tmp/", p, tmp, tmp);
        CHECK(system(cmd) == 0, "copy");
    }
}

int main(void)
{
    snprintf(tmp, sizeof tmp, "/tmp/mela_test_io_XXXXXX");
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 1;
    }
    test_json();
    test_exact_bytes();
    test_round_trip();
    test_model_mismatch();
    test_broken_files();
    test_atomic_save();
    test_metrics();
    test_metrics_resume();
    test_dir_lock_and_temps();
    test_plot();
    check_rm_rf(tmp);
    return check_finish();
}
