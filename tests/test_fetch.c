/* test_fetch.c - downloads (mela_fetch, `mela data fetch`) against a small
 * HTTP/1.1 server on 127.0.0.1 that this test runs on a thread of its own:
 * a good archive, a corrupt one, a connection cut halfway and then resumed
 * with a Range request, a 404, a port nobody listens on. MD5 against the
 * vectors of RFC 1321 and against md5sum(1). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <png.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "mela_data.h"
#include "mela_io.h"

/* ------------------------------------------------------------ the server */

typedef struct resource {
    const char *path;      /* "/good/images_background.zip" */
    const unsigned char *data;
    long long n;
    int cut;               /* 1: the next answer sends half the body, then closes */
    int no_range;          /* 1: ignores Range (answers 200 with everything) */
} resource;

#define NRES 8
static resource res[NRES];
static int nres;
static int srv_fd, srv_port, srv_stop;
static int hits;                 /* requests answered */
static long long last_range = -1; /* the start of the last Range request, -1: none */

static void send_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t k = send(fd, c, n, MSG_NOSIGNAL);
        if (k <= 0)
            return;
        c += k, n -= (size_t)k;
    }
}

static void answer(int fd)
{
    char req[4096];
    size_t n = 0;
    while (n < sizeof req - 1) { /* up to the blank line */
        ssize_t k = recv(fd, req + n, sizeof req - 1 - n, 0);
        if (k <= 0)
            return;
        n += (size_t)k;
        req[n] = 0;
        if (strstr(req, "\r\n\r\n"))
            break;
    }
    char path[512] = "";
    sscanf(req, "GET %511s", path);
    long long from = -1;
    const char *r = strstr(req, "Range: bytes=");
    if (!r)
        r = strstr(req, "range: bytes=");
    if (r)
        from = atoll(r + 13);
    __atomic_store_n(&last_range, from, __ATOMIC_SEQ_CST);
    __atomic_add_fetch(&hits, 1, __ATOMIC_SEQ_CST);
    resource *rs = NULL;
    for (int i = 0; i < nres; i++)
        if (!strcmp(res[i].path, path))
            rs = &res[i];
    char head[512];
    if (!rs) {
        const char *body = "not here\n";
        int h = snprintf(head, sizeof head, "HTTP/1.1 404 Not Found\r\nContent-Length: %zu\r\n"
                         "Connection: close\r\n\r\n", strlen(body));
        send_all(fd, head, (size_t)h);
        send_all(fd, body, strlen(body));
        return;
    }
    if (rs->no_range)
        from = -1;
    if (from >= rs->n) {
        int h = snprintf(head, sizeof head, "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: "
                         "bytes */%lld\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", rs->n);
        send_all(fd, head, (size_t)h);
        return;
    }
    long long start = from > 0 ? from : 0, len = rs->n - start;
    int h = from >= 0
        ? snprintf(head, sizeof head, "HTTP/1.1 206 Partial Content\r\nContent-Length: %lld\r\n"
                   "Content-Range: bytes %lld-%lld/%lld\r\nConnection: close\r\n\r\n", len, start,
                   rs->n - 1, rs->n)
        : snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nContent-Length: %lld\r\n"
                   "Connection: close\r\n\r\n", len);
    send_all(fd, head, (size_t)h);
    if (rs->cut) { /* half of it, then the connection drops */
        rs->cut = 0;
        send_all(fd, rs->data + start, (size_t)(len / 2));
        return;
    }
    send_all(fd, rs->data + start, (size_t)len);
}

static void *serve(void *arg)
{
    (void)arg;
    while (!__atomic_load_n(&srv_stop, __ATOMIC_SEQ_CST)) {
        struct pollfd p = {srv_fd, POLLIN, 0};
        if (poll(&p, 1, 50) <= 0)
            continue;
        int fd = accept(srv_fd, NULL, NULL);
        if (fd < 0)
            continue;
        answer(fd);
        shutdown(fd, SHUT_RDWR);
        close(fd);
    }
    return NULL;
}

/* A listening socket on 127.0.0.1 and a free port; the fd (or -1). */
static int listen_local(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) || listen(fd, 16) ||
        getsockname(fd, (struct sockaddr *)&a, &len)) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    *port = ntohs(a.sin_port);
    return fd;
}

/* ------------------------------------------------------------------ MD5 */

