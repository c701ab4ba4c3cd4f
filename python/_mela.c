/*
 * _mela.c - the CPython extension under the Python package mela (see
 * docs/python.md). A client of libmela's public headers only: arrays in
 * and out as NumPy arrays (views where the library's memory lives as long
 * as the array: a dataset's images), the GIL released around every call
 * that computes or reads files, mela's errors raised as mela.Error with
 * mela_last_error()'s message.
 *
 * Objects used by a call with the GIL released (Dataset, Sampler,
 * Predictor) carry a busy flag: a second thread that calls into the same
 * object meanwhile gets an exception instead of a data race.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>

#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "mela.h"
#include "mela_data.h"
#include "mela_io.h"
#include "mela_learn.h"

static PyObject *MelaError;

/* Raises mela.Error with the library's message; returns NULL. */
static PyObject *mela_raise(void)
{
    const char *m = mela_last_error();
    PyErr_SetString(MelaError, m && m[0] ? m : "mela: failed (no message)");
    return NULL;
}

static int take(int *busy, const char *what)
{
    if (*busy) {
        PyErr_Format(PyExc_RuntimeError, "mela: this %s is in use by another thread", what);
        return -1;
    }
    *busy = 1;
    return 0;
}

/* A C-contiguous float32 array of obj (a view when it already is one). */
static PyArrayObject *as_f32(PyObject *obj, const char *name)
{
    PyArrayObject *a = (PyArrayObject *)PyArray_FROM_OTF(obj, NPY_FLOAT32,
                                                         NPY_ARRAY_IN_ARRAY | NPY_ARRAY_FORCECAST);
    if (!a)
        PyErr_Format(PyExc_TypeError, "mela: %s must be an array of numbers", name);
    return a;
}

/* -------------------------------------------------------------- safetensors */

static PyObject *py_read_safetensors(PyObject *self, PyObject *args)
{
    const char *path;
    if (!PyArg_ParseTuple(args, "s", &path))
        return NULL;
    mela_checkpoint *ck;
    Py_BEGIN_ALLOW_THREADS
    ck = mela_checkpoint_open(path);
    Py_END_ALLOW_THREADS
    if (!ck)
        return mela_raise();
    PyObject *tensors = PyDict_New(), *meta = PyDict_New(), *out = NULL;
    if (!tensors || !meta)
        goto done;
    for (int i = 0; i < mela_checkpoint_count(ck); i++) {
        mela_shape s = mela_checkpoint_shape(ck, i);
        npy_intp dims[MELA_MAX_DIMS];
        for (int d = 0; d < s.nd; d++)
            dims[d] = s.d[d];
        PyObject *a = PyArray_SimpleNew(s.nd, dims, NPY_FLOAT32);
        if (!a)
            goto done;
        mela_checkpoint_tensor(ck, i, PyArray_DATA((PyArrayObject *)a)); /* straight into the array */
        int bad = PyDict_SetItemString(tensors, mela_checkpoint_name(ck, i), a);
        Py_DECREF(a);
        if (bad)
            goto done;
    }
    for (int i = 0; i < mela_checkpoint_meta_count(ck); i++) {
        PyObject *v = PyUnicode_FromString(mela_checkpoint_meta_value(ck, i));
        if (!v || PyDict_SetItemString(meta, mela_checkpoint_meta_key(ck, i), v)) {
            Py_XDECREF(v);
            goto done;
        }
        Py_DECREF(v);
    }
    out = Py_BuildValue("(OO)", tensors, meta);
done:
    Py_XDECREF(tensors);
    Py_XDECREF(meta);
    mela_checkpoint_close(ck);
    return out;
}

static PyObject *py_write_safetensors(PyObject *self, PyObject *args)
{
    const char *path;
    PyObject *tensors, *meta;
    if (!PyArg_ParseTuple(args, "sO!O!", &path, &PyDict_Type, &tensors, &PyDict_Type, &meta))
        return NULL;
    Py_ssize_t n = PyDict_Size(tensors), nm = PyDict_Size(meta), pos = 0;
    PyArrayObject **arr = calloc(n ? n : 1, sizeof *arr);
    const char **keys = calloc(nm ? nm : 1, sizeof *keys), **vals = calloc(nm ? nm : 1, sizeof *vals);
    mela_layout *L = mela_layout_new();
    float *theta = NULL;
    PyObject *k, *v, *out = NULL;
    int i = 0, rc = -1;
    if (!arr || !keys || !vals || !L) {
        PyErr_NoMemory();
        goto done;
    }
    while (PyDict_Next(tensors, &pos, &k, &v)) {
        const char *name = PyUnicode_Check(k) ? PyUnicode_AsUTF8(k) : NULL;
        if (!name) {
            PyErr_SetString(PyExc_TypeError, "mela: tensor names must be strings");
            goto done;
        }
        if (!(arr[i] = as_f32(v, name)))
            goto done;
        int nd = PyArray_NDIM(arr[i]), d[MELA_MAX_DIMS];
        if (nd > MELA_MAX_DIMS) {
            PyErr_Format(PyExc_ValueError, "mela: tensor '%s' has %d dimensions (at most %d)", name, nd,
                         MELA_MAX_DIMS);
            goto done;
        }
        for (int j = 0; j < nd; j++)
            d[j] = (int)PyArray_DIM(arr[i], j);
        if (nd == 0)
            nd = 1, d[0] = 1; /* a scalar is shape (1), as everywhere in mela */
        if (mela_layout_add(L, name, mela_shape_make(nd, d)) < 0) {
            PyErr_Format(PyExc_ValueError, "mela: tensor '%s': a duplicate name or a shape mela cannot "
                                           "hold", name);
            goto done;
        }
        i++;
    }
    pos = 0, i = 0;
    while (PyDict_Next(meta, &pos, &k, &v)) {
        if (!PyUnicode_Check(k) || !PyUnicode_Check(v)) {
            PyErr_SetString(PyExc_TypeError, "mela: metadata keys and values must be strings");
            goto done;
        }
        keys[i] = PyUnicode_AsUTF8(k), vals[i] = PyUnicode_AsUTF8(v);
        if (!keys[i] || !vals[i])
            goto done;
        i++;
    }
    if (!(theta = calloc(mela_layout_size(L) ? mela_layout_size(L) : 1, sizeof *theta))) {
        PyErr_NoMemory();
        goto done;
    }
    for (int j = 0; j < n; j++)
        memcpy(theta + mela_layout_offset(L, j), PyArray_DATA(arr[j]), PyArray_NBYTES(arr[j]));
    Py_BEGIN_ALLOW_THREADS
    rc = mela_checkpoint_save(path, L, theta, (int)nm, keys, vals);
    Py_END_ALLOW_THREADS
    if (rc)
        mela_raise();
    else
        out = Py_NewRef(Py_None);
done:
    for (int j = 0; arr && j < n; j++)
        Py_XDECREF(arr[j]);
    free(arr), free(keys), free(vals), free(theta);
    mela_layout_free(L);
    return out;
}

