/* fuzz_options.c - libFuzzer target: the options of `mela train` (and of a
 * checkpoint's metadata), mela_run_set over the lines "key=value" of the
 * input, from the defaults of a learner and dataset picked by the first
 * byte, then mela_run_check. A value accepted is printed by mela_run_option
 * as a checkpoint stores it, and that text must be accepted back to the same
 * configuration: `mela eval` rebuilds runs that way. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mela_learn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Option key's value as text, or NULL when key is unknown. */
static const char *value_of(const mela_run_config *rc, const char *key, char *buf, size_t n)
{
    for (int i = 0;; i++) {
        const char *k = mela_run_option(i, rc, buf, n, NULL);
        if (!k || !strcmp(k, key))
            return k ? buf : NULL;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 4096)
        return 0;
    int nlearners = 0;
    while (mela_learner_info_at(nlearners))
        nlearners++;
    const char *learner = mela_learner_info_at(data[0] % nlearners)->name;
    const char *dataset = (data[0] / nlearners) % 2 ? "sinusoid" : "omniglot";
    mela_run_config rc;
    if (mela_run_defaults(&rc, learner, dataset, (data[0] >> 5) & 3 ? 20 : 5))
        abort();
    char *text = malloc(size);
    memcpy(text, data + 1, size - 1);
    text[size - 1] = 0;
    char buf[600], again[600];
    for (char *line = text, *next; line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = 0;
        char *eq = strchr(line, '=');
        if (!eq)
            continue;
        *eq = 0;
        if (mela_run_set(&rc, line, eq + 1))
            continue;
        /* The round trip of a checkpoint's metadata. */
        mela_run_config copy = rc;
        const char *shown = value_of(&rc, line, buf, sizeof buf);
        if (!shown)
            abort();
        if (mela_run_set(&copy, line, shown)) /* tests/regress/options/float-at-bound.txt */
            abort();
        if (strcmp(value_of(&copy, line, again, sizeof again), shown))
            abort();
    }
    free(text);
    if (mela_run_check(&rc) == 0) {
        mela_task_spec t = mela_run_test_spec(&rc);
        if (t.ways < 1 || t.shots < 1 || t.queries < 1)
            abort();
        mela_run_msl_anneal(&rc);
        mela_run_da_until(&rc);
    }
    return 0;
}
