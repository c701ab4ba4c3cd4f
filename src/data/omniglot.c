/* omniglot.c - Omniglot from the official zip archives (libzip), one archive
 * at a time, behind a checked uint8 cache. Entry layout, ink polarity and the
 * cache format are described in include/mela_data.h and docs/data.md.
 *
 * Cache file (host byte order; a cache is not meant to move between
 * machines, and a foreign one fails its checks and is rebuilt):
 *   header: magic "MELAOMNI", u32 version, u32 C, u32 H, u32 W,
 *           u64 archive size, u64 archive hash, u64 payload size,
 *           u64 payload hash, u32 resize filter (0 area, 1 nearest; the
 *           zero padding of caches written before it means area)
 *   payload: u32 ngroups, u32 nclasses, u32 nimages,
 *            groups: u16 length + bytes,
 *            classes: i32 group, i32 id, i32 count, u16 length + name bytes,
 *            drawers: i16 * nimages, pixels: u8 * nimages*C*H*W
 * A cache is used only when every field checks out; anything else (short
 * file, other version, other archive, flipped bit) means "decode again". */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zip.h>

#include "core/sys.h"
#include "data/data_internal.h"

#define CACHE_MAGIC "MELAOMNI"
#define CACHE_VERSION 1u
#define CACHE_HEADER 64

/* An Omniglot PNG has a few hundred bytes; a larger entry is no image of it. */
#define ENTRY_MAX_BYTES (64u << 20)

static const char *const ARCHIVES[2] = {"images_background", "images_evaluation"};

static const mela_archive OFFICIAL[2] = {
    {"images_background.zip", "68d2efa1b9178cc56df9314c21c6e718", 9464212},
    {"images_evaluation.zip", "6b91aef0f799c5bb55b94e3f2daec811", 6462886},
};

const mela_archive *mela_omniglot_archive(int i) { return i >= 0 && i < 2 ? &OFFICIAL[i] : NULL; }

/* --------------------------------------------------------- reading the zip */

typedef struct entry {
    zip_uint64_t index;
    char *alphabet, *character, *file; /* one allocation: alphabet owns it */
} entry;

static int entry_cmp(const void *a, const void *b)
{
    const entry *x = a, *y = b;
    int c = strcmp(x->alphabet, y->alphabet);
    if (!c)
        c = strcmp(x->character, y->character);
    if (!c)
        c = strcmp(x->file, y->file);
    return c;
}

/* Splits "root/Alphabet/characterNN/IIII_DD.png" (the root is optional) into
 * a fresh allocation; 1 when it is such a path, 0 when not, -1 on OOM. */
static int split_entry(const char *name, entry *e)
{
    char *s = strdup(name);
    if (!s)
        return -1;
    char *part[5];
    int n = 0;
    for (char *p = s; n < 5;) {
        part[n++] = p;
        char *q = strchr(p, '/');
        if (!q)
            break;
        *q = 0;
        p = q + 1;
    }
    if ((n != 3 && n != 4) || !*part[n - 3] || !*part[n - 2] || !*part[n - 1]) {
        free(s);
        return 0;
    }
    /* Keep one block: move the three parts to its front. */
    size_t la = strlen(part[n - 3]) + 1, lc = strlen(part[n - 2]) + 1, lf = strlen(part[n - 1]) + 1;
    char *t = malloc(la + lc + lf);
    if (!t) {
        free(s);
        return -1;
    }
    memcpy(t, part[n - 3], la);
    memcpy(t + la, part[n - 2], lc);
    memcpy(t + la + lc, part[n - 1], lf);
    free(s);
    e->alphabet = t;
    e->character = t + la;
    e->file = t + la + lc;
    return 1;
}

/* Entries that are not data: directories, macOS metadata, dot files. */
static int skip_entry(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || name[n - 1] == '/' || strncmp(name, "__MACOSX/", 9) == 0)
        return 1;
    const char *base = strrchr(name, '/');
    base = base ? base + 1 : name;
    return base[0] == '.';
}

/* "IIII_DD.png" -> id, drawer; -1 where the name does not say. */
static void parse_file_name(const char *f, int *id, int *drawer)
{
    int a = 0, b = 0, na = 0, nb = 0;
    const char *p = f;
    while (*p >= '0' && *p <= '9' && na < 6)
        a = a * 10 + (*p++ - '0'), na++;
    if (na && *p == '_') {
        p++;
        while (*p >= '0' && *p <= '9' && nb < 4)
            b = b * 10 + (*p++ - '0'), nb++;
    }
    *id = na ? a : -1;
    *drawer = (na && nb && *p == '.') ? b : -1;
}

