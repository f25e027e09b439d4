/* Real-data learning test: a short training run on amazon-beauty (../shared/data, or $DPFORMER_DATA)
 * must beat the popularity baseline on validation NDCG@10. Skipped, saying so, if the data is absent. */
#include <stdlib.h>
#include <string.h>

#include "dpformer/train.h"
#include "testutil.h"

int main(void) {
    char path[1024];
    snprintf(path, sizeof path, "%s/amazon-beauty/sequences.txt", tu_data_dir());
    FILE *f = fopen(path, "r");
    if (!f) {
        printf("test_train_real_slow: %s not found: skipped\n", path);
        return 0;
    }
    fclose(f);
    dp_dataset ds;
    dp_error e;
    CHECK(dp_dataset_load(&ds, path, DP_FMT_SEQUENCES, &e) == 0);
    dp_train_config c = dp_train_config_default();
    c.model = dp_model_config_default(ds.n_items, 50);
    c.optim.lr = 1e-3;
    c.epochs = 3;
    c.batch_size = 256;
    c.progress = 0;
    c.seed = 1;
    dp_model *m = NULL;
    dp_train_result r;
    CHECK(dp_train(&ds, &c, &m, &r, &e) == 0);
    dp_rank_metrics pop;
    dp_popularity_eval(&ds, DP_SPLIT_VALID, 0, &pop);
    printf("amazon-beauty, 3 epochs: valid NDCG@10 %.4f (popularity %.4f), test NDCG@10 %.4f, %.1f s/epoch\n",
           r.valid.ndcg10, pop.ndcg10, r.test.ndcg10, r.seconds_per_epoch);
    CHECK(r.valid.ndcg10 > 1.5 * pop.ndcg10);
    CHECK(r.final_train_loss < r.first_train_loss);
    dp_model_free(m);
    dp_dataset_free(&ds);
    return tu_finish("test_train_real_slow");
}