static void test_md5_vectors(void)
{
    /* RFC 1321, appendix A.5 */
    static const char *const v[][2] = {
        {"", "d41d8cd98f00b204e9800998ecf8427e"},
        {"a", "0cc175b9c0f1b6a831c399e269772661"},
        {"abc", "900150983cd24fb0d6963f7d28e17f72"},
        {"message digest", "f96b697d7cb7938d525a2f31aaf161d0"},
        {"abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b"},
        {"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
         "d174ab98d277d9f5a5611c2c9f419d9f"},
        {"1234567890123456789012345678901234567890" /* "1234567890" 8 times */
         "1234567890123456789012345678901234567890", "57edf4a22be3c955ac49da2e2107b67a"},
    };
    char hex[33];
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        mela_md5(v[i][0], strlen(v[i][0]), hex);
        CHECK(!strcmp(hex, v[i][1]), "md5(\"%s\") = %s, RFC 1321 says %s", v[i][0], hex, v[i][1]);
    }
}

/* mela_md5_file against md5sum(1) on files of every length mod 64 around
 * the padding boundary, and on the shared Omniglot archives when present. */
static void test_md5_files(const char *dir)
{
    char path[600], cmd[800], hex[33], want[64];
    unsigned char buf[200];
    for (int i = 0; i < 200; i++)
        buf[i] = (unsigned char)(i * 37 + 11);
    int lens[] = {55, 56, 57, 63, 64, 65, 119, 120, 128, 200};
    for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++) {
        snprintf(path, sizeof path, "%s/md5-%d.bin", dir, lens[k]);
        FILE *f = fopen(path, "wb");
        fwrite(buf, 1, (size_t)lens[k], f);
        fclose(f);
        snprintf(cmd, sizeof cmd, "md5sum '%s'", path);
        FILE *p = popen(cmd, "r");
        int ok = p && fscanf(p, "%32s", want) == 1;
        if (p)
            pclose(p);
        if (!ok)
            continue; /* no md5sum: the RFC vectors stand alone */
        CHECK(mela_md5_file(path, hex) == 0 && !strcmp(hex, want), "%d bytes: %s, md5sum %s", lens[k],
              hex, want);
    }
    const char *shared = getenv("MELA_SHARED_DATA");
    for (int i = 0; shared && mela_omniglot_archive(i); i++) {
        snprintf(path, sizeof path, "%s/omniglot/%s", shared, mela_omniglot_archive(i)->file);
        if (access(path, R_OK))
            continue;
        snprintf(cmd, sizeof cmd, "md5sum '%s'", path);
        FILE *p = popen(cmd, "r");
        int ok = p && fscanf(p, "%32s", want) == 1;
        if (p)
            pclose(p);
        if (ok)
            CHECK(mela_md5_file(path, hex) == 0 && !strcmp(hex, want), "%s: %s, md5sum %s", path, hex, want);
    }
    CHECK(mela_md5_file("/nonexistent/x", hex) == -1 && strstr(mela_last_error(), "/nonexistent/x"),
          "missing file: %s", mela_last_error());
}

/* ------------------------------------------------------------- downloads */

typedef struct seen {
    long long last_done, total;
    int calls, backwards, stop_at;
} seen;

static int on_progress(long long done, long long total, void *ctx)
{
    seen *s = ctx;
    s->backwards |= done < s->last_done;
    s->last_done = done;
    if (total)
        s->total = total;
    s->calls++;
    return s->stop_at && done >= s->stop_at;
}

static int exists(const char *path) { return access(path, F_OK) == 0; }

/* 1 when the file at path holds exactly data[0..n). */
static int same_bytes(const char *path, const unsigned char *data, long long n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    unsigned char *b = malloc((size_t)n + 1);
    size_t got = fread(b, 1, (size_t)n + 1, f);
    fclose(f);
    int same = (long long)got == n && !memcmp(b, data, (size_t)n);
    free(b);
    return same;
}

static long long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) ? -1 : (long long)st.st_size;
}

