/*
 * run_config.c - the configuration of a meta-training run as a table of
 * options: one place gives `mela train` its flags and help, the checkpoints
 * their metadata, and `mela eval` the way back from metadata to a run.
 */
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/sys.h"
#include "learn/learner.h"
#include "learn/run_impl.h"

enum { T_INT, T_LL, T_FLOAT, T_STR, T_LEARNER };

typedef struct option {
    const char *key;
    int type;
    size_t off, size;
    double lo, hi;
    const char *help;
} option;

#define F(field) offsetof(mela_run_config, field), sizeof(((mela_run_config *)0)->field)
static const option options[] = {
    {"learner", T_LEARNER, F(learner), 0, 0, "maml | fomaml | metasgd | anil | mamlpp | reptile | protonet | matchnet | siamese"},
    {"dataset", T_STR, F(dataset), 0, 0, "omniglot | sinusoid"},
    {"data_dir", T_STR, F(data_dir), 0, 0, "folder holding images_background.zip and images_evaluation.zip (the library has no default)"},
    {"cache_dir", T_STR, F(cache_dir), 0, 0, "where the decoded Omniglot cache lives (\"\": ~/.cache/mela)"},
    {"split", T_STR, F(split), 0, 0, "vinyals (4,112/688/1,692 classes with rotations) | trainval (Snell et al.: training on the vinyals train and val classes, 4,800 with rotations; validation on the val classes is then a score on training classes, so best = last, no patience) | lake (Lake's protocol: background; 10+10 evaluation alphabets; 20-way 1-shot episodes within one alphabet, one query per class)"},
    {"ways", T_INT, F(train.ways), 1, 1000, "N: classes per task"},
    {"shots", T_INT, F(train.shots), 1, 1000, "K: support examples per class (sinusoid: support points)"},
    {"queries", T_INT, F(train.queries), 1, 1000, "query examples per class in meta-training (sinusoid: points)"},
    {"test_queries", T_INT, F(test.queries), 1, 1000, "query examples per class at test time (sinusoid: points)"},
    {"test_ways", T_INT, F(test.ways), 0, 1000, "ways of validation and test episodes (0: as --ways; metric learners may differ)"},
    {"test_shots", T_INT, F(test.shots), 0, 1000, "shots of validation and test episodes (0: as --shots)"},
    {"pairs", T_INT, F(pairs), 0, 100000, "Siamese: pairs per training batch (half same class, half different)"},
    {"augment", T_INT, F(augment), 0, 1, "metric learners: 1 = Koch's random affine distortions (rotation, shear, scale, shift, each with probability 1/2) of every training image, pairs or episodes (Siamese: on)"},
    {"background", T_INT, F(background), 0, 10000, "protonet: B windows of seeded scenes that hold none of the episode's classes (blank paper, parts of characters, distractors) added to each training episode's queries as class \"none\", whose prototype is the embedding of blank paper: trains for `mela find` (0: plain episodes)"},
    {"scale", T_FLOAT, F(scale), 1e-3, 1000, "Matching: attention softmax(scale * cosine) (1: Vinyals et al.)"},
    {"learn_scale", T_INT, F(learn_scale), 0, 1, "Matching: 1 = the scale is learned, starting at --scale"},
    {"lr_decay_every", T_INT, F(lr_decay_every), 0, 100000000, "halve outer_lr every N iterations (0: never)"},
    {"cosine_lr", T_INT, F(cosine_lr), 0, 1, "1: cosine annealing of outer_lr to min_lr over the run (MAML++)"},
    {"min_lr", T_FLOAT, F(min_lr), 0, 1, "the end of the cosine annealing"},
    {"lslr", T_INT, F(lslr), 0, 1, "MAML++: 1 = learned per-layer, per-step inner rates"},
    {"msl", T_INT, F(msl), 0, 1, "MAML++: 1 = multi-step loss (query loss after every step, weights annealed)"},
    {"msl_anneal", T_INT, F(msl_anneal), -1, 100000000, "MAML++: iterations over which the step weights move to the last step (-1: a tenth of the run)"},
    {"bnwb", T_INT, F(bnwb), 0, 1, "MAML++: 1 = per-step batch-norm weights and biases"},
    {"da_until", T_INT, F(da_until), -1, 100000000, "MAML++: first-order meta-gradients until this iteration, exact after (0: off, -1: a third of the run)"},
    {"inner_adam", T_INT, F(inner_adam), 0, 2, "Reptile's inner optimiser: 0 SGD, 1 Adam (beta1 = 0) reset in every task, 2 Adam whose second moments carry from task to task and into evaluation (Nichol et al.'s code)"},
    {"inner_batch", T_INT, F(inner_batch), 0, 100000, "support rows per inner step in meta-training (0: all; Reptile: minibatches of the shuffled support)"},
    {"test_inner_batch", T_INT, F(test_inner_batch), 0, 100000, "support rows per inner step at validation and test (0: all)"},
    {"nontransductive", T_INT, F(nontransductive), 0, 1, "evaluation: 1 = each query with the support set only in batch norm (default 0: all queries together)"},
    {"inner_sum", T_INT, F(inner_sum), 0, 1, "gradient learners, classification: 1 = the inner steps descend the support loss summed over the classes (each class's mean over its shots), as Finn et al.'s code does: --inner-lr in their units (their 0.4 at 5-way is 2 under the mean), and Meta-SGD's rates learned in them (0: the mean over the support)"},
    {"steps", T_INT, F(steps), 0, 100, "inner gradient steps in meta-training"},
    {"test_steps", T_INT, F(test_steps), 0, 100, "inner gradient steps at validation and test"},
    {"inner_lr", T_FLOAT, F(inner_lr), 1e-6, 100, "inner step size alpha (Meta-SGD: initial value of every rate)"},
    {"first_order", T_INT, F(first_order), 0, 1, "1: drop the second-order terms of the meta-gradient"},
    {"outer_lr", T_FLOAT, F(outer_lr), 1e-8, 1, "Adam step size of the meta-update"},
    {"clip_grad", T_FLOAT, F(clip_grad), 0, 1e30, "clip the meta-gradient (Reptile: the meta-step direction) to this global L2 norm (0: off)"},
    {"meta_batch", T_INT, F(meta_batch), 1, 4096, "tasks per meta-iteration"},
    {"iterations", T_INT, F(iterations), 1, 100000000, "meta-iterations"},
    {"model", T_STR, F(model), 0, 0, "conv4 | finn (Finn et al.'s Omniglot network: stride 2 with TensorFlow's padding, batch norm without scale, the last maps averaged; --width, --depth) | mlp (1-40-40-1, sinusoids) | search (MetaNAS: cells of mixed ops, --width channels, --depth cells; writes arch.json, cell.png) | FILE (a model definition, e.g. a search's arch.json)"},
    {"nas_temp_end", T_FLOAT, F(nas_temp_end), 1e-3, 1, "search: the softmax temperature of the mixtures at the last iteration, annealed linearly from 1 after the warm-up (1: no annealing; MetaNAS: 0.05)"},
    {"nas_warmup", T_INT, F(nas_warmup), 0, 100000000, "search: iterations at the start in which alpha is frozen (neither adapted nor meta-learned; MetaNAS: half the run)"},
    {"width", T_INT, F(width), 0, 1024, "conv4, finn: filters per block (search: channels of the cells)"},
    {"depth", T_INT, F(depth), 0, 8, "conv4, finn: blocks (search: cells)"},
    {"maxpool", T_INT, F(maxpool), 0, 1, "conv4: 1 = 2x2 max-pool per block, 0 = stride-2 convolutions"},
    {"image_size", T_INT, F(image_size), 0, 512, "side of the square input images"},
    {"resize", T_STR, F(resize), 0, 0, "area (the area filter: grey levels) | nearest (the nearest pixel, as PIL resized Omniglot's 1-bit PNGs in Finn et al.'s, Snell et al.'s and Nichol et al.'s code: ink stays 0 or 1); user images of classify and compare are resized the same way"},
    {"init", T_STR, F(init), 0, 0, "conv4, finn: what the weights start from: xavier (Xavier-uniform convolutions, biases 0, batch-norm scale 1) | pytorch-0.4 (PyTorch 0.4's defaults, which Snell et al.'s and other 2017 papers' PyTorch code ran with: weights and biases U(+-1/sqrt(fan_in)), batch-norm scale U(0, 1))"},
    {"seed", T_LL, F(seed), 0, 9.2e18, "seed of every training draw (init, tasks)"},
    {"test_seed", T_LL, F(test_seed), 0, 9.2e18, "seed of the fixed validation and test episodes"},
    {"threads", T_INT, F(threads), 1, 256, "threads (tasks of a meta-batch run in parallel; results do not depend on it)"},
    {"val_every", T_INT, F(val_every), 0, 100000000, "iterations between validations and checkpoints (0: only at the end)"},
    {"patience", T_INT, F(patience), 0, 100000000, "stop when the best validation score is this many iterations old (0: never)"},
    {"val_episodes", T_INT, F(val_episodes), 1, 100000, "validation episodes"},
    {"test_episodes", T_INT, F(test_episodes), 1, 1000000, "test episodes (the papers: 600)"},
    {"out_dir", T_STR, F(out_dir), 0, 0, "where checkpoints and metrics are written (\"\": nowhere)"},
};
#undef F
#define NOPT (int)(sizeof options / sizeof options[0])

