/* Calibration: the published noise multipliers (Opacus's bisection, ε tolerance 0.01, upper bracket),
 * the default tighter search (never above the target, minimal up to its tolerance), the step budget,
 * calibration on top of an earlier history, and epochs → steps rounding. */
#include <math.h>
#include <string.h>

#include "dpformer/accountant.h"
#include "testutil.h"

static double eps_run(double q, double sigma, int64_t steps) {
    dp_history h;
    dp_history_init(&h);
    dp_error err;
    double e = NAN;
    CHECK(dp_history_add_poisson_gaussian(&h, sigma, q, steps, &err) == 0);
    CHECK(dp_epsilon(&h, 1e-5, NULL, &e, &err) == 0);
    dp_history_free(&h);
    return e;
}

int main(void) {
    dp_accounting_options o;
    dp_error err;
    double sigma, eps;

    /* Published: 1.416 (2250 steps) and 1.3562 (2000 steps) with Opacus's stopping rule. */
    dp_accounting_default_options(&o);
    o.epsilon_tolerance = 0.01;
    o.sigma_tolerance = 0;
    CHECK(dp_calibrate_sigma(8, 1e-5, 0.04, 2250, NULL, &o, &sigma, &eps, &err) == 0);
    CHECK_CLOSE(sigma, 1.416, 5e-4 / 1.416);
    CHECK(eps <= 8 && eps >= 7.99);
    CHECK(dp_calibrate_sigma(8, 1e-5, 0.04, 2000, NULL, &o, &sigma, &eps, &err) == 0);
    CHECK_CLOSE(sigma, 1.3562, 5e-5 / 1.3562);
    CHECK(eps <= 8);

    /* Default: σ to 1e-6 relative, from above. */
    dp_accounting_default_options(&o);
    CHECK(dp_calibrate_sigma(8, 1e-5, 0.04, 2250, NULL, &o, &sigma, &eps, &err) == 0);
    CHECK(sigma <= 1.416);
    CHECK(eps <= 8);
    CHECK(eps_run(0.04, sigma, 2250) <= 8);
    CHECK(eps_run(0.04, sigma * (1 - 2e-6), 2250) > 8);
    CHECK(8 - eps < 1e-3);

    /* Step budget at that σ: the run above fits, one more batch of steps does not overshoot the answer. */
    int64_t steps;
    CHECK(dp_max_steps(8, 1e-5, 0.04, sigma, NULL, &o, &steps, &eps, &err) == 0);
    CHECK(steps >= 2250);
    CHECK(eps <= 8);
    CHECK(eps_run(0.04, sigma, steps) <= 8);
    CHECK(eps_run(0.04, sigma, steps + 1) > 8);
    CHECK(dp_max_steps(0.01, 1e-5, 0.5, 0.5, NULL, &o, &steps, &eps, &err) == 0);
    CHECK(steps == 0);

    /* With an earlier history: less budget left, so more noise is needed. */
    dp_history prior;
    dp_history_init(&prior);
    CHECK(dp_history_add_poisson_gaussian(&prior, 1.0, 0.02, 1000, &err) == 0);
    double sigma_prior;
    CHECK(dp_calibrate_sigma(8, 1e-5, 0.04, 2250, &prior, &o, &sigma_prior, &eps, &err) == 0);
    CHECK(sigma_prior > sigma);
    CHECK(eps <= 8);
    /* A prior that alone exceeds the target is refused. */
    CHECK(dp_calibrate_sigma(0.5, 1e-5, 0.04, 2250, &prior, &o, &sigma_prior, &eps, &err) != 0);
    CHECK(strstr(err.msg, "earlier events") != NULL);
    dp_history_free(&prior);

    /* PLD calibration: needs less noise than RDP, and its ε is still within the target. */
    o.accountant = DP_ACCOUNTANT_PLD;
    o.sigma_tolerance = 1e-3;
    double sigma_pld;
    CHECK(dp_calibrate_sigma(8, 1e-5, 0.04, 2250, NULL, &o, &sigma_pld, &eps, &err) == 0);
    CHECK(sigma_pld < sigma);
    CHECK(eps <= 8);

    /* Invalid inputs. */
    dp_accounting_default_options(&o);
    CHECK(dp_calibrate_sigma(0, 1e-5, 0.04, 100, NULL, &o, &sigma, &eps, &err) != 0);
    CHECK(dp_calibrate_sigma(8, 2.0, 0.04, 100, NULL, &o, &sigma, &eps, &err) != 0);
    CHECK(dp_calibrate_sigma(8, 1e-5, 0.0, 100, NULL, &o, &sigma, &eps, &err) != 0);
    CHECK(dp_calibrate_sigma(8, 1e-5, 0.04, -1, NULL, &o, &sigma, &eps, &err) != 0);
    CHECK(dp_max_steps(8, 1e-5, 0.04, 0.0, NULL, &o, &steps, &eps, &err) != 0);

    /* Epochs → steps as int(epochs / q): 90 / 0.04 = 2250 in floating point (90 // 0.04 would be 2249). */
    CHECK(dp_steps_for_epochs(90, 0.04) == 2250);
    CHECK(dp_steps_for_epochs(1, 0.3) == 3);
    CHECK(dp_steps_for_epochs(-1, 0.3) == -1);
    return tu_finish("test_accountant_calibrate");
}