static void test_fetch(const char *dir, const unsigned char *good, long long n, const char *md5)
{
    char url[256], path[600], part[620];
    seen s = {0};
    snprintf(path, sizeof path, "%s/a.zip", dir);
    snprintf(part, sizeof part, "%s.part", path);

    /* a good archive, with progress to its size */
    snprintf(url, sizeof url, "http://127.0.0.1:%d/good/images_background.zip", srv_port);
    int rc = mela_fetch(url, path, md5, on_progress, &s);
    CHECK(rc == 0, "good: %d %s", rc, mela_last_error());
    CHECK(same_bytes(path, good, n) && !exists(part), "good: the file is the server's bytes, no part");
    CHECK(s.calls > 0 && !s.backwards && s.last_done == n && s.total == n,
          "progress: %d calls, last %lld of %lld (want %lld)", s.calls, s.last_done, s.total, n);

    /* there already: checked, not downloaded */
    int before = hits;
    CHECK(mela_fetch(url, path, md5, NULL, NULL) == 1 && hits == before, "again: %s", mela_last_error());
    /* there, but other bytes: an error, the file untouched */
    CHECK(mela_fetch(url, path, "00000000000000000000000000000000", NULL, NULL) == -1 &&
              strstr(mela_last_error(), "not the expected file") && same_bytes(path, good, n),
          "existing other file: %s", mela_last_error());
    CHECK(mela_fetch(url, path, "xyz", NULL, NULL) == -1 && strstr(mela_last_error(), "not an MD5"),
          "bad md5 text: %s", mela_last_error());
    unlink(path);

    /* a corrupt archive: wrong checksum, nothing left behind */
    snprintf(url, sizeof url, "http://127.0.0.1:%d/corrupt/images_background.zip", srv_port);
    rc = mela_fetch(url, path, md5, NULL, NULL);
    CHECK(rc == -1 && strstr(mela_last_error(), "wrong checksum") && strstr(mela_last_error(), md5),
          "corrupt: %d %s", rc, mela_last_error());
    CHECK(!exists(path) && !exists(part), "corrupt: no file, no part left");

    /* cut halfway: the part stays; the next call asks for the rest */
    snprintf(url, sizeof url, "http://127.0.0.1:%d/cut/images_background.zip", srv_port);
    rc = mela_fetch(url, path, md5, NULL, NULL);
    CHECK(rc == -1 && strstr(mela_last_error(), "interrupted") && strstr(mela_last_error(), "resume"),
          "cut: %d %s", rc, mela_last_error());
    CHECK(!exists(path) && file_size(part) == n / 2, "cut: no file, a part of %lld bytes (want %lld)",
          file_size(part), n / 2);
    memset(&s, 0, sizeof s);
    rc = mela_fetch(url, path, md5, on_progress, &s);
    CHECK(rc == 0 && last_range == n / 2, "resume: %d, Range from %lld (want %lld) %s", rc, last_range,
          n / 2, mela_last_error());
    CHECK(same_bytes(path, good, n) && !exists(part), "resumed: the server's bytes, no part");
    CHECK(s.last_done == n && s.total == n, "resumed progress counts the part: %lld of %lld",
          s.last_done, s.total);
    unlink(path);

    /* a part of some other file, then a server that ignores Range: the
     * resumed bytes fail the checksum, and nothing is left */
    snprintf(url, sizeof url, "http://127.0.0.1:%d/norange/images_background.zip", srv_port);
    FILE *f = fopen(part, "wb");
    fwrite("junk", 1, 4, f);
    fclose(f);
    rc = mela_fetch(url, path, md5, NULL, NULL);
    CHECK(rc == 0 && same_bytes(path, good, n) && !exists(part),
          "no ranges: starts again and gets the file: %d %s", rc, mela_last_error());
    unlink(path);

    /* a whole part with other bytes: the server has nothing past its end
     * (416), so the download starts again */
    snprintf(url, sizeof url, "http://127.0.0.1:%d/good/images_background.zip", srv_port);
    f = fopen(part, "wb");
    fwrite(good, 1, (size_t)n - 1, f);
    fwrite("?", 1, 1, f);
    fclose(f);
    rc = mela_fetch(url, path, md5, NULL, NULL);
    CHECK(rc == 0 && same_bytes(path, good, n) && !exists(part), "a whole wrong part: %d %s", rc,
          mela_last_error());
    unlink(path);

    /* the progress callback stops it: the part is kept for later */
    snprintf(url, sizeof url, "http://127.0.0.1:%d/good/images_background.zip", srv_port);
    memset(&s, 0, sizeof s);
    s.stop_at = 1;
    rc = mela_fetch(url, path, md5, on_progress, &s);
    CHECK(rc == -1 && strstr(mela_last_error(), "stopped") && !exists(path), "stop: %d %s", rc,
          mela_last_error());
    CHECK(mela_fetch(url, path, md5, NULL, NULL) == 0 && same_bytes(path, good, n) && !exists(part),
          "after a stop: %s", mela_last_error());
    unlink(path);

    /* 404 */
    snprintf(url, sizeof url, "http://127.0.0.1:%d/missing.zip", srv_port);
    rc = mela_fetch(url, path, md5, NULL, NULL);
    CHECK(rc == -1 && strstr(mela_last_error(), "HTTP 404") && !exists(path) && !exists(part),
          "404: %d %s", rc, mela_last_error());

    /* nobody listening: no network */
    int port, fd = listen_local(&port);
    close(fd);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/x.zip", port);
    rc = mela_fetch(url, path, md5, NULL, NULL);
    CHECK(rc == -1 && strstr(mela_last_error(), "cannot reach 127.0.0.1") &&
              strstr(mela_last_error(), "no network") && !exists(path) && !exists(part),
          "unreachable: %d %s", rc, mela_last_error());
    /* a folder that cannot be written */
    snprintf(url, sizeof url, "http://127.0.0.1:%d/good/images_background.zip", srv_port);
    rc = mela_fetch(url, "/nonexistent/dir/a.zip", md5, NULL, NULL);
    CHECK(rc == -1 && strstr(mela_last_error(), "/nonexistent/dir/a.zip.part"), "unwritable: %s",
          mela_last_error());
}