#define NAMED_MAX 6

/* The string options that take one of a few names: mela_run_set refuses
 * any other at once (so does mela_run_check, for a config written field by
 * field), which lets `mela tune` refuse a bad choice before its first trial. */
static const struct {
    const char *key, *values[NAMED_MAX];
} named[] = {
    {"dataset", {"omniglot", "sinusoid"}},
    {"split", {"vinyals", "trainval", "lake", "finn"}},
    {"resize", {"area", "nearest"}},
    {"init", {"xavier", "pytorch-0.4"}},
};

static int check_named(const char *key, const char *value)
{
    for (size_t i = 0; i < sizeof named / sizeof *named; i++) {
        if (strcmp(named[i].key, key))
            continue;
        char list[128] = "";
        for (int v = 0; v < NAMED_MAX && named[i].values[v]; v++) {
            if (!strcmp(value, named[i].values[v]))
                return 0;
            size_t n = strlen(list);
            snprintf(list + n, sizeof list - n, "%s%s", v ? ", " : "", named[i].values[v]);
        }
        return mela_set_error("%s: '%s' is not one of %s", key, value, list);
    }
    return 0;
}

/* The option named key, or NULL. */
static const option *option_of(const char *key)
{
    for (int i = 0; i < NOPT; i++)
        if (!strcmp(options[i].key, key))
            return &options[i];
    return NULL;
}

