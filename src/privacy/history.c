/* The privacy event history: validation, appending (with merging of identical consecutive events),
 * and its exact JSON form. Doubles are written with %.17g as raw JSON numbers because cJSON's own
 * printer checks round-tripping only approximately. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>

#include "core/common.h"
#include "dpformer/accountant.h"

#define HISTORY_FORMAT "dpformer-privacy-history"
#define HISTORY_VERSION 1

static const char *type_name(dp_event_type t) {
    return t == DP_EVENT_GAUSSIAN ? "gaussian" : "poisson_gaussian";
}

int dp_event_check(const dp_event *ev, dp_error *err) {
    if (ev->type != DP_EVENT_POISSON_GAUSSIAN && ev->type != DP_EVENT_GAUSSIAN)
        return dp_fail(err, "privacy event: unknown type %d", (int)ev->type);
    if (!isfinite(ev->noise_multiplier) || ev->noise_multiplier <= 0)
        return dp_fail(err, "privacy event: noise multiplier must be a finite number > 0, got %g",
                       ev->noise_multiplier);
    if (!(ev->sample_rate > 0 && ev->sample_rate <= 1))
        return dp_fail(err, "privacy event: sample rate must lie in (0, 1], got %g", ev->sample_rate);
    if (ev->type == DP_EVENT_GAUSSIAN && ev->sample_rate != 1)
        return dp_fail(err, "privacy event: a plain Gaussian event has sample rate 1, got %g", ev->sample_rate);
    if (ev->steps < 0 || ev->steps > DP_MAX_STEPS)
        return dp_fail(err, "privacy event: steps must lie in [0, 2^53], got %lld", (long long)ev->steps);
    return 0;
}

void dp_history_init(dp_history *h) {
    h->events = NULL;
    h->n = h->cap = 0;
}

void dp_history_free(dp_history *h) {
    free(h->events);
    dp_history_init(h);
}

/* Histories never hold more steps in total than an int64_t counts, so that dp_history_total_steps
 * is exact: with up to 2^53 steps per event, 1024 events would otherwise be enough to wrap it (to 0
 * with 2048, which reads as "nothing released"). */
static int total_fits(int64_t total, int64_t more) { return more <= INT64_MAX - total; }

int dp_history_add(dp_history *h, const dp_event *ev, dp_error *err) {
    if (dp_event_check(ev, err)) return -1;
    if (!total_fits(dp_history_total_steps(h), ev->steps))
        return dp_fail(err, "privacy history: more than 2^63 - 1 steps in total");
    if (h->n > 0) {
        dp_event *last = &h->events[h->n - 1];
        /* Merged only while the event stays within DP_MAX_STEPS; past that, a new event starts (a file
         * may hold such consecutive events, and copying its history event by event must work). */
        if (last->type == ev->type && last->noise_multiplier == ev->noise_multiplier &&
            last->sample_rate == ev->sample_rate && last->steps <= DP_MAX_STEPS - ev->steps) {
            last->steps += ev->steps;
            return 0;
        }
    }
    if (h->n == h->cap) {
        size_t cap = h->cap ? 2 * h->cap : 8;
        dp_event *e = realloc(h->events, cap * sizeof *e);
        if (!e) return dp_fail(err, "privacy history: out of memory");
        h->events = e;
        h->cap = cap;
    }
    h->events[h->n++] = *ev;
    return 0;
}

int dp_history_add_poisson_gaussian(dp_history *h, double noise_multiplier, double sample_rate, int64_t steps,
                                    dp_error *err) {
    dp_event ev = {DP_EVENT_POISSON_GAUSSIAN, noise_multiplier, sample_rate, steps};
    return dp_history_add(h, &ev, err);
}

int dp_history_add_gaussian(dp_history *h, double noise_multiplier, int64_t count, dp_error *err) {
    dp_event ev = {DP_EVENT_GAUSSIAN, noise_multiplier, 1.0, count};
    return dp_history_add(h, &ev, err);
}

int64_t dp_history_total_steps(const dp_history *h) {
    int64_t s = 0;
    for (size_t i = 0; i < h->n; i++) s += h->events[i].steps;
    return s;
}

