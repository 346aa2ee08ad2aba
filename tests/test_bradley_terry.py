"""Bradley-Terry fitting and the rater's noise model read no text: comparisons of feature vectors (as trajectory
segments will be) go through the same loop and the same rater."""

import math

import pytest
import torch
from torch import nn

from rlhflab.core.config import build
from rlhflab.core.loop import Hooks, TrainLoop
from rlhflab.feedback.simulated import SimulatedRater
from rlhflab.reward.bradley_terry import Encoded, fit, split
from rlhflab.reward.train import RewardTrainConfig


def test_the_rater_noise_model_by_hand():
    rater = SimulatedRater(temperature=0.5, random_rate=0.2)
    p = 1 / (1 + math.exp(-1.0 / 0.5))
    assert rater.probability(1.0) == pytest.approx(0.1 + 0.8 * p)
    assert rater.probability(-1.0) == pytest.approx(1 - rater.probability(1.0))  # symmetric
    assert rater.probability(0.0) == pytest.approx(0.5)
    exact = SimulatedRater(temperature=0.0, random_rate=0.0)
    assert exact.probability(0.3) == 1.0 and exact.probability(-0.3) == 0.0
    assert exact.prefers_first(exact.probability(0.0), torch.Generator()) is None  # a stated tie, nothing drawn
    g = torch.Generator().manual_seed(0)
    draws = [SimulatedRater(temperature=1.0, random_rate=0.0).prefers_first(0.8, g) for _ in range(4000)]
    assert sum(draws) / len(draws) == pytest.approx(0.8, abs=0.03)
    # the text rater is the same noise model on its perceived scores
    biased = SimulatedRater(temperature=0.5, random_rate=0.2, length_bias=0.1)
    assert biased.prob_first(1.0, 1.0, "a b c d", "a") == pytest.approx(biased.probability(0.3))


class Linear(nn.Module):
    """A scorer of feature vectors: what a reward model of trajectory segments could be."""

    def __init__(self, dim: int):
        super().__init__()
        self.w = nn.Linear(dim, 1)

    def forward(self, x):
        return self.w(x).squeeze(-1)


def score(model, items, device):
    return model(torch.stack(list(items)).to(device))


def comparisons(n: int, weights: torch.Tensor, rater: SimulatedRater, seed: int) -> Encoded:
    """Pairs of random feature vectors labelled by ``rater`` on the gold score ``x @ weights``."""
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randn(n, len(weights), generator=g), torch.randn(n, len(weights), generator=g)
    chosen, rejected, gold = [], [], []
    for x, y in zip(a, b):
        gx, gy = float(x @ weights), float(y @ weights)
        first = rater.prefers_first(rater.probability(gx - gy), g)
        c, r = (x, y) if first else (y, x)
        chosen.append(c)
        rejected.append(r)
        gold.append(float((c - r) @ weights))
    return Encoded(chosen, rejected, torch.ones(n), torch.tensor(gold))


def test_fit_learns_a_scorer_of_vectors_and_its_ensemble_is_seeded():
    weights = torch.tensor([1.0, -2.0, 0.5, 0.0])
    rater = SimulatedRater(temperature=0.3, random_rate=0.1)
    data = comparisons(400, weights, rater, seed=0)
    train_items, val_items = split(list(range(len(data))), 0.25, seed=1)

    def subset(idx):
        return Encoded([data.chosen[i] for i in idx], [data.rejected[i] for i in idx], data.labels[idx],
                       data.gold_diff[idx])  # fmt: skip

    config = build(RewardTrainConfig, pairs_per_step=20, epochs=8, lr=3e-2, ensemble=2, eval_every=1000,
                   checkpoint_every=10**6, seed=3)  # fmt: skip
    rows = []
    members, norms, summary = fit(
        TrainLoop("test", Hooks(metrics=rows.append, progress=False)), lambda: Linear(4), score,
        subset(train_items), subset(val_items), config,
    )  # fmt: skip
    assert len(members) == 2 and len(norms) == 2 and summary["train_pairs"] == 300 and summary["val_pairs"] == 100
    assert summary["val_gold_accuracy"] >= 0.9  # the gold order, learned from noisy labels
    learned = members[0].w.weight.detach().squeeze(0)
    assert torch.nn.functional.cosine_similarity(learned, weights, dim=0) > 0.95
    assert not torch.equal(members[0].w.weight, members[1].w.weight)  # each member its own seed
    assert rows[0]["loss"] > rows[-1]["loss"]
    again, _, _ = fit(TrainLoop("test", Hooks(progress=False)), lambda: Linear(4), score, subset(train_items),
                      subset(val_items), config)  # fmt: skip
    assert torch.equal(again[1].w.weight, members[1].w.weight)  # the same seed, the same member
