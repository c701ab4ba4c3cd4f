/* folder.c - a dataset from the user's own folder tree root/<class>/<image>
 * (PNG or JPEG, grey or colour), resized with the area filter. No cache:
 * user folders are small, and the files are read as they are. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/sys.h"
#include "data/data_internal.h"

/* Sorted names in dir (no dot entries); 0, or -1 with the error set. */
static int list_dir(const char *dir, char ***names, int *n)
{
    return mela_sys_list_dir(dir, names, n) ? mela_sys_error_context("folder") : 0;
}

static char *join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s/%s", a, b);
    return s;
}

/* 1 when path is a directory (symbolic links followed), 0 when it is
 * something else, -1 (error set) when it cannot be told: a link whose target
 * is missing, a loop of links. Such an entry may have been meant as a class,
 * so it is reported rather than skipped. */
static int is_dir(const char *root, const char *name, const char *path)
{
    struct stat st;
    if (stat(path, &st) == 0)
        return S_ISDIR(st.st_mode);
    int e = errno;
    struct stat ls;
    int link = lstat(path, &ls) == 0 && S_ISLNK(ls.st_mode);
    if (link && e == ENOENT)
        return mela_set_error("folder: %s: class %s (%s) is a dangling symbolic link: its target "
                              "does not exist", root, name, path);
    if (link && e == ELOOP)
        return mela_set_error("folder: %s: class %s (%s) is a symbolic link that loops", root, name,
                              path);
    return mela_set_error("folder: %s: class %s: cannot stat %s (%s)", root, name, path,
                          strerror(e));
}

/* The bytes of one image file: a regular file of at most
 * MELA_IMAGE_MAX_BYTES (a FIFO or /dev/zero is refused, not read). */
static int read_image(const char *path, const char *context, uint8_t **data, size_t *size)
{
    if (mela_sys_read_file_max(path, MELA_IMAGE_MAX_BYTES, data, size))
        return mela_sys_error_context("%s", context);
    return 0;
}

/* Reads, decodes, (inverts) and resizes one image file into dst
 * (C*H*W bytes, plane by plane). */
static int load_u8(const char *path, int C, int H, int W, unsigned flags, uint8_t *dst)
{
    uint8_t *data = NULL, *pix = NULL, *plane = NULL;
    size_t size = 0;
    int h, w, rc = -1;
    char what[4200];
    snprintf(what, sizeof what, "folder: %s", path);
    if (read_image(path, "folder", &data, &size))
        return -1;
    if (mela_image_decode(data, size, what, C, &pix, &h, &w))
        goto done;
    plane = malloc((size_t)h * w);
    if (!plane) {
        mela_set_error("%s: out of memory", what);
        goto done;
    }
    size_t HW = (size_t)H * W;
    for (int ch = 0; ch < C; ch++) {
        for (size_t p = 0; p < (size_t)h * w; p++) {
            uint8_t v = pix[p * C + ch];
            plane[p] = (flags & MELA_FOLDER_INVERT) ? (uint8_t)(255 - v) : v;
        }
        if (flags & MELA_FOLDER_NEAREST)
            mela_resize_nearest(dst + ch * HW, H, W, plane, h, w);
        else if (mela_resize_area(dst + ch * HW, H, W, plane, h, w))
            goto done;
    }
    rc = 0;
done:
    free(plane);
    free(pix);
    free(data);
    return rc;
}

/* Decodes one file and appends it, resized, to the current class. */
static int add_image(ds_builder *b, const char *path, unsigned flags)
{
    mela_dataset *ds = b->ds;
    uint8_t *dst = dsb_image(b, 0);
    int h, w, colour;
    if (!dst)
        return mela_set_error("folder: %s: out of memory", path);
    if (load_u8(path, ds->C, ds->H, ds->W, flags, dst) || mela_image_info(path, &h, &w, &colour))
        return -1;
    ds->nresized += h != ds->H || w != ds->W; /* so that callers can say what changed */
    ds->ncolour += colour && ds->C == 1;
    return 0;
}