/* ------------------------------------------------------------------ images */

static PyObject *py_load_image(PyObject *self, PyObject *args)
{
    const char *path;
    int C, H, W, invert, nearest;
    if (!PyArg_ParseTuple(args, "siiipp", &path, &C, &H, &W, &invert, &nearest))
        return NULL;
    if ((C != 1 && C != 3) || H < 1 || W < 1 || H > 4096 || W > 4096) {
        PyErr_SetString(PyExc_ValueError, "mela: load_image needs 1 or 3 channels and sizes 1..4096");
        return NULL;
    }
    npy_intp dims[3] = {C, H, W};
    PyObject *a = PyArray_SimpleNew(3, dims, NPY_FLOAT32);
    if (!a)
        return NULL;
    int rc;
    float *out = PyArray_DATA((PyArrayObject *)a);
    Py_BEGIN_ALLOW_THREADS
    unsigned flags = (invert ? MELA_FOLDER_INVERT : 0) | (nearest ? MELA_FOLDER_NEAREST : 0);
    rc = mela_image_load(path, C, H, W, flags, out);
    Py_END_ALLOW_THREADS
    if (rc) {
        Py_DECREF(a);
        return mela_raise();
    }
    return a;
}

/* ----------------------------------------------------------------- datasets */

typedef struct {
    PyObject_HEAD
    mela_dataset *ds;
    char *dir; /* Omniglot: where its split files are; NULL for folders */
} DatasetObject;

static void Dataset_dealloc(DatasetObject *o)
{
    mela_dataset_free(o->ds);
    free(o->dir);
    Py_TYPE(o)->tp_free((PyObject *)o);
}

static PyTypeObject DatasetType;

static PyObject *dataset_wrap(mela_dataset *ds, const char *dir)
{
    if (!ds)
        return mela_raise();
    DatasetObject *o = PyObject_New(DatasetObject, &DatasetType);
    if (!o) {
        mela_dataset_free(ds);
        return NULL;
    }
    o->ds = ds;
    o->dir = dir ? strdup(dir) : NULL;
    return (PyObject *)o;
}

static PyObject *py_omniglot(PyObject *self, PyObject *args)
{
    const char *dir, *cache = NULL;
    int size, no_cache, sets, nearest;
    if (!PyArg_ParseTuple(args, "sizpip", &dir, &size, &cache, &no_cache, &sets, &nearest))
        return NULL;
    mela_omniglot_opts o = {.H = size, .W = size, .sets = (unsigned)sets, .cache_dir = cache,
                            .no_cache = no_cache, .nearest = nearest};
    mela_dataset *ds;
    Py_BEGIN_ALLOW_THREADS
    ds = mela_omniglot_load(dir, &o);
    Py_END_ALLOW_THREADS
    return dataset_wrap(ds, dir);
}

static PyObject *py_folder(PyObject *self, PyObject *args)
{
    const char *root;
    int H, W, rgb, invert, nearest;
    if (!PyArg_ParseTuple(args, "siippp", &root, &H, &W, &rgb, &invert, &nearest))
        return NULL;
    mela_dataset *ds;
    unsigned flags = (rgb ? MELA_FOLDER_RGB : 0) | (invert ? MELA_FOLDER_INVERT : 0) |
                     (nearest ? MELA_FOLDER_NEAREST : 0);
    Py_BEGIN_ALLOW_THREADS
    ds = mela_folder_load(root, H, W, flags);
    Py_END_ALLOW_THREADS
    return dataset_wrap(ds, NULL);
}

/* Every image as a read-only uint8 view (nimages, C, H, W) of the
 * dataset's own memory; the array keeps the dataset alive. */
