"""rlhflab's DPO, IPO and Bradley-Terry losses against TRL's, on the same log-probabilities and rewards.

TRL computes its losses inside its trainers; these tests call TRL's own loss methods on a
stand-in trainer whose "model" returns the given per-token log-probabilities (or rewards), so
TRL's code, not a copy of it, does the arithmetic. Skipped when trl is not installed (the
dev extra installs it).
"""

from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

trl = pytest.importorskip("trl")

from rlhflab.core.losses import bradley_terry_loss, dpo_loss, ipo_loss


class _Accelerator:
    device = torch.device("cpu")

    @staticmethod
    def gather(x):
        return x

    gather_for_metrics = gather


def _trainer(**attributes):
    base = dict(
        model=SimpleNamespace(training=True),
        accelerator=_Accelerator(),
        aux_loss_enabled=False,
        _metrics=defaultdict(lambda: defaultdict(list)),
        _total_train_tokens=0,
        _tp_size=1,
    )
    return SimpleNamespace(**{**base, **attributes})


def _batch(seed: int, pairs: int = 4, length: int = 7):
    g = torch.Generator().manual_seed(seed)
    completion = torch.zeros(2 * pairs, length, dtype=torch.long)
    for row in range(2 * pairs):  # prompts of 2-3 tokens, completions of different lengths
        start = 2 + row % 2
        completion[row, start : start + 2 + row % 4] = 1
    per_token = -torch.rand(2 * pairs, length - 1, generator=g, dtype=torch.float64) * 3 * completion[:, 1:]
    ref = -torch.rand(2 * pairs, generator=g, dtype=torch.float64) * 6
    return completion, per_token, ref


def _trl_dpo_loss(loss_type: str, beta: float, completion, per_token, ref):
    from trl import DPOTrainer

    outputs = SimpleNamespace(
        log_probs=per_token,
        entropy=torch.zeros_like(per_token),
        mean_logits=torch.zeros_like(per_token),
        is_top1=torch.zeros_like(per_token).bool(),
    )
    trainer = _trainer(
        ld_alpha=None,
        precompute_ref_logps=True,
        f_divergence_type="reverse_kl",
        loss_types=[loss_type],
        loss_weights=[1.0],
        beta=beta,
        label_smoothing=0.0,
        use_weighting=False,
    )
    inputs = {
        "input_ids": torch.ones_like(completion),
        "attention_mask": torch.ones_like(completion),
        "completion_mask": completion,
        "ref_chosen_logps": ref.chunk(2)[0],
        "ref_rejected_logps": ref.chunk(2)[1],
    }
    return DPOTrainer._compute_loss(trainer, lambda **kwargs: outputs, inputs, return_outputs=False)


@pytest.mark.parametrize("beta", [0.1, 0.5, 2.0])
def test_dpo_loss_matches_trl(beta):
    completion, per_token, ref = _batch(int(beta * 10))
    ours, _ = dpo_loss(*per_token.sum(1).chunk(2), *ref.chunk(2), beta=beta)
    theirs = _trl_dpo_loss("sigmoid", beta, completion, per_token, ref)
    assert abs(ours.item() - theirs.item()) < 1e-6


@pytest.mark.parametrize("beta", [0.1, 0.5, 2.0])
def test_ipo_loss_matches_trl(beta):
    completion, per_token, ref = _batch(int(beta * 10) + 1)
    counts = completion.sum(1).double()
    ours, _ = ipo_loss(*(per_token.sum(1) / counts).chunk(2), *(ref / counts).chunk(2), beta=beta)
    theirs = _trl_dpo_loss("ipo", beta, completion, per_token, ref)
    assert abs(ours.item() - theirs.item()) < 1e-6


def test_bradley_terry_loss_matches_trl():
    from trl import RewardTrainer

    rewards = torch.randn(12, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    trainer = _trainer(args=SimpleNamespace(center_rewards_coefficient=None))
    inputs = {"input_ids": torch.ones(12, 5, dtype=torch.long), "attention_mask": torch.ones(12, 5, dtype=torch.long)}
    theirs = RewardTrainer.compute_loss(trainer, lambda **kwargs: SimpleNamespace(logits=rewards), inputs)
    ours, _ = bradley_terry_loss(*rewards.squeeze(-1).chunk(2))
    assert abs(ours.item() - theirs.item()) < 1e-6