static cJSON *raw_double(double v) {
    char buf[40];
    snprintf(buf, sizeof buf, "%.17g", v);
    return cJSON_CreateRaw(buf);
}

/* The shortest of %.15g, %.16g, %.17g that reads back to the same double: exact, and 1e-06 stays 1e-06. */
static cJSON *raw_double_short(double v) {
    char buf[40];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) break;
    }
    return cJSON_CreateRaw(buf);
}

static cJSON *raw_int(int64_t v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", (long long)v);
    return cJSON_CreateRaw(buf);
}

cJSON *dp_history_to_cjson(const dp_history *h) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "format", HISTORY_FORMAT);
    cJSON_AddItemToObject(root, "version", raw_int(HISTORY_VERSION));
    cJSON *events = cJSON_AddArrayToObject(root, "events");
    for (size_t i = 0; i < h->n; i++) {
        const dp_event *e = &h->events[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "type", type_name(e->type));
        cJSON_AddItemToObject(o, "noise_multiplier", raw_double(e->noise_multiplier));
        if (e->type == DP_EVENT_POISSON_GAUSSIAN) cJSON_AddItemToObject(o, "sample_rate", raw_double(e->sample_rate));
        cJSON_AddItemToObject(o, "steps", raw_int(e->steps));
        cJSON_AddItemToArray(events, o);
    }
    return root;
}

char *dp_history_to_json(const dp_history *h) {
    cJSON *root = dp_history_to_cjson(h);
    char *s = cJSON_Print(root);
    cJSON_Delete(root);
    return s;
}

static int get_number(const cJSON *o, const char *key, size_t idx, double *v, int required, dp_error *err) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!it) {
        if (required) return dp_fail(err, "privacy history: event %zu: missing \"%s\"", idx, key);
        return 1;
    }
    if (!cJSON_IsNumber(it)) return dp_fail(err, "privacy history: event %zu: \"%s\" must be a number", idx, key);
    *v = it->valuedouble;
    return 0;
}

static int event_from_cjson(const cJSON *o, size_t idx, dp_event *ev, dp_error *err) {
    if (!cJSON_IsObject(o)) return dp_fail(err, "privacy history: event %zu is not an object", idx);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "type");
    if (!cJSON_IsString(t)) return dp_fail(err, "privacy history: event %zu: missing string \"type\"", idx);
    if (strcmp(t->valuestring, "poisson_gaussian") == 0) ev->type = DP_EVENT_POISSON_GAUSSIAN;
    else if (strcmp(t->valuestring, "gaussian") == 0) ev->type = DP_EVENT_GAUSSIAN;
    else
        return dp_fail(err, "privacy history: event %zu: unknown type \"%s\" (poisson_gaussian or gaussian)", idx,
                       t->valuestring);
    double steps = 0;
    if (get_number(o, "noise_multiplier", idx, &ev->noise_multiplier, 1, err) ||
        get_number(o, "steps", idx, &steps, 1, err))
        return -1;
    ev->sample_rate = 1.0;
    int rc = get_number(o, "sample_rate", idx, &ev->sample_rate, ev->type == DP_EVENT_POISSON_GAUSSIAN, err);
    if (rc < 0) return -1;
    if (!(steps >= 0 && steps <= (double)DP_MAX_STEPS) || steps != floor(steps))
        return dp_fail(err, "privacy history: event %zu: steps must be an integer in [0, 2^53], got %.17g", idx, steps);
    ev->steps = (int64_t)steps;
    dp_error e2;
    if (dp_event_check(ev, &e2)) return dp_fail(err, "privacy history: event %zu: %s", idx, e2.msg);
    return 0;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* cJSON keeps every member of an object, and a lookup returns the first one with the name: a key given
 * twice would be read as its first value while other tools take the last. Refused everywhere in the
 * document, naming the key and where it is (`where` describes `node`). */