static PyObject *Dataset_images(DatasetObject *o, void *unused)
{
    const mela_dataset *ds = o->ds;
    npy_intp dims[4] = {ds->nimages, ds->C, ds->H, ds->W};
    PyObject *a = PyArray_New(&PyArray_Type, 4, dims, NPY_UINT8, NULL, ds->pixels, 0, 0, NULL);
    if (!a)
        return NULL;
    Py_INCREF(o);
    if (PyArray_SetBaseObject((PyArrayObject *)a, (PyObject *)o)) {
        Py_DECREF(a);
        return NULL;
    }
    PyArray_CLEARFLAGS((PyArrayObject *)a, NPY_ARRAY_WRITEABLE);
    return a;
}

/* [(group, name, first, count), ...] in dataset order. */
static PyObject *Dataset_classes(DatasetObject *o, void *unused)
{
    const mela_dataset *ds = o->ds;
    PyObject *l = PyList_New(ds->nclasses);
    for (int c = 0; l && c < ds->nclasses; c++) {
        const mela_class *k = &ds->classes[c];
        const char *g = k->group >= 0 && k->group < ds->ngroups ? ds->groups[k->group] : "";
        PyObject *t = Py_BuildValue("(ssii)", g, k->name, k->first, k->count);
        if (!t) {
            Py_DECREF(l);
            return NULL;
        }
        PyList_SET_ITEM(l, c, t);
    }
    return l;
}

static PyObject *Dataset_shape(DatasetObject *o, void *unused)
{
    return Py_BuildValue("(iii)", o->ds->C, o->ds->H, o->ds->W);
}

static PyObject *Dataset_split(DatasetObject *d, PyObject *args);

static PyMethodDef Dataset_methods[] = {
    {"split", (PyCFunction)Dataset_split, METH_VARARGS,
     "split(name) -> Split: vinyals/{train,val,test,trainval}, finn/{train,val,test,trainval},\n"
     "lake/{train,test,koch_val,koch_test}, or any other name: every class of the dataset"},
    {NULL},
};

static PyGetSetDef Dataset_getset[] = {
    {"images", (getter)Dataset_images, NULL, "every image, uint8 (nimages, C, H, W), a read-only view", NULL},
    {"classes", (getter)Dataset_classes, NULL, "[(group, name, first image, count), ...]", NULL},
    {"shape", (getter)Dataset_shape, NULL, "(C, H, W) of every image", NULL},
    {NULL},
};

static PyTypeObject DatasetType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "mela._mela.Dataset",
    .tp_basicsize = sizeof(DatasetObject),
    .tp_dealloc = (destructor)Dataset_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A dataset loaded by mela (mela.omniglot, mela.folder).",
    .tp_getset = Dataset_getset,
    .tp_methods = Dataset_methods,
};

/* ------------------------------------------------------------------- splits */

typedef struct {
    PyObject_HEAD
    DatasetObject *ds;
    mela_split *sp;
} SplitObject;

static void Split_dealloc(SplitObject *o)
{
    mela_split_free(o->sp);
    Py_XDECREF(o->ds);
    Py_TYPE(o)->tp_free((PyObject *)o);
}

static PyTypeObject SplitType;

/* Dataset.split("vinyals/test"): kind/which, or a name alone for every
 * class of the dataset (mela_split_all). */
static PyObject *Dataset_split(DatasetObject *d, PyObject *args)
{
    const char *name;
    if (!PyArg_ParseTuple(args, "s", &name))
        return NULL;
    char kind[32] = "all";
    const char *which = name, *slash = strchr(name, '/');
    if (slash && slash - name < (long)sizeof kind) {
        snprintf(kind, sizeof kind, "%.*s", (int)(slash - name), name);
        which = slash + 1;
    }
    if (!strcmp(kind, "vinyals") && !d->dir) {
        PyErr_Format(PyExc_ValueError, "mela: the %s split is of Omniglot; this dataset is a folder "
                                       "(use 'all')", kind);
        return NULL;
    }
    mela_split *sp;
    if (!strcmp(kind, "vinyals"))
        sp = mela_split_vinyals(d->ds, d->dir, which);
    else if (!strcmp(kind, "finn"))
        sp = mela_split_finn(d->ds, which);
    else if (!strcmp(kind, "lake"))
        sp = mela_split_lake(d->ds, which);
    else if (!strcmp(kind, "all"))
        sp = mela_split_all(d->ds, which, NULL, 0);
    else {
        PyErr_Format(PyExc_ValueError, "mela: split kind '%s' is not one of vinyals, finn, lake, all", kind);
        return NULL;
    }
    if (!sp)
        return mela_raise();
    SplitObject *o = PyObject_New(SplitObject, &SplitType);
    if (!o) {
        mela_split_free(sp);
        return NULL;
    }
    Py_INCREF(d);
    o->ds = d, o->sp = sp;
    return (PyObject *)o;
}

static PyObject *Split_name(SplitObject *o, void *u) { return PyUnicode_FromString(o->sp->name); }
static PyObject *Split_len(SplitObject *o, void *u) { return PyLong_FromLong(o->sp->n); }
static PyObject *Split_dataset(SplitObject *o, void *u) { return Py_NewRef((PyObject *)o->ds); }

