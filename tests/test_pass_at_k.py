"""pass@k (Chen et al. 2021) against brute force, and the curve comparisons built on it."""

import itertools
import math

import pytest

from rlhflab.evaluation.diagnostics.pass_at_k import (
    crossing,
    default_ks,
    newly_solved,
    pass_at_k,
    pass_at_k_curve,
)


def brute_force(n: int, c: int, k: int) -> float:
    """Enumerate every k-subset of n samples (the first c correct): the share with at least one correct."""
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(i < c for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", [1, 2, 5, 8])
def test_pass_at_k_equals_brute_force(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(brute_force(n, c, k), abs=1e-12), (n, c, k)


def test_hand_values_and_limits():
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)  # pass@1 is the share correct
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)  # C(3,2)/C(4,2) = 3/6 all wrong
    assert pass_at_k(10, 0, 10) == 0.0 and pass_at_k(10, 1, 10) == 1.0
    assert pass_at_k(200, 7, 64) == pytest.approx(1 - math.comb(193, 64) / math.comb(200, 64), rel=1e-9)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match=r"k must be in \[1, n\] = \[1, 4\].*got 5"):
        pass_at_k(4, 1, 5)
    with pytest.raises(ValueError, match="0 <= c <= n"):
        pass_at_k(4, 5, 1)
    with pytest.raises(ValueError, match="same number of samples"):
        pass_at_k_curve([[True, False], [True]], [1])


def test_curve_crossing_and_newly_solved_on_a_planted_pair():
    # base: every problem solved rarely (1 in 8); tuned: half the problems always, the other half never
    base = [[i == 0 for i in range(8)] for _ in range(4)]
    tuned = [[True] * 8, [True] * 8, [False] * 8, [False] * 8]
    ks = default_ks(8)
    assert ks == [1, 2, 4, 8]
    b, t = pass_at_k_curve(base, ks), pass_at_k_curve(tuned, ks)
    assert b[1] == pytest.approx(1 / 8) and b[8] == 1.0 and t[1] == 0.5 and t[8] == 0.5
    k = crossing(b, t)
    assert 2 < k < 8  # RL ahead at small k, the base at large k
    assert crossing(t, b) is None  # the other way round they do not cross downwards
    assert newly_solved(base, tuned) == 0.0  # the base solved every problem at least once
    assert newly_solved([[False] * 8, [True] * 8], [[True] * 8, [True] * 8]) == 0.5


def test_evaluate_adds_pass_at_k_for_a_checkable_task(micro_model):
    import dataclasses

    from conftest import planted_task

    from rlhflab.core.config import build
    from rlhflab.evaluation.evaluate import EvalConfig, evaluate

    def says_good(prompts, completions):  # a verifier: 1 if the continuation says "good"
        return [float("good" in c) for c in completions]

    task = dataclasses.replace(planted_task(), gold=says_good, checkable=True)
    config = build(EvalConfig, num_prompts=6, max_new_tokens=6, pass_k_samples=8, pass_k_prompts=5)
    summary, _ = evaluate(str(micro_model), str(micro_model), task, config, progress=False)
    base, policy = summary["base"]["pass_at_k"], summary["policy"]["pass_at_k"]
    assert list(base) == [1, 2, 4, 8] and base == policy  # the same model, the same seeded samples
    assert all(base[a] <= base[b] for a, b in zip([1, 2, 4], [2, 4, 8]))  # pass@k grows with k
    assert summary["pass_at_k"]["crossing_k"] is None and summary["pass_at_k"]["newly_solved"] == 0.0
    assert summary["pass_at_k"]["problems"] == 5 and summary["pass_at_k"]["samples"] == 8
    plain, _ = evaluate(str(micro_model), str(micro_model), planted_task(), config, progress=False)
    assert "pass_at_k" not in plain and "pass_at_k" not in plain["base"]
