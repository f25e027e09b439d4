/* Flag parsing for the command-line tool (see args.h). */
#include "cli/args.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Whether --help shows the flag's default (see args.h): not for the "unset" values, nor when the help
 * text speaks of the default itself. */
static int default_shown(const arg_spec *s, double v) {
    if (strstr(s->help, "default")) return 0;
    if (v != v) return 0;
    if (s->has_range) return v >= s->min && v <= s->max;
    return !((s->type == ARG_INT || s->type == ARG_INT64) && v == -1);
}

void args_usage(FILE *f, const char *cmd, const char *summary, const arg_spec *specs, int nspecs) {
    fprintf(f, "usage: %s [flags]\n", cmd);
    if (summary) fprintf(f, "%s\n", summary);
    fprintf(f, "\nflags:\n");
    for (int i = 0; i < nspecs; i++) {
        const arg_spec *s = &specs[i];
        char def[80] = "";
        switch (s->type) {
        case ARG_INT:
            if (default_shown(s, *(int *)s->dest)) snprintf(def, sizeof def, " (default %d)", *(int *)s->dest);
            break;
        case ARG_INT64:
            if (default_shown(s, (double)*(int64_t *)s->dest))
                snprintf(def, sizeof def, " (default %lld)", (long long)*(int64_t *)s->dest);
            break;
        case ARG_DOUBLE:
            if (default_shown(s, *(double *)s->dest)) snprintf(def, sizeof def, " (default %g)", *(double *)s->dest);
            break;
        case ARG_STRING:
            if (*(const char **)s->dest && !strstr(s->help, "default"))
                snprintf(def, sizeof def, " (default %s)", *(const char **)s->dest);
            break;
        case ARG_FLAG: break;
        }
        const char *meta = s->type == ARG_FLAG     ? ""
                           : s->meta              ? s->meta
                           : s->type == ARG_STRING ? "STR"
                           : s->type == ARG_DOUBLE ? "X"
                                                   : "N";
        fprintf(f, "  --%s%s%s\n      %s%s\n", s->name, *meta ? " " : "", meta, s->help, def);
    }
    fprintf(f, "  --help\n      print this message\n");
}

int args_seen(const arg_spec *specs, int nspecs, const char *name) {
    for (int i = 0; i < nspecs; i++)
        if (strcmp(specs[i].name, name) == 0) return specs[i].seen;
    return 0;
}

const char *args_first_seen(const arg_spec *specs, int nspecs, const char *const *names) {
    for (; *names; names++)
        if (args_seen(specs, nspecs, *names)) return *names;
    return NULL;
}

static int parse_value(const char *cmd, arg_spec *s, const char *val) {
    char *end = NULL;
    errno = 0;
    double num = 0;
    switch (s->type) {
    case ARG_INT:
    case ARG_INT64: {
        long long v = strtoll(val, &end, 10);
        if (errno || end == val || *end) {
            fprintf(stderr, "%s: --%s: expected an integer, got '%s'\n", cmd, s->name, val);
            return 2;
        }
        if (s->type == ARG_INT && (v > 2147483647LL || v < -2147483647LL)) {
            fprintf(stderr, "%s: --%s: %s is out of range\n", cmd, s->name, val);
            return 2;
        }
        num = (double)v;
        if (s->type == ARG_INT) *(int *)s->dest = (int)v; else *(int64_t *)s->dest = v;
        break;
    }
    case ARG_DOUBLE: {
        double v = strtod(val, &end);
        if (errno || end == val || *end || !isfinite(v)) {
            fprintf(stderr, "%s: --%s: expected a finite number, got '%s'\n", cmd, s->name, val);
            return 2;
        }
        num = v;
        *(double *)s->dest = v;
        break;
    }
    case ARG_STRING:
        if (!*val) {
            fprintf(stderr, "%s: --%s: empty value\n", cmd, s->name);
            return 2;
        }
        *(const char **)s->dest = val;
        return 0;
    case ARG_FLAG: return 0;
    }
    if (s->has_range && (num < s->min || num > s->max)) {
        fprintf(stderr, "%s: --%s: %s is outside the allowed range [%g, %g]\n", cmd, s->name, val, s->min, s->max);
        return 2;
    }
    return 0;
}

int args_parse(const char *cmd, const char *summary, arg_spec *specs, int nspecs, int argc, char **argv) {
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            args_usage(stdout, cmd, summary, specs, nspecs);
            return 1;
        }
        if (strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "%s: unexpected argument '%s' (flags start with --; see --help)\n", cmd, a);
            return 2;
        }
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        arg_spec *s = NULL;
        for (int k = 0; k < nspecs; k++)
            if (strlen(specs[k].name) == nlen && strncmp(specs[k].name, name, nlen) == 0) s = &specs[k];
        if (!s) {
            fprintf(stderr, "%s: unknown flag '--%.*s' (see --help)\n", cmd, (int)nlen, name);
            return 2;
        }
        if (s->seen) {
            fprintf(stderr, "%s: --%s given twice\n", cmd, s->name);
            return 2;
        }
        s->seen = 1;
        if (s->type == ARG_FLAG) {
            if (eq) {
                fprintf(stderr, "%s: --%s takes no value\n", cmd, s->name);
                return 2;
            }
            *(int *)s->dest = 1;
            continue;
        }
        const char *val;
        if (eq) val = eq + 1;
        else if (i + 1 < argc) val = argv[++i];
        else {
            fprintf(stderr, "%s: --%s needs a value\n", cmd, s->name);
            return 2;
        }
        int rc = parse_value(cmd, s, val);
        if (rc) return rc;
    }
    return 0;
}

int args_device(const char *cmd, const char *s, dp_device *d) {
    if (dp_device_parse(s, d)) {
        fprintf(stderr, "%s: --device: expected cpu or cuda, got '%s'\n", cmd, s);
        return 2;
    }
    dp_error err;
    if (dp_device_check(*d, &err)) {
        fprintf(stderr, "%s: --device %s: %s\n", cmd, s, err.msg);
        return 2;
    }
    return 0;
}
