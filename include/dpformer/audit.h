/* dpformer public API: empirical privacy auditing, the statistics part.
 *
 * An audit plants m canaries, includes each independently with probability 1/2 in the training data,
 * trains, scores every canary (higher score = "looks included") and turns the scores into a lower
 * bound on ε that holds with a chosen confidence: the one-run bound of Steinke, Nasr and Jagielski,
 * "Privacy Auditing with One (1) Training Run" (NeurIPS 2023). If a run's lower bound ever exceeds the
 * ε its accountant printed, the implementation is broken. Here: the bound for given counts, the bound
 * over the guesses made from scores, and the membership-inference AUC and TPR at a low FPR of the same
 * scores. All arithmetic in double. See docs/audit.md. */
#ifndef DPFORMER_AUDIT_H
#define DPFORMER_AUDIT_H

#include <stdint.h>

#include "dpformer/common.h"
#include "dpformer/data.h"
#include "dpformer/lm.h"
#include "dpformer/model.h"
#include "dpformer/noise.h"
#include "dpformer/text.h"

/* The p-value of v or more correct guesses out of r, for m canaries, under the hypothesis that the
 * training is (ε, δ)-DP (Steinke et al., the (ε, δ) form of their main theorem): with
 * q = e^ε / (1 + e^ε) and X ~ Binomial(r, q), β = P[X ≥ v] and, for δ > 0,
 * α = max over i = 1..v of P[v − i ≤ X < v] / i; the p-value is min(1, β + 2·m·δ·α).
 * Requires 0 ≤ v ≤ r ≤ m, ε ≥ 0, 0 ≤ δ < 1. */
double dp_audit_p_value(int64_t m, int64_t r, int64_t v, double eps, double delta);

/* The largest ε whose p-value is at most `significance` (the (ε, δ) claim is then rejected at that
 * level): the lower bound on ε at confidence 1 − significance from one pre-chosen guess set. 0 when no
 * ε ≥ 0 is rejected. Accurate to 1e-6 in ε. Returns a negative value on invalid arguments (with err). */
double dp_audit_epsilon_lower_bound(int64_t m, int64_t r, int64_t v, double significance, double delta,
                                    dp_error *err);

/* What one audit's scores give. */
typedef struct {
    int64_t canaries;       /* m */
    int64_t included;       /* canaries that were in the training data */
    double significance;    /* 1 − confidence */
    double delta;           /* δ of the claim being tested */
    double epsilon_lower;   /* the lower bound on ε (0 if nothing is rejected) */
    int64_t guesses;        /* r of the guess set that gave it: the r highest-scored canaries, guessed "in" */
    int64_t correct;        /* v: how many of those were in */
    int64_t hypotheses;     /* guess sets considered (the significance is divided by this: Bonferroni) */
    double auc;             /* membership-inference area under the ROC curve (ties count one half) */
    double tpr_at_fpr;      /* the largest TPR over thresholds whose FPR is at most `fpr` */
    double fpr;             /* that FPR limit */
} dp_audit_result;

/* Score m canaries: scores[i] (higher = more likely included) and included[i] (0/1, the secret
 * inclusion bits). A guess set is "the k highest-scored canaries are in" (ties ordered by the sort,
 * which looks at the scores only). With guesses > 0 only k = guesses is tried (a count fixed before
 * the audit: no correction needed); with guesses = 0 the halving grid k = m, ⌈m/2⌉, ⌈m/4⌉, ..., 1 is
 * tried and the significance divided by its size (Bonferroni), so the bound stays valid for the best
 * of them. Scores must be finite. Returns 0, or non-zero with err on invalid input. */
int dp_audit_evaluate(const double *scores, const uint8_t *included, int64_t m, int64_t guesses,
                      double significance, double delta, double fpr, dp_audit_result *out, dp_error *err);

/* ---- canaries for the recommendation task (src/audit/canary.c) ----
 * A canary is a fresh user whose sequence is `len` items drawn uniformly from the catalogue: an
 * outlier (real sequences follow popularity and transitions), so that its membership is as easy to
 * detect as it can be. Each canary is included in the training data independently with probability
 * 1/2; the bits come from the generator given (the secure one for a real audit) and are looked at
 * only by the scoring. */
