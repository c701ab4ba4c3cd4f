/* fuzz_tune.c - libFuzzer target: a search space of `mela tune` (its lines
 * are the input), parsed line by line (mela_tune_parse_line) and checked
 * (mela_tune_check). A space accepted must be written and read back to the
 * same draws, and every value it draws must be one its option accepts
 * (mela_run_set): what was checked is what the trials get. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mela_tune.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static mela_tune_spec s, back;
    static mela_tune_trial a, b;
    if (size > 4096)
        return 0;
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = 0;
    mela_tune_defaults(&s);
    int ok = 1;
    for (char *line = text, *next; line && ok; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = 0;
        ok = mela_tune_parse_line(&s, line, "input") == 0;
    }
    free(text);
    if (!ok || mela_tune_check(&s))
        return 0;
    char path[64];
    snprintf(path, sizeof path, "/tmp/mela-fuzz-tune-%d.txt", (int)getpid());
    mela_tune_defaults(&back);
    if (mela_tune_write(&s, path) || mela_tune_read(&back, path) || mela_tune_check(&back))
        abort();
    unlink(path);
    mela_run_config rc;
    mela_run_defaults(&rc, "maml", "omniglot", 5);
    for (int id = 0; id < 4; id++) {
        mela_tune_sample(&s, id, &a);
        mela_tune_sample(&back, id, &b);
        if (a.n != b.n)
            abort();
        for (int i = 0; i < a.n; i++)
            if (strcmp(a.values[i], b.values[i]) || mela_run_set(&rc, a.keys[i], a.values[i]))
                abort();
    }
    return 0;
}
