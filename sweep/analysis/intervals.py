"""The 95% interval of a mean over seeds: Student's t critical value, computed here (no scipy), shared by the
report and the pictures' seed bands."""
from __future__ import annotations

import functools
import math
import statistics

import pandas as pd


def _continued_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the regularized incomplete beta function I_x(a, b) (modified Lentz;
    Numerical Recipes, betacf), which converges fast for x < (a + 1) / (a + b + 2)."""
    tiny, eps = 1e-300, 1e-16
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 100_000):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1 + numerator * d
            d = 1 / (d if abs(d) > tiny else tiny)
            c = 1 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1) < eps:
            break
    return h


def _incomplete_beta(a: float, b: float, x: float, y: float) -> float:
    """The regularized incomplete beta function I_x(a, b), given x and y = 1 - x (each computed without
    cancellation by the caller)."""
    if x <= 0:
        return 0.0
    if y <= 0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log(y))
    if x < (a + 1) / (a + b + 2):
        return front * _continued_fraction(a, b, x) / a
    return 1 - front * _continued_fraction(b, a, y) / b


def _t_tail(t: float, df: float) -> float:
    """P(T > t) for Student's t with `df` degrees of freedom, t >= 0: I_{df/(df+t^2)}(df/2, 1/2) / 2."""
    return _incomplete_beta(df / 2, 0.5, df / (df + t * t), t * t / (df + t * t)) / 2


@functools.lru_cache(maxsize=None)
def t_quantile(p: float, df: float) -> float:
    """The `p` quantile (0.5 <= p < 1) of Student's t distribution with `df` > 0 degrees of freedom.

    Newton's method on the upper tail from the normal quantile, which lies below it for every df: the
    tail is convex for t > 0, so each step stays below the root and comes closer (no bracketing needed),
    until the steps are within rounding (1e-12 relative or better). From 10,000 degrees of freedom on,
    the Cornish-Fisher expansion, as exact as a float there.
    Example: t_quantile(0.975, 31) -> 2.0395134464
    """
    if not 0.5 <= p < 1 or not df > 0:
        raise ValueError(f"t_quantile({p}, {df}): needs 0.5 <= p < 1 and df > 0")
    if df == 1:  # Cauchy
        return math.tan(math.pi * (p - 0.5))
    if df == 2:
        return (2 * p - 1) * math.sqrt(2 / (4 * p * (1 - p)))
    z = statistics.NormalDist().inv_cdf(p)
    if df >= 10_000:
        # The Cornish-Fisher expansion in 1/df (Abramowitz & Stegun 26.7.5): within 1e-15 here, where the
        # incomplete beta function's lgamma terms (thousands each) would lose more than that.
        g = ((z ** 3 + z) / 4, (5 * z ** 5 + 16 * z ** 3 + 3 * z) / 96,
             (3 * z ** 7 + 19 * z ** 5 + 17 * z ** 3 - 15 * z) / 384,
             (79 * z ** 9 + 776 * z ** 7 + 1482 * z ** 5 - 1920 * z ** 3 - 945 * z) / 92160)
        return z + sum(gk / df ** k for k, gk in enumerate(g, 1))
    q = 1 - p
    log_density = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    t = z
    for _ in range(500):
        density = math.exp(log_density - (df + 1) / 2 * math.log1p(t * t / df))
        step = (_t_tail(t, df) - q) / density
        if not step > 0:  # exactly, every step is upwards: this one is rounding noise at the root
            break
        t += step
        if step <= 1e-14 * t:
            break
    return t


def t95(n: int) -> float:
    """The two-sided 95% Student t critical value for the mean of n >= 2 values (n - 1 degrees of freedom):
    12.706 at n = 2, 2.040 at n = 32, towards 1.960."""
    return t_quantile(0.975, n - 1)


def ci95(values: pd.Series) -> float:
    """Half-width of the 95% confidence interval of the mean (t distribution); NaN below n = 2."""
    n = len(values)
    if n < 2:
        return math.nan
    return t95(n) * values.std(ddof=1) / math.sqrt(n)
