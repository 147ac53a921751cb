"""Statistics over seeds: mean, std, confidence intervals and two-sample tests.

Everything here takes plain sequences of finite floats (NaN and None are dropped first),
so it can be tested on constructed numbers. scipy supplies the t and normal quantiles.

- :func:`summarize` — n, mean, sample std (ddof=1) and a confidence interval, either
  Student-t (``mean ± t_{n-1} · s/√n``, the default: right for a handful of seeds) or a
  seeded percentile bootstrap of the mean.
- :func:`welch` — Welch's unequal-variance t-test (two-sided).
- :func:`permutation_test` — two-sided test of the difference in means; exact (every
  relabelling) while that is at most ``max_exact`` relabellings, otherwise Monte Carlo
  with the add-one estimator ``(k+1)/(m+1)``. With 3 vs 3 seeds there are only 20
  relabellings, so p can be no smaller than 0.1: the test says so instead of inventing
  precision.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Iterable, List, Optional, Sequence, Tuple

import numpy as np

CI_METHODS = ("t", "bootstrap")


def clean(values: Iterable) -> np.ndarray:
    """The finite floats of ``values`` (None, NaN and ±inf dropped)."""
    out = []
    for v in values:
        if v is None:
            continue
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(f):
            out.append(f)
    return np.asarray(out, dtype=np.float64)


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    std: float       # sample standard deviation (ddof=1); NaN for n < 2
    ci_low: float    # NaN for n < 2
    ci_high: float
    level: float
    method: str

    @property
    def half_width(self) -> float:
        return (self.ci_high - self.ci_low) / 2.0


def summarize(values: Iterable, level: float = 0.95, method: str = "t", n_boot: int = 10000,
              seed: int = 0) -> Summary:
    if method not in CI_METHODS:
        raise ValueError(f"ci method {method!r}: expected one of {', '.join(CI_METHODS)}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level {level!r}: expected a number in (0, 1)")
    x = clean(values)
    n = len(x)
    nan = float("nan")
    if n == 0:
        return Summary(0, nan, nan, nan, nan, level, method)
    mean = float(x.mean())
    if n == 1:
        return Summary(1, mean, nan, nan, nan, level, method)
    std = float(x.std(ddof=1))
    if method == "t":
        from scipy import stats

        half = float(stats.t.ppf(0.5 + level / 2.0, n - 1)) * std / math.sqrt(n)
        lo, hi = mean - half, mean + half
    else:
        rng = np.random.default_rng(seed)
        means = x[rng.integers(0, n, size=(n_boot, n))].mean(axis=1)
        alpha = (1.0 - level) / 2.0
        lo, hi = (float(q) for q in np.quantile(means, [alpha, 1.0 - alpha]))
    return Summary(n, mean, std, lo, hi, level, method)


@dataclass(frozen=True)
class TestResult:
    statistic: float   # t (Welch) or difference of means (permutation): mean(a) - mean(b)
    p_value: float     # NaN when the test cannot be computed (too few values)
    df: float = float("nan")
    exact: bool = False
    n_resamples: int = 0


def welch(a: Iterable, b: Iterable) -> TestResult:
    """Two-sided Welch t-test of mean(a) == mean(b). Needs two values per side; when both
    sides have zero variance the test is undefined (p NaN) unless the means differ, in which
    case the difference is certain (p = 0)."""
    from scipy import stats

    x, y = clean(a), clean(b)
    nx, ny = len(x), len(y)
    if nx < 2 or ny < 2:
        return TestResult(float("nan"), float("nan"))
    vx, vy = x.var(ddof=1) / nx, y.var(ddof=1) / ny
    diff = float(x.mean() - y.mean())
    if vx + vy == 0.0:
        return TestResult(math.copysign(math.inf, diff) if diff else float("nan"), 0.0 if diff else float("nan"))
    t = diff / math.sqrt(vx + vy)
    df = (vx + vy) ** 2 / (vx ** 2 / (nx - 1) + vy ** 2 / (ny - 1))
    p = float(2.0 * stats.t.sf(abs(t), df))
    return TestResult(float(t), min(1.0, p), float(df))


def permutation_test(a: Iterable, b: Iterable, max_exact: int = 100000, n_resamples: int = 20000,
                     seed: int = 0) -> TestResult:
    """Two-sided permutation test on |mean(a) - mean(b)|."""
    x, y = clean(a), clean(b)
    nx, ny = len(x), len(y)
    if nx < 1 or ny < 1 or nx + ny < 3:
        return TestResult(float("nan"), float("nan"))
    pooled = np.concatenate([x, y])
    total = pooled.sum()
    observed = float(x.mean() - y.mean())
    # a tolerance so relabellings equal to the observed split count as "as extreme"
    bar = abs(observed) - 1e-12 * max(1.0, float(np.abs(pooled).max()))
    n = nx + ny
    count = math.comb(n, nx)

    def extreme(sum_a: np.ndarray) -> np.ndarray:
        diffs = sum_a / nx - (total - sum_a) / ny
        return np.abs(diffs) >= bar

    if count <= max_exact:
        idx = np.asarray(list(itertools.combinations(range(n), nx)), dtype=np.int64)
        hits = int(extreme(pooled[idx].sum(axis=1)).sum())
        return TestResult(observed, hits / count, exact=True, n_resamples=count)
    rng = np.random.default_rng(seed)
    perms = np.argsort(rng.random((n_resamples, n)), axis=1)[:, :nx]
    hits = int(extreme(pooled[perms].sum(axis=1)).sum())
    return TestResult(observed, (hits + 1) / (n_resamples + 1), exact=False, n_resamples=n_resamples)


TESTS = ("welch", "permutation")


def two_sample(a: Sequence, b: Sequence, test: str = "welch", seed: int = 0) -> TestResult:
    if test == "welch":
        return welch(a, b)
    if test == "permutation":
        return permutation_test(a, b, seed=seed)
    raise ValueError(f"test {test!r}: expected one of {', '.join(TESTS)}")


COST_MARGIN = 0.05


def dominates(qa: float, ca: float, qb: float, cb: float, margin: float = COST_MARGIN) -> bool:
    """Whether entry a dominates b, quality lower-is-better: a is at least as good and
    cheaper by more than ``margin`` (a fraction of b's cost), or strictly better and at
    most ``margin`` dearer. Cost differences within the margin are ties (timing noise)."""
    return (qa <= qb and ca < cb * (1.0 - margin)) or (qa < qb and ca <= cb * (1.0 + margin))


def pareto_ranks(quality: Sequence[float], cost: Sequence[float], higher_is_better: bool = False,
                 margin: float = COST_MARGIN) -> List[Optional[int]]:
    """Non-dominated sorting on (quality, cost) under :func:`dominates` with ``margin``:
    rank 1 = dominated by no other entry; rank 2 = dominated only by rank-1 entries; ...
    (the relation is acyclic: a cycle would need equal qualities and strictly falling
    costs all the way round). Entries with a missing quality or cost get None."""
    q = [(-v if higher_is_better else v) if v is not None and math.isfinite(v) else None for v in quality]
    c = [v if v is not None and math.isfinite(v) else None for v in cost]
    live = [i for i in range(len(q)) if q[i] is not None and c[i] is not None]
    ranks: List[Optional[int]] = [None] * len(q)
    rank = 1
    while live:
        front = [i for i in live if not any(dominates(q[j], c[j], q[i], c[i], margin) for j in live if j != i)]
        for i in front:
            ranks[i] = rank
        live = [i for i in live if i not in front]
        rank += 1
    return ranks


@dataclass(frozen=True)
class Band:
    """Mean over seeds with a confidence interval on a common x grid."""
    x: np.ndarray      # the grid: every x at which some seed has a value, sorted
    n: np.ndarray      # seeds whose series covers each x (no extrapolation)
    mean: np.ndarray   # NaN where n == 0
    low: np.ndarray    # NaN where n < 2: no interval from one seed
    high: np.ndarray


def best_so_far(values: Sequence[float], higher_is_better: bool = False) -> np.ndarray:
    """The running best of a series (NaN entries keep the best so far)."""
    out, best = [], float("nan")
    for v in values:
        v = float(v) if v is not None else float("nan")
        if math.isfinite(v) and (not math.isfinite(best) or (v > best if higher_is_better else v < best)):
            best = v
        out.append(best)
    return np.asarray(out, dtype=np.float64)


def band_on_grid(series: Sequence[Tuple[Sequence[float], Sequence[float]]], level: float = 0.95,
                 step: bool = False) -> Band:
    """Mean ± ``level`` t-interval over seeds of series measured at different x.

    ``series`` holds one (xs, ys) per seed. The grid is the sorted union of every seed's
    x; each seed is interpolated onto the grid inside its own x range only (linearly, or
    holding the last value with ``step`` — right for best-so-far series, which are step
    functions); at each grid point the seeds that cover it give n, the mean and, where
    n ≥ 2, the interval."""
    cleaned = []
    for xs, ys in series:
        pairs = sorted((float(x), float(y)) for x, y in zip(xs, ys)
                       if x is not None and y is not None and math.isfinite(float(x)) and math.isfinite(float(y)))
        if pairs:
            cleaned.append((np.asarray([p[0] for p in pairs]), np.asarray([p[1] for p in pairs])))
    grid = np.unique(np.concatenate([xs for xs, _ in cleaned])) if cleaned else np.zeros(0)
    values = np.full((len(cleaned), len(grid)), np.nan)
    for i, (xs, ys) in enumerate(cleaned):
        inside = (grid >= xs[0]) & (grid <= xs[-1])
        if step:
            idx = np.searchsorted(xs, grid[inside], side="right") - 1
            values[i, inside] = ys[idx]
        else:
            values[i, inside] = np.interp(grid[inside], xs, ys)
    n = np.sum(np.isfinite(values), axis=0) if len(cleaned) else np.zeros(0, dtype=int)
    mean, low, high = (np.full(len(grid), np.nan) for _ in range(3))
    for j in range(len(grid)):
        s = summarize(values[:, j], level=level)
        mean[j] = s.mean
        if s.n >= 2:
            low[j], high[j] = s.ci_low, s.ci_high
    return Band(grid, n, mean, low, high)
