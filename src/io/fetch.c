/* fetch.c - downloading a file over HTTP(S) with libcurl, verified by its
 * MD5 before it takes its name: the bytes go to PATH.part (resumed with an
 * HTTP Range request when a part is there), and only a part whose MD5 is the
 * expected one is renamed to PATH. MD5 (RFC 1321) is written out here. */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/sys.h"
#include "mela_io.h"

/* -------------------------------------------------------------------- MD5 */

typedef struct md5_ctx {
    uint32_t h[4], k[64];
    uint64_t len; /* bytes so far */
    unsigned char buf[64];
} md5_ctx;

static const unsigned char MD5_SHIFT[4][4] = {{7, 12, 17, 22}, {5, 9, 14, 20}, {4, 11, 16, 23},
                                              {6, 10, 15, 21}};

static void md5_init(md5_ctx *c)
{
    c->h[0] = 0x67452301u, c->h[1] = 0xefcdab89u, c->h[2] = 0x98badcfeu, c->h[3] = 0x10325476u;
    for (int i = 0; i < 64; i++) /* the integer part of 2^32 |sin(i + 1)| */
        c->k[i] = (uint32_t)floor(fabs(sin((double)(i + 1))) * 4294967296.0);
    c->len = 0;
}

static uint32_t rotl32(uint32_t x, int s) { return (x << s) | (x >> (32 - s)); }

static void md5_block(md5_ctx *c, const unsigned char *p)
{
    uint32_t m[16];
    for (int i = 0; i < 16; i++)
        m[i] = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 | (uint32_t)p[4 * i + 2] << 16 |
               (uint32_t)p[4 * i + 3] << 24;
    uint32_t a = c->h[0], b = c->h[1], cc = c->h[2], d = c->h[3];
    for (int i = 0; i < 64; i++) {
        uint32_t f;
        int g;
        switch (i / 16) {
        case 0: f = (b & cc) | (~b & d), g = i; break;
        case 1: f = (d & b) | (~d & cc), g = (5 * i + 1) % 16; break;
        case 2: f = b ^ cc ^ d, g = (3 * i + 5) % 16; break;
        default: f = cc ^ (b | ~d), g = (7 * i) % 16; break;
        }
        f += a + c->k[i] + m[g];
        a = d, d = cc, cc = b;
        b += rotl32(f, MD5_SHIFT[i / 16][i % 4]);
    }
    c->h[0] += a, c->h[1] += b, c->h[2] += cc, c->h[3] += d;
}

static void md5_update(md5_ctx *c, const void *data, size_t n)
{
    const unsigned char *p = data;
    size_t have = (size_t)(c->len % 64);
    c->len += n;
    if (have) {
        size_t take = n < 64 - have ? n : 64 - have;
        memcpy(c->buf + have, p, take);
        p += take, n -= take;
        if (have + take < 64)
            return;
        md5_block(c, c->buf);
    }
    for (; n >= 64; p += 64, n -= 64)
        md5_block(c, p);
    memcpy(c->buf, p, n);
}

static void md5_hex(md5_ctx *c, char hex[33])
{
    uint64_t bits = c->len * 8;
    unsigned char pad[72] = {0x80};
    size_t have = (size_t)(c->len % 64), npad = (have < 56 ? 56 : 120) - have;
    for (int i = 0; i < 8; i++)
        pad[npad + i] = (unsigned char)(bits >> (8 * i));
    md5_update(c, pad, npad + 8);
    for (int i = 0; i < 16; i++)
        snprintf(hex + 2 * i, 3, "%02x", (unsigned)(c->h[i / 4] >> (8 * (i % 4))) & 0xffu);
}

void mela_md5(const void *data, size_t n, char hex[33])
{
    md5_ctx c;
    md5_init(&c);
    md5_update(&c, data, n);
    md5_hex(&c, hex);
}

int mela_md5_file(const char *path, char hex[33])
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return mela_set_error("md5 %s: %s", path, strerror(errno));
    md5_ctx c;
    md5_init(&c);
    unsigned char buf[1 << 16];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, f)) > 0)
        md5_update(&c, buf, got);
    int bad = ferror(f), e = errno;
    fclose(f);
    if (bad)
        return mela_set_error("md5 %s: cannot read (%s)", path, strerror(e));
    md5_hex(&c, hex);
    return 0;
}

/* --------------------------------------------------------------- download */

typedef struct transfer {
    FILE *f;
    const char *part;
    long long offset; /* bytes in the part before this request */
    long long got;    /* bytes written by this request */
    int write_errno;
    mela_fetch_fn fn;
    void *ctx;
} transfer;

static size_t on_data(char *p, size_t size, size_t n, void *user)
{
    transfer *t = user;
    size_t bytes = size * n;
    if (fwrite(p, 1, bytes, t->f) != bytes) {
        t->write_errno = errno ? errno : EIO;
        return 0; /* libcurl stops with CURLE_WRITE_ERROR */
    }
    t->got += (long long)bytes;
    return bytes;
}

static int on_progress(void *user, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    (void)ultotal, (void)ulnow;
    transfer *t = user;
    if (!t->fn)
        return 0;
    long long total = dltotal > 0 ? t->offset + (long long)dltotal : 0;
    return t->fn(t->offset + (long long)dlnow, total, t->ctx) ? 1 : 0;
}

static int is_md5(const char *s)
{
    if (!s || strlen(s) != 32)
        return 0;
    for (int i = 0; i < 32; i++)
        if (!strchr("0123456789abcdefABCDEF", s[i]))
            return 0;
    return 1;
}

/* The size of the regular file path, 0 when there is none. */
static long long part_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) ? (long long)st.st_size : 0;
}