int mela_image_load(const char *path, int C, int H, int W, unsigned flags, float *out)
{
    if ((C != 1 && C != 3) || H < 1 || W < 1 || H > 4096 || W > 4096)
        return mela_set_error("image %s: bad target %dx%dx%d", path, C, H, W);
    size_t n = (size_t)C * H * W;
    uint8_t *u = malloc(n);
    if (!u)
        return mela_set_error("image %s: out of memory", path);
    int rc = load_u8(path, C, H, W, flags, u);
    for (size_t i = 0; rc == 0 && i < n; i++)
        out[i] = u[i] * (1.0f / 255.0f);
    free(u);
    return rc;
}

int mela_image_info(const char *path, int *h, int *w, int *colour)
{
    uint8_t *data = NULL, *pix = NULL;
    size_t size = 0;
    char what[4200];
    snprintf(what, sizeof what, "image %s", path);
    if (read_image(path, "image", &data, &size))
        return -1;
    int rc = mela_image_decode(data, size, what, 3, &pix, h, w);
    if (rc == 0) {
        *colour = 0;
        for (size_t p = 0; p < (size_t)*h * *w && !*colour; p++)
            *colour = pix[3 * p] != pix[3 * p + 1] || pix[3 * p] != pix[3 * p + 2];
    }
    free(pix);
    free(data);
    return rc;
}

mela_dataset *mela_folder_load(const char *root, int H, int W, unsigned flags)
{
    if (!root)
        root = ".";
    if (H < 1 || W < 1 || H > 4096 || W > 4096) {
        mela_set_error("folder: %s: image size %dx%d outside 1..4096", root, H, W);
        return NULL;
    }
    char **classes = NULL, **files = NULL;
    int ncls = 0, nfiles = 0;
    ds_builder b = {0};
    char *cdir = NULL, *fpath = NULL;
    if (list_dir(root, &classes, &ncls))
        return NULL;
    if (dsb_init(&b, (flags & MELA_FOLDER_RGB) ? 3 : 1, H, W) || dsb_group(&b, "") < 0) {
        mela_set_error("folder: %s: out of memory", root);
        goto fail;
    }
    for (int c = 0; c < ncls; c++) {
        cdir = join(root, classes[c]);
        if (!cdir) {
            mela_set_error("folder: %s: out of memory", root);
            goto fail;
        }
        int dir = is_dir(root, classes[c], cdir);
        if (dir < 0)
            goto fail;
        if (!dir) { /* a file directly in root: not a class */
            free(cdir);
            cdir = NULL;
            continue;
        }
        if (list_dir(cdir, &files, &nfiles))
            goto fail;
        if (nfiles == 0) {
            mela_set_error("folder: class %s (%s): empty, no images", classes[c], cdir);
            goto fail;
        }
        if (dsb_class(&b, classes[c], 0, -1, 0) < 0) {
            mela_set_error("folder: %s: out of memory", root);
            goto fail;
        }
        for (int f = 0; f < nfiles; f++) {
            fpath = join(cdir, files[f]);
            if (!fpath) {
                mela_set_error("folder: %s: out of memory", root);
                goto fail;
            }
            if (!ends_with_ci(files[f], ".png") && !ends_with_ci(files[f], ".jpg") &&
                !ends_with_ci(files[f], ".jpeg")) {
                mela_set_error("folder: class %s: %s is not a .png, .jpg or .jpeg file",
                               classes[c], fpath);
                goto fail;
            }
            if (add_image(&b, fpath, flags))
                goto fail;
            free(fpath);
            fpath = NULL;
        }
        mela_sys_free_names(files, nfiles);
        files = NULL;
        nfiles = 0;
        free(cdir);
        cdir = NULL;
    }
    if (b.ds->nclasses == 0) {
        mela_set_error("folder: %s: no class folders (expected %s/<class>/<image>)", root, root);
        goto fail;
    }
    mela_sys_free_names(classes, ncls);
    return dsb_finish(&b);
fail:
    free(fpath);
    free(cdir);
    mela_sys_free_names(files, nfiles);
    mela_sys_free_names(classes, ncls);
    dsb_abort(&b);
    return NULL;
}