/* (n, 2) int32: dataset class and rotation of each split class (a copy). */
static PyObject *Split_classes(SplitObject *o, void *u)
{
    npy_intp dims[2] = {o->sp->n, 2};
    PyObject *a = PyArray_SimpleNew(2, dims, NPY_INT32);
    if (!a)
        return NULL;
    int *p = PyArray_DATA((PyArrayObject *)a);
    for (int i = 0; i < o->sp->n; i++)
        p[2 * i] = o->sp->classes[i].cls, p[2 * i + 1] = o->sp->classes[i].rot;
    return a;
}

static PyGetSetDef Split_getset[] = {
    {"name", (getter)Split_name, NULL, "e.g. 'vinyals/test'", NULL},
    {"n", (getter)Split_len, NULL, "number of classes", NULL},
    {"dataset", (getter)Split_dataset, NULL, "the dataset it is a split of", NULL},
    {"classes", (getter)Split_classes, NULL, "int32 (n, 2): dataset class, quarter turns", NULL},
    {NULL},
};

static PyTypeObject SplitType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "mela._mela.Split",
    .tp_basicsize = sizeof(SplitObject),
    .tp_dealloc = (destructor)Split_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Classes of a dataset (Dataset.split).",
    .tp_getset = Split_getset,
};

/* ----------------------------------------------------------------- samplers */

typedef struct {
    PyObject_HEAD
    SplitObject *split;
    mela_sampler *s;
    int N, K, Q, busy;
} SamplerObject;

static void Sampler_dealloc(SamplerObject *o)
{
    mela_sampler_free(o->s);
    Py_XDECREF(o->split);
    Py_TYPE(o)->tp_free((PyObject *)o);
}

static int Sampler_init(SamplerObject *o, PyObject *args, PyObject *kw)
{
    static char *names[] = {"split", "ways", "shots", "queries", "within_group", "distinct_classes", NULL};
    SplitObject *sp;
    int N, K, Q, within = 0, distinct = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O!iii|pp", names, &SplitType, &sp, &N, &K, &Q, &within,
                                     &distinct))
        return -1;
    if (N < 1 || K < 1 || Q < 0) {
        PyErr_Format(PyExc_ValueError, "mela: ways %d, shots %d, queries %d (ways, shots >= 1, queries >= 0)",
                     N, K, Q);
        return -1;
    }
    unsigned flags = (within ? MELA_EPISODE_WITHIN_GROUP : 0) | (distinct ? MELA_EPISODE_DISTINCT_CLASSES : 0);
    mela_sampler *s = mela_sampler_new(sp->ds->ds, sp->sp, N, K, Q, flags);
    if (!s) {
        mela_raise();
        return -1;
    }
    mela_sampler_free(o->s);
    Py_XDECREF(o->split);
    Py_INCREF(sp);
    o->split = sp, o->s = s, o->N = N, o->K = K, o->Q = Q;
    return 0;
}

enum { E_XS, E_YS, E_XQ, E_YQ, E_LABEL, E_CLASS, E_SIDX, E_QIDX, E_GROUP, E_N };

/* Episodes start .. start+count-1 under seed, each array with a leading
 * episode dimension; the floats and ints are the sampler's, copied once. */
static PyObject *Sampler_draw(SamplerObject *o, PyObject *args)
{
    unsigned long long seed, start;
    Py_ssize_t count;
    if (!PyArg_ParseTuple(args, "KKn", &seed, &start, &count))
        return NULL;
    if (count < 1) {
        PyErr_SetString(PyExc_ValueError, "mela: count must be at least 1");
        return NULL;
    }
    const mela_dataset *ds = o->split->ds->ds;
    int N = o->N, K = o->K, Q = o->Q;
    npy_intp C = ds->C, H = ds->H, W = ds->W, c = count;
    npy_intp dims[E_N][5] = {
        {c, N * K, C, H, W}, {c, N * K}, {c, N * Q, C, H, W}, {c, N * Q}, {c, N}, {c, N}, {c, N * K}, {c, N * Q}, {c}};
    int nd[E_N] = {5, 2, 5, 2, 2, 2, 2, 2, 1};
    const char *names[E_N] = {"x_support", "y_support", "x_query", "y_query", "label", "split_class",
                              "support_index", "query_index", "group"};
    PyObject *arr[E_N] = {0}, *out = NULL;
    void *p[E_N];
    for (int i = 0; i < E_N; i++) {
        arr[i] = PyArray_SimpleNew(nd[i], dims[i], i == E_XS || i == E_XQ ? NPY_FLOAT32 : NPY_INT32);
        if (!arr[i])
            goto done;
        p[i] = PyArray_DATA((PyArrayObject *)arr[i]);
    }
    if (take(&o->busy, "sampler"))
        goto done;
    size_t img = (size_t)C * H * W;
    Py_BEGIN_ALLOW_THREADS
    for (npy_intp e = 0; e < c; e++) {
        const mela_episode *ep = mela_sampler_episode(o->s, seed, start + (uint64_t)e);
        memcpy((float *)p[E_XS] + e * N * K * img, ep->x_support, N * K * img * sizeof(float));
        memcpy((float *)p[E_XQ] + e * N * Q * img, ep->x_query, N * Q * img * sizeof(float));
        memcpy((int *)p[E_YS] + e * N * K, ep->l_support, N * K * sizeof(int));
        memcpy((int *)p[E_YQ] + e * N * Q, ep->l_query, N * Q * sizeof(int));
        memcpy((int *)p[E_LABEL] + e * N, ep->label, N * sizeof(int));
        memcpy((int *)p[E_CLASS] + e * N, ep->split_class, N * sizeof(int));
        memcpy((int *)p[E_SIDX] + e * N * K, ep->support_index, N * K * sizeof(int));
        memcpy((int *)p[E_QIDX] + e * N * Q, ep->query_index, N * Q * sizeof(int));
        ((int *)p[E_GROUP])[e] = ep->group;
    }
    Py_END_ALLOW_THREADS
    o->busy = 0;
    if (!(out = PyDict_New()))
        goto done;
    for (int i = 0; i < E_N; i++)
        if (PyDict_SetItemString(out, names[i], arr[i])) {
            Py_CLEAR(out);
            break;
        }
done:
    for (int i = 0; i < E_N; i++)
        Py_XDECREF(arr[i]);
    return out;
}