mela_dataset *omniglot_decode_archive(const char *path, const uint8_t *bytes, size_t size, int set,
                                      int H, int W, int nearest)
{
    zip_error_t zerr;
    zip_error_init(&zerr);
    zip_source_t *src = zip_source_buffer_create(bytes, size, 0, &zerr);
    if (!src) {
        mela_set_error("omniglot: %s: %s", path, zip_error_strerror(&zerr));
        zip_error_fini(&zerr);
        return NULL;
    }
    zip_t *za = zip_open_from_source(src, ZIP_RDONLY, &zerr);
    if (!za) {
        mela_set_error("omniglot: %s: not a readable zip archive (libzip: %s)", path,
                       zip_error_strerror(&zerr));
        zip_source_free(src);
        zip_error_fini(&zerr);
        return NULL;
    }
    zip_error_fini(&zerr);

    mela_dataset *out = NULL;
    ds_builder b = {0};
    uint8_t *raw = NULL, *pix = NULL;
    size_t raw_cap = 0;
    zip_int64_t nent = zip_get_num_entries(za, 0);
    entry *ents = calloc(nent > 0 ? (size_t)nent : 1, sizeof *ents);
    size_t ne = 0;
    if (!ents || dsb_init(&b, 1, H, W))
        goto oom;

    for (zip_int64_t i = 0; i < nent; i++) {
        const char *name = zip_get_name(za, (zip_uint64_t)i, 0);
        if (!name) {
            mela_set_error("omniglot: %s: entry %lld: %s", path, (long long)i, zip_strerror(za));
            goto fail;
        }
        if (skip_entry(name))
            continue;
        if (!ends_with_ci(name, ".png")) {
            mela_set_error("omniglot: %s: entry %s: not a PNG file (only .png expected)", path, name);
            goto fail;
        }
        int r = split_entry(name, &ents[ne]);
        if (r < 0)
            goto oom;
        if (r == 0) {
            mela_set_error("omniglot: %s: entry %s: not laid out as "
                           "%s/<Alphabet>/<characterNN>/<file>.png",
                           path, name, ARCHIVES[set]);
            goto fail;
        }
        ents[ne++].index = (zip_uint64_t)i;
    }
    if (ne == 0) {
        mela_set_error("omniglot: %s: no PNG images in the archive", path);
        goto fail;
    }
    qsort(ents, ne, sizeof *ents, entry_cmp);
    if (dsb_reserve(&b, (int)ne))
        goto oom;

    for (size_t k = 0; k < ne; k++) {
        entry *e = &ents[k];
        const char *name = zip_get_name(za, e->index, 0);
        if (k == 0 || strcmp(e->alphabet, ents[k - 1].alphabet) ||
            strcmp(e->character, ents[k - 1].character)) {
            int g = dsb_group(&b, e->alphabet);
            int id, drawer;
            parse_file_name(e->file, &id, &drawer);
            if (g < 0 || dsb_class(&b, e->character, g, id, set) < 0)
                goto oom;
        }
        zip_stat_t st;
        if (zip_stat_index(za, e->index, 0, &st) || !(st.valid & ZIP_STAT_SIZE)) {
            mela_set_error("omniglot: %s: entry %s: cannot stat (libzip: %s)", path, name,
                           zip_strerror(za));
            goto fail;
        }
        if (st.size > ENTRY_MAX_BYTES) {
            mela_set_error("omniglot: %s: entry %s: %llu bytes uncompressed, more than the %u MB "
                           "an image entry may have", path, name, (unsigned long long)st.size,
                           (unsigned)(ENTRY_MAX_BYTES >> 20));
            goto fail;
        }
        if (st.size + 1 > raw_cap) {
            free(raw);
            raw_cap = (size_t)st.size + 1;
            raw = malloc(raw_cap);
            if (!raw)
                goto oom;
        }
        zip_file_t *zf = zip_fopen_index(za, e->index, 0);
        if (!zf) {
            mela_set_error("omniglot: %s: entry %s: cannot open (libzip: %s)", path, name,
                           zip_strerror(za));
            goto fail;
        }
        zip_int64_t got = zip_fread(zf, raw, st.size);
        if (got < 0 || (zip_uint64_t)got != st.size) {
            mela_set_error("omniglot: %s: entry %s: cannot read (libzip: %s)", path, name,
                           zip_file_strerror(zf));
            zip_fclose(zf);
            goto fail;
        }
        zip_fclose(zf);

        char what[1024];
        snprintf(what, sizeof what, "omniglot: %s: entry %s", path, name);
        int h, w;
        if (mela_image_decode(raw, (size_t)st.size, what, 1, &pix, &h, &w))
            goto fail;
        /* Paper is white in the PNG; store ink coverage, then shrink. */
        for (size_t p = 0; p < (size_t)h * w; p++)
            pix[p] = (uint8_t)(255 - pix[p]);
        int id, drawer;
        parse_file_name(e->file, &id, &drawer);
        uint8_t *dst = dsb_image(&b, drawer > 0 ? drawer : 0);
        if (!dst)
            goto oom;
        if (nearest)
            mela_resize_nearest(dst, H, W, pix, h, w);
        else if (mela_resize_area(dst, H, W, pix, h, w))
            goto fail;
        free(pix);
        pix = NULL;
    }
    out = dsb_finish(&b);
    goto done;
oom:
    mela_set_error("omniglot: %s: out of memory", path);
fail:
    dsb_abort(&b);
done:
    for (size_t k = 0; k < ne; k++)
        free(ents[k].alphabet);
    free(ents);
    free(raw);
    free(pix);
    zip_discard(za);
    return out;
}

