/* dump_episodes.c - writes episodes of libmela's sampler, raw, for the
 * Python test (python/tests/test_mela.py) to compare with mela.episodes bit
 * for bit. A client of the public API only.
 *
 *   py_dump_episodes omniglot DIR SPLIT WHICH N K Q SEED START COUNT FLAGS OUT
 *   py_dump_episodes folder   DIR all   NAME  N K Q SEED START COUNT FLAGS OUT
 *
 * OUT holds, per episode: x_support, x_query (float32), then l_support,
 * l_query, label, split_class, support_index, query_index, group (int32),
 * in the machine's byte order. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mela_data.h"

int main(int argc, char **argv)
{
    if (argc != 13) {
        fprintf(stderr, "usage: %s omniglot|folder DIR SPLIT WHICH N K Q SEED START COUNT FLAGS OUT\n", argv[0]);
        return 2;
    }
    const char *dir = argv[2], *kind = argv[3], *which = argv[4];
    int N = atoi(argv[5]), K = atoi(argv[6]), Q = atoi(argv[7]), count = atoi(argv[10]);
    unsigned long long seed = strtoull(argv[8], NULL, 10), start = strtoull(argv[9], NULL, 10);
    mela_dataset *ds = !strcmp(argv[1], "omniglot") ? mela_omniglot_load(dir, NULL) : mela_folder_load(dir, 28, 28, 0);
    mela_split *sp = NULL;
    if (ds) {
        if (!strcmp(kind, "vinyals"))
            sp = mela_split_vinyals(ds, dir, which);
        else if (!strcmp(kind, "finn"))
            sp = mela_split_finn(ds, which);
        else if (!strcmp(kind, "lake"))
            sp = mela_split_lake(ds, which);
        else
            sp = mela_split_all(ds, which, NULL, 0);
    }
    mela_sampler *s = sp ? mela_sampler_new(ds, sp, N, K, Q, (unsigned)atoi(argv[11])) : NULL;
    FILE *f = s ? fopen(argv[12], "wb") : NULL;
    if (!f) {
        fprintf(stderr, "dump_episodes: %s\n", s ? argv[12] : mela_last_error());
        return 1;
    }
    size_t img = (size_t)ds->C * ds->H * ds->W;
    for (int e = 0; e < count; e++) {
        const mela_episode *ep = mela_sampler_episode(s, seed, start + e);
        fwrite(ep->x_support, sizeof(float), N * K * img, f);
        fwrite(ep->x_query, sizeof(float), N * Q * img, f);
        fwrite(ep->l_support, sizeof(int), N * K, f);
        fwrite(ep->l_query, sizeof(int), N * Q, f);
        fwrite(ep->label, sizeof(int), N, f);
        fwrite(ep->split_class, sizeof(int), N, f);
        fwrite(ep->support_index, sizeof(int), N * K, f);
        fwrite(ep->query_index, sizeof(int), N * Q, f);
        fwrite(&ep->group, sizeof(int), 1, f);
    }
    int bad = fclose(f);
    mela_sampler_free(s);
    mela_split_free(sp);
    mela_dataset_free(ds);
    return bad ? 1 : 0;
}