static PyMethodDef Sampler_methods[] = {
    {"draw", (PyCFunction)Sampler_draw, METH_VARARGS,
     "draw(seed, start, count) -> dict of arrays: episodes start..start+count-1"},
    {NULL},
};

static PyTypeObject SamplerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "mela._mela.Sampler",
    .tp_basicsize = sizeof(SamplerObject),
    .tp_dealloc = (destructor)Sampler_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Sampler(split, ways, shots, queries, within_group=False, distinct_classes=False): N-way "
              "K-shot episodes (within_group: one alphabet each; distinct_classes: no character twice, "
              "as Finn et al.'s tasks).",
    .tp_init = (initproc)Sampler_init,
    .tp_new = PyType_GenericNew,
    .tp_methods = Sampler_methods,
};

static PyObject *py_sinusoid(PyObject *self, PyObject *args)
{
    unsigned long long seed, start;
    Py_ssize_t count;
    int K, Q;
    if (!PyArg_ParseTuple(args, "KKnii", &seed, &start, &count, &K, &Q))
        return NULL;
    if (count < 1 || K < 1 || Q < 1) {
        PyErr_SetString(PyExc_ValueError, "mela: count, K and Q must be at least 1");
        return NULL;
    }
    npy_intp ds[3] = {count, K, 1}, dq[3] = {count, Q, 1}, d1[1] = {count};
    PyObject *a[6] = {PyArray_SimpleNew(3, ds, NPY_FLOAT32), PyArray_SimpleNew(3, ds, NPY_FLOAT32),
                      PyArray_SimpleNew(3, dq, NPY_FLOAT32), PyArray_SimpleNew(3, dq, NPY_FLOAT32),
                      PyArray_SimpleNew(1, d1, NPY_FLOAT32), PyArray_SimpleNew(1, d1, NPY_FLOAT32)};
    PyObject *out = NULL;
    for (int i = 0; i < 6; i++)
        if (!a[i])
            goto done;
    float *p[6];
    for (int i = 0; i < 6; i++)
        p[i] = PyArray_DATA((PyArrayObject *)a[i]);
    for (Py_ssize_t e = 0; e < count; e++)
        mela_sinusoid_task(seed, start + e, K, Q, p[0] + e * K, p[1] + e * K, p[2] + e * Q, p[3] + e * Q,
                           p[4] + e, p[5] + e);
    out = Py_BuildValue("{sOsOsOsOsOsO}", "x_support", a[0], "y_support", a[1], "x_query", a[2], "y_query",
                        a[3], "amplitude", a[4], "phase", a[5]);
done:
    for (int i = 0; i < 6; i++)
        Py_XDECREF(a[i]);
    return out;
}

/* ------------------------------------------------------------ configuration */

/* {key: value as text} of a run configuration, in the options' order. */
static PyObject *config_dict(const mela_run_config *rc)
{
    PyObject *d = PyDict_New();
    char buf[600];
    const char *help, *k;
    for (int i = 0; d && (k = mela_run_option(i, rc, buf, sizeof buf, &help)); i++) {
        PyObject *v = PyUnicode_FromString(buf);
        if (!v || PyDict_SetItemString(d, k, v))
            Py_CLEAR(d);
        Py_XDECREF(v);
    }
    return d;
}

static PyObject *py_options(PyObject *self, PyObject *args)
{
    const char *learner, *dataset;
    int ways;
    if (!PyArg_ParseTuple(args, "ssi", &learner, &dataset, &ways))
        return NULL;
    mela_run_config rc;
    if (mela_run_defaults(&rc, learner, dataset, ways))
        return mela_raise();
    PyObject *l = PyList_New(0);
    char buf[600];
    const char *help, *k;
    for (int i = 0; l && (k = mela_run_option(i, &rc, buf, sizeof buf, &help)); i++) {
        PyObject *t = Py_BuildValue("(sss)", k, buf, help);
        if (!t || PyList_Append(l, t))
            Py_CLEAR(l);
        Py_XDECREF(t);
    }
    return l;
}

/* A list of str "key=value" as C strings (borrowed from the list's items,
 * which the caller keeps alive). */
static const char **str_list(PyObject *list, int *n)
{
    if (!PyList_Check(list)) {
        PyErr_SetString(PyExc_TypeError, "mela: overrides must be a list of 'key=value' strings");
        return NULL;
    }
    *n = (int)PyList_GET_SIZE(list);
    const char **s = calloc(*n ? *n : 1, sizeof *s);
    if (!s) {
        PyErr_NoMemory();
        return NULL;
    }
    for (int i = 0; i < *n; i++)
        if (!(s[i] = PyUnicode_Check(PyList_GET_ITEM(list, i)) ? PyUnicode_AsUTF8(PyList_GET_ITEM(list, i))
                                                               : NULL)) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "mela: overrides must be strings");
            free(s);
            return NULL;
        }
    return s;
}

