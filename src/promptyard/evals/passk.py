"""pass@k: the unbiased estimator 1 - C(n-c, k) / C(n, k), computed as a stable product."""

from __future__ import annotations

from typing import Iterable, Mapping


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn from n (c correct) passes."""
    if not 0 <= c <= n or k < 1 or k > n:
        raise ValueError(f"pass@{k} needs 0 <= c <= n and 1 <= k <= n (got n={n}, c={c})")
    if n - c < k:
        return 1.0
    # C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k / i): no huge binomials, no cancellation.
    survive = 1.0
    for i in range(n - c + 1, n + 1):
        survive *= 1.0 - k / i
    return 1.0 - survive


def parse_ks(text: str | Iterable[int]) -> list[int]:
    """'1,10,100' -> [1, 10, 100]; rejects anything but positive integers."""
    items = text.split(",") if isinstance(text, str) else list(text)
    ks = []
    for item in items:
        try:
            k = int(str(item).strip())
        except ValueError:
            raise ValueError(f"k must be positive integers separated by commas, got {item!r}") from None
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        if k not in ks:
            ks.append(k)
    if not ks:
        raise ValueError("give at least one k")
    return ks


def per_task(counts: Mapping[str, tuple[int, int]], ks: Iterable[int]) -> dict[str, dict[str, float]]:
    """{task_id: {"pass@k": value}} for each k the task has enough samples for."""
    return {
        task: {f"pass@{k}": pass_at_k(n, c, k) for k in ks if n >= k} for task, (n, c) in counts.items()
    }


def averaged(counts: Mapping[str, tuple[int, int]], ks: Iterable[int]) -> dict[str, float]:
    """Mean pass@k over tasks, for each k that every task has at least k samples for."""
    if not counts:
        return {}
    result = {}
    for k in ks:
        if all(n >= k for n, _ in counts.values()):
            result[f"pass@{k}"] = sum(pass_at_k(n, c, k) for n, c in counts.values()) / len(counts)
    return result