static int check_duplicate_keys(const cJSON *node, const char *where, dp_error *err) {
    if (!cJSON_IsObject(node) && !cJSON_IsArray(node)) return 0;
    size_t n = 0;
    const cJSON *c;
    for (c = node->child; c; c = c->next) n++;
    if (cJSON_IsObject(node) && n > 1) {
        const char **names = dp_malloc(n * sizeof *names);
        size_t k = 0;
        for (c = node->child; c; c = c->next) names[k++] = c->string ? c->string : "";
        qsort(names, n, sizeof *names, cmp_str);
        for (k = 1; k < n; k++)
            if (strcmp(names[k - 1], names[k]) == 0) {
                int rc = dp_fail(err, "privacy history: duplicate key \"%.64s\" in %s", names[k], where);
                free(names);
                return rc;
            }
        free(names);
    }
    size_t idx = 0;
    for (c = node->child; c; c = c->next, idx++) {
        char sub[160];
        if (cJSON_IsArray(node)) {
            /* an array element: the events are named as the other messages name them */
            if (strcmp(where, "\"events\"") == 0) snprintf(sub, sizeof sub, "event %zu", idx);
            else snprintf(sub, sizeof sub, "element %zu of %.100s", idx, where);
        } else {
            snprintf(sub, sizeof sub, "\"%.64s\"", c->string);
        }
        if (check_duplicate_keys(c, sub, err)) return -1;
    }
    return 0;
}

int dp_history_from_cjson(dp_history *h, const cJSON *root, dp_error *err) {
    if (!cJSON_IsObject(root)) return dp_fail(err, "privacy history: expected a JSON object");
    if (check_duplicate_keys(root, "the top-level object", err)) return -1;
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(root, "format");
    if (fmt && (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, HISTORY_FORMAT) != 0))
        return dp_fail(err, "privacy history: \"format\" must be \"%s\"", HISTORY_FORMAT);
    const cJSON *ver = cJSON_GetObjectItemCaseSensitive(root, "version");
    if (ver && (!cJSON_IsNumber(ver) || ver->valuedouble != HISTORY_VERSION))
        return dp_fail(err, "privacy history: unsupported version (this build reads version %d)", HISTORY_VERSION);
    const cJSON *events = cJSON_GetObjectItemCaseSensitive(root, "events");
    if (!cJSON_IsArray(events)) return dp_fail(err, "privacy history: missing array \"events\"");
    dp_history tmp;
    dp_history_init(&tmp);
    size_t idx = 0;
    int64_t total = 0;
    const cJSON *o;
    cJSON_ArrayForEach(o, events) {
        dp_event ev;
        /* Appended without merging: the file's event list is kept exactly as written. */
        if (event_from_cjson(o, idx, &ev, err)) {
            dp_history_free(&tmp);
            return -1;
        }
        if (!total_fits(total, ev.steps)) {
            dp_history_free(&tmp);
            return dp_fail(err, "privacy history: event %zu: more than 2^63 - 1 steps in total", idx);
        }
        total += ev.steps;
        if (tmp.n == tmp.cap) {
            size_t cap = tmp.cap ? 2 * tmp.cap : 8;
            dp_event *e = realloc(tmp.events, cap * sizeof *e);
            if (!e) {
                dp_history_free(&tmp);
                return dp_fail(err, "privacy history: out of memory");
            }
            tmp.events = e;
            tmp.cap = cap;
        }
        tmp.events[tmp.n++] = ev;
        idx++;
    }
    dp_history_free(h);
    *h = tmp;
    return 0;
}

int dp_history_from_json(dp_history *h, const char *json, dp_error *err) {
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(json, &end, 0);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        return dp_fail(err, "privacy history: invalid JSON near '%.20s'", at ? at : "");
    }
    /* Only white space may follow: two histories written one after the other must not read as the
     * first one alone (the events of the second would be silently left out of the accounting). */
    end += strspn(end, " \t\r\n");
    if (*end) {
        cJSON_Delete(root);
        return dp_fail(err, "privacy history: unexpected text after the JSON object near '%.20s'", end);
    }
    int rc = dp_history_from_cjson(h, root, err);
    cJSON_Delete(root);
    return rc;
}

int dp_history_save(const dp_history *h, const char *path, dp_error *err) {
    return dp_ledger_save(h, NULL, path, err);
}