int mela_run_set(mela_run_config *rc, const char *key, const char *value)
{
    const option *o = option_of(key);
    if (!o)
        return mela_set_error("unknown option '%s'", key);
    char *p = (char *)rc + o->off, *end = NULL;
    errno = 0;
    switch (o->type) {
    case T_INT:
    case T_LL: {
        long long v = strtoll(value, &end, 10);
        if (errno || end == value || *end || v < o->lo || v > o->hi)
            return mela_set_error("%s: '%s' is not an integer in %.0f..%.0f", key, value, o->lo, o->hi);
        if (o->type == T_INT)
            *(int *)p = (int)v;
        else
            *(long long *)p = v;
        return 0;
    }
    case T_FLOAT: {
        /* the range of the float stored, so that a bound written back as
         * "%.9g" (1e-8 becomes 9.99999994e-09) reads back the same */
        double v = strtod(value, &end);
        float f = (float)v;
        if (errno || end == value || *end || !(f >= (float)o->lo && f <= (float)o->hi))
            return mela_set_error("%s: '%s' is not a number in [%g, %g]", key, value, o->lo, o->hi);
        *(float *)p = f;
        return 0;
    }
    case T_LEARNER:
        if (!learner_def_find(value))
            return -1;
        snprintf(rc->learner, sizeof rc->learner, "%s", value);
        return 0;
    default:
        if (strlen(value) >= o->size)
            return mela_set_error("%s: '%s' is longer than %zu characters", key, value, o->size - 1);
        for (const char *c = value; *c; c++)
            if ((unsigned char)*c < 0x20 || *c == 0x7f) /* a line break would cut the config file */
                return mela_set_error("%s: the value holds a control character (byte 0x%02x)", key,
                                      (unsigned)(unsigned char)*c);
        if (check_named(key, value))
            return -1;
        snprintf(p, o->size, "%s", value);
        return 0;
    }
}

int run_key_integer(const char *key)
{
    const option *o = option_of(key);
    return o && (o->type == T_INT || o->type == T_LL);
}

