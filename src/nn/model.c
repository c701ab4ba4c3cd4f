/*
 * model.c - the MLP, Conv-4 and Finn et al.'s Omniglot networks as functions
 * of their weights.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mela_nn.h"
#include "nn/model_impl.h"

enum { MODEL_MLP, MODEL_CONV4, MODEL_FINN, MODEL_CUSTOM };

struct mela_model {
    int kind;
    mela_layout *L;
    int nin, nout, features;
    int hidden[16], nhidden;          /* mlp */
    int channels, size, width, depth, maxpool; /* conv4, finn */
    int init;                                  /* MELA_INIT_* */
    mela_model_def def;                        /* custom */
    char desc[160];
};

void mela_model_free(mela_model *m)
{
    if (!m)
        return;
    if (m->kind == MODEL_CUSTOM && m->def.ctx_free)
        m->def.ctx_free(m->def.ctx);
    mela_layout_free(m->L);
    free(m);
}

const mela_layout *mela_model_layout(const mela_model *m) { return m->L; }
const mela_model_def *model_def_of(const mela_model *m) { return m->kind == MODEL_CUSTOM ? &m->def : NULL; }
size_t mela_model_size(const mela_model *m) { return mela_layout_size(m->L); }
int mela_model_features(const mela_model *m) { return m->features; }
const char *mela_model_describe(const mela_model *m) { return m->desc; }

static int add(mela_layout *L, const char *fmt, int k, const char *what, mela_shape s)
{
    char name[64];
    snprintf(name, sizeof name, fmt, k, what);
    return mela_layout_add(L, name, s);
}

mela_model *mela_model_new(const mela_model_def *def)
{
    if (!def->layout || !def->body || def->input.nd < 1 || def->input.nd > 3 || def->outputs < 0 ||
        def->head_first < 0 || def->head_first > mela_layout_count(def->layout) ||
        (def->outputs > 0 && !def->head) ||
        mela_layout_count(def->layout) > MELA_MODEL_MAX_PARAMS) {
        mela_set_error("model: incomplete definition '%s' (layout, input shape, body, head, head_first)",
                       def->name ? def->name : "");
        mela_layout_free(def->layout);
        if (def->ctx_free)
            def->ctx_free(def->ctx);
        return NULL;
    }
    mela_model *m = calloc(1, sizeof *m);
    if (!m) {
        mela_layout_free(def->layout);
        if (def->ctx_free)
            def->ctx_free(def->ctx);
        mela_set_error("model: out of memory");
        return NULL;
    }
    m->kind = MODEL_CUSTOM;
    m->def = *def;
    m->L = def->layout;
    m->nout = def->outputs;
    m->features = def->features;
    snprintf(m->desc, sizeof m->desc, "%s", def->name ? def->name : "custom model");
    return m;
}

mela_model *mela_mlp_new(int nin, const int *hidden, int nhidden, int nout)
{
    if (nin < 1 || nout < 1 || nhidden < 0 || nhidden > 15) {
        mela_set_error("mlp: bad sizes (in %d, %d hidden layers, out %d)", nin, nhidden, nout);
        return NULL;
    }
    mela_model *m = calloc(1, sizeof *m);
    if (!m || !(m->L = mela_layout_new())) {
        free(m);
        mela_set_error("mlp: out of memory");
        return NULL;
    }
    m->kind = MODEL_MLP;
    m->nin = nin;
    m->nout = nout;
    m->nhidden = nhidden;
    int prev = nin, k = snprintf(m->desc, sizeof m->desc, "mlp %d", nin);
    for (int i = 0; i <= nhidden; i++) {
        int out = i < nhidden ? hidden[i] : nout;
        if (out < 1) {
            mela_model_free(m);
            mela_set_error("mlp: hidden layer %d has %d units", i, out);
            return NULL;
        }
        if (i < nhidden)
            m->hidden[i] = out;
        if (add(m->L, "fc%d.%s", i + 1, "weight", MELA_SHAPE(out, prev)) < 0 ||
            add(m->L, "fc%d.%s", i + 1, "bias", MELA_SHAPE(out)) < 0) {
            mela_model_free(m);
            return NULL;
        }
        k += snprintf(m->desc + k, sizeof m->desc - k, "-%d", out);
        prev = out;
    }
    m->features = nhidden ? hidden[nhidden - 1] : nin;
    return m;
}

/* Spatial size after one block: conv pad 1 then pool 2 (floor), or conv
 * stride 2 pad 1 (ceil; also TensorFlow's 'SAME' at stride 2). */
static int block_out(int s, int maxpool) { return maxpool ? s / 2 : (s + 1) / 2; }