/* The part, verified, takes its name (synced first, so a crash leaves the
 * part or the whole file). Otherwise the part is removed. */
static int part_finish(const char *part, const char *path, const char *url, const char *md5)
{
    char got[33];
    if (mela_md5_file(part, got))
        return -1;
    if (strcasecmp(got, md5)) {
        long long size = part_size(part);
        unlink(part);
        return mela_set_error("fetch %s: wrong checksum: the %lld bytes downloaded have md5 %s, "
                              "expected %s; nothing was kept (fetch again, or check the address)",
                              url, size, got, md5);
    }
    int fd = open(part, O_RDONLY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    if (rename(part, path))
        return mela_set_error("%s: cannot rename %s to it (%s)", path, part, strerror(errno));
    return 0;
}

/* One request: the part's bytes from `offset` on (0: the whole file).
 * Returns libcurl's code; *http the status (0 when none came). */
static CURLcode request(const char *url, transfer *t, long *http, char *errbuf)
{
    CURL *h = curl_easy_init();
    if (!h)
        return CURLE_FAILED_INIT;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(h, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(h, CURLOPT_FAILONERROR, 1L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L); /* no SIGALRM behind the caller's back */
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 30L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L); /* a stalled transfer ends after a minute */
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "mela/" MELA_VERSION_STRING);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, t);
    if (t->offset > 0)
        curl_easy_setopt(h, CURLOPT_RESUME_FROM_LARGE, (curl_off_t)t->offset);
    errbuf[0] = 0;
    CURLcode rc = curl_easy_perform(h);
    *http = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, http);
    curl_easy_cleanup(h);
    return rc;
}

/* The host part of url, for messages. */
static void url_host(const char *url, char *host, size_t n)
{
    const char *p = strstr(url, "://");
    p = p ? p + 3 : url;
    size_t k = strcspn(p, "/:?#");
    snprintf(host, n, "%.*s", (int)(k < n ? k : n - 1), p);
}

int mela_fetch(const char *url, const char *path, const char *md5, mela_fetch_fn fn, void *ctx)
{
    if (!url || !*url || !path || !*path)
        return mela_set_error("fetch: no address or no file given");
    if (!is_md5(md5))
        return mela_set_error("fetch %s: '%s' is not an MD5 checksum (32 hex digits)", url,
                              md5 ? md5 : "(null)");
    char got[33];
    struct stat st;
    if (stat(path, &st) == 0) {
        if (!S_ISREG(st.st_mode))
            return mela_set_error("fetch: %s exists and is not a file", path);
        if (mela_md5_file(path, got))
            return -1;
        if (!strcasecmp(got, md5))
            return 1;
        return mela_set_error("fetch: %s exists but is not the expected file (md5 %s, expected %s); "
                              "it is left as it is: move it away to download it again", path, got, md5);
    }
    size_t n = strlen(path) + 6;
    char *part = malloc(n);
    if (!part)
        return mela_set_error("fetch: out of memory");
    snprintf(part, n, "%s.part", path);
    int status = -1;
    for (int attempt = 0; attempt < 2; attempt++) {
        transfer t = {.part = part, .offset = part_size(part), .fn = fn, .ctx = ctx};
        /* a part that is whole already (a run that stopped before the rename) */
        if (t.offset > 0 && mela_md5_file(part, got) == 0 && !strcasecmp(got, md5)) {
            status = part_finish(part, path, url, md5);
            break;
        }
        t.f = t.offset > 0 ? fopen(part, "ab") : mela_sys_fopen_write(part);
        if (!t.f) {
            mela_set_error("fetch: cannot write %s (%s)", part, strerror(errno));
            break;
        }
        char errbuf[CURL_ERROR_SIZE];
        long http;
        CURLcode rc = request(url, &t, &http, errbuf);
        int werr = fclose(t.f) != 0 && !t.write_errno ? errno : t.write_errno;
        long long have = t.offset + t.got;
        if (rc == CURLE_OK && werr)
            rc = CURLE_WRITE_ERROR, t.write_errno = werr;
        if (rc == CURLE_OK) {
            status = part_finish(part, path, url, md5);
            break;
        }
        /* A part the server cannot continue (no ranges, or a range past the
         * end: a part of some other file): start once more from nothing. */
        if (t.offset > 0 && (rc == CURLE_RANGE_ERROR || http == 416) && attempt == 0) {
            unlink(part);
            continue;
        }
        char host[256];
        url_host(url, host, sizeof host);
        const char *why = errbuf[0] ? errbuf : curl_easy_strerror(rc);
        if (rc == CURLE_COULDNT_RESOLVE_HOST || rc == CURLE_COULDNT_RESOLVE_PROXY ||
            rc == CURLE_COULDNT_CONNECT || (rc == CURLE_OPERATION_TIMEDOUT && have == t.offset && !http))
            mela_set_error("fetch %s: cannot reach %s (%s): no network, or a proxy or firewall in the way",
                           url, host, why);
        else if (rc == CURLE_HTTP_RETURNED_ERROR)
            mela_set_error("fetch %s: the server answered HTTP %ld", url, http);
        else if (rc == CURLE_WRITE_ERROR && t.write_errno)
            mela_set_error("fetch %s: cannot write %s (%s)", url, part, strerror(t.write_errno));
        else if (rc == CURLE_ABORTED_BY_CALLBACK)
            mela_set_error("fetch %s: stopped after %lld bytes; %s is kept: fetch again to resume", url,
                           have, part);
        else
            mela_set_error("fetch %s: interrupted after %lld bytes (%s); %s is kept: fetch again to "
                           "resume", url, have, why, part);
        if (part_size(part) == 0)
            unlink(part); /* nothing to resume from */
        break;
    }
    free(part);
    return status;
}