const char *mela_run_option(int i, const mela_run_config *rc, char *buf, size_t n, const char **help)
{
    if (i < 0 || i >= NOPT)
        return NULL;
    const option *o = &options[i];
    const char *p = (const char *)rc + o->off;
    switch (o->type) {
    case T_INT: snprintf(buf, n, "%d", *(const int *)p); break;
    case T_LL: snprintf(buf, n, "%lld", *(const long long *)p); break;
    case T_FLOAT: snprintf(buf, n, "%.9g", (double)*(const float *)p); break;
    default: snprintf(buf, n, "%s", p); break;
    }
    if (help)
        *help = o->help;
    return o->key;
}

/* What every run starts from, whatever the learner. */
static void run_defaults(mela_run_config *rc, const char *learner, const char *ds)
{
    memset(rc, 0, sizeof *rc);
    snprintf(rc->learner, sizeof rc->learner, "%s", learner);
    snprintf(rc->dataset, sizeof rc->dataset, "%s", ds);
    snprintf(rc->split, sizeof rc->split, "vinyals");
    snprintf(rc->resize, sizeof rc->resize, "area");
    snprintf(rc->init, sizeof rc->init, "xavier");
    snprintf(rc->out_dir, sizeof rc->out_dir, "runs/%s-%s", learner, ds);
    rc->scale = 1.0f;
    rc->nas_temp_end = 1.0f;
    rc->outer_lr = 0.001f;
    rc->threads = 2;
    rc->seed = 1;
    rc->test_seed = 0;
    rc->val_episodes = 100;
    rc->test_episodes = 600;
}

/* Sinusoids (Finn et al. 2017): the 1-40-40-1 MLP, K = 10, one step of 0.01
 * (ten at test), meta-batch 25, 70,000 iterations. */
static void sinusoid_defaults(mela_run_config *rc)
{
    snprintf(rc->model, sizeof rc->model, "mlp");
    rc->train = (mela_task_spec){1, 10, 10, 0};
    rc->test.queries = 100;
    rc->steps = 1;
    rc->test_steps = 10;
    rc->inner_lr = 0.01f;
    rc->meta_batch = 25;
    rc->iterations = 70000;
    rc->val_every = 1000;
}

/* Omniglot: Finn et al.'s network, Conv-4 of 64 filters with stride-2
 * convolutions, on 28x28 images. */
static void omniglot_defaults(mela_run_config *rc)
{
    snprintf(rc->model, sizeof rc->model, "conv4");
    rc->width = 64;
    rc->depth = 4;
    rc->maxpool = 0;
    rc->image_size = 28;
}

int mela_run_defaults(mela_run_config *rc, const char *learner, const char *dataset, int ways)
{
    const char *ds = dataset ? dataset : "omniglot";
    const learner_def *d = learner_def_find(learner ? learner : "maml");
    if (!d)
        return -1;
    run_defaults(rc, d->info.name, ds);
    if (!strcmp(ds, "sinusoid"))
        sinusoid_defaults(rc);
    else if (!strcmp(ds, "omniglot"))
        omniglot_defaults(rc);
    else
        return check_named("dataset", ds);
    d->defaults(rc, ways);
    return 0;
}

static int split_check(const char *split) { return check_named("split", split); }

int mela_run_protocol(mela_run_config *rc, const char *split)
{
    if (split_check(split))
        return -1;
    snprintf(rc->split, sizeof rc->split, "%s", split);
    if (!strcmp(split, "lake")) {
        rc->test.shots = 1;
        rc->test.queries = 1;
    }
    return 0;
}

int mela_run_regression(const mela_run_config *rc) { return !strcmp(rc->dataset, "sinusoid"); }

int mela_run_trains_on_val(const mela_run_config *rc) { return !strcmp(rc->split, "trainval"); }

unsigned mela_run_episode_flags(const mela_run_config *rc, int train)
{
    if (!strcmp(rc->split, "finn"))
        return MELA_EPISODE_DISTINCT_CLASSES;
    return !train && !strcmp(rc->split, "lake") ? MELA_EPISODE_WITHIN_GROUP : 0;
}

mela_task_spec mela_run_test_spec(const mela_run_config *rc)
{
    mela_task_spec t = rc->test;
    if (t.ways == 0)
        t.ways = rc->train.ways;
    if (t.shots == 0)
        t.shots = rc->train.shots;
    if (t.queries == 0)
        t.queries = rc->train.queries;
    return t;
}