/* ------------------------------------------------------------------ cache */

typedef struct wbuf {
    uint8_t *p;
    size_t n, cap;
    int oom;
} wbuf;

static void put(wbuf *w, const void *data, size_t n)
{
    if (w->oom)
        return;
    if (w->n + n > w->cap) {
        size_t c = w->cap ? w->cap : 4096;
        while (c < w->n + n)
            c *= 2;
        uint8_t *q = realloc(w->p, c);
        if (!q) {
            w->oom = 1;
            return;
        }
        w->p = q;
        w->cap = c;
    }
    memcpy(w->p + w->n, data, n);
    w->n += n;
}

static void put_u32(wbuf *w, uint32_t v) { put(w, &v, 4); }
static void put_i32(wbuf *w, int32_t v) { put(w, &v, 4); }
static void put_u64(wbuf *w, uint64_t v) { put(w, &v, 8); }
static void put_str(wbuf *w, const char *s)
{
    size_t n = strlen(s);
    uint16_t l = (uint16_t)(n > 65535 ? 65535 : n);
    put(w, &l, 2);
    put(w, s, l);
}

/* Writes the cache atomically; 0, or -1 (the caller only notes it). */
static int cache_write(const char *cache_dir, const char *file, const mela_dataset *ds,
                       uint64_t src_size, uint64_t src_hash, int nearest)
{
    wbuf pay = {0};
    put_u32(&pay, (uint32_t)ds->ngroups);
    put_u32(&pay, (uint32_t)ds->nclasses);
    put_u32(&pay, (uint32_t)ds->nimages);
    for (int g = 0; g < ds->ngroups; g++)
        put_str(&pay, ds->groups[g]);
    for (int c = 0; c < ds->nclasses; c++) {
        put_i32(&pay, ds->classes[c].group);
        put_i32(&pay, ds->classes[c].id);
        put_i32(&pay, ds->classes[c].count);
        put_str(&pay, ds->classes[c].name);
    }
    put(&pay, ds->drawer, sizeof(int16_t) * (size_t)ds->nimages);
    put(&pay, ds->pixels, (size_t)ds->nimages * ds->C * ds->H * ds->W);
    if (pay.oom) {
        free(pay.p);
        return -1;
    }
    wbuf hdr = {0};
    put(&hdr, CACHE_MAGIC, 8);
    put_u32(&hdr, CACHE_VERSION);
    put_u32(&hdr, (uint32_t)ds->C);
    put_u32(&hdr, (uint32_t)ds->H);
    put_u32(&hdr, (uint32_t)ds->W);
    put_u64(&hdr, src_size);
    put_u64(&hdr, src_hash);
    put_u64(&hdr, pay.n);
    put_u64(&hdr, mela_hash64(pay.p, pay.n, 0));
    put_u32(&hdr, nearest ? 1u : 0u);
    while (hdr.n < CACHE_HEADER && !hdr.oom)
        put(&hdr, "", 1);

    int rc = -1;
    size_t need = strlen(cache_dir) + strlen(file) + 2;
    char *path = malloc(need), *tmp;
    if (hdr.oom || !path || mela_sys_mkdirs(cache_dir))
        goto done;
    snprintf(path, need, "%s/%s", cache_dir, file);
    int fd = mela_sys_temp_open(path, &tmp);
    if (fd >= 0) {
        int ok = mela_sys_write_all(fd, tmp, hdr.p, hdr.n) == 0 &&
                 mela_sys_write_all(fd, tmp, pay.p, pay.n) == 0;
        rc = mela_sys_temp_finish(fd, tmp, path, ok);
    }
done:
    free(path);
    free(hdr.p);
    free(pay.p);
    return rc;
}