/* The file's text, NUL-terminated; a NUL inside is refused. */
static int read_text(const char *path, char **out, dp_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return dp_fail(err, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 4096, len = 0;
    char *buf = dp_malloc(cap);
    size_t r;
    while ((r = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += r;
        if (cap - len - 1 == 0) {
            cap *= 2;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                return dp_fail(err, "%s: out of memory", path);
            }
            buf = nb;
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return dp_fail(err, "%s: read error", path);
    }
    buf[len] = 0;
    if (strlen(buf) != len) {
        size_t at = strlen(buf);
        free(buf);
        return dp_fail(err, "%s: NUL byte at offset %zu (not a JSON text file)", path, at);
    }
    *out = buf;
    return 0;
}

int dp_history_load(dp_history *h, const char *path, dp_error *err) {
    char *buf;
    if (read_text(path, &buf, err)) return -1;
    dp_error e2;
    int rc = dp_history_from_json(h, buf, &e2);
    free(buf);
    if (rc) return dp_fail(err, "%s: %s", path, e2.msg);
    return 0;
}

/* ---- the ledger ---- */

void dp_ledger_init(dp_privacy_ledger *l) {
    memset(l, 0, sizeof *l);
    l->epsilon = l->delta = l->pld_interval = l->pld_tail = NAN;
    l->accountant = l->conversion = l->selection_covered = -1;
}

void dp_ledger_free(dp_privacy_ledger *l) {
    free(l->orders);
    dp_ledger_init(l);
}

void dp_ledger_set_accounting(dp_privacy_ledger *l, const dp_accounting_options *o, double delta, double epsilon) {
    dp_accounting_options def;
    if (!o) dp_accounting_default_options(&def), o = &def;
    free(l->orders);
    l->orders = NULL;
    l->n_orders = 0;
    l->pld_interval = l->pld_tail = NAN;
    l->conversion = -1;
    l->accountant = (int)o->accountant;
    if (o->accountant == DP_ACCOUNTANT_PLD) {
        l->pld_interval = o->pld.value_discretization_interval;
        l->pld_tail = o->pld.tail_mass_truncation;
    } else {
        l->conversion = (int)o->conversion;
        if (o->orders && o->n_orders > 0) {
            l->orders = dp_malloc(o->n_orders * sizeof *l->orders);
            memcpy(l->orders, o->orders, o->n_orders * sizeof *l->orders);
            l->n_orders = o->n_orders;
        }
    }
    l->delta = delta;
    l->epsilon = epsilon;
}

int dp_ledger_has_accounting(const dp_privacy_ledger *l) {
    return l && isfinite(l->delta) && (l->accountant == DP_ACCOUNTANT_RDP || l->accountant == DP_ACCOUNTANT_PLD);
}

static void add_text(cJSON *o, const char *key, const char *v) {
    if (v && v[0]) cJSON_AddStringToObject(o, key, v);
}

cJSON *dp_ledger_to_cjson(const dp_history *h, const dp_privacy_ledger *l) {
    cJSON *root = dp_history_to_cjson(h);
    if (!l) return root;
    /* The ledger's fields go before the events, so that a reader sees them first. */
    cJSON *events = cJSON_DetachItemFromObjectCaseSensitive(root, "events");
    add_text(root, "command", l->command);
    add_text(root, "mechanism", l->mechanism);
    add_text(root, "privacy_unit", l->privacy_unit);
    if (l->epsilon == INFINITY) cJSON_AddNullToObject(root, "epsilon"); /* no guarantee */
    else if (isfinite(l->epsilon)) cJSON_AddItemToObject(root, "epsilon", raw_double_short(l->epsilon));
    if (isfinite(l->delta)) cJSON_AddItemToObject(root, "delta", raw_double_short(l->delta));
    if (l->accountant == DP_ACCOUNTANT_RDP || l->accountant == DP_ACCOUNTANT_PLD)
        cJSON_AddStringToObject(root, "accountant", l->accountant == DP_ACCOUNTANT_PLD ? "pld" : "rdp");
    if (l->accountant == DP_ACCOUNTANT_RDP) {
        if (l->conversion >= 0)
            cJSON_AddStringToObject(root, "rdp_conversion", l->conversion == DP_CONVERSION_CLASSIC ? "classic" : "improved");
        if (l->orders && l->n_orders) {
            cJSON *a = cJSON_AddArrayToObject(root, "rdp_orders");
            for (size_t i = 0; i < l->n_orders; i++) cJSON_AddItemToArray(a, raw_double_short(l->orders[i]));
        } else {
            cJSON_AddStringToObject(root, "rdp_orders", "default");
        }
    }
    if (isfinite(l->pld_interval)) cJSON_AddItemToObject(root, "pld_interval", raw_double_short(l->pld_interval));
    if (isfinite(l->pld_tail)) cJSON_AddItemToObject(root, "pld_tail_mass", raw_double_short(l->pld_tail));
    add_text(root, "epsilon_covers", l->epsilon_covers);
    add_text(root, "model_selection", l->model_selection);
    if (l->selection_covered >= 0) cJSON_AddBoolToObject(root, "selection_covered", l->selection_covered);
    add_text(root, "warning", l->warning);
    cJSON_AddItemToObject(root, "events", events);
    return root;
}

static int ledger_text(const cJSON *o, const char *key, char *dst, size_t cap, dp_error *err) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!it) return 0;
    if (!cJSON_IsString(it)) return dp_fail(err, "privacy history: \"%s\" must be a string", key);
    snprintf(dst, cap, "%s", it->valuestring);
    return 0;
}