int mela_run_msl_anneal(const mela_run_config *rc)
{
    return rc->msl_anneal >= 0 ? rc->msl_anneal : rc->iterations / 10;
}

int mela_run_da_until(const mela_run_config *rc)
{
    return rc->da_until >= 0 ? rc->da_until : rc->iterations / 3;
}

static int omniglot_check(const mela_run_config *rc)
{
    if (!strcmp(rc->model, "mlp"))
        return mela_set_error("dataset omniglot needs conv4, finn, search or a model file (got mlp)");
    if (rc->width < 1 || rc->depth < 1 || rc->image_size < 4)
        return mela_set_error("%s needs width >= 1, depth >= 1 and image_size >= 4 (got %d, %d, %d)",
                              rc->model, rc->width, rc->depth, rc->image_size);
    if (rc->image_size > 105) /* larger only upsamples, and decodes the whole set that large */
        return mela_set_error("image_size %d: Omniglot's images are 105x105; use at most 105",
                              rc->image_size);
    if (rc->train.ways < 2)
        return mela_set_error("ways: %d (classification needs at least 2)", rc->train.ways);
    if (mela_run_trains_on_val(rc) && rc->patience > 0) /* its validation classes are trained on */
        return mela_set_error("patience %d: split trainval trains on the validation classes, so it "
                              "has no validation to stop on (give the iterations instead)",
                              rc->patience);
    return split_check(rc->split);
}

int mela_run_check(const mela_run_config *rc)
{
    const learner_def *d = learner_def_find(rc->learner);
    if (!d)
        return -1;
    mela_cellnet_spec cs;
    if (strcmp(rc->model, "conv4") && strcmp(rc->model, "finn") && strcmp(rc->model, "mlp") &&
        strcmp(rc->model, "search") && mela_nas_read_model(rc->model, &cs)) {
        char why[512];
        snprintf(why, sizeof why, "%s", mela_last_error());
        return mela_set_error("model: '%s' is not one of conv4, finn, mlp, search or a model file (%s)",
                              rc->model, why);
    }
    if (check_named("resize", rc->resize) || check_named("init", rc->init))
        return -1;
    if (!strcmp(rc->init, "pytorch-0.4") && strcmp(rc->model, "conv4") && strcmp(rc->model, "finn"))
        return mela_set_error("init: pytorch-0.4 is for the conv4 and finn models, not %s", rc->model);
    if (!strcmp(rc->dataset, "sinusoid")) {
        if (strcmp(rc->model, "mlp"))
            return mela_set_error("dataset sinusoid needs the mlp model (got %s)", rc->model);
    } else if (!strcmp(rc->dataset, "omniglot")) {
        if (omniglot_check(rc))
            return -1;
    } else {
        return check_named("dataset", rc->dataset);
    }
    if (rc->train.shots < 1)
        return mela_set_error("shots: %d (at least 1 example per class is needed)", rc->train.shots);
    if (rc->augment && strcmp(rc->learner, "protonet") && strcmp(rc->learner, "matchnet") &&
        strcmp(rc->learner, "siamese"))
        return mela_set_error("augment: %d (the affine distortions are the metric learners' "
                              "training, not %s's)", rc->augment, rc->learner);
    if (mela_nas_scheduled(rc) && strcmp(rc->model, "search"))
        return mela_set_error("nas_temp_end %g, nas_warmup %d: the temperature and the warm-up are the "
                              "search network's (--model search), not %s's", (double)rc->nas_temp_end,
                              rc->nas_warmup, rc->model);
    if (rc->background && strcmp(rc->learner, "protonet"))
        return mela_set_error("background: %d (background windows are protonet's training, not %s's)",
                              rc->background, rc->learner);
    return d->check(rc);
}

/* ------------------------------------------------------ configuration files */

int run_words(char *line, char **w, int max)
{
    int n = 0;
    char *p = line;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
            p++;
        if (!*p || *p == '#')
            return n;
        if (n == max)
            return mela_set_error("more than %d words", max);
        if (*p == '"') { /* "a value with spaces", "" */
            char *end = strchr(p + 1, '"');
            if (!end)
                return mela_set_error("a quote is not closed");
            *end = 0;
            w[n++] = p + 1;
            p = end + 1;
            if (*p && *p != ' ' && *p != '\t' && *p != '\r' && *p != '\n')
                return mela_set_error("text right after a closing quote");
            continue;
        }
        w[n++] = p;
        while (*p && *p != ' ' && *p != '\t' && *p != '\r' && *p != '\n')
            p++;
        if (*p)
            *p++ = 0;
    }
}

