/*
 * mela_learn.h - the learners and meta-training runs.
 *
 * Learners that adapt by gradient steps (mela_gbml: MAML, first-order MAML,
 * Meta-SGD, ANIL, MAML++, Reptile), learners that compare (mela_metric:
 * Prototypical, Matching and Siamese networks), and whole runs from one flat
 * configuration (mela_run_*: what `mela train`, `eval`, `adapt` and
 * `compare` call).
 *
 * One inner loop serves every learner: starting from the meta-learned
 * weights theta, take k gradient steps on the support set of a task,
 *
 *     theta_0 = theta,   theta_{s+1} = theta_s - alpha (.) grad L_support(theta_s),
 *
 * and score the query set with theta_k; the query loss is the meta-loss, and
 * its gradient with respect to everything learned (theta, and the learned
 * rates alpha for Meta-SGD) is the meta-gradient. The loop is built once as a
 * graph, so the meta-gradient is exact to second order (it differentiates
 * through the inner gradients) unless first_order is set, where the inner
 * gradients are constants (stop_gradient), as in first-order MAML.
 *
 *   MAML      alpha a fixed scalar; every weight adapts.   (Finn et al. 2017)
 *   Meta-SGD  alpha a learned tensor per weight, same shape, meta-trained with
 *             theta (its views are "lr.<name>").             (Li et al. 2017)
 *   ANIL      only the head adapts; the body is computed once per set.
 *                                                       (Raghu et al. 2020)
 *   MAML++    MAML with switches: learned per-layer per-step rates, the
 *             multi-step loss, per-step batch-norm weights, derivative-order
 *             annealing (and, in runs, cosine annealing). (Antoniou et al. 2019)
 *   Reptile   no meta-gradient: the training plan outputs theta - phi after k
 *             inner steps (SGD, or Adam with beta1 = 0) and the run moves
 *             theta toward phi.                          (Nichol et al. 2018)
 *
 * Batch normalisation always uses the statistics of the batch it sees, in
 * meta-training and at meta-test time (support and query are separate
 * batches), as Finn et al.'s code does; there are no running statistics.
 */
#ifndef MELA_LEARN_H
#define MELA_LEARN_H

#include <signal.h>

#include "mela.h"
#include "mela_data.h"
#include "mela_nn.h"