/* A number field: absent leaves *v; lo < v < hi (open; hi NAN: no upper bound). */
static int ledger_number(const cJSON *o, const char *key, double lo, double hi, double *v, dp_error *err) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!it) return 0;
    if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble) || !(it->valuedouble > lo) ||
        !(isnan(hi) || it->valuedouble < hi)) {
        char range[64];
        if (isnan(hi)) snprintf(range, sizeof range, "a finite number > %g", lo);
        else snprintf(range, sizeof range, "a number in (%g, %g)", lo, hi);
        if (cJSON_IsNumber(it))
            return dp_fail(err, "privacy history: \"%s\" must be %s, got %.17g", key, range, it->valuedouble);
        return dp_fail(err, "privacy history: \"%s\" must be %s", key, range);
    }
    *v = it->valuedouble;
    return 0;
}

int dp_ledger_from_cjson(dp_privacy_ledger *out, const cJSON *root, dp_error *err) {
    if (!cJSON_IsObject(root)) return dp_fail(err, "privacy history: expected a JSON object");
    if (check_duplicate_keys(root, "the top-level object", err)) return -1;
    dp_privacy_ledger l;
    dp_ledger_init(&l);
    int rc = 0;
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, "epsilon");
    if (it) {
        if (cJSON_IsNull(it)) l.epsilon = INFINITY;
        else if (cJSON_IsNumber(it) && it->valuedouble >= 0 && isfinite(it->valuedouble)) l.epsilon = it->valuedouble;
        else rc = dp_fail(err, "privacy history: \"epsilon\" must be a number >= 0 or null (no guarantee)");
    }
    if (!rc) rc = ledger_number(root, "delta", 0, 1, &l.delta, err);
    if (!rc && (it = cJSON_GetObjectItemCaseSensitive(root, "accountant"))) {
        if (cJSON_IsString(it) && strcmp(it->valuestring, "rdp") == 0) l.accountant = DP_ACCOUNTANT_RDP;
        else if (cJSON_IsString(it) && strcmp(it->valuestring, "pld") == 0) l.accountant = DP_ACCOUNTANT_PLD;
        else rc = dp_fail(err, "privacy history: \"accountant\" must be \"rdp\" or \"pld\"");
    }
    if (!rc && (it = cJSON_GetObjectItemCaseSensitive(root, "rdp_conversion"))) {
        if (cJSON_IsString(it) && strcmp(it->valuestring, "improved") == 0) l.conversion = DP_CONVERSION_IMPROVED;
        else if (cJSON_IsString(it) && strcmp(it->valuestring, "classic") == 0) l.conversion = DP_CONVERSION_CLASSIC;
        else rc = dp_fail(err, "privacy history: \"rdp_conversion\" must be \"improved\" or \"classic\"");
    }
    if (!rc && (it = cJSON_GetObjectItemCaseSensitive(root, "rdp_orders"))) {
        if (cJSON_IsString(it) && strcmp(it->valuestring, "default") == 0) {
            /* the default grid: orders stay NULL */
        } else if (cJSON_IsArray(it) && cJSON_GetArraySize(it) > 0 && cJSON_GetArraySize(it) <= 100000) {
            size_t n = (size_t)cJSON_GetArraySize(it), k = 0;
            l.orders = dp_malloc(n * sizeof *l.orders);
            const cJSON *x;
            cJSON_ArrayForEach(x, it) {
                if (!cJSON_IsNumber(x) || !isfinite(x->valuedouble) || !(x->valuedouble > 1)) {
                    rc = dp_fail(err, "privacy history: \"rdp_orders\": element %zu must be a finite number > 1", k);
                    break;
                }
                l.orders[k++] = x->valuedouble;
            }
            l.n_orders = k;
        } else {
            rc = dp_fail(err, "privacy history: \"rdp_orders\" must be \"default\" or an array of 1 to 100000 orders");
        }
    }
    if (!rc) rc = ledger_number(root, "pld_interval", 0, NAN, &l.pld_interval, err);
    if (!rc) rc = ledger_number(root, "pld_tail_mass", 0, 1e-3, &l.pld_tail, err);
    if (!rc) rc = ledger_text(root, "command", l.command, sizeof l.command, err);
    if (!rc) rc = ledger_text(root, "mechanism", l.mechanism, sizeof l.mechanism, err);
    if (!rc) rc = ledger_text(root, "privacy_unit", l.privacy_unit, sizeof l.privacy_unit, err);
    if (!rc) rc = ledger_text(root, "epsilon_covers", l.epsilon_covers, sizeof l.epsilon_covers, err);
    if (!rc) rc = ledger_text(root, "model_selection", l.model_selection, sizeof l.model_selection, err);
    if (!rc) rc = ledger_text(root, "warning", l.warning, sizeof l.warning, err);
    if (!rc && (it = cJSON_GetObjectItemCaseSensitive(root, "selection_covered"))) {
        if (cJSON_IsBool(it)) l.selection_covered = cJSON_IsTrue(it);
        else rc = dp_fail(err, "privacy history: \"selection_covered\" must be true or false");
    }
    if (rc) {
        dp_ledger_free(&l);
        return -1;
    }
    dp_ledger_free(out);
    *out = l;
    return 0;
}