/* ------------------------------------------------------- the command line */

/* Runs the shell command; its exit status, its output (both streams) in out. */
static int run(const char *cmd, char *out, size_t n)
{
    char full[2048];
    snprintf(full, sizeof full, "%s 2>&1", cmd);
    FILE *p = popen(full, "r");
    size_t k = p ? fread(out, 1, n - 1, p) : 0;
    out[k] = 0;
    int st = p ? pclose(p) : -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_cli(const char *dir, const char *md5_bg, const char *md5_ev, long long n)
{
    const char *bin = getenv("MELA_BIN");
    if (!bin) {
        printf("MELA_BIN not set: command-line checks skipped\n");
        return;
    }
    char cmd[1500], out[8192], path[700];
    snprintf(cmd, sizeof cmd,
             "MELA_OMNIGLOT_URL=http://127.0.0.1:%d/cut MELA_FETCH_MD5=images_background.zip=%s,"
             "images_evaluation.zip=%s %s data fetch omniglot --dir %s/omni",
             srv_port, md5_bg, md5_ev, bin, dir);
    /* the first try is cut halfway: a clear message, parts kept, exit 1 */
    res[2].cut = res[3].cut = 1;
    int rc = run(cmd, out, sizeof out);
    CHECK(rc == 1 && strstr(out, "interrupted") && strstr(out, "fetch again to resume"), "cli cut: %d %s",
          rc, out);
    snprintf(path, sizeof path, "%s/omni/images_background.zip", dir);
    CHECK(!exists(path), "cli cut: no archive under its name");
    /* the second finishes both */
    rc = run(cmd, out, sizeof out);
    CHECK(rc == 0 && strstr(out, "downloaded (md5 verified)") && strstr(out, "mela train --data-dir"),
          "cli resume: %d %s", rc, out);
    CHECK(file_size(path) == n, "cli: %s has %lld bytes", path, file_size(path));
    rc = run(cmd, out, sizeof out);
    CHECK(rc == 0 && strstr(out, "there already"), "cli again: %d %s", rc, out);
    /* the real checksums do not match the test's archives: refused */
    snprintf(cmd, sizeof cmd, "MELA_OMNIGLOT_URL=http://127.0.0.1:%d/good %s data fetch omniglot --dir %s/omni2",
             srv_port, bin, dir);
    rc = run(cmd, out, sizeof out);
    CHECK(rc == 1 && strstr(out, "wrong checksum") && strstr(out, "68d2efa1b9178cc56df9314c21c6e718"),
          "cli wrong checksum: %d %s", rc, out);
    snprintf(path, sizeof path, "%s/omni2/images_background.zip", dir);
    CHECK(!exists(path), "cli wrong checksum: nothing kept");
    /* no network */
    int port, fd = listen_local(&port);
    close(fd);
    snprintf(cmd, sizeof cmd, "%s data fetch omniglot --dir %s/omni3 --url http://127.0.0.1:%d", bin, dir, port);
    rc = run(cmd, out, sizeof out);
    CHECK(rc == 1 && strstr(out, "no network"), "cli no network: %d %s", rc, out);
    /* usage */
    snprintf(cmd, sizeof cmd, "%s data fetch mnist", bin);
    CHECK(run(cmd, out, sizeof out) == 2 && strstr(out, "omniglot"), "cli usage: %s", out);
    /* train without the data says how to get it */
    snprintf(cmd, sizeof cmd, "%s train --data-dir %s/none --out-dir '' --iterations 1", bin, dir);
    rc = run(cmd, out, sizeof out);
    CHECK(rc == 1 && strstr(out, "mela data fetch omniglot --dir") && strstr(out, "/none"),
          "train without data: %d %s", rc, out);
    /* info on a folder of class folders, and on the shared Omniglot */
    snprintf(cmd, sizeof cmd, "%s data info %s/omni", bin, dir);
    rc = run(cmd, out, sizeof out);
    CHECK(rc == 1 && strstr(out, "Omniglot") && strstr(out, "not the official archive's bytes") &&
              strstr(out, "cannot be read"),
          "info on the test's archives: %d %s", rc, out);
    /* info on class folders: 2 classes, 3 and 1 grey 4x4 images */
    const char *files[] = {"cls/a/1.png", "cls/a/2.png", "cls/a/3.png", "cls/b/1.png"};
    unsigned char grey[16] = {0, 255, 0, 255};
    snprintf(cmd, sizeof cmd, "mkdir -p %s/cls/a %s/cls/b", dir, dir);
    CHECK(system(cmd) == 0, "%s", cmd);
    for (int i = 0; i < 4; i++) {
        png_image img;
        memset(&img, 0, sizeof img);
        img.version = PNG_IMAGE_VERSION, img.width = 4, img.height = 4, img.format = PNG_FORMAT_GRAY;
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        CHECK(png_image_write_to_file(&img, path, 0, grey, 0, NULL), "write %s", path);
    }
    snprintf(cmd, sizeof cmd, "%s data info %s/cls", bin, dir);
    rc = run(cmd, out, sizeof out);
    CHECK(rc == 0 && strstr(out, "2 classes, 4 images (1 to 3 a class), 0 in colour, 4 not 28x28") &&
              strstr(out, "a                        3 images"),
          "info on class folders: %d %s", rc, out);
    const char *shared = getenv("MELA_SHARED_DATA");
    snprintf(path, sizeof path, "%s/omniglot/images_background.zip", shared ? shared : "");
    if (shared && exists(path)) {
        snprintf(cmd, sizeof cmd, "%s data info %s/omniglot", bin, shared);
        rc = run(cmd, out, sizeof out);
        CHECK(rc == 0 && strstr(out, "30 alphabets, 964 characters, 19280 images") &&
                  strstr(out, "20 alphabets, 659 characters, 13180 images") && strstr(out, "train 4112"),
              "info on the shared Omniglot: %d %s", rc, out);
    }
}

int main(void)
{
    char dir[] = "/tmp/mela-fetch-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_md5_vectors();
    test_md5_files(dir);

    /* two small archives (any bytes serve: only their checksums matter) */
    long long n = 300007;
    unsigned char *good = malloc((size_t)n), *bad = malloc((size_t)n), *ev = malloc((size_t)n);
    uint64_t x = 88172645463325252ull;
    for (long long i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        good[i] = (unsigned char)x;
        ev[i] = (unsigned char)(x >> 8);
    }
    memcpy(bad, good, (size_t)n);
    bad[n / 3] ^= 1; /* one bit */
    char md5[33], md5_ev[33];
    mela_md5(good, (size_t)n, md5);
    mela_md5(ev, (size_t)n, md5_ev);
    res[nres++] = (resource){"/good/images_background.zip", good, n, 0, 0};
    res[nres++] = (resource){"/corrupt/images_background.zip", bad, n, 0, 0};
    res[nres++] = (resource){"/cut/images_background.zip", good, n, 1, 0};
    res[nres++] = (resource){"/cut/images_evaluation.zip", ev, n, 0, 0};
    res[nres++] = (resource){"/norange/images_background.zip", good, n, 0, 1};
    res[nres++] = (resource){"/good/images_evaluation.zip", ev, n, 0, 0};

    pthread_t th;
    srv_fd = listen_local(&srv_port);
    CHECK(srv_fd >= 0, "cannot listen on 127.0.0.1: %s", strerror(errno));
    if (srv_fd >= 0 && pthread_create(&th, NULL, serve, NULL) == 0) {
        test_fetch(dir, good, n, md5);
        test_cli(dir, md5, md5_ev, n);
        __atomic_store_n(&srv_stop, 1, __ATOMIC_SEQ_CST);
        pthread_join(th, NULL);
        close(srv_fd);
    }
    free(good), free(bad), free(ev);
    check_rm_rf(dir);
    return check_finish();
}
