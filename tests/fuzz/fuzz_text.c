/* Fuzz target for the text-classification TSV parser (src/data/text.c) through dp_text_parse, and the
 * two tokenizers on what it accepts. The first input byte picks the options (declared classes,
 * line limit, UTF-8 strictness); the rest is the file. An accepted dataset must keep its promises:
 * labels in range, non-empty texts without NUL, offsets increasing within the text buffer, and every
 * text encodes and decodes back to itself when it fits the window; the hashed-word encoding keeps
 * its ids in range, agrees with the word count on truncation and is deterministic. A refusal names
 * the file. */
#include "dpformer/text.h"

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    dp_text_options opt;
    dp_text_options_default(&opt);
    opt.n_classes = 2 + (data[0] & 3);
    opt.max_line = (data[0] & 4) ? 64 : 0;
    opt.accept_invalid_utf8 = (data[0] >> 3) & 1;
    if (data[0] & 16) opt.text_column = "content";
    dp_text_dataset ds;
    dp_error err = {{0}};
    if (dp_text_parse(&ds, (const char *)data + 1, size - 1, "fuzz.tsv", &opt, &err) != 0) {
        FUZZ_CHECK_ERROR(err.msg, "fuzz.tsv");
        return 0;
    }
    FUZZ_CHECK(ds.n >= 0 && ds.offsets[0] == 0);
    int32_t ids[300];
    char back[300];
    for (int64_t i = 0; i < ds.n; i++) {
        FUZZ_CHECK(ds.labels[i] >= 0 && ds.labels[i] < ds.n_classes);
        int64_t len = dp_text_len(&ds, i);
        FUZZ_CHECK(len > 0 && memchr(dp_text_ptr(&ds, i), 0, (size_t)len) == NULL);
        int truncated = 0;
        dp_text_encode(&ds, i, 300, ids, &truncated);
        FUZZ_CHECK(truncated == (len > 299));
        if (!truncated) {
            int64_t n = dp_text_decode(ids, 300, back, sizeof back);
            FUZZ_CHECK(n == len && memcmp(back, dp_text_ptr(&ds, i), (size_t)len) == 0);
        }
        const dp_tokenizer words = {DP_TOKENIZER_WORDS, 1 + (data[0] >> 5) * 997};
        int32_t again[32];
        int used = dp_tokenizer_encode(&words, dp_text_ptr(&ds, i), (size_t)len, 32, ids, &truncated);
        int64_t count = dp_tokenizer_count(&words, dp_text_ptr(&ds, i), (size_t)len);
        FUZZ_CHECK(used == 1 + (count < 31 ? count : 31) && truncated == (count > 31) && ids[0] == DP_TEXT_CLS);
        for (int k = 1; k < 32; k++)
            FUZZ_CHECK(k < used ? ids[k] >= DP_TEXT_WORD0 && ids[k] < DP_TEXT_WORD0 + words.buckets
                                : ids[k] == DP_TEXT_PAD);
        FUZZ_CHECK(dp_text_encode_with(&words, &ds, i, 32, again, NULL) == used && memcmp(ids, again, sizeof again) == 0);
    }
    dp_text_dataset_free(&ds);
    return 0;
}