/* --------------------------------------------------------------- predictors */

typedef struct {
    PyObject_HEAD
    mela_predictor *p;
    int busy;
} PredictorObject;

static void Predictor_dealloc(PredictorObject *o)
{
    mela_predictor_close(o->p);
    Py_TYPE(o)->tp_free((PyObject *)o);
}

static int Predictor_init(PredictorObject *o, PyObject *args, PyObject *kw)
{
    static char *names[] = {"checkpoint", "overrides", NULL};
    const char *path;
    PyObject *over = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "s|O!", names, &path, &PyList_Type, &over))
        return -1;
    int n = 0;
    const char **ov = over ? str_list(over, &n) : NULL;
    if (over && !ov)
        return -1;
    mela_predictor *p;
    Py_BEGIN_ALLOW_THREADS
    p = mela_predictor_open(path, n, ov);
    Py_END_ALLOW_THREADS
    free(ov);
    if (!p) {
        mela_raise();
        return -1;
    }
    mela_predictor_close(o->p);
    o->p = p;
    return 0;
}

static PyObject *Predictor_config(PredictorObject *o, void *u)
{
    if (!o->p)
        return PyErr_Format(PyExc_RuntimeError, "mela: Predictor not initialised");
    return config_dict(mela_predictor_config(o->p));
}

/* adapt(xs, ys, xq, steps=-1) -> out: (nq, N) probabilities or (nq, 1)
 * predictions. xs: ns examples; ys: ns labels (or y values); xq: nq examples. */
static PyObject *Predictor_adapt(PredictorObject *o, PyObject *args, PyObject *kw)
{
    static char *names[] = {"xs", "ys", "xq", "steps", NULL};
    PyObject *oxs, *oys, *oxq, *out = NULL;
    int steps = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOO|i", names, &oxs, &oys, &oxq, &steps))
        return NULL;
    if (!o->p)
        return PyErr_Format(PyExc_RuntimeError, "mela: Predictor not initialised");
    const mela_run_config *rc = mela_predictor_config(o->p);
    int reg = mela_run_regression(rc);
    npy_intp img = reg ? 1 : (npy_intp)rc->image_size * rc->image_size;
    PyArrayObject *xs = as_f32(oxs, "xs"), *ys = xs ? as_f32(oys, "ys") : NULL, *xq = ys ? as_f32(oxq, "xq") : NULL;
    if (!xq)
        goto done;
    npy_intp ns = PyArray_SIZE(ys), nq = PyArray_SIZE(xq) / img;
    if (PyArray_SIZE(xs) != ns * img || PyArray_SIZE(xq) != nq * img || ns < 1 || nq < 1 || ns > INT32_MAX ||
        nq > INT32_MAX) {
        PyErr_Format(PyExc_ValueError,
                     "mela: %zd support labels need %zd support values (each example %zd floats%s), got "
                     "%zd; the queries need a multiple of %zd values, got %zd",
                     (Py_ssize_t)ns, (Py_ssize_t)(ns * img), (Py_ssize_t)img,
                     reg ? "" : ", 1 x image_size x image_size", (Py_ssize_t)PyArray_SIZE(xs), (Py_ssize_t)img,
                     (Py_ssize_t)PyArray_SIZE(xq));
        goto done;
    }
    npy_intp ways = 1;
    if (!reg) {
        const float *y = PyArray_DATA(ys);
        float m = 0;
        for (npy_intp i = 0; i < ns; i++)
            if (y[i] > m && y[i] <= 1000)
                m = y[i];
        ways = (npy_intp)m + 1;
    }
    npy_intp dims[2] = {nq, ways};
    out = PyArray_SimpleNew(2, dims, NPY_FLOAT32);
    if (!out || take(&o->busy, "predictor")) {
        Py_CLEAR(out);
        goto done;
    }
    int rcode;
    const float *pxs = PyArray_DATA(xs), *pys = PyArray_DATA(ys), *pxq = PyArray_DATA(xq);
    float *pout = PyArray_DATA((PyArrayObject *)out);
    Py_BEGIN_ALLOW_THREADS
    rcode = mela_predictor_adapt(o->p, (int)ns, pxs, pys, (int)nq, pxq, steps, pout);
    Py_END_ALLOW_THREADS
    o->busy = 0;
    if (rcode) {
        Py_CLEAR(out);
        mela_raise();
    }
done:
    Py_XDECREF(xs);
    Py_XDECREF(ys);
    Py_XDECREF(xq);
    return out;
}

