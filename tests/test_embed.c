/* test_embed.c - a program embedding libmela, as a user builds it: mela is
 * installed into a temporary prefix (scripts/embed_test.sh) and
 * examples/classify.c is compiled against that tree with pkg-config and
 * with CMake's find_package(mela). Both programs classify the query images
 * of unseen classes with a checkpoint trained here (ProtoNets, synthetic
 * classes) and must print exactly the lines of the installed
 * `mela classify`, and be right on most queries. */
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "check.h"
#include "synthetic.h"

/* An 8x8 grey PNG of the image, inverted (ink dark on white, as a user's
 * scan; mela inverts it back on load). */
static int write_png(const char *path, const uint8_t *pix)
{
    uint8_t inv[64];
    for (int i = 0; i < 64; i++)
        inv[i] = (uint8_t)(255 - pix[i]);
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    img.width = 8, img.height = 8;
    img.format = PNG_FORMAT_GRAY;
    return png_image_write_to_file(&img, path, 0, inv, 0, NULL) ? 0 : -1;
}

/* The command's exit status, its standard output in out. */
static int run(const char *cmd, char *out, size_t n)
{
    FILE *p = popen(cmd, "r");
    size_t k = p ? fread(out, 1, n - 1, p) : 0;
    out[k] = 0;
    int st = p ? pclose(p) : -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int main(void)
{
    const char *build = getenv("MELA_BUILD_DIR"), *src = getenv("MELA_SOURCE_DIR");
    if (!build || !src) {
        printf("MELA_BUILD_DIR or MELA_SOURCE_DIR not set (run through ctest): skipped\n");
        return 0;
    }
    char dir[] = "/tmp/mela-embed-XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    /* a small ProtoNets checkpoint */
    synth_data d;
    synth_open(&d, 7);
    mela_run_config rc;
    synth_config(&rc, "protonet", 40);
    rc.train = (mela_task_spec){10, 1, 5, 0};
    rc.val_every = 40;
    snprintf(rc.out_dir, sizeof rc.out_dir, "%s/run", dir);
    double acc = synth_train(&rc, &d, NULL);
    CHECK(acc > 0.5, "protonet on synthetic classes: %.2f %s", acc, mela_last_error());

    /* support: 5 unseen classes, 1 image each; queries: 2 more of each */
    char path[700], queries[4096] = "", cmd[8192], out[8192], want[8192];
    int pos = 0;
    for (int c = 0; c < 5; c++) {
        int cls = 30 + c;
        snprintf(path, sizeof path, "%s/support/%s", dir, d.ds->classes[cls].name);
        char tmp[800];
        snprintf(tmp, sizeof tmp, "%s/support", dir);
        mkdir(tmp, 0755);
        mkdir(path, 0755);
        snprintf(tmp, sizeof tmp, "%s/0.png", path);
        CHECK(write_png(tmp, mela_dataset_image(d.ds, cls, 0)) == 0, "write %s", tmp);
        for (int j = 1; j <= 2; j++) {
            snprintf(tmp, sizeof tmp, "%s/q-%s-%d.png", dir, d.ds->classes[cls].name, j);
            CHECK(write_png(tmp, mela_dataset_image(d.ds, cls, j)) == 0, "write %s", tmp);
            pos += snprintf(queries + pos, sizeof queries - pos, " %s", tmp);
        }
    }
    synth_close(&d);

    snprintf(cmd, sizeof cmd, "'%s/scripts/embed_test.sh' '%s' '%s' '%s' 2>&1", src, build, src, dir);
    int rc_inst = run(cmd, out, sizeof out);
    CHECK(rc_inst == 0, "install and build the example: %s", out);
    if (rc_inst == 0) {
        snprintf(cmd, sizeof cmd, "%s/prefix/bin/mela classify %s/run/best.safetensors %s/support%s", dir, dir,
                 dir, queries);
        CHECK(run(cmd, want, sizeof want) == 0, "installed mela classify: %s", want);
        const char *progs[] = {"classify-pc", "example/classify"};
        for (int k = 0; k < 2; k++) {
            snprintf(cmd, sizeof cmd, "%s/%s %s/run/best.safetensors %s/support%s", dir, progs[k], dir, dir,
                     queries);
            CHECK(run(cmd, out, sizeof out) == 0 && !strcmp(out, want),
                  "%s prints what mela classify prints:\n%s\nmela classify:\n%s", progs[k], out, want);
        }
        /* right on most queries: the line "…/q-classNN-j.png<TAB>classNN<TAB>…" */
        int right = 0, lines = 0;
        for (char *l = want; *l; lines++) {
            char *q = strstr(l, "/q-"), *tab = strchr(l, '\t'), *nl = strchr(l, '\n');
            right += q && tab && !strncmp(q + 3, tab + 1, 7);
            l = nl ? nl + 1 : l + strlen(l);
        }
        CHECK(lines == 10 && right >= 7, "%d of %d queries right (want >= 7):\n%s", right, lines, want);
        printf("the embedded example: %d of %d queries of unseen classes right\n", right, lines);
    }
    check_rm_rf(dir);
    return check_finish();
}
