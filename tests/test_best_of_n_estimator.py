"""The unbiased best-of-n estimator against brute force: every n-subset of a small pool, enumerated."""

import itertools
import math

import numpy as np
import pytest

from rlhflab.evaluation.diagnostics.best_of_n import best_of_n_curve, best_of_n_expectation, selection_weights


def brute_force(proxy, values, n):
    """Mean over every n-subset of the pool of the value of the subset's proxy-best (ties: their mean)."""
    total, count = 0.0, 0
    for subset in itertools.combinations(range(len(proxy)), n):
        best = max(proxy[i] for i in subset)
        winners = [values[i] for i in subset if proxy[i] == best]
        total += sum(winners) / len(winners)
        count += 1
    return total / count


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7])
def test_matches_brute_force_without_ties(n):
    rng = np.random.default_rng(0)
    proxy, gold = rng.normal(size=7), rng.normal(size=7)
    assert best_of_n_expectation(proxy, gold, n) == pytest.approx(brute_force(proxy, gold, n), abs=1e-12)
    assert best_of_n_expectation(proxy, proxy, n) == pytest.approx(brute_force(proxy, proxy, n), abs=1e-12)


@pytest.mark.parametrize("n", [1, 2, 4, 6])
def test_matches_brute_force_with_ties(n):
    proxy = [0.0, 1.0, 1.0, 2.0, 2.0, 2.0]  # ties broken uniformly, as the brute force averages them
    gold = [5.0, -1.0, 3.0, 0.5, 2.0, -4.0]
    assert best_of_n_expectation(proxy, gold, n) == pytest.approx(brute_force(proxy, gold, n), abs=1e-12)
    # and it does not depend on the pool's order
    perm = [3, 0, 5, 1, 4, 2]
    shuffled = best_of_n_expectation([proxy[i] for i in perm], [gold[i] for i in perm], n)
    assert shuffled == pytest.approx(best_of_n_expectation(proxy, gold, n), abs=1e-12)


def test_weights_hand_values_and_limits():
    assert selection_weights(1, 4).tolist() == pytest.approx([0.25] * 4)  # n = 1: the plain mean
    assert selection_weights(4, 4).tolist() == pytest.approx([0, 0, 0, 1])  # n = N: always the best
    assert selection_weights(2, 4).tolist() == pytest.approx([0, 1 / 6, 2 / 6, 3 / 6])  # C(i-1,1)/C(4,2)
    assert selection_weights(300, 1000).sum() == pytest.approx(1.0)  # large pools stay finite
    with pytest.raises(ValueError, match="n must be in"):
        selection_weights(5, 4)


def test_curve_rises_with_n_for_an_informative_proxy():
    rng = np.random.default_rng(1)
    gold = rng.normal(size=(50, 16))
    proxy = gold + 0.1 * rng.normal(size=gold.shape)
    rows = best_of_n_curve(proxy, gold, [1, 2, 4, 16])
    assert [r["kl"] for r in rows] == pytest.approx([math.log(n) - (n - 1) / n for n in (1, 2, 4, 16)])
    golds = [r["gold"] for r in rows]
    assert golds == sorted(golds) and golds[-1] > golds[0] + 1.0
    assert rows[0]["gold"] == pytest.approx(gold.mean())  # n = 1 is the base policy