/* compare(a, b) -> p(same class) of two examples (Siamese checkpoints). */
static PyObject *Predictor_compare(PredictorObject *o, PyObject *args)
{
    PyObject *oa, *ob, *out = NULL;
    if (!PyArg_ParseTuple(args, "OO", &oa, &ob))
        return NULL;
    if (!o->p)
        return PyErr_Format(PyExc_RuntimeError, "mela: Predictor not initialised");
    const mela_run_config *rc = mela_predictor_config(o->p);
    npy_intp img = (npy_intp)rc->image_size * rc->image_size;
    PyArrayObject *a = as_f32(oa, "a"), *b = a ? as_f32(ob, "b") : NULL;
    if (!b)
        goto done;
    if (PyArray_SIZE(a) != img || PyArray_SIZE(b) != img) {
        PyErr_Format(PyExc_ValueError, "mela: compare takes two images of %zd floats (1 x %d x %d), got %zd "
                     "and %zd", (Py_ssize_t)img, rc->image_size, rc->image_size, (Py_ssize_t)PyArray_SIZE(a),
                     (Py_ssize_t)PyArray_SIZE(b));
        goto done;
    }
    if (take(&o->busy, "predictor"))
        goto done;
    double p;
    int rcode;
    const float *pa = PyArray_DATA(a), *pb = PyArray_DATA(b);
    Py_BEGIN_ALLOW_THREADS
    rcode = mela_predictor_compare(o->p, pa, pb, &p);
    Py_END_ALLOW_THREADS
    o->busy = 0;
    out = rcode ? mela_raise() : PyFloat_FromDouble(p);
done:
    Py_XDECREF(a);
    Py_XDECREF(b);
    return out;
}

static PyMethodDef Predictor_methods[] = {
    {"compare", (PyCFunction)Predictor_compare, METH_VARARGS,
     "compare(a, b) -> p(same class) of two images (Siamese checkpoints)"},
    {"adapt", (PyCFunction)(void (*)(void))Predictor_adapt, METH_VARARGS | METH_KEYWORDS,
     "adapt(xs, ys, xq, steps=-1) -> (nq, N) probabilities, or (nq, 1) predictions (regression)"},
    {NULL},
};

static PyGetSetDef Predictor_getset[] = {
    {"config", (getter)Predictor_config, NULL, "the checkpoint's run configuration {key: text}", NULL},
    {NULL},
};

static PyTypeObject PredictorType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "mela._mela.Predictor",
    .tp_basicsize = sizeof(PredictorObject),
    .tp_dealloc = (destructor)Predictor_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Predictor(checkpoint, overrides=[]): a checkpoint that adapts to arrays.",
    .tp_init = (initproc)Predictor_init,
    .tp_new = PyType_GenericNew,
    .tp_methods = Predictor_methods,
    .tp_getset = Predictor_getset,
};

/* ------------------------------------------------------------------- training */

typedef struct {
    PyObject *fn;                /* the progress callable or None */
    volatile sig_atomic_t stop;  /* set when the callable raised or asked to stop */
    PyObject *exc[3];            /* the exception it raised (PyErr_Fetch), or NULLs */
} train_ctx;

static PyObject *progress_dict(const mela_progress *p)
{
    return Py_BuildValue("{sisisdsdsdsdsdsisdsdsdsOsOsdsdsdsd}", "iteration", p->iteration, "iterations",
                         p->iterations, "loss", p->loss, "acc", p->acc, "val_loss", p->val_loss, "val_acc",
                         p->val_acc, "best_val", p->best_val, "best_iteration", p->best_iteration,
                         "seconds", p->seconds, "eta", p->eta, "tasks_per_second", p->tasks_per_second,
                         "validated", p->validated ? Py_True : Py_False, "stopped_early",
                         p->stopped_early ? Py_True : Py_False, "data_s", p->data_s, "grad_s", p->grad_s,
                         "update_s", p->update_s, "validate_s", p->validate_s);
}

/* Called by mela_run_fit without the GIL: takes it, calls the callable;
 * an exception it raises, a False it returns or a pending Ctrl-C stops
 * the run (its state saved) and is raised when fit returns. */
static void on_progress(const mela_progress *p, void *vctx)
{
    train_ctx *t = vctx;
    if (t->stop)
        return;
    PyGILState_STATE g = PyGILState_Ensure();
    if (PyErr_CheckSignals() == 0 && t->fn != Py_None) {
        PyObject *d = progress_dict(p), *r = d ? PyObject_CallOneArg(t->fn, d) : NULL;
        if (r == Py_False)
            t->stop = 1;
        Py_XDECREF(r);
        Py_XDECREF(d);
    }
    if (PyErr_Occurred()) {
        t->stop = 1;
        PyErr_Fetch(&t->exc[0], &t->exc[1], &t->exc[2]);
    }
    PyGILState_Release(g);
}

/* train(learner, dataset, ways, [(key, value)], report, progress, overwrite,
 * resume) -> {"status", "iteration", "config"} */
