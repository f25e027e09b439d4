#!/usr/bin/env python3
"""Reference values of the one-run audit bound (Steinke, Nasr and Jagielski 2023), computed
independently of src/audit/one_run.c: exact binomial coefficients and 60-digit decimal arithmetic
instead of lgamma in log space, bisection on the p-value in the same decimal arithmetic.

p-value(m, r, v, eps, delta): q = e^eps / (1 + e^eps), X ~ Binomial(r, q), beta = P[X >= v],
alpha = max_{i=1..v} P[v - i <= X < v] / i, p = min(1, beta + 2 m delta alpha).
The lower bound is the largest eps with p-value <= significance (0 if none).

Prints one C initialiser line per case: {m, r, v, delta, significance, eps_lower_bound, p_at_1}
(p_at_1: the p-value at eps = 1), the table that tests/test_audit.c holds. Run:
    python3 tests/audit_bound_ref.py
"""
from decimal import Decimal, getcontext
from math import comb

getcontext().prec = 60

CASES = [
    # (m, r, v, delta, significance)
    (1000, 100, 100, 0.0, 0.05),
    (1000, 100, 90, 0.0, 0.05),
    (1000, 100, 90, 1e-5, 0.05),
    (1000, 100, 60, 1e-5, 0.05),
    (1000, 100, 50, 1e-5, 0.05),   # precision 1/2: no bound
    (1000, 100, 0, 1e-5, 0.05),    # v = 0
    (1000, 1000, 700, 1e-5, 0.05), # r = m
    (1000, 1000, 1000, 1e-6, 0.05),  # v = r = m
    (200, 20, 20, 1e-5, 0.05),
    (200, 20, 18, 0.0, 0.01),
    (10000, 500, 420, 1e-5, 0.05),
    (10000, 2000, 1300, 1e-6, 0.05),
    (100, 10, 10, 1e-2, 0.05),       # a large delta eats most of the bound
]


def pvalue(m, r, v, eps, delta):
    if v <= 0:
        return Decimal(1)
    e = Decimal(eps).exp()
    q = e / (1 + e)
    pmf = [Decimal(comb(r, j)) * q ** j * (1 - q) ** (r - j) for j in range(r + 1)]
    beta = sum(pmf[v:], Decimal(0))
    if delta == 0:
        return min(beta, Decimal(1))
    alpha, window = Decimal(0), Decimal(0)
    for i in range(1, v + 1):
        window += pmf[v - i]
        alpha = max(alpha, window / i)
    return min(beta + alpha * Decimal(delta) * 2 * m, Decimal(1))


def lower_bound(m, r, v, delta, sig):
    sig = Decimal(sig)
    if pvalue(m, r, v, 0.0, delta) > sig:
        return 0.0
    lo, hi = 0.0, 1.0
    while pvalue(m, r, v, hi, delta) <= sig:
        lo, hi = hi, hi * 2
        if hi > 1e4:
            return lo
    while hi - lo > 1e-9:
        mid = (lo + hi) / 2
        if pvalue(m, r, v, mid, delta) <= sig:
            lo = mid
        else:
            hi = mid
    return lo


if __name__ == "__main__":
    for m, r, v, delta, sig in CASES:
        lb = lower_bound(m, r, v, delta, sig)
        p1 = pvalue(m, r, v, 1.0, delta)
        print("    {%d, %d, %d, %g, %g, %.10f, %.12e}," % (m, r, v, delta, sig, lb, float(p1)))
