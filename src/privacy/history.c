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

int dp_history_from_cjson(dp_history *h, const cJSON *root, dp_error *err) {
    if (!cJSON_IsObject(root)) return dp_fail(err, "privacy history: expected a JSON object");
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
    char *s = dp_history_to_json(h);
    if (!s) return dp_fail(err, "%s: out of memory formatting the privacy history", path);
    FILE *f = fopen(path, "w");
    if (!f) {
        free(s);
        return dp_fail(err, "%s: cannot write: %s", path, strerror(errno));
    }
    int ok = fputs(s, f) >= 0 && fputc('\n', f) != EOF;
    ok = (fclose(f) == 0) && ok;
    free(s);
    return ok ? 0 : dp_fail(err, "%s: write failed", path);
}

int dp_history_load(dp_history *h, const char *path, dp_error *err) {
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
    dp_error e2;
    int rc = dp_history_from_json(h, buf, &e2);
    free(buf);
    if (rc) return dp_fail(err, "%s: %s", path, e2.msg);
    return 0;
}