/* A value as a configuration file writes it: quoted when it is empty or
 * holds a space, a quote or a '#'. */
static void fput_value(FILE *f, const char *v)
{
    if (*v && !strpbrk(v, " \t\"#"))
        fputs(v, f);
    else
        fprintf(f, "\"%s\"", v);
}

int run_config_write(FILE *f, const mela_run_config *rc)
{
    char buf[600];
    for (int i = 0;; i++) {
        const char *k = mela_run_option(i, rc, buf, sizeof buf, NULL);
        if (!k)
            break;
        fprintf(f, "%-17s ", k);
        fput_value(f, buf);
        fputc('\n', f);
    }
    return ferror(f) ? mela_set_error("writing the configuration failed") : 0;
}

int mela_run_config_save(const mela_run_config *rc, const char *path, const char *comment)
{
    FILE *f = mela_sys_fopen_write(path);
    if (!f)
        return -1;
    if (comment) /* each line of it as a comment */
        for (const char *p = comment; *p;) {
            size_t n = strcspn(p, "\n");
            fprintf(f, "# %.*s\n", (int)n, p);
            p += n + (p[n] == '\n');
        }
    int rc_ = run_config_write(f, rc);
    if (fclose(f) && !rc_)
        rc_ = mela_set_error("%s: %s", path, strerror(errno));
    return rc_ ? mela_sys_error_context("%s", path) : 0;
}

/* A text configuration: "key value" lines; the defaults of its learner,
 * dataset and ways first. */
static int config_text(mela_run_config *rc, char *text, const char *path)
{
    const char *learner = "maml", *dataset = "omniglot";
    int ways = 0, line = 0;
    char *w[8], *save = NULL, *copy = strdup(text);
    if (!copy)
        return mela_set_error("%s: out of memory", path);
    /* first the keys the defaults depend on */
    for (char *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        int n = run_words(l, w, 3);
        if (n == 2 && !strcmp(w[0], "learner")) learner = w[1];
        if (n == 2 && !strcmp(w[0], "dataset")) dataset = w[1];
        if (n == 2 && !strcmp(w[0], "ways")) ways = atoi(w[1]);
    }
    int status = mela_run_defaults(rc, learner, dataset, ways);
    free(copy);
    if (status)
        return mela_sys_error_context("%s", path);
    for (char *l = text, *next; l && *l; l = next) {
        line++;
        next = strchr(l, '\n');
        if (next)
            *next++ = 0;
        int n = run_words(l, w, 8);
        if (n < 0)
            return mela_sys_error_context("%s:%d", path, line);
        if (n == 0)
            continue;
        if (n != 2)
            return mela_set_error("%s:%d: expected 'key value', got %d words (a search space "
                                  "is for 'mela tune')", path, line, n);
        if (mela_run_set(rc, w[0], w[1]))
            return mela_sys_error_context("%s:%d", path, line);
    }
    return 0;
}

int mela_run_config_load(mela_run_config *rc, const char *path)
{
    char file[1100];
    struct stat st;
    if (stat(path, &st))
        return mela_set_error("%s: %s", path, strerror(errno));
    snprintf(file, sizeof file, "%s", path);
    if (S_ISDIR(st.st_mode)) { /* a run's directory: its state, else its best checkpoint */
        snprintf(file, sizeof file, "%s/state.safetensors", path);
        if (access(file, F_OK))
            snprintf(file, sizeof file, "%s/best.safetensors", path);
    }
    size_t len = strlen(file);
    if (len > 12 && !strcmp(file + len - 12, ".safetensors"))
        return run_config_checkpoint(file, rc);
    uint8_t *text;
    size_t n;
    if (mela_sys_read_file_max(file, 1 << 20, &text, &n))
        return -1;
    if (memchr(text, 0, n)) {
        free(text);
        return mela_set_error("%s: not a text configuration (a NUL byte)", file);
    }
    int status = config_text(rc, (char *)text, file);
    free(text);
    if (!status && mela_run_check(rc))
        status = mela_sys_error_context("%s: its configuration", file);
    return status;
}