int dp_ledger_save(const dp_history *h, const dp_privacy_ledger *l, const char *path, dp_error *err) {
    cJSON *root = dp_ledger_to_cjson(h, l);
    char *s = root ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (!s) return dp_fail(err, "%s: out of memory formatting the privacy history", path ? path : "");
    size_t n = strlen(s);
    char *text = dp_malloc(n + 2);
    memcpy(text, s, n);
    text[n] = '\n';
    text[n + 1] = 0;
    free(s);
    /* atomic (src/core): a failed write leaves an existing file as it was */
    int rc = dp_write_file_atomic(path, text, n + 1, err);
    free(text);
    return rc;
}

int dp_ledger_load(dp_history *h, dp_privacy_ledger *l, const char *path, dp_error *err) {
    char *buf;
    if (read_text(path, &buf, err)) return -1;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(buf, &end, 0);
    dp_error e2;
    int rc = 0;
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        rc = dp_fail(&e2, "privacy history: invalid JSON near '%.20s'", at ? at : "");
    } else {
        end += strspn(end, " \t\r\n");
        if (*end) rc = dp_fail(&e2, "privacy history: unexpected text after the JSON object near '%.20s'", end);
    }
    dp_history th;
    dp_history_init(&th);
    dp_privacy_ledger tl;
    dp_ledger_init(&tl);
    if (!rc) rc = dp_history_from_cjson(&th, root, &e2);
    if (!rc) rc = dp_ledger_from_cjson(&tl, root, &e2);
    cJSON_Delete(root);
    free(buf);
    if (rc) {
        dp_history_free(&th);
        dp_ledger_free(&tl);
        return dp_fail(err, "%s: %s", path, e2.msg);
    }
    dp_history_free(h);
    *h = th;
    dp_ledger_free(l);
    *l = tl;
    return 0;
}