typedef struct rbuf {
    const uint8_t *p;
    size_t n, at;
    int bad;
} rbuf;

static void get(rbuf *r, void *out, size_t n)
{
    if (r->bad || r->n - r->at < n) {
        r->bad = 1;
        memset(out, 0, n);
        return;
    }
    memcpy(out, r->p + r->at, n);
    r->at += n;
}

static uint32_t get_u32(rbuf *r)
{
    uint32_t v;
    get(r, &v, 4);
    return v;
}

static int32_t get_i32(rbuf *r)
{
    int32_t v;
    get(r, &v, 4);
    return v;
}

static uint64_t get_u64(rbuf *r)
{
    uint64_t v;
    get(r, &v, 8);
    return v;
}

/* A string into buf (NUL-terminated, at most 65535 bytes). */
static void get_str(rbuf *r, char *buf)
{
    uint16_t l = 0;
    get(r, &l, 2);
    get(r, buf, l);
    buf[r->bad ? 0 : l] = 0;
}

/* The cached dataset, or NULL when the cache is absent or fails any check. */
static mela_dataset *cache_read(const char *cpath, int set, int H, int W, int nearest,
                                uint64_t src_size, uint64_t src_hash)
{
    uint8_t *data = NULL;
    size_t size = 0;
    if (mela_sys_read_file(cpath, &data, &size))
        return NULL;
    rbuf r = {data, size, 0, 0};
    char magic[8];
    get(&r, magic, 8);
    uint32_t version = get_u32(&r), C = get_u32(&r), h = get_u32(&r), w = get_u32(&r);
    uint64_t ssize = get_u64(&r), shash = get_u64(&r), psize = get_u64(&r), phash = get_u64(&r);
    uint32_t filter = get_u32(&r);
    mela_dataset *ds = NULL;
    ds_builder b = {0};
    char *str = NULL;
    if (r.bad || size < CACHE_HEADER || memcmp(magic, CACHE_MAGIC, 8) || version != CACHE_VERSION ||
        C != 1 || h != (uint32_t)H || w != (uint32_t)W || filter != (nearest ? 1u : 0u) ||
        ssize != src_size || shash != src_hash ||
        psize != size - CACHE_HEADER || phash != mela_hash64(data + CACHE_HEADER, psize, 0))
        goto done;
    r.at = CACHE_HEADER;
    uint32_t ng = get_u32(&r), nc = get_u32(&r), ni = get_u32(&r);
    size_t img = (size_t)H * W;
    if (r.bad || ng == 0 || nc == 0 || ni == 0 || ng > nc || nc > ni || ni > (1u << 24) ||
        (size_t)ni * (img + 2) > psize)
        goto done;
    str = malloc(65536);
    if (!str || dsb_init(&b, 1, H, W) || dsb_reserve(&b, (int)ni))
        goto done;
    for (uint32_t g = 0; g < ng && !r.bad; g++) {
        get_str(&r, str);
        if (dsb_group(&b, str) != (int)g)
            goto done; /* duplicate name or OOM */
    }
    int total = 0;
    for (uint32_t c = 0; c < nc && !r.bad; c++) {
        int32_t g = get_i32(&r), id = get_i32(&r), count = get_i32(&r);
        get_str(&r, str);
        if (r.bad || g < 0 || g >= (int32_t)ng || count < 1 || count > (int32_t)ni - total ||
            dsb_class(&b, str, g, id, set) < 0)
            goto done;
        b.ds->classes[c].first = total;
        b.ds->classes[c].count = count;
        total += count;
    }
    if (r.bad || total != (int)ni || r.n - r.at != (size_t)ni * (img + 2))
        goto done;
    get(&r, b.ds->drawer, sizeof(int16_t) * ni);
    get(&r, b.ds->pixels, img * ni);
    b.ds->nimages = (int)ni;
    if (r.bad)
        goto done;
    ds = dsb_finish(&b);
done:
    dsb_abort(&b);
    free(str);
    free(data);
    return ds;
}

/* ----------------------------------------------------------------- public */