static PyObject *py_train(PyObject *self, PyObject *args)
{
    const char *learner, *dataset, *resume;
    int ways, report, overwrite;
    PyObject *opts, *fn;
    if (!PyArg_ParseTuple(args, "ssiO!iOpz", &learner, &dataset, &ways, &PyList_Type, &opts, &report, &fn,
                          &overwrite, &resume))
        return NULL;
    if (fn != Py_None && !PyCallable_Check(fn))
        return PyErr_Format(PyExc_TypeError, "mela: progress must be callable or None");
    int n = 0;
    const char **kv = str_list(opts, &n);
    if (!kv)
        return NULL;
    mela_run *r = NULL;
    mela_run_config rc;
    if (resume) {
        Py_BEGIN_ALLOW_THREADS
        r = mela_run_resume(resume, n, kv, NULL);
        Py_END_ALLOW_THREADS
    } else if (mela_run_defaults(&rc, learner, dataset, ways) == 0) {
        int bad = 0;
        for (int i = 0; i < n && !bad; i++) {
            char key[64];
            const char *eq = strchr(kv[i], '=');
            if (!eq || eq - kv[i] >= (long)sizeof key)
                bad = mela_set_error("option '%s' is not key=value", kv[i]);
            else {
                snprintf(key, sizeof key, "%.*s", (int)(eq - kv[i]), kv[i]);
                bad = mela_run_set(&rc, key, eq + 1);
            }
        }
        if (!bad && !mela_run_check(&rc)) {
            if (rc.out_dir[0] && mela_run_saved(rc.out_dir) && !overwrite)
                mela_set_error("%s already holds a run: continue it with resume='%s', or replace it with "
                               "overwrite=True", rc.out_dir, rc.out_dir);
            else if (!(rc.out_dir[0] && mela_run_saved(rc.out_dir) && mela_run_remove(rc.out_dir))) {
                Py_BEGIN_ALLOW_THREADS
                r = mela_run_open(&rc, NULL);
                Py_END_ALLOW_THREADS
            }
        }
    }
    free(kv);
    if (!r)
        return mela_raise();
    train_ctx t = {.fn = fn};
    mela_run_set_stop(r, &t.stop);
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = mela_run_fit(r, report, on_progress, &t);
    Py_END_ALLOW_THREADS
    PyObject *out = NULL;
    if (status < 0)
        mela_raise();
    else
        out = Py_BuildValue("{sssisN}", "status", status == 0 ? "complete" : "stopped", "iteration",
                            mela_run_iteration(r), "config", config_dict(mela_run_config_of(r)));
    mela_run_close(r);
    if (t.exc[0]) { /* the callable's exception wins: the run is saved and closed */
        Py_XDECREF(out);
        PyErr_Clear();
        PyErr_Restore(t.exc[0], t.exc[1], t.exc[2]);
        return NULL;
    }
    return out;
}

static PyObject *py_evaluate(PyObject *self, PyObject *args)
{
    const char *path;
    PyObject *over;
    int episodes, steps;
    if (!PyArg_ParseTuple(args, "sO!ii", &path, &PyList_Type, &over, &episodes, &steps))
        return NULL;
    int n;
    const char **ov = str_list(over, &n);
    if (!ov)
        return NULL;
    mela_eval_result res;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = mela_run_eval(path, n, ov, episodes, steps, &res);
    Py_END_ALLOW_THREADS
    free(ov);
    if (rc)
        return mela_raise();
    return Py_BuildValue("{sisOsisisisdsdsdsd}", "episodes", res.episodes, "regression",
                         res.regression ? Py_True : Py_False, "ways", res.ways, "shots", res.shots, "steps",
                         res.steps, "acc", res.acc, "acc_ci", res.acc_ci, "loss", res.loss, "loss_ci",
                         res.loss_ci);
}

/* ------------------------------------------------------------------- module */

static PyObject *py_version(PyObject *self, PyObject *args) { return PyUnicode_FromString(mela_version()); }

static PyMethodDef module_methods[] = {
    {"version", py_version, METH_NOARGS, "libmela's version"},
    {"read_safetensors", py_read_safetensors, METH_VARARGS, "read_safetensors(path) -> (tensors, metadata)"},
    {"write_safetensors", py_write_safetensors, METH_VARARGS, "write_safetensors(path, tensors, metadata)"},
    {"load_image", py_load_image, METH_VARARGS, "load_image(path, C, H, W, invert, nearest) -> float32 (C, H, W)"},
    {"omniglot", py_omniglot, METH_VARARGS, "omniglot(dir, size, cache_dir, no_cache, sets, nearest) -> Dataset"},
    {"folder", py_folder, METH_VARARGS, "folder(root, H, W, rgb, invert, nearest) -> Dataset"},
    {"sinusoid", py_sinusoid, METH_VARARGS, "sinusoid(seed, start, count, K, Q) -> dict of arrays"},
    {"options", py_options, METH_VARARGS, "options(learner, dataset, ways) -> [(key, default, help)]"},
    {"train", py_train, METH_VARARGS, "train(learner, dataset, ways, opts, report, progress, overwrite, resume)"},
    {"evaluate", py_evaluate, METH_VARARGS, "evaluate(checkpoint, overrides, episodes, steps) -> dict"},
    {NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "mela._mela",
    .m_doc = "libmela's C API for Python (use the package mela).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__mela(void)
{
    import_array();
    PyTypeObject *types[] = {&DatasetType, &SplitType, &SamplerType, &PredictorType};
    for (int i = 0; i < 4; i++)
        if (PyType_Ready(types[i]) < 0)
            return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m)
        return NULL;
    MelaError = PyErr_NewExceptionWithDoc("mela.Error", "A failure reported by libmela, with its message.",
                                          PyExc_RuntimeError, NULL);
    if (!MelaError || PyModule_AddObjectRef(m, "Error", MelaError) < 0 ||
        PyModule_AddObjectRef(m, "Dataset", (PyObject *)&DatasetType) < 0 ||
        PyModule_AddObjectRef(m, "Split", (PyObject *)&SplitType) < 0 ||
        PyModule_AddObjectRef(m, "Sampler", (PyObject *)&SamplerType) < 0 ||
        PyModule_AddObjectRef(m, "Predictor", (PyObject *)&PredictorType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
