"""The learned reward of preference RL: an ensemble of small networks on normalised (obs, action).

Each member maps one step's features to a scalar; a segment's predicted return is the sum over its
steps, and the members are trained with the Bradley-Terry loss on the teacher's comparisons
(``rlhflab.core.losses.bradley_terry_loss``, the same loss as the text reward model), each on its own
bootstrap resample (Christiano et al. 2017: an ensemble, inputs normalised, the output normalised for
the agent). The agent gets the members' mean, standardised over the steps of recent segments.

Queries can be chosen where the members disagree most: among candidate pairs, those whose
predicted P(first preferred) varies most across members (Christiano et al.'s variance of the
ensemble; imitation's active selection does the same).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from rlhflab.core.config import check
from rlhflab.core.losses import bradley_terry_loss


@dataclass(frozen=True)
class RewardNetConfig:
    reward_members: int = 3
    """Networks in the ensemble."""
    reward_hidden: int = 64
    """Width of each network's two hidden layers."""
    reward_epochs: int = 60
    """Passes over the comparisons each time the reward is refitted."""
    reward_batch_size: int = 64
    """Comparisons per gradient step."""
    reward_lr: float = 3e-3
    """Adam learning rate."""
    reward_weight_decay: float = 1e-4
    """Adam weight decay (a little regularisation: few comparisons, many steps per segment)."""

    def __post_init__(self) -> None:
        check(self.reward_members >= 1, "reward_members", self.reward_members, ">= 1")
        check(self.reward_hidden >= 1, "reward_hidden", self.reward_hidden, ">= 1")
        check(self.reward_epochs >= 1, "reward_epochs", self.reward_epochs, ">= 1")
        check(self.reward_batch_size >= 1, "reward_batch_size", self.reward_batch_size, ">= 1")
        check(self.reward_lr > 0, "reward_lr", self.reward_lr, "> 0")


class RewardEnsemble(nn.Module):
    """``members`` MLPs over normalised step features; ``forward`` returns [members, ...] per-step rewards."""

    def __init__(self, in_dim: int, members: int = 3, hidden: int = 64):
        super().__init__()
        self.nets = nn.ModuleList(
            nn.Sequential(
                nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1)
            )
            for _ in range(members)
        )
        self.register_buffer("in_mean", torch.zeros(in_dim))
        self.register_buffer("in_std", torch.ones(in_dim))
        self.register_buffer("out_mean", torch.zeros(()))
        self.register_buffer("out_std", torch.ones(()))
        self._frozen = None

    def fit_inputs(self, features: np.ndarray) -> None:
        """Input normalisation from steps' features ([..., in_dim])."""
        self._frozen = None
        flat = torch.as_tensor(features, dtype=torch.float32).reshape(-1, self.in_mean.numel())
        self.in_mean.copy_(flat.mean(0))
        self.in_std.copy_(flat.std(0).clamp(min=1e-6) if len(flat) > 1 else torch.ones_like(self.in_std))

    def load_state_dict(self, *args, **kwargs):
        self._frozen = None
        return super().load_state_dict(*args, **kwargs)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = (features - self.in_mean) / self.in_std
        return torch.stack([net(x).squeeze(-1) for net in self.nets])

    @torch.no_grad()
    def fit_outputs(self, features: np.ndarray) -> None:
        """Output normalisation: the members' mean reward standardised over these steps."""
        r = self.forward(torch.as_tensor(features, dtype=torch.float32)).mean(0).reshape(-1)
        self.out_mean.copy_(r.mean())
        self.out_std.copy_(r.std().clamp(min=1e-6) if r.numel() > 1 else torch.ones(()))
        self.freeze()

    @torch.no_grad()
    def freeze(self) -> None:
        """Copy the weights into stacked numpy arrays for ``reward`` (call after every refit: ``fit_outputs`` does).

        The agent asks for one step's reward at a time; three small torch modules cost ~120 us a call on one
        thread (a sixth of an SB3 PPO step on Reacher), one stacked numpy pass a fraction of that."""
        layers = [[net[i] for net in self.nets] for i in (0, 2, 4)]
        self._frozen = [
            (np.stack([m.weight.numpy().T for m in ms]).astype(np.float32),
             np.stack([m.bias.numpy() for m in ms]).astype(np.float32)[:, None, :])
            for ms in layers
        ]  # fmt: skip
        self._frozen_io = tuple(
            t.numpy().astype(np.float32) for t in (self.in_mean, self.in_std, self.out_mean, self.out_std)
        )

    def reward(self, obs: np.ndarray, acts: np.ndarray) -> np.ndarray:
        """The agent's reward for steps (obs [n, d], acts [n, k]): the members' mean, standardised (the weights as
        of the last ``freeze``)."""
        if getattr(self, "_frozen", None) is None:
            self.freeze()
        in_mean, in_std, out_mean, out_std = self._frozen_io
        h = ((np.concatenate([obs, acts], axis=-1).astype(np.float32) - in_mean) / in_std)[None]
        (w1, b1), (w2, b2), (w3, b3) = self._frozen
        h = np.maximum(h @ w1 + b1, 0)
        h = np.maximum(h @ w2 + b2, 0)
        r = (h @ w3 + b3)[..., 0].mean(0)
        return (r - out_mean) / out_std

    @torch.no_grad()
    def segment_returns(self, features: np.ndarray) -> np.ndarray:
        """[members, N] predicted returns of segments ([N, H, in_dim])."""
        return self.forward(torch.as_tensor(features, dtype=torch.float32)).sum(-1).numpy()


