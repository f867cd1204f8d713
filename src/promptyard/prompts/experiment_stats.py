"""Significance tests for A/B experiments: rates (z-test, Fisher, chi-square) and ratings (Mann-Whitney U, Kruskal-Wallis)."""

from __future__ import annotations

import math
from typing import Any

from scipy import stats

# Below this expected cell count the normal approximation is poor (Cochran's rule): use Fisher's exact test.
MIN_EXPECTED_FOR_Z = 5


def compare_rates(successes: list[int], trials: list[int]) -> dict[str, Any]:
    """Test whether success rates differ across groups; returns the test's name, statistic and p-value."""
    if len(trials) < 2:
        return {"test": None, "statistic": None, "p_value": None}
    failures = [n - s for s, n in zip(successes, trials)]
    table = [list(pair) for pair in zip(successes, failures)]
    if sum(successes) == 0 or sum(failures) == 0:
        # Every group has the same rate (all 0 or all 1): no test can find a difference.
        name = "fisher_exact" if len(trials) == 2 and _min_expected(table) < MIN_EXPECTED_FOR_Z else _rate_test(trials)
        return {"test": name, "statistic": 0.0, "p_value": 1.0}
    if len(trials) > 2:
        chi2, p_value, _, _ = stats.chi2_contingency(table, correction=False)
        return {"test": "chi_square", "statistic": float(chi2), "p_value": float(p_value)}
    if _min_expected(table) < MIN_EXPECTED_FOR_Z:
        odds_ratio, p_value = stats.fisher_exact(table, alternative="two-sided")
        return {"test": "fisher_exact", "statistic": _finite(odds_ratio), "p_value": float(p_value)}
    z, p_value = two_proportion_z(successes[0], trials[0], successes[1], trials[1])
    return {"test": "two_proportion_z", "statistic": z, "p_value": p_value}


def _rate_test(trials: list[int]) -> str:
    return "chi_square" if len(trials) > 2 else "two_proportion_z"


def two_proportion_z(s1: int, n1: int, s2: int, n2: int) -> tuple[float, float]:
    """Pooled two-proportion z-test, two-sided: (z, p-value)."""
    pooled = (s1 + s2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 0.0, 1.0
    z = (s1 / n1 - s2 / n2) / se
    return z, float(2 * stats.norm.sf(abs(z)))


def _min_expected(table: list[list[int]]) -> float:
    total = sum(map(sum, table))
    row_sums = [sum(row) for row in table]
    col_sums = [sum(col) for col in zip(*table)]
    return min(r * c / total for r in row_sums for c in col_sums)


def compare_ratings(samples: list[list[float]]) -> dict[str, Any]:
    """Test whether ratings differ across groups (rank tests: ratings are ordinal, not normal)."""
    if len(samples) < 2:
        return {"test": None, "statistic": None, "p_value": None}
    name = "mann_whitney_u" if len(samples) == 2 else "kruskal_wallis"
    if len({value for sample in samples for value in sample}) == 1:
        return {"test": name, "statistic": None, "p_value": 1.0}
    if len(samples) == 2:
        result = stats.mannwhitneyu(samples[0], samples[1], alternative="two-sided")
    else:
        result = stats.kruskal(*samples)
    return {"test": name, "statistic": _finite(result.statistic), "p_value": float(result.pvalue)}


def _finite(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None