typedef struct {
    int32_t m;          /* canaries */
    int len;            /* items per canary (>= 3: training prefix, validation and test items) */
    int32_t *items;     /* [m * len], item ids in 1..V */
    uint8_t *included;  /* [m] */
} dp_audit_canaries;

/* Draw m canaries of len items over items 1..n_items and their inclusion bits. */
int dp_audit_canaries_make(dp_audit_canaries *c, int32_t m, int len, int32_t n_items, dp_rng *rng,
                           dp_error *err);
void dp_audit_canaries_free(dp_audit_canaries *c);

/* The training data of the audit: base's users, then the included canaries as new users (raw user ids
 * above every existing one, so users stay sorted). out is a new dataset (dp_dataset_free). */
int dp_audit_dataset(const dp_dataset *base, const dp_audit_canaries *c, dp_dataset *out, dp_error *err);

/* Membership scores of every canary: its loss over its training window (the targets training used)
 * under `reference` (the same initialisation, untrained) minus under `trained`. Higher = more likely
 * included. scores[m]. */
void dp_audit_canary_scores(dp_model *trained, dp_model *reference, const dp_audit_canaries *c,
                            double *scores);

/* ---- canaries for text classification (src/audit/canary_text.c) ----
 * A canary is a sentence of random "words" (3 to 8 random lower-case ASCII letters each) with a label
 * drawn uniformly from the K classes: nothing in real text looks like it, and its label is unrelated to
 * its words, so only memorisation can lower its loss. Its length is `len` tokens of the run's tokenizer
 * (words: len random words; bytes: len bytes). Inclusion bits as for the recommendation canaries. */
typedef struct {
    int32_t m;
    int len;            /* tokens per canary under the tokenizer it was made for */
    int n_classes;
    int64_t *offsets;   /* [m + 1]: canary i is text[offsets[i] .. offsets[i+1]) */
    char *text;
    int32_t *labels;    /* [m] */
    uint8_t *included;  /* [m] */
} dp_audit_text_canaries;

int dp_audit_text_canaries_make(dp_audit_text_canaries *c, int32_t m, int len, const dp_tokenizer *tok,
                                int n_classes, dp_rng *rng, dp_error *err);
void dp_audit_text_canaries_free(dp_audit_text_canaries *c);
/* base's examples, then the included canaries. out is a new dataset (dp_text_dataset_free). */
int dp_audit_text_dataset(const dp_text_dataset *base, const dp_audit_text_canaries *c, dp_text_dataset *out,
                          dp_error *err);
/* scores[m]: each canary's cross-entropy with its label under `reference` (the same initialisation,
 * untrained) minus under `trained`, the texts encoded with tok on the models' window. */
void dp_audit_text_scores(dp_model *trained, dp_model *reference, const dp_tokenizer *tok,
                          const dp_audit_text_canaries *c, double *scores);

/* ---- canaries for language models (src/audit/canary_text.c) ----
 * A canary is an example of `len` tokens drawn uniformly from the tokenizer's vocabulary (all but
 * <|endoftext|>), framed as every example is: <|endoftext|> + tokens + <|endoftext|>. A random token
 * sequence is as far from real text as an example can be, and most of its tokens occur nowhere else in
 * the training data. */
typedef struct {
    int32_t m;
    int len;            /* random tokens per canary (the example has len + 2) */
    int32_t *tokens;    /* [m * (len + 2)] GPT-2 token ids */
    uint8_t *included;  /* [m] */
} dp_audit_lm_canaries;

int dp_audit_lm_canaries_make(dp_audit_lm_canaries *c, int32_t m, int len, int32_t n_tokens, int32_t eot,
                              dp_rng *rng, dp_error *err);
void dp_audit_lm_canaries_free(dp_audit_lm_canaries *c);
/* base's examples, then the included canaries. out is a new corpus (dp_lm_corpus_free). */
int dp_audit_lm_corpus(const dp_lm_corpus *base, const dp_audit_lm_canaries *c, dp_lm_corpus *out, dp_error *err);
/* scores[m]: each canary's loss (the engine's: mean cross-entropy over its predicted tokens) under
 * `reference` minus under `trained`. */
void dp_audit_lm_scores(dp_model *trained, dp_model *reference, const dp_audit_lm_canaries *c, double *scores);

#endif