/* Conv-4 and Finn's network: `depth` blocks of views convK.weight,
 * convK.bias, bnK.weight (Conv-4 only: Finn's batch norm has no scale),
 * bnK.bias; then the head over the features. */
static mela_model *blocks_new(int kind, const char *what, int channels, int size, int width, int depth,
                              int nout, int maxpool)
{
    if (channels < 1 || size < 1 || width < 1 || depth < 1 || depth > 8 || nout < 0) {
        mela_set_error("%s: bad sizes (channels %d, size %d, width %d, depth %d, out %d)", what,
                       channels, size, width, depth, nout);
        return NULL;
    }
    int s = size;
    for (int i = 0; i < depth; i++) {
        s = block_out(s, maxpool);
        if (s < 1) {
            mela_set_error("%s: a %dx%d input is too small for %d blocks", what, size, size, depth);
            return NULL;
        }
    }
    mela_model *m = calloc(1, sizeof *m);
    if (!m || !(m->L = mela_layout_new())) {
        free(m);
        mela_set_error("%s: out of memory", what);
        return NULL;
    }
    m->kind = kind;
    m->channels = channels;
    m->size = size;
    m->width = width;
    m->depth = depth;
    m->maxpool = maxpool;
    m->nout = nout;
    /* Finn's network averages each last map: one feature per filter */
    m->features = kind == MODEL_FINN ? width : width * s * s;
    int ok = 1, c = channels;
    for (int i = 0; i < depth && ok; i++) {
        ok &= add(m->L, "conv%d.%s", i + 1, "weight", MELA_SHAPE(width, c, 3, 3)) >= 0;
        ok &= add(m->L, "conv%d.%s", i + 1, "bias", MELA_SHAPE(width)) >= 0;
        if (kind == MODEL_CONV4)
            ok &= add(m->L, "bn%d.%s", i + 1, "weight", MELA_SHAPE(width)) >= 0;
        ok &= add(m->L, "bn%d.%s", i + 1, "bias", MELA_SHAPE(width)) >= 0;
        c = width;
    }
    if (ok && nout > 0) {
        ok &= mela_layout_add(m->L, "head.weight", MELA_SHAPE(nout, m->features)) >= 0;
        ok &= mela_layout_add(m->L, "head.bias", MELA_SHAPE(nout)) >= 0;
    }
    if (!ok) {
        mela_model_free(m);
        return NULL;
    }
    return m;
}

mela_model *mela_conv4_new(int channels, int size, int width, int depth, int nout, int maxpool)
{
    mela_model *m = blocks_new(MODEL_CONV4, "conv4", channels, size, width, depth, nout, maxpool);
    if (m)
        snprintf(m->desc, sizeof m->desc, "conv4(%dx%dx%d, %d filters, %d blocks, %s) -> %d", channels,
                 size, size, width, depth, maxpool ? "max-pool" : "stride 2", nout ? nout : m->features);
    return m;
}

mela_model *mela_finn_new(int channels, int size, int width, int depth, int nout)
{
    mela_model *m = blocks_new(MODEL_FINN, "finn", channels, size, width, depth, nout, 0);
    if (m)
        snprintf(m->desc, sizeof m->desc,
                 "finn(%dx%dx%d, %d filters, %d blocks, stride 2 'SAME', mean of the last maps) -> %d",
                 channels, size, size, width, depth, nout ? nout : width);
    return m;
}

int mela_model_set_init(mela_model *m, int scheme)
{
    if (scheme != MELA_INIT_XAVIER && scheme != MELA_INIT_TORCH04)
        return mela_set_error("model init: unknown scheme %d", scheme);
    if (scheme == MELA_INIT_TORCH04 && m->kind != MODEL_CONV4 && m->kind != MODEL_FINN)
        return mela_set_error("model init: PyTorch 0.4's scheme is for conv4 and finn, not %s", m->desc);
    m->init = scheme;
    return 0;
}

/* PyTorch 0.4's reset_parameters for Conv2d, Linear and BatchNorm2d: a
 * weight and its bias U(+-1/sqrt(fan_in)) with the fan-in of the weight's
 * view (the bias follows its weight in the layout), a batch-norm scale U(0, 1)
 * and its shift 0. */
static void torch04_init(const mela_model *m, float *theta, mela_rng *r)
{
    const mela_layout *L = m->L;
    float bound = 0.0f;
    for (int i = 0; i < mela_layout_count(L); i++) {
        const char *name = mela_layout_name(L, i);
        mela_shape s = mela_layout_shape(L, i);
        float *p = theta + mela_layout_offset(L, i);
        size_t n = mela_shape_numel(s);
        if (!strncmp(name, "bn", 2)) {
            if (strstr(name, ".weight"))
                for (size_t j = 0; j < n; j++)
                    p[j] = mela_rng_uniform(r);
            continue;
        }
        if (strstr(name, ".weight")) /* (out, in[, 3, 3]): fan-in is all but the first axis */
            bound = 1.0f / sqrtf((float)(n / (size_t)s.d[0]));
        for (size_t j = 0; j < n; j++)
            p[j] = (2.0f * mela_rng_uniform(r) - 1.0f) * bound;
    }
}