#ifdef __cplusplus
extern "C" {
#endif
MELA_EXPORT_BEGIN

enum mela_gbml_learner { MELA_LEARNER_MAML, MELA_LEARNER_METASGD, MELA_LEARNER_ANIL, MELA_LEARNER_REPTILE };

typedef struct mela_gbml_config {
    int learner;      /* enum mela_gbml_learner */
    int first_order;  /* 1: inner gradients are constants */
    int regression;   /* 1: MSE on (K, 1) points; 0: N-way classification */
    mela_task_spec train; /* meta-training tasks (regression: K, Q points) */
    mela_task_spec test;  /* evaluation tasks; shots and queries 0: as train,
                           * ways must equal train's (the head's outputs) */
    int steps;        /* inner steps in meta-training */
    int test_steps;   /* inner steps at evaluation */
    float inner_lr;   /* alpha (Meta-SGD, LSLR: the initial value of every rate) */
    /* MAML++ (Antoniou et al. 2019), each a switch */
    int lslr;         /* learned per-layer, per-step inner rates "lr.stepS.<view>" */
    int msl;          /* multi-step loss: sum_s v_s L_query(theta_s), weights set by
                       * mela_gbml_set_step_weights (mela_msl_weights) */
    int bnwb;         /* per-step batch-norm weights and biases "<bn view>.stepS",
                       * not adapted in the inner loop */
    int da;           /* derivative-order annealing: also build a first-order
                       * training plan (mela_gbml_set_first_order) */
    /* Reptile (Nichol et al. 2018) */
    int inner_adam;   /* inner optimiser: 0 SGD; Adam (beta1 = 0, beta2 = 0.999) whose
                       * state 1 starts at zero in every task, or 2 persists from task
                       * to task (Nichol et al.'s code): views "adam_v.<view>" (the
                       * second moments every task starts from) and "adam_t" (their
                       * step count, for the bias correction) are then part of theta,
                       * moved by mela_gbml_reptile_update and read at evaluation */
    int nontransductive; /* evaluation: 0 all queries in one batch-norm batch
                          * (transduction, the default); 1 each query scored in a
                          * batch with the support set only */
    /* Inner minibatches (Reptile's inner batch): 0 = every inner step on the
     * whole support set; b > 0 = inner step s on support rows
     * (s*b + r) mod n_support, r = 0..b-1. The rows should then come in a
     * random order (classification supports come class by class): the
     * runs shuffle them per task (mela_tasks_opts.shuffle_support). */
    int inner_batch;      /* meta-training */
    int test_inner_batch; /* evaluation */
    /* The support loss of the inner steps: 0 its mean over the support rows;
     * 1 (classification) `ways` times that mean, the sum over the classes of
     * each class's mean, as Finn et al.'s code takes it (their update_lr 0.4
     * at 5-way is inner_lr 2 under the mean). Meta-SGD's learned rates are
     * then in those units: the same Adam step moves the effective rate
     * `ways` times as far. */
    int inner_sum;
} mela_gbml_config;

typedef struct mela_gbml mela_gbml;

/* A learner for model m (which must outlive it). Checks the configuration
 * against the model (the head must have `ways` outputs, or 1 for
 * regression) and returns NULL with a message otherwise. */
mela_gbml *mela_gbml_new(const mela_model *m, const mela_gbml_config *c);
void mela_gbml_free(mela_gbml *gb);
/* The layout of what is meta-learned: the model's views, in the model's
 * order and at the model's offsets, then the learner's own ("lr.*"). */
const mela_layout *mela_gbml_layout(const mela_gbml *gb);
const mela_gbml_config *mela_gbml_config_of(const mela_gbml *gb);
/* Initialises theta (mela_layout_size floats): the model's init, and every
 * learned rate set to inner_lr. */
void mela_gbml_init(const mela_gbml *gb, float *theta, mela_rng *r);

/* The meta-gradient averaged over tasks[0..n), into grad (layout size);
 * mean query loss and accuracy (regression: accuracy 0) into *loss, *acc
 * (either may be NULL). Tasks run on `threads` threads, each with its own
 * executor; per-task gradients are summed in task order, so the result is
 * the same bit for bit for any number of threads. Returns 0 or -1. */
int mela_gbml_meta_grad(mela_gbml *gb, const float *theta, int n, const mela_task *tasks,
                        int threads, float *grad, double *loss, double *acc);

/* Adapts to one task with test_steps inner steps and scores its query set:
 * loss, accuracy (classification) and, if out is not NULL, the query outputs
 * after adaptation ((N*Q, N) logits or (Q, 1) predictions). The executor of
 * slot `slot` (0 <= slot < threads used so far, or 0) is used, so calls on
 * different slots may run on different threads at once. Returns 0 or -1. */
int mela_gbml_evaluate(mela_gbml *gb, const float *theta, const mela_task *task, int slot,
                       double *loss, double *acc, float *out);

/* Reptile's meta-update of theta with the direction grad (the mean over
 * the meta-batch of theta - phi, from mela_gbml_meta_grad) and meta step
 * eps: theta -= eps grad for the model's views. With inner_adam 2 the
 * persistent Adam state becomes the meta-batch's mean final state: adam_v
 * -= grad (grad holds adam_v - mean v_final) and adam_t += steps, so adam_v
 * stays an exact exponential average with adam_t steps (its bias
 * correction exact) of the tasks' mean squared inner gradients. */
void mela_gbml_reptile_update(const mela_gbml *gb, float *theta, const float *grad, float eps);
/* Floats of theta that are meta-learned by gradient (all but inner_adam 2's
 * state, which comes last): what the meta-gradient's clipping covers. */
size_t mela_gbml_learned_size(const mela_gbml *gb);

/* MAML++ multi-step loss weights (steps values, summing to 1) used from now on. */
int mela_gbml_set_step_weights(mela_gbml *gb, const float *v);
/* Derivative-order annealing: use the first-order training plan (on) or the
 * exact one (off); needs da. */
int mela_gbml_set_first_order(mela_gbml *gb, int on);
/* Antoniou et al.'s schedule of the multi-step loss weights at iteration
 * `it` of `anneal` iterations: every weight 1/steps at first; the non-final
 * weights fall linearly to 0.03/steps and the final one rises to take the
 * rest; from `anneal` on they stay there. Writes steps weights summing to 1. */
void mela_msl_weights(int steps, long it, long anneal, float *v);

/* Makes sure `slots` executors exist for evaluation on that many threads,
 * each giving `kernel_threads` threads to its convolutions (see mela.h). */
int mela_gbml_reserve(mela_gbml *gb, int slots, int kernel_threads);

/* Per-op-type timing of the training executors (see mela_exec_profile):
 * switch it on, run, then read the sums over all slots. */
void mela_gbml_set_profiling(mela_gbml *gb, int on);
void mela_gbml_profile(const mela_gbml *gb, double *seconds, long *calls);
/* Steps of the training plan (ops run per task). */
int mela_gbml_steps(const mela_gbml *gb);

/* Bytes of one training executor's arena (for the memory report). */
size_t mela_gbml_arena_bytes(const mela_gbml *gb);

/* --------------------------------------------------------- metric learners */

/*
 * Learners that compare (no gradient step at test time). An embedding
 * network f (a model with no head, e.g. mela_conv4_new(..., nout = 0, ...))
 * maps support and query images to vectors; support and query of an episode
 * go through f as one batch (batch norm sees both, as in Snell et al.'s code).
 *
 *   Prototypical Networks (Snell et al. 2017): c_k = mean of f(x) over the
 *     support of class k; p(y = k | q) = softmax_k(-|f(q) - c_k|^2).
 *   Matching Networks (Vinyals et al. 2016), without full context
 *     embeddings: a(q, x_i) = softmax_i(cos(f(q), f(x_i))) over the support;
 *     p(y = k | q) = sum of a(q, x_i) over the support of class k.
 *   Siamese networks (Koch et al. 2015): p(same | x1, x2) =
 *     sigmoid(w . |f(x1) - f(x2)| + b), trained on pairs with binary
 *     cross-entropy; a query's score for class k is the mean p(same) against
 *     the support examples of k (one-shot: the single example).
 *
 * Training episodes may have more ways than test episodes (ProtoNets train
 * 60-way). Siamese training tasks are batches of pairs (mela_task, MELA_TASKS_PAIRS).
 */
enum mela_metric_kind { MELA_METRIC_PROTO, MELA_METRIC_MATCHING, MELA_METRIC_SIAMESE };

typedef struct mela_metric_config {
    int kind;
    mela_task_spec train; /* training episodes (not Siamese) */
    mela_task_spec test;  /* evaluation episodes: any ways, shots, queries */
    int pairs;            /* Siamese: pairs per training task */
    /* Matching: attention softmax(scale * cos(f(q), f(s_i))); 0 means 1,
     * Vinyals et al.'s plain cosine. learn_scale: the scale is a parameter
     * "matching.scale" (1) that starts at `scale`. */
    float scale;
    int learn_scale;
    /* ProtoNets: B > 0 trains on episodes whose query set ends with B rows
     * of class N, "none of the support classes" (MELA_TASKS_EPISODES with
     * background B: windows of scenes that hold no episode class). Their
     * prototype is the embedding of a blank image (zeros) embedded with the
     * episode, so the loss is the NLL of softmax(-|f(q) - c_k|^2) over the N
     * class means and f(blank): a window of a thing not in the support set
     * is taught to lie nearer to empty paper than to every prototype, which
     * is `mela find`'s rule for "nothing here". Evaluation is unchanged. */
    int background;
} mela_metric_config;

typedef struct mela_metric mela_metric;

/* A metric learner on an embedding model (which must outlive it; its head
 * must be empty). NULL with a message on a bad configuration. */
mela_metric *mela_metric_new(const mela_model *embedding, const mela_metric_config *c);
void mela_metric_free(mela_metric *mt);
/* The embedding's views, then "siamese.weight" (1, D) and "siamese.bias" (1)
 * (Siamese) or "matching.scale" (1) (Matching with learn_scale), then, for
 * each batch-norm layer of the embedding (mela_model_bn_layers), its
 * population statistics "bnI.running_mean" and "bnI.running_var" (C): not
 * trained (their gradient is 0), set by mela_metric_calibrate. */
const mela_layout *mela_metric_layout(const mela_metric *mt);
void mela_metric_init(const mela_metric *mt, float *theta, mela_rng *r);
/* Batch norm: training normalises each layer with the statistics of the
 * training batch (the episode's support and queries together, as Snell et
 * al.'s and Vinyals et al.'s code in training mode). Evaluation, compare and
 * classification normalise with the population statistics held in theta, so
 * an image is embedded on its own: a query's scores depend on the support
 * set and that query only. mela_metric_calibrate sets them from the weights
 * in theta: the per-channel mean and (biased) variance of each layer's input
 * over all images of training tasks 0..tasks-1 of ts (a stream of this
 * learner's training tasks; slot 0 is used), each layer's input computed as
 * in training. The run loop calls it before every validation, so every
 * checkpoint holds the statistics of its own weights. */
int mela_metric_calibrate(mela_metric *mt, float *theta, mela_tasks *ts, int tasks, int threads);
/* Gradient of the mean loss over tasks[0..n) (ordinary back-propagation: the
 * episode is the batch), summed in task order as mela_gbml_meta_grad; spare
 * threads (threads > n) go to the convolutions. One task (n = 1) through a
 * Conv-4 embedding goes in fixed blocks of 8 images: batch norm still with
 * the statistics of the whole episode, each block's weight gradient summed
 * in block order; the blocks are spread over the processes of a
 * distributed run (mela_dist_init), each of which must then pass the whole
 * task. The same bits for any number of processes and threads. */
int mela_metric_grad(mela_metric *mt, const float *theta, int n, const mela_task *tasks,
                     int threads, float *grad, double *loss, double *acc);
/* Scores one evaluation episode: loss, accuracy and, if out is not NULL,
 * the (N*Q, N) class scores (log-probabilities; Siamese: mean p(same)). */
int mela_metric_evaluate(mela_metric *mt, const float *theta, const mela_task *task, int slot,
                         double *loss, double *acc, float *out);
int mela_metric_reserve(mela_metric *mt, int slots, int kernel_threads);
/* Siamese only: p(same class) of the two images a and b (each one example
 * of the model's input shape), through evaluation slot `slot`. */
int mela_metric_compare(mela_metric *mt, const float *theta, const float *a, const float *b,
                        double *p_same);

/* ------------------------------------------------------------ meta-training */

/*
 * A whole run: model, data, learner and schedule, as one flat configuration
 * whose every field is also a `--key value` option of `mela train` and a
 * metadata entry of the checkpoints (so `mela eval` rebuilds the same run).
 */
typedef struct mela_run_config {
    char learner[16];      /* a name of the learner table (mela_learner_info_at) */
    char dataset[16];      /* omniglot | sinusoid */
    char data_dir[512];    /* folder with images_background.zip ... ("": none given) */
    char split[16];        /* vinyals (train/val/test) | trainval (train+val / val / test: Snell et al.;
                              best = last, no patience) | lake (background / koch_val / koch_test)
                              | finn (Finn et al.'s random 1,100 / 100 / 423 characters) */
    char cache_dir[512];   /* "" = default */
    mela_task_spec train;  /* meta-training tasks */
    mela_task_spec test;   /* validation and test tasks (ways, shots 0: as train) */
    /* learners that adapt by gradient steps */
    int steps, test_steps; /* inner steps in meta-training and at test */
    float inner_lr;
    int first_order;       /* 1: drop the second-order terms */
    int lslr, msl, bnwb;   /* MAML++ switches (see mela_gbml_config) */
    int msl_anneal;        /* MAML++: iterations over which the step weights anneal
                            * (-1: a tenth of the run, see mela_run_msl_anneal) */
    int da_until;          /* MAML++ (mamlpp): first-order meta-gradients until this
                            * iteration (0: never, -1: a third of the run,
                            * mela_run_da_until) */
    int inner_adam, inner_batch, test_inner_batch, nontransductive; /* Reptile */
    int inner_sum;         /* the support loss summed over the classes (see
                            * mela_gbml_config); a checkpoint without it is 0 */
    /* learners that compare */
    int pairs;             /* Siamese: pairs per training batch */
    int augment;           /* metric learners: Koch's affine distortions of every
                            * training image (Siamese pairs: on by default;
                            * ProtoNets and Matching episodes: off) */
    int background;        /* ProtoNets: background windows per training episode
                            * (mela_metric_config; 0: plain episodes) */
    float scale;           /* Matching: multiplier of the cosine attention logits */
    int learn_scale;       /* Matching: 1 = the multiplier is learned */
    /* the outer loop */
    float outer_lr;        /* Adam (Reptile: the meta step, annealed to 0) */
    float clip_grad;       /* the meta-gradient (Reptile: the meta-step direction)
                            * scaled to this global L2 norm when above it (0: off) */
    int lr_decay_every;    /* halve outer_lr every this many iterations (0: never) */
    int cosine_lr;         /* cosine annealing of outer_lr to min_lr over the run (MAML++) */
    float min_lr;
    int meta_batch;        /* tasks per meta-iteration */
    int iterations;        /* meta-iterations */
    char model[512];       /* conv4 | mlp | search (MetaNAS's search network of
                            * cells, width and depth cells) | the path of a
                            * model-definition file (a cell network, JSON) */
    float nas_temp_end;    /* search: the mixtures' softmax temperature at the last
                            * iteration (1: none; mela_nas_schedule) */
    int nas_warmup;        /* search: iterations in which alpha is frozen */
    int width, depth;      /* conv4 filters and blocks */
    int maxpool;           /* conv4: 1 max-pool, 0 stride-2 convs */
    int image_size;        /* side of the square input images */
    char resize[16];       /* how images become image_size: area (the area
                            * filter, grey levels) | nearest (the nearest pixel,
                            * as PIL resized the papers' 1-bit Omniglot PNGs);
                            * a checkpoint without it is area */
    char init[16];         /* what the weights start from: xavier (Xavier-uniform
                            * convolutions, batch-norm scale 1) | pytorch-0.4
                            * (PyTorch 0.4's defaults, as the 2017 papers' code:
                            * mela_model_init); a checkpoint without it is xavier */
    long long seed;        /* training draws */
    long long test_seed;   /* the fixed test episodes */
    int threads;           /* threads of the run (results do not depend on it) */
    int val_every;         /* iterations between validations (0: never) */
    int patience;          /* stop when the best validation score is this many
                            * iterations old (0: never; the run is then complete) */
    int val_episodes;
    int test_episodes;
    char out_dir[512];     /* checkpoints and metrics ("": write nothing) */
} mela_run_config;

/* The defaults of the papers for a learner, a dataset and a number of ways
 * (MAML, Finn et al. 2017: "omniglot" 5-way 1 step of 0.4, meta-batch 32;
 * 20-way 5 steps of 0.1, meta-batch 16; "sinusoid": K = 10, 1 step of 0.01,
 * meta-batch 25; each learner's page in docs/learners/ gives its own).
 * data_dir is left empty ("": the caller says where the data is) and out_dir
 * is "runs/<learner>-<dataset>". Returns 0 or -1 (unknown learner or dataset). */
int mela_run_defaults(mela_run_config *rc, const char *learner, const char *dataset, int ways);
/* A split's evaluation protocol over the defaults, for every learner:
 * "vinyals" (Vinyals et al.'s class split, episodes as the defaults say),
 * "trainval" (the same test classes, training on Vinyals' train and val
 * classes, 1,200 characters, as Snell et al.'s final models; validation
 * still scores the val classes, which are then training classes, so the
 * best checkpoint is the last, and a patience or
 * `mela tune` is refused) or "lake" (Lake et al. 2015 / Koch et al. 2015:
 * the background set to train, 10 + 10 evaluation alphabets to validate and
 * test, one-shot episodes drawn within one alphabet, one query per class;
 * give the defaults 20 ways for Lake's 20-way task) or "finn" (Finn et
 * al.'s code's split, the protocol Li et al. report on: 1,100 / 100 / 423 characters
 * drawn at random from all 50 alphabets, so the test characters' alphabets
 * are trained on; tasks of N different characters, each in a random
 * rotation; mela_split_finn). Returns 0 or -1 (an unknown split). */
int mela_run_protocol(mela_run_config *rc, const char *split);
/* Sets one field from text ("ways", "5"); range-checked. Returns 0 or -1
 * with a message naming the key and the value. */
int mela_run_set(mela_run_config *rc, const char *key, const char *value);
/* Checks the whole configuration (ways vs. shots vs. data...). */
int mela_run_check(const mela_run_config *rc);
/* 1 for regression runs (sinusoids), 0 for classification. */
int mela_run_regression(const mela_run_config *rc);
/* 1 when the run trains on its validation classes (split trainval): its
 * validation cannot select a checkpoint (best = last), stop it (no
 * patience) or rank tuning trials. */
int mela_run_trains_on_val(const mela_run_config *rc);
/* The validation and test task specification, zeros resolved. */
mela_task_spec mela_run_test_spec(const mela_run_config *rc);
/* The episode flags (MELA_EPISODE_*) of the run's training (train = 1) or
 * evaluation episodes: within one alphabet when evaluating on Lake's split,
 * different characters in every task of Finn et al.'s. */
unsigned mela_run_episode_flags(const mela_run_config *rc, int train);
/* MAML++'s schedules in iterations, the run-relative defaults (-1) resolved. */
int mela_run_msl_anneal(const mela_run_config *rc);
int mela_run_da_until(const mela_run_config *rc);
/* A configuration from a file: a text file of "key value" lines (what
 * mela_run_config_save and `mela tune` write; '#' starts a comment, ""
 * quotes a value with spaces; the defaults of its learner, dataset and ways
 * fill what it does not name), a checkpoint or run state written by a run
 * (*.safetensors: the configuration in its metadata), or a run's directory
 * (its state.safetensors, else best.safetensors). Checked (mela_run_check).
 * Returns 0 or -1 with a message naming the file (and line). */
int mela_run_config_load(mela_run_config *rc, const char *path);
/* Every option of rc as a text file mela_run_config_load reads, after
 * `comment` (may be NULL; each of its lines becomes a '#' line). 0 or -1. */
int mela_run_config_save(const mela_run_config *rc, const char *path, const char *comment);
/* The i-th option (NULL past the end): its key, a one-line help, and the
 * current value of rc as text in buf. */
const char *mela_run_option(int i, const mela_run_config *rc, char *buf, size_t n,
                            const char **help);

/* ---------------------------------------------------------------- learners */

/*
 * Every learner behind one interface. A learner is built from a run
 * configuration (its model, its learner-specific graphs and its outer
 * optimiser) and then, whatever it is:
 *
 *     mela_learner *l = mela_learner_new(&rc, 0);
 *     float *theta = calloc(mela_layout_size(mela_learner_layout(l)), sizeof(float));
 *     mela_rng r = mela_rng_new(1);
 *     mela_learner_init(l, theta, &r);
 *     mela_tasks_opts o;
 *     mela_learner_tasks(l, 1, &o);              // what its training tasks are
 *     ... mela_tasks_new(ds, train_split, &o) ...
 *     for (it = 1; it <= iterations; it++)        // draw rc.meta_batch tasks, then
 *         mela_learner_step(l, theta, it, n, tasks, &loss, &acc);
 *     mela_learner_evaluate(l, theta, &task, 0, &loss, &acc, probs);
 *
 * The learners, in the table order of mela_learner_info_at: maml, fomaml,
 * metasgd, anil, mamlpp, reptile (adapt by gradient steps: mela_gbml),
 * protonet, matchnet, siamese (compare: mela_metric).
 */
typedef struct mela_learner mela_learner;

typedef struct mela_learner_info {
    const char *name;  /* "maml" */
    const char *about; /* one line, with the paper */
    int adapts;        /* 1: adapts by inner gradient steps (steps, inner_lr...) */
    int any_ways;      /* 1: evaluation tasks may have any number of ways
                        * (0: as many as the head has outputs) */
    int compares;      /* 1: says p(same) of two images (mela_learner_compare) */
} mela_learner_info;

/* The i-th learner (NULL past the end), or the one named (NULL, with a
 * message listing the names, when there is none). */
const mela_learner_info *mela_learner_info_at(int i);
const mela_learner_info *mela_learner_find(const char *name);

/* Builds the learner of rc (checked first) with its model. query_rows > 0:
 * evaluation query sets have exactly that many rows (classifying the user's
 * images). NULL with a message on a bad configuration. */
mela_learner *mela_learner_new(const mela_run_config *rc, int query_rows);
void mela_learner_free(mela_learner *l);
const mela_learner_info *mela_learner_info_of(const mela_learner *l);
const mela_run_config *mela_learner_config(const mela_learner *l);
/* What is learned: the model's views, then the learner's own. */
const mela_layout *mela_learner_layout(const mela_learner *l);
/* theta (layout size floats) initialised from r; the optimiser restarts. */
void mela_learner_init(mela_learner *l, float *theta, mela_rng *r);
/* The tasks it trains on (train = 1) or is evaluated on (0): kind, spec,
 * flags, pairs; seed 0 and slots 1 (the caller sets both). */
void mela_learner_tasks(const mela_learner *l, int train, mela_tasks_opts *o);
/* Meta-iteration `it` (1..rc.iterations; schedules depend on it) on tasks
 * [0..n) on rc.threads threads: the meta-gradient (or Reptile's direction),
 * clipped to rc.clip_grad (mela_clip_grad_norm), and the outer update of
 * theta. Mean query loss and accuracy into *loss, *acc (either may be
 * NULL). The same bits for any thread count. Returns 0 or -1; a non-finite
 * loss or meta-gradient is an error naming the iteration (and the view) and
 * leaves theta and the optimiser unchanged. */
int mela_learner_step(mela_learner *l, float *theta, int it, int n, const mela_task *tasks,
                      double *loss, double *acc);
/* Makes `slots` evaluation slots (executors), each giving kernel_threads
 * threads to its convolutions. */
int mela_learner_reserve(mela_learner *l, int slots, int kernel_threads);
/* Scores one evaluation task through slot `slot` (calls on different slots
 * may run on different threads at once): query loss, accuracy (0 for
 * regression) and, if probs is not NULL, the query outputs: class
 * probabilities, rows x ways (Siamese: the mean p(same) against each class's
 * support), or regression predictions (Q, 1). Returns 0 or -1. */
int mela_learner_evaluate(mela_learner *l, const float *theta, const mela_task *t, int slot,
                          double *loss, double *acc, float *probs);
/* Learners whose evaluation holds statistics of the training data in theta
 * (the metric learners' batch-norm population statistics,
 * mela_metric_calibrate) set them from the weights in theta, over training
 * tasks 0..tasks-1 of ts (a stream of mela_learner_tasks(l, 1, ...)); the
 * others leave theta alone. The run loop calls it before every validation
 * with mela_learner_calibration_tasks(l) tasks. Returns 0 or -1. */
int mela_learner_calibrate(mela_learner *l, float *theta, mela_tasks *ts, int tasks);
/* How many training tasks calibration uses (0: the learner has nothing to
 * calibrate): enough for about 8,192 images, at least 8, at most 256. */
int mela_learner_calibration_tasks(const mela_learner *l);
/* p(same class) of images a and b (one input each); learners with `compares`. */
int mela_learner_compare(mela_learner *l, const float *theta, const float *a, const float *b,
                         double *p_same);
/* The learner's own state beyond theta (the outer optimiser's moments and
 * step count) to and from a safetensors file, so that a run can continue
 * exactly. load checks that the file fits this learner. Returns 0 or -1. */
int mela_learner_save_state(const mela_learner *l, const char *path);
/* Per-op-type timing of the training executors (mela_exec_profile): switch
 * it on, run, then read the sums over all threads (mela_op_count entries). */
void mela_learner_set_profiling(mela_learner *l, int on);
void mela_learner_profile(mela_learner *l, double *seconds, long *calls);
/* Ops run per training task, and bytes of one training executor's arena. */
int mela_learner_plan_steps(mela_learner *l);
/* Seconds spent in outer updates (the optimiser) since the learner was made. */
double mela_learner_update_seconds(const mela_learner *l);
size_t mela_learner_arena_bytes(mela_learner *l);
int mela_learner_load_state(mela_learner *l, const char *path);

/* Progress of a run, for the caller to print. */
typedef struct mela_progress {
    int iteration, iterations;
    double loss, acc;           /* mean over the last report interval */
    double val_loss, val_acc;   /* latest validation (NaN before the first) */
    double best_val;            /* best validation accuracy (regression: -MSE) */
    double seconds, eta;        /* elapsed, estimated remaining */
    double tasks_per_second;
    int validated;              /* 1 when this report follows a validation */
    int best_iteration;         /* the iteration of best_val (0: none yet) */
    int stopped_early;          /* 1: the patience ran out at this report */
    /* where the time went since the start (seconds): drawing tasks, the
     * learners' forward and backward passes, the outer updates, validation */
    double data_s, grad_s, update_s, validate_s;
} mela_progress;

typedef void (*mela_progress_fn)(const mela_progress *p, void *ctx);

/* Evaluation result: mean and 95% CI half-width over episodes. */
typedef struct mela_eval_result {
    int episodes;
    int regression, ways, shots, steps; /* what was evaluated */
    double acc, acc_ci;   /* classification (fractions, not %) */
    double loss, loss_ci; /* query loss (regression: MSE) */
} mela_eval_result;

/* The data of a run: a dataset and its training, validation and test
 * splits (all NULL for sinusoids). */
typedef struct mela_run_data {
    const mela_dataset *ds;
    const mela_split *train, *val, *test;
} mela_run_data;

/*
 * A run: a learner, its data and its weights. The loop is the same for every
 * learner: draw meta_batch tasks (a pure function of seed and iteration),
 * mela_learner_step, validate every val_every iterations on the fixed
 * validation episodes (test_seed), keep the best.
 *
 *     mela_run *r = mela_run_open(&rc, NULL);       // NULL: the data rc names
 *     mela_run_fit(r, 100, print_progress, NULL);
 *     mela_eval_result res;
 *     mela_run_test(r, 600, &res);
 *     mela_run_close(r);
 */
typedef struct mela_run mela_run;

/* Builds the learner of rc and takes the data: `data` when given (it must
 * outlive the run: tests and programs with a dataset of their own), else
 * Omniglot from rc's data_dir and split, or nothing for sinusoids. When
 * out_dir is not "" it is checked first (created, written to) and held by
 * the run until it is closed (a second process is refused). NULL with a
 * message naming what failed. */
mela_run *mela_run_open(const mela_run_config *rc, const mela_run_data *data);
void mela_run_close(mela_run *r);
mela_learner *mela_run_learner(mela_run *r);
/* The current weights (layout mela_learner_layout; writable, e.g. to load). */
float *mela_run_theta(mela_run *r);
/* Meta-trains from a fresh initialisation (seed), or continues a resumed
 * run (mela_run_resume) or one that stopped (a second call goes on where
 * the first stopped; after a complete run there is nothing to do). When
 * out_dir is not "": writes out_dir/last.safetensors (every val_every
 * iterations and at the end), out_dir/best.safetensors (best validation),
 * out_dir/metrics.jsonl and .csv, and out_dir/state.safetensors, what the
 * run continues from, at the start, at every validation and on a stop. A
 * new run refuses an out_dir that holds a run (mela_run_saved). Reports
 * progress every `report` iterations (< 1: every iteration; a resumed run:
 * 0 keeps the interval it was started with) and after each validation.
 * Afterwards theta holds the final weights. A non-finite training loss,
 * meta-gradient or validation score stops the run with an error naming the
 * iteration; nothing is written with a non-finite score or weights, so the
 * files hold the last good state. A run with a patience is complete when
 * its best validation score is that many iterations old (progress says
 * stopped_early; resuming it does nothing more). Returns 0 when the run is complete, 1 when
 * it stopped at a request (mela_run_set_stop; its state saved), or -1 with
 * a message; files written before a failure stay in place. */
int mela_run_fit(mela_run *r, int report, mela_progress_fn fn, void *ctx);

/* mela_run_fit that stops after iteration `until` (at most the run's
 * iterations): the state is saved there, and a later fit (or
 * mela_run_resume) goes on from it to the same files as a run never
 * paused. Returns 0 when the run has done `until` iterations (or had before
 * the call), 1 when it stopped at a request first, or -1 as mela_run_fit.
 * `mela tune` trains each trial rung by rung with it. */
int mela_run_fit_until(mela_run *r, int until, int report, mela_progress_fn fn, void *ctx);
/* The latest validation of the run (NaN before the first) and the best
 * score (accuracy; regression -MSE; -inf before the first); any pointer may
 * be NULL. Returns the iterations done. */
int mela_run_validation(const mela_run *r, double *val_loss, double *val_acc, double *best);

/* Stopping a run cleanly: fit reads *flag after every iteration and, when it
 * is non-zero, saves the state and returns 1. A signal handler may set it
 * (the library installs none). NULL: no stopping. */
void mela_run_set_stop(mela_run *r, volatile sig_atomic_t *flag);

/* Continues the run saved in dir (dir/state.safetensors) exactly: it is
 * rebuilt from the configuration it was started with, with its weights,
 * optimiser, iteration, best score and metrics position, and the records
 * written after that state are cut; mela_run_fit then carries on and leaves
 * the same files as a run never interrupted (the metrics' seconds aside).
 * `overrides` (key=value) may change only what results do not depend on:
 * threads, data_dir and cache_dir; other keys are accepted only with the
 * value they have (a longer run is another run: schedules depend on the
 * number of iterations). Checkpoints written after a resume still record the
 * configuration the run was started with. data: as mela_run_open. NULL with
 * a message naming the file or the option. */
mela_run *mela_run_resume(const char *dir, int nover, const char *const *overrides,
                          const mela_run_data *data);
/* 1 when dir holds a run's files (state, best or last checkpoint, metrics),
 * 0 when it does not (or does not exist). */
int mela_run_saved(const char *dir);
/* Removes the files of the run in dir (those of mela_run_saved and the temp
 * files of killed writers); the directory stays. 0, or -1 naming the file. */
int mela_run_remove(const char *dir);
/* Iterations done, and the configuration the run uses. */
int mela_run_iteration(const mela_run *r);
const mela_run_config *mela_run_config_of(const mela_run *r);
/* Scores theta on `episodes` fixed test episodes (test_seed) of the test
 * split (0: rc's test_episodes). Returns 0 or -1. */
int mela_run_test(mela_run *r, int episodes, mela_eval_result *res);

/* mela_run_open, mela_run_fit and mela_run_close in one call. */
int mela_run_train(const mela_run_config *rc, int report, mela_progress_fn fn, void *ctx);

/* Loads a checkpoint written by mela_run_train, rebuilds its run and
 * evaluates it on `episodes` fixed test episodes (test_seed, test split)
 * with `steps` inner steps (-1: the configured test_steps). `overrides` is a
 * list of key=value pairs applied after the checkpoint's configuration (e.g.
 * data_dir, threads, test_queries). Returns 0 or -1. */
int mela_run_eval(const char *checkpoint, int nover, const char *const *overrides, int episodes,
                  int steps, mela_eval_result *res);

/* Pictures of what the model of a run does (`mela eval --show N`), as a PNG
 * at path. Classification: the first n (1..100) of the fixed test episodes
 * (those mela_run_test scores first), each with its support images and
 * classes and its queries with the predicted and true class, the wrong ones
 * framed red (mela_plot_episodes_png). Regression (sinusoids): n (1..64)
 * test tasks, one chart each, two to a row (mela_plot_charts_png): the true
 * curve, the model's curve before adaptation, after test_steps inner steps
 * and after 10 (when test_steps is below 10), and the K support points
 * adapted to, as Finn et al.'s figure 2. Returns 0 or -1. */
int mela_run_show_run(mela_run *r, int n, const char *path);
/* The same from a checkpoint, rebuilt and overridden as mela_run_eval does
 * (steps: the inner steps at test time, -1: its test_steps). In a job of
 * several processes (mela_dist_init) only rank 0 draws; the others return 0
 * at once. */
int mela_run_show(const char *checkpoint, int nover, const char *const *overrides, int episodes,
                  int steps, const char *path);

/* Few-shot prediction on the user's own images (`mela adapt`). */
typedef struct mela_adapt_result {
    int nclasses;
    char **classes;  /* support class names, sorted; label i is classes[i] */
    int nquery;
    float *scores;   /* nquery x nclasses: class probabilities (Siamese: the
                      * mean p(same) against the class's support images) */
    int *pred;       /* nquery predicted labels */
    int nimages;     /* support and query images read */
    int nresized;    /* ... of which were not of the model's input size */
    int ncolour;     /* ... of which were in colour (converted to grey) */
} mela_adapt_result;

/* Loads a classification checkpoint, adapts it with `steps` inner steps (-1:
 * its test_steps) to the labelled images of support_dir/<class>/<image>
 * (PNG/JPEG, any size or colour: converted to grey and resized to the
 * model's input; inverted first when `invert`, so that dark strokes on white
 * paper become ink = 1 as in Omniglot), and scores the query images (one
 * batch: batch norm sees all of them, as in meta-training). The support set
 * must have exactly the checkpoint's number of ways and the same number of
 * images in every class. Returns 0 or -1 with a message naming the folder,
 * class or file. */
int mela_run_adapt(const char *checkpoint, const char *support_dir, int nquery,
                   const char *const *query_paths, int steps, int invert, mela_adapt_result *res);
void mela_adapt_result_free(mela_adapt_result *res);

/* Siamese checkpoints: the probability that images a and b (files, loaded
 * as mela_run_adapt loads them) show the same class. Returns 0 or -1. */
int mela_run_compare(const char *checkpoint, const char *a, const char *b, int invert, double *p_same);

/* ---------------------------------------------------------------- finding */

/* One-shot detection (`mela find`, docs/find.md): a metric checkpoint
 * (protonet, matchnet, siamese) compares every 28 x 28 window of a picture,
 * at several scales, with a support set, and returns boxes.
 *
 *     mela_find_opts o = {0};                        // the defaults
 *     mela_finder *f = mela_finder_open("best.safetensors", &o);
 *     mela_finder_support(f, ways, 1, crops);        // ways x 28 x 28, ink = 1
 *     mela_find_box *b; int n;
 *     mela_finder_find(f, pic, H, W, MELA_FIND_THRESHOLD, &b, &n); ... free(b);
 *     mela_finder_close(f);
 *
 * The embedding runs once per picture and scale, densely: windows every
 * `stride` pixels of the resized picture. Batch norm uses fixed statistics:
 * the checkpoint's population statistics (bnI.running_mean and _var), or,
 * for a checkpoint without them, those of the support crops as one batch.
 * Each support crop is embedded on a blank canvas as a window sees it, as
 * it is and moved by half the stride each way (9 views; a window takes the
 * nearest, and its box moves with it). A window is a candidate for its
 * nearest class only, and for none when the blank window is nearer still;
 * its score is p(same) (Siamese), or for ProtoNets and Matching
 * 1 - d / d(blank), d the squared distance to the class prototype (1 -
 * cosine for Matching) and d(blank) that of the blank window: 1 is the
 * support drawing itself, 0 as far as empty paper. Boxes overlapping a
 * better one by more than nms_iou are dropped (non-maximum suppression). */
typedef struct mela_find_opts {
    const float *sizes; /* object sizes in pixels of the picture (NULL: 20, 24, 28, 34, 40) */
    int nsizes;
    int stride;         /* window step in the resized picture: 16, 8, 4 or 2
                         * (0: MELA_FIND_STRIDE) */
    float nms_iou;      /* 0: MELA_FIND_NMS_IOU */
    int nms_per_class;  /* 1: suppress only boxes of the same class (0: any) */
    int max_boxes;      /* per picture (0: 50) */
    int threads;        /* of the dense pass, 1..4 (0: 1) */
    int plain_support;  /* 1: each support crop as it is; 0: also moved by half
                         * the stride each way (9 views, the nearest counts) */
    int score;          /* ProtoNets, Matching: what a window's distance d is
                         * measured against, MELA_FIND_SCORE_* */
} mela_find_opts;

/* Scores 1 - d / ref: ref the distance of the class from the blank window;
 * or the smaller of that and its distance from the nearest other support
 * class (a drawing as far from the class as another class is scores 0);
 * or, per window, its distance from the runner-up (the blank window or
 * another class: Lowe's ratio test). */
enum { MELA_FIND_SCORE_BLANK = 0, MELA_FIND_SCORE_OTHERS = 1, MELA_FIND_SCORE_RATIO = 2 };

/* The threshold of "found" (mela find's default), and the IoU above which a
 * box is suppressed by a better one (things do not overlap much). */
#define MELA_FIND_THRESHOLD 0.75f
#define MELA_FIND_NMS_IOU 0.1f
/* The window step: 4 pixels (4 passes of the picture; 8 costs one). */
#define MELA_FIND_STRIDE 4

/* A box: top-left corner, size, score, support class (label). */
typedef struct mela_find_box {
    float x, y, w, h, score;
    int label;
} mela_find_box;

typedef struct mela_finder mela_finder;

/* Reads a checkpoint of `mela train`; NULL with the error set when it is not
 * a metric learner's (a gradient-based checkpoint names its learner) or not
 * the max-pool Conv-4 of 28 x 28 inputs. */
mela_finder *mela_finder_open(const char *checkpoint, const mela_find_opts *o);
void mela_finder_close(mela_finder *f);
/* How the checkpoint's training images were resized, as mela_folder_load
 * flags: MELA_FOLDER_NEAREST for `--resize nearest` (load the support crops
 * with it; mela_finder_find then resizes pictures by the nearest pixel too),
 * else 0 (the area filter). */
unsigned mela_finder_image_flags(const mela_finder *f);
/* The support set: ways * shots crops of 28 x 28 floats, class by class
 * (ink = 1, as mela_image_load with MELA_FOLDER_INVERT gives). It also
 * fixes the batch-norm statistics. 0 or -1. */
int mela_finder_support(mela_finder *f, int ways, int shots, const float *images);
/* Boxes with score >= threshold in the picture (H x W floats, ink = 1),
 * best first, into *boxes (malloc'ed; free it; *nboxes = 0: nothing found).
 * A picture smaller than 28 x 28, or smaller than every object size asked
 * for, is an error. 0 or -1. */
int mela_finder_find(mela_finder *f, const float *image, int H, int W, float threshold,
                     mela_find_box **boxes, int *nboxes);

/* The baseline needing no learning: normalised cross-correlation of each
 * support crop (28 x 28) with every window of the picture resized as
 * mela_finder_find does (o's sizes, NMS and max_boxes; NULL: defaults),
 * windows every 2 pixels of the resized picture; a blank window scores
 * nothing. Score: the NCC in [-1, 1] of the best-matching crop. */
int mela_ncc_find(const float *support, int ways, int shots, const float *image, int H, int W,
                  const mela_find_opts *o, float threshold, mela_find_box **boxes, int *nboxes);

/* Intersection over union of two boxes given as (x, y, w, h). */
float mela_box_iou(const float *a, const float *b);
/* Non-maximum suppression in place: sorts boxes by score (best first) and
 * keeps, greedily, each box whose IoU with every kept box (of its class when
 * per_class) is at most iou, up to max_keep. Returns the number kept. */
int mela_nms(mela_find_box *boxes, int n, float iou, int per_class, int max_keep);
/* Detections against ground truth (label and box of each gt): in order of
 * descending score each detection takes the unmatched gt box of its label
 * with the largest IoU >= min_iou; tp[i] = 1 when detection i took one.
 * 0 or -1. */
int mela_match_boxes(const mela_find_box *det, int ndet, const mela_find_box *gt, int ngt,
                     float min_iou, int *tp);
/* Average precision of n scored detections (tp[i]: a true positive) against
 * npos positives: the area under the precision-recall curve with precision
 * made non-increasing (all-point interpolation, as PASCAL VOC since 2010).
 * Equal scores count their false positives first. NaN when npos is 0. */
double mela_average_precision(int n, const float *scores, const int *tp, int npos);
/* ------------------------------------------------------------------ MetaNAS */

/*
 * MetaNAS (Elsken et al. 2020; docs/learners/metanas.md): a run whose model
 * is "search" meta-learns the mixture weights "alpha" of a network of cells
 * (mela_cellnet_new, search = 1: 1 input channel, image_size, `width`
 * channels, `depth` cells of 2 states, stem stride 2) with its weights, under
 * any learner. Each time validation improves, the run writes the discrete
 * cell (mela_cellnet_derive, from softmax(alpha / T) at the temperature T
 * of the weights) to out_dir/arch.json and its picture to
 * out_dir/cell.png and out_dir/cell.svg, and that network with the search's
 * weights of its ops (no retraining) to out_dir/discrete.safetensors. At
 * every validation it writes the same of the last weights as
 * last-arch.json, last-cell.png, last-cell.svg and last-discrete.safetensors
 * (beside last.safetensors). `--model out_dir/arch.json` trains that network
 * from scratch.
 *
 * A model-definition file is JSON:
 *     {"mela_model": "cellnet", "width": 16, "cells": 3, "nodes": 2,
 *      "stem_stride": 2, "cell": ["conv5", "sep3", "skip"]}
 * ("cell": the op of each edge, mela_cell_op_name; other keys are ignored).
 * The input and the head come from the run (image_size, ways).
 */
/* Reads a model-definition file into s (input, outputs and search 0). 0 or
 * -1 with a message naming the file and the key. */
int mela_nas_read_model(const char *path, mela_cellnet_spec *s);
/* Writes the discrete network s as a model-definition file (in one step);
 * weight (or NULL): each edge's softmax weight, written as "weight". */
int mela_nas_write_model(const char *path, const mela_cellnet_spec *s, const float *weight);
/* The cell network of rc's model ("search", or a file) with `outputs` head
 * units (0: an embedding). 0 or -1. */
int mela_nas_search_spec(const mela_run_config *rc, int outputs, mela_cellnet_spec *s);
/* From theta (a buffer of layout L, holding "alpha") of a search run: the
 * discrete cell to dir/<prefix>arch.json and its pictures to
 * dir/<prefix>cell.png and dir/<prefix>cell.svg (prefix NULL: ""). 0 or -1. */
int mela_nas_write(const mela_run_config *rc, const mela_layout *L, const float *theta, const char *dir,
                   const char *prefix);
/* MetaNAS's schedules (a search whose nas_temp_end is not 1 or whose
 * nas_warmup is not 0 has the view "alpha.schedule" (T, g),
 * mela_cellnet_spec): at iteration it (1..iterations) of a run of
 * `iterations` with `warmup` iterations of warm-up, the softmax temperature
 * T is 1 while it <= warmup, then linear in it,
 * 1 - (1 - t_end) (it - warmup) / (iterations - warmup), reaching t_end at
 * the last iteration. alpha's gradient scale g is 0 in the warm-up (alpha
 * frozen) and T^2 after: an SGD step of rate a on alpha then moves the
 * logits alpha / T by -a dL/d(alpha / T) at any T, as at T = 1 (without it
 * the inner loop's steps on the logits would grow as 1 / T^2). */
void mela_nas_schedule(int it, int iterations, int warmup, float t_end, float *T, float *g);
/* 1 if rc asks for a schedule (nas_temp_end != 1 or nas_warmup > 0). */
int mela_nas_scheduled(const mela_run_config *rc);
/* Sets "alpha.schedule" of theta (layout L) to iteration it's (T, g); a
 * layout without it is left alone. The run loop calls it before every
 * iteration's step, so validation, the checkpoints and the test after
 * iteration it use its temperature, and a checkpoint carries it (`mela eval`
 * scores it as it was). A resumed run sets it from the iteration, so it
 * gives the same bits as an uninterrupted one. */
void mela_nas_set_schedule(const mela_run_config *rc, const mela_layout *L, float *theta, int it);

/* ------------------------------------------------- more than one process
 *
 * Under MPI (when mela is built with it: mela_dist_backend), a program
 * started by mpirun or srun as P processes calls mela_dist_init first; from
 * then on every process calls the mela_run_* functions with the same
 * arguments in the same order (mela_learner_step too), and they spread
 * their work: the tasks of every meta-batch (in blocks of consecutive tasks,
 * the first B % P processes one more), the images of a metric learner's one
 * training episode (blocks of 8 images: mela_metric_grad), the validation and test episodes and
 * the tasks of mela_metric_calibrate (and mela_tune_search, its trials:
 * mela_tune.h). Per-task
 * gradients are summed in task order, the running sum passed from rank to
 * rank, so theta after every update has the same bits as one process with
 * the same seed, for any P. Only rank 0 writes (out_dir is rank 0's); a
 * failure on one process is agreed on at the next collective and returned by
 * every process with that rank's message (mela_dist_error_shared). See
 * docs/distributed.md. Without mela_dist_init (or without MPI) a run is one
 * process, as before. */

/* Joins the job the process was started in (MPI_Init_thread, funneled: only
 * the calling thread talks to MPI); a process started alone stays one
 * process and MPI is not started. argc, argv as main's. Returns 0 or -1. */
int mela_dist_init(int *argc, char ***argv);
/* Leaves the job (MPI_Finalize when mela_dist_init started MPI). */
void mela_dist_finalize(void);
/* This process's rank, 0..P-1, and P (1 without a job). */
int mela_dist_rank(void);
int mela_dist_size(void);
/* 1 when the last error (mela_last_error) is one every process of the job
 * returned, so that one of them (rank 0) need say it; 0 when it is this
 * process's own, and the others may be waiting for it: then end the job
 * with mela_dist_abort. */
int mela_dist_error_shared(void);
/* Ends every process of the job with exit status code (MPI_Abort); with one
 * process it returns and does nothing. Only for the caller's own decision
 * to end the program (the library itself never calls it). */
void mela_dist_abort(int code);
/* "MPI 3.1 (Open MPI v4.1.4)" or "none (built without MPI)". */
const char *mela_dist_backend(void);
/* Payload bytes this process has handed to MPI to send (a broadcast counted
 * once, at its root) and seconds it has spent in MPI calls, waiting for the
 * others included, since it started. Zero without a job. */
void mela_dist_counters(double *bytes_sent, double *seconds);
/* ------------------------------------------------------------- predictors */

/*
 * A trained checkpoint that adapts to the caller's own arrays, again and
 * again (the Python binding's Model; mela_run_adapt is one use of it):
 *
 *     mela_predictor *p = mela_predictor_open("best.safetensors", 0, NULL);
 *     float probs[5 * 3];                   // 3 queries, 5 classes
 *     mela_predictor_adapt(p, 5, xs, ys, 3, xq, -1, probs);
 *     mela_predictor_close(p);
 *
 * An example is what the model takes: classification, one grey image of
 * 1 x image_size x image_size floats (ink = 1, as Omniglot); regression
 * (sinusoids), one x value. The checkpoint is read and checked (its
 * configuration, with `overrides` key=value applied, and its weights
 * against the model) when it is opened; the learner is built at the first
 * call and again only when the numbers of support and query examples or
 * the steps change.
 */
typedef struct mela_predictor mela_predictor;

/* NULL with a message naming the file, tensor or override. */
mela_predictor *mela_predictor_open(const char *checkpoint, int nover, const char *const *overrides);
void mela_predictor_close(mela_predictor *p);
/* The checkpoint's run configuration (overrides applied). */
const mela_run_config *mela_predictor_config(const mela_predictor *p);

/* Adapts to the support set (xs: nsupport examples; ys: their labels 0..N-1
 * as floats in any order, every class the same number of times and, unless
 * the learner takes any number of ways, N the checkpoint's ways;
 * regression: their y values) with `steps` inner steps (-1: the
 * checkpoint's test_steps; ignored by the metric learners) and scores the
 * nquery examples of xq (one batch, as mela_run_adapt). out receives
 * nquery x N class probabilities (Siamese: the mean p(same) against each
 * class) or, for regression, nquery predictions. When the learner's
 * evaluation tasks shuffle the support rows, they are shuffled under the
 * checkpoint's test_seed, as mela_run_adapt does. Nothing is kept of xs,
 * ys or xq. Returns 0 or -1 with a message. Not thread-safe: one
 * predictor per thread. */
int mela_predictor_adapt(mela_predictor *p, int nsupport, const float *xs, const float *ys,
                         int nquery, const float *xq, int steps, float *out);
/* Siamese checkpoints: p(same class) of examples a and b (one each), as
 * mela_run_compare on files. Returns 0 or -1 (a learner that does not
 * compare is an error naming it). */
int mela_predictor_compare(mela_predictor *p, const float *a, const float *b, double *p_same);

MELA_EXPORT_END
#ifdef __cplusplus
}
#endif
#endif
