"""Is method A better than method B on the same queries? Paired tests pooled over seeds.

Both methods rank the same test queries in every seed, so the comparison is paired by query:
per query the difference of its hits (hit@1: rank 1) is averaged over the seeds, and

- `diff_mean` is the mean of those per-query differences, in percentage points of R@1;
- `ci95` is a percentile bootstrap interval of that mean over queries (resampled with
  replacement, `resamples` times, seeded);
- `p_value` is a two-sided sign-flip permutation test on the per-query differences (under H0 the
  two methods are exchangeable, so each query's difference is as likely negated);
- `mcnemar_p` is the exact McNemar test on the discordant (seed, query) pairs, for reference.

A difference is a gain only when its interval lies above 0 (`significant`).
`paired_differences` runs the same bootstrap and sign-flip test on any per-query differences,
e.g. a method's gain on the long clips minus its gain on the short ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

RESAMPLES = 10_000


@dataclass(frozen=True)
class Comparison:
    diff_mean: float  # R@1 of A minus R@1 of B, percentage points (mean over seeds)
    ci95: tuple[float, float]  # bootstrap 95 % interval of diff_mean
    p_value: float  # two-sided sign-flip permutation test
    mcnemar_p: float  # exact McNemar over all (seed, query) pairs
    a_only: int  # (seed, query) pairs A gets right and B wrong
    b_only: int  # ... and the other way round
    queries: int
    seeds: int

    @property
    def significant(self) -> bool:
        return significant(self.ci95, self.p_value)


def significant(ci95: tuple[float, float], p_value: float) -> bool:
    """A difference counts only when its interval excludes 0 and p < 0.05."""
    return p_value < 0.05 and (ci95[0] > 0 or ci95[1] < 0)


def paired_comparison(
    hits_a: np.ndarray,  # (S, Q) bool: query q right at rank 1 in seed s, method A
    hits_b: np.ndarray,  # (S, Q) bool, method B, same queries in the same order
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> Comparison:
    hits_a, hits_b = np.asarray(hits_a, dtype=bool), np.asarray(hits_b, dtype=bool)
    if hits_a.shape != hits_b.shape or hits_a.ndim != 2 or hits_a.size == 0:
        raise ValueError(
            f"paired_comparison: expected two (seeds, queries) arrays of one shape, found "
            f"{hits_a.shape} and {hits_b.shape}"
        )
    differences = (hits_a.astype(float) - hits_b.astype(float)).mean(axis=0)  # (Q,)
    observed, ci95, p_value = paired_differences(differences, resamples, seed)
    a_only = int((hits_a & ~hits_b).sum())
    b_only = int((hits_b & ~hits_a).sum())
    return Comparison(
        diff_mean=observed,
        ci95=ci95,
        p_value=p_value,
        mcnemar_p=mcnemar_exact(a_only, b_only),
        a_only=a_only,
        b_only=b_only,
        queries=len(differences),
        seeds=hits_a.shape[0],
    )


def paired_differences(
    differences: np.ndarray,  # (Q,) per-query difference, in hits (so R@1 points / 100)
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> tuple[float, tuple[float, float], float]:
    """(mean, bootstrap 95 % interval, two-sided sign-flip p), mean and interval in percentage
    points."""
    generator = np.random.default_rng(seed)
    queries = len(differences)
    observed = float(differences.mean())
    signs = generator.choice((-1.0, 1.0), size=(resamples, queries))  # (R, Q)
    flipped = np.abs((signs * differences).mean(axis=1))  # (R,)
    p_value = (1 + int((flipped >= abs(observed) - 1e-12).sum())) / (1 + resamples)
    picks = generator.integers(0, queries, size=(resamples, queries))  # (R, Q)
    low, high = np.percentile(differences[picks].mean(axis=1), [2.5, 97.5])
    return 100.0 * observed, (100.0 * float(low), 100.0 * float(high)), p_value


def mcnemar_exact(a_only: int, b_only: int) -> float:
    """Two-sided exact McNemar p: a binomial(a_only + b_only, 1/2) tail, doubled, at most 1."""
    discordant = a_only + b_only
    if discordant == 0:
        return 1.0
    tail = sum(math.comb(discordant, i) for i in range(min(a_only, b_only) + 1))
    return min(1.0, 2 * tail / 2**discordant)