void mela_model_init(const mela_model *m, float *theta, mela_rng *r)
{
    const mela_layout *L = m->L;
    memset(theta, 0, mela_layout_size(L) * sizeof *theta);
    if (m->kind == MODEL_CUSTOM && m->def.init) {
        m->def.init(m->def.ctx, L, theta, r);
        return;
    }
    if (m->init == MELA_INIT_TORCH04) {
        torch04_init(m, theta, r);
        return;
    }
    for (int i = 0; i < mela_layout_count(L); i++) {
        const char *name = mela_layout_name(L, i);
        mela_shape s = mela_layout_shape(L, i);
        float *p = theta + mela_layout_offset(L, i);
        size_t n = mela_shape_numel(s);
        int is_weight = strstr(name, ".weight") != NULL ||
                        (m->kind == MODEL_CUSTOM && !strstr(name, "bias"));
        if (!strncmp(name, "bn", 2)) {
            for (size_t j = 0; j < n; j++)
                p[j] = is_weight ? 1.0f : 0.0f;
            continue;
        }
        if (m->kind == MODEL_FINN && !strcmp(name, "head.weight")) {
            for (size_t j = 0; j < n; j++) /* Finn et al.'s code: N(0, 1) */
                p[j] = mela_rng_normal(r);
        } else if (m->kind == MODEL_MLP) {
            /* fan_in of this layer: the weight's second axis (bias: previous view) */
            mela_shape ws = is_weight ? s : mela_layout_shape(L, i - 1);
            float bound = 1.0f / sqrtf((float)ws.d[1]);
            for (size_t j = 0; j < n; j++)
                p[j] = (2.0f * mela_rng_uniform(r) - 1.0f) * bound;
        } else if (is_weight) {
            size_t recept = s.nd == 4 ? (size_t)s.d[2] * s.d[3] : 1;
            if (s.nd == 1)
                s = MELA_SHAPE(s.d[0], 1);
            float fan_in = (float)(s.d[1] * recept), fan_out = (float)(s.d[0] * recept);
            float bound = sqrtf(6.0f / (fan_in + fan_out));
            for (size_t j = 0; j < n; j++)
                p[j] = (2.0f * mela_rng_uniform(r) - 1.0f) * bound;
        }
    }
}

int mela_model_params(const mela_model *m, mela_graph *g, mela_node *w)
{
    int n = mela_layout_count(m->L);
    for (int i = 0; i < n; i++)
        if ((w[i] = mela_param(g, m->L, i)) == MELA_NONE)
            return -1;
    return n;
}

int mela_model_outputs(const mela_model *m) { return m->nout; }

mela_shape mela_model_input_shape(const mela_model *m, int n)
{
    if (m->kind == MODEL_CUSTOM) {
        mela_shape s = m->def.input;
        int d[4] = {n, s.d[0], s.d[1], s.d[2]};
        return mela_shape_make(s.nd + 1, d);
    }
    if (m->kind == MODEL_MLP)
        return MELA_SHAPE(n, m->nin);
    return MELA_SHAPE(n, m->channels, m->size, m->size);
}

int mela_model_head_first(const mela_model *m)
{
    if (m->kind == MODEL_CUSTOM)
        return m->def.head_first;
    if (m->kind == MODEL_MLP)
        return 2 * m->nhidden;
    if (m->nout == 0)
        return mela_layout_count(m->L);
    return (m->kind == MODEL_FINN ? 3 : 4) * m->depth;
}

static int has_blocks(const mela_model *m) { return m->kind == MODEL_CONV4 || m->kind == MODEL_FINN; }

int mela_model_bn_layers(const mela_model *m) { return has_blocks(m) ? m->depth : 0; }

int mela_model_bn_channels(const mela_model *m, int i)
{
    return has_blocks(m) && i >= 0 && i < m->depth ? m->width : 0;
}

#define BN_EPS 1e-5f
#define FINN_BN_EPS 1e-3f /* tf.contrib.layers.batch_norm's default */