static char *default_cache_dir(void)
{
    const char *x = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    const char *base = (x && *x) ? x : home;
    const char *sub = (x && *x) ? "/mela" : "/.cache/mela";
    if (!base || !*base)
        base = "/tmp", sub = "/mela-cache";
    size_t n = strlen(base) + strlen(sub) + 1;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s%s", base, sub);
    return s;
}

/* One archive: from the cache when it is valid, else decoded (and cached). */
static mela_dataset *load_archive(const char *dir, int set, int H, int W, int nearest,
                                  const char *cache_dir, int *state)
{
    size_t n = strlen(dir) + 64;
    char *path = malloc(n);
    if (!path) {
        mela_set_error("omniglot: out of memory");
        return NULL;
    }
    snprintf(path, n, "%s/%s.zip", dir, ARCHIVES[set]);
    uint8_t *bytes = NULL;
    size_t size = 0;
    mela_dataset *ds = NULL;
    if (mela_sys_read_file(path, &bytes, &size)) {
        if (errno == ENOENT)
            mela_set_error("omniglot: %s: not found; the official archives "
                           "images_background.zip and images_evaluation.zip are at "
                           "https://github.com/brendenlake/omniglot (python/) and belong in %s",
                           path, dir);
        else
            mela_sys_error_context("omniglot");
        free(path);
        return NULL;
    }
    uint64_t hash = mela_hash64(bytes, size, 0);
    char file[96];
    snprintf(file, sizeof file, "omniglot-%s-%dx%d%s.u8", ARCHIVES[set], H, W,
             nearest ? "-nearest" : "");
    char *cpath = NULL;
    if (cache_dir) {
        size_t m = strlen(cache_dir) + sizeof file + 2;
        cpath = malloc(m);
        if (cpath) {
            snprintf(cpath, m, "%s/%s", cache_dir, file);
            ds = cache_read(cpath, set, H, W, nearest, size, hash);
        }
        if (ds)
            *state = MELA_CACHE_HIT;
    }
    if (!ds) {
        ds = omniglot_decode_archive(path, bytes, size, set, H, W, nearest);
        if (ds && cache_dir)
            *state = cache_write(cache_dir, file, ds, size, hash, nearest) ? MELA_CACHE_UNWRITABLE
                                                                  : MELA_CACHE_WRITTEN;
    }
    free(cpath);
    free(bytes);
    free(path);
    return ds;
}

mela_dataset *mela_omniglot_load(const char *dir, const mela_omniglot_opts *opts)
{
    mela_omniglot_opts o = {0};
    if (opts)
        o = *opts;
    int H = o.H ? o.H : 28, W = o.W ? o.W : 28;
    unsigned sets = o.sets ? o.sets : (MELA_OMNIGLOT_BACKGROUND | MELA_OMNIGLOT_EVALUATION);
    if (!dir)
        dir = ".";
    if (H < 1 || W < 1 || H > 4096 || W > 4096) {
        mela_set_error("omniglot: output size %dx%d outside 1..4096", H, W);
        return NULL;
    }
    if (sets & ~3u) {
        mela_set_error("omniglot: unknown set bits 0x%x", sets);
        return NULL;
    }
    char *cache_dir = NULL;
    if (!o.no_cache) {
        cache_dir = o.cache_dir ? strdup(o.cache_dir) : default_cache_dir();
        if (!cache_dir) {
            mela_set_error("omniglot: out of memory");
            return NULL;
        }
    }
    mela_dataset *part[2] = {NULL, NULL}, *out = NULL;
    int state[2] = {MELA_CACHE_UNUSED, MELA_CACHE_UNUSED};
    int nparts = 0;
    for (int s = 0; s < 2; s++) {
        if (!(sets & (1u << s)))
            continue;
        part[s] = load_archive(dir, s, H, W, o.nearest != 0, cache_dir, &state[s]);
        if (!part[s])
            goto done;
        nparts++;
    }
    if (nparts == 1) {
        out = part[0] ? part[0] : part[1];
        part[0] = part[1] = NULL;
    } else {
        ds_builder b;
        if (dsb_init(&b, 1, H, W) || dsb_append(&b, part[0], 0) || dsb_append(&b, part[1], 1)) {
            dsb_abort(&b);
            mela_set_error("omniglot: out of memory");
            goto done;
        }
        out = dsb_finish(&b);
    }
    /* The worst state of the parts: written beats hit, unwritable beats both. */
    out->cache_state = state[0] > state[1] ? state[0] : state[1];
done:
    mela_dataset_free(part[0]);
    mela_dataset_free(part[1]);
    free(cache_dir);
    return out;
}