def train_reward(
    ensemble: RewardEnsemble,
    first: np.ndarray,
    second: np.ndarray,
    labels: np.ndarray,
    config: RewardNetConfig,
    generator: torch.Generator,
) -> dict[str, float]:
    """Fit every member on a bootstrap resample of the comparisons (features of the ``first`` and ``second``
    segments, [N, H, in_dim]; ``labels`` [N] = P(first preferred)). Returns the final loss and accuracy of the
    ensemble's mean on all comparisons."""
    a = torch.as_tensor(first, dtype=torch.float32)
    b = torch.as_tensor(second, dtype=torch.float32)
    y = torch.as_tensor(labels, dtype=torch.float32)
    n = len(y)
    ensemble.train()
    for net in ensemble.nets:
        opt = torch.optim.Adam(
            net.parameters(), lr=config.reward_lr, weight_decay=config.reward_weight_decay, foreach=True
        )  # the same numbers as the default one-tensor-at-a-time loop, ~10% faster
        sample = torch.randint(0, n, (n,), generator=generator)  # bootstrap
        for _ in range(config.reward_epochs):
            order = sample[torch.randperm(n, generator=generator)]
            for start in range(0, n, config.reward_batch_size):
                idx = order[start : start + config.reward_batch_size]
                xa = (a[idx] - ensemble.in_mean) / ensemble.in_std
                xb = (b[idx] - ensemble.in_mean) / ensemble.in_std
                loss, _ = bradley_terry_loss(net(xa).squeeze(-1).sum(-1), net(xb).squeeze(-1).sum(-1), label=y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
    ensemble.eval()
    ensemble._frozen = None  # new weights: the agent's reward reads them again
    with torch.no_grad():
        loss, metrics = bradley_terry_loss(ensemble(a).mean(0).sum(-1), ensemble(b).mean(0).sum(-1), label=y)
    return {"reward_loss": float(loss), "reward_accuracy": float(metrics["accuracy"])}


def disagreement(returns_first: np.ndarray, returns_second: np.ndarray) -> np.ndarray:
    """Std across members of P(first preferred) = sigmoid(R_first - R_second); inputs [members, N] -> [N]."""
    p = 1 / (1 + np.exp(-np.clip(returns_first - returns_second, -60, 60)))
    return p.std(axis=0)


def choose_queries(
    ensemble: RewardEnsemble | None,
    features: np.ndarray,
    candidates: np.ndarray,
    n: int,
    method: str,
    rng: np.random.Generator,
    oversample: int = 5,
) -> np.ndarray:
    """``n`` pairs of indices into ``candidates`` (segment indices into ``features`` [N, H, in_dim]).

    ``random``: uniformly drawn pairs of different segments. ``disagreement``: the ``n`` of ``oversample * n``
    random pairs on which the ensemble disagrees most (random before there is an ensemble with two members)."""
    if len(candidates) < 2:
        return np.zeros((0, 2), np.int64)
    m = n * (oversample if method == "disagreement" else 1)
    i = rng.integers(0, len(candidates), m)
    j = (i + rng.integers(1, len(candidates), m)) % len(candidates)  # never the same segment twice
    pairs = np.stack([candidates[i], candidates[j]], axis=1)
    if method == "random" or ensemble is None or len(ensemble.nets) < 2:
        return pairs[:n]
    r = ensemble.segment_returns(features[pairs.reshape(-1)]).reshape(len(ensemble.nets), m, 2)
    best = np.argsort(-disagreement(r[..., 0], r[..., 1]), kind="stable")[:n]
    return pairs[best]