/* Per-channel mean and biased variance of x (N, C, H, W) over N, H, W. */
static void batch_stats(mela_graph *g, mela_node x, mela_node *mean, mela_node *var)
{
    mela_shape s = mela_node_shape(g, x);
    mela_shape c4 = MELA_SHAPE(1, s.d[1], 1, 1);
    float inv = 1.0f / (float)(mela_shape_numel(s) / (size_t)s.d[1]);
    mela_node mu = mela_scale(g, mela_sum_to(g, x, c4), inv);
    mela_node v = mela_scale(g, mela_sum_to(g, mela_square(g, mela_sub(g, x, mu)), c4), inv);
    *mean = mela_reshape(g, mu, MELA_SHAPE(s.d[1]));
    *var = mela_reshape(g, v, MELA_SHAPE(s.d[1]));
}

/* gamma * (x - mean) / sqrt(var + eps) + beta as one scale and one shift per
 * channel of x (N, C, H, W); gamma MELA_NONE: no scale (1). */
static mela_node fixed_bn(mela_graph *g, mela_node x, mela_node gamma, mela_node beta, mela_node mean,
                          mela_node var, float eps)
{
    int c = mela_node_shape(g, x).d[1];
    mela_shape c4 = MELA_SHAPE(1, c, 1, 1);
    if (gamma == MELA_NONE)
        gamma = mela_constant(g, MELA_SHAPE(c), 1.0f);
    mela_node a = mela_div(g, gamma, mela_sqrt(g, mela_add_scalar(g, var, eps)));
    mela_node b = mela_sub(g, beta, mela_mul(g, mean, a));
    return mela_add(g, mela_mul(g, x, mela_reshape(g, a, c4)), mela_reshape(g, b, c4));
}

int model_conv4_geometry(const mela_model *m, model_conv4_geom *g)
{
    if (m->kind != MODEL_CONV4)
        return 0;
    *g = (model_conv4_geom){m->channels, m->size, m->width, m->depth, m->maxpool, BN_EPS};
    return 1;
}

mela_node mela_model_body(const mela_model *m, mela_graph *g, const mela_node *w, mela_node x)
{
    return mela_model_body_bn(m, g, w, x, NULL);
}

mela_node mela_model_body_bn(const mela_model *m, mela_graph *g, const mela_node *w, mela_node x,
                             const mela_bn_mode *mode)
{
    if (m->kind == MODEL_CUSTOM)
        return m->def.body(m->def.ctx, g, w, x);
    mela_node h = x;
    if (m->kind == MODEL_MLP) {
        for (int i = 0; i < m->nhidden; i++)
            h = mela_relu(g, mela_linear(g, h, w[2 * i], w[2 * i + 1]));
        return h;
    }
    /* Finn et al.'s blocks: conv + bias, batch norm with a shift and no
     * scale, relu; views conv.weight, conv.bias, bn.bias */
    int finn = m->kind == MODEL_FINN, nv = finn ? 3 : 4, side = m->size;
    float eps = finn ? FINN_BN_EPS : BN_EPS;
    for (int i = 0; i < m->depth; i++) {
        const mela_node *b = w + nv * i;
        mela_node gamma = finn ? MELA_NONE : b[2], beta = b[nv - 1];
        if (finn) {
            /* TensorFlow's 'SAME' at stride 2 with a 3x3 kernel: out =
             * ceil(side / 2), padding (out - 1) 2 + 3 - side split with the
             * smaller half before: an even side pads 0 before and 1 after,
             * an odd side 1 and 1 */
            int even = side % 2 == 0;
            h = mela_conv2d(g, mela_pad2d(g, h, 0, even, 0, even), b[0], b[1], 2, !even);
            side = (side + 1) / 2;
        } else {
            h = mela_conv2d(g, h, b[0], b[1], m->maxpool ? 1 : 2, 1);
        }
        if (mode && mode->mean) {
            h = fixed_bn(g, h, gamma, beta, mode->mean[i], mode->var[i], eps);
        } else {
            if (mode && mode->batch_mean)
                batch_stats(g, h, &mode->batch_mean[i], &mode->batch_var[i]);
            h = mela_batchnorm(g, h, gamma, beta, eps);
        }
        h = mela_relu(g, h);
        if (!finn && m->maxpool)
            h = mela_maxpool2d(g, h, 2, 2);
    }
    return finn ? mela_global_avgpool(g, h) : mela_flatten(g, h);
}

mela_node mela_model_head(const mela_model *m, mela_graph *g, const mela_node *w, mela_node h)
{
    int k = mela_model_head_first(m);
    if (m->nout == 0)
        return h;
    if (m->kind == MODEL_CUSTOM)
        return m->def.head(m->def.ctx, g, w, h);
    return mela_linear(g, h, w[k], w[k + 1]);
}

mela_node mela_model_forward(const mela_model *m, mela_graph *g, const mela_node *w, mela_node x)
{
    return mela_model_head(m, g, w, mela_model_body(m, g, w, x));
}
